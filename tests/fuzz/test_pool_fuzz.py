"""R6 on its own: arbitrary get/put/retain sequences from several threads."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import join
from udpio._pool import BufferPool, is_exported

ops = st.lists(st.sampled_from(["get", "put", "retain", "let-go", "put-retained"]), max_size=40)


@given(per_thread=st.lists(ops, min_size=1, max_size=4), max_idle=st.integers(0, 3))
def test_r6_pool_never_aliases_and_stays_bounded_under_threads(
    per_thread: list[list[str]], max_idle: int
) -> None:
    pool = BufferPool(size=64, max_idle=max_idle)
    problems: list[str] = []
    start = threading.Barrier(len(per_thread))

    def worker(tag: int, script: list[str]) -> None:
        held: list[bytearray] = []
        views: list[memoryview] = []
        start.wait()
        for step, op in enumerate(script):
            if op == "get":
                buf = pool.get()
                if is_exported(buf):
                    problems.append("get returned an exported buffer")
                buf[0:2] = bytes([tag, step & 0xFF])  # ownership mark
                held.append(buf)
            elif op == "put" and held:
                buf = held.pop()
                if buf[0:2] != bytes([tag, buf[1]]):
                    problems.append("a held buffer was written by another owner")
                pool.put(buf)
            elif op == "retain" and held:
                views.append(memoryview(held[-1]))
            elif op == "let-go" and views:
                views.pop().release()
            elif op == "put-retained" and views:
                exported = views[-1].obj
                assert isinstance(exported, bytearray)
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
    assert not any(is_exported(b) for b in idle)
