/* What every call that can wait shares, receive or send: a timeout the
 * fast test in udpio.h doubts (R7), the deadline on the pure backend's
 * clock, a send loop's answer to "try again" (S4, PEP 475), and how a call
 * unwinds: C5's release of the descriptors, and the `.sent` that every
 * exception of send_batch and send_many carries (B3, K2). The Python
 * twin's equivalents are Socket._take_writer, _await_writable, _give_writer
 * and the `except BaseException` of send_batch and send_many. */
#include "udpio.h"

int
check_timeout_slow(CoreObject *self, PyObject *timeout)
{
    if (PyLong_CheckExact(timeout)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(timeout, &overflow);
        if (overflow > 0 || (overflow == 0 && v >= 0)) {
            return 0;
        }
        PyErr_Clear();
    }
    PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, self->state->str_check_timeout, timeout);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

PyObject *
make_deadline(CoreObject *self, PyObject *timeout)
{
    if (timeout == Py_None) {
        return Py_NewRef(Py_None);
    }
    PyObject *now = PyObject_CallNoArgs(self->state->monotonic);
    if (now == NULL) {
        return NULL;
    }
    PyObject *deadline = PyNumber_Add(now, timeout);
    Py_DECREF(now);
    return deadline;
}

int
send_retry(CoreObject *self, int err, PyObject *deadline, PyObject *timeout, const char *what,
           int *attempt)
{
    if (err == EINTR) { /* PEP 475: run the handlers, then retry; a handler may close (C5) */
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        if (self->closed) {
            PyErr_SetNone(self->state->ClosedError);
            return -1;
        }
        return 0;
    }
    if (err != EAGAIN && err != EWOULDBLOCK) {
#ifdef __linux__
        if (self->peer_errors) { /* E4: maybe an earlier datagram's report */
            int again = retry_past_reports(self, err, attempt, 1);
            if (again != 0) {
                return again > 0 ? 0 : -1;
            }
        }
#endif
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError); /* the kernel's error, verbatim */
        return -1;
    }
#ifdef __linux__
    /* E6: unread reports would end the wait at once, again and again */
    if (self->peer_errors && read_queue(self) < 0) {
        return -1;
    }
#endif
    PyObject *name = PyUnicode_FromString(what);
    if (name == NULL) {
        return -1;
    }
    PyObject *args[] = {(PyObject *)self, deadline, timeout, name};
    PyObject *r = PyObject_VectorcallMethod(self->state->str_await_writable, args,
                                            4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(name);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

PyObject *
release_on_exit(CoreObject *self, PyObject *result)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *pending = PyErr_GetRaisedException();
#else
    PyObject *type, *pending, *tb;
    PyErr_Fetch(&type, &pending, &tb);
#endif
    PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, self->state->str_release);
    if (r == NULL) { /* as in Python: the error from the finally block wins */
#if PY_VERSION_HEX < 0x030C0000
        Py_XDECREF(type);
        Py_XDECREF(tb);
#endif
        Py_XDECREF(pending);
        Py_XDECREF(result);
        return NULL;
    }
    Py_DECREF(r);
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(pending);
#else
    PyErr_Restore(type, pending, tb);
#endif
    return result;
}

void
note_sent(Py_ssize_t sent)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
#endif
    PyObject *n = PyLong_FromSsize_t(sent);
    if (n == NULL || exc == NULL || PyObject_SetAttrString(exc, "sent", n) < 0) {
        PyErr_Clear(); /* the exception itself matters more than its count */
    }
    Py_XDECREF(n);
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(type, exc, tb);
#endif
}
