/* Core: the state recv and send share with the Python Socket, as a base
 * class of udpio._native.Socket (the twin of udpio/_socket.py's Socket.__init__
 * and its attributes). Its methods live with their jobs: recv.c (recv,
 * recv_datagram, recv_batch), send.c (send, reply), send_batch.c
 * (send_batch), send_many.c (send_many), and what the calls that wait
 * share in waiting.c. udpio/_seam.py declares
 * every name that crosses between this class and the Python Socket. */
#include "udpio.h"

#include <stddef.h>

/* The state of this module, found from any subclass of Core (done by hand:
 * PyType_GetModuleByDef is 3.11's, and 3.10 was supported when this was
 * written). */
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
    self->depth = 1;
    self->local_port = -1;
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
    Py_VISIT(self->spare);
    Py_VISIT(self->batch);
    for (int i = 0; i < SOURCE_CACHE; i++) {
        Py_VISIT(self->srcs[i].tuple);
    }
    Py_VISIT(self->to_addr);
    Py_VISIT(self->dst);
    Py_VISIT(self->from.obj);
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
    Py_CLEAR(self->spare);
    Py_CLEAR(self->batch);
    for (int i = 0; i < SOURCE_CACHE; i++) {
        Py_CLEAR(self->srcs[i].tuple);
    }
    Py_CLEAR(self->to_addr);
    Py_CLEAR(self->dst);
    Py_CLEAR(self->from.obj);
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
    {"_peer_errors", T_BOOL, offsetof(CoreObject, peer_errors), 0, NULL},
    {"_gso_off", T_BOOL, offsetof(CoreObject, gso_off), READONLY,
     "Whether the kernel refused UDP GSO for this socket (send_batch then uses sendmmsg)."},
    {"_pool", T_OBJECT, offsetof(CoreObject, pool), 0, NULL},
    /* M3: written by the receive and send calls, C or Python, each under its role. */
    {"_received", T_PYSSIZET, offsetof(CoreObject, received), 0, NULL},
    {"_sent", T_PYSSIZET, offsetof(CoreObject, sent), 0, NULL},
    {"_depth", T_INT, offsetof(CoreObject, depth), READONLY,
     "How many read buffers the next batch reads into (P11; for tests and diagnostics)."},
    {"_gso_sends", T_PYSSIZET, offsetof(CoreObject, gso_sends), READONLY,
     "How many UDP GSO sends the kernel took (B3, B5; for tests and diagnostics)."},
    {NULL},
};
static PyMethodDef Core_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))Core_recv, METH_FASTCALL | METH_KEYWORDS, Core_recv_doc},
    {"recv_datagram", (PyCFunction)(void (*)(void))Core_recv_datagram,
     METH_FASTCALL | METH_KEYWORDS, Core_recv_datagram_doc},
    {"recv_batch", (PyCFunction)(void (*)(void))Core_recv_batch, METH_FASTCALL | METH_KEYWORDS,
     Core_recv_batch_doc},
    {"send", (PyCFunction)(void (*)(void))Core_send, METH_FASTCALL | METH_KEYWORDS, Core_send_doc},
    {"reply", (PyCFunction)(void (*)(void))Core_reply, METH_FASTCALL | METH_KEYWORDS, Core_reply_doc},
    {"send_many", (PyCFunction)(void (*)(void))Core_send_many, METH_FASTCALL | METH_KEYWORDS,
     Core_send_many_doc},
    {"send_batch", (PyCFunction)(void (*)(void))Core_send_batch, METH_FASTCALL | METH_KEYWORDS,
     Core_send_batch_doc},
    {"_gather_reports", (PyCFunction)Core_gather_reports, METH_NOARGS,
     "The native Socket._gather_reports: the error queue read in C (E2, E3)."},
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

PyType_Spec udpio_Core_spec = {
    .name = "udpio._speedups.Core",
    .basicsize = sizeof(CoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Core_slots,
};
