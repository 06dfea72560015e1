"""A1-A4: what listen accepts, how it refuses, and that refusing leaks nothing."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import udpio
from tests.helpers import fd_count
from udpio import _addresses


@pytest.fixture(autouse=True)
def numeric_hosts_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may trigger a DNS query: only numeric hosts and 'localhost' resolve."""
    real = socket.getaddrinfo

    def local_only(host: Any, *args: Any) -> Any:
        if host != "localhost":
            family, type_, proto, flags = args[1:5]
            return real(host, args[0], family, type_, proto, flags | socket.AI_NUMERICHOST)
        return real(host, *args)

    monkeypatch.setattr(_addresses, "_getaddrinfo", local_only)
    yield


@pytest.mark.parametrize(
    "addr, family, host",
    [
        ("127.0.0.1:0", socket.AF_INET, "127.0.0.1"),
        pytest.param("[::1]:0", socket.AF_INET6, "::1", marks=pytest.mark.ipv6),
        (":0", socket.AF_INET, "0.0.0.0"),
        ("0.0.0.0:0", socket.AF_INET, "0.0.0.0"),
        pytest.param("[::]:0", socket.AF_INET6, "::", marks=pytest.mark.ipv6),
        (("127.0.0.1", 0), socket.AF_INET, "127.0.0.1"),
        (("", 0), socket.AF_INET, "0.0.0.0"),
    ],
)
def test_a1_accepted_forms(addr: str | tuple[str, int], family: int, host: str) -> None:
    with udpio.listen(addr) as sock:
        assert sock.conn().family == family
        local = sock.local_addr()
        assert local is not None
        assert local[0] == host
        assert local[1] != 0  # port 0 became a real ephemeral port


def test_a1_localhost_resolves_to_first_usable_result() -> None:
    with udpio.listen("localhost:0") as sock:
        local = sock.local_addr()
        assert local is not None and local[0] in ("127.0.0.1", "::1")


def test_a1_explicit_port_is_used() -> None:
    with udpio.listen("127.0.0.1:0") as probe:
        local = probe.local_addr()
        assert local is not None
        port = local[1]
    with udpio.listen(f"127.0.0.1:{port}") as sock:
        assert sock.local_addr() == ("127.0.0.1", port)


MALFORMED = [
    "",
    "127.0.0.1",
    "127.0.0.1:",
    "127.0.0.1:http",
    "127.0.0.1:+1",
    "127.0.0.1: 1",
    "127.0.0.1:1_0",
    "127.0.0.1:-1",
    "127.0.0.1:65536",
    "127.0.0.1:99999999999999999999",
    "127.0.0.1:\u0661",  # an Arabic-Indic digit: isdigit() but not decimal ASCII
    "[::1:9000",
    "::1]:9000",
    "[::1]9000",
    "[::1]",
    "[]:9000",
    "[[::1]]:9000",
    "::1:9000",
    "local\0host:0",
]


@pytest.mark.parametrize("addr", MALFORMED)
def test_a2_malformed_address_raises_value_error_quoting_it(addr: str) -> None:
    with pytest.raises(ValueError) as info:
        udpio.listen(addr)
    assert repr(addr) in str(info.value)


@pytest.mark.parametrize("addr", [None, 9000, 1.5, b"127.0.0.1:0", ["127.0.0.1", 0], {"host": "x"}])
def test_a2_wrong_type_raises_type_error_quoting_it(addr: object) -> None:
    with pytest.raises(TypeError) as info:
        udpio.listen(addr)  # type: ignore[arg-type]  # the wrong type on purpose
    assert repr(addr) in str(info.value)


@pytest.mark.parametrize("addr", [("127.0.0.1", -1), ("127.0.0.1", 65536), ("127.0.0.1", 10**30)])
def test_a2_tuple_port_out_of_range_is_value_error(addr: tuple[str, int]) -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.65535"):
        udpio.listen(addr)


@pytest.mark.parametrize(
    "addr",
    [(), ("127.0.0.1",), ("127.0.0.1", 0, 0), (1, 0), ("127.0.0.1", "80"), ("127.0.0.1", True), (None, 0)],
)
def test_a2_tuple_of_wrong_shape_is_type_or_value_error(addr: tuple[object, ...]) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        udpio.listen(addr)  # type: ignore[arg-type]  # the wrong shape on purpose
    assert repr(addr) in str(info.value)


def test_a2_unresolvable_host_raises_gaierror() -> None:
    with pytest.raises(socket.gaierror):
        udpio.listen("no-such-host.invalid:0")


def test_a2_port_in_use_raises_kernel_eaddrinuse() -> None:
    with udpio.listen("127.0.0.1:0") as first:
        local = first.local_addr()
        assert local is not None
        with pytest.raises(OSError) as info:
            udpio.listen(f"127.0.0.1:{local[1]}")
    assert info.value.errno == errno.EADDRINUSE


def test_a2_bad_buffer_sizes() -> None:
    with pytest.raises(TypeError, match="rcvbuf"):
        udpio.listen("127.0.0.1:0", rcvbuf="big")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sndbuf"):
        udpio.listen("127.0.0.1:0", sndbuf=0)


def test_a3_failed_listen_leaks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with udpio.listen("127.0.0.1:0") as busy:
        local = busy.local_addr()
        assert local is not None
        before = fd_count()
        for bad in [*MALFORMED, "no-such-host.invalid:0", f"127.0.0.1:{local[1]}"]:
            with pytest.raises((ValueError, OSError)):
                udpio.listen(bad)
        assert fd_count() == before


def test_a3_failure_inside_socket_setup_leaks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import udpio._socket as impl

    def no_more_fds() -> None:
        raise OSError(errno.EMFILE, "Too many open files (simulated)")

    before = fd_count()
    monkeypatch.setattr(impl, "Wakeup", no_more_fds)
    with pytest.raises(OSError) as info:
        udpio.listen("127.0.0.1:0")
    assert info.value.errno == errno.EMFILE
    assert fd_count() == before


def test_a4_rcvbuf_and_sndbuf_are_set() -> None:
    with udpio.listen("127.0.0.1:0") as plain:
        default_rcv = plain.conn().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        default_snd = plain.conn().getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    with udpio.listen("127.0.0.1:0", rcvbuf=4096, sndbuf=8192) as sock:
        rcv = sock.conn().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        snd = sock.conn().getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    # Linux doubles the request for bookkeeping; either way it moved off the default.
    assert 4096 <= rcv < default_rcv
    assert 8192 <= snd < default_snd


@pytest.mark.parametrize("addr", ["127.0.0.1:65535", ("127.0.0.1", 65535)], ids=["text", "tuple"])
def test_a1_port_65535_is_a_valid_port(addr: str | tuple[str, int]) -> None:
    # The top of the range binds, or fails only with the kernel's word on it.
    try:
        sock = udpio.listen(addr)
    except OSError as exc:
        assert exc.errno == errno.EADDRINUSE, exc
    else:
        with sock:
            assert sock.local_addr() == ("127.0.0.1", 65535)


@pytest.mark.parametrize(
    "addr",
    ["127.0.0.1:" + "9" * 5000, ("127.0.0.1", 10**5000), ("127.0.0.1", -(10**5000))],
    ids=["text", "tuple", "negative"],
)
def test_a2_port_of_thousands_of_digits_is_a_quoted_value_error(addr: object) -> None:
    # Python's int <-> str conversions stop at 4300 digits with a message of
    # their own; udpio's message still names the address (shortened).
    with pytest.raises(ValueError, match=r"^udpio: invalid address .*outside 0\.\.65535") as info:
        udpio.listen(addr)  # type: ignore[arg-type]  # out of range on purpose
    assert _addresses.quote(addr) in str(info.value)
    assert "4300" not in str(info.value)


@pytest.mark.parametrize("addr", ["[[::1]:9000", "[::1:9000", "::1]:9000", "[::1]]:9000", "]::1[:9000"])
def test_a2_unbalanced_brackets_are_value_errors_quoting_the_address(addr: str) -> None:
    with pytest.raises(ValueError) as info:
        udpio.listen(addr)
    assert type(info.value) is ValueError  # never a resolver error (gaierror is an OSError)
    assert repr(addr) in str(info.value)


@pytest.mark.parametrize("addr", ["\udcff:0", ("\udcff", 0), "a..b:0", ("x" * 64 + ".example", 0)])
def test_a2_host_that_cannot_be_encoded_is_a_value_error_quoting_it(addr: str | tuple[str, int]) -> None:
    with pytest.raises(ValueError) as info:
        udpio.listen(addr)
    assert not isinstance(info.value, UnicodeError)
    assert repr(addr) in str(info.value) and "cannot be encoded" in str(info.value)


def test_a1_printed_addresses_parse_back_to_the_same_address(loopback: str) -> None:
    # What udpio prints as an address (repr, the CLI's "listening on") is
    # the form listen() reads, IPv6 brackets included: the round trip binds
    # the very same address.
    host = f"[{loopback}]" if ":" in loopback else loopback
    with udpio.listen(f"{host}:0") as sock:
        local = sock.local_addr()
        assert local is not None
        printed = _addresses.format_address(local)
        assert repr(sock) == f"<udpio.Socket {printed}>"
    assert _addresses.parse(printed) == (loopback, local[1])
    with udpio.listen(printed) as again:
        assert again.local_addr() == local


@pytest.mark.parametrize(
    ("addr", "error", "message"),
    [
        ((9, 80), TypeError, "host must be str, not int"),
        (("127.0.0.1", "80"), TypeError, "port must be int, not str"),
        (("127.0.0.1", 70000), ValueError, "port 70000 is outside 0..65535"),
        (("a\0b", 80), ValueError, "host contains a NUL character"),
    ],
)
def test_a2_tuple_errors_quote_the_tuple_and_name_the_part(
    addr: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        udpio.listen(addr)  # type: ignore[arg-type]  # wrong on purpose
    assert str(info.value) == f"udpio: invalid address {addr!r}: {message}"


@pytest.mark.parametrize(
    ("obj", "shown"),
    [
        (("127.0.0.1", 10**5000), f"('127.0.0.1', <int of {(10**5000).bit_length()} bits>)"),
        ((10**5000,), f"(<int of {(10**5000).bit_length()} bits>,)"),
        (-(10**5000), f"<int of {(10**5000).bit_length()} bits>"),
        (("x", 1), "('x', 1)"),
    ],
    ids=["tuple", "one-tuple", "int", "plain"],
)
def test_a2_quote_shows_integers_past_the_digit_limit(obj: object, shown: str) -> None:
    assert _addresses.quote(obj) == shown


def test_a4_the_smallest_buffer_sizes_are_accepted() -> None:
    # 1 byte is a valid request: the kernel rounds it up to its minimum.
    with udpio.listen("127.0.0.1:0", rcvbuf=1, sndbuf=1) as sock:
        assert sock.conn().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 1


def test_a4_a_buffer_size_past_a_c_int_is_a_value_error_naming_it() -> None:
    # It leaked setsockopt's own "a bytes-like object is required, not 'int'".
    for name in ("rcvbuf", "sndbuf"):
        for size in (1 << 40, 2**31, -1):
            message = rf"^udpio: {name} must be 1 to 2147483647 bytes, not {size}$"
            with pytest.raises(ValueError, match=message):
                udpio.listen("127.0.0.1:0", **{name: size})  # type: ignore[arg-type]
    with udpio.listen("127.0.0.1:0", rcvbuf=2**31 - 1) as sock:  # the kernel caps it, silently
        assert sock.conn().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) > 0


def test_a2_a_port_in_use_names_the_address_it_could_not_bind() -> None:
    with udpio.listen("127.0.0.1:0") as first:
        local = first.local_addr()
        assert local is not None
        with pytest.raises(OSError) as info:
            udpio.listen(f"127.0.0.1:{local[1]}")
    assert type(info.value) is OSError and info.value.errno == errno.EADDRINUSE
    assert str(info.value) == f"[Errno {errno.EADDRINUSE}] udpio: cannot listen on 127.0.0.1:{local[1]}: " + (
        os.strerror(errno.EADDRINUSE)
    )


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3.999", "300.300.300.300"])
def test_a2_four_numbers_over_255_are_not_an_ipv4_address(host: str) -> None:
    # It went to the resolver as a name: gaierror "cannot resolve".
    with pytest.raises(ValueError, match=rf"'{host}:0'.*{host} is not an IPv4 address"):
        udpio.listen(f"{host}:0")
