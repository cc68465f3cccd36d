//! Time sources. Every time in the library is nanoseconds of
//! `CLOCK_MONOTONIC`, which all processes of a host share.

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of monotonic nanoseconds.
pub trait Clock: Send + Sync {
    /// The current time, in nanoseconds of the clock's epoch (never negative).
    fn now_ns(&self) -> i64;
}

/// Nanoseconds of `CLOCK_MONOTONIC` (the vDSO call: about 30 ns, no syscall).
pub fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call;
    // CLOCK_MONOTONIC is always supported on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec)
}

/// The real clock: `CLOCK_MONOTONIC`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Monotonic;

impl Clock for Monotonic {
    fn now_ns(&self) -> i64 {
        monotonic_ns()
    }
}

/// A clock that only moves when told to: lets tests assert exact schedules
/// without sleeping.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A manual clock reading `start_ns`.
    pub fn new(start_ns: i64) -> Self {
        Self {
            now: AtomicI64::new(start_ns),
        }
    }

    /// Sets the time.
    pub fn set(&self, now_ns: i64) {
        self.now.store(now_ns, Ordering::SeqCst);
    }

    /// Moves the time forward by `by_ns`.
    pub fn advance(&self, by_ns: i64) {
        self.now.fetch_add(by_ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_ns(&self) -> i64 {
        (**self).now_ns()
    }
}
