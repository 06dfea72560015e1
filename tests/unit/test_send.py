"""S1-S5: send writes one datagram, refuses bad input clearly, waits for room, passes kernel errors."""

from __future__ import annotations

import array
import errno
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import pytest

import udpio
from tests.helpers import (
    HANG,
    fd_count,
    full_send_buffer,
    has_ipv6,
    join,
    pair,
    plain_peer,
    run_in_thread,
    thread_cpu_seconds,
    wait_blocked,
)


def test_s1_one_datagram_per_send_returns_length(loopback: str) -> None:
    family = socket.AF_INET6 if ":" in loopback else socket.AF_INET
    host = f"[{loopback}]" if ":" in loopback else loopback
    with udpio.listen(f"{host}:0") as sock, plain_peer(family) as peer:
        dst = peer.getsockname()
        assert sock.send(b"one", dst) == 3
        assert sock.send(b"two!", dst) == 4
        assert peer.recv(100) == b"one"  # not coalesced into "onetwo!"
        assert peer.recv(100) == b"two!"


@pytest.mark.parametrize(
    "frame",
    [b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview"), array.array("B", b"array")],
    ids=["bytes", "bytearray", "memoryview", "array"],
)
def test_s2_any_buffer_is_sent(frame: object) -> None:
    with pair() as (a, _), plain_peer() as peer:
        assert a.send(frame, peer.getsockname()) == len(memoryview(frame))  # type: ignore[arg-type]
        assert peer.recv(100) == bytes(memoryview(frame))  # type: ignore[arg-type]


def test_s2_recv_frame_echoes_without_copy() -> None:
    with pair() as (a, b):
        dst_a, dst_b = a.local_addr(), b.local_addr()
        assert dst_a is not None and dst_b is not None
        b.send(b"ping", dst_a)
        frame, src = a.recv(timeout=HANG)
        assert a.send(frame, src) == 4
        assert bytes(b.recv(timeout=HANG)[0]) == b"ping"


@pytest.mark.parametrize("frame", ["text", 42, None, [1, 2]])
def test_s2_non_buffer_is_type_error_and_socket_stays_usable(frame: object) -> None:
    with pair() as (a, _), plain_peer() as peer:
        with pytest.raises(TypeError, match="buffer protocol") as info:
            a.send(frame, peer.getsockname())  # type: ignore[arg-type]
        assert str(info.value).endswith(f"not {type(frame).__name__}")  # names what it got
        assert a.send(b"ok", peer.getsockname()) == 2


def test_s2_non_contiguous_buffer_is_type_error() -> None:
    with pair() as (a, _), plain_peer() as peer:
        with pytest.raises(TypeError, match=r"^udpio: frame must be a C-contiguous buffer$"):
            a.send(memoryview(b"abcdef")[::2], peer.getsockname())
        assert a.send(b"ok", peer.getsockname()) == 2


@pytest.mark.parametrize(
    "dst, error",
    [
        ("127.0.0.1:9", TypeError),
        (("127.0.0.1",), TypeError),
        (("127.0.0.1", 9, 0), TypeError),
        (("127.0.0.1", "9"), TypeError),
        (("127.0.0.1", 70000), OverflowError),
        (("127.0.0.1", -1), OverflowError),
        (None, TypeError),
    ],
)
def test_s3_bad_destination_names_it_and_socket_stays_usable(dst: object, error: type[Exception]) -> None:
    with pair() as (a, _), plain_peer() as peer:
        with pytest.raises(error) as info:
            a.send(b"x", dst)  # type: ignore[arg-type]
        assert "destination" in str(info.value) and repr(dst) in str(info.value)
        assert a.send(b"ok", peer.getsockname()) == 2
        assert peer.recv(10) == b"ok"


def test_s4_full_buffer_send_times_out(tmp_path: Path) -> None:
    with full_send_buffer(tmp_path) as (sock, path, _):
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.send(b"y", path, timeout=0.2)  # type: ignore[arg-type]
        assert time.monotonic() - start >= 0.19
        with pytest.raises(TimeoutError):
            sock.send(b"y", path, timeout=0)  # type: ignore[arg-type]


def test_s4_full_buffer_send_waits_for_room(tmp_path: Path) -> None:
    with full_send_buffer(tmp_path) as (sock, path, sink):
        sender, outcome = run_in_thread(lambda: sock.send(b"waited", path), "sender")  # type: ignore[arg-type]
        wait_blocked(sender)
        assert not outcome.done.is_set()
        sink.setblocking(False)
        drained = 0
        while not outcome.done.is_set():
            try:
                sink.recv(1024)
                drained += 1
            except BlockingIOError:
                outcome.done.wait(0.01)
        join(sender)
        assert outcome.error is None and outcome.value == 6
        assert drained > 0


def test_s4_close_wakes_a_waiting_send(tmp_path: Path) -> None:
    with full_send_buffer(tmp_path) as (sock, path, _):
        sender, outcome = run_in_thread(lambda: sock.send(b"stuck", path), "sender")  # type: ignore[arg-type]
        wait_blocked(sender)
        sock.close()
        join(sender)
        assert isinstance(outcome.error, udpio.ClosedError)


def test_s4_c3_c4_a_waiting_send_sleeps_and_close_wakes_it_at_once(tmp_path: Path) -> None:
    # The send must be asleep in the write selector (not spinning between
    # the selector and sendto), and that selector must watch the wake-up:
    # close() ends the wait within the C4 bound.
    with full_send_buffer(tmp_path) as (sock, path, _):
        woke_at: list[float] = []

        def send() -> None:
            try:
                sock.send(b"stuck", path)  # type: ignore[arg-type]
            finally:
                woke_at.append(time.perf_counter())

        sender, outcome = run_in_thread(send, "sender")
        wait_blocked(sender)
        cpu_before, wall_before = thread_cpu_seconds(sender), time.perf_counter()
        assert not outcome.done.wait(0.3)  # still waiting: no room was made
        cpu = thread_cpu_seconds(sender) - cpu_before
        wall = time.perf_counter() - wall_before
        assert cpu < 0.25 * wall, f"the waiting send used {cpu:.3f} s of CPU in {wall:.3f} s: it spins"
        closed_at = time.perf_counter()
        sock.close()
        join(sender)
        assert isinstance(outcome.error, udpio.ClosedError)
        assert woke_at[0] - closed_at < 0.5, "close() did not wake the waiting send (C4)"


def test_s5_oversized_datagram_is_emsgsize_and_socket_usable() -> None:
    with pair() as (a, _), plain_peer() as peer:
        with pytest.raises(OSError) as info:
            a.send(b"x" * 70000, peer.getsockname())
        assert info.value.errno == errno.EMSGSIZE
        assert type(info.value) is OSError
        assert a.send(b"ok", peer.getsockname()) == 2


def test_s5_connection_refused_is_raised_verbatim_by_send() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        dead = gone.getsockname()
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn.connect(dead)
    with udpio.wrap_conn(conn) as sock, plain_peer() as peer:
        sock.send(b"first", dead)  # provokes ICMP port unreachable
        deadline = time.monotonic() + HANG
        with pytest.raises(ConnectionRefusedError) as info:
            while time.monotonic() < deadline:
                sock.send(b"again", dead)
        assert info.value.errno == errno.ECONNREFUSED
        sock.conn().connect(peer.getsockname())
        assert sock.send(b"usable", peer.getsockname()) == 6
        assert peer.recv(10) == b"usable"


def test_s4_timeout_also_bounds_waiting_behind_another_send(tmp_path: Path) -> None:
    with full_send_buffer(tmp_path) as (sock, path, _):
        first, first_out = run_in_thread(lambda: sock.send(b"first", path), "first")  # type: ignore[arg-type]
        wait_blocked(first)  # holds the writer role while it waits for room
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="another send"):
            sock.send(b"second", path, timeout=0.1)  # type: ignore[arg-type]
        assert time.monotonic() - start >= 0.09
        sock.close()
        join(first)
        assert isinstance(first_out.error, udpio.ClosedError)


def test_s4_timeout_message_names_the_call_and_the_timeout(tmp_path: Path) -> None:
    with (
        full_send_buffer(tmp_path) as (sock, path, _),
        pytest.raises(TimeoutError, match=r"^udpio: send timed out after 0\.05 s$"),
    ):
        sock.send(b"late", path, timeout=0.05)  # type: ignore[arg-type]


def test_s4_f1_waiting_sends_reuse_one_write_selector(tmp_path: Path) -> None:
    # The write selector is made on the first wait and kept: a new one per
    # wait would leak an epoll descriptor every time the buffer fills.
    with full_send_buffer(tmp_path) as (sock, path, _):
        with pytest.raises(TimeoutError):
            sock.send(b"late", path, timeout=0.01)  # type: ignore[arg-type]
        first = sock._wsel
        before = fd_count()
        for _ in range(20):
            with pytest.raises(TimeoutError):
                sock.send(b"late", path, timeout=0.01)  # type: ignore[arg-type]
        assert sock._wsel is first and first is not None
        assert fd_count() == before


#: Every bound of every field of a destination tuple, at the bound and one
#: past it: what each backend must do (None: send it). The kernel refuses
#: port 0 (EINVAL). A scope_id outside 32 bits is udpio's OverflowError:
#: socket.sendto would truncate it to another interface's index; so is a
#: flowinfo that sendto would truncate into the flow label (2**32 + 5 was
#: sent with flowinfo 5).
_V6 = "::1"
DESTINATION_BOUNDS: list[tuple[str, tuple[object, ...], Optional[type[BaseException]]]] = [
    ("127.0.0.1", ("127.0.0.1", 65535), None),
    ("127.0.0.1", ("127.0.0.1", 65536), OverflowError),
    ("127.0.0.1", ("127.0.0.1", -1), OverflowError),
    ("127.0.0.1", ("127.0.0.1", 0), OSError),
    ("127.0.0.1", ("127.0.0.1", 2**64), OverflowError),
    ("127.0.0.1", ("a" * 300, 9), socket.gaierror),  # too long a name: refused before any lookup
    (_V6, (_V6, 65535, 0, 0), None),
    (_V6, (_V6, 65536, 0, 0), OverflowError),
    (_V6, (_V6, -1, 0, 0), OverflowError),
    (_V6, (_V6, 9, 0xFFFFF, 0), None),
    (_V6, (_V6, 9, 0x100000, 0), OverflowError),
    (_V6, (_V6, 9, -1, 0), OverflowError),
    (_V6, (_V6, 9, 2**32, 0), OverflowError),
    (_V6, (_V6, 9, 2**32 + 5, 0), OverflowError),
    (_V6, (_V6, 9, -(2**32) + 5, 0), OverflowError),
    (_V6, (_V6, 9, 2**64 + 5, 0), OverflowError),
    (_V6, (_V6, 9, 0xFFFFF), None),
    (_V6, (_V6, 9, 0x100000), OverflowError),
    (_V6, (_V6, 9, 2**32 + 5), OverflowError),
    (_V6, (_V6, 9, -1), OverflowError),
    (_V6, (_V6, 9, 0, 0), None),
    (_V6, (_V6, 9, 0, 2**32 - 1), None),
    (_V6, (_V6, 9, 0, 2**32), OverflowError),
    (_V6, (_V6, 9, 0, -1), OverflowError),
    (_V6, (_V6, 9, 0, 2**64), OverflowError),
]


@pytest.mark.parametrize("bind, dst, error", DESTINATION_BOUNDS, ids=lambda v: repr(v)[:40])
def test_s3_every_destination_field_at_its_bound_and_one_past(
    bind: str, dst: tuple[object, ...], error: Optional[type[BaseException]]
) -> None:
    if ":" in bind and not has_ipv6():
        pytest.skip("no IPv6 loopback")
    host = f"[{bind}]" if ":" in bind else bind
    with udpio.listen(f"{host}:0") as sock:
        calls: list[Callable[[], int]] = [
            lambda: sock.send(b"x", dst),  # type: ignore[arg-type]  # out of range on purpose
            lambda: sock.send_batch([b"x", b"y"], dst),  # type: ignore[arg-type]
        ]
        for call in calls:
            if error is None:
                assert call() in (1, 2)
                continue
            with pytest.raises(error) as info:
                call()
            exc = info.value
            assert type(exc) is error or (isinstance(exc, OSError) and exc.errno == errno.EINVAL)
            if error is not OSError:
                assert getattr(info.value, "sent", 0) == 0  # nothing went out (B3)
        assert sock.send(b"ok", (bind, 9)) == 2  # S3: the Socket stays usable


@pytest.mark.parametrize(
    ("bind", "dst", "words"),
    [
        ("127.0.0.1", ("::1", 9), "an IPv6 address on an IPv4 Socket"),
        pytest.param(
            "::1",
            ("127.0.0.1", 9),
            "an IPv4 address on an IPv6 Socket (this Socket is IPv6-only)",
            marks=pytest.mark.ipv6,
        ),
    ],
)
def test_s3_the_other_familys_address_is_a_value_error_naming_it(
    bind: str, dst: udpio.Address, words: str
) -> None:
    # The bug this pins: socket.gaierror "Address family for hostname not
    # supported" for ("::1", 9) on an IPv4 Socket.
    if ":" in bind and not has_ipv6():
        pytest.skip("no IPv6 loopback")
    conn = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_DGRAM)
    if ":" in bind:
        conn.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    conn.bind((bind, 0))
    with udpio.wrap_conn(conn) as sock:
        calls: list[Callable[[], int]] = [
            lambda: sock.send(b"x", dst),
            lambda: sock.send_batch([b"x"], dst),
            lambda: sock.send(b"x", dst, src=bind),
        ]
        for call in calls:
            with pytest.raises(ValueError) as info:
                call()
            assert str(info.value) == f"udpio: bad destination {dst!r}: {words}"
        assert sock.local_addr() is not None  # still usable


@pytest.mark.ipv6
def test_s3_a_dual_stack_socket_sends_to_an_ipv4_address_as_its_mapped_form() -> None:
    if not has_ipv6():
        pytest.skip("no IPv6 loopback")
    with udpio.listen("[::]:0") as sock, plain_peer() as peer:
        assert sock.send(b"one", peer.getsockname()) == 3
        assert sock.send_batch([b"two", b"three"], peer.getsockname()) == 2
        port = _local_port(sock)
        assert [peer.recvfrom(10) for _ in range(3)] == [
            (b"one", ("127.0.0.1", port)),
            (b"two", ("127.0.0.1", port)),
            (b"three", ("127.0.0.1", port)),
        ]


def _local_port(sock: udpio.Socket) -> int:
    local = sock.local_addr()
    assert local is not None
    return local[1]


def test_s3_a_name_that_does_not_resolve_is_the_resolvers_error_naming_it() -> None:
    # A 300-character label: refused by the resolver before any query leaves.
    host = "a" * 300
    with udpio.listen("127.0.0.1:0") as sock:
        calls: list[Callable[[], int]] = [
            lambda: sock.send(b"x", (host, 9)),
            lambda: sock.send_batch([b"x"], (host, 9)),
        ]
        for call in calls:
            with pytest.raises(socket.gaierror) as info:
                call()
            assert repr(host) in str(info.value) and info.value.errno is not None


def test_s5_an_oversized_datagram_says_the_limit_and_keeps_the_errno(loopback: str) -> None:
    # send said a bare "Message too long" where send_batch explained the limit.
    host = f"[{loopback}]" if ":" in loopback else loopback
    largest, over = (65527, "IPv6") if ":" in loopback else (65507, "IPv4")
    with (
        udpio.listen(f"{host}:0") as sock,
        plain_peer(socket.AF_INET6 if ":" in loopback else socket.AF_INET) as peer,
    ):
        with pytest.raises(OSError) as info:
            sock.send(b"x" * (largest + 1), peer.getsockname())
        assert type(info.value) is OSError and info.value.errno == errno.EMSGSIZE
        assert str(info.value) == (
            f"[Errno {errno.EMSGSIZE}] udpio: a datagram of {largest + 1:,} bytes is more than UDP over "
            f"{over} carries ({largest:,}): {os.strerror(errno.EMSGSIZE)}"
        )
        assert info.value.__context__ is None or info.value.__suppress_context__
        assert sock.send(b"x" * largest, peer.getsockname()) == largest  # the limit itself goes


def test_s5_a_send_to_port_0_says_so_and_keeps_the_errno() -> None:
    # It was a bare "[Errno 22] Invalid argument".
    with udpio.listen("127.0.0.1:0") as sock:
        with pytest.raises(OSError) as info:
            sock.send(b"x", ("127.0.0.1", 0))
        assert type(info.value) is OSError and info.value.errno == errno.EINVAL
        why = f"udpio: cannot send to port 0 (('127.0.0.1', 0)): {os.strerror(errno.EINVAL)}"
        assert str(info.value) == f"[Errno {errno.EINVAL}] {why}"
        assert sock.send(b"ok", ("127.0.0.1", 9)) == 2  # S3: the Socket stays usable


def test_s5_a_kernel_error_udpio_cannot_explain_passes_verbatim() -> None:
    # EACCES (a broadcast without SO_BROADCAST): the kernel's own words.
    with udpio.listen("127.0.0.1:0") as sock:
        with pytest.raises(PermissionError) as info:
            sock.send(b"x", ("255.255.255.255", 9))
        assert info.value.errno == errno.EACCES
        assert str(info.value) == f"[Errno {errno.EACCES}] {os.strerror(errno.EACCES)}"
