"""Break the C extension (udpio/_c/) on purpose, one mutation at a time, and run the native tests.

Each mutant is a small, plausible bug in the C hot path; the suite must
fail on every one. Run from the repository root (it rebuilds the
extension in place and restores the source at the end):

    python tools/break_native.py            # every mutant
    python tools/break_native.py R3 leak    # those whose name contains R3 or leak

docs/testing.md lists what each mutant looked like when it was caught.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

SOURCES = sorted([*Path("udpio/_c").glob("*.c"), *Path("udpio/_c").glob("*.h")])

#: name -> (text in the source, the same text broken)
MUTANTS: dict[str, tuple[str, str]] = {
    "R3 frame not released": (
        "    if (Py_REFCNT(frame) > 1) {\n        PyObject *r = PyObject_Vectorcall",
        "    if (0) {\n        PyObject *r = PyObject_Vectorcall",
    ),
    "C1 ownership test ignored": (
        "    if (!role_try(self->reader)) {\n        recv_refused(self);\n        return -1;\n    }",
        "    (void)role_try(self->reader);",
    ),
    "C3 a give wakes no waiter": (
        "    if (atomic_load(&self->waiters) > 0) {\n        role_post_wakeup(self);",
        "    if (0) {\n        role_post_wakeup(self);",
    ),
    # These two abort CPython 3.15 (PyMutex_Unlock of an unlocked mutex);
    # up to 3.14 they are silent. Run them there: tools/sid_root.sh run
    # /root/udpio-tox/py315/bin/python tools/break_native.py 3.15
    "K2 M3 a send_many the kernel stopped part-way reports nothing sent": (
        "            note_sent(sent);",
        "            note_sent(0);",
    ),
    "M3 a send_many's datagrams counted only when the whole call went out": (
        "            *sent += n;\n            count_up(&self->sent, n);\n            attempt = 0;\n            continue;",
        "            *sent += n;\n            if (*sent == total) {\n"
        "                count_up(&self->sent, total);\n            }\n            attempt = 0;\n            continue;",
    ),
    "K2 only the first sendmmsg's messages checked before sending": (
        "    for (Py_ssize_t i = 0; i < n; i++) {\n        struct route route;",
        "    for (Py_ssize_t i = 0; i < n && i < SEND_MANY; i++) {\n        struct route route;",
    ),
    "C2 C5 a send_many in a handler takes its own send's role as if free": (
        ": role_is_mine(self->writer)                           ? 0",
        ": role_is_mine(self->writer)                           ? 1",
    ),
    "C2 3.15 a give releases wake whether it is held or not": (
        "    if (atomic_compare_exchange_strong(&self->wake_pending, &none, 1)) {",
        "    if (atomic_compare_exchange_strong(&self->wake_pending, &none, 1) || 1) {",
    ),
    "C2 3.15 the dealloc releases wake whatever its state": (
        "        if (atomic_load(&self->wake_pending) == 0) {\n            PyThread_release_lock(self->wake);",
        "        if (1) {\n            PyThread_release_lock(self->wake);",
    ),
    "C2 a woken waiter takes the role without testing it": (
        "        if (woken == PY_LOCK_INTR) {\n            return PY_LOCK_INTR;\n        }",
        "        if (woken == PY_LOCK_ACQUIRED) {\n            atomic_store(&self->held, 1);\n"
        "            return PY_LOCK_ACQUIRED;\n        }\n"
        "        if (woken == PY_LOCK_INTR) {\n            return PY_LOCK_INTR;\n        }",
    ),
    "P1 a tuple the caller kept is refilled": (
        "    if (Py_REFCNT(spare) > 1) {\n        Py_CLEAR(self->spare);",
        "    if (0) {\n        Py_CLEAR(self->spare);",
    ),
    "N4 a parked tuple stays visible to the GC": (
        "    PyObject_GC_UnTrack(spare);",
        "    (void)spare;",
    ),
    "M2 P9 a pktinfo sent from the bound IPv4 address": (
        "    return self->local_port > 0 && self->bound.ss_family == AF_INET && addr != INADDR_ANY &&",
        "    return 0 && self->bound.ss_family == AF_INET && addr != INADDR_ANY &&",
    ),
    "M2 P9 a pktinfo sent from the bound IPv6 address": (
        "    return self->local_port > 0 && self->bound.ss_family == AF_INET6 && !IN6_IS_ADDR_UNSPECIFIED(addr) &&",
        "    return 0 && self->bound.ss_family == AF_INET6 && !IN6_IS_ADDR_UNSPECIFIED(addr) &&",
    ),
    "B3 a frame over the limit passes the C check": (
        "        if (size > largest) {\n            return 0;\n        }\n    }\n    return 1;",
        "        if (size > largest + 1) {\n            return 0;\n        }\n    }\n    return 1;",
    ),
    "B3 a non-contiguous frame passes the C check": (
        "            if (PyObject_GetBuffer(item, &view, PyBUF_SIMPLE) < 0) {",
        "            if (PyObject_GetBuffer(item, &view, PyBUF_STRIDED_RO) < 0) {",
    ),
    "C3 recv after close uses the descriptor": (
        "    if (self->closed) { /* R5: the reader's next recv after close() */",
        "    if (0) { /* R5: the reader's next recv after close() */",
    ),
    "C3 send after close uses the descriptor": (
        "    if (!self->closed && destination(self, dst, &sa, &sa_len) &&",
        "    if (destination(self, dst, &sa, &sa_len) &&",
    ),
    "C5 K1 no release on exit from a receive call": (
        "    if (self->recv_exit_releases) {\n        result = release_on_exit(self, result);\n    }\n"
        "    role_give(self->reader);",
        "    if (0) {\n        result = release_on_exit(self, result);\n    }\n    role_give(self->reader);",
    ),
    "K1 a batch's frames not released": (
        "        failed = release_view(self, PyList_GET_ITEM(batch, i)) < 0;",
        "        failed = i > 0 && release_view(self, PyList_GET_ITEM(batch, i)) < 0;",
    ),
    "K1 a batch hands out a slot still exported": (
        "    if (self->slots[slot] != NULL && self->slots[slot]->exports > 0) {",
        "    if (self->slots[slot] != NULL && self->slots[slot]->exports > 0 && self->batch == NULL) {",
    ),
    "K1 B1 an error after a batch's datagrams dropped": (
        "        self->pending_err = err; /* B1: the datagrams taken come first */",
        "        (void)0;",
    ),
    "K2 sent off by one": (
        "            *sent += n;\n            count_up(&self->sent, n);\n            attempt = 0;\n            continue;",
        "            *sent += n + (n > 1);\n            count_up(&self->sent, n);\n            attempt = 0;\n            continue;",
    ),
    "K2 messages reordered in a sendmmsg": (
        "        PyObject *item = PySequence_Fast_GET_ITEM(batch, start + got);",
        "        PyObject *item = PySequence_Fast_GET_ITEM(batch, start + (got ^ (count > 1 && got + 1 < count)));",
    ),
    "K2 port 0 sent": ("        port_of(&route->sa) == 0) {", "        0) {"),
    "K2 IPv6's size limit for IPv4": (
        "    if (view->len > largest_payload(&route->sa)) {",
        "    if (view->len > 65527) {",
    ),
    "B3 K2 a full buffer raised, not waited for": (
        "    if (err != EAGAIN && err != EWOULDBLOCK) {\n#ifdef __linux__\n        if (self->peer_errors) { /* E4",
        "    if (1) {\n#ifdef __linux__\n        if (self->peer_errors) { /* E4",
    ),
    "B3 a send_batch stopped part-way reports nothing sent": (
        "    if (result == NULL) {\n        note_sent(sent);",
        "    if (result == NULL) {\n        note_sent(0);",
    ),
    "S4 a send_batch's timeout does not bound waiting for the role": (
        "    int got = role_wait(self->writer, seconds);",
        "    int got = role_wait(self->writer, -1);",
    ),
    "C3 send_batch after close uses the descriptor": (
        "        if (self->closed) {\n            PyErr_SetNone(self->state->ClosedError);\n        }\n        else if (send_frames",
        "        if (0) {\n            PyErr_SetNone(self->state->ClosedError);\n        }\n        else if (send_frames",
    ),
    "C5 no release on exit from send_batch": (
        "        if (self->send_exit_releases) { /* C5: a close() on this thread interrupted a wait */",
        "        if (0) { /* C5: a close() on this thread interrupted a wait */",
    ),
    "S3 a dual-stack batch to an IPv4 address loses GSO": (
        "    int r = parse_destination(self->family, prepared, &b->sa, &b->sa_len);",
        "    int r = 0 * parse_destination(self->family, prepared, &b->sa, &b->sa_len);",
    ),
    "M3 a send_batch not counted": (
        "            *sent += n;\n            count_up(&self->sent, n);\n            attempt = 0;\n        }",
        "            *sent += n;\n            attempt = 0;\n        }",
    ),
    "K3 one sender remembered, not eight": (
        "    for (int k = 1; k <= SOURCE_CACHE; k++) {",
        "    for (int k = 1; k <= 1; k++) {",
    ),
    "P11 buffers zeroed": (
        "    return p == MAP_FAILED ? NULL : p;",
        "    if (p != MAP_FAILED) {\n        memset(p, 0, size);\n    }\n    return p == MAP_FAILED ? NULL : p;",
    ),
    "P11 the depth never grows": (
        "self->depth = 2 * self->depth < RECV_MANY ? 2 * self->depth : RECV_MANY;",
        "self->depth = self->depth;",
    ),
    "R1 stale length": ("    buf->length = length;", "    buf->length = length > 0 ? length : 1;"),
    "S5 EAGAIN-like errors swallowed": (
        "    if (n == -2 || err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {",
        "    if (1) {",
    ),
    "addr cache ignores the port": (
        "        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;",
        "        return x->sin_addr.s_addr == y->sin_addr.s_addr;",
    ),
    "leak: the cached source address": (
        "        return Py_NewRef(*tuple);\n    }\n    PyObject *addr = make_address",
        "        Py_INCREF(*tuple);\n        return Py_NewRef(*tuple);\n    }\n    PyObject *addr = make_address",
    ),
    "leak: the frame": (
        "    self->frame = Py_NewRef(frame);",
        "    self->frame = Py_NewRef(frame);\n    Py_INCREF(frame);",
    ),
    "leak: a retained buffer": (
        "    if (self->slots[slot] != NULL && self->slots[slot]->exports > 0) {\n        Py_CLEAR(",
        "    if (self->slots[slot] != NULL && self->slots[slot]->exports > 0) {\n        Py_INCREF(self->slots[slot]);\n        Py_CLEAR(",
    ),
    "B1 a slot reused while retained": (
        "    for (int i = 0; i < self->depth; i++) {\n        drop_if_retained(self, i);",
        "    for (int i = 0; i < self->depth; i++) {",
    ),
    "B2 queued datagrams handed out after close": (
        "    if (self->closed) { /* R5: the reader's next recv after close() */",
        "    if (self->queue_len > 0) {\n        return hand_out(self);\n    }\n    if (self->closed) {",
    ),
    "B3 .sent counts one datagram too many": (
        "            *sent += n;\n            count_up(&self->sent, n);\n            attempt = 0;\n        }\n        else if",
        "            *sent += n + 1;\n            count_up(&self->sent, n);\n            attempt = 0;\n        }\n        else if",
    ),
    "B3 GSO takes an empty datagram into a run": (
        "views[n].len > 0 && views[n].len <= size",
        "views[n].len <= size",
    ),
    "GRO a joined read handed out whole": (
        "    if (q->segment > 0 && length > q->segment) {",
        "    if (0) {",
    ),
    "GRO the segment size not read": (
        "self->queue[i].segment = self->gro ? gro_segment(&msgs[i].msg_hdr) : 0;",
        "self->queue[i].segment = 0;",
    ),
    "GRO every export from the start of the buffer": (
        "self->data + self->offset, self->length",
        "self->data, self->length",
    ),
    "GRO the last datagram of a read handed out twice": (
        "    if (self->queue_offset >= q->length) {",
        "    if (self->queue_offset > q->length) {",
    ),
    "S3 an IPv4 port of 65536 accepted": (
        "!small_uint(PyTuple_GET_ITEM(dst, 1), 65535, &port)) {",
        "!small_uint(PyTuple_GET_ITEM(dst, 1), 65536, &port)) {",
    ),
    "S3 a flowinfo one past the 20-bit flow label accepted": (
        "small_uint(PyTuple_GET_ITEM(dst, 2), 0xfffff, &flowinfo)",
        "small_uint(PyTuple_GET_ITEM(dst, 2), 0x100000, &flowinfo)",
    ),
    "S3 a scope_id above 2**32 - 1 truncated and sent": (
        "small_uint(PyTuple_GET_ITEM(dst, 3), 0xffffffffUL, &scope_id)",
        "small_uint(PyTuple_GET_ITEM(dst, 3), (unsigned long)-1, &scope_id)",
    ),
    "C2 Role re-entry stops counting depth": (
        "    if (role_is_mine(self)) {\n        self->count++;\n        Py_RETURN_TRUE;",
        "    if (role_is_mine(self)) {\n        Py_RETURN_TRUE;",
    ),
    "M1 ifindex read at the wrong offset": (
        "            arrival_ipv4(out, family, &info.ipi_addr);\n            out->ifindex = info.ipi_ifindex;",
        "            arrival_ipv4(out, family, &info.ipi_addr);\n            out->ifindex = (int)info.ipi_spec_dst.s_addr;",
    ),
    "M1 dst taken from ipi_spec_dst": (
        "arrival_ipv4(out, family, &info.ipi_addr);",
        "arrival_ipv4(out, family, &info.ipi_spec_dst);",
    ),
    "M1 a joined read's values given only to its first frame": (
        "    if (datagram) {\n        PyObject *dst, *ifindex, *tos;",
        "    if (datagram && self->queue_offset > 0) {\n        q->control_len = 0;\n    }\n    if (datagram) {\n        PyObject *dst, *ifindex, *tos;",
    ),
    "M1 truncated control data parsed anyway": (
        "    if (msg->msg_flags & MSG_CTRUNC) {\n        return;\n    }",
        "    if (0) {\n        return;\n    }",
    ),
    "M2 the cached source reused for another src": (
        "(src == NULL || src == self->from.obj || cache_source(self, src, fresh))",
        "(src == NULL || self->from.obj != NULL || cache_source(self, src, fresh))",
    ),
    "M3 a native send not counted": (
        "        if (n >= 0) {\n            count_up(&self->sent, 1); /* M3 */",
        "        if (n > 0x7fffffff) {\n            count_up(&self->sent, 1); /* M3 */",
    ),
    "B5 a GSO refusal reaches the caller": (
        "        else if (!gso_refused(*err)) {",
        "        else {",
    ),
    "B5 GSO never tried again for a destination that refused it": (
        "    return !(self->gso_refused_size > 0 && size >= self->gso_refused_size &&",
        "    return !(self->gso_refused_size > 0 &&",
    ),
    "E4 a send raises an earlier datagram's report": (
        "        if (n < 0 && self->peer_errors) {\n            n = send_past_reports(",
        "        if (0) {\n            n = send_past_reports(",
    ),
    "E4 a receive raises an earlier datagram's report": (
        "                int again = retry_past_reports(self, err, &attempt, 0);",
        "                int again = 0 * retry_past_reports(self, err, &attempt, 0);",
    ),
    "E4 a batch send raises an earlier datagram's report": (
        "        if (self->peer_errors) { /* E4: maybe an earlier datagram's report */",
        "        if (0) { /* E4: maybe an earlier datagram's report */",
    ),
    "E4 B5 a reported EMSGSIZE taken for the path refusing GSO": (
        "        if (n < 0 && self->peer_errors && gso_refused(*err)) {",
        "        if (0) {",
    ),
    "E6 the queue left unread before a receive waits": (
        "        if (self->peer_errors && read_queue(self) < 0) {\n            break;",
        "        if (0 && self->peer_errors && read_queue(self) < 0) {\n            break;",
    ),
    "E2 the error taken from errno, not from the report": (
        "(fields[1] = PyLong_FromUnsignedLong(ee->ee_errno)) != NULL",
        "(fields[1] = PyLong_FromLong(errno)) != NULL",
    ),
    "E3 the reports read are not kept": (
        "    if (!failed && PyList_GET_SIZE(list) > 0) {",
        "    if (0) {",
    ),
    "dst cache never invalidated": (
        "    if (dst != self->dst) {\n        if (!parse",
        "    if (self->dst == NULL) {\n        if (!parse",
    ),
}


def _build() -> None:
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"], check=True, capture_output=True
    )


def _run_native_tests() -> tuple[int, list[str]]:
    result = subprocess.run(
        # Not the test of this tool's own texts, which every mutant fails by
        # being one: the suite must catch the mutant by what it does.
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-k",
            "native",
            "--ignore=tests/unit/test_break_native.py",
            "tests",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "UDPIO_TEST_WATCHDOG": "60"},
        timeout=1800,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    if result.returncode < 0:
        # The interpreter died by a signal: SIGABRT is CPython's fatal error
        # (3.15: a lock released that was not held), whose text pytest's
        # capture of descriptor 2 keeps to itself.
        lines = [f"killed by {signal.Signals(-result.returncode).name}", *lines]
    elif result.returncode != 0 and not lines:
        # No summary: the watchdog ended the run (a hang, or a long shrink);
        # its stack dump names the test that was running.
        running = re.findall(r'File ".*?(tests/\S+\.py)", line \d+ in (test_\w+)', result.stderr)
        where = "::".join(running[-1]) if running else "unknown test"
        lines = [f"watchdog: stopped in {where}"]
    return result.returncode, lines


def _where(good: str, sources: dict[Path, str]) -> Path:
    # The one file that holds the mutant's text, exactly once.
    places = [path for path, text in sources.items() for _ in range(text.count(good))]
    if len(places) != 1:
        raise SystemExit(f"mutant text found {len(places)} times, not once: update it\n{good}")
    return places[0]


def main(only: list[str]) -> int:
    originals = {path: path.read_text() for path in SOURCES}
    survivors = []
    try:
        for name, (good, bad) in MUTANTS.items():
            if only and not any(word in name for word in only):
                continue
            path = _where(good, originals)
            path.write_text(originals[path].replace(good, bad))
            try:
                _build()
                code, failures = _run_native_tests()
            finally:
                path.write_text(originals[path])
            verdict = "caught" if code != 0 else "SURVIVED"
            print(f"{verdict:8} {name} ({path.name}): {failures[0] if failures else ''}", flush=True)
            if code == 0:
                survivors.append(name)
    finally:
        for path, text in originals.items():
            path.write_text(text)
        _build()
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
