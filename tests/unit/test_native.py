"""N3, N5: the extension builds warning-free, and no call holds the GIL while it waits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest

import udpio
from tests.helpers import (
    HANG,
    PACKAGE_ROOT,
    child_env,
    full_send_buffer,
    has_ipv6,
    join,
    run_in_thread,
    wait_blocked,
)
from udpio import _backend

# The extension's sources, from the checkout the tests run in (an installed
# wheel carries only the built module).
SOURCES = sorted((Path(__file__).resolve().parents[2] / "udpio" / "_c").glob("*.c"))


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler here")
def test_n3_v3_extension_compiles_without_a_warning_under_wall_wextra(tmp_path: Path, backend: str) -> None:
    # V3: against the headers of the interpreter running the suite, so every
    # release of the matrix checks its own (a deprecated C API warns, and
    # -Werror fails it).
    if backend != "native":
        pytest.skip("one C source for both backends: compiled once, in the native run")
    assert len(SOURCES) >= 2, "the C sources are missing from udpio/_c"
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler is not None
    include = sysconfig.get_paths()["include"]
    flags = ["-Wall", "-Wextra", "-Werror", "-fPIC", "-O2", f"-I{include}"]
    for source in SOURCES:
        result = subprocess.run(
            [compiler, *flags, "-c", str(source), "-o", str(tmp_path / f"{source.stem}.o")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{source.name}: {result.stderr}"
        assert result.stderr == "", source.name


def test_n5_blocked_recv_and_send_let_other_threads_run(tmp_path: Path) -> None:
    # While one thread waits in recv and another in a send with no buffer
    # room, this thread must keep running Python code: neither wait may
    # hold the GIL. (Progress at all, not a speed: a held GIL gives zero.)
    with full_send_buffer(tmp_path) as (sock, path, _):
        reader, read_out = run_in_thread(sock.recv, "reader")
        sender, send_out = run_in_thread(lambda: sock.send(b"stuck", path), "sender")  # type: ignore[arg-type]
        wait_blocked(reader)
        wait_blocked(sender)
        spins = 0
        deadline = time.monotonic() + 0.1
        while time.monotonic() < deadline:
            spins += 1
        assert spins > 1000, f"only {spins} loop turns in 0.1 s beside the waiting calls"
        ran = threading.Event()
        helper = threading.Thread(target=ran.set)
        helper.start()
        assert ran.wait(HANG), "a new thread could not run beside the waiting calls"
        join(helper)
        sock.close()
        join(reader)
        join(sender)
        assert isinstance(read_out.error, udpio.ClosedError)
        assert isinstance(send_out.error, udpio.ClosedError)


def test_v3_this_interpreter_uses_the_native_backend() -> None:
    # V3: where the suite requires the extension (tox, CI: every release of
    # the matrix), a plain import picks it.
    if os.environ.get("UDPIO_TEST_REQUIRE_NATIVE", "") in ("", "0"):
        pytest.skip("only where the extension must be built (UDPIO_TEST_REQUIRE_NATIVE)")
    env = {k: v for k, v in child_env().items() if k != "UDPIO_NO_EXTENSIONS"}
    assert _backend_in_child(env) == "native"


def test_n2_no_extensions_forces_the_pure_backend_at_run_time() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import udpio; print(udpio.BACKEND)"],
        capture_output=True,
        text=True,
        timeout=HANG,
        env={**child_env(), "UDPIO_NO_EXTENSIONS": "1"},
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "python"


def test_n1_reader_state_cannot_be_pulled_from_under_a_recv(backend: str) -> None:
    # Natively, the frame and buffer live in C slots that only a reset to
    # None may touch, and not while a recv owns them.
    if backend != "native":
        pytest.skip("the pure Socket's _buf and _frame are plain attributes")
    with udpio.listen("127.0.0.1:0") as sock:
        with pytest.raises(AttributeError, match="reset to None"):
            sock._buf = bytearray(10)
        assert sock._reader.acquire()
        try:
            with pytest.raises(AttributeError, match="in use by a recv"):
                sock._frame = None
            with pytest.raises(AttributeError, match="_gro is in use by a recv"):
                sock._gro = False  # recv reads it to know whether to split
        finally:
            sock._reader.release()
        sock._frame = None  # allowed when no recv runs
        with pytest.raises(TypeError, match="must be a bool"):
            sock._gro = 1  # type: ignore[assignment]


def test_n1_b3_loopback_takes_udp_gso_for_equal_sized_batches(backend: str) -> None:
    if backend != "native":
        pytest.skip("UDP GSO is the native backend's; the pure send_batch is a loop of sendto")
    if not sys.platform.startswith("linux"):
        pytest.skip("UDP GSO is Linux's")
    with udpio.listen("127.0.0.1:0", rcvbuf=1 << 22) as rx, udpio.listen("127.0.0.1:0") as tx:
        dst = rx.local_addr()
        assert dst is not None
        assert tx.send_batch([b"g" * 100] * 20, dst) == 20
        assert tx._gso_off is False  # type: ignore[attr-defined]  # the kernel took the GSO send
        assert [len(rx.recv(timeout=HANG)[0]) for _ in range(20)] == [100] * 20


def test_n1_b3_s3_a_dual_stack_socket_takes_udp_gso_to_an_ipv4_address(backend: str) -> None:
    # The destination is mapped by the twin's _prepared_destination, then
    # sent in C: a dual-stack server loses no GSO to its IPv4 peers.
    if backend != "native":
        pytest.skip("UDP GSO is the native backend's; the pure send_batch is a loop of sendto")
    if not has_ipv6():
        pytest.skip("no IPv6 loopback")
    with udpio.listen("127.0.0.1:0", rcvbuf=1 << 22) as rx, udpio.listen("[::]:0") as tx:
        dst = rx.local_addr()
        assert dst is not None
        before = tx._gso_sends  # type: ignore[attr-defined]
        assert tx.send_batch([b"m" * 100] * 20, dst) == 20
        assert tx._gso_sends == before + 1  # type: ignore[attr-defined]
        assert [len(rx.recv(timeout=HANG)[0]) for _ in range(20)] == [100] * 20


def _backend_in_child(env: dict[str, str], prelude: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-c", f"{prelude}\nimport udpio; print(udpio.BACKEND)"],
        capture_output=True,
        text=True,
        timeout=HANG,
        env=env,
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_n2_no_extensions_0_means_not_set_at_run_time(backend: str) -> None:
    # As at install time: only a value other than "" and "0" forces pure.
    if backend != "native":
        pytest.skip("needs the extension built: the native run checks it")
    env = child_env()
    assert _backend_in_child({**env, "UDPIO_NO_EXTENSIONS": "0"}) == "native"
    assert _backend_in_child({**env, "UDPIO_NO_EXTENSIONS": ""}) == "native"
    assert _backend_in_child({**env, "UDPIO_NO_EXTENSIONS": "yes"}) == "python"


#: Makes importing the extension fail as a broken build does: a plain
#: ImportError (a missing symbol, another ABI), not ModuleNotFoundError.
_BROKEN_EXTENSION = """
import sys
class _Broken:
    def find_spec(self, name, path=None, target=None):
        if name == "udpio._speedups":
            raise ImportError("udpio/_speedups.so: undefined symbol: PyFoo")
        return None
sys.meta_path.insert(0, _Broken())
"""


def test_n2_an_extension_that_fails_to_load_falls_back_to_pure() -> None:
    env = {key: value for key, value in child_env().items() if key != "UDPIO_NO_EXTENSIONS"}
    assert _backend_in_child(env, _BROKEN_EXTENSION) == "python"


def _setuptools_new_enough() -> bool:
    try:
        from importlib.metadata import version

        return int(version("setuptools").split(".")[0]) >= 77
    except Exception:
        return False


@pytest.mark.skipif(not _setuptools_new_enough(), reason="needs setuptools 77 or later to run setup.py")
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler here")
def test_n2_a_failed_build_never_ships_an_extension_an_earlier_build_left(
    tmp_path: Path, backend: str
) -> None:
    # The bug this pins: after one `pip install .`, `CC=/bin/false pip install .`
    # printed the fallback warning, then put the old .so from build/ into the
    # wheel, and the install said "native backend".
    if backend != "native":
        pytest.skip("one build for both backends: run once, in the native run")
    root = Path(__file__).resolve().parents[2]
    build = [
        "setup.py",
        "-q",
        "build_ext",
        "--build-lib",
        str(tmp_path / "lib"),
        "--build-temp",
        str(tmp_path / "tmp"),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "UDPIO_NO_EXTENSIONS", "CFLAGS", "LDFLAGS")}
    first = subprocess.run(
        [sys.executable, *build], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr
    assert list((tmp_path / "lib" / "udpio").glob("_speedups*.so")), "the first build made no extension"
    failed = subprocess.run(
        [sys.executable, *build],
        cwd=root,
        env={**env, "CC": "/bin/false"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 0, failed.stderr  # the install goes on, pure
    assert "WARNING: udpio: the C extension was not built" in failed.stderr
    assert not list((tmp_path / "lib" / "udpio").glob("_speedups*.so")), "a stale extension would ship"
    # A plain `pip install .` shows none of that output: the install keeps
    # the reason, and `udpio --version` says it (it said only "not built").
    reason = _backend.not_built_reason(str(tmp_path / "lib" / "udpio"))
    assert reason.startswith("the C extension failed to build at install time: "), reason
    assert "/bin/false" in reason, reason
    again = subprocess.run(
        [sys.executable, *build], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert list((tmp_path / "lib" / "udpio").glob("_speedups*.so"))
    assert not (tmp_path / "lib" / "udpio" / "_speedups_not_built.txt").exists(), "a stale reason would ship"
    assert _backend.not_built_reason(str(tmp_path / "lib" / "udpio")) == "the C extension is not built here"
