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

/* One nonblocking sendto, or with a source one sendmsg carrying its pktinfo
 * (M2), the GIL released (N5). The writer role keeps close() from freeing
 * the descriptor meanwhile (C3). Returns the bytes written, -1 with *err
 * set, or -2: not the fast case. */
static Py_ssize_t
send_datagram(CoreObject *self, Py_buffer *view, PyObject *dst, PyObject *src, PyObject *fresh,
              int *err)
{
    struct sockaddr_storage sa;
    socklen_t sa_len;
    ssize_t n = -2;
    if (!PyThread_acquire_lock(self->writer->lock, NOWAIT_LOCK)) {
        return -2; /* another sender: the twin waits for the role */
    }
    role_took(self->writer);
    if (!self->closed && destination(self, dst, &sa, &sa_len) &&
        (src == NULL || src == self->from.obj || cache_source(self, src, fresh))) {
        int fd = self->fd;
        if (src == NULL) {
            Py_BEGIN_ALLOW_THREADS
            n = sendto(fd, view->buf, (size_t)view->len, 0, (struct sockaddr *)&sa, sa_len);
            *err = errno;
            Py_END_ALLOW_THREADS
        }
        else {
            control_buffer control;
            struct iovec iov = {view->buf, (size_t)view->len};
            struct msghdr msg;
            memset(&msg, 0, sizeof(msg));
            memset(&control, 0, sizeof(control));
            msg.msg_name = &sa;
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
        }
        if (n >= 0) {
            self->sent++; /* M3 */
        }
    }
    role_give(self->writer);
    return (Py_ssize_t)n;
}

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
    PyObject *frame = argv[0], *dst = argv[1];
    PyObject *timeout = argv[2] != NULL ? argv[2] : Py_None;
    PyObject *src = argv[3] != Py_None ? argv[3] : NULL;
    if (not_initialised(self)) {
        return NULL;
    }
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
    if (n == -2 || err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
        return send_slow(self, frame, dst, timeout, src);
    }
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError); /* S5: the kernel's error, verbatim */
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

