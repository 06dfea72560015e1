/* Socket addresses to the tuples the socket module uses, and back (the
 * twin of udpio/_addresses.py and of what socket.sendto parses). What recv
 * and send do per datagram with them (the source and destination caches)
 * is in udpio.h and recv.c; this file is the work done on a cache miss. */
#include "udpio.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <sys/un.h>

/* The tuple the socket module would build for this address (socket.recvfrom). */
PyObject *
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
int
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
