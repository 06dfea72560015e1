"""M3, K2, C2, C5: where send_many and stats() meet a kernel error, a long batch, a signal, a close.

Each test here pins a bug that once passed the whole suite:

- ``stats()`` racing ``close()``: a ``stats()`` that ran while ``close()``
  released the descriptor answered ``kernel_drops=None``;
- a ``send_many`` stopped part-way by the kernel reported ``.sent == 0``
  after two datagrams had gone out, or left ``stats().sent`` behind them;
- a ``send_many`` that checked only its first 64 messages (the first
  ``sendmmsg``) sent them before finding message 71 bad;
- a ``send_many`` from a signal handler, inside this thread's own waiting
  ``send``, that gave the writer role away on its way out.
"""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import udpio
from tests.helpers import (
    HANG,
    PACKAGE_ROOT,
    build_shim,
    child_env,
    join,
    plain_peer,
    preloading,
    run_in_thread,
)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    # Hand the GIL over as often as CPython allows, so two threads'
    # bytecodes interleave finely and a window of a few bytecodes is hit.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _stats_while_closing() -> list[udpio.Stats]:
    # What stats() answered on another thread, from before close() until after it returned.
    sock = udpio.listen("127.0.0.1:0")
    answers: list[udpio.Stats] = []
    polling = threading.Event()
    closed = threading.Event()

    def poll() -> None:
        while True:
            answers.append(sock.stats())
            polling.set()
            if closed.is_set():
                answers.append(sock.stats())  # one more, after close() returned
                return

    poller, outcome = run_in_thread(poll, "stats")
    assert polling.wait(HANG)
    sock.close()
    closed.set()
    join(poller)
    assert outcome.error is None, outcome.error
    return answers


def test_m3_c3_stats_racing_close_always_answer_with_the_kernels_drop_count(fast_switching: None) -> None:
    for _ in range(300):
        answers = _stats_while_closing()
        assert answers and all(a.kernel_drops == 0 for a in answers), sorted(set(answers))


@pytest.fixture
def two_peers() -> Iterator[tuple[socket.socket, socket.socket]]:
    with plain_peer() as first, plain_peer() as second:
        for peer in (first, second):
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        yield first, second


def test_k2_m3_a_send_many_the_kernel_stops_part_way_says_exactly_how_many_went_out(
    two_peers: tuple[socket.socket, socket.socket],
) -> None:
    # The kernel refuses the third message (broadcast without SO_BROADCAST:
    # EACCES) after the first two of the same call went out.
    first, second = two_peers
    messages = [
        (b"one", first.getsockname()),
        (b"two", second.getsockname()),
        (b"refused", ("255.255.255.255", 9)),
        (b"never", first.getsockname()),
    ]
    with udpio.listen("127.0.0.1:0") as sock:
        with pytest.raises(PermissionError) as info:
            sock.send_many(messages)
        assert info.value.errno == errno.EACCES
        assert info.value.sent == 2  # type: ignore[attr-defined]
        assert sock.stats().sent == 2
        assert first.recv(100) == b"one" and second.recv(100) == b"two"
        # Nothing after the refused message went out: the next datagram
        # the first peer sees is the one sent now.
        assert sock.send_many([(b"after", first.getsockname())]) == 1
        assert first.recv(100) == b"after"
        assert sock.stats().sent == 3


@pytest.mark.parametrize("bad_at", [64, 70, 129])
def test_k2_every_message_is_checked_before_anything_is_sent_past_the_first_64(
    two_peers: tuple[socket.socket, socket.socket], bad_at: int
) -> None:
    # Natively send_many sends 64 messages per sendmmsg: a check that looked
    # at the first 64 only would send them before meeting this one.
    first, _ = two_peers
    messages: list[tuple[bytes, object]] = [(b"%d" % i, first.getsockname()) for i in range(bad_at)]
    messages.append((b"bad", ("127.0.0.1", 70000)))  # a port out of range
    messages += [(b"late", first.getsockname())] * 5
    with udpio.listen("127.0.0.1:0") as sock:
        with pytest.raises(OverflowError, match=rf"messages\[{bad_at}\]") as info:
            sock.send_many(messages)
        assert info.value.sent == 0  # type: ignore[attr-defined]
        assert sock.stats().sent == 0
        # Datagrams from one socket to one peer over loopback keep their
        # order: the first the peer sees is this one, so none went before.
        sock.send(b"sentinel", first.getsockname())
        assert first.recv(100) == b"sentinel"


# A shim preloaded into the child: a datagram whose payload starts with "W"
# is refused with EAGAIN (a full send buffer) until the child calls
# udpio_test_release(), so the send that carries it waits, holding the
# writer role, for as long as the test needs.
_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>

static int released, refusals;

void udpio_test_release(void) { released = 1; }
int udpio_test_refusals(void) { return refusals; }

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)
{
    static ssize_t (*real)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    if (real == NULL) {
        real = (ssize_t (*)(int, const void *, size_t, int, const struct sockaddr *, socklen_t))
            dlsym(RTLD_NEXT, "sendto");
    }
    if (!released && len > 0 && ((const char *)buf)[0] == 'W') {
        refusals++;
        errno = EAGAIN;
        return -1;
    }
    return real(fd, buf, len, flags, to, tolen);
}
"""

# The main thread sends "Wait", which waits for room; a timer's signal
# lands on the main thread while it waits, and its handler calls send_many
# on the same Socket. When that returns, the waiting send must still hold
# the writer role: another thread cannot take it, and it is still this
# thread's.
_CHILD = r"""
import ctypes, json, signal, socket, threading
import udpio
lib = ctypes.CDLL(None)
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
peer.bind(("127.0.0.1", 0))
peer.settimeout(5)
dst = peer.getsockname()
out = {"backend": udpio.BACKEND}
with udpio.listen("127.0.0.1:0") as sock:
    writer = sock._writer
    def other_thread_takes_writer():
        got = writer.acquire(False)
        if got:
            writer.release()
        out["other_thread_took_it"] = got
    def handler(signum, frame):
        out["inner"] = sock.send_many([(b"inner", dst), (b"inner2", dst)])
        out["still_mine"] = writer._is_owned()
        t = threading.Thread(target=other_thread_takes_writer)
        t.start()
        t.join(5)
        lib.udpio_test_release()
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.01)
    out["outer"] = sock.send(b"Wait", dst)
    out["refusals_before"] = lib.udpio_test_refusals()
    out["got"] = sorted(peer.recv(100).decode() for _ in range(3))
    out["sent"] = sock.stats().sent
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def eagain_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"), _SHIM)


def test_c2_c5_a_send_many_in_a_handler_leaves_the_waiting_send_its_writer_role(
    eagain_shim: Path, backend: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        timeout=HANG,
        env=preloading(child_env(), eagain_shim),
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["backend"] == backend
    assert out["refusals_before"] > 0  # the outer send did wait
    assert out["inner"] == 2
    assert out["still_mine"] is True, "the handler's send_many gave the waiting send's role away"
    assert out["other_thread_took_it"] is False
    assert out["outer"] == 4
    assert out["got"] == ["Wait", "inner", "inner2"]
    assert out["sent"] == 3
