/* Socket.send: one datagram per sendto on the fast path; everything else
 * (waiting for room, timeouts, argument errors, odd destinations) is the
 * Python twin's, udpio/_socket.py's Socket.send. */
#include "udpio.h"

/* The Python twin's send: waiting for room (S4), timeouts, argument errors
 * (S2, S3) and destinations the fast path does not parse. */
static PyObject *
send_slow(CoreObject *self, PyObject *frame, PyObject *dst, PyObject *timeout)
{
    PyObject *args[] = {(PyObject *)self, frame, dst, timeout};
    return PyObject_VectorcallMethod(self->state->str_send_slow, args,
                                     4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* One nonblocking sendto, the GIL released (N5). The writer role keeps
 * close() from freeing the descriptor meanwhile (C3). Returns the bytes
 * written, -1 with *err set, or -2: not the fast case. */
static Py_ssize_t
send_datagram(CoreObject *self, Py_buffer *view, PyObject *dst, int *err)
{
    struct sockaddr_storage sa;
    socklen_t sa_len;
    ssize_t n = -2;
    if (!PyThread_acquire_lock(self->writer->lock, NOWAIT_LOCK)) {
        return -2; /* another sender: the twin waits for the role */
    }
    role_took(self->writer);
    if (!self->closed && destination(self, dst, &sa, &sa_len)) {
        int fd = self->fd;
        Py_BEGIN_ALLOW_THREADS
        n = sendto(fd, view->buf, (size_t)view->len, 0, (struct sockaddr *)&sa, sa_len);
        *err = errno;
        Py_END_ALLOW_THREADS
    }
    role_give(self->writer);
    return (Py_ssize_t)n;
}

PyObject *
Core_send(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"frame", "dst", "timeout"};
    PyObject *argv[3] = {NULL, NULL, NULL};
    if (parse_args("send", args, nargs, kwnames, names, 2, 3, argv) < 0) {
        return NULL;
    }
    PyObject *frame = argv[0], *dst = argv[1];
    PyObject *timeout = argv[2] != NULL ? argv[2] : Py_None;
    if (not_initialised(self)) {
        return NULL;
    }
    Py_buffer view;
    if (timeout != Py_None || PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return send_slow(self, frame, dst, timeout);
    }
    int err = 0;
    Py_ssize_t n = send_datagram(self, &view, dst, &err);
    PyBuffer_Release(&view);
    if (n >= 0) {
        return PyLong_FromSsize_t(n);
    }
    if (n == -2 || err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
        return send_slow(self, frame, dst, timeout);
    }
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError); /* S5: the kernel's error, verbatim */
}

/* The Python twin's docstring, word for word (a test checks). */
const char Core_send_doc[] =
    "send($self, /, frame, dst, timeout=None)\n"
    "--\n"
    "\n"
    "Send ``frame`` as one datagram to ``dst``; return the bytes written.\n"
    "\n"
    "``frame`` is anything with the buffer protocol (a frame from\n"
    "``recv`` echoes without a copy); ``dst`` is an address tuple as\n"
    "``recv`` returns it. When the kernel's send buffer is full, waits for\n"
    "room: ``timeout`` bounds that wait as in ``recv``.\n"
    "\n"
    "Raises ``TypeError``/``ValueError``/``OverflowError`` naming a bad\n"
    "``frame`` or ``dst`` (the Socket stays usable), ``ClosedError``,\n"
    "``TimeoutError``, and kernel errors (``EMSGSIZE``, ``ECONNREFUSED``,\n"
    "...) verbatim with their errno.\n"
    "\n"
    "Thread-safe: any number of threads may send, also while another\n"
    "thread is in ``recv``.\n";

