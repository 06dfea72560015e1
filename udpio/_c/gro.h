/* UDP GRO: the kernel may hand over several datagrams from one sender as
 * one read (the twin of udpio/_gro.py, which turns the option on or off).
 * Read for every message recvmmsg takes, so inline in recv.c. */
#ifndef UDPIO_GRO_H
#define UDPIO_GRO_H

#include "udpio.h"

#ifdef __linux__
/* With UDP_GRO on, the kernel may hand over several datagrams from one
 * sender as one message, all of the size this control message gives but
 * the last, which may be shorter. 0: the message is one datagram. */
static inline Py_ssize_t
gro_segment(struct msghdr *msg)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm != NULL; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
            int size;
            memcpy(&size, CMSG_DATA(cm), sizeof(size));
            return size > 0 ? (Py_ssize_t)size : 0;
        }
    }
    return 0;
}
#endif

#endif /* UDPIO_GRO_H */
