"""M2, P9: an answer from the address the Socket is bound to goes without a pktinfo message.

A Socket bound to one address sends from it whatever the control message
says, and a ``sendmsg`` that carries one costs the kernel more than a
``sendto`` (benchmarks.md, P9). So ``reply`` and ``send_many`` leave the
message out when the source they were asked for is the bound address, and
put it in when it is not (a Socket bound to every address, where it is what
makes the answer leave from the address the client wrote to). What went
out is counted by a small shared object preloaded into a child process,
which looks at every ``sendmsg`` and ``sendmmsg`` message before the
kernel does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import HANG, PACKAGE_ROOT, build_shim, child_env, has_ipv6, preloading

_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

static int with_pktinfo, without;

int udpio_test_with_pktinfo(void) { return with_pktinfo; }
int udpio_test_without(void) { return without; }

static void count(const struct msghdr *msg)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR((struct msghdr *)msg); cm != NULL;
         cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
        if ((cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) ||
            (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO)) {
            with_pktinfo++;
            return;
        }
    }
    without++;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    static ssize_t (*real)(int, const struct msghdr *, int);
    if (real == NULL) {
        real = (ssize_t (*)(int, const struct msghdr *, int))dlsym(RTLD_NEXT, "sendmsg");
    }
    count(msg);
    return real(fd, msg, flags);
}

int sendmmsg(int fd, struct mmsghdr *msgs, unsigned int vlen, int flags)
{
    static int (*real)(int, struct mmsghdr *, unsigned int, int);
    if (real == NULL) {
        real = (int (*)(int, struct mmsghdr *, unsigned int, int))dlsym(RTLD_NEXT, "sendmmsg");
    }
    for (unsigned int i = 0; i < vlen; i++) {
        count(&msgs[i].msg_hdr);
    }
    return real(fd, msgs, vlen, flags);
}
"""

#: argv: the address to bind, the one the client writes to. Prints the
#: counts after each way of answering, and what the client got back from where.
_CHILD = r"""
import ctypes, json, socket, sys
import udpio
lib = ctypes.CDLL(None)
bind, server_host = sys.argv[1], sys.argv[2]
family = socket.AF_INET6 if ":" in server_host else socket.AF_INET
out = {"backend": udpio.BACKEND}
with udpio.listen(bind) as server, socket.socket(family, socket.SOCK_DGRAM) as client:
    client.settimeout(5)
    client.connect((server_host, server.local_addr()[1]))  # drops an answer from any other address
    for way in ("reply", "send_many"):
        client.send(b"query")
        query = server.recv_datagram(timeout=5)
        before = lib.udpio_test_with_pktinfo(), lib.udpio_test_without()
        if way == "reply":
            server.reply(b"answer", query)
        else:
            server.send_many([(b"answer", query.src, query.dst)])
        out[way] = [lib.udpio_test_with_pktinfo() - before[0], lib.udpio_test_without() - before[1]]
        out[way + " answered"] = client.recv(100).decode()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"), _SHIM)


def _answers(shim: Path, backend: str, bind: str, server_host: str) -> dict[str, object]:
    """Run the child; check that both answers reached the connected client; return what it counted."""
    if ":" in server_host and not has_ipv6():
        pytest.skip("no IPv6 loopback here")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, bind, server_host],
        capture_output=True,
        text=True,
        timeout=HANG,
        env=preloading(child_env(), shim),
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout)
    assert out["backend"] == backend
    # The answer still comes from where the client wrote to (its connected socket took it).
    assert out["reply answered"] == out["send_many answered"] == "answer"
    return out


@pytest.mark.parametrize(("bind", "server_host"), [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1")])
def test_m2_an_answer_from_the_bound_address_carries_no_pktinfo(
    shim: Path, backend: str, bind: str, server_host: str
) -> None:
    out = _answers(shim, backend, bind, server_host)
    # Counted by the shim: no sendmsg/sendmmsg message with a pktinfo. (An
    # answer may go by sendto, which the shim does not see: the pure twin's
    # do, the native send_many's goes by sendmmsg without one.)
    assert out["reply"][0] == 0  # type: ignore[index]
    assert out["send_many"][0] == 0  # type: ignore[index]


@pytest.mark.parametrize(("bind", "server_host"), [("0.0.0.0:0", "127.0.0.2"), ("[::]:0", "::1")])
def test_m2_an_answer_from_a_wildcard_bound_socket_carries_its_pktinfo(
    shim: Path, backend: str, bind: str, server_host: str
) -> None:
    out = _answers(shim, backend, bind, server_host)
    assert out["reply"] == [1, 0]
    assert out["send_many"] == [1, 0]
