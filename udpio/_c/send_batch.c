/* Socket.send_batch: up to SEND_MANY datagrams per sendmmsg, runs of equal
 * sizes as one UDP GSO send (the twin of udpio/_socket.py's
 * Socket.send_batch and _send_some, which sends one at a time). */
#include "udpio.h"

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

PyObject *
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
