/* The wake-up protocol of udpio's native Role (udpio/_c/role.c, udpio.h),
 * as a SPIN model. tests/unit/test_role.py runs it, and runs each MUTANT_*
 * below to show that the model catches that mistake.
 *
 *   spin -a tools/role.pml && gcc -O2 -o pan pan.c && ./pan
 *
 * What it checks, over every interleaving of THREADS threads that each take
 * and give the role ROUNDS times, some waiting patiently and some giving up
 * (a timeout, or a signal whose handler raised):
 *   - `wake` is never released unless it is held (CPython 3.15 aborts the
 *     interpreter on that: PyMutex_Unlock of a mutex that is not locked);
 *   - at most one thread holds the role (C1);
 *   - no patient waiter sleeps for ever while the role is free (a lost
 *     wake-up shows as an invalid end state: SPIN's deadlock check);
 *   - once every thread is done, `wake` is held exactly when no wake-up is
 *     pending, so the dealloc releases it only then.
 *
 * One atomic { } is one atomic operation of the C code (a compare-and-swap,
 * a lock acquire); everything else is a separate step, so the model
 * interleaves wherever the threads can. A timeout is a nondeterministic
 * choice, which covers every moment it could strike.
 */

#ifndef THREADS
#define THREADS 3
#endif
#ifndef ROUNDS
#define ROUNDS 2
#endif

bool held = false;        /* RoleObject.held */
byte waiters = 0;         /* RoleObject.waiters */
bool wake_pending = false;/* RoleObject.wake_pending */
bool wake_locked = true;  /* the PyThread lock `wake`: starts held */
byte holders = 0;         /* how many threads believe they hold the role */
byte finished = 0;

/* PyThread_release_lock(wake) */
inline release_wake() {
    assert(wake_locked);
    wake_locked = false
}

/* role_try: one compare-and-swap of `held` */
inline role_try(ok) {
    atomic {
        if
        :: !held -> held = true; ok = true
        :: else -> ok = false
        fi
    }
}

/* role_give and role_post_wakeup */
inline role_give(post) {
    held = false;
    if
    :: waiters > 0 ->
#ifdef MUTANT_RELEASE_EVERY_GIVE
        /* the code before the fix: every give that sees a waiter releases */
        release_wake()
#else
        atomic {
            if
            :: !wake_pending -> wake_pending = true; post = true
            :: else -> post = false
            fi
        };
        if
        :: post -> release_wake()
        :: else -> skip
        fi
#endif
    :: else -> skip
    fi
}

/* role_wait and sleep_for_role; patient: no timeout, no signal */
inline role_wait(ok, patient, woke) {
    waiters++;
    do
    :: role_try(ok);
#ifdef MUTANT_CLEAR_AFTER_TRY
        /* the wake-up marked taken after the try, not before it */
        if
        :: woke -> wake_pending = false; woke = false
        :: else -> skip
        fi;
#endif
        if
        :: ok -> break
        :: else -> skip
        fi;
        if
        :: atomic { !wake_locked -> wake_locked = true };
#ifdef MUTANT_CLEAR_AFTER_TRY
            woke = true
#else
            wake_pending = false
#endif
        :: !patient -> break
        fi
    od;
    waiters--
}

proctype thread(bool patient) {
    bool ok = false;
    bool post = false;
    bool woke = false;
    byte round = 0;
    do
    :: round < ROUNDS ->
        role_try(ok);
        if
        :: !ok -> role_wait(ok, patient, woke)
        :: else -> skip
        fi;
        if
        :: ok ->
            holders++;
            assert(holders == 1);
            holders--;
            role_give(post)
        :: else -> skip
        fi;
        round++
    :: else -> break
    od;
    finished++
}

init {
    byte i = 0;
    atomic {
        do
        :: i < THREADS -> run thread(i % 2 == 0); i++
        :: else -> break
        od
    };
    finished == THREADS;
    assert(!held && waiters == 0);
#ifndef MUTANT_RELEASE_EVERY_GIVE
    /* quiescent: `wake` is held exactly when no wake-up is pending (the
     * code before the fix had no such flag, and released in dealloc) */
    assert(wake_locked != wake_pending);
#endif
    /* Role_dealloc */
#if defined(MUTANT_DEALLOC_ALWAYS) || defined(MUTANT_RELEASE_EVERY_GIVE)
    release_wake()
#else
    if
    :: !wake_pending -> release_wake()
    :: else -> skip
    fi
#endif
}
