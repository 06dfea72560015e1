"""K2, B3, S4, C5: a batch send that meets a full send buffer part-way waits for room, and unwinds cleanly.

UDP over loopback never says "would block" on its own (it drops instead),
so the full buffer is injected: a tiny shared object, preloaded into a
child process, lets the first ``UDPIO_EAGAIN_AFTER`` datagrams through
(``sendmmsg`` then takes only as many as fit, as the kernel does), makes
the next send fail once with ``EAGAIN``, and counts the refusals. The
Socket must wait (its selector says writable at once) and go on where it
stopped: every datagram once, in order, ``send_many`` returning them all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HANG, PACKAGE_ROOT, build_shim, child_env, preloading

_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

static int passed, refusals;

int udpio_test_refusals(void) { return refusals; }

static int left(void)
{
    /* UDPIO_EAGAIN_STUCK: the buffer stays full once it is (until the process ends). */
    const char *after = getenv("UDPIO_EAGAIN_AFTER");
    int stuck = getenv("UDPIO_EAGAIN_STUCK") != NULL;
    return after == NULL || (refusals > 0 && !stuck) ? 1 << 30 : atoi(after) - passed;
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)
{
    static ssize_t (*real)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    if (real == NULL) {
        real = (ssize_t (*)(int, const void *, size_t, int, const struct sockaddr *, socklen_t))
            dlsym(RTLD_NEXT, "sendto");
    }
    if (left() <= 0) {
        refusals++;
        errno = EAGAIN;
        return -1;
    }
    passed++;
    return real(fd, buf, len, flags, to, tolen);
}

int sendmmsg(int fd, struct mmsghdr *msgs, unsigned int vlen, int flags)
{
    static int (*real)(int, struct mmsghdr *, unsigned int, int);
    if (real == NULL) {
        real = (int (*)(int, struct mmsghdr *, unsigned int, int))dlsym(RTLD_NEXT, "sendmmsg");
    }
    int room = left();
    if (room <= 0) {
        refusals++;
        errno = EAGAIN;
        return -1;
    }
    int n = real(fd, msgs, (unsigned int)room < vlen ? (unsigned int)room : vlen, flags);
    if (n > 0) {
        passed += n;
    }
    return n;
}
"""

_CHILD = r"""
import ctypes, json, socket
import udpio
refusals = ctypes.CDLL(None).udpio_test_refusals
peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
for peer in peers:
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(5)
with udpio.listen("127.0.0.1:0") as tx:
    messages = [(b"%d" % i, peers[i % 2].getsockname()) for i in range(200)]
    sent = tx.send_many(messages)
    got = [[int(peer.recv(100)) for _ in range(100)] for peer in peers]
    print(json.dumps({"backend": udpio.BACKEND, "sent": sent, "stats": tx.stats().sent,
                      "refusals": refusals(), "got": got}))
"""


def _run_child(shim: Path, code: str, *args: str, **env: str) -> Any:
    # The child with the shim preloaded and `env` added; what it printed, as JSON.
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=HANG,
        env=dict(preloading(child_env(), shim), **env),
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"), _SHIM)


def test_k2_s4_a_full_buffer_part_way_waits_and_sends_the_rest_in_order(shim: Path, backend: str) -> None:
    out = _run_child(shim, _CHILD, UDPIO_EAGAIN_AFTER="70")
    assert out["backend"] == backend
    assert out["refusals"] == 1  # the injected full buffer was met, once
    assert (out["sent"], out["stats"]) == (200, 200)
    assert out["got"] == [list(range(0, 200, 2)), list(range(1, 200, 2))]


# The batch waits for room that never comes (the shim keeps refusing); a
# timer's signal lands on the main thread while it waits, and its handler
# closes the Socket. The batch must raise ClosedError with what went out,
# and, since close() ran on the thread that held the writer role, close
# the descriptor itself as it unwinds (C5).
_CLOSING_CHILD = r"""
import json, signal, socket, sys
import udpio
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
peer.bind(("127.0.0.1", 0))
dst = peer.getsockname()
frames = [b"x" * (i + 1) for i in range(20)]  # sizes that make no GSO run: sendmmsg
with udpio.listen("127.0.0.1:0") as sock:
    conn = sock.conn()
    signal.signal(signal.SIGALRM, lambda signum, frame: sock.close())
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        if sys.argv[1] == "send_batch":
            sock.send_batch(frames, dst)
        else:
            sock.send_many([(frame, dst) for frame in frames])
    except udpio.ClosedError as exc:
        out = {"backend": udpio.BACKEND, "sent": exc.sent, "released": conn.fileno() == -1}
print(json.dumps(out))
"""


@pytest.mark.parametrize("call", ["send_batch", "send_many"])
def test_b3_k2_c5_close_from_a_handler_while_a_batch_waits_for_room(
    shim: Path, backend: str, call: str
) -> None:
    out = _run_child(shim, _CLOSING_CHILD, call, UDPIO_EAGAIN_AFTER="5", UDPIO_EAGAIN_STUCK="1")
    assert out == {"backend": backend, "sent": 5, "released": True}
