/* Socket.send: one datagram per sendto on the fast path; everything else
 * (waiting for room, timeouts, argument errors, odd destinations) is the
 * Python twin's, udpio/_socket.py's Socket.send. */
#include "udpio.h"
#include "cmsg.h"

/* The Python twin's send: waiting for room (S4), timeouts, argument errors
 * (S2, S3), destinations the fast path does not parse, and a src it has
 * not cached. */
static PyObject *
send_slow(CoreObject *self, PyObject *frame, PyObject *dst, PyObject *timeout, PyObject *src)
{
    PyObject *args[] = {(PyObject *)self, frame, dst, timeout, src};
    return PyObject_VectorcallMethod(self->state->str_send_slow, args,
                                     4 | PY_VECTORCALL_ARGUMENTS_OFFSET, /* src: by keyword */
                                     src != NULL ? self->state->src_kwnames : NULL);
}

/* M2: make `src` the cached source, from `fresh`, the (level, type, data)
 * that Socket._source_cmsg returned for it. Returns 1, or 0 (no exception)
 * where `fresh` is not of that shape: the twin then sends. Caller holds the
 * writer role, which owns the cache. */
static int
cache_source(CoreObject *self, PyObject *src, PyObject *fresh)
{
    struct source parsed;
    if (fresh == NULL || parse_source(fresh, &parsed) != 1) {
        return 0;
    }
    parsed.obj = Py_NewRef(src);
    Py_XDECREF(self->from.obj);
    self->from = parsed;
    return 1;
}

/* One nonblocking sendto, or with the cached source (M2) one sendmsg
 * carrying its pktinfo, the GIL released (N5). Returns the bytes written,
 * or -1 with *err set. Caller holds the writer role. */
static inline Py_ALWAYS_INLINE ssize_t
send_once(CoreObject *self, Py_buffer *view, struct sockaddr_storage *sa, socklen_t sa_len,
          int from, int *err)
{
    int fd = self->fd;
    ssize_t n;
    if (!from) {
        Py_BEGIN_ALLOW_THREADS
        n = sendto(fd, view->buf, (size_t)view->len, 0, (struct sockaddr *)sa, sa_len);
        *err = errno;
        Py_END_ALLOW_THREADS
        return n;
    }
    control_buffer control;
    struct iovec iov = {view->buf, (size_t)view->len};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    memset(&control, 0, sizeof(control));
    msg.msg_name = sa;
    msg.msg_namelen = sa_len;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf); /* CMSG_FIRSTHDR needs room */
    msg.msg_controllen = put_source(CMSG_FIRSTHDR(&msg), &self->from);
    Py_BEGIN_ALLOW_THREADS
    n = sendmsg(fd, &msg, 0);
    *err = errno;
    Py_END_ALLOW_THREADS
    return n;
}

#ifdef __linux__
/* E4: the send failed with *err on a Socket with peer_errors: maybe an
 * earlier datagram's report. Sends again while retry_past_reports says so.
 * Returns the bytes written, -1 with *err set (the send's own error, or one
 * that needs the twin: EAGAIN, EINTR), or -3 with an exception. Caller
 * holds the writer role. Off the hot path: not inlined into it. */
static ssize_t
send_past_reports(CoreObject *self, Py_buffer *view, struct sockaddr_storage *sa, socklen_t sa_len,
                  int from, int *err)
{
    int attempt = 0;
    ssize_t n = -1;
    while (*err != EAGAIN && *err != EWOULDBLOCK && *err != EINTR) {
        int again = retry_past_reports(self, *err, &attempt, 1);
        if (again <= 0) {
            return again < 0 ? -3 : -1;
        }
        n = send_once(self, view, sa, sa_len, from, err);
        if (n >= 0) {
            break;
        }
    }
    return n;
}
#endif

/* One datagram, holding the writer role for it; with peer_errors, tried
 * again while E4 says an error was a report's. The writer role keeps
 * close() from freeing the descriptor meanwhile (C3). Returns the bytes
 * written, -1 with *err set, -2: not the fast case, or -3 with an
 * exception. */
static Py_ssize_t
send_datagram(CoreObject *self, Py_buffer *view, PyObject *dst, PyObject *src, PyObject *fresh,
              int *err)
{
    struct sockaddr_storage sa;
    socklen_t sa_len;
    ssize_t n = -2;
    if (!role_try(self->writer)) {
        return -2; /* another sender: the twin waits for the role */
    }
    role_took(self->writer);
    if (!self->closed && destination(self, dst, &sa, &sa_len) &&
        (src == NULL || src == self->from.obj || cache_source(self, src, fresh))) {
        n = send_once(self, view, &sa, sa_len, src != NULL, err);
#ifdef __linux__
        if (n < 0 && self->peer_errors) {
            n = send_past_reports(self, view, &sa, sa_len, src != NULL, err);
        }
#endif
        if (n >= 0) {
            count_up(&self->sent, 1); /* M3 */
        }
    }
    role_give(self->writer);
    return (Py_ssize_t)n;
}

static PyObject *send_one(CoreObject *self, PyObject *frame, PyObject *dst, PyObject *timeout,
                          PyObject *src);
static PyObject *send_error(CoreObject *self, PyObject *frame, PyObject *dst, int err);

PyObject *
Core_send(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"frame", "dst", "timeout", "src"};
    PyObject *argv[4] = {NULL, NULL, NULL, NULL};
    if (nargs > 3) {
        PyErr_Format(PyExc_TypeError, "send() takes at most 3 positional arguments (%zd given)",
                     nargs);
        return NULL;
    }
    if (parse_args("send", args, nargs, kwnames, names, 2, 4, argv) < 0) {
        return NULL;
    }
    PyObject *timeout = argv[2] != NULL ? argv[2] : Py_None;
    PyObject *src = argv[3] != Py_None ? argv[3] : NULL;
    if (not_initialised(self)) {
        return NULL;
    }
    return send_one(self, argv[0], argv[1], timeout, src);
}

/* Socket.send once its arguments are parsed; `src` NULL: the kernel chooses. */
static PyObject *
send_one(CoreObject *self, PyObject *frame, PyObject *dst, PyObject *timeout, PyObject *src)
{
    Py_buffer view;
    if (timeout != Py_None || PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return send_slow(self, frame, dst, timeout, src);
    }
    /* M2: a src not cached is checked by the twin first, outside the role
     * (it may take the role itself to learn the bound port). */
    PyObject *fresh = NULL;
    if (src != NULL && src != self->from.obj &&
        (fresh = PyObject_CallMethodOneArg((PyObject *)self, self->state->str_source_cmsg, src)) ==
            NULL) {
        PyBuffer_Release(&view);
        return NULL; /* a bad src: ValueError or TypeError naming it */
    }
    int err = 0;
    Py_ssize_t n = send_datagram(self, &view, dst, src, fresh, &err);
    Py_XDECREF(fresh);
    PyBuffer_Release(&view);
    if (n >= 0) {
        return PyLong_FromSsize_t(n);
    }
    if (n == -3) {
        return NULL;
    }
    if (n == -2 || err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
        return send_slow(self, frame, dst, timeout, src);
    }
    return send_error(self, frame, dst, err);
}

/* S5: the kernel's error, its errno kept; where the twin can say what it
 * means (a datagram larger than UDP carries, port 0), in its words
 * (Socket._explain_send_error, which returns None otherwise). Always NULL. */
static PyObject *
send_error(CoreObject *self, PyObject *frame, PyObject *dst, int err)
{
    if (err == EMSGSIZE || err == EINVAL) {
        PyObject *code = PyLong_FromLong(err);
        if (code == NULL) {
            return NULL;
        }
        PyObject *args[] = {(PyObject *)self, frame, dst, code};
        PyObject *explained = PyObject_VectorcallMethod(self->state->str_explain_send_error, args,
                                                        4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(code);
        if (explained == NULL) {
            return NULL;
        }
        if (explained != Py_None) {
            PyErr_SetObject((PyObject *)Py_TYPE(explained), explained);
            Py_DECREF(explained);
            return NULL;
        }
        Py_DECREF(explained);
    }
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError); /* nothing to add: verbatim */
}

/* M2: whether `ip` (network order) can be a source: not the wildcard, the
 * limited broadcast address or a multicast group (_cmsg.reply_source). */
static int
ipv4_can_be_source(uint32_t ip)
{
    uint32_t host = ntohl(ip);
    return host != INADDR_ANY && host != INADDR_BROADCAST && !IN_MULTICAST(host);
}

/* M2, P9: whether an answer to a datagram sent to `sa` (Datagram.dst, with
 * the Socket's port) must carry `sa` as its source. Not where it cannot be
 * one (the kernel chooses, as _cmsg.reply_source says), and not where the
 * Socket is bound to that very address: the kernel sends from it anyway,
 * and a sendto without the control message is cheaper (Socket.reply). */
static int
reply_needs_source(CoreObject *self, const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)sa;
        return ipv4_can_be_source(a->sin_addr.s_addr) && !bound_to_ipv4(self, a->sin_addr.s_addr);
    }
    const struct sockaddr_in6 *a = (const void *)sa;
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
        uint32_t ip;
        memcpy(&ip, &a->sin6_addr.s6_addr[12], sizeof(ip));
        if (!ipv4_can_be_source(ip)) {
            return 0;
        }
    }
    else if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr) || IN6_IS_ADDR_MULTICAST(&a->sin6_addr)) {
        return 0;
    }
    return !bound_to_ipv6(self, &a->sin6_addr);
}

/* What the kernel says when told to send from an address it will not send
 * from (Socket._NOT_A_SOURCE): reply then lets it choose. */
static int
not_a_source(void)
{
    if (!PyErr_ExceptionMatches(PyExc_OSError)) {
        return 0;
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    int e = ((PyOSErrorObject *)exc)->myerrno != NULL ? (int)PyLong_AsLong(((PyOSErrorObject *)exc)->myerrno) : 0;
    PyErr_SetRaisedException(exc);
#else
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    int e = exc != NULL && ((PyOSErrorObject *)exc)->myerrno != NULL
                ? (int)PyLong_AsLong(((PyOSErrorObject *)exc)->myerrno)
                : 0;
    PyErr_Restore(type, exc, tb);
#endif
    return e == ENETUNREACH || e == EINVAL || e == EADDRNOTAVAIL;
}

/* Socket.reply natively: to.src from to.dst, where to.dst is the Datagram
 * destination the last receive handed out (its address is parsed already)
 * or None; anything else (a timeout, a Datagram made elsewhere) is the
 * Python twin's, which does the same steps. */
PyObject *
Core_reply(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"frame", "to", "timeout"};
    PyObject *argv[3] = {NULL, NULL, NULL};
    if (parse_args("reply", args, nargs, kwnames, names, 2, 3, argv) < 0 || not_initialised(self)) {
        return NULL;
    }
    PyObject *frame = argv[0], *to = argv[1];
    PyObject *timeout = argv[2] != NULL ? argv[2] : Py_None;
    if (timeout == Py_None && Py_IS_TYPE(to, (PyTypeObject *)self->state->Datagram) &&
        PyTuple_GET_SIZE(to) == 5) {
        PyObject *peer = PyTuple_GET_ITEM(to, 1), *dst = PyTuple_GET_ITEM(to, 2);
        if (dst == Py_None || (dst == self->to_addr && !reply_needs_source(self, &self->to))) {
            return send_one(self, frame, peer, timeout, NULL);
        }
        if (dst == self->to_addr) {
            PyObject *r = send_one(self, frame, peer, timeout, dst);
            if (r != NULL || !not_a_source()) {
                return r;
            }
            PyErr_Clear(); /* a subnet broadcast address, say: the kernel chooses */
            return send_one(self, frame, peer, timeout, NULL);
        }
    }
    PyObject *slow[] = {(PyObject *)self, frame, to, timeout};
    return PyObject_VectorcallMethod(self->state->str_reply_slow, slow,
                                     4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* The Python twin's docstring, word for word (a test checks). */
const char Core_send_doc[] =
    "send($self, /, frame, dst, timeout=None, *, src=None)\n"
    "--\n"
    "\n"
    "Send ``frame`` as one datagram to ``dst``; return the bytes written.\n"
    "\n"
    "``frame`` is anything with the buffer protocol (a frame from\n"
    "``recv`` echoes without a copy); ``dst`` is an address tuple as\n"
    "``recv`` returns it. When the kernel's send buffer is full, waits for\n"
    "room: ``timeout`` bounds that wait as in ``recv``. ``src``, a\n"
    "numeric address of this host (or an address tuple with port 0 or\n"
    "this Socket's), is the address it leaves from (``reply`` does this\n"
    "for you); by default the kernel chooses.\n"
    "\n"
    "Raises ``TypeError``/``ValueError``/``OverflowError`` naming a bad\n"
    "``frame``, ``dst`` or ``src`` (the Socket stays usable),\n"
    "``ClosedError``, ``TimeoutError``, and kernel errors (``EMSGSIZE``,\n"
    "``ECONNREFUSED``, a ``src`` not of this host, ...) verbatim with\n"
    "their errno.\n"
    "\n"
    "Thread-safe: any number of threads may send, also while another\n"
    "thread is in ``recv``.\n";


/* The Python twin's docstring, word for word (a test checks). */
const char Core_reply_doc[] =
    "reply($self, /, frame, to, timeout=None)\n"
    "--\n"
    "\n"
    "Answer ``to`` (a ``Datagram``): send ``frame`` to ``to.src`` from ``to.dst``.\n"
    "\n"
    "A client with a connected socket (``dig``, DNS, QUIC and STUN\n"
    "clients) drops an answer from any other address than the one it\n"
    "wrote to; on a Socket bound to ``0.0.0.0`` or ``[::]`` on a host\n"
    "with several addresses, only this answers every client. Where\n"
    "``to.dst`` is unknown, a wildcard, multicast or broadcast address,\n"
    "the kernel chooses the source, as for ``send``.\n"
    "\n"
    "Raises what ``send`` raises. Thread-safe, as ``send``.\n";
