"""The seam between the C twin (udpio/_c/) and the pure Socket (udpio/_socket.py), declared.

Everything one side calls or reads of the other by name is listed here,
and ``tests/unit/test_seam.py`` reads the C sources and holds them to it:
renaming a method the C code calls, or a C method, fails a test, not a
user. ``udpio._native`` builds the native Socket from these tables.

How the native backend overrides a call: the C class ``Core`` defines a
method of the same name as the pure Socket's, and the native Socket puts
``Core`` first in its bases. Where the C method meets a case it does not
take (a timeout to honour, an argument to complain about, a buffer that
is full), it calls the pure method under the name ``OVERRIDES`` gives it,
and where it must wait, it calls back into ``CALLBACKS``. Every call
follows this one pattern: C owns a call's loop or none of it
(docs/design.md, "The seam between the twins", says why).
"""

from __future__ import annotations

from typing import Final, Optional

__all__ = ["CALLBACKS", "IMPORTS", "OVERRIDES", "SHARED_STATE"]

#: The Python methods the C code calls by name (module.c interns each one,
#: once): on the Socket, except ``get`` and ``put``, which are the pool's.
CALLBACKS: Final[dict[str, str]] = {
    "get": "BufferPool.get: a read buffer for the next batch's slot",
    "put": "BufferPool.put: a read buffer nothing views any more, back to the pool (R6)",
    "_release": "close()'s last step, run as the call close() interrupted unwinds (C5)",
    "_recv_refused": "the exception for a recv while another runs (C1) or after close",
    "_await_readable": "wait in the selector for a datagram, or raise TimeoutError/ClosedError (R7, C4)",
    "_await_writable": "wait in the selector for room in the send buffer (S4)",
    "_check_timeout": "refuse a bad timeout with the pure backend's words (R7)",
    "_check_max_datagrams": "refuse a bad recv_batch bound with the pure backend's words (K1)",
    "_source_cmsg": "a src's control message, checked (M2)",
    "_prepared_destination": "a batch's destination the C parser does not take, mapped or refused (S3)",
    "_explain_send_error": "a kernel error of send, in words where udpio can say more (S5)",
    "_send_slow": "send's fallback: the pure send",
    "_reply_slow": "reply's fallback: the pure reply",
    "_send_batch_slow": "send_batch's fallback: the pure send_batch",
    "_send_many_slow": "send_many's fallback: the pure send_many",
    "_keep_reports": "the reports the C code read from the error queue, into the Socket's store (E3)",
}

#: The methods Core defines in place of the pure Socket's, and the name
#: under which the native Socket keeps the pure method for the cases C
#: hands back (None: C takes every case, calling back only to wait).
OVERRIDES: Final[dict[str, Optional[str]]] = {
    "recv": None,
    "recv_datagram": None,
    "recv_batch": None,
    "send": "_send_slow",
    "reply": "_reply_slow",
    "send_batch": "_send_batch_slow",
    "send_many": "_send_many_slow",
    "_gather_reports": None,
}

#: The Socket's state that Core keeps in C and the pure code reads or writes
#: by these names (members and properties of Core).
SHARED_STATE: Final = frozenset(
    {
        "_sock",
        "_reader",
        "_writer",
        "_pool",
        "_buf",
        "_frame",
        "_gro",
        "_closed",
        "_recv_exit_releases",
        "_send_exit_releases",
        "_received",
        "_sent",
        "_gso_off",
        "_gso_sends",
        "_depth",
        "_peer_errors",
    }
)

#: The Python objects the C module imports when it loads (module.c).
IMPORTS: Final = frozenset(
    {"udpio._errors.ClosedError", "udpio._datagram.Datagram", "udpio._reports.PeerError", "time.monotonic"}
)
