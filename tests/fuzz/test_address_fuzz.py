"""A1-A3 and S3 fed arbitrary input: a Socket or a clear error, never anything else, never a leak."""

from __future__ import annotations

import errno
import socket
import warnings
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import udpio
from tests.helpers import fd_count, has_ipv6
from udpio import _socket
from udpio._addresses import parse, quote

hosts = st.one_of(
    st.sampled_from(
        ["127.0.0.1", "", "localhost", "[::1]", "::1", "0.0.0.0", "[::]", "[127.0.0.1]", "1.2.3"]
    ),
    st.text(max_size=20),
)
ports = st.one_of(
    st.integers(-5, 70000).map(str),
    st.integers(6, 6000).map(lambda digits: "9" * digits),  # past int()'s own digit limit too
    st.sampled_from(["0", "65535", "65536", "00000", "", "+1", "1e3", " 1", "\u0661"]),
    st.text(max_size=8),
)
texts = st.one_of(st.builds(lambda h, p: f"{h}:{p}", hosts, ports), st.text(max_size=40))
tuples = st.tuples(
    st.one_of(st.text(max_size=15), st.sampled_from(["127.0.0.1", ""]), st.integers()),
    st.one_of(st.integers(-5, 70000), st.sampled_from([10**5000, -(10**5000)])),
)
odd = st.one_of(
    st.none(),
    st.integers(),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.tuples(st.integers()),
    st.tuples(st.text(max_size=5), st.integers(0, 10), st.integers(0, 3)),
)


#: Hosts every machine can bind: a valid address with one of these must bind,
#: or fail only with the kernel's word on the port (in use, or forbidden).
BINDABLE = {"127.0.0.1", "0.0.0.0", "::1", "::"}


def _bind_or_refuse(addr: object) -> None:
    before = fd_count()
    try:
        parsed: tuple[str, int] | None = parse(addr)
    except (ValueError, TypeError):
        parsed = None
    try:
        sock = udpio.listen(addr)  # type: ignore[arg-type]  # fuzzed on purpose
    except (ValueError, TypeError) as exc:
        assert quote(addr) in str(exc), f"A2: the message does not quote the address: {exc}"
    except OSError as exc:  # gaierror for a host that does not resolve, or the kernel's errno
        assert parsed is not None, f"A2: a malformed address got past parsing: {exc!r}"
        if parsed[0] in BINDABLE and not (parsed[0] in ("::1", "::") and not has_ipv6()):
            assert exc.errno in (errno.EADDRINUSE, errno.EACCES), f"A1: {addr!r} must bind: {exc!r}"
    else:
        local = sock.local_addr()
        sock.close()
        assert parsed is not None, "A2: listen accepted what parse refuses"
        assert local is not None and local[1] != 0
        assert parsed[1] in (0, local[1]), "A1: bound to another port than asked"
    assert fd_count() == before  # A3: no leak either way


@given(texts)
def test_a1_a2_a3_listen_on_arbitrary_text(addr: str) -> None:
    _bind_or_refuse(addr)


@given(st.one_of(tuples, odd))
def test_a2_a3_listen_on_arbitrary_objects(addr: object) -> None:
    _bind_or_refuse(addr)


@given(st.one_of(texts, tuples, odd))
def test_a2_parse_only_raises_value_or_type_error_quoting_the_address(addr: object) -> None:
    try:
        host, port = parse(addr)
    except (ValueError, TypeError) as exc:
        assert quote(addr) in str(exc)
    else:
        assert isinstance(host, str) and host
        assert 0 <= port <= 65535


# -- S3: destination tuples, the two backends and socket.sendto side by side --------------

#: Hosts that never reach a resolver's server: numeric, or refused locally
#: (a 300-character label is longer than DNS allows).
dst_hosts = st.sampled_from(["127.0.0.1", "::1", "::ffff:127.0.0.1", "", "a" * 300, "127.0.0.1\0", None, 9])
#: Ports and the IPv6 fields at and one past each bound; a datagram that is
#: sent goes to the discard port or 65535 on loopback.
dst_ports = st.sampled_from([-1, 0, 9, 65535, 65536, 2**16 + 9, 2**63, True, 9.0, "9"])
dst_fields = st.sampled_from(
    [0, 1, 0xFFFFF, 0x100000, 2**32 - 1, 2**32, 2**32 + 5, -(2**32) + 5, -1, 2**64, "0"]
)
destinations = st.one_of(
    st.tuples(dst_hosts, dst_ports),
    st.tuples(dst_hosts, dst_ports, dst_fields),
    st.tuples(dst_hosts, dst_ports, dst_fields, dst_fields),
    st.tuples(dst_hosts),
    st.tuples(dst_hosts, dst_ports, dst_fields, dst_fields, dst_fields),
)


def _verdict(send: Callable[[], object]) -> str:
    try:
        send()
    except Exception as exc:
        return type(exc).__name__
    return "sent"


def _other_familys_number(dst: tuple[object, ...], family: int) -> bool:
    # A numeric host of the other family with a good port (a bad port is
    # named first, as sendto names it).
    fields = dst[1:]
    if not fields or not all(isinstance(f, int) and not isinstance(f, bool) for f in fields):
        return False
    bounds = (65535, 0xFFFFF, 0xFFFFFFFF)
    if len(fields) > (1 if family == socket.AF_INET else 3):
        return False
    if not all(0 <= f <= bound for f, bound in zip(fields, bounds[: len(fields)], strict=True)):  # type: ignore[operator]
        return False
    other = socket.AF_INET6 if family == socket.AF_INET else socket.AF_INET
    try:
        socket.inet_pton(other, dst[0])  # type: ignore[arg-type]
    except (OSError, TypeError, ValueError):
        return False
    return True


def _truncated_field(dst: tuple[object, ...]) -> bool:
    # A flowinfo or scope_id that sendto would read as a C unsigned int.
    tops = (0xFFFFF, 0xFFFFFFFF)
    return any(isinstance(v, int) and not 0 <= v <= top for v, top in zip(dst[2:4], tops, strict=False))


@pytest.mark.parametrize("family", [socket.AF_INET, pytest.param(socket.AF_INET6, marks=pytest.mark.ipv6)])
@given(dst=destinations)
def test_s3_both_backends_and_sendto_agree_on_every_destination(family: int, dst: tuple[object, ...]) -> None:
    # The backend under test, the pure reference and a plain socket give the
    # same verdict (sent, or the same exception type) for every tuple; the one
    # difference is udpio's: a flowinfo or scope_id that sendto would
    # truncate (to another flow label, another interface's index) is an
    # OverflowError.
    if family == socket.AF_INET6 and not has_ipv6():
        pytest.skip("no IPv6 loopback")
    host = "127.0.0.1" if family == socket.AF_INET else "[::1]"
    with (
        udpio.listen(f"{host}:0") as tested,
        _socket.listen_with(_socket.Socket, f"{host}:0") as reference,
        socket.socket(family, socket.SOCK_DGRAM) as plain,
    ):
        plain.bind((host.strip("[]"), 0))  # bound like the Sockets: the same routes
        ours = _verdict(lambda: tested.send(b"x", dst))  # type: ignore[arg-type]
        assert ours == _verdict(lambda: reference.send(b"x", dst)), "the backends disagree"  # type: ignore[arg-type]
        assert _verdict(lambda: tested.send_batch([b"x"], dst)) == ours  # type: ignore[arg-type]
        with warnings.catch_warnings(record=True) as caught:
            # CPython 3.15 warns where sendto truncates a field (gh-132629):
            # the very cases udpio refuses, so it is checked, not shown.
            warnings.simplefilter("always", DeprecationWarning)
            theirs = _verdict(lambda: plain.sendto(b"x", dst))
        if any(issubclass(w.category, DeprecationWarning) for w in caught):
            assert _truncated_field(dst) and ours == "OverflowError", (dst, ours)
        if theirs == "gaierror" and _other_familys_number(dst, family):
            # udpio's S3: never a resolver error for a numeric address of
            # the other family (a ValueError naming it, or its mapped form).
            assert ours != "gaierror"
        elif family == socket.AF_INET6 and _truncated_field(dst):
            # udpio checks these fields before sendto checks the rest, so
            # another bad field may be named instead; never sent.
            assert ours in ("OverflowError", theirs) and ours != "sent"
        else:
            assert ours == theirs, "udpio and socket.sendto disagree"
