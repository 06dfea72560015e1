/* ReadBuffer: a pool buffer that counts its own buffer exports, so "does
 * anything still view these bytes" is an integer test (the twin of
 * udpio/_pool.py's is_exported, the bytearray probe). */
#include "udpio.h"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define READBUFFER_MMAP 1
#endif

/* P11: the bytes come from an anonymous mapping, never zeroed by us: the
 * kernel backs a page only when a datagram is written into it, so a 64 KiB
 * buffer that has held small datagrams costs a page or two of memory, not
 * 64 KiB. Nothing here is ever read before the kernel wrote it: an export
 * covers exactly the datagram (R1). Elsewhere, plain uninitialised memory. */
static char *
buffer_alloc(size_t size)
{
#ifdef READBUFFER_MMAP
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
#else
    return PyMem_Malloc(size);
#endif
}

static void
buffer_free(char *data, size_t size)
{
    if (data == NULL) {
        return;
    }
#ifdef READBUFFER_MMAP
    munmap(data, size);
#else
    (void)size;
    PyMem_Free(data);
#endif
}

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
    self->data = buffer_alloc((size_t)size);
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
    buffer_free(self->data, (size_t)self->capacity);
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
    atomic_fetch_add(&self->exports, 1);
    return 0;
}

static void
ReadBuffer_releasebuffer(ReadBufferObject *self, Py_buffer *view)
{
    (void)view;
    atomic_fetch_sub(&self->exports, 1);
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

PyType_Spec udpio_ReadBuffer_spec = {
    .name = "udpio._speedups.ReadBuffer",
    .basicsize = sizeof(ReadBufferObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = ReadBuffer_slots,
};
