"""P11: a Socket's memory follows the bytes it holds, not how deep its batches can go."""

from __future__ import annotations

import os
import socket

import pytest

import udpio
from tests.helpers import HANG, fd_count
from udpio._bench import memory

PAGE = os.sysconf("SC_PAGE_SIZE")


#: AddressSanitizer pads every allocation and keeps freed memory in
#: quarantine: resident memory under it measures the sanitizer, not udpio.
#: (tox's asan environment preloads it; every other environment measures.)
_under_asan = pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="resident memory under AddressSanitizer is its allocator's",
)


@_under_asan
def test_p11_a_thousand_sockets_cost_about_one_read_buffer_each(backend: str) -> None:
    # 80 KiB: one 64 KiB read buffer's worth, the rule's bound (natively a
    # few pages are touched; the pure Socket's bytearray is all resident).
    # Measured in a fresh interpreter, as the benchmark does.
    per_socket = memory.per_socket(backend, 1000)["per_socket"]
    assert per_socket <= memory.MEMORY_LIMIT, f"{per_socket / 1024:.0f} KiB resident per Socket"


@_under_asan
def test_p11_a_batch_of_64_small_datagrams_holds_pages_not_64_buffers(backend: str) -> None:
    # 64 x 64 KiB would be 4 MiB per Socket; the rule: about 64 pages.
    per_socket = memory.per_socket(backend, 100, 64, batch=True)["per_socket"]
    assert per_socket <= memory.MEMORY_LIMIT + 64 * PAGE, f"{per_socket / 1024:.0f} KiB resident per Socket"


def test_p11_a_socket_uses_four_descriptors() -> None:
    # The socket, the read selector (epoll) and the wake-up socketpair; a
    # send that once waited for room adds a second selector.
    before = fd_count()
    with udpio.listen("127.0.0.1:0"):
        assert fd_count() - before == 4
    assert fd_count() == before


def test_p11_natively_a_batch_reads_into_as_many_buffers_as_the_traffic_needs(backend: str) -> None:
    if backend != "native":
        pytest.skip("the pure Socket reads one datagram per recvmsg into one buffer; it has no batch depth")
    with (
        udpio.listen("127.0.0.1:0", rcvbuf=4 << 20) as sock,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        local = sock.bound_addr()
        assert sock._depth == 1  # type: ignore[attr-defined]
        for _ in range(3):
            tx.sendto(b"one at a time", local)
            sock.recv(timeout=HANG)
        assert sock._depth == 2  # type: ignore[attr-defined]  # a full batch of one doubles it, once
        for seq in range(400):
            tx.sendto(seq.to_bytes(2, "big"), local)
        got = [int.from_bytes(sock.recv(timeout=HANG)[0], "big") for _ in range(400)]
        assert got == list(range(400))
        assert sock._depth == 64  # type: ignore[attr-defined]  # RECV_MANY, no more
