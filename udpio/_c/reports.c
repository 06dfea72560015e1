/* The network's reports about datagrams this socket sent (E2-E4), read
 * from the error queue in C where the receive and send paths meet it: the
 * twin of udpio/_reports.py (the rule) and Socket._gather_reports (which
 * reads one report per recvmsg). The reports go to the same store as the
 * pure twin's, through Socket._keep_reports. */
#include "udpio.h"

#ifdef __linux__
#include <linux/errqueue.h>

/* Reports read per recvmmsg, and at most per gathering: a flood is read
 * in rounds (what is left wakes the next wait, or fails the next call,
 * which gathers again), so one call never reads for long. */
#define REPORTS_PER_READ 16
#define REPORTS_PER_GATHER 1024

/* Room for a report's control message and the others this Socket enables
 * (M1), which the kernel adds to a report as to a datagram: on a
 * dual-stack socket an IPv4 report brings IPv4's pktinfo and TOS too
 * (udpio._reports.ANCILLARY_SIZE). */
typedef union {
    char buf[512];
    struct cmsghdr align;
} report_control;

/* Whether the network sent the report (an ICMP error), not this host. */
static int
is_remote(const struct sock_extended_err *ee)
{
    return ee->ee_origin == SO_EE_ORIGIN_ICMP || ee->ee_origin == SO_EE_ORIGIN_ICMP6;
}

/* The host or router that sent a report: the sockaddr after the
 * sock_extended_err (SO_EE_OFFENDER), as make_address gives it, or None
 * for a report the network did not send (which names none). */
static PyObject *
offender(const struct cmsghdr *cm, const struct sock_extended_err *ee)
{
    size_t have = cm->cmsg_len - CMSG_LEN(sizeof(*ee));
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof(sa));
    if (!is_remote(ee) || have < sizeof(sa_family_t)) {
        Py_RETURN_NONE; /* "local", as the twin names every other origin */
    }
    memcpy(&sa, CMSG_DATA(cm) + sizeof(*ee), have < sizeof(sa) ? have : sizeof(sa));
    if (sa.ss_family != AF_INET && sa.ss_family != AF_INET6) {
        Py_RETURN_NONE;
    }
    return make_address(&sa, (socklen_t)(have < sizeof(sa) ? have : sizeof(sa)));
}

static PyObject *
origin_name(CoreObject *self, int origin)
{
    if (origin == SO_EE_ORIGIN_ICMP) {
        return Py_NewRef(self->state->str_icmp);
    }
    if (origin == SO_EE_ORIGIN_ICMP6) {
        return Py_NewRef(self->state->str_icmp6);
    }
    return Py_NewRef(self->state->str_local);
}

/* The PeerError in one message from the error queue (E2), built as the
 * twin's parse_report builds it; *ee gets its sock_extended_err. NULL
 * with no exception where the message carries no report. */
static PyObject *
make_report(CoreObject *self, struct msghdr *msg, struct sock_extended_err *ee)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm != NULL; cm = CMSG_NXTHDR(msg, cm)) {
        int ours = (cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_RECVERR) ||
                   (cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_RECVERR);
        if (!ours || cm->cmsg_len < CMSG_LEN(sizeof(*ee))) {
            continue;
        }
        memcpy(ee, CMSG_DATA(cm), sizeof(*ee));
        int local = !is_remote(ee);
        /* Each field made only while the ones before it were: no call runs
         * with an exception already set. */
        PyObject *fields[7] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
        PyObject *report = NULL;
        if ((fields[0] = make_address(msg->msg_name, msg->msg_namelen)) != NULL &&
            (fields[1] = PyLong_FromUnsignedLong(ee->ee_errno)) != NULL &&
            (fields[2] = origin_name(self, local ? SO_EE_ORIGIN_LOCAL : ee->ee_origin)) != NULL &&
            (fields[3] = PyLong_FromLong(local ? 0 : ee->ee_type)) != NULL &&
            (fields[4] = PyLong_FromLong(local ? 0 : ee->ee_code)) != NULL &&
            (fields[5] = PyLong_FromUnsignedLong(ee->ee_errno == EMSGSIZE ? ee->ee_info : 0)) != NULL &&
            (fields[6] = offender(cm, ee)) != NULL) {
            report = PyObject_Vectorcall(self->state->PeerError, fields, 7, NULL);
        }
        for (int i = 0; i < 7; i++) {
            Py_XDECREF(fields[i]);
        }
        return report;
    }
    return NULL;
}

/* One recvmmsg of up to REPORTS_PER_READ messages from the error queue,
 * each made a report and appended to `list`; `err` is looked for among
 * them (g). Returns how many messages it read (0: the queue is empty), or
 * -1 with an exception. Caller holds a role (the descriptor stays open). */
static int
read_reports(CoreObject *self, PyObject *list, int err, struct gathered *g)
{
    struct mmsghdr msgs[REPORTS_PER_READ];
    struct sockaddr_storage names[REPORTS_PER_READ];
    report_control control[REPORTS_PER_READ];
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < REPORTS_PER_READ; i++) {
        msgs[i].msg_hdr.msg_name = &names[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
        msgs[i].msg_hdr.msg_control = control[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof(control[i].buf);
    }
    int fd = self->fd, n;
    Py_BEGIN_ALLOW_THREADS
    n = recvmmsg(fd, msgs, REPORTS_PER_READ, MSG_ERRQUEUE | MSG_DONTWAIT, NULL);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < n; i++) {
        struct sock_extended_err ee;
        PyObject *report = make_report(self, &msgs[i].msg_hdr, &ee);
        if (report == NULL) {
            if (PyErr_Occurred()) {
                return -1;
            }
            continue; /* a message with no report in it: nothing to keep */
        }
        int appended = PyList_Append(list, report);
        Py_DECREF(report);
        if (appended < 0) {
            return -1;
        }
        g->count++;
        if ((int)ee.ee_errno == err) {
            g->local_match |= !is_remote(&ee);
            g->remote_match |= is_remote(&ee);
        }
    }
    return n > 0 ? n : 0; /* EAGAIN: empty; EINTR: the next gathering reads on */
}

PyObject *
gather_reports(CoreObject *self, int err, struct gathered *g)
{
    int idle = 0;
    memset(g, 0, sizeof(*g));
    PyObject *list = PyList_New(0);
    /* One reader of the queue at a time, so the reports are kept in the
     * order they came; a thread that finds it being read goes on: the
     * reader takes what is there. */
    if (list == NULL) {
        return NULL;
    }
    if (!atomic_compare_exchange_strong(&self->gathering, &idle, 1)) {
        g->busy = 1;
        return list;
    }
    atomic_store(&self->unread, 0);
    int failed = 0;
    for (int read = 0; !failed && read < REPORTS_PER_GATHER;) {
        int n = read_reports(self, list, err, g);
        failed = n < 0;
        if (n < REPORTS_PER_READ) {
            break;
        }
        read += n;
    }
    if (!failed && PyList_GET_SIZE(list) > 0) {
        PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, self->state->str_keep_reports, list);
        failed = r == NULL;
        Py_XDECREF(r);
    }
    atomic_store(&self->gathering, 0);
    if (failed) {
        Py_CLEAR(list);
    }
    return list;
}

int
read_queue(CoreObject *self)
{
    struct gathered g;
    PyObject *list = gather_reports(self, 0, &g);
    Py_XDECREF(list);
    return list == NULL ? -1 : 0;
}

int
retry_past_reports(CoreObject *self, int err, int *attempt, int sending)
{
    struct gathered g;
    if (!sending) {
        /* A receive has no errors of its own (each is the pending error one
         * report set, which the failed read cleared): read again at once,
         * and read the queue every UDPIO_UNREAD_REPORTS reports, not one by
         * one (P13). */
        (*attempt)++;
        if (atomic_fetch_add(&self->unread, 1) + 1 < UDPIO_UNREAD_REPORTS) {
            return 1;
        }
        return read_queue(self) < 0 ? -1 : 1;
    }
    PyObject *list = gather_reports(self, err, &g);
    if (list == NULL) {
        return -1;
    }
    Py_DECREF(list);
    int again;
    if (g.busy) {
        again = 1; /* the other thread reads the reports: most likely this one's among them */
    }
    else if (sending && g.local_match) {
        again = 0; /* this host reported the send's own failure as it failed */
    }
    else {
        again = *attempt == 0 || g.remote_match;
    }
    (*attempt)++;
    return again;
}
#endif

/* Socket._gather_reports natively: read the queue, keep the reports and
 * return those read (the pure code's waits and peer_errors() call it).
 * Caller holds a role. */
PyObject *
Core_gather_reports(CoreObject *self, PyObject *unused)
{
    (void)unused;
#ifdef __linux__
    struct gathered g;
    PyObject *list = gather_reports(self, 0, &g);
    if (list != NULL && g.busy) {
        Py_SETREF(list, Py_NewRef(Py_None)); /* the twin's None: another thread reads */
    }
    return list;
#else
    return PyList_New(0);
#endif
}
