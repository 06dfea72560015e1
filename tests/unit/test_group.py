"""G1-G7: workers on one address, each with its own Socket, supervised.

The workers use the backend under test (the Group hands each process the
backend's name). Every process a test starts is reaped, also when it
fails: a Group is always stopped in a ``with`` block or ``finally``.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

import udpio
from tests.group_handlers import always_crashes, echo_pid, ignores_close
from tests.helpers import HANG, PACKAGE_ROOT, child_env, fd_count, python_child, readline_within, wait_until

MODES = ["processes", "threads"]


def _ask(addr: udpio.Address, payload: bytes, sock: socket.socket | None = None) -> bytes:
    # One query from a fresh source port (or from `sock`), its answer.
    own = sock is None
    client = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        client.settimeout(HANG)
        client.sendto(payload, addr)
        return client.recv(200)
    finally:
        if own:
            client.close()


def _answerers(addr: udpio.Address, clients: int) -> Counter[bytes]:
    # Which worker (its pid) answered each of `clients` source ports.
    return Counter(_ask(addr, b"q%d" % i).split()[1] for i in range(clients))


def _pids(group: udpio.Group) -> set[bytes]:
    return set(_answerers(group.local_addr(), 64))  # type: ignore[arg-type]


def _gone(pid: int) -> bool:
    # Exited: no such process, or a zombie nobody has reaped yet.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def resource_tracker() -> None:
    # multiprocessing's spawn starts its resource tracker (one process, one
    # descriptor, shared by everything in this process) on first use, and
    # keeps it until the process exits: started here, before any count.
    with udpio.Group("127.0.0.1:0", echo_pid, workers=1):
        pass


@pytest.fixture
def no_leftovers(resource_tracker: None) -> Iterator[None]:
    # G3: a test's groups leave no descriptor, process or thread behind.
    fds, threads = fd_count(), threading.active_count()
    yield
    wait_until(lambda: not multiprocessing.active_children(), what="every worker process reaped")
    assert fd_count() == fds
    assert threading.active_count() == threads


# -- G1 -------------------------------------------------------------------------------------------


def test_g1_sockets_that_all_set_reuse_port_share_an_address() -> None:
    with udpio.listen("127.0.0.1:0", reuse_port=True) as first:
        port = first.local_addr()[1]  # type: ignore[index]
        with udpio.listen(f"127.0.0.1:{port}", reuse_port=True) as second:
            assert second.local_addr() == first.local_addr()
        with pytest.raises(OSError) as info:
            udpio.listen(f"127.0.0.1:{port}")  # without the option: the kernel's refusal
        assert info.value.errno == errno.EADDRINUSE
    with udpio.listen("127.0.0.1:0") as plain:
        with pytest.raises(OSError) as info:
            udpio.listen(f"127.0.0.1:{plain.local_addr()[1]}", reuse_port=True)  # type: ignore[index]
        assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(TypeError, match="reuse_port"):
        udpio.listen("127.0.0.1:0", reuse_port="yes")  # type: ignore[arg-type]


# -- G2 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_g2_start_returns_with_every_worker_bound_and_answering(mode: str, no_leftovers: None) -> None:
    with udpio.Group("127.0.0.1:0", echo_pid, workers=2, mode=mode) as group:
        addr = group.local_addr()
        assert addr is not None and addr[1] != 0
        # No wait: the first query is answered (start() returned once ready).
        assert _ask(addr, b"first").startswith(b"first ")
        expected = 2 if mode == "processes" else 1  # threads share this pid
        assert len(_pids(group)) == expected
        assert len(group.worker_stats()) == 2


@pytest.mark.parametrize("mode", MODES)
def test_g2_g6_no_datagram_lost_across_a_group_and_the_stats_add_up(mode: str, no_leftovers: None) -> None:
    with udpio.Group("127.0.0.1:0", echo_pid, workers=2, mode=mode) as group:
        addr = group.local_addr()
        assert addr is not None
        answers = Counter()  # type: Counter[bytes]
        for i in range(200):  # 200 clients, so the kernel's hash spreads them
            answers[_ask(addr, b"n%d" % i).split()[0]] += 1
        assert answers == Counter({b"n%d" % i: 1 for i in range(200)})
        # A worker counts an answer once its send returns, which may be just
        # after the client has it.
        wait_until(lambda: group.stats().sent == 200, what="every answer counted")
        per_worker = group.worker_stats()
        assert sum(s.received for s in per_worker) == 200 and all(s.received > 0 for s in per_worker)
        total = group.stats()
        assert (total.received, total.sent) == (200, 200) and total.kernel_drops == 0
    assert group.stats() == total  # after stop: the final counts


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"workers": 0}, ValueError, "workers must be an int >= 1"),
        ({"workers": 1.5}, TypeError, "workers must be an int >= 1"),
        ({"workers": True}, TypeError, "workers must be an int >= 1"),
        ({"workers": 2, "mode": "fork"}, ValueError, "mode must be"),
        ({"workers": 2, "balance": "round-robin"}, ValueError, "balance must be"),
        ({"workers": 2, "reuse_port": False}, TypeError, "unknown options"),
        ({"workers": 2, "handler": 5}, TypeError, "handler must be callable"),
        ({"workers": 2, "handler": lambda sock: None}, TypeError, "importable by name"),
    ],
)
def test_g2_every_bad_argument_is_refused_before_anything_is_bound(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = fd_count()
    kwargs = dict(kwargs)  # the parameter is shared by both backends' runs
    handler = kwargs.pop("handler", echo_pid)
    with pytest.raises(error, match=message):
        udpio.Group(f"127.0.0.1:{port}", handler, **kwargs)  # type: ignore[arg-type]
    assert fd_count() == before
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # nothing holds the address


def test_g2_threads_mode_takes_any_callable() -> None:
    seen = threading.Event()

    def handler(sock: udpio.Socket) -> None:
        seen.set()
        try:
            sock.recv()
        except udpio.ClosedError:
            return

    with udpio.Group("127.0.0.1:0", handler, workers=1, mode="threads"):
        assert seen.wait(HANG)


# -- G3 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_g3_stop_is_idempotent_thread_safe_and_leaves_nothing_behind(mode: str, no_leftovers: None) -> None:
    group = udpio.Group("127.0.0.1:0", echo_pid, workers=2, mode=mode)
    group.start()
    assert _ask(group.local_addr(), b"up").startswith(b"up")  # type: ignore[arg-type]
    stoppers = [threading.Thread(target=group.stop) for _ in range(4)]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join(HANG)
        assert not stopper.is_alive()
    group.stop()
    group.wait()  # stopped by stop(): no error
    assert group.worker_stats() == []


def test_g3_a_group_never_started_holds_nothing_and_a_stopped_one_stays_stopped() -> None:
    # It made its wake-up pipe when it was made: a Group never started
    # leaked two descriptors, and start() after stop() was allowed.
    before = fd_count()
    group = udpio.Group("127.0.0.1:0", echo_pid, workers=2)
    assert fd_count() == before
    group.stop()
    group.wait()
    with pytest.raises(RuntimeError, match="starts once, and not after stop"):
        group.start()
    assert fd_count() == before and group.local_addr() is None


def test_g3_a_worker_that_does_not_stop_is_killed_and_said_so(
    caplog: pytest.LogCaptureFixture, no_leftovers: None
) -> None:
    group = udpio.Group("127.0.0.1:0", ignores_close, workers=1)
    group.start()
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="udpio"):
        group.stop(timeout=0.3)
    assert time.monotonic() - start < HANG
    assert "did not stop within 0.3 s: killed (SIGKILL)" in caplog.text


_OWNER = r"""
import sys, threading
import udpio
from tests.group_handlers import echo_pid

if __name__ == "__main__":
    group = udpio.Group("127.0.0.1:0", echo_pid, workers=2)
    group.start()
    print(group.local_addr()[1], flush=True)
    threading.Event().wait()
"""


def test_g3_workers_end_within_a_second_of_their_owner_being_killed(tmp_path: object) -> None:
    # No orphans: the owner killed by SIGKILL (nothing of it runs any more).
    script = os.path.join(str(tmp_path), "owner.py")
    with open(script, "w") as source:
        source.write(_OWNER)
    env = dict(child_env(), PYTHONPATH=os.pathsep.join([PACKAGE_ROOT, os.getcwd()]))
    owner = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, text=True, env=env)
    pids: set[int] = set()
    try:
        port = int(readline_within(owner, HANG))
        pids = {int(p) for p in _answerers(("127.0.0.1", port), 64)}
        assert len(pids) == 2
        owner.kill()
        owner.wait(HANG)
        killed = time.monotonic()
        wait_until(lambda: all(_gone(pid) for pid in pids), timeout=HANG, what="the orphaned workers gone")
        assert time.monotonic() - killed < 1.0, "a worker outlived its owner by a second or more"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(HANG)
        assert owner.stdout is not None
        owner.stdout.close()
        for pid in pids:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_g3_workers_ignore_sigint_their_owner_decides(no_leftovers: None) -> None:
    with udpio.Group("127.0.0.1:0", echo_pid, workers=1) as group:
        addr = group.local_addr()
        assert addr is not None
        pid = int(_ask(addr, b"who").split()[1])
        os.kill(pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
        assert _ask(addr, b"still").split() == [b"still", b"%d" % pid]
        assert group.restarts == 0


# -- G4 -------------------------------------------------------------------------------------------


def test_g4_a_killed_worker_is_replaced_and_the_service_goes_on(
    caplog: pytest.LogCaptureFixture, no_leftovers: None
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="udpio"),
        udpio.Group("127.0.0.1:0", echo_pid, workers=2) as group,
    ):
        victim = int(next(iter(_pids(group))))
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: group.restarts == 1, what="the killed worker replaced")
        pids = {int(p) for p in _pids(group)}
        assert len(pids) == 2 and victim not in pids
    assert "was killed by SIGKILL; starting another" in caplog.text


@pytest.mark.parametrize("mode", MODES)
def test_g4_a_handler_that_raises_is_replaced_logged_and_counted(
    mode: str, caplog: pytest.LogCaptureFixture, no_leftovers: None
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="udpio"),
        udpio.Group("127.0.0.1:0", echo_pid, workers=2, mode=mode) as group,
    ):
        addr = group.local_addr()
        assert addr is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"crash", addr)
        wait_until(lambda: group.restarts == 1, what="the crashed worker replaced")
        assert _answerers(addr, 64).total() == 64  # every client answered again
    assert "raised ValueError: a datagram this handler cannot take; starting another" in caplog.text


@pytest.mark.parametrize("mode", MODES)
def test_g4_a_group_whose_workers_keep_dying_stops_and_says_why(mode: str, no_leftovers: None) -> None:
    group = udpio.Group("127.0.0.1:0", always_crashes, workers=2, mode=mode)
    group.start()
    try:
        with pytest.raises(RuntimeError, match=r"6 workers died within 10 s; the last raised RuntimeError"):
            group.wait()
        assert group.failure is not None and group.restarts >= 4
    finally:
        group.stop()


# -- G5 -------------------------------------------------------------------------------------------

_SERVE = r"""
import sys, threading
import udpio
from tests.group_handlers import always_crashes, echo_pid

if __name__ == "__main__":
    handler = always_crashes if sys.argv[1] == "crash" else echo_pid
    # The daemon's main: serve() first, so that every thread (the group's,
    # and in threads mode the workers) blocks the signals it takes.
    status = udpio.serve("127.0.0.1:0", handler, workers=2, mode=sys.argv[2])
    print("status", status, flush=True)
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("which", ["SIGTERM", "SIGINT", "crash"])
def test_g5_serve_stops_on_a_signal_with_0_and_on_a_crash_loop_with_1(
    tmp_path: object, which: str, mode: str
) -> None:
    script = os.path.join(str(tmp_path), "serve.py")
    with open(script, "w") as source:
        source.write(_SERVE)
    env = dict(child_env(), PYTHONPATH=os.pathsep.join([PACKAGE_ROOT, os.getcwd()]))
    with python_child(script, which, mode, env=env, cwd=os.getcwd()) as proc:
        if which != "crash":
            if mode == "processes":
                wait_until(lambda: _worker_count(proc.pid) == 2, what="two workers")
            else:
                wait_until(lambda: _thread_count(proc.pid) >= 4, what="two worker threads")
            proc.send_signal(getattr(signal, which))
        out, err = proc.communicate(timeout=HANG * 3)
    assert proc.returncode == 0, err
    assert out == ("status 1\n" if which == "crash" else "status 0\n"), err


def _thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _worker_count(pid: int) -> int:
    # The worker processes of `pid`: its children but multiprocessing's resource tracker.
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        pids = children.read().split()
    count = 0
    for child in pids:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                count += b"resource_tracker" not in cmdline.read()
        except FileNotFoundError:
            continue
    return count


# -- G7 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_g7_random_spreads_one_client_and_hash_keeps_it_on_one_worker(mode: str, no_leftovers: None) -> None:
    for balance in ("random", "hash"):
        with udpio.Group("127.0.0.1:0", echo_pid, workers=2, mode=mode, balance=balance) as group:
            addr = group.local_addr()
            assert addr is not None
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                shares = Counter(_ask(addr, b"q", client).split()[1] for _ in range(1000))
            per_worker = sorted(s.received for s in group.worker_stats())
            if balance == "random":
                assert len(per_worker) == 2 and all(300 <= n <= 700 for n in per_worker), per_worker
            else:
                assert per_worker == [0, 1000], per_worker  # one client, one worker
            assert sum(shares.values()) == 1000
