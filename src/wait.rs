//! Sleeping on a futex word that processes share.
//!
//! No `FUTEX_PRIVATE_FLAG`: the word lives in a `MAP_SHARED` mapping and the
//! sleeper and waker may be different processes. Deadlines are absolute
//! `CLOCK_MONOTONIC` times (`FUTEX_WAIT_BITSET`), so a wait that is
//! interrupted and retried never drifts.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// `FUTEX_WAKE` calls this process has made (see [`wake_calls`]).
static WAKE_CALLS: AtomicU64 = AtomicU64::new(0);

/// How many `FUTEX_WAKE` system calls this process has made: wakers skip
/// the call when nobody sleeps, and tests hold them to it.
pub fn wake_calls() -> u64 {
    WAKE_CALLS.load(Ordering::Relaxed)
}

/// Why a wait returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Woken, or the word no longer held the expected value, or a signal
    /// interrupted the sleep: look at the state again.
    Changed,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `word == expected`, until woken or until `deadline_ns`
/// (`CLOCK_MONOTONIC`; `None` = no deadline).
pub fn wait(word: &AtomicU32, expected: u32, deadline_ns: Option<i64>) -> Wake {
    let ts = deadline_ns.map(|d| libc::timespec {
        tv_sec: d.max(0) / 1_000_000_000,
        tv_nsec: d.max(0) % 1_000_000_000,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned 4-byte atomic for the whole call
    // (the kernel only reads it); `ts_ptr` is NULL or points at `ts`, which
    // outlives the call; FUTEX_WAIT_BITSET with an absolute timeout
    // measured on CLOCK_MONOTONIC is what these arguments request.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    if rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        Wake::TimedOut
    } else {
        Wake::Changed
    }
}

/// A sleeper count no host reaches: the shared count was scribbled.
const IMPLAUSIBLE_WAITERS: u32 = 1 << 31;

/// [`wait`], counted in `waiters` for its duration, so that wakers can skip
/// the system call when the count is 0.
pub fn wait_counted(
    waiters: &AtomicU32,
    word: &AtomicU32,
    expected: u32,
    deadline_ns: Option<i64>,
) -> Wake {
    if waiters.fetch_add(1, Ordering::SeqCst) >= IMPLAUSIBLE_WAITERS {
        // Garbage: a count that could wrap to 0 would make wakers skip this
        // sleeper. Park it high instead: wakers then always call.
        waiters.store(IMPLAUSIBLE_WAITERS / 2, Ordering::SeqCst);
    }
    let wake = wait(word, expected, deadline_ns);
    waiters.fetch_sub(1, Ordering::SeqCst);
    wake
}

/// Wakes every thread, in any process, sleeping on `word`.
pub fn wake_all(word: &AtomicU32) {
    WAKE_CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `word` is a valid, aligned 4-byte atomic; FUTEX_WAKE only uses
    // its address to find sleepers and never writes memory.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// The calling thread's timer slack, tightened for as long as this value
/// lives and restored when it drops.
///
/// The kernel lets a sleeping thread wake up to its timer slack late (50 us
/// by default) to batch wake-ups; a waiter for fuel wants its grant time.
/// Costs two or three `prctl` calls per sleep, nothing when not sleeping.
#[derive(Debug)]
pub struct TimerSlack {
    previous: Option<libc::c_ulong>,
    /// The setting is per thread: the guard must not move to another one.
    _thread_bound: std::marker::PhantomData<*const ()>,
}

impl TimerSlack {
    /// Sets the thread's slack to `ns` (0: leave it as it is).
    pub fn tighten(ns: u64) -> Self {
        if ns == 0 {
            return Self::untouched();
        }
        // SAFETY: PR_GET_TIMERSLACK takes no pointer and only reads the
        // calling thread's own setting.
        let current = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        let Ok(current) = libc::c_ulong::try_from(current) else {
            return Self::untouched();
        };
        #[allow(
            clippy::useless_conversion,
            reason = "c_ulong is 32 bits on some targets"
        )]
        if u64::from(current) == ns {
            return Self::untouched();
        }
        // SAFETY: PR_SET_TIMERSLACK takes a number and only changes the
        // calling thread's own setting.
        // The unused arguments are passed as 0: prctl reads all five.
        let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
        Self {
            previous: (rc == 0).then_some(current),
            _thread_bound: std::marker::PhantomData,
        }
    }

    fn untouched() -> Self {
        Self {
            previous: None,
            _thread_bound: std::marker::PhantomData,
        }
    }
}

impl Drop for TimerSlack {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            // SAFETY: as in `tighten`: a number, the calling thread's own
            // setting (a TimerSlack never leaves its thread: it is !Send).
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, previous, 0, 0, 0) };
        }
    }
}

/// The calling thread's POSIX cancellation state, held off (disabled) for
/// as long as this value lives and restored to what the caller had when it
/// drops.
///
/// A thread cancelled with `pthread_cancel` (deferred, the default) is
/// unwound at the next cancellation point it reaches: `nanosleep`,
/// `pthread_join`, `open` and `read` of `/proc`, `close`, ... Unwinding
/// through the library would end the process (the C boundary catches
/// unwinds, and glibc aborts a cancellation that is caught). Every call
/// that can reach a cancellation point holds one of these, so no call is a
/// cancellation point: a cancel requested meanwhile stays pending and
/// takes effect at the caller's next cancellation point. Costs two
/// `pthread_setcancelstate` calls (no system call).
#[derive(Debug)]
pub struct NoCancel {
    previous: libc::c_int,
    /// The state is per thread: the guard must not move to another one.
    _thread_bound: std::marker::PhantomData<*const ()>,
}

// glibc and musl: PTHREAD_CANCEL_ENABLE is 0, PTHREAD_CANCEL_DISABLE is 1.
// The libc crate does not declare them, nor the function.
const PTHREAD_CANCEL_DISABLE: libc::c_int = 1;

/// Sets the calling thread's cancellation state; returns the one it had.
fn set_cancel_state(state: libc::c_int) -> libc::c_int {
    // Declared here, not at module level, where cbindgen would put it in
    // the C header.
    unsafe extern "C" {
        fn pthread_setcancelstate(state: libc::c_int, oldstate: *mut libc::c_int) -> libc::c_int;
    }
    let mut previous = state;
    // SAFETY: pthread_setcancelstate only changes the calling thread's own
    // state and writes the old one to `previous`, a valid c_int; callers
    // pass PTHREAD_CANCEL_DISABLE or a state it reported, so it cannot fail.
    unsafe { pthread_setcancelstate(state, &mut previous) };
    previous
}

impl NoCancel {
    /// Holds the calling thread's cancellation off until the value drops.
    pub fn hold() -> Self {
        Self {
            previous: set_cancel_state(PTHREAD_CANCEL_DISABLE),
            _thread_bound: std::marker::PhantomData,
        }
    }
}

impl Drop for NoCancel {
    fn drop(&mut self) {
        // The calling thread's own state (a NoCancel never leaves its
        // thread: it is !Send), set back to what it was.
        set_cancel_state(self.previous);
    }
}

/// The asynchronous signals of this thread, held back (pending) while this
/// lives, then let through again. Synchronous ones (a fault in the calling
/// thread) are never held: held, they would kill the process.
pub struct SignalsHeld {
    old: libc::sigset_t,
}

impl SignalsHeld {
    /// Holds them back until the value is dropped.
    pub fn hold() -> Self {
        // SAFETY: sigset_t is plain data; sigemptyset/sigfillset below make
        // both valid sets before any use.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `all` is a sigset_t owned here; sigfillset writes it.
        unsafe { libc::sigfillset(&mut all) };
        for sync in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGSYS,
        ] {
            // SAFETY: `all` is a valid set; sigdelset writes it.
            unsafe { libc::sigdelset(&mut all, sync) };
        }
        // SAFETY: valid sets; pthread_sigmask writes `old` and this
        // thread's mask only.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old) };
        Self { old }
    }
}

impl Drop for SignalsHeld {
    fn drop(&mut self) {
        // SAFETY: `old` is the mask pthread_sigmask gave back in `hold`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}
