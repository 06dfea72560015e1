/* Role: a re-entrant lock that records its owner thread, a Socket's
 * reader or writer role (the twin of threading.RLock and its _is_owned).
 * role_try, role_took, role_give and role_is_mine, which recv and send call
 * on every datagram, are in udpio.h: taking a free role is one atomic
 * compare-and-swap, giving it one store, and only a thread that has to wait
 * for it sleeps (role_wait, on a lock of its own), as Go's fd mutex keeps
 * its semaphores for waiters. */
#include "udpio.h"

#include <time.h>

static PyObject *
Role_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Role() takes no arguments");
        return NULL;
    }
    RoleObject *self = (RoleObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    atomic_init(&self->held, 0);
    atomic_init(&self->waiters, 0);
    atomic_init(&self->wake_pending, 0);
    /* `wake` starts held (no wake-up pending), so a waiter sleeps until a
     * give posts one. */
    self->wake = PyThread_allocate_lock();
    if (self->wake == NULL || !PyThread_acquire_lock(self->wake, NOWAIT_LOCK)) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "udpio: cannot allocate a lock");
        return NULL;
    }
    return (PyObject *)self;
}

static void
Role_dealloc(RoleObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->wake != NULL) {
        /* As CPython frees its own locks: released first, but only when it
         * is held (no wake-up pending); no thread waits on a Role that is
         * being freed, so wake_pending cannot change under this test. */
        if (atomic_load(&self->wake_pending) == 0) {
            PyThread_release_lock(self->wake);
        }
        PyThread_free_lock(self->wake);
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static double
monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void
role_post_wakeup(RoleObject *self)
{
    /* 0 -> 1 means `wake` is held and this give is the one to release it;
     * a wake-up already pending is enough for every waiter that will look
     * (each retries role_try after taking it). */
    int none = 0;
    if (atomic_compare_exchange_strong(&self->wake_pending, &none, 1)) {
        PyThread_release_lock(self->wake);
    }
}

/* Without the GIL: try for the role, sleep on `wake`, try again, until the
 * role is taken (PY_LOCK_ACQUIRED), the deadline passes (PY_LOCK_FAILURE)
 * or a signal interrupts the sleep (PY_LOCK_INTR). A waiter that acquired
 * `wake` took the pending wake-up: it marks it taken before its next
 * role_try, so a give after that try posts a new one (the order matters:
 * marked after the try, a give between the two would find a wake-up still
 * pending, post none, and this waiter would sleep through it). A wake-up
 * only says "try again": another thread may have taken the role first, and
 * a wake-up meant for one waiter may wake another; neither costs the GIL. */
static PyLockStatus
sleep_for_role(RoleObject *self, double timeout, double deadline)
{
    for (;;) {
        if (role_try(self)) {
            return PY_LOCK_ACQUIRED;
        }
        PY_TIMEOUT_T micros = -1;
        if (timeout >= 0) {
            double left = deadline - monotonic_seconds();
            if (left <= 0) {
                return PY_LOCK_FAILURE;
            }
            micros = left * 1e6 >= (double)PY_TIMEOUT_MAX ? PY_TIMEOUT_MAX : (PY_TIMEOUT_T)(left * 1e6);
        }
        PyLockStatus woken = PyThread_acquire_lock_timed(self->wake, micros, 1);
        if (woken == PY_LOCK_INTR) {
            return PY_LOCK_INTR;
        }
        if (woken == PY_LOCK_ACQUIRED) {
            atomic_store(&self->wake_pending, 0);
        }
    }
}

/* Counted among the waiters first, then try: a give that ran before the
 * count was seen left the role free for the first try; one after it posts
 * a wake-up. A waiter that leaves (taken, timed out, interrupted) may leave
 * a wake-up pending: the next waiter takes it and tries once for nothing. Signal handlers run between sleeps, with the GIL (C6). */
int
role_wait(RoleObject *self, double timeout)
{
    double deadline = timeout < 0 ? 0 : monotonic_seconds() + timeout;
    int result;
    atomic_fetch_add(&self->waiters, 1);
    for (;;) {
        PyLockStatus r;
        Py_BEGIN_ALLOW_THREADS
        r = sleep_for_role(self, timeout, deadline);
        Py_END_ALLOW_THREADS
        if (r != PY_LOCK_INTR) {
            result = r == PY_LOCK_ACQUIRED;
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            result = -1;
            break;
        }
    }
    atomic_fetch_sub(&self->waiters, 1);
    return result;
}

static PyObject *
Role_acquire(RoleObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    double timeout = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pd:acquire", kwlist, &blocking, &timeout)) {
        return NULL;
    }
    if (!blocking && timeout != -1) {
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return NULL;
    }
    if (timeout < 0 && timeout != -1) {
        PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
        return NULL;
    }
    if (role_is_mine(self)) {
        self->count++;
        Py_RETURN_TRUE;
    }
    int got = role_try(self);
    if (!got && blocking) {
        got = role_wait(self, timeout);
        if (got < 0) {
            return NULL;
        }
    }
    if (got) {
        role_took(self);
    }
    return PyBool_FromLong(got);
}

static PyObject *
Role_release(RoleObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!role_is_mine(self)) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    if (--self->count == 0) {
        role_give(self);
    }
    Py_RETURN_NONE;
}

static PyObject *
Role_exit(RoleObject *self, PyObject *args)
{
    (void)args;
    return Role_release(self, NULL);
}

static PyObject *
Role_is_owned(RoleObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(role_is_mine(self));
}

static PyObject *
Role_repr(RoleObject *self)
{
    /* Any thread may ask: only the atomics (`count` is the holder's). */
    return PyUnicode_FromFormat("<%s udpio Role owner=%lu at %p>",
                                atomic_load(&self->held) ? "locked" : "unlocked",
                                atomic_load_explicit(&self->owner, memory_order_relaxed), (void *)self);
}

static PyMethodDef Role_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Role_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1)\n--\n\nTake the role (re-entrant); as RLock.acquire."},
    {"release", (PyCFunction)Role_release, METH_NOARGS, "Give the role back; as RLock.release."},
    {"_is_owned", (PyCFunction)Role_is_owned, METH_NOARGS, "Whether this thread holds the role."},
    {"__enter__", (PyCFunction)(void (*)(void))Role_acquire, METH_VARARGS | METH_KEYWORDS, NULL},
    {"__exit__", (PyCFunction)Role_exit, METH_VARARGS, NULL},
    {NULL},
};

static PyType_Slot Role_slots[] = {
    {Py_tp_doc, "Role()\n--\n\nA re-entrant lock that records its owner: a Socket's reader or "
                "writer role."},
    {Py_tp_new, Role_new},
    {Py_tp_dealloc, Role_dealloc},
    {Py_tp_repr, Role_repr},
    {Py_tp_methods, Role_methods},
    {0, NULL},
};

PyType_Spec udpio_Role_spec = {
    .name = "udpio._speedups.Role",
    .basicsize = sizeof(RoleObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = Role_slots,
};
