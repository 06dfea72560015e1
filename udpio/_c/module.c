/* udpio._speedups: the native hot path of udpio.Socket (see udpio/_native.py).
 *
 * This file is the module: its state, its three types (ReadBuffer, Role,
 * Core) and PyInit. udpio.h says which file holds which job. The GIL is
 * released around every syscall; each wait happens in Python, in the
 * selector, with the same wake-up as the pure backend.
 */
#include "udpio.h"

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
    if (add_type(module, &udpio_ReadBuffer_spec, &st->ReadBuffer_Type) < 0 ||
        add_type(module, &udpio_Role_spec, &st->Role_Type) < 0 ||
        add_type(module, &udpio_Core_spec, &st->Core_Type) < 0) {
        return -1;
    }
#ifdef __linux__
    int splits_gro = 1; /* recv_batch reads UDP_GRO's control message */
#else
    int splits_gro = 0; /* one recvfrom per datagram: GRO must stay off */
#endif
    if (PyModule_AddObjectRef(module, "SPLITS_GRO", splits_gro ? Py_True : Py_False) < 0 ||
        PyModule_AddIntConstant(module, "RECV_MANY", RECV_MANY) < 0 ||
        PyModule_AddIntConstant(module, "LARGEST_IPV4_PAYLOAD", UDPIO_LARGEST_IPV4_PAYLOAD) < 0 ||
        PyModule_AddIntConstant(module, "LARGEST_IPV6_PAYLOAD", UDPIO_LARGEST_IPV6_PAYLOAD) < 0 ||
        PyModule_AddIntConstant(module, "UNREAD_REPORTS", UDPIO_UNREAD_REPORTS) < 0) {
        return -1;
    }
    st->memoryview_release = PyObject_GetAttrString((PyObject *)&PyMemoryView_Type, "release");
    st->ClosedError = import_attr("udpio._errors", "ClosedError");
    st->monotonic = import_attr("time", "monotonic");
    st->Datagram = import_attr("udpio._datagram", "Datagram");
    st->src_kwnames = Py_BuildValue("(s)", "src");
    st->PeerError = import_attr("udpio._reports", "PeerError");
    st->str_icmp = PyUnicode_InternFromString("icmp");
    st->str_icmp6 = PyUnicode_InternFromString("icmp6");
    st->str_local = PyUnicode_InternFromString("local");
    if (st->memoryview_release == NULL || st->ClosedError == NULL || st->monotonic == NULL ||
        st->Datagram == NULL || st->src_kwnames == NULL || st->PeerError == NULL ||
        st->str_icmp == NULL || st->str_icmp6 == NULL || st->str_local == NULL) {
        return -1;
    }
    if (intern(&st->str_get, "get") < 0 || intern(&st->str_put, "put") < 0 ||
        intern(&st->str_release, "_release") < 0 ||
        intern(&st->str_recv_refused, "_recv_refused") < 0 ||
        intern(&st->str_await_readable, "_await_readable") < 0 ||
        intern(&st->str_check_timeout, "_check_timeout") < 0 ||
        intern(&st->str_check_max_datagrams, "_check_max_datagrams") < 0 ||
        intern(&st->str_send_slow, "_send_slow") < 0 ||
        intern(&st->str_send_batch_slow, "_send_batch_slow") < 0 ||
        intern(&st->str_prepared_destination, "_prepared_destination") < 0 ||
        intern(&st->str_send_many_slow, "_send_many_slow") < 0 ||
        intern(&st->str_reply_slow, "_reply_slow") < 0 ||
        intern(&st->str_source_cmsg, "_source_cmsg") < 0 ||
        intern(&st->str_explain_send_error, "_explain_send_error") < 0 ||
        intern(&st->str_await_writable, "_await_writable") < 0 ||
        intern(&st->str_keep_reports, "_keep_reports") < 0) {
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
    Py_VISIT(st->Datagram);
    Py_VISIT(st->src_kwnames);
    Py_VISIT(st->PeerError);
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
    Py_CLEAR(st->Datagram);
    Py_CLEAR(st->src_kwnames);
    Py_CLEAR(st->str_get);
    Py_CLEAR(st->str_put);
    Py_CLEAR(st->str_release);
    Py_CLEAR(st->str_recv_refused);
    Py_CLEAR(st->str_await_readable);
    Py_CLEAR(st->str_check_timeout);
    Py_CLEAR(st->str_check_max_datagrams);
    Py_CLEAR(st->str_send_slow);
    Py_CLEAR(st->str_send_batch_slow);
    Py_CLEAR(st->str_prepared_destination);
    Py_CLEAR(st->str_send_many_slow);
    Py_CLEAR(st->str_reply_slow);
    Py_CLEAR(st->str_source_cmsg);
    Py_CLEAR(st->str_explain_send_error);
    Py_CLEAR(st->str_await_writable);
    Py_CLEAR(st->str_keep_reports);
    Py_CLEAR(st->PeerError);
    Py_CLEAR(st->str_icmp);
    Py_CLEAR(st->str_icmp6);
    Py_CLEAR(st->str_local);
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

struct PyModuleDef udpio_module = {
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
