/* Socket.recv: up to RECV_MANY datagrams per recvmmsg into pool buffers,
 * GRO-joined reads split again, each datagram handed out as a read-only
 * view that the next recv releases (the twin of udpio/_socket.py's
 * Socket.recv, which shows each step plainly). */
#include "udpio.h"
#include "cmsg.h"
#include "gro.h"

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

/* The tuple for `ss`: the previous one again when the address is the same
 * (no str and tuple per datagram for a steady peer, or for the one local
 * address a server is asked on). `seen`, `seen_len`, `tuple` are one cache;
 * the caller holds the reader role, which owns them. */
static inline PyObject *
cached_address(PyObject **tuple, struct sockaddr_storage *seen, socklen_t *seen_len,
               const struct sockaddr_storage *ss, socklen_t len)
{
    if (*tuple != NULL && len == *seen_len && same_address(ss, seen, len)) {
        return Py_NewRef(*tuple);
    }
    PyObject *addr = make_address(ss, len);
    if (addr == NULL) {
        return NULL;
    }
    Py_XSETREF(*tuple, Py_NewRef(addr));
    memcpy(seen, ss, len);
    *seen_len = len;
    return addr;
}

/* The tuple for a datagram's sender: one the Socket made before for that
 * address if it is among the last few (the last one is tried first), else
 * a new one, which takes the oldest entry's place. Caller holds the reader
 * role, which owns the cache. */
static inline PyObject *
source_address(CoreObject *self, const struct sockaddr_storage *ss, socklen_t len)
{
    for (int k = 1; k <= SOURCE_CACHE; k++) {
        int i = (self->srcs_next - k) & (SOURCE_CACHE - 1);
        if (self->srcs[i].tuple != NULL && self->srcs[i].len == len &&
            same_address(ss, &self->srcs[i].sa, len)) {
            return Py_NewRef(self->srcs[i].tuple);
        }
    }
    int i = self->srcs_next;
    self->srcs_next = (i + 1) & (SOURCE_CACHE - 1);
    return cached_address(&self->srcs[i].tuple, &self->srcs[i].sa, &self->srcs[i].len, ss, len);
}

/* The bound port, asked once (an adopted socket may have been bound by a
 * send since construction). Caller holds the reader role. */
static int
local_port(CoreObject *self)
{
    if (self->local_port < 0) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname(self->fd, (struct sockaddr *)&ss, &len) < 0) {
            return 0;
        }
        int port = ss.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                   : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                              : 0;
        if (port == 0) {
            return 0; /* not bound yet: ask again next time */
        }
        memcpy(&self->bound, &ss, len); /* before local_port says it is there (Core_reply) */
        self->local_port = port;
    }
    return self->local_port;
}

/* M1: (dst, ifindex, tos) of a queued read, from its control data; the
 * Socket's port in dst. Returns 0, or -1 with an exception. */
static int
arrival_of(CoreObject *self, struct queued *q, PyObject **dst, PyObject **ifindex, PyObject **tos)
{
    struct msghdr msg;
    struct arrival at;
    memset(&msg, 0, sizeof(msg));
    msg.msg_control = self->control[q->slot].buf;
    msg.msg_controllen = q->control_len;
    msg.msg_flags = q->flags;
    parse_arrival(&msg, self->family, &at);
    if (at.have_dst) {
        uint16_t port = htons((uint16_t)local_port(self));
        if (at.dst.ss_family == AF_INET) {
            ((struct sockaddr_in *)&at.dst)->sin_port = port;
        }
        else {
            ((struct sockaddr_in6 *)&at.dst)->sin6_port = port;
        }
        *dst = cached_address(&self->to_addr, &self->to, &self->to_len, &at.dst, at.dst_len);
    }
    else {
        *dst = Py_NewRef(Py_None);
    }
    *ifindex = PyLong_FromLong(at.ifindex);
    *tos = at.have_tos ? PyLong_FromLong(at.tos) : Py_NewRef(Py_None);
    if (*dst == NULL || *ifindex == NULL || *tos == NULL) {
        Py_CLEAR(*dst);
        Py_CLEAR(*ifindex);
        Py_CLEAR(*tos);
        return -1;
    }
    return 0;
}

/* A Datagram(frame, src, dst, ifindex, tos), made as tuple.__new__ makes a
 * named tuple's instance (no Python-level __new__ per datagram). Steals
 * `items`, a new 5-tuple. */
static PyObject *
make_datagram(CoreObject *self, PyObject *items)
{
    PyObject *args = PyTuple_Pack(1, items);
    Py_DECREF(items);
    if (args == NULL) {
        return NULL;
    }
    PyObject *datagram = PyTuple_Type.tp_new((PyTypeObject *)self->state->Datagram, args, NULL);
    Py_DECREF(args);
    return datagram;
}
/* R3: the previous frame is released, so using it after this recv raises
 * ValueError. A frame only we reference cannot be used again: dropping it
 * is enough. If the caller exports the frame itself, release() raises
 * BufferError; the frame then stays valid and its buffer counts as
 * retained (R4). */
static int
release_view(CoreObject *self, PyObject *frame)
{
    if (Py_REFCNT(frame) > 1) {
        PyObject *r = PyObject_Vectorcall(self->state->memoryview_release, &frame, 1, NULL);
        if (r != NULL) {
            Py_DECREF(r);
        }
        else if (PyErr_ExceptionMatches(PyExc_BufferError)) {
            PyErr_Clear();
        }
        else {
            return -1;
        }
    }
    return 0;
}

/* P1: the tuple recv returned last is parked for the next recv to fill
 * again, as zip() reuses its result tuple, when nothing but this Socket
 * holds it; one the caller kept is left to the caller. Its items go now, so
 * that the frame's reference count says whether the caller still holds the
 * frame itself (release_view, R3). */
static void
park_spare(CoreObject *self)
{
    PyObject *spare = self->spare;
    if (spare == NULL || !PyObject_GC_IsTracked(spare)) {
        return; /* none, or parked already */
    }
    if (Py_REFCNT(spare) > 1) {
        Py_CLEAR(self->spare);
        return;
    }
    PyObject_GC_UnTrack(spare);
    for (Py_ssize_t i = 0; i < 2; i++) {
        PyObject *item = PyTuple_GET_ITEM(spare, i);
        PyTuple_SET_ITEM(spare, i, NULL);
        Py_XDECREF(item);
    }
}

static int
release_frame(CoreObject *self)
{
    PyObject *frame = self->frame;
    if (frame == NULL) {
        return 0;
    }
    self->frame = NULL;
    int r = release_view(self, frame);
    Py_DECREF(frame);
    return r;
}

/* K1: the next receive call releases every frame of the last batch, as
 * release_frame does one (R3); their slots then count as retained only if
 * the caller still views them (R4). The list is kept for the next batch. */
static int
release_batch(CoreObject *self)
{
    PyObject *batch = self->batch;
    if (batch == NULL) {
        return 0;
    }
    Py_ssize_t n = PyList_GET_SIZE(batch);
    int failed = 0;
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        failed = release_view(self, PyList_GET_ITEM(batch, i)) < 0;
    }
    if (PyList_SetSlice(batch, 0, n, NULL) < 0) {
        return -1;
    }
    return failed ? -1 : 0;
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
    for (int i = 0; i < self->depth; i++) {
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

/* Take up to `want` datagrams the kernel already holds (at most the
 * Socket's depth), in one nonblocking recvmmsg with the GIL released (B1,
 * N5), into the queue. Returns how many, or -1 with *err set. A kernel
 * error after the first datagram stays pending in the kernel and is
 * reported by the next call, so none is lost. Caller holds the reader role
 * and filled the slots. */
static int
read_batch(CoreObject *self, int want, int *err)
{
    int n, fd = self->fd;
#ifdef __linux__
    struct mmsghdr msgs[RECV_MANY];
    struct iovec iov[RECV_MANY];
    int vlen = want < self->depth ? want : self->depth;
    /* Each slot its own control buffer: it stays with the read (M1, B1);
     * before the first recv_datagram, room for GRO's message only (the
     * kernel flags the rest MSG_CTRUNC: such a read reports no dst). */
    size_t room = self->arrivals ? sizeof(self->control[0].buf) : self->gro ? CMSG_SPACE(sizeof(int)) : 0;
    for (int i = 0; i < vlen; i++) {
        iov[i].iov_base = self->slots[i]->data;
        iov[i].iov_len = (size_t)self->slots[i]->capacity;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &self->queue[i].src;
        msgs[i].msg_hdr.msg_namelen = sizeof(self->queue[i].src);
        msgs[i].msg_hdr.msg_control = room > 0 ? self->control[i].buf : NULL;
        msgs[i].msg_hdr.msg_controllen = room;
        msgs[i].msg_hdr.msg_flags = 0;
        msgs[i].msg_len = 0; /* every field set: no memset of 64 headers per batch */
    }
    Py_BEGIN_ALLOW_THREADS
    n = recvmmsg(fd, msgs, (unsigned int)vlen, 0, NULL);
    *err = errno;
    Py_END_ALLOW_THREADS
    if (n == vlen && vlen == self->depth && self->depth < RECV_MANY) {
        /* P11: the kernel had more: read into twice as many slots next time */
        self->depth = 2 * self->depth < RECV_MANY ? 2 * self->depth : RECV_MANY;
    }
    for (int i = 0; i < n; i++) {
        self->queue[i].slot = i;
        self->queue[i].length = (Py_ssize_t)msgs[i].msg_len;
        self->queue[i].segment = self->gro ? gro_segment(&msgs[i].msg_hdr) : 0;
        self->queue[i].src_len = msgs[i].msg_hdr.msg_namelen;
        self->queue[i].control_len = msgs[i].msg_hdr.msg_controllen;
        self->queue[i].flags = msgs[i].msg_hdr.msg_flags;
    }
#else /* one datagram per call where there is no recvmmsg */
    (void)want;
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
    self->queue[0].control_len = 0; /* no control data: Datagram.dst is None */
    self->queue[0].flags = 0;
#endif
    if (n > 0) {
        self->queue_head = 0;
        self->queue_len = n; /* queue_offset is 0: the last head left with its last datagram */
    }
    return n;
}

/* Hand out the oldest queued datagram: a read-only memoryview of exactly its
 * bytes (R1, R2), and its sender; for recv_datagram (`datagram` true) a
 * Datagram with the read's destination, interface and TOS (M1). With GRO
 * the head entry may hold several; each gets its own view at its own
 * offset and the entry's control data, and the entry leaves the queue with
 * its last datagram. */
static PyObject *
hand_out(CoreObject *self, int datagram)
{
    struct queued *q = &self->queue[self->queue_head];
    Py_ssize_t length = q->length - self->queue_offset;
    if (q->segment > 0 && length > q->segment) {
        length = q->segment;
    }
    /* recv's tuple: the parked one if there is one (park_spare) */
    int reuse = !datagram && self->spare != NULL && !PyObject_GC_IsTracked(self->spare);
    PyObject *result = reuse ? Py_NewRef(self->spare) : PyTuple_New(datagram ? 5 : 2);
    if (result == NULL) {
        return NULL;
    }
    PyObject *addr = source_address(self, &q->src, q->src_len);
    if (addr == NULL) {
        goto failed;
    }
    PyTuple_SET_ITEM(result, 1, addr);
    if (datagram) {
        PyObject *dst, *ifindex, *tos;
        if (arrival_of(self, q, &dst, &ifindex, &tos) < 0) {
            goto failed;
        }
        PyTuple_SET_ITEM(result, 2, dst);
        PyTuple_SET_ITEM(result, 3, ifindex);
        PyTuple_SET_ITEM(result, 4, tos);
    }
    ReadBufferObject *buf = self->slots[q->slot];
    buf->offset = self->queue_offset;
    buf->length = length;
    PyObject *frame = PyMemoryView_FromObject((PyObject *)buf);
    if (frame == NULL) {
        goto failed;
    }
    PyTuple_SET_ITEM(result, 0, frame);
    if (datagram && (result = make_datagram(self, result)) == NULL) {
        return NULL; /* the frame went with it, never handed out: nothing to release */
    }
    if (reuse) {
        PyObject_GC_Track(result); /* whole again: the caller may see it */
    }
    else if (!datagram && self->spare == NULL) {
        self->spare = Py_NewRef(result);
    }
    count_up(&self->received, 1);
    self->current = q->slot;
    self->queue_offset += length;
    if (self->queue_offset >= q->length) {
        self->queue_head++;
        self->queue_len--;
        self->queue_offset = 0;
    }
    self->frame = Py_NewRef(frame);
    return result;

failed: /* a tuple made here dies with what it holds; a parked one dies too */
    Py_DECREF(result);
    if (reuse) {
        Py_CLEAR(self->spare);
    }
    return NULL;
}

/* Try the syscall first; only when it would block, wait in the selector
 * (Socket._await_readable, which raises TimeoutError or ClosedError) and try
 * again. Returns 0 once the queue holds datagrams, or -1 with an exception.
 * Caller holds the reader role, with the slots filled. */
static int
read_or_wait(CoreObject *self, PyObject *timeout, int want)
{
    PyObject *deadline = NULL;
    int err, attempt = 0;
    for (;;) {
        if (read_batch(self, want, &err) > 0) {
            Py_XDECREF(deadline);
            return 0;
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
#ifdef __linux__
            if (self->peer_errors) { /* E4: an earlier datagram's report, gathered */
                int again = retry_past_reports(self, err, &attempt, 0);
                if (again < 0) {
                    break;
                }
                if (again) {
                    continue;
                }
            }
#endif
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError); /* R8: the kernel's error, verbatim */
            break;
        }
#ifdef __linux__
        /* E6: unread reports would end the wait at once, again and again */
        if (self->peer_errors && read_queue(self) < 0) {
            break;
        }
#endif
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
    return -1;
}

/* What every receive call does first, holding the reader role: release the
 * last frame or batch (R3, K1), refuse after close (R5), raise the kernel
 * error a batch met after its first datagram (B1). Returns 0, or -1 with
 * an exception. */
static int
release_last(CoreObject *self)
{
    park_spare(self);
    if (release_frame(self) < 0 || release_batch(self) < 0) {
        return -1;
    }
    self->current = -1; /* a retained buffer is dropped before the next batch (fill_slots) */
    if (self->closed) { /* R5: the reader's next recv after close() */
        if (return_slots(self) == 0) {
            closed_error(self);
        }
        return -1;
    }
    if (self->pending_err != 0 && self->queue_len == 0) {
        errno = self->pending_err;
        self->pending_err = 0;
        PyErr_SetFromErrno(PyExc_OSError); /* R8: the kernel's error, verbatim */
        return -1;
    }
    return 0;
}

/* Everything recv does while holding the reader role (Socket.recv's try). */
static PyObject *
recv_as_reader(CoreObject *self, PyObject *timeout, int datagram)
{
    if (release_last(self) < 0) {
        return NULL;
    }
    if (self->queue_len == 0) { /* B1, B2: what the last batch took comes first */
        if (fill_slots(self) < 0 || read_or_wait(self, timeout, RECV_MANY) < 0) {
            return NULL;
        }
    }
    return hand_out(self, datagram);
}

/* K1, after the first datagram: take what the kernel already holds into
 * the queue, without waiting. Returns how many it took (0: nothing more is
 * ready, or an error it kept for the next call). Slots this batch handed
 * out are still viewed, so fill_slots replaces them (R4). */
static int
read_more(CoreObject *self, Py_ssize_t want)
{
    int err = 0;
    if (fill_slots(self) < 0) {
        PyErr_Clear(); /* no room for more: the next call meets the error */
        return 0;
    }
    int n = read_batch(self, want < RECV_MANY ? (int)want : RECV_MANY, &err);
    if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
#ifdef __linux__
        if (self->peer_errors) { /* E4: a report's error: counted, never raised */
            int attempt = 0;
            if (retry_past_reports(self, err, &attempt, 0) < 0) {
                PyErr_Clear(); /* the queue is read again before the next wait */
            }
            return 0;
        }
#endif
        self->pending_err = err; /* B1: the datagrams taken come first */
    }
    return n > 0 ? n : 0;
}

/* Move the frame hand_out just made into the batch, which the next receive
 * call releases (K1). */
static int
keep_in_batch(CoreObject *self)
{
    PyObject *frame = self->frame;
    self->frame = NULL;
    int r = PyList_Append(self->batch, frame);
    Py_DECREF(frame);
    return r;
}

/* Everything recv_batch does while holding the reader role: wait for the
 * first datagram as recv does, then hand out the queue and what the kernel
 * already holds, up to `limit` (K1). */
static PyObject *
batch_as_reader(CoreObject *self, PyObject *timeout, Py_ssize_t limit)
{
    if (release_last(self) < 0) {
        return NULL;
    }
    if (self->batch == NULL && (self->batch = PyList_New(0)) == NULL) {
        return NULL;
    }
    if (self->queue_len == 0) {
        Py_ssize_t want = limit < RECV_MANY ? limit : RECV_MANY;
        if (fill_slots(self) < 0 || read_or_wait(self, timeout, (int)want) < 0) {
            return NULL;
        }
    }
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    Py_ssize_t got = 0;
    while (got < limit && (self->queue_len > 0 || read_more(self, limit - got) > 0)) {
        PyObject *datagram = hand_out(self, 1);
        if (datagram == NULL || keep_in_batch(self) < 0 || PyList_Append(list, datagram) < 0) {
            Py_XDECREF(datagram);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(datagram);
        got++;
    }
    return list;
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

/* C1: take the reader role for a receive call; the try is the ownership
 * test: atomic, and it never waits. It is not re-entrant, so a nested
 * receive call from a signal handler on the reading thread is refused as
 * well. `arrivals`: the call reports where datagrams went (M1), so every
 * batch from now on asks for their control data. Returns 0, or -1 with
 * the refusal raised. */
static inline int
take_reader(CoreObject *self, int arrivals)
{
    if (!role_try(self->reader)) {
        recv_refused(self);
        return -1;
    }
    role_took(self->reader);
    if (arrivals) {
        self->arrivals = 1;
    }
    return 0;
}

/* Give the reader role back after a receive call and return its result.
 * C5: a close() on this thread interrupted the call, so the descriptors go
 * as it unwinds. */
static inline PyObject *
give_reader(CoreObject *self, PyObject *result)
{
    if (self->recv_exit_releases) {
        result = release_on_exit(self, result);
    }
    role_give(self->reader);
    return result;
}

/* recv and recv_datagram: one reader role, one queue, one frame (M1). */
static inline PyObject *
receive(CoreObject *self, const char *fname, PyObject *const *args, Py_ssize_t nargs,
        PyObject *kwnames, int datagram)
{
    static const char *const names[] = {"timeout"};
    PyObject *argv[1] = {NULL};
    if (parse_args(fname, args, nargs, kwnames, names, 0, 1, argv) < 0) {
        return NULL;
    }
    PyObject *timeout = argv[0] != NULL ? argv[0] : Py_None;
    if (not_initialised(self) || (timeout != Py_None && check_timeout(self, timeout) < 0)) {
        return NULL;
    }
    if (take_reader(self, datagram) < 0) {
        return NULL;
    }
    return give_reader(self, recv_as_reader(self, timeout, datagram));
}

/* A positive int passes here; anything else goes to the Python twin's
 * check, which owns the error message (K1). Returns the bound, or -1. */
static Py_ssize_t
check_limit(CoreObject *self, PyObject *limit)
{
    if (PyLong_CheckExact(limit)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(limit, &overflow);
        if (overflow > 0 || (overflow == 0 && v > PY_SSIZE_T_MAX)) {
            return PY_SSIZE_T_MAX; /* a bound no batch reaches */
        }
        if (overflow == 0 && v >= 1) {
            return (Py_ssize_t)v;
        }
        PyErr_Clear();
    }
    PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, self->state->str_check_max_datagrams, limit);
    Py_XDECREF(r);
    if (r != NULL) {
        PyErr_Format(PyExc_SystemError, "udpio: max_datagrams %R passed the check", limit);
    }
    return -1;
}

PyObject *
Core_recv_batch(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"max_datagrams", "timeout"};
    PyObject *argv[2] = {NULL, NULL};
    if (parse_args("recv_batch", args, nargs, kwnames, names, 0, 2, argv) < 0 ||
        not_initialised(self)) {
        return NULL;
    }
    Py_ssize_t limit = argv[0] != NULL ? check_limit(self, argv[0]) : 64;
    PyObject *timeout = argv[1] != NULL ? argv[1] : Py_None;
    if (limit < 0 || (timeout != Py_None && check_timeout(self, timeout) < 0)) {
        return NULL;
    }
    if (take_reader(self, 1) < 0) {
        return NULL;
    }
    return give_reader(self, batch_as_reader(self, timeout, limit));
}

PyObject *
Core_recv(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return receive(self, "recv", args, nargs, kwnames, 0);
}

PyObject *
Core_recv_datagram(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return receive(self, "recv_datagram", args, nargs, kwnames, 1);
}

/* The Python twin's docstring, word for word (a test checks). */
const char Core_recv_doc[] =
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
    "meanwhile gets ``ConcurrentRecvError`` at once.\n";

/* The Python twin's docstring, word for word (a test checks). */
const char Core_recv_datagram_doc[] =
    "recv_datagram($self, /, timeout=None)\n"
    "--\n"
    "\n"
    "Receive one datagram as ``recv`` does, with where it was sent to.\n"
    "\n"
    "Returns a ``Datagram`` ``(frame, src, dst, ifindex, tos)``: ``frame``\n"
    "and ``src`` as ``recv`` returns them, ``dst`` the local address the\n"
    "sender used (on a Socket bound to every address, the one the client\n"
    "wrote to), ``ifindex`` the interface, ``tos`` the TOS or traffic\n"
    "class byte. Answer it with ``reply``. The frame follows ``recv``'s\n"
    "rules: valid until the next receive call of any kind.\n"
    "\n"
    "Raises what ``recv`` raises. Thread-safe, one caller at a time,\n"
    "shared with ``recv``: a second thread in either gets\n"
    "``ConcurrentRecvError``.\n";

/* The Python twin's docstring, word for word (a test checks). */
const char Core_recv_batch_doc[] =
    "recv_batch($self, /, max_datagrams=64, timeout=None)\n"
    "--\n"
    "\n"
    "Wait for a datagram, then take every one already there, up to ``max_datagrams``.\n"
    "\n"
    "Waits as ``recv_datagram`` does for the first datagram, then,\n"
    "without waiting again, takes the datagrams this Socket and the\n"
    "kernel already hold, in arrival order, until ``max_datagrams`` or\n"
    "until nothing more is ready. Returns a non-empty list of\n"
    "``Datagram``; answer each with ``reply`` or all at once with\n"
    "``send_many``. Every frame of the list stays valid until the next\n"
    "receive call of any kind, which releases them all; slices of them\n"
    "that you keep are never overwritten.\n"
    "\n"
    "Raises what ``recv`` raises (``TimeoutError`` rather than an empty\n"
    "list), and ``TypeError``/``ValueError`` for a ``max_datagrams`` that\n"
    "is not a positive int. A kernel error met after the first datagram\n"
    "is raised by the next receive call, so no datagram is lost to it.\n"
    "\n"
    "Thread-safe, one caller at a time, shared with ``recv``: a second\n"
    "thread in any receive call gets ``ConcurrentRecvError``.\n";
