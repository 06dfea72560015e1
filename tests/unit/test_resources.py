"""F1-F3: no descriptor leaks, ResourceWarning for a Socket dropped unclosed."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import textwrap
import warnings

import pytest

import udpio
from tests.helpers import HANG, PACKAGE_ROOT, child_env, descriptors_closed, fd_count, plain_peer


def test_f1_ten_thousand_open_close_cycles_leak_no_descriptor() -> None:
    before = fd_count()
    with plain_peer() as peer:
        dst = peer.getsockname()
        for i in range(10_000):
            sock = udpio.listen("127.0.0.1:0")
            if i % 1000 == 0:  # now and then a real exchange, so buffers and selectors are used
                sock.send(b"x", dst)
                data, src = peer.recvfrom(10)
                peer.sendto(data, src)
                sock.recv(timeout=HANG)
            sock.close()
    assert fd_count() == before


def test_f1_failed_listen_and_wrap_conn_leak_no_descriptor() -> None:
    before = fd_count()
    for _ in range(1000):
        with pytest.raises(ValueError):
            udpio.listen("127.0.0.1:70000")
        with pytest.raises(TypeError):
            udpio.wrap_conn("not a socket")  # type: ignore[arg-type]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(ValueError):
            udpio.wrap_conn(tcp)
        tcp.close()
    assert fd_count() == before


def test_f2_dropped_socket_warns_and_frees_descriptors() -> None:
    before = fd_count()
    sock = udpio.listen("127.0.0.1:0")
    conn = sock.conn()
    with pytest.warns(ResourceWarning, match="unclosed <udpio.Socket 127.0.0.1:"):
        del sock
        gc.collect()
    assert conn.fileno() == -1
    assert fd_count() == before


def test_f2_closed_socket_does_not_warn() -> None:
    sock = udpio.listen("127.0.0.1:0")
    sock.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        del sock
        gc.collect()


def test_f2_dropped_socket_after_use_frees_everything() -> None:
    sock = udpio.listen("127.0.0.1:0")
    with plain_peer() as peer:
        peer.sendto(b"x", sock.conn().getsockname())
        frame, _ = sock.recv(timeout=HANG)
    probe = udpio.Socket.__new__(udpio.Socket)  # never initialised: __del__ must cope
    del probe
    with pytest.warns(ResourceWarning):
        del sock
        gc.collect()
    assert bytes(frame) == b"x"  # the frame outlives its Socket safely


def test_f3_typical_use_is_clean_under_resource_warning_errors() -> None:
    # The suite itself runs with -W error::ResourceWarning (pyproject); this
    # checks the same for a plain program outside pytest's machinery.
    program = textwrap.dedent(
        """
        import gc, socket, threading, udpio
        with udpio.listen("127.0.0.1:0") as a, udpio.listen("127.0.0.1:0") as b:
            a.send(b"hi", b.local_addr())
            frame, src = b.recv(timeout=5)
            b.send(frame, src)
            a.recv(timeout=5)
            reader = threading.Thread(target=lambda: a.recv(timeout=5))
            reader.start()
        reader.join(5)
        assert not reader.is_alive()
        conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udpio.wrap_conn(conn).close()
        gc.collect()
        print("clean")
        """
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),  # the udpio under test, on the backend under test
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
    assert "Warning" not in result.stderr, result.stderr


def test_f3_descriptors_closed_helper_sees_an_open_socket() -> None:
    # The helper other tests rely on must be able to say "not closed".
    sock = udpio.listen("127.0.0.1:0")
    assert not descriptors_closed(sock)
    sock.close()
    assert descriptors_closed(sock)


def test_r6_the_shared_pool_keeps_at_most_16_idle_buffers() -> None:
    # The README's promise: a process keeps at most 16 idle 64 KiB read
    # buffers per backend, however many came back.
    pool = udpio.Socket._default_pool()
    taken = [pool.get() for _ in range(20)]
    kept = [pool.put(buf) for buf in taken]
    assert kept == [True] * 16 + [False] * 4
    assert pool.idle_count() == 16
    assert all(len(buf) == 65536 for buf in taken)
