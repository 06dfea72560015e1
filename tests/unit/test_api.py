"""The public API table (docs/reference.md): names, types, context manager, repr."""

from __future__ import annotations

import errno
import inspect
import socket
import subprocess
import sys

import pytest

import udpio
from tests.helpers import HANG, PACKAGE_ROOT, child_env, pair, public_names
from udpio import _socket


def test_api_public_names_are_exactly_the_reference_table() -> None:
    assert set(udpio.__all__) == {
        "BACKEND",
        "Address",
        "ClosedError",
        "ConcurrentRecvError",
        "Datagram",
        "ErrClosed",
        "Group",
        "PeerError",
        "Socket",
        "Stats",
        "datagrams_sent",
        "listen",
        "serve",
        "wrap_conn",
    }
    methods = public_names()["udpio.Socket"]
    assert {"recv", "recv_batch", "send", "send_many", "reply", "close"} <= set(methods), methods
    for name in (*methods, "__enter__", "__exit__"):
        assert callable(getattr(udpio.Socket, name)), name


def test_n2_backend_names_the_socket_in_use(backend: str) -> None:
    assert backend == udpio.BACKEND
    with udpio.listen("127.0.0.1:0") as sock:
        assert type(sock) is udpio.Socket
    native = udpio.Socket.recv is not _socket.Socket.recv
    assert native == (backend == "native")


def test_n1_native_methods_carry_the_pure_docstrings() -> None:
    # help(udpio.Socket.recv) reads the same on both backends.
    for name in ("recv", "recv_datagram", "recv_batch", "send", "send_many", "reply"):
        assert inspect.getdoc(getattr(udpio.Socket, name)) == inspect.getdoc(getattr(_socket.Socket, name))


@pytest.mark.parametrize(
    "obj",
    [udpio.listen, udpio.wrap_conn, udpio.Socket, udpio.ClosedError, udpio.ConcurrentRecvError]
    + [getattr(udpio.Socket, n) for n in public_names()["udpio.Socket"]],
    ids=lambda o: o.__qualname__,
)
def test_api_every_public_name_documents_raises_and_thread_safety(obj: object) -> None:
    doc = inspect.getdoc(obj)
    assert doc and len(doc) > 40
    # conn, local_addr, stats and close raise nothing of their own.
    if inspect.isfunction(obj) and obj.__name__ not in (
        "conn",
        "local_addr",
        "close",
        "stats",
        "datagrams_sent",
    ):
        assert "raises" in doc.lower(), f"{obj.__qualname__} does not say what it raises"
    if inspect.isfunction(obj):
        assert "thread" in doc.lower() or "Thread" in doc, f"{obj.__qualname__} says nothing of threads"


def test_api_closed_error_is_oserror_with_prefix_and_alias() -> None:
    assert udpio.ErrClosed is udpio.ClosedError
    assert issubclass(udpio.ClosedError, OSError)
    err = udpio.ClosedError()
    assert str(err).startswith("udpio: socket closed")
    assert str(udpio.ClosedError("while waiting")).startswith("udpio: socket closed")


def test_api_concurrent_recv_error_is_runtime_error() -> None:
    assert issubclass(udpio.ConcurrentRecvError, RuntimeError)


def test_api_context_manager_closes_on_exit() -> None:
    with udpio.listen("127.0.0.1:0") as sock:
        assert isinstance(sock, udpio.Socket)
        assert sock.local_addr() is not None
    assert sock.local_addr() is None
    with pytest.raises(udpio.ClosedError):
        sock.recv(timeout=0)


def test_api_context_manager_closes_when_body_raises() -> None:
    with pytest.raises(KeyError), udpio.listen("127.0.0.1:0") as sock:
        raise KeyError("boom")
    assert sock.conn().fileno() == -1


def test_api_repr_shows_address_then_closed() -> None:
    with pair() as (a, _):
        port = a.conn().getsockname()[1]
        assert repr(a) == f"<udpio.Socket 127.0.0.1:{port}>"
    assert repr(a) == "<udpio.Socket closed>"


def test_api_bound_addr_is_local_addr_without_the_optional() -> None:
    with udpio.listen("127.0.0.1:0") as sock:
        assert sock.bound_addr() == sock.local_addr()
    with pytest.raises(udpio.ClosedError):
        sock.bound_addr()
    with udpio.wrap_conn(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as adopted:
        with pytest.raises(OSError, match="not bound") as info:
            adopted.bound_addr()
        assert info.value.errno == errno.EINVAL
        adopted.send(b"x", ("127.0.0.1", 9))  # binds it
        assert adopted.bound_addr()[1] != 0


def test_b3_datagrams_sent_reads_sent_off_any_exception() -> None:
    error = TimeoutError("udpio: send_batch timed out")
    error.sent = 3  # type: ignore[attr-defined]  # as send_batch sets it
    assert udpio.datagrams_sent(error) == 3
    assert udpio.datagrams_sent(KeyboardInterrupt()) == 0


def test_api_dir_shows_only_public_names() -> None:
    # dir(udpio) showed Optional, Union, annotations and socket: the
    # module's own imports.
    assert dir(udpio) == sorted([*udpio.__all__, "__version__"])
    assert isinstance(udpio.__version__, str) and udpio.__version__


def test_w1_the_socket_constructor_is_wrap_conn_with_its_checks() -> None:
    # help(udpio.Socket) showed a private signature, and Socket(a TCP
    # socket) was accepted, to fail later in recv with ENOTCONN.
    assert list(inspect.signature(udpio.Socket).parameters) == ["conn"]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        with pytest.raises(ValueError, match="SOCK_DGRAM"):
            udpio.Socket(tcp)
        assert tcp.fileno() != -1 and tcp.getblocking()  # left as it was
    with pytest.raises(TypeError, match=r"socket\.socket"):
        udpio.Socket("127.0.0.1:0")  # type: ignore[arg-type]  # wrong on purpose
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn.bind(("127.0.0.1", 0))
    with udpio.Socket(conn) as sock:
        assert sock.conn() is conn and sock.local_addr() == conn.getsockname()


def test_p1_importing_udpio_loads_no_multiprocessing() -> None:
    # Group and serve are imported when first used: importing them with
    # udpio (multiprocessing, pickle, logging) cost every recv about 15
    # instructions more in callgrind, through the collector's larger heap.
    code = "import sys, udpio; print(sorted({'multiprocessing', 'logging', 'pickle'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=HANG,
        env=child_env(),
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"
    assert udpio.Group.__module__ == "udpio" and udpio.serve.__module__ == "udpio"
