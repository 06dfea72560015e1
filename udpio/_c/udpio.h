/* What the files of udpio._speedups share: the module state, the three
 * object layouts, and the small helpers that recv and send call on every
 * datagram (static inline here, so that each file that calls them can
 * inline them: a call across object files cannot be, without LTO).
 *
 * The files, each the twin of something plain in the Python code:
 *
 *   module.c      the module: its state, the types, PyInit
 *   readbuffer.c  ReadBuffer, a pool buffer that counts its exports (_pool.py)
 *   role.c        Role, a re-entrant lock that records its owner (RLock)
 *   core.c        Core, the state recv and send share with _socket.Socket
 *   addresses.c   socket addresses to tuples and back (_addresses.py)
 *   recv.c        Socket.recv: batches, GRO splitting, hand-out, release
 *   send.c        Socket.send
 *   send_batch.c  Socket.send_batch: sendmmsg and UDP GSO
 *   send_many.c   Socket.send_many: sendmmsg, each message its own address (K2)
 *   waiting.c     what the calls that wait share: timeouts, retries, unwinding
 *   reports.c     the error queue: the network's reports per peer (_reports.py)
 *   gro.h         reading UDP GRO's segment size (_gro.py)
 *   cmsg.h        where a datagram went, which address a send leaves from (_cmsg.py)
 *
 * docs/design.md explains the rules named in the comments (R3, C1, ...).
 */
#ifndef UDPIO_H
#define UDPIO_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#ifdef __linux__
#include <netinet/udp.h>
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, kernel 4.18 */
#endif
#ifndef UDP_GRO
#define UDP_GRO 104 /* linux/udp.h, kernel 5.0 */
#endif
#endif

/* Names shared between the files but not exported from the shared object. */
#if defined(__GNUC__)
#define UDPIO_INTERNAL __attribute__((visibility("hidden")))
#else
#define UDPIO_INTERNAL
#endif

/* -- the module's state (module.c) ------------------------------------ */

typedef struct {
    PyTypeObject *ReadBuffer_Type;
    PyTypeObject *Role_Type;
    PyTypeObject *Core_Type;
    PyObject *memoryview_release; /* the unbound method memoryview.release */
    PyObject *ClosedError;        /* udpio._errors.ClosedError */
    PyObject *monotonic;          /* time.monotonic: the pure backend's clock */
    PyObject *Datagram;           /* udpio._datagram.Datagram */
    PyObject *src_kwnames;        /* ("src",), to pass src= to the Python twin */
    PyObject *str_get;
    PyObject *str_put;
    PyObject *str_release;
    PyObject *str_recv_refused;
    PyObject *str_await_readable;
    PyObject *str_check_timeout;
    PyObject *str_check_max_datagrams;
    PyObject *str_send_slow;
    PyObject *str_send_batch_slow;
    PyObject *str_prepared_destination;
    PyObject *str_send_many_slow;
    PyObject *str_reply_slow;
    PyObject *str_source_cmsg;
    PyObject *str_explain_send_error;
    PyObject *str_await_writable;
    PyObject *str_keep_reports;
    PyObject *PeerError;  /* udpio._reports.PeerError */
    PyObject *str_icmp;   /* PeerError.origin's three values */
    PyObject *str_icmp6;
    PyObject *str_local;
} udpio_state;

UDPIO_INTERNAL extern struct PyModuleDef udpio_module;

/* -- ReadBuffer (readbuffer.c) ---------------------------------------- */

typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t capacity;
    Py_ssize_t offset;  /* where the current datagram starts (GRO: several share a buffer) */
    Py_ssize_t length;  /* its bytes: what an export sees */
    /* Live exports; > 0 means "still viewed" (R4, R6). Any thread that holds a
     * frame may view or release it: changed by atomic read-modify-writes. */
    _Atomic Py_ssize_t exports;
} ReadBufferObject;

UDPIO_INTERNAL extern PyType_Spec udpio_ReadBuffer_spec;

/* -- Role (role.c) ---------------------------------------------------- */

/* The role is taken by one compare-and-swap of `held` (C1: a true atomic
 * ownership test, correct without the GIL), so recv and send pay no lock
 * call; only a thread that must wait for it (close() waiting for the
 * reader, a second sender) sleeps, on `wake`.
 *
 * The wake-up protocol (docs/design.md, "The role's wake-up"; checked by
 * tools/role.pml): `wake` is a lock that is held except while one wake-up
 * is pending, and `wake_pending` says which. Only a give moves it 0 -> 1
 * (then releases `wake`, which it knows is held); only a waiter that
 * acquired `wake` moves it 1 -> 0. So every release has a held lock under
 * it (3.15 aborts on any other), each wake-up is consumed at most once, and
 * dealloc knows whether `wake` is held. */
typedef struct {
    PyObject_HEAD
    atomic_int held;         /* 1 while some thread holds the role: only role_try sets it */
    atomic_int waiters;      /* threads inside role_wait: a give then posts a wake-up */
    atomic_int wake_pending; /* 1 from a give's post until a waiter takes it: `wake` released */
    PyThread_type_lock wake; /* a waiter sleeps on it; held whenever wake_pending is 0 */
    atomic_ulong owner;      /* the holder's ident, 0 when free; written by the holder */
    unsigned long count;     /* re-entrant depth; read and written by the holder only */
} RoleObject;

UDPIO_INTERNAL extern PyType_Spec udpio_Role_spec;

/* Wait for the role with the GIL released (timeout < 0: forever); a signal
 * interrupts the wait so its Python handler can run (and raise), then the
 * wait resumes with what is left. Returns 1 taken, 0 timed out, -1
 * exception. The caller then records itself (role_took). */
UDPIO_INTERNAL int role_wait(RoleObject *self, double timeout);

/* Take the role if it is free; never waits. 1 taken, 0 held by a thread
 * (this one included: the test itself is not re-entrant). */
static inline int
role_try(RoleObject *self)
{
    int free = 0;
    return atomic_compare_exchange_strong(&self->held, &free, 1);
}

/* The holder records itself right after taking the lock. No Python code can
 * run on this thread in between, so a signal handler on this thread that
 * asks "do I hold it?" (close() from a handler, C5) never sees a half-taken
 * role; another thread only ever compares the owner with its own ident. */
static inline void
role_took(RoleObject *self)
{
    atomic_store_explicit(&self->owner, PyThread_get_thread_ident(), memory_order_relaxed);
    self->count = 1;
}

/* Post one wake-up unless one is pending already (role.c). */
UDPIO_INTERNAL void role_post_wakeup(RoleObject *self);

/* Free the role, then wake a waiter if there is one. Both are sequentially
 * consistent: either this give sees the waiter's count, or the waiter's
 * next role_try sees the role free, so no waiter sleeps through it. */
static inline void
role_give(RoleObject *self)
{
    self->count = 0;
    atomic_store_explicit(&self->owner, 0, memory_order_relaxed);
    atomic_store(&self->held, 0);
    if (atomic_load(&self->waiters) > 0) {
        role_post_wakeup(self);
    }
}

/* Only this thread ever writes its own ident into `owner`, and it writes 0
 * before it lets go: an owner equal to this thread's ident is this thread's
 * own write, so a relaxed load answers, and `count` stays the holder's. */
static inline int
role_is_mine(RoleObject *self)
{
    return atomic_load_explicit(&self->owner, memory_order_relaxed) == PyThread_get_thread_ident();
}

/* M3's counters: one writer at a time (the role's holder, in C or in the
 * Python twin) and readers on any thread (stats()), so a relaxed load and
 * store, not a read-modify-write: no lock prefix on the hot path. */
static inline void
count_up(_Atomic Py_ssize_t *counter, Py_ssize_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* -- Core (core.c) ---------------------------------------------------- */

/* Datagrams one recvmmsg may take (B1, K1). Each slot is a whole 64 KiB
 * buffer, so any datagram fits; its pages cost memory only once a datagram
 * touched them (readbuffer.c), and a Socket fills only as many slots as
 * its traffic needs (`depth`). docs/design.md has the measurements. */
#define RECV_MANY 64

/* Source address tuples a Socket keeps for reuse (hand_out); a power of 2. */
#define SOURCE_CACHE 8

/* The most one UDP datagram carries: 65,535 bytes less the UDP header and
 * IPv4's, or over IPv6 the UDP header alone. The twins of _messages.py's
 * LARGEST_IPV4_PAYLOAD and LARGEST_IPV6_PAYLOAD (the module exports these,
 * and tests/unit/test_seam.py holds the two languages to one value). */
#define UDPIO_LARGEST_IPV4_PAYLOAD 65507
#define UDPIO_LARGEST_IPV6_PAYLOAD 65527

/* Datagrams one sendmmsg may carry (B3). */
#define SEND_MANY 64

/* Room for every control message one read can carry: a pktinfo of either
 * family (an IPv6 Socket hears IPv4 senders too), a TOS or traffic class,
 * and UDP GRO's segment size (M1, B1). */
#define CONTROL_SPACE                                                                       \
    (CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo)) +      \
     3 * CMSG_SPACE(sizeof(int)))

typedef union {
    char buf[CONTROL_SPACE];
    struct cmsghdr align;
} control_buffer;

/* What one recvmmsg entry put into a slot and recv has not handed out yet:
 * one datagram, or with GRO several from one sender, each `segment` bytes
 * but the last (0: one datagram of `length` bytes). Its control data stays
 * in the slot's control buffer until the entry leaves the queue, so every
 * datagram of a joined read reports that read's destination (M4). */
struct queued {
    int slot;
    Py_ssize_t length;
    Py_ssize_t segment;
    socklen_t src_len;
    struct sockaddr_storage src;
    size_t control_len;
    int flags; /* the read's msg_flags: MSG_CTRUNC says the control data is cut */
};

/* A send's source address (M2) as Socket._source_cmsg gives it, cached by
 * the identity of the `src` it was made from (a reply passes the very
 * Datagram.dst tuple recv cached). */
struct source {
    PyObject *obj; /* strong; NULL: empty */
    int level;
    int type;
    size_t len;
    unsigned char data[sizeof(struct in6_pktinfo)];
};

typedef struct {
    PyObject_HEAD
    PyObject *module;     /* strong: keeps *state alive */
    udpio_state *state;
    PyObject *sock;       /* the socket.socket; fd and family cached from it */
    int fd;
    int family;
    /* Written by close() and read by every call: see udpio/_socket.py.
     * Atomic: the readers run on other threads, and hold no lock for it. */
    atomic_char closed;
    char recv_exit_releases;
    char send_exit_releases;
    char gso_off; /* the kernel has no UDP GSO: sendmmsg from then on */
    /* E1: the kernel queues its reports here and hands their errors to the
     * next call; every call then tells them from its own (E4). Set once,
     * by Socket.__init__. */
    char peer_errors;
    /* E3: 1 while a thread reads the error queue (reports.c): one at a
     * time, so the reports are kept in the order they came. */
    atomic_int gathering;
    /* Reports left queued since the queue was last read (a hint). */
    atomic_int unread;
    char gro;     /* UDP_GRO is on: a slot may hold several datagrams (B1) */
    /* recv_datagram has been called: from then on every batch asks the
     * kernel for all control messages (M1). Until then a batch has room for
     * GRO's segment size alone, which the kernel puts first; it leaves out
     * the destination and TOS that no recv reads, and their cost (P10).
     * Written and read under the reader role. */
    char arrivals;
    RoleObject *reader;
    RoleObject *writer;
    PyObject *pool;
    /* Owned by whoever holds the reader role: the batch (B1). slots[i] is a
     * read buffer or NULL; queue[queue_head .. queue_head + queue_len) are
     * the datagrams recvmmsg put into slots and recv has not handed out
     * yet, in arrival order; `current` is the slot of the last frame handed
     * out (-1: none). */
    ReadBufferObject *slots[RECV_MANY];
    control_buffer control[RECV_MANY];
    struct queued queue[RECV_MANY];
    int queue_head;
    int queue_len;
    Py_ssize_t queue_offset; /* bytes of the head entry already handed out */
    int current;
    /* P11: how many slots the next batch reads into: 1 at first, doubled
     * each time a batch came back full, up to RECV_MANY. */
    int depth;
    /* B1, K1: a kernel error recvmmsg reported after recv_batch had taken
     * datagrams; the next receive call raises it (0: none). */
    int pending_err;
    PyObject *frame;
    /* P1: the (frame, src) tuple recv returned last. The next receive call
     * parks it if nothing else holds it (items NULL, untracked by the GC,
     * so no one can see it half-made) and recv fills it again instead of
     * making a new one. Owned by the reader role. */
    PyObject *spare;
    PyObject *batch; /* K1: a list of the frames the last recv_batch handed out, or NULL */
    /* The tuples of the last few source addresses (a server's few busy
     * peers, one peer's stream), so that a steady peer costs no str and
     * tuple per datagram; replaced round-robin. */
    struct {
        struct sockaddr_storage sa;
        socklen_t len;
        PyObject *tuple;
    } srcs[SOURCE_CACHE];
    int srcs_next;
    struct sockaddr_storage to;  /* the last Datagram.dst and its tuple (M1) */
    socklen_t to_len;
    PyObject *to_addr;
    int local_port; /* the bound port, for Datagram.dst; -1 until known */
    struct sockaddr_storage bound; /* the bound address, once local_port is known (reply) */
    _Atomic Py_ssize_t received; /* M3: datagrams the receive calls returned (count_up) */
    /* Owned by whoever holds the writer role. */
    PyObject *dst; /* the last destination and its parsed form */
    struct sockaddr_storage dst_sa;
    socklen_t dst_len;
    struct source from; /* the last src and its control message (M2) */
    _Atomic Py_ssize_t sent; /* M3: datagrams that went out (count_up) */
    Py_ssize_t gso_sends; /* GSO sends the kernel took (tests, diagnostics) */
    /* B5: the destination that last refused a GSO run, and the smallest
     * segment size it refused (0: none); runs to it at that size or more go
     * by sendmmsg, smaller ones and every other destination keep GSO. */
    struct sockaddr_storage gso_refused;
    socklen_t gso_refused_len;
    Py_ssize_t gso_refused_size;
} CoreObject;

/* Whether the Socket is bound to exactly this address (never to a
 * wildcard): a datagram that must leave from it needs no pktinfo, since
 * the kernel sends from there anyway (reply, send_many). Known once a
 * receive call made a Datagram.dst; the reader writes it once, under the
 * GIL. Addresses in network byte order. */
static inline int
bound_to_ipv4(const CoreObject *self, uint32_t addr)
{
    return self->local_port > 0 && self->bound.ss_family == AF_INET && addr != INADDR_ANY &&
           ((const struct sockaddr_in *)&self->bound)->sin_addr.s_addr == addr;
}

static inline int
bound_to_ipv6(const CoreObject *self, const struct in6_addr *addr)
{
    return self->local_port > 0 && self->bound.ss_family == AF_INET6 && !IN6_IS_ADDR_UNSPECIFIED(addr) &&
           memcmp(&((const struct sockaddr_in6 *)&self->bound)->sin6_addr, addr, sizeof(*addr)) == 0;
}

UDPIO_INTERNAL extern PyType_Spec udpio_Core_spec;

/* The methods core.c's table names; each lives with its job. */
UDPIO_INTERNAL PyObject *Core_recv(CoreObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames);
UDPIO_INTERNAL PyObject *Core_recv_datagram(CoreObject *self, PyObject *const *args,
                                            Py_ssize_t nargs, PyObject *kwnames);
UDPIO_INTERNAL PyObject *Core_recv_batch(CoreObject *self, PyObject *const *args,
                                         Py_ssize_t nargs, PyObject *kwnames);
UDPIO_INTERNAL PyObject *Core_send(CoreObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames);
UDPIO_INTERNAL PyObject *Core_send_many(CoreObject *self, PyObject *const *args, Py_ssize_t nargs,
                                        PyObject *kwnames);
UDPIO_INTERNAL PyObject *Core_reply(CoreObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames);
UDPIO_INTERNAL PyObject *Core_send_batch(CoreObject *self, PyObject *const *args,
                                         Py_ssize_t nargs, PyObject *kwnames);
UDPIO_INTERNAL PyObject *Core_gather_reports(CoreObject *self, PyObject *unused);
UDPIO_INTERNAL extern const char Core_recv_doc[];
UDPIO_INTERNAL extern const char Core_recv_datagram_doc[];
UDPIO_INTERNAL extern const char Core_recv_batch_doc[];
UDPIO_INTERNAL extern const char Core_send_doc[];
UDPIO_INTERNAL extern const char Core_send_batch_doc[];
UDPIO_INTERNAL extern const char Core_send_many_doc[];
UDPIO_INTERNAL extern const char Core_reply_doc[];

/* -- waiting and unwinding (waiting.c) -------------------------------- */

/* R7: a timeout the fast test below doubts; an int >= 0 passes, anything
 * else goes to the Python twin's check, which owns the error message.
 * Returns 0, or -1 with an exception. */
UDPIO_INTERNAL int check_timeout_slow(CoreObject *self, PyObject *timeout);

/* A float >= 0 passes at a few instructions (recv's hot path, with a
 * timeout); anything else goes to check_timeout_slow. */
static inline int
check_timeout(CoreObject *self, PyObject *timeout)
{
    if (PyFloat_CheckExact(timeout) && PyFloat_AS_DOUBLE(timeout) >= 0) {
        return 0;
    }
    return check_timeout_slow(self, timeout);
}

/* The deadline for a wait, on the pure backend's clock: None for no
 * timeout, else monotonic() + timeout (a new reference, or NULL). */
UDPIO_INTERNAL PyObject *make_deadline(CoreObject *self, PyObject *timeout);

/* A send loop's answer to the kernel's `err` (S4): after EINTR, the signal
 * handlers run (PEP 475) and a close() they made is ClosedError (C5);
 * after EAGAIN, Socket._await_writable waits for room or raises
 * TimeoutError or ClosedError; anything else is the kernel's error,
 * verbatim. `what` names the call in a timeout's message. Returns 0: try
 * again, or -1 with an exception. Caller holds the writer role. */
UDPIO_INTERNAL int send_retry(CoreObject *self, int err, PyObject *deadline, PyObject *timeout,
                              const char *what, int *attempt);

/* C5: the call that close() interrupted on its own thread releases the
 * descriptors as it unwinds. Steals `result`; keeps an exception. */
UDPIO_INTERNAL PyObject *release_on_exit(CoreObject *self, PyObject *result);

/* -- the network's reports (reports.c) -------------------------------- */

/* A receive whose read failed for a report reads again at once and leaves
 * the report queued; the queue is read after this many such failures, or
 * before a wait (udpio._reports.UNREAD_REPORTS; a test compares them). */
#define UDPIO_UNREAD_REPORTS 16

/* What one gathering found: how many reports, and whether one of them
 * (made by this host, or by the network) carried the error looked for. */
struct gathered {
    int count;
    int local_match;
    int remote_match;
    int busy; /* another thread was reading the queue: nothing read here */
};

/* E2, E3: read the error queue until it is empty (at most 1,024 reports),
 * keep the reports (Socket._keep_reports) and return them as a list (a new
 * reference, or NULL with an exception); `err`: the error to look for
 * among them (*g). Another thread reading the queue already: an empty
 * list. Caller holds a role (the descriptor stays open). */
UDPIO_INTERNAL PyObject *gather_reports(CoreObject *self, int err, struct gathered *g);

/* gather_reports for its effect alone: the queue read, the reports kept.
 * Returns 0, or -1 with an exception. Caller holds a role. */
UDPIO_INTERNAL int read_queue(CoreObject *self);

/* E4: a call's syscall failed with `err` on a Socket with peer_errors:
 * gather the reports, then say whether to try again
 * (udpio._reports.try_again): the first failure always (the kernel hands
 * a pending report's error to one call, which clears it), a later one
 * while the reports explain it or another thread reads them, never a
 * send's failure this host reported as it failed. A receive always tries
 * again (it has no errors of its own), leaving the report queued for a
 * later round (Socket._report_explains). Counts *attempt. Returns 1, 0,
 * or -1 with an exception. Caller holds a role. */
UDPIO_INTERNAL int retry_past_reports(CoreObject *self, int err, int *attempt, int sending);

/* B3, K2: the pending exception of a batch send gets `.sent`, how many of
 * its datagrams went out before it (none is resent or lost). */
UDPIO_INTERNAL void note_sent(Py_ssize_t sent);

/* Fills out[0..nmax) from positional and keyword arguments; the first
 * `nrequired` must be given. Only the names in `names` are accepted. */
static inline int
parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
           const char *const *names, Py_ssize_t nrequired, Py_ssize_t nmax, PyObject **out)
{
    if (nargs > nmax) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", fname, nmax,
                     nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t i = 0;
        while (i < nmax && PyUnicode_CompareWithASCIIString(key, names[i]) != 0) {
            i++;
        }
        if (i == nmax) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < nrequired; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

static inline int
not_initialised(CoreObject *self)
{
    if (self->reader == NULL || self->writer == NULL || self->sock == NULL || self->pool == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "udpio: Socket.__init__ was not called");
        return 1;
    }
    return 0;
}

/* -- addresses (addresses.c) ------------------------------------------ */

/* The tuple the socket module would build for this address (socket.recvfrom). */
UDPIO_INTERNAL PyObject *make_address(const struct sockaddr_storage *ss, socklen_t len);

/* Parses `dst` for sendto when it is the plain case: an exact tuple of a
 * numeric host and in-range integers for this socket's family. Returns 0
 * for anything else, with no exception: the Python twin then does the work
 * and owns every error message (S3). */
UDPIO_INTERNAL int parse_destination(int family, PyObject *dst, struct sockaddr_storage *sa,
                                     socklen_t *len);

/* The most one UDP datagram to `sa` carries (_messages.largest_payload):
 * over IPv6 the UDP header less; over IPv4, mapped into IPv6 too, IPv4's
 * header as well. */
static inline Py_ssize_t
largest_payload(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET6 &&
        !IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr)) {
        return UDPIO_LARGEST_IPV6_PAYLOAD;
    }
    return UDPIO_LARGEST_IPV4_PAYLOAD;
}

/* The parsed destination, from the cache when `dst` is the very object of
 * the last send (an echo replies to the tuple recv returned; a client sends
 * to one constant). Caller holds the writer role, which owns the cache. */
static inline int
destination(CoreObject *self, PyObject *dst, struct sockaddr_storage *sa, socklen_t *len)
{
    if (dst != self->dst) {
        if (!parse_destination(self->family, dst, &self->dst_sa, &self->dst_len)) {
            Py_CLEAR(self->dst);
            return 0;
        }
        Py_XSETREF(self->dst, Py_NewRef(dst));
    }
    memcpy(sa, &self->dst_sa, self->dst_len);
    *len = self->dst_len;
    return 1;
}

#endif /* UDPIO_H */
