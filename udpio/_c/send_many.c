/* Socket.send_many: many datagrams, each to its own destination and from
 * its own source, up to SEND_MANY per sendmmsg (K2). The twin of
 * udpio/_socket.py's Socket.send_many, which checks every message first
 * (udpio/_messages.py) and then sends one at a time; anything but the
 * plain case goes to it. */
#include "udpio.h"
#include "cmsg.h"

#ifdef __linux__
/* The distinct sources one call may carry on the fast path (a server
 * answers from the few addresses it has); more go to the Python twin. */
#define SOURCES 8

/* The sources of one call, each parsed once: obj[i] (strong) is a src the
 * messages name, parsed[i] its control message (M2); bound[i]: the Socket
 * is bound to that address, so it needs none (Socket._message_source). */
struct sources {
    int n;
    PyObject *obj[SOURCES];
    struct source parsed[SOURCES];
    char bound[SOURCES];
};

/* Whether `from` names the address the Socket is bound to (bound_to_*):
 * in_pktinfo carries it as ipi_spec_dst, in6_pktinfo as ipi6_addr. */
static int
is_bound_address(CoreObject *self, const struct source *from)
{
    if (from->level == IPPROTO_IP && from->len == sizeof(struct in_pktinfo)) {
        struct in_pktinfo info;
        memcpy(&info, from->data, sizeof(info));
        return bound_to_ipv4(self, info.ipi_spec_dst.s_addr);
    }
    if (from->level == IPPROTO_IPV6 && from->len == sizeof(struct in6_pktinfo)) {
        struct in6_pktinfo info;
        memcpy(&info, from->data, sizeof(info));
        return bound_to_ipv6(self, &info.ipi6_addr);
    }
    return 0;
}

static void
sources_clear(struct sources *table)
{
    for (int i = 0; i < table->n; i++) {
        Py_DECREF(table->obj[i]);
    }
    table->n = 0;
}

/* The index of `src` in the table, adding it, from the writer's cache or
 * Socket._source_cmsg, when it is new. Returns -1 (no exception) for a src
 * the fast path does not take: a bad one, whose error the twin names, or
 * one too many. The GIL is held throughout, so reading the writer's cache
 * here sees a consistent entry. */
static int
source_index(CoreObject *self, PyObject *src, struct sources *table)
{
    for (int i = 0; i < table->n; i++) {
        if (table->obj[i] == src) {
            return i;
        }
    }
    if (table->n == SOURCES) {
        return -1;
    }
    struct source *slot = &table->parsed[table->n];
    if (src == self->from.obj) {
        *slot = self->from;
    }
    else {
        PyObject *cmsg = PyObject_CallMethodOneArg((PyObject *)self, self->state->str_source_cmsg, src);
        int parsed = cmsg != NULL ? parse_source(cmsg, slot) : -1;
        Py_XDECREF(cmsg);
        PyErr_Clear(); /* a bad src: the twin raises its error, naming the message */
        if (parsed != 1) {
            return -1;
        }
    }
    table->bound[table->n] = (char)is_bound_address(self, slot);
    table->obj[table->n] = Py_NewRef(src);
    return table->n++;
}

/* Where one message goes: its destination and the index of its source in
 * the call's table (-1: the kernel chooses). */
struct route {
    struct sockaddr_storage sa;
    socklen_t sa_len;
    int source;
};

static int
port_of(const struct sockaddr_storage *sa)
{
    return sa->ss_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                    : ((const struct sockaddr_in6 *)sa)->sin6_port;
}

/* K2: whether `item` is the plain case, and if so its view (*view, which
 * the caller releases) and route: an exact (frame, dst) or (frame, dst,
 * src) tuple; a buffer no bigger than a datagram to dst can carry; a
 * numeric destination of this family, not port 0; no src, or one the table
 * takes. Returns 1, or 0 with no exception and nothing held: the Python
 * twin then checks everything and owns every error message. */
static int
plain_message(CoreObject *self, PyObject *item, struct sources *table, struct route *route,
              Py_buffer *view)
{
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) < 2 || PyTuple_GET_SIZE(item) > 3 ||
        !parse_destination(self->family, PyTuple_GET_ITEM(item, 1), &route->sa, &route->sa_len) ||
        port_of(&route->sa) == 0) {
        return 0;
    }
    PyObject *src = PyTuple_GET_SIZE(item) == 3 ? PyTuple_GET_ITEM(item, 2) : Py_None;
    route->source = -1;
    if (src != Py_None) {
        int i = source_index(self, src, table);
        if (i < 0) {
            return 0;
        }
        route->source = table->bound[i] ? -1 : i;
    }
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, 0), view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (view->len > largest_payload(&route->sa)) {
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

/* Every message is the plain case (checked before anything is sent, K2).
 * Returns 1, or 0: the twin takes the call. */
static int
all_plain(CoreObject *self, PyObject *batch, struct sources *table)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(batch);
    for (Py_ssize_t i = 0; i < n; i++) {
        struct route route;
        Py_buffer view;
        if (!plain_message(self, PySequence_Fast_GET_ITEM(batch, i), table, &route, &view)) {
            return 0;
        }
        PyBuffer_Release(&view);
    }
    return 1;
}

/* One sendmmsg of up to SEND_MANY messages from batch[start:], each with
 * its own address and source control message. Returns how many went, -1
 * with *err set, or -2 with an exception (the batch changed under the
 * call). Caller holds the writer role. */
static int
send_chunk(CoreObject *self, PyObject *batch, Py_ssize_t start, struct sources *table, int *err)
{
    struct mmsghdr msgs[SEND_MANY];
    struct iovec iov[SEND_MANY];
    struct route routes[SEND_MANY];
    control_buffer control[SEND_MANY];
    Py_buffer views[SEND_MANY];
    Py_ssize_t left = PySequence_Fast_GET_SIZE(batch) - start;
    int count = left < SEND_MANY ? (int)left : SEND_MANY, got = 0;
    for (; got < count; got++) {
        PyObject *item = PySequence_Fast_GET_ITEM(batch, start + got);
        if (!plain_message(self, item, table, &routes[got], &views[got])) {
            break;
        }
        memset(&msgs[got], 0, sizeof(msgs[got]));
        iov[got].iov_base = views[got].buf;
        iov[got].iov_len = (size_t)views[got].len;
        msgs[got].msg_hdr.msg_name = &routes[got].sa;
        msgs[got].msg_hdr.msg_namelen = routes[got].sa_len;
        msgs[got].msg_hdr.msg_iov = &iov[got];
        msgs[got].msg_hdr.msg_iovlen = 1;
        if (routes[got].source >= 0) {
            struct msghdr *h = &msgs[got].msg_hdr;
            h->msg_control = control[got].buf;
            h->msg_controllen = sizeof(control[got].buf); /* CMSG_FIRSTHDR needs room */
            h->msg_controllen = put_source(CMSG_FIRSTHDR(h), &table->parsed[routes[got].source]);
        }
    }
    int n = -2;
    if (got == count) {
        int fd = self->fd;
        Py_BEGIN_ALLOW_THREADS
        n = sendmmsg(fd, msgs, (unsigned int)count, 0);
        *err = errno;
        Py_END_ALLOW_THREADS
    }
    else {
        /* Another thread changed a list of messages that all passed the check. */
        PyErr_SetString(PyExc_RuntimeError, "udpio: send_many's messages changed while it sent them");
    }
    for (int i = 0; i < got; i++) {
        PyBuffer_Release(&views[i]);
    }
    return n;
}

/* Send the checked batch, holding the writer role: sendmmsg after sendmmsg;
 * when the kernel buffer is full, Socket._await_writable waits (S4: it
 * raises ClosedError on close). Returns 0, or -1 with an exception; *sent
 * counts what went out either way (M3, K2). */
static int
send_all(CoreObject *self, PyObject *batch, struct sources *table, Py_ssize_t *sent)
{
    Py_ssize_t total = PySequence_Fast_GET_SIZE(batch);
    int attempt = 0; /* E4: failures a report may explain, since the last progress */
    while (*sent < total) {
        int err = 0;
        int n = send_chunk(self, batch, *sent, table, &err);
        if (n > 0) {
            *sent += n;
            count_up(&self->sent, n);
            attempt = 0;
            continue;
        }
        if (n == -2) {
            return -1;
        }
        if (send_retry(self, err, Py_None, Py_None, "send_many", &attempt) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The fast path with the role: refuses after close (C3), then sends. */
static PyObject *
send_many_as_writer(CoreObject *self, PyObject *batch, struct sources *table, Py_ssize_t *sent)
{
    if (self->closed) {
        PyErr_SetNone(self->state->ClosedError);
        return NULL;
    }
    if (table->n > 0 && table->obj[0] != self->from.obj) {
        /* The writer's cache (send.c) takes this call's first source, so
         * the next call that names it asks Python nothing. */
        PyObject *old = self->from.obj;
        self->from = table->parsed[0];
        self->from.obj = Py_NewRef(table->obj[0]);
        Py_XDECREF(old);
    }
    if (send_all(self, batch, table, sent) < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(*sent);
}
#endif

/* The Python twin's send_many: timeouts, a role another thread holds, and
 * every message that is not the plain case, whose errors it names. */
static PyObject *
send_many_slow(CoreObject *self, PyObject *batch, PyObject *timeout)
{
    PyObject *args[] = {(PyObject *)self, batch, timeout};
    return PyObject_VectorcallMethod(self->state->str_send_many_slow, args,
                                     3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

PyObject *
Core_send_many(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"messages", "timeout"};
    PyObject *argv[2] = {NULL, NULL};
    if (parse_args("send_many", args, nargs, kwnames, names, 1, 2, argv) < 0 ||
        not_initialised(self)) {
        return NULL;
    }
    PyObject *timeout = argv[1] != NULL ? argv[1] : Py_None;
    PyObject *batch = PyList_CheckExact(argv[0]) || PyTuple_CheckExact(argv[0])
                          ? Py_NewRef(argv[0])
                          : PySequence_List(argv[0]); /* any iterable, taken once */
    if (batch == NULL) {
        note_sent(0);
        return NULL;
    }
    PyObject *result = NULL;
#ifdef __linux__
    struct sources table = {0};
    int took = 0; /* C2: the role for the whole call, so no other send lands inside it */
    if (timeout == Py_None && all_plain(self, batch, &table)) {
        /* A role this thread holds already (a signal handler's call inside
         * its own send) is the twin's: its role is re-entrant. */
        took = role_try(self->writer) ? 1
               : role_is_mine(self->writer)                           ? 0
                                                                      : role_wait(self->writer, -1);
    }
    if (took < 0) { /* a signal handler raised while this call waited for the role */
        note_sent(0);
        sources_clear(&table);
        Py_DECREF(batch);
        return NULL;
    }
    if (took) {
        role_took(self->writer);
        Py_ssize_t sent = 0;
        result = send_many_as_writer(self, batch, &table, &sent);
        if (self->send_exit_releases) { /* C5: a close() on this thread interrupted the wait */
            result = release_on_exit(self, result);
        }
        role_give(self->writer);
        if (result == NULL) {
            note_sent(sent);
        }
        sources_clear(&table);
        Py_DECREF(batch);
        return result;
    }
    sources_clear(&table);
#endif
    result = send_many_slow(self, batch, timeout);
    Py_DECREF(batch);
    return result;
}

/* The Python twin's docstring, word for word (a test checks). */
const char Core_send_many_doc[] =
    "send_many($self, /, messages, timeout=None)\n"
    "--\n"
    "\n"
    "Send each ``(frame, dst)`` or ``(frame, dst, src)`` message as one datagram, in order.\n"
    "\n"
    "For a server that answers many peers at once: each message goes to\n"
    "its own ``dst`` (a numeric address tuple; no names), from its own\n"
    "``src`` where given (as for ``send``; ``None`` lets the kernel\n"
    "choose), in as few system calls as the platform allows (natively on\n"
    "Linux, ``sendmmsg``; one ``sendto`` each otherwise). ``messages`` is\n"
    "any iterable. Every message is checked before anything is sent. The\n"
    "call holds the writer role throughout, so another thread's ``send``\n"
    "never lands in the middle of it; ``timeout`` bounds the whole call.\n"
    "Returns how many datagrams went out.\n"
    "\n"
    "Raises ``TypeError``/``ValueError``/``OverflowError`` naming a bad\n"
    "message by its index, an ``OSError`` for a size no datagram can\n"
    "carry or port 0 (before anything is sent), ``ClosedError``,\n"
    "``TimeoutError``, and kernel errors verbatim. Every exception it\n"
    "raises carries ``.sent``: how many datagrams went out before it.\n"
    "\n"
    "Thread-safe, as ``send``.\n";
