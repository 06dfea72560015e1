"""W1-W2 (adopting a socket) and L1-L2 (local_addr, conn)."""

from __future__ import annotations

import socket

import pytest

import udpio
from tests.helpers import fd_count, plain_peer


def _udp(host: str | None = None) -> socket.socket:
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if host is not None:
        sock.bind((host, 0))
    return sock


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=pytest.mark.ipv6), None])
def test_w1_accepts_bound_or_unbound_udp(host: str | None) -> None:
    conn = _udp(host)
    with udpio.wrap_conn(conn) as sock:
        assert sock.conn() is conn


@pytest.mark.parametrize(
    ("family", "type_"),
    [(socket.AF_INET, socket.SOCK_STREAM), (socket.AF_UNIX, socket.SOCK_DGRAM)],
    ids=["tcp", "unix"],
)
def test_w1_rejects_wrong_socket_and_leaves_it_untouched(family: int, type_: int) -> None:
    conn = socket.socket(family, type_)
    try:
        conn.setblocking(True)
        before = fd_count()
        with pytest.raises(ValueError, match="wrap_conn needs"):
            udpio.wrap_conn(conn)
        assert conn.fileno() != -1
        assert conn.getblocking() is True
        assert fd_count() == before
    finally:
        conn.close()


def test_w1_rejects_closed_socket() -> None:
    conn = _udp("127.0.0.1")
    conn.close()
    with pytest.raises(ValueError, match="closed"):
        udpio.wrap_conn(conn)


@pytest.mark.parametrize("obj", [None, 3, "127.0.0.1:0", object()])
def test_w1_rejects_non_sockets(obj: object) -> None:
    with pytest.raises(TypeError, match=r"socket\.socket"):
        udpio.wrap_conn(obj)  # type: ignore[arg-type]


def test_w1_failed_adoption_restores_blocking_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    import udpio._socket as impl

    def broken() -> None:
        raise OSError("simulated failure while making the wake-up")

    conn = _udp("127.0.0.1")
    try:
        conn.settimeout(None)
        monkeypatch.setattr(impl, "Wakeup", broken)
        with pytest.raises(OSError, match="simulated"):
            udpio.wrap_conn(conn)
        assert conn.getblocking() is True
        assert conn.fileno() != -1
    finally:
        conn.close()


def test_w2_socket_owns_conn_nonblocking_and_closes_it() -> None:
    conn = _udp("127.0.0.1")
    assert conn.getblocking()
    sock = udpio.wrap_conn(conn)
    assert conn.getblocking() is False
    sock.close()
    assert conn.fileno() == -1


def test_l1_local_addr_has_real_port_and_none_after_close(loopback: str) -> None:
    host = f"[{loopback}]" if ":" in loopback else loopback
    sock = udpio.listen(f"{host}:0")
    local = sock.local_addr()
    assert local is not None
    assert local == sock.conn().getsockname()
    assert local[1] != 0
    sock.close()
    assert sock.local_addr() is None


def test_l1_unbound_adopted_socket_has_no_address_until_send() -> None:
    with plain_peer() as peer, udpio.wrap_conn(_udp(None)) as sock:
        assert sock.local_addr() is None
        sock.send(b"bind me", peer.getsockname())
        local = sock.local_addr()
        assert local is not None and local[1] != 0
        data, src = peer.recvfrom(100)
        assert data == b"bind me" and src[1] == local[1]


def test_l2_conn_is_the_same_object_every_time_also_after_close() -> None:
    conn = _udp("127.0.0.1")
    sock = udpio.wrap_conn(conn)
    assert sock.conn() is conn and sock.conn() is sock.conn()
    sock.close()
    assert sock.conn() is conn
    assert conn.fileno() == -1


def test_l2_listen_conn_is_stable() -> None:
    with udpio.listen("127.0.0.1:0") as sock:
        first = sock.conn()
        assert isinstance(first, socket.socket)
        assert sock.conn() is first


def test_l1_repr_of_an_unbound_socket_says_unbound() -> None:
    with udpio.wrap_conn(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        assert repr(sock) == "<udpio.Socket unbound>"
    assert repr(sock) == "<udpio.Socket closed>"


@pytest.mark.parametrize("obj", [None, 3, object()])
def test_w1_non_socket_message_names_its_type(obj: object) -> None:
    with pytest.raises(TypeError, match=f"not {type(obj).__name__}$"):
        udpio.wrap_conn(obj)  # type: ignore[arg-type]
