/* Control messages: where a datagram went (M1) and which address a send
 * leaves from (M2). The twin of udpio/_cmsg.py, which shows each step
 * plainly. Read for every datagram recv_datagram returns and written for
 * every send with a source, so inline in recv.c and send*.c.
 */
#ifndef UDPIO_CMSG_H
#define UDPIO_CMSG_H

#include "udpio.h"

/* What the control data of one read says; a field the kernel left out
 * stays unknown (have_dst, have_tos 0; ifindex 0). */
struct arrival {
    int have_dst;
    struct sockaddr_storage dst; /* address only: the caller sets the port */
    socklen_t dst_len;
    int ifindex;
    int have_tos;
    int tos;
};

static inline int
is_link_local6(const struct in6_addr *a)
{
    return a->s6_addr[0] == 0xfe && (a->s6_addr[1] & 0xc0) == 0x80;
}

/* An IPv4 destination as the Socket's family gives it: an IPv4 address, or
 * on an IPv6 Socket its mapped form. */
static inline void
arrival_ipv4(struct arrival *out, int family, const struct in_addr *addr)
{
    memset(&out->dst, 0, sizeof(out->dst));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&out->dst;
        a->sin_family = AF_INET;
        a->sin_addr = *addr;
        out->dst_len = sizeof(*a);
    }
    else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&out->dst;
        a->sin6_family = AF_INET6;
        a->sin6_addr.s6_addr[10] = 0xff;
        a->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&a->sin6_addr.s6_addr[12], addr, 4);
        out->dst_len = sizeof(*a);
    }
    out->have_dst = 1;
}

static inline void
arrival_ipv6(struct arrival *out, const struct in6_pktinfo *info)
{
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&out->dst;
    memset(&out->dst, 0, sizeof(out->dst));
    a->sin6_family = AF_INET6;
    a->sin6_addr = info->ipi6_addr;
    /* A link-local address means nothing without its interface. */
    a->sin6_scope_id = is_link_local6(&info->ipi6_addr) ? info->ipi6_ifindex : 0;
    out->dst_len = sizeof(*a);
    out->have_dst = 1;
}

/* M1: read the destination, interface and TOS from one read's control
 * data. ipi_addr is the header's destination; ipi_spec_dst is only the
 * kernel's preferred source for an answer (they differ for broadcast and
 * multicast). Truncated control data (MSG_CTRUNC) says nothing for sure:
 * everything stays unknown, never a guess. */
static inline void
parse_arrival(struct msghdr *msg, int family, struct arrival *out)
{
    memset(out, 0, sizeof(*out));
    if (msg->msg_flags & MSG_CTRUNC) {
        return;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm != NULL; cm = CMSG_NXTHDR(msg, cm)) {
        size_t len = cm->cmsg_len - CMSG_LEN(0);
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO &&
            len >= sizeof(struct in_pktinfo)) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(cm), sizeof(info));
            arrival_ipv4(out, family, &info.ipi_addr);
            out->ifindex = info.ipi_ifindex;
        }
        else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO &&
                 len >= sizeof(struct in6_pktinfo)) {
            struct in6_pktinfo info;
            memcpy(&info, CMSG_DATA(cm), sizeof(info));
            arrival_ipv6(out, &info);
            out->ifindex = (int)info.ipi6_ifindex;
        }
        else if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_TOS && len >= 1) {
            out->tos = *(unsigned char *)CMSG_DATA(cm);
            out->have_tos = 1;
        }
        else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_TCLASS &&
                 len >= sizeof(int)) {
            int tclass;
            memcpy(&tclass, CMSG_DATA(cm), sizeof(tclass));
            out->tos = tclass & 0xff;
            out->have_tos = 1;
        }
    }
}

/* M2: a source's control message as Socket._source_cmsg returns it,
 * (level, type, data), into *out (obj untouched). Returns 1, 0 for None,
 * or -1 (no exception) for anything else: the Python twin then sends. */
static inline int
parse_source(PyObject *cmsg, struct source *out)
{
    if (cmsg == Py_None) {
        return 0;
    }
    if (!PyTuple_CheckExact(cmsg) || PyTuple_GET_SIZE(cmsg) != 3 ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(cmsg, 2)) ||
        (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(cmsg, 2)) > sizeof(out->data)) {
        return -1;
    }
    long level = PyLong_AsLong(PyTuple_GET_ITEM(cmsg, 0));
    long type = PyLong_AsLong(PyTuple_GET_ITEM(cmsg, 1));
    if (PyErr_Occurred() || level < 0 || level > INT_MAX || type < 0 || type > INT_MAX) {
        PyErr_Clear();
        return -1;
    }
    out->level = (int)level;
    out->type = (int)type;
    out->len = (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(cmsg, 2));
    memcpy(out->data, PyBytes_AS_STRING(PyTuple_GET_ITEM(cmsg, 2)), out->len);
    return 1;
}

/* M2: append the source's pktinfo (what Socket._source_cmsg returned) at
 * `cm`, the next free header of a control buffer. Returns its space. */
static inline size_t
put_source(struct cmsghdr *cm, const struct source *from)
{
    cm->cmsg_level = from->level;
    cm->cmsg_type = from->type;
    cm->cmsg_len = CMSG_LEN(from->len);
    memcpy(CMSG_DATA(cm), from->data, from->len);
    return CMSG_SPACE(from->len);
}

#endif /* UDPIO_CMSG_H */
