"""R6 on its own: arbitrary get/put/retain sequences from several threads."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import udpio
from tests.helpers import join

ops = st.lists(st.sampled_from(["get", "put", "retain", "let-go", "put-retained"]), max_size=40)


@given(per_thread=st.lists(ops, min_size=1, max_size=4), max_idle=st.integers(0, 3))
def test_r6_pool_never_aliases_and_stays_bounded_under_threads(
    per_thread: list[list[str]], max_idle: int
) -> None:
    pool = udpio.Socket._make_pool(size=64, max_idle=max_idle)
    owners: dict[int, int] = {}  # id(buffer) -> the worker holding it
    owners_lock = threading.Lock()
    every_buffer: list[object] = []  # keeps each alive, so no id() is reused
    problems: list[str] = []
    start = threading.Barrier(len(per_thread))

    def worker(tag: int, script: list[str]) -> None:
        held: list[Any] = []
        views: list[memoryview] = []
        start.wait()
        for op in script:
            if op == "get":
                buf = pool.get()
                if pool.exported(buf):
                    problems.append("get returned an exported buffer")
                with owners_lock:
                    every_buffer.append(buf)
                    if owners.setdefault(id(buf), tag) != tag:
                        problems.append("get returned a buffer another worker holds")
                held.append(buf)
            elif op == "put" and held:
                buf = held.pop()
                with owners_lock:
                    if owners.pop(id(buf), None) != tag:
                        problems.append("a held buffer changed owner")
                pool.put(buf)
            elif op == "retain" and held:
                views.append(memoryview(held[-1]))
            elif op == "let-go" and views:
                views.pop().release()
            elif op == "put-retained" and views:
                exported = views[-1].obj
                with owners_lock:
                    owners.pop(id(exported), None)
                if pool.put(exported):
                    problems.append("the pool took a buffer that is still exported")
                held[:] = [b for b in held if b is not exported]
            if pool.idle_count() > max_idle:
                problems.append("the pool grew past its bound")
        for view in views:
            view.release()

    threads = [threading.Thread(target=worker, args=(t, s)) for t, s in enumerate(per_thread)]
    for thread in threads:
        thread.start()
    for thread in threads:
        join(thread)
    assert problems == []
    idle = pool._idle
    assert len({id(b) for b in idle}) == len(idle) <= max_idle
    assert not any(pool.exported(b) for b in idle)
