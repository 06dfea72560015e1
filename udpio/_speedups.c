/* udpio._speedups: the native hot path of udpio.Socket.
 *
 * Three types, each the C twin of something plain in the Python code:
 *
 *   ReadBuffer  a pool buffer that counts its own buffer exports, so "does
 *               anything still view these bytes" is an integer test
 *               (twin: udpio/_pool.py is_exported, the bytearray probe).
 *   Role        a re-entrant lock that records its owner thread
 *               (twin: threading.RLock and its _is_owned).
 *   Core        recv and send for the common case, as a base class of
 *               udpio._native.Socket (twin: udpio/_socket.py Socket.recv and
 *               Socket.send). Everything else (waiting, close, argument
 *               errors, odd destinations) stays in the Python twin, which
 *               Core calls back into.
 *
 * The GIL is released around every syscall; each wait happens in Python, in
 * the selector, with the same wake-up as the pure backend.
 * docs/design.md explains the rules named in the comments (R3, C1, ...).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#ifdef __linux__
#include <netinet/udp.h>
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, kernel 4.18 */
#endif
#ifndef UDP_GRO
#define UDP_GRO 104 /* linux/udp.h, kernel 5.0 */
#endif
#endif
#include <time.h>

typedef struct {
    PyTypeObject *ReadBuffer_Type;
    PyTypeObject *Role_Type;
    PyTypeObject *Core_Type;
    PyObject *memoryview_release; /* the unbound method memoryview.release */
    PyObject *ClosedError;        /* udpio._errors.ClosedError */
    PyObject *monotonic;          /* time.monotonic: the pure backend's clock */
    PyObject *str_get;
    PyObject *str_put;
    PyObject *str_release;
    PyObject *str_recv_refused;
    PyObject *str_await_readable;
    PyObject *str_check_timeout;
    PyObject *str_send_slow;
    PyObject *str_send_some_slow;
} udpio_state;

static struct PyModuleDef udpio_module;

/* ------------------------------------------------------------------ */
/* ReadBuffer                                                           */
/* ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t capacity;
    Py_ssize_t offset;  /* where the current datagram starts (GRO: several share a buffer) */
    Py_ssize_t length;  /* its bytes: what an export sees */
    Py_ssize_t exports; /* live exports; > 0 means "still viewed" (R4, R6) */
} ReadBufferObject;

static PyObject *
ReadBuffer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", NULL};
    Py_ssize_t size = 65536;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:ReadBuffer", kwlist, &size)) {
        return NULL;
    }
    if (size < 1) {
        PyErr_Format(PyExc_ValueError, "udpio: ReadBuffer size must be positive, not %zd", size);
        return NULL;
    }
    ReadBufferObject *self = (ReadBufferObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->data = PyMem_Calloc(1, (size_t)size);
    if (self->data == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->capacity = size;
    return (PyObject *)self;
}

static void
ReadBuffer_dealloc(ReadBufferObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyMem_Free(self->data);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* R2: every export is read-only and covers exactly the current datagram. */
static int
ReadBuffer_getbuffer(ReadBufferObject *self, Py_buffer *view, int flags)
{
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->data + self->offset, self->length, 1,
                          flags) < 0) {
        return -1;
    }
    self->exports++;
    return 0;
}

static void
ReadBuffer_releasebuffer(ReadBufferObject *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
}

static Py_ssize_t
ReadBuffer_length(ReadBufferObject *self)
{
    return self->capacity;
}

static PyObject *
ReadBuffer_get_exported(ReadBufferObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->exports > 0);
}

static PyMemberDef ReadBuffer_members[] = {
    {"exports", T_PYSSIZET, offsetof(ReadBufferObject, exports), READONLY,
     "How many buffer exports of this buffer are alive."},
    {NULL},
};

static PyGetSetDef ReadBuffer_getset[] = {
    {"exported", (getter)ReadBuffer_get_exported, NULL,
     "Whether anything still views this buffer (R4, R6).", NULL},
    {NULL},
};

static PyType_Slot ReadBuffer_slots[] = {
    {Py_tp_doc, "ReadBuffer(size=65536)\n--\n\n"
                "A pool buffer whose exports are read-only views of its current datagram."},
    {Py_tp_new, ReadBuffer_new},
    {Py_tp_dealloc, ReadBuffer_dealloc},
    {Py_tp_members, ReadBuffer_members},
    {Py_tp_getset, ReadBuffer_getset},
    {Py_sq_length, ReadBuffer_length},
#if PY_VERSION_HEX >= 0x03090000
    {Py_bf_getbuffer, ReadBuffer_getbuffer},
    {Py_bf_releasebuffer, ReadBuffer_releasebuffer},
#endif
    {0, NULL},
};

static PyType_Spec ReadBuffer_spec = {
    .name = "udpio._speedups.ReadBuffer",
    .basicsize = sizeof(ReadBufferObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = ReadBuffer_slots,
};

/* ------------------------------------------------------------------ */
/* Role                                                                 */
/* ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock; /* held while some thread holds the role */
    unsigned long owner;     /* that thread's ident, 0 when free; written by the holder */
    unsigned long count;     /* re-entrant depth; written by the holder */
} RoleObject;

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
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
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
    if (self->lock != NULL) {
        if (self->count > 0) {
            PyThread_release_lock(self->lock);
        }
        PyThread_free_lock(self->lock);
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* The holder records itself right after taking the lock. No Python code can
 * run on this thread in between, so a signal handler on this thread that
 * asks "do I hold it?" (close() from a handler, C5) never sees a half-taken
 * role; another thread only ever compares the owner with its own ident. */
static void
role_took(RoleObject *self)
{
    self->owner = PyThread_get_thread_ident();
    self->count = 1;
}

static void
role_give(RoleObject *self)
{
    self->count = 0;
    self->owner = 0;
    PyThread_release_lock(self->lock);
}

static int
role_is_mine(RoleObject *self)
{
    return self->count > 0 && self->owner == PyThread_get_thread_ident();
}

static double
monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wait for the lock with the GIL released; a signal interrupts the wait so
 * its Python handler can run (and raise), then the wait resumes with what is
 * left of the timeout. Returns 1 acquired, 0 timed out, -1 exception. */
static int
role_wait(RoleObject *self, double timeout)
{
    double deadline = timeout < 0 ? 0 : monotonic_seconds() + timeout;
    for (;;) {
        PY_TIMEOUT_T micros = -1;
        if (timeout >= 0) {
            double left = deadline - monotonic_seconds();
            micros = left <= 0 ? 0 : left * 1e6 >= (double)PY_TIMEOUT_MAX ? PY_TIMEOUT_MAX
                                                                          : (PY_TIMEOUT_T)(left * 1e6);
        }
        PyLockStatus r;
        Py_BEGIN_ALLOW_THREADS
        r = PyThread_acquire_lock_timed(self->lock, micros, 1);
        Py_END_ALLOW_THREADS
        if (r == PY_LOCK_ACQUIRED) {
            return 1;
        }
        if (r == PY_LOCK_FAILURE) {
            return 0;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
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
    int got = PyThread_acquire_lock(self->lock, NOWAIT_LOCK);
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
        self->owner = 0;
        PyThread_release_lock(self->lock);
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
    return PyUnicode_FromFormat("<%s udpio Role owner=%lu count=%lu at %p>",
                                self->count > 0 ? "locked" : "unlocked", self->owner, self->count,
                                (void *)self);
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

static PyType_Spec Role_spec = {
    .name = "udpio._speedups.Role",
    .basicsize = sizeof(RoleObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = Role_slots,
};

/* ------------------------------------------------------------------ */
/* Core: the state recv and send share with the Python Socket           */
/* ------------------------------------------------------------------ */

/* Datagrams one recvmmsg may take (B1). Each slot is a whole 64 KiB buffer,
 * so any datagram fits; untouched pages of a slot cost no memory. Chosen by
 * measurement: docs/benchmarks.md. */
#define RECV_MANY 16

/* What one recvmmsg entry put into a slot and recv has not handed out yet:
 * one datagram, or with GRO several from one sender, each `segment` bytes
 * but the last (0: one datagram of `length` bytes). */
struct queued {
    int slot;
    Py_ssize_t length;
    Py_ssize_t segment;
    socklen_t src_len;
    struct sockaddr_storage src;
};

typedef struct {
    PyObject_HEAD
    PyObject *module;     /* strong: keeps *state alive */
    udpio_state *state;
    PyObject *sock;       /* the socket.socket; fd and family cached from it */
    int fd;
    int family;
    /* Written by close() and read by every call: see udpio/_socket.py. */
    char closed;
    char recv_exit_releases;
    char send_exit_releases;
    char gso_off; /* the kernel refused UDP GSO once: sendmmsg from then on */
    char gro;     /* UDP_GRO is on: a slot may hold several datagrams (B1) */
    RoleObject *reader;
    RoleObject *writer;
    PyObject *pool;
    /* Owned by whoever holds the reader role: the batch (B1). slots[i] is a
     * read buffer or NULL; queue[queue_head .. queue_head + queue_len) are
     * the datagrams recvmmsg put into slots and recv has not handed out
     * yet, in arrival order; `current` is the slot of the last frame handed
     * out (-1: none). */
    ReadBufferObject *slots[RECV_MANY];
    struct queued queue[RECV_MANY];
    int queue_head;
    int queue_len;
    Py_ssize_t queue_offset; /* bytes of the head entry already handed out */
    int current;
    PyObject *frame;
    struct sockaddr_storage src; /* the last source address and its tuple */
    socklen_t src_len;
    PyObject *src_addr;
    /* Owned by whoever holds the writer role. */
    PyObject *dst; /* the last destination and its parsed form */
    struct sockaddr_storage dst_sa;
    socklen_t dst_len;
} CoreObject;

/* The state of this module, found from any subclass of Core (3.10 has no
 * PyType_GetModuleByDef). */
static PyObject *
find_module(PyTypeObject *type)
{
    PyObject *mro = type->tp_mro;
    for (Py_ssize_t i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!PyType_HasFeature(base, Py_TPFLAGS_HEAPTYPE)) {
            continue;
        }
        PyObject *module = ((PyHeapTypeObject *)base)->ht_module;
        if (module != NULL && PyModule_GetDef(module) == &udpio_module) {
            return module;
        }
    }
    PyErr_SetString(PyExc_TypeError, "udpio: not a Core type");
    return NULL;
}

static PyObject *
Core_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    PyObject *module = find_module(type);
    if (module == NULL) {
        return NULL;
    }
    CoreObject *self = (CoreObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->module = Py_NewRef(module);
    self->state = PyModule_GetState(module);
    self->fd = -1;
    self->current = -1;
    return (PyObject *)self;
}

static int
Core_traverse(CoreObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->module);
    Py_VISIT(self->sock);
    Py_VISIT(self->reader);
    Py_VISIT(self->writer);
    Py_VISIT(self->pool);
    for (int i = 0; i < RECV_MANY; i++) {
        Py_VISIT(self->slots[i]);
    }
    Py_VISIT(self->frame);
    Py_VISIT(self->src_addr);
    Py_VISIT(self->dst);
    return 0;
}

static int
Core_clear(CoreObject *self)
{
    Py_CLEAR(self->sock);
    Py_CLEAR(self->reader);
    Py_CLEAR(self->writer);
    Py_CLEAR(self->pool);
    for (int i = 0; i < RECV_MANY; i++) {
        Py_CLEAR(self->slots[i]);
    }
    Py_CLEAR(self->frame);
    Py_CLEAR(self->src_addr);
    Py_CLEAR(self->dst);
    /* module last: the state must outlive everything that may use it */
    Py_CLEAR(self->module);
    return 0;
}

static void
Core_dealloc(CoreObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Core_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* -- attributes shared with udpio/_socket.py ------------------------ */

static PyObject *
Core_get_sock(CoreObject *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->sock != NULL ? self->sock : Py_None);
}

/* Set once, by Socket.__init__: the descriptor and family are cached here
 * because close() releases the socket only once no role is held, so a role
 * holder that saw `closed` false may use the cached number (C3). */
static int
Core_set_sock(CoreObject *self, PyObject *value, void *closure)
{
    (void)closure;
    if (value == NULL || self->sock != NULL) {
        PyErr_SetString(PyExc_AttributeError, "udpio: _sock is set once");
        return -1;
    }
    PyObject *fileno = PyObject_CallMethod(value, "fileno", NULL);
    if (fileno == NULL) {
        return -1;
    }
    long fd = PyLong_AsLong(fileno);
    Py_DECREF(fileno);
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    PyObject *family = PyObject_GetAttrString(value, "family");
    if (family == NULL) {
        return -1;
    }
    long fam = PyLong_AsLong(family);
    Py_DECREF(family);
    if (fam == -1 && PyErr_Occurred()) {
        return -1;
    }
    self->fd = (int)fd;
    self->family = (int)fam;
    self->sock = Py_NewRef(value);
    return 0;
}

static PyObject *
get_role(RoleObject *role)
{
    return Py_NewRef(role != NULL ? (PyObject *)role : Py_None);
}

static int
set_role(CoreObject *self, RoleObject **slot, PyObject *value)
{
    if (value == NULL || !PyObject_TypeCheck(value, self->state->Role_Type)) {
        PyErr_SetString(PyExc_TypeError, "udpio: a role must be a udpio._speedups.Role");
        return -1;
    }
    if (*slot != NULL) {
        PyErr_SetString(PyExc_AttributeError, "udpio: a role is set once");
        return -1;
    }
    *slot = (RoleObject *)Py_NewRef(value);
    return 0;
}

static PyObject *
Core_get_reader(CoreObject *self, void *closure)
{
    (void)closure;
    return get_role(self->reader);
}

static int
Core_set_reader(CoreObject *self, PyObject *value, void *closure)
{
    (void)closure;
    return set_role(self, &self->reader, value);
}

static PyObject *
Core_get_writer(CoreObject *self, void *closure)
{
    (void)closure;
    return get_role(self->writer);
}

static int
Core_set_writer(CoreObject *self, PyObject *value, void *closure)
{
    (void)closure;
    return set_role(self, &self->writer, value);
}

static PyObject *
Core_get_buf(CoreObject *self, void *closure)
{
    (void)closure;
    PyObject *buf = self->current >= 0 ? (PyObject *)self->slots[self->current] : NULL;
    return Py_NewRef(buf != NULL ? buf : Py_None);
}

/* The reader's state (buffers, frame, GRO) is recv's while it holds the
 * role: nothing may change it under that call. */
static int
refuse_if_recv_runs(CoreObject *self, const char *name)
{
    if (self->reader != NULL && self->reader->count > 0) {
        PyErr_Format(PyExc_AttributeError, "udpio: %s is in use by a recv", name);
        return -1;
    }
    return 0;
}

/* Socket.__init__ starts with no buffer and no frame; nothing else may set
 * them, and nothing may reset them while a recv owns them. */
static int
reader_state_reset(CoreObject *self, PyObject *value, const char *name)
{
    if (value != Py_None) {
        PyErr_Format(PyExc_AttributeError, "udpio: %s can only be reset to None", name);
        return -1;
    }
    return refuse_if_recv_runs(self, name);
}

static int
Core_set_buf(CoreObject *self, PyObject *value, void *closure)
{
    (void)closure;
    if (reader_state_reset(self, value, "_buf") < 0) {
        return -1;
    }
    for (int i = 0; i < RECV_MANY; i++) {
        Py_CLEAR(self->slots[i]);
    }
    self->queue_len = 0;
    self->queue_offset = 0;
    self->current = -1;
    return 0;
}

static PyObject *
Core_get_frame(CoreObject *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->frame != NULL ? self->frame : Py_None);
}

static int
Core_set_frame(CoreObject *self, PyObject *value, void *closure)
{
    (void)closure;
    if (reader_state_reset(self, value, "_frame") < 0) {
        return -1;
    }
    Py_CLEAR(self->frame);
    return 0;
}

static PyObject *
Core_get_gro(CoreObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->gro);
}

/* Set by Socket.__init__ to whether the kernel took UDP_GRO: from then on
 * recv splits what the kernel joined (B1). Not while a recv runs, which
 * reads it. */
static int
Core_set_gro(CoreObject *self, PyObject *value, void *closure)
{
    (void)closure;
    if (value == NULL || !PyBool_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "udpio: _gro must be a bool");
        return -1;
    }
    if (refuse_if_recv_runs(self, "_gro") < 0) {
        return -1;
    }
    self->gro = value == Py_True;
    return 0;
}

static PyGetSetDef Core_getset[] = {
    {"_gro", (getter)Core_get_gro, (setter)Core_set_gro, NULL, NULL},
    {"_sock", (getter)Core_get_sock, (setter)Core_set_sock, NULL, NULL},
    {"_reader", (getter)Core_get_reader, (setter)Core_set_reader, NULL, NULL},
    {"_writer", (getter)Core_get_writer, (setter)Core_set_writer, NULL, NULL},
    {"_buf", (getter)Core_get_buf, (setter)Core_set_buf, NULL, NULL},
    {"_frame", (getter)Core_get_frame, (setter)Core_set_frame, NULL, NULL},
    {NULL},
};

static PyMemberDef Core_members[] = {
    {"_closed", T_BOOL, offsetof(CoreObject, closed), 0, NULL},
    {"_recv_exit_releases", T_BOOL, offsetof(CoreObject, recv_exit_releases), 0, NULL},
    {"_send_exit_releases", T_BOOL, offsetof(CoreObject, send_exit_releases), 0, NULL},
    {"_gso_off", T_BOOL, offsetof(CoreObject, gso_off), READONLY,
     "Whether the kernel refused UDP GSO for this socket (send_batch then uses sendmmsg)."},
    {"_pool", T_OBJECT, offsetof(CoreObject, pool), 0, NULL},
    {NULL},
};

/* -- argument parsing ------------------------------------------------ */

/* Fills out[0..nmax) from positional and keyword arguments; the first
 * `nrequired` must be given. Only the names in `names` are accepted. */
static int
parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
           const char *const *names, Py_ssize_t nrequired, Py_ssize_t nmax, PyObject **out)
{
    if (nargs > nmax) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", fname, nmax,
                     nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t i = 0;
        while (i < nmax && PyUnicode_CompareWithASCIIString(key, names[i]) != 0) {
            i++;
        }
        if (i == nmax) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < nrequired; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

/* A float or int >= 0 passes here; anything else goes to the Python twin's
 * check, which owns the error message (R7). */
static int
check_timeout(CoreObject *self, PyObject *timeout)
{
    if (PyFloat_CheckExact(timeout) && PyFloat_AS_DOUBLE(timeout) >= 0) {
        return 0;
    }
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

static int
not_initialised(CoreObject *self)
{
    if (self->reader == NULL || self->writer == NULL || self->sock == NULL || self->pool == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "udpio: Socket.__init__ was not called");
        return 1;
    }
    return 0;
}

/* -- addresses ------------------------------------------------------- */

/* The tuple the socket module would build for this address (socket.recvfrom). */
static PyObject *
make_address(const struct sockaddr_storage *ss, socklen_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (len == 0) {
        Py_RETURN_NONE;
    }
    switch (ss->ss_family) {
    case AF_INET: {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("(si)", host, ntohs(a->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("(siII)", host, ntohs(a->sin6_port), ntohl(a->sin6_flowinfo),
                             a->sin6_scope_id);
    }
    case AF_UNIX: {
        const struct sockaddr_un *a = (const struct sockaddr_un *)ss;
        size_t path = offsetof(struct sockaddr_un, sun_path);
        size_t n = len > path ? len - path : 0;
        if (n > 0 && a->sun_path[0] == 0) { /* Linux abstract namespace */
            return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)n);
        }
        return PyUnicode_DecodeFSDefaultAndSize(a->sun_path, (Py_ssize_t)strnlen(a->sun_path, n));
    }
    default:
        PyErr_Format(PyExc_OSError, "udpio: unsupported address family %d", ss->ss_family);
        return NULL;
    }
}

static int
same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b, socklen_t len)
{
    if (a->ss_family != b->ss_family) {
        return 0;
    }
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port && x->sin6_flowinfo == y->sin6_flowinfo &&
               x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return memcmp(a, b, len) == 0;
}

/* The source address of the datagram just read: the previous tuple again
 * when the datagram came from the same place (no str and tuple per
 * datagram for a steady peer). Caller holds the reader role. */
static PyObject *
source_address(CoreObject *self, const struct sockaddr_storage *ss, socklen_t len)
{
    if (self->src_addr != NULL && len == self->src_len && same_address(ss, &self->src, len)) {
        return Py_NewRef(self->src_addr);
    }
    PyObject *addr = make_address(ss, len);
    if (addr == NULL) {
        return NULL;
    }
    Py_XSETREF(self->src_addr, Py_NewRef(addr));
    memcpy(&self->src, ss, len);
    self->src_len = len;
    return addr;
}

static int
small_uint(PyObject *o, unsigned long max, unsigned long *out)
{
    if (!PyLong_CheckExact(o)) {
        return 0;
    }
    unsigned long v = PyLong_AsUnsignedLong(o);
    if (v == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *out = v;
    return v <= max;
}

/* A numeric host as the socket module would parse it (it, too, tries
 * inet_pton before anything else); 0 for anything else. */
static int
numeric_host(PyObject *o, int family, void *out)
{
    if (!PyUnicode_CheckExact(o)) {
        return 0;
    }
    Py_ssize_t n;
    const char *host = PyUnicode_AsUTF8AndSize(o, &n);
    if (host == NULL) {
        PyErr_Clear();
        return 0;
    }
    if ((size_t)n != strlen(host) || strchr(host, '%') != NULL) {
        return 0; /* an embedded NUL, or a scope the resolver must translate */
    }
    return inet_pton(family, host, out) == 1;
}

/* Parses `dst` for sendto when it is the plain case: an exact tuple of a
 * numeric host and in-range integers for this socket's family. Returns 0
 * for anything else, with no exception: the Python twin then does the work
 * and owns every error message (S3). */
static int
parse_destination(int family, PyObject *dst, struct sockaddr_storage *sa, socklen_t *len)
{
    if (!PyTuple_CheckExact(dst)) {
        return 0;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(dst);
    unsigned long port, flowinfo = 0, scope_id = 0;
    memset(sa, 0, sizeof(*sa));
    if (family == AF_INET && n == 2) {
        struct sockaddr_in *a = (struct sockaddr_in *)sa;
        if (!numeric_host(PyTuple_GET_ITEM(dst, 0), AF_INET, &a->sin_addr) ||
            !small_uint(PyTuple_GET_ITEM(dst, 1), 65535, &port)) {
            return 0;
        }
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        *len = sizeof(*a);
        return 1;
    }
    if (family == AF_INET6 && n >= 2 && n <= 4) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)sa;
        if (!numeric_host(PyTuple_GET_ITEM(dst, 0), AF_INET6, &a->sin6_addr) ||
            !small_uint(PyTuple_GET_ITEM(dst, 1), 65535, &port) ||
            (n > 2 && !small_uint(PyTuple_GET_ITEM(dst, 2), 0xfffff, &flowinfo)) ||
            (n > 3 && !small_uint(PyTuple_GET_ITEM(dst, 3), 0xffffffffUL, &scope_id))) {
            return 0;
        }
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_flowinfo = htonl((uint32_t)flowinfo);
        a->sin6_scope_id = (uint32_t)scope_id;
        *len = sizeof(*a);
        return 1;
    }
    return 0;
}

/* The parsed destination, from the cache when `dst` is the very object of
 * the last send (an echo replies to the tuple recv returned; a client sends
 * to one constant). Caller holds the writer role, which owns the cache. */
static int
destination(CoreObject *self, PyObject *dst, struct sockaddr_storage *sa, socklen_t *len)
{
    if (dst != self->dst) {
        if (!parse_destination(self->family, dst, &self->dst_sa, &self->dst_len)) {
            Py_CLEAR(self->dst);
            return 0;
        }
        Py_XSETREF(self->dst, Py_NewRef(dst));
    }
    memcpy(sa, &self->dst_sa, self->dst_len);
    *len = self->dst_len;
    return 1;
}

/* -- recv ------------------------------------------------------------ */

/* R3: the previous frame is released, so using it after this recv raises
 * ValueError. A frame only we reference cannot be used again: dropping it
 * is enough. If the caller exports the frame itself, release() raises
 * BufferError; the frame then stays valid and its buffer counts as
 * retained (R4). */
static int
release_frame(CoreObject *self)
{
    PyObject *frame = self->frame;
    if (frame == NULL) {
        return 0;
    }
    self->frame = NULL;
    if (Py_REFCNT(frame) > 1) {
        PyObject *r = PyObject_Vectorcall(self->state->memoryview_release, &frame, 1, NULL);
        if (r != NULL) {
            Py_DECREF(r);
        }
        else if (PyErr_ExceptionMatches(PyExc_BufferError)) {
            PyErr_Clear();
        }
        else {
            Py_DECREF(frame);
            return -1;
        }
    }
    Py_DECREF(frame);
    return 0;
}

/* R4: a buffer that anything still views is never written again; it stays
 * with its viewers and is freed when the last one goes. */
static void
drop_if_retained(CoreObject *self, int slot)
{
    if (self->slots[slot] != NULL && self->slots[slot]->exports > 0) {
        Py_CLEAR(self->slots[slot]);
    }
}

static int
take_buffer(CoreObject *self, int slot)
{
    PyObject *buf = PyObject_CallMethodNoArgs(self->pool, self->state->str_get);
    if (buf == NULL) {
        return -1;
    }
    if (!PyObject_TypeCheck(buf, self->state->ReadBuffer_Type)) {
        PyErr_Format(PyExc_TypeError, "udpio: the pool gave a %.100s, not a ReadBuffer",
                     Py_TYPE(buf)->tp_name);
        Py_DECREF(buf);
        return -1;
    }
    Py_XSETREF(self->slots[slot], (ReadBufferObject *)buf);
    return 0;
}

/* Before a batch is read, every slot holds a buffer nothing views: one that
 * is viewed (even through a stale frame.obj exported since) is dropped and
 * replaced from the pool (R4, B1). */
static int
fill_slots(CoreObject *self)
{
    for (int i = 0; i < RECV_MANY; i++) {
        drop_if_retained(self, i);
        if (self->slots[i] == NULL && take_buffer(self, i) < 0) {
            return -1;
        }
    }
    return 0;
}

/* R6, B2: at close, the queued datagrams are discarded, as the kernel
 * discards its own queue, and the buffers go back to the pool, which keeps
 * only those nothing exports. */
static int
return_slots(CoreObject *self)
{
    int failed = 0;
    self->queue_len = 0;
    self->queue_offset = 0;
    self->current = -1;
    for (int i = 0; i < RECV_MANY; i++) {
        ReadBufferObject *buf = self->slots[i];
        if (buf == NULL) {
            continue;
        }
        self->slots[i] = NULL;
        PyObject *r = failed ? NULL : PyObject_CallMethodOneArg(self->pool, self->state->str_put, (PyObject *)buf);
        Py_DECREF(buf);
        if (r == NULL) {
            failed = 1;
        }
        Py_XDECREF(r);
    }
    return failed ? -1 : 0;
}

static PyObject *
closed_error(CoreObject *self)
{
    PyErr_SetNone(self->state->ClosedError);
    return NULL;
}

#ifdef __linux__
/* With UDP_GRO on, the kernel may hand over several datagrams from one
 * sender as one message, all of the size this control message gives but
 * the last, which may be shorter. 0: the message is one datagram. */
static Py_ssize_t
gro_segment(struct msghdr *msg)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm != NULL; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
            int size;
            memcpy(&size, CMSG_DATA(cm), sizeof(size));
            return size > 0 ? (Py_ssize_t)size : 0;
        }
    }
    return 0;
}
#endif

/* Take up to RECV_MANY datagrams the kernel already holds, in one nonblocking
 * recvmmsg with the GIL released (B1, N5), into the queue. Returns how many,
 * or -1 with *err set. A kernel error after the first datagram stays
 * pending in the kernel and is reported by the next call, so none is lost. */
static int
recv_batch(CoreObject *self, int *err)
{
    int n, fd = self->fd;
#ifdef __linux__
    struct mmsghdr msgs[RECV_MANY];
    struct iovec iov[RECV_MANY];
    union {
        char buf[CMSG_SPACE(sizeof(int))]; /* the kernel puts UDP_GRO's first */
        struct cmsghdr align;
    } control[RECV_MANY];
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < RECV_MANY; i++) {
        iov[i].iov_base = self->slots[i]->data;
        iov[i].iov_len = (size_t)self->slots[i]->capacity;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &self->queue[i].src;
        msgs[i].msg_hdr.msg_namelen = sizeof(self->queue[i].src);
        if (self->gro) {
            msgs[i].msg_hdr.msg_control = control[i].buf;
            msgs[i].msg_hdr.msg_controllen = sizeof(control[i].buf);
        }
    }
    Py_BEGIN_ALLOW_THREADS
    n = recvmmsg(fd, msgs, RECV_MANY, 0, NULL);
    *err = errno;
    Py_END_ALLOW_THREADS
    for (int i = 0; i < n; i++) {
        self->queue[i].slot = i;
        self->queue[i].length = (Py_ssize_t)msgs[i].msg_len;
        self->queue[i].segment = self->gro ? gro_segment(&msgs[i].msg_hdr) : 0;
        self->queue[i].src_len = msgs[i].msg_hdr.msg_namelen;
    }
#else /* one datagram per call where there is no recvmmsg */
    ssize_t got;
    socklen_t len = sizeof(self->queue[0].src);
    Py_BEGIN_ALLOW_THREADS
    got = recvfrom(fd, self->slots[0]->data, (size_t)self->slots[0]->capacity, 0,
                   (struct sockaddr *)&self->queue[0].src, &len);
    *err = errno;
    Py_END_ALLOW_THREADS
    n = got < 0 ? -1 : 1;
    self->queue[0].slot = 0;
    self->queue[0].length = (Py_ssize_t)got;
    self->queue[0].segment = 0;
    self->queue[0].src_len = len;
#endif
    if (n > 0) {
        self->queue_head = 0;
        self->queue_len = n; /* queue_offset is 0: the last head left with its last datagram */
    }
    return n;
}

/* Hand out the oldest queued datagram: a read-only memoryview of exactly its
 * bytes (R1, R2), and its sender. With GRO the head entry may hold several;
 * each gets its own view at its own offset, and the entry leaves the queue
 * with its last datagram. */
static PyObject *
hand_out(CoreObject *self)
{
    struct queued *q = &self->queue[self->queue_head];
    Py_ssize_t length = q->length - self->queue_offset;
    if (q->segment > 0 && length > q->segment) {
        length = q->segment;
    }
    PyObject *addr = source_address(self, &q->src, q->src_len);
    if (addr == NULL) {
        return NULL;
    }
    ReadBufferObject *buf = self->slots[q->slot];
    buf->offset = self->queue_offset;
    buf->length = length;
    PyObject *frame = PyMemoryView_FromObject((PyObject *)buf);
    if (frame == NULL) {
        Py_DECREF(addr);
        return NULL;
    }
    PyObject *result = PyTuple_New(2);
    if (result == NULL) {
        Py_DECREF(frame);
        Py_DECREF(addr);
        return NULL;
    }
    self->current = q->slot;
    self->queue_offset += length;
    if (self->queue_offset >= q->length) {
        self->queue_head++;
        self->queue_len--;
        self->queue_offset = 0;
    }
    self->frame = Py_NewRef(frame);
    PyTuple_SET_ITEM(result, 0, frame);
    PyTuple_SET_ITEM(result, 1, addr);
    return result;
}

/* The deadline for the wait, on the pure backend's clock (R7). */
static PyObject *
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

/* Try the syscall first; only when it would block, wait in the selector
 * (Socket._await_readable, which raises TimeoutError or ClosedError) and try
 * again. Caller holds the reader role, with every slot filled. */
static PyObject *
recv_or_wait(CoreObject *self, PyObject *timeout)
{
    PyObject *deadline = NULL;
    int err;
    for (;;) {
        if (recv_batch(self, &err) > 0) {
            Py_XDECREF(deadline);
            return hand_out(self);
        }
        if (err == EINTR) {
            /* PEP 475: run the handlers, then retry (C6); a handler may close (C5). */
            if (PyErr_CheckSignals() < 0) {
                break;
            }
            if (self->closed) {
                closed_error(self);
                break;
            }
            continue;
        }
        if (err != EAGAIN && err != EWOULDBLOCK) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError); /* R8: the kernel's error, verbatim */
            break;
        }
        if (deadline == NULL && (deadline = make_deadline(self, timeout)) == NULL) {
            break;
        }
        PyObject *args[] = {(PyObject *)self, deadline, timeout};
        PyObject *r = PyObject_VectorcallMethod(self->state->str_await_readable, args,
                                                3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (r == NULL) {
            break;
        }
        Py_DECREF(r);
    }
    Py_XDECREF(deadline);
    return NULL;
}

/* Everything recv does while holding the reader role (Socket.recv's try). */
static PyObject *
recv_as_reader(CoreObject *self, PyObject *timeout)
{
    if (release_frame(self) < 0) {
        return NULL;
    }
    self->current = -1; /* a retained buffer is dropped before the next batch (fill_slots) */
    if (self->closed) { /* R5: the reader's next recv after close() */
        if (return_slots(self) < 0) {
            return NULL;
        }
        return closed_error(self);
    }
    if (self->queue_len > 0) { /* B1, B2: what the last batch took comes first */
        return hand_out(self);
    }
    if (fill_slots(self) < 0) {
        return NULL;
    }
    return recv_or_wait(self, timeout);
}

/* C5: when close() ran on this very thread (a signal handler), this call
 * closes the descriptors as it unwinds. Keeps a pending exception. */
static PyObject *
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

static PyObject *
recv_refused(CoreObject *self)
{
    PyObject *exc = PyObject_CallMethodNoArgs((PyObject *)self, self->state->str_recv_refused);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static PyObject *
Core_recv(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"timeout"};
    PyObject *argv[1] = {NULL};
    if (parse_args("recv", args, nargs, kwnames, names, 0, 1, argv) < 0) {
        return NULL;
    }
    PyObject *timeout = argv[0] != NULL ? argv[0] : Py_None;
    if (not_initialised(self) || (timeout != Py_None && check_timeout(self, timeout) < 0)) {
        return NULL;
    }
    /* C1: the try-acquire is the ownership test: atomic, and it never
     * waits. The lock is not re-entrant, so a nested recv from a signal
     * handler on the reading thread is refused as well. */
    if (!PyThread_acquire_lock(self->reader->lock, NOWAIT_LOCK)) {
        return recv_refused(self);
    }
    role_took(self->reader);
    PyObject *result = recv_as_reader(self, timeout);
    if (self->recv_exit_releases) {
        result = release_on_exit(self, result);
    }
    role_give(self->reader);
    return result;
}

/* -- send ------------------------------------------------------------ */

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

static PyObject *
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

/* -- send_batch: up to SEND_MANY datagrams per sendmmsg ------------------ */

#define SEND_MANY 64

#ifdef __linux__
/* How many of the k views UDP GSO can carry in one sendmsg: every one but
 * the last of the same size, the last no bigger but not empty (the kernel
 * cuts bytes, so an empty datagram would vanish into the run), and the
 * whole within one UDP payload. 0 or 1: not worth it. */
static Py_ssize_t
gso_run(const Py_buffer *views, Py_ssize_t k)
{
    if (k < 2 || views[0].len == 0) {
        return 0;
    }
    Py_ssize_t size = views[0].len, total = 0, n = 0;
    while (n < k && views[n].len > 0 && views[n].len <= size && total + views[n].len <= 65507 - 8) {
        total += views[n].len;
        n++;
        if (views[n - 1].len < size) {
            break; /* a shorter one can only be the last */
        }
    }
    return n;
}

/* One sendmsg with UDP_SEGMENT: the kernel cuts the iovecs' bytes into
 * datagrams of gso_size (B3). No copy: the iovecs point at the frames. */
static int
send_gso(int fd, struct iovec *iov, Py_ssize_t n, struct sockaddr_storage *sa, socklen_t sa_len,
         uint16_t gso_size, int *err)
{
    char control[CMSG_SPACE(sizeof(uint16_t))];
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    memset(control, 0, sizeof(control));
    msg.msg_name = sa;
    msg.msg_namelen = sa_len;
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(cm), &gso_size, sizeof(gso_size));
    ssize_t r;
    Py_BEGIN_ALLOW_THREADS
    r = sendmsg(fd, &msg, 0);
    *err = errno;
    Py_END_ALLOW_THREADS
    return r < 0 ? -1 : (int)n;
}
/* Sends frames[start:start + k] in one sendmmsg and returns how many went
 * out (B3). Anything but the plain case (a list or tuple of C-contiguous
 * buffers to a numeric address tuple) goes to the Python twin, which sends
 * one and owns the errors. Caller holds the writer role (Socket.send_batch),
 * which keeps the descriptor open and owns the destination cache (C3). */
static PyObject *
send_some(CoreObject *self, PyObject *frames, Py_ssize_t start, PyObject *dst)
{
    Py_buffer views[SEND_MANY];
    struct iovec iov[SEND_MANY];
    struct mmsghdr msgs[SEND_MANY];
    struct sockaddr_storage sa;
    socklen_t sa_len;
    Py_ssize_t total = PySequence_Fast_GET_SIZE(frames);
    Py_ssize_t count = total - start < SEND_MANY ? total - start : SEND_MANY;
    PyObject **items = PySequence_Fast_ITEMS(frames);
    Py_ssize_t got = 0;
    if (!destination(self, dst, &sa, &sa_len)) {
        return NULL; /* no exception set: the caller takes the Python path */
    }
    for (; got < count; got++) {
        if (PyObject_GetBuffer(items[start + got], &views[got], PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            break;
        }
        iov[got].iov_base = views[got].buf;
        iov[got].iov_len = (size_t)views[got].len;
        memset(&msgs[got], 0, sizeof(msgs[got]));
        msgs[got].msg_hdr.msg_name = &sa;
        msgs[got].msg_hdr.msg_namelen = sa_len;
        msgs[got].msg_hdr.msg_iov = &iov[got];
        msgs[got].msg_hdr.msg_iovlen = 1;
    }
    int n = -1, err = 0, fd = self->fd;
    Py_ssize_t run = self->gso_off ? 0 : gso_run(views, got);
    if (run >= 2) {
        n = send_gso(fd, iov, run, &sa, sa_len, (uint16_t)views[0].len, &err);
        if (n < 0 && (err == EIO || err == EINVAL || err == ENOPROTOOPT || err == EOPNOTSUPP)) {
            self->gso_off = 1; /* no GSO here (kernel, device or size): as quic-go and curl do */
            run = 0;
        }
    }
    if (run < 2 && got > 0) {
        Py_BEGIN_ALLOW_THREADS
        n = sendmmsg(fd, msgs, (unsigned int)got, 0);
        err = errno;
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t i = 0; i < got; i++) {
        PyBuffer_Release(&views[i]);
    }
    if (got == 0) {
        return NULL; /* the first frame is not a plain buffer: the Python path says why */
    }
    if (n >= 0) {
        return PyLong_FromLong(n);
    }
    if (err == EINTR) { /* PEP 475: run the handlers; the caller tries again */
        return PyErr_CheckSignals() < 0 ? NULL : PyLong_FromLong(0);
    }
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError); /* EAGAIN is BlockingIOError: the caller waits */
}
#endif

static PyObject *
Core_send_some(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_send_some(frames, start, dst)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
#ifdef __linux__
    PyObject *frames = args[0];
    if ((PyList_CheckExact(frames) || PyTuple_CheckExact(frames)) && start >= 0 &&
        start < PySequence_Fast_GET_SIZE(frames) && !not_initialised(self)) {
        PyObject *r = send_some(self, frames, start, args[2]);
        if (r != NULL || PyErr_Occurred()) {
            return r;
        }
    }
#endif
    PyObject *slow[] = {(PyObject *)self, args[0], args[1], args[2]};
    return PyObject_VectorcallMethod(self->state->str_send_some_slow, slow,
                                     4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* The docstrings are the Python twin's, word for word (a test checks). */
PyDoc_STRVAR(Core_recv_doc,
    "recv($self, /, timeout=None)\n"
    "--\n"
    "\n"
    "Block until one datagram arrives; return ``(frame, source address)``.\n"
    "\n"
    "``frame`` is a read-only view of exactly the datagram's bytes. It\n"
    "stays valid until the next ``recv`` on this Socket, which releases\n"
    "it; keep ``bytes(frame)`` to hold on longer. Slices of a frame that\n"
    "you keep are never overwritten.\n"
    "\n"
    "``timeout``: ``None`` waits until a datagram or ``close()``; ``0``\n"
    "polls; ``t > 0`` waits at most ``t`` seconds in all.\n"
    "\n"
    "Raises ``ClosedError`` once the Socket is closed (also when\n"
    "``close()`` interrupts the wait), ``TimeoutError`` on timeout,\n"
    "``ConcurrentRecvError`` if another ``recv`` is running,\n"
    "``ValueError`` for a negative timeout, and the kernel's ``OSError``\n"
    "(e.g. ``ConnectionRefusedError``) verbatim.\n"
    "\n"
    "Thread-safe, one caller at a time: a second thread calling ``recv``\n"
    "meanwhile gets ``ConcurrentRecvError`` at once.\n");

PyDoc_STRVAR(Core_send_doc,
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
    "thread is in ``recv``.\n");

static PyMethodDef Core_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))Core_recv, METH_FASTCALL | METH_KEYWORDS, Core_recv_doc},
    {"send", (PyCFunction)(void (*)(void))Core_send, METH_FASTCALL | METH_KEYWORDS, Core_send_doc},
    {"_send_some", (PyCFunction)(void (*)(void))Core_send_some, METH_FASTCALL,
     "The native Socket._send_some: up to 64 datagrams per sendmmsg."},
    {NULL},
};

static PyType_Slot Core_slots[] = {
    {Py_tp_doc, "The native hot path of udpio.Socket; not used on its own."},
    {Py_tp_new, Core_new},
    {Py_tp_dealloc, Core_dealloc},
    {Py_tp_traverse, Core_traverse},
    {Py_tp_clear, Core_clear},
    {Py_tp_methods, Core_methods},
    {Py_tp_members, Core_members},
    {Py_tp_getset, Core_getset},
    {0, NULL},
};

static PyType_Spec Core_spec = {
    .name = "udpio._speedups.Core",
    .basicsize = sizeof(CoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Core_slots,
};

/* ------------------------------------------------------------------ */
/* The module                                                           */
/* ------------------------------------------------------------------ */

static PyObject *
import_attr(const char *module_name, const char *attr)
{
    PyObject *module = PyImport_ImportModule(module_name);
    if (module == NULL) {
        return NULL;
    }
    PyObject *value = PyObject_GetAttrString(module, attr);
    Py_DECREF(module);
    return value;
}

static int
add_type(PyObject *module, PyType_Spec *spec, PyTypeObject **slot)
{
    *slot = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, NULL);
    if (*slot == NULL) {
        return -1;
    }
    return PyModule_AddType(module, *slot);
}

static int
intern(PyObject **slot, const char *s)
{
    *slot = PyUnicode_InternFromString(s);
    return *slot == NULL ? -1 : 0;
}

static int
udpio_exec(PyObject *module)
{
    udpio_state *st = PyModule_GetState(module);
    if (add_type(module, &ReadBuffer_spec, &st->ReadBuffer_Type) < 0 ||
        add_type(module, &Role_spec, &st->Role_Type) < 0 ||
        add_type(module, &Core_spec, &st->Core_Type) < 0) {
        return -1;
    }
#ifdef __linux__
    int splits_gro = 1; /* recv_batch reads UDP_GRO's control message */
#else
    int splits_gro = 0; /* one recvfrom per datagram: GRO must stay off */
#endif
    if (PyModule_AddObjectRef(module, "SPLITS_GRO", splits_gro ? Py_True : Py_False) < 0) {
        return -1;
    }
    st->memoryview_release = PyObject_GetAttrString((PyObject *)&PyMemoryView_Type, "release");
    st->ClosedError = import_attr("udpio._errors", "ClosedError");
    st->monotonic = import_attr("time", "monotonic");
    if (st->memoryview_release == NULL || st->ClosedError == NULL || st->monotonic == NULL) {
        return -1;
    }
    if (intern(&st->str_get, "get") < 0 || intern(&st->str_put, "put") < 0 ||
        intern(&st->str_release, "_release") < 0 ||
        intern(&st->str_recv_refused, "_recv_refused") < 0 ||
        intern(&st->str_await_readable, "_await_readable") < 0 ||
        intern(&st->str_check_timeout, "_check_timeout") < 0 ||
        intern(&st->str_send_slow, "_send_slow") < 0 ||
        intern(&st->str_send_some_slow, "_send_some_slow") < 0) {
        return -1;
    }
    return 0;
}

static int
udpio_traverse(PyObject *module, visitproc visit, void *arg)
{
    udpio_state *st = PyModule_GetState(module);
    Py_VISIT(st->ReadBuffer_Type);
    Py_VISIT(st->Role_Type);
    Py_VISIT(st->Core_Type);
    Py_VISIT(st->memoryview_release);
    Py_VISIT(st->ClosedError);
    Py_VISIT(st->monotonic);
    return 0;
}

static int
udpio_clear(PyObject *module)
{
    udpio_state *st = PyModule_GetState(module);
    Py_CLEAR(st->ReadBuffer_Type);
    Py_CLEAR(st->Role_Type);
    Py_CLEAR(st->Core_Type);
    Py_CLEAR(st->memoryview_release);
    Py_CLEAR(st->ClosedError);
    Py_CLEAR(st->monotonic);
    Py_CLEAR(st->str_get);
    Py_CLEAR(st->str_put);
    Py_CLEAR(st->str_release);
    Py_CLEAR(st->str_recv_refused);
    Py_CLEAR(st->str_await_readable);
    Py_CLEAR(st->str_check_timeout);
    Py_CLEAR(st->str_send_slow);
    Py_CLEAR(st->str_send_some_slow);
    return 0;
}

static void
udpio_free(void *module)
{
    udpio_clear((PyObject *)module);
}

static PyModuleDef_Slot udpio_slots[] = {
    {Py_mod_exec, udpio_exec},
    {0, NULL},
};

static struct PyModuleDef udpio_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "udpio._speedups",
    .m_doc = "The native hot path of udpio.Socket (see udpio/_native.py).",
    .m_size = sizeof(udpio_state),
    .m_slots = udpio_slots,
    .m_traverse = udpio_traverse,
    .m_clear = udpio_clear,
    .m_free = udpio_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&udpio_module);
}
