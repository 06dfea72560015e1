"""B5: a GSO run the kernel refuses goes out without GSO, and GSO stays for what fits.

On this kernel a device without checksum offload (``ethtool -K DEV tx
off``) no longer makes UDP GSO fail: the kernel checksums in software. So
the refusal is injected at the one call that carries it: a tiny shared
object, preloaded into a child process, makes ``sendmsg`` with a
``UDP_SEGMENT`` control message fail with a chosen errno, a chosen number
of times, and counts the attempts. The refusal a real small-MTU path gives
(``EMSGSIZE``) is in tests/system/test_real_hosts.py.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import HANG, PACKAGE_ROOT, build_shim, child_env, preloading

_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#define SOL_UDP_ 17
#define UDP_SEGMENT_ 103

static int attempts, refused;

int udpio_test_gso_attempts(void) { return attempts; }

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    static ssize_t (*real)(int, const struct msghdr *, int);
    if (real == NULL) {
        real = (ssize_t (*)(int, const struct msghdr *, int))dlsym(RTLD_NEXT, "sendmsg");
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm != NULL;
         cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
        if (cm->cmsg_level == SOL_UDP_ && cm->cmsg_type == UDP_SEGMENT_) {
            const char *err = getenv("UDPIO_FAIL_GSO_ERRNO");
            const char *times = getenv("UDPIO_FAIL_GSO_TIMES");
            attempts++;
            if (err != NULL && refused < (times != NULL ? atoi(times) : 1 << 30)) {
                refused++;
                errno = atoi(err);
                return -1;
            }
        }
    }
    return real(fd, msg, flags);
}
"""

_CHILD = r"""
import ctypes, json, socket
import udpio
attempts = ctypes.CDLL(None).udpio_test_gso_attempts
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
rx.bind(("127.0.0.1", 0))
rx.settimeout(5)
other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
other.bind(("127.0.0.1", 0))
other.settimeout(5)
steps = []
with udpio.listen("127.0.0.1:0") as tx:
    plan = [("refused", 100, rx), ("smaller", 50, rx), ("same", 100, rx), ("elsewhere", 100, other)]
    for name, size, to in plan:
        frames = [bytes([i]) * size for i in range(20)]
        try:
            sent, error = tx.send_batch(frames, to.getsockname()), None
        except OSError as exc:
            sent, error = exc.sent, exc.errno
        got = [to.recv(2048) for _ in range(sent)]
        steps.append({"step": name, "sent": sent, "error": error, "exact": got == frames[:sent],
                      "attempts": attempts(), "gso_sends": getattr(tx, "_gso_sends", 0),
                      "gso_off": getattr(tx, "_gso_off", None)})
print(json.dumps(steps))
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"), _SHIM)


def _run(shim: Path, refused_errno: int, times: int) -> list[dict[str, object]]:
    env = preloading(child_env(), shim)
    env["UDPIO_FAIL_GSO_ERRNO"] = str(refused_errno)
    env["UDPIO_FAIL_GSO_TIMES"] = str(times)
    result = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        timeout=HANG * 3,
        env=env,
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    steps: list[dict[str, object]] = json.loads(result.stdout)
    return steps


@pytest.mark.parametrize("refusal", [errno.EMSGSIZE, errno.EINVAL, errno.EIO], ids=errno.errorcode.get)
def test_b5_a_refused_gso_run_goes_out_without_it_and_gso_stays_for_what_fits(
    shim: Path, backend: str, refusal: int
) -> None:
    steps = {step["step"]: step for step in _run(shim, refusal, times=1)}
    for step in steps.values():
        assert (step["sent"], step["error"], step["exact"]) == (20, None, True), step
    if backend == "python":
        # The pure send_batch is a loop of sendto: it never asks for GSO.
        assert all(step["attempts"] == 0 for step in steps.values())
        return
    # 1. refused once, sent by sendmmsg; 2. smaller segments to that
    # destination: GSO again, taken; 3. the refused size to it again: no
    # GSO attempt; 4. another destination: GSO, taken.
    assert [steps[s]["attempts"] for s in ("refused", "smaller", "same", "elsewhere")] == [1, 2, 2, 3]
    assert [steps[s]["gso_sends"] for s in ("refused", "smaller", "same", "elsewhere")] == [0, 1, 1, 2]
    assert steps["elsewhere"]["gso_off"] is False


def test_b5_a_kernel_without_gso_turns_it_off_for_the_socket(shim: Path, backend: str) -> None:
    steps = _run(shim, errno.ENOPROTOOPT, times=1 << 20)
    assert all((step["sent"], step["error"], step["exact"]) == (20, None, True) for step in steps), steps
    if backend == "native":
        assert steps[-1]["attempts"] == 1  # asked once, never again
        assert steps[-1]["gso_off"] is True


def test_b5_any_other_error_of_the_gso_send_reaches_the_caller_with_sent(shim: Path, backend: str) -> None:
    steps = _run(shim, errno.EPERM, times=1)
    first = steps[0]
    if backend == "python":
        assert first["error"] is None  # no GSO send to fail
        return
    assert (first["sent"], first["error"]) == (0, errno.EPERM)  # S5: verbatim, nothing sent
    assert all(step["error"] is None and step["sent"] == 20 for step in steps[1:])
