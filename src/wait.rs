//! Sleeping on a futex word that processes share.
//!
//! No `FUTEX_PRIVATE_FLAG`: the word lives in a `MAP_SHARED` mapping and the
//! sleeper and waker may be different processes. Deadlines are absolute
//! `CLOCK_MONOTONIC` times (`FUTEX_WAIT_BITSET`), so a wait that is
//! interrupted and retried never drifts.

use std::sync::atomic::AtomicU32;

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

/// Wakes every thread, in any process, sleeping on `word`.
pub fn wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned 4-byte atomic; FUTEX_WAKE only uses
    // its address to find sleepers and never writes memory.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}
