/* Socket.send_batch: up to SEND_MANY datagrams per sendmmsg, runs of equal
 * sizes as one UDP GSO send. The twin of udpio/_socket.py's
 * Socket.send_batch, which checks the batch the same way and then sends
 * one datagram at a time; anything but the plain case (a frame that is
 * not a buffer or too big, a destination that is not a numeric tuple, a
 * src whose control message is not a pktinfo, a role this thread holds
 * already) goes to it, and it owns every error message. */
#include "udpio.h"
#include "cmsg.h"

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
    while (n < k && views[n].len > 0 && views[n].len <= size && total + views[n].len <= UDPIO_LARGEST_IPV4_PAYLOAD - 8) {
        total += views[n].len;
        n++;
        if (views[n - 1].len < size) {
            break; /* a shorter one can only be the last */
        }
    }
    return n;
}

/* One sendmsg with UDP_SEGMENT (and the source's pktinfo, M2): the kernel
 * cuts the iovecs' bytes into datagrams of gso_size (B3). No copy: the
 * iovecs point at the frames. */
static int
send_gso(int fd, struct iovec *iov, Py_ssize_t n, struct sockaddr_storage *sa, socklen_t sa_len,
         uint16_t gso_size, const struct source *from, int *err)
{
    control_buffer control;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    memset(&control, 0, sizeof(control));
    msg.msg_name = sa;
    msg.msg_namelen = sa_len;
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(cm), &gso_size, sizeof(gso_size));
    size_t used = CMSG_SPACE(sizeof(uint16_t));
    if (from != NULL) {
        used += put_source(CMSG_NXTHDR(&msg, cm), from);
    }
    msg.msg_controllen = used;
    ssize_t r;
    Py_BEGIN_ALLOW_THREADS
    r = sendmsg(fd, &msg, 0);
    *err = errno;
    Py_END_ALLOW_THREADS
    return r < 0 ? -1 : (int)n;
}

/* B5: the kernel refuses a GSO run it cannot carry on this path (segments
 * over the path MTU: EMSGSIZE or EINVAL; a device without the offload:
 * EIO). A plain send of the same datagrams may still go. */
static int
gso_refused(int err)
{
    return err == EMSGSIZE || err == EINVAL || err == EIO;
}

/* B5: whether a run of `size`-byte segments to `sa` is worth trying with
 * GSO: not if the kernel has none, nor if this destination refused that
 * size or a smaller one before. Caller holds the writer role. */
static int
gso_worth_trying(CoreObject *self, const struct sockaddr_storage *sa, socklen_t sa_len,
                 Py_ssize_t size)
{
    if (self->gso_off) {
        return 0;
    }
    return !(self->gso_refused_size > 0 && size >= self->gso_refused_size &&
             sa_len == self->gso_refused_len && memcmp(sa, &self->gso_refused, sa_len) == 0);
}

/* Remember that `sa` refused runs of `size` bytes: the same datagrams went
 * out by sendmmsg, so the refusal was GSO's own (B5). */
static void
remember_gso_refusal(CoreObject *self, const struct sockaddr_storage *sa, socklen_t sa_len,
                     Py_ssize_t size)
{
    int same = sa_len == self->gso_refused_len && memcmp(sa, &self->gso_refused, sa_len) == 0;
    if (!same || self->gso_refused_size == 0 || size < self->gso_refused_size) {
        memcpy(&self->gso_refused, sa, sa_len);
        self->gso_refused_len = sa_len;
        self->gso_refused_size = size;
    }
}

/* The views' datagrams in one sendmmsg, each message with the source's
 * control message where there is one. Returns how many went, or -1. */
static int
send_mmsg(int fd, Py_buffer *views, Py_ssize_t got, struct sockaddr_storage *sa, socklen_t sa_len,
          const struct source *from, int *err)
{
    struct iovec iov[SEND_MANY];
    struct mmsghdr msgs[SEND_MANY];
    control_buffer control; /* the kernel only reads it: one for every message */
    size_t control_len = 0;
    memset(&control, 0, sizeof(control));
    if (from != NULL) {
        struct msghdr probe = {.msg_control = control.buf, .msg_controllen = sizeof(control.buf)};
        control_len = put_source(CMSG_FIRSTHDR(&probe), from);
    }
    for (Py_ssize_t i = 0; i < got; i++) {
        iov[i].iov_base = views[i].buf;
        iov[i].iov_len = (size_t)views[i].len;
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_name = sa;
        msgs[i].msg_hdr.msg_namelen = sa_len;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        if (control_len > 0) {
            msgs[i].msg_hdr.msg_control = control.buf;
            msgs[i].msg_hdr.msg_controllen = control_len;
        }
    }
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = sendmmsg(fd, msgs, (unsigned int)got, 0);
    *err = errno;
    Py_END_ALLOW_THREADS
    return n;
}

/* As many of frames[start:] as one system call takes: a GSO run where the
 * sizes allow and the path takes it, else one sendmmsg (B3, B5). Returns
 * how many went, or -1 with *err set. Caller holds the writer role. */
static int
send_views(CoreObject *self, Py_buffer *views, Py_ssize_t got, struct sockaddr_storage *sa,
           socklen_t sa_len, const struct source *from, int *err)
{
    int fd = self->fd;
    Py_ssize_t run = gso_worth_trying(self, sa, sa_len, views[0].len) ? gso_run(views, got) : 0;
    if (run >= 2) {
        struct iovec iov[SEND_MANY];
        for (Py_ssize_t i = 0; i < run; i++) {
            iov[i].iov_base = views[i].buf;
            iov[i].iov_len = (size_t)views[i].len;
        }
        int n = send_gso(fd, iov, run, sa, sa_len, (uint16_t)views[0].len, from, err);
        if (n < 0 && self->peer_errors && gso_refused(*err)) {
            /* E4: an earlier datagram's report (a path's EMSGSIZE) is not
             * this run's refusal: gathered, and the run tried again. */
            int attempt = 0, again = retry_past_reports(self, *err, &attempt, 1);
            if (again < 0) {
                return -2;
            }
            if (again) {
                n = send_gso(fd, iov, run, sa, sa_len, (uint16_t)views[0].len, from, err);
            }
        }
        if (n >= 0) {
            self->gso_sends++;
            return n;
        }
        if (*err == ENOPROTOOPT || *err == EOPNOTSUPP) {
            self->gso_off = 1; /* this kernel has no UDP GSO at all */
        }
        else if (!gso_refused(*err)) {
            return -1; /* an error a plain send would raise too (S5) */
        }
        /* B5: the same datagrams without GSO; the kernel fragments them as
         * it does for send. Only an error of that send reaches the caller. */
        n = send_mmsg(fd, views, got, sa, sa_len, from, err);
        if (n > 0 && !self->gso_off) {
            remember_gso_refusal(self, sa, sa_len, views[0].len);
        }
        return n;
    }
    return send_mmsg(fd, views, got, sa, sa_len, from, err);
}

/* Views of up to SEND_MANY of frames[start:] (a tuple: no other thread can
 * change it). Returns how many, or -1 with the exception of a frame whose
 * buffer passed the check and now fails (an exporter that refuses a
 * second view), none held. */
static Py_ssize_t
take_views(PyObject *frames, Py_ssize_t start, Py_buffer *views)
{
    Py_ssize_t got = 0;
    while (got < SEND_MANY && start + got < PyTuple_GET_SIZE(frames)) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(frames, start + got), &views[got], PyBUF_SIMPLE) < 0) {
            for (Py_ssize_t i = 0; i < got; i++) {
                PyBuffer_Release(&views[i]);
            }
            return -1;
        }
        got++;
    }
    return got;
}

/* The plain case of one send_batch, checked before anything is sent (B3):
 * its frames (a tuple, strong), where they go, and the source's
 * control message (has_source 0: the kernel chooses, M2). */
struct batch {
    PyObject *frames;
    struct sockaddr_storage sa;
    socklen_t sa_len;
    int has_source;
    struct source from;
};

/* Sends the batch holding the writer role, as many datagrams per system
 * call as the kernel takes; when its buffer is full, Socket._await_writable
 * waits (S4). Returns 0, or -1 with an exception; *sent counts what went
 * out either way (B3, M3). */
static int
send_frames(CoreObject *self, struct batch *b, PyObject *deadline, PyObject *timeout,
            Py_ssize_t *sent)
{
    int attempt = 0; /* E4: failures a report may explain, since the last progress */
    while (*sent < PyTuple_GET_SIZE(b->frames)) {
        Py_buffer views[SEND_MANY];
        Py_ssize_t got = take_views(b->frames, *sent, views);
        if (got < 0) {
            return -1;
        }
        int err = 0;
        int n = send_views(self, views, got, &b->sa, b->sa_len, b->has_source ? &b->from : NULL, &err);
        for (Py_ssize_t i = 0; i < got; i++) {
            PyBuffer_Release(&views[i]);
        }
        if (n == -2) {
            return -1; /* an exception, gathering reports */
        }
        if (n > 0) {
            *sent += n;
            count_up(&self->sent, n);
            attempt = 0;
        }
        else if (send_retry(self, err, deadline, timeout, "send_batch", &attempt) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Whether every item of the tuple `frames` is a C-contiguous buffer of at
 * most `largest` bytes. Returns 1 yes, 0 not certain (the twin then names
 * the frame), never an exception. */
static int
frames_fit(PyObject *frames, Py_ssize_t largest)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(frames); i++) {
        PyObject *item = PyTuple_GET_ITEM(frames, i);
        Py_ssize_t size;
        if (PyBytes_CheckExact(item)) {
            size = PyBytes_GET_SIZE(item); /* the common case: no buffer to ask for */
        }
        else {
            Py_buffer view;
            if (PyObject_GetBuffer(item, &view, PyBUF_SIMPLE) < 0) {
                PyErr_Clear();
                return 0;
            }
            size = view.len;
            PyBuffer_Release(&view);
        }
        if (size > largest) {
            return 0;
        }
    }
    return 1;
}

/* S3: where the batch goes. A numeric tuple of this family is parsed here;
 * anything else is the twin's Socket._prepared_destination first (an IPv4
 * address on a dual-stack Socket, mapped; a field sendto would truncate,
 * refused), and parsed if it gave a numeric tuple. Returns 1, 0 (the
 * twin's case: a name, say), or -1 with its exception, the batch's first
 * (as in the twin, the destination is checked before the frames). */
static int
batch_destination(CoreObject *self, PyObject *dst, struct batch *b)
{
    if (parse_destination(self->family, dst, &b->sa, &b->sa_len)) {
        return 1;
    }
    PyObject *prepared = PyObject_CallMethodOneArg((PyObject *)self, self->state->str_prepared_destination, dst);
    if (prepared == NULL) {
        return -1;
    }
    int r = parse_destination(self->family, prepared, &b->sa, &b->sa_len);
    Py_DECREF(prepared);
    return r;
}

/* B3: the whole batch checked before anything is sent, in the twin's
 * order: destination, frames, src (Socket._source_cmsg, whose error is
 * the twin's own), timeout. Returns 1 (the plain case: *b filled), 0 (the
 * twin's case) or -1 with an exception. */
static int
check_batch(CoreObject *self, PyObject *dst, PyObject *src, PyObject *timeout, struct batch *b)
{
    int r = batch_destination(self, dst, b);
    if (r <= 0) {
        return r;
    }
    if (!frames_fit(b->frames, largest_payload(&b->sa))) {
        return 0;
    }
    b->has_source = 0;
    if (src != Py_None) {
        PyObject *cmsg = PyObject_CallMethodOneArg((PyObject *)self, self->state->str_source_cmsg, src);
        if (cmsg == NULL) {
            return -1;
        }
        r = parse_source(cmsg, &b->from);
        Py_DECREF(cmsg);
        if (r <= 0) {
            PyErr_Clear();
            return 0; /* a control message of another shape: the twin sends it */
        }
        b->has_source = 1;
    }
    return timeout == Py_None || check_timeout(self, timeout) == 0 ? 1 : -1;
}

/* C2, S4: take the writer role for the whole batch, waiting at most
 * `timeout` (None: as long as it takes). Returns 1, 0 (timed out, with the
 * twin's TimeoutError) or -1 with an exception (a signal handler raised). */
static int
take_writer(CoreObject *self, PyObject *timeout)
{
    if (role_try(self->writer)) {
        return 1;
    }
    double seconds = timeout == Py_None ? -1 : PyFloat_AsDouble(timeout);
    if (seconds == -1 && timeout != Py_None && PyErr_Occurred()) {
        return -1;
    }
    int got = role_wait(self->writer, seconds);
    if (got == 0) {
        char *text = PyOS_double_to_string(seconds + 0.0, 'g', 6, 0, NULL);
        if (text != NULL) {
            PyErr_Format(PyExc_TimeoutError,
                         "udpio: send_batch timed out after %s s waiting for another send", text);
            PyMem_Free(text);
        }
    }
    return got;
}

/* The plain case: the deadline first (the twin's clock starts before the
 * role is taken), then the role for the whole batch (C2), the closed
 * check (C3) and the sends. Returns the count, or NULL with an exception
 * that carries `.sent`. */
static PyObject *
send_plain_batch(CoreObject *self, struct batch *b, PyObject *timeout)
{
    Py_ssize_t sent = 0;
    PyObject *result = NULL;
    PyObject *deadline = make_deadline(self, timeout);
    int took = deadline == NULL ? -1 : take_writer(self, timeout);
    if (took == 1) {
        role_took(self->writer);
        if (self->closed) {
            PyErr_SetNone(self->state->ClosedError);
        }
        else if (send_frames(self, b, deadline, timeout, &sent) == 0) {
            result = PyLong_FromSsize_t(sent);
        }
        if (self->send_exit_releases) { /* C5: a close() on this thread interrupted a wait */
            result = release_on_exit(self, result);
        }
        role_give(self->writer);
    }
    Py_XDECREF(deadline);
    if (result == NULL) {
        note_sent(sent);
    }
    return result;
}
#endif

/* The Python twin's send_batch: every case check_batch leaves to it. */
static PyObject *
send_batch_slow(CoreObject *self, PyObject *frames, PyObject *dst, PyObject *timeout, PyObject *src)
{
    PyObject *args[] = {(PyObject *)self, frames, dst, timeout, src};
    return PyObject_VectorcallMethod(self->state->str_send_batch_slow, args,
                                     4 | PY_VECTORCALL_ARGUMENTS_OFFSET, /* src: by keyword */
                                     self->state->src_kwnames);
}

PyObject *
Core_send_batch(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"frames", "dst", "timeout", "src"};
    PyObject *argv[4] = {NULL, NULL, NULL, NULL};
    if (nargs > 3) {
        PyErr_Format(PyExc_TypeError, "send_batch() takes at most 3 positional arguments (%zd given)",
                     nargs);
        return NULL;
    }
    if (parse_args("send_batch", args, nargs, kwnames, names, 2, 4, argv) < 0 ||
        not_initialised(self)) {
        return NULL;
    }
    PyObject *dst = argv[1];
    PyObject *timeout = argv[2] != NULL ? argv[2] : Py_None;
    PyObject *src = argv[3] != NULL ? argv[3] : Py_None;
    struct batch b;
    b.frames = PySequence_Tuple(argv[0]); /* read once (a tuple is itself) */
    if (b.frames == NULL) {
        note_sent(0);
        return NULL;
    }
    PyObject *result = NULL;
    int plain = 0;
#ifdef __linux__
    /* A role this thread holds already (a signal handler's call inside its
     * own send) is the twin's: its role is re-entrant. */
    plain = role_is_mine(self->writer) ? 0 : check_batch(self, dst, src, timeout, &b);
    if (plain > 0) {
        result = send_plain_batch(self, &b, timeout);
    }
#endif
    if (plain < 0) {
        note_sent(0);
    }
    else if (plain == 0) {
        result = send_batch_slow(self, b.frames, dst, timeout, src);
    }
    Py_DECREF(b.frames);
    return result;
}

/* The Python twin's docstring, word for word (a test checks). */
const char Core_send_batch_doc[] =
    "send_batch($self, /, frames, dst, timeout=None, *, src=None)\n"
    "--\n"
    "\n"
    "Send each buffer in ``frames`` as one datagram to ``dst``, in order; return how many.\n"
    "\n"
    "As many datagrams go per system call as the platform allows (with\n"
    "the native backend on Linux: runs of equal-sized datagrams as one UDP\n"
    "GSO send, the rest by ``sendmmsg``; one ``sendto`` each otherwise).\n"
    "The batch holds the writer role throughout, so another thread's\n"
    "``send`` never lands in the middle of it. ``frames`` is any\n"
    "iterable, read once as the call starts; every frame is checked\n"
    "before anything is sent. ``timeout`` bounds the whole batch,\n"
    "waits for buffer room included. ``src`` is as for ``send``. Where the\n"
    "path cannot take a GSO run (a small MTU, a device without the\n"
    "offload), the same datagrams go out without it.\n"
    "\n"
    "Raises what ``send`` raises (a bad frame is named by its index).\n"
    "Every exception it raises carries ``.sent``: how many datagrams of\n"
    "the batch went out before it, so none is resent or lost.\n"
    "\n"
    "Thread-safe, as ``send``.\n";
