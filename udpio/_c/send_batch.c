/* Socket.send_batch: up to SEND_MANY datagrams per sendmmsg, runs of equal
 * sizes as one UDP GSO send (the twin of udpio/_socket.py's
 * Socket.send_batch and _send_some, which sends one at a time). */
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

/* Sends frames[start:start + k] in as few system calls as one takes and
 * returns how many went out (B3). Anything but the plain case (a list or
 * tuple of C-contiguous buffers to a numeric address tuple) goes to the
 * Python twin, which sends one and owns the errors. Caller holds the writer
 * role (Socket.send_batch), which keeps the descriptor open and owns the
 * destination cache (C3). */
static PyObject *
send_some(CoreObject *self, PyObject *frames, Py_ssize_t start, PyObject *dst, PyObject *cmsg)
{
    Py_buffer views[SEND_MANY];
    struct sockaddr_storage sa;
    socklen_t sa_len;
    struct source from;
    int has_source = parse_source(cmsg, &from);
    Py_ssize_t total = PySequence_Fast_GET_SIZE(frames);
    Py_ssize_t count = total - start < SEND_MANY ? total - start : SEND_MANY;
    PyObject **items = PySequence_Fast_ITEMS(frames);
    Py_ssize_t got = 0;
    if (has_source < 0 || !destination(self, dst, &sa, &sa_len)) {
        return NULL; /* no exception set: the caller takes the Python path */
    }
    for (; got < count; got++) {
        if (PyObject_GetBuffer(items[start + got], &views[got], PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            break;
        }
    }
    int n = -1, err = 0;
    if (got > 0) {
        n = send_views(self, views, got, &sa, sa_len, has_source ? &from : NULL, &err);
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

PyObject *
Core_send_some(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "_send_some(frames, start, dst, cmsg)");
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
        PyObject *r = send_some(self, frames, start, args[2], args[3]);
        if (r != NULL || PyErr_Occurred()) {
            return r;
        }
    }
#endif
    PyObject *slow[] = {(PyObject *)self, args[0], args[1], args[2], args[3]};
    return PyObject_VectorcallMethod(self->state->str_send_some_slow, slow,
                                     5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* Whether every item of the list or tuple `frames` is a C-contiguous buffer
 * of at most `largest` bytes. Returns 1 yes, 0 not certain (the caller asks
 * the Python twin, which names the frame), never an exception. The item is
 * held while its buffer is asked for: a buffer that runs Python code may
 * change the list, so its size is read again every time. */
static int
frames_fit(PyObject *frames, Py_ssize_t largest)
{
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(frames); i++) {
        PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(frames, i));
        Py_ssize_t size;
        if (PyBytes_CheckExact(item)) {
            size = PyBytes_GET_SIZE(item); /* the common case: no buffer to ask for */
        }
        else {
            Py_buffer view;
            if (PyObject_GetBuffer(item, &view, PyBUF_SIMPLE) < 0) {
                PyErr_Clear();
                Py_DECREF(item);
                return 0;
            }
            size = view.len;
            PyBuffer_Release(&view);
        }
        Py_DECREF(item);
        if (size > largest) {
            return 0;
        }
    }
    return 1;
}

/* Socket._check_frames(frames, largest) (B3): every frame is checked before
 * anything is sent. A list or tuple whose frames all fit is checked here,
 * at a few instructions a frame; anything else goes to the Python twin,
 * which raises the error that names the frame. */
PyObject *
Core_check_frames(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_check_frames(frames, largest)");
        return NULL;
    }
    if (PyList_CheckExact(args[0]) || PyTuple_CheckExact(args[0])) {
        Py_ssize_t largest = PyLong_AsSsize_t(args[1]);
        if (largest == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (frames_fit(args[0], largest)) {
            Py_RETURN_NONE;
        }
    }
    PyObject *slow[] = {(PyObject *)self, args[0], args[1]};
    return PyObject_VectorcallMethod(self->state->str_check_frames_slow, slow,
                                     3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}
