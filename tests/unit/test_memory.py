"""N4: long runs leave no trace: traced memory, reference counts and descriptors stay flat.

The cycle count is UDPIO_LONG_RUN_CYCLES (100,000 by default, so the
suite stays quick; tox's ``long`` environment runs N4's full
1,000,000). Retained frames are part of the run: every 16th frame is kept
as a slice for a while, then dropped, so buffers are taken out of the
pool, retained, released and freed over and over.
"""

from __future__ import annotations

import gc
import os
import sys
import tracemalloc

import udpio
from tests.helpers import HANG, fd_count

CYCLES = int(os.environ.get("UDPIO_LONG_RUN_CYCLES", "100000"))
RETAIN_EVERY = 16
KEEP = 8  # slices held at once


def _cycles(rx: udpio.Socket, tx: udpio.Socket, count: int) -> tuple[int, int]:
    """Returns how many retained slices were let go, and how many were intact then."""
    dst = rx.local_addr()
    assert dst is not None
    payload = b"p" * 64
    kept: list[memoryview] = []
    dropped = intact = 0
    for i in range(count):
        tx.send(payload, dst)
        frame, _ = rx.recv(timeout=HANG)
        if i % RETAIN_EVERY == 0:
            kept.append(frame[:8])  # retained: its buffer must never be reused
            if len(kept) > KEEP:
                dropped += 1
                intact += kept.pop(0) == b"p" * 8
    return dropped, intact


def test_n4_long_run_of_recv_send_and_retained_frames_leaks_nothing() -> None:
    with udpio.listen("127.0.0.1:0") as rx, udpio.listen("127.0.0.1:0") as tx:
        _cycles(rx, tx, 2000)  # warm-up: pool, caches and interned objects settle
        dst = rx.local_addr()
        assert dst is not None
        tx.send(b"s", dst)
        _, src = rx.recv(timeout=HANG)  # natively, the very tuple every later recv returns
        gc.collect()
        fds = fd_count()
        objects = len(gc.get_objects())
        refs = (sys.getrefcount(rx), sys.getrefcount(tx), sys.getrefcount(rx.conn()), sys.getrefcount(src))
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            dropped, intact = _cycles(rx, tx, CYCLES)
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert dropped > CYCLES // RETAIN_EVERY - KEEP - 1
        assert intact == dropped, "R4: a retained slice changed"
        # Which buffers sit in the pool at the end varies by a few 64 KiB
        # buffers; a leaked 64-byte object per cycle would be megabytes, a
        # leaked buffer per retained frame hundreds of megabytes.
        assert after - before < 4 * 65536, f"traced memory grew by {after - before} bytes"
        assert len(gc.get_objects()) - objects < 100
        assert (
            sys.getrefcount(rx),
            sys.getrefcount(tx),
            sys.getrefcount(rx.conn()),
            sys.getrefcount(src),
        ) == refs
        assert fd_count() == fds
