//! The change lock: a mutex in shared memory for the two short critical
//! sections of a throttle (a change of rate, a give-back), whose holder may
//! die at any instant. Like nginx's `ngx_shmtx`, the lock word names its
//! holder, so anyone can see that the holder is dead and take the lock
//! over; here the name is a pid and that process's start time, which
//! together survive pid reuse.
//!
//! It also keeps the pace of `WINDOW` changes of rate (see
//! [`ChangeLock::pace`]).

#![forbid(unsafe_code)]

use super::layout::ChangeLock;
use crate::clock::monotonic_ns;
use crate::process;
use portable_atomic::AtomicU128;
use std::sync::atomic::Ordering::SeqCst;

/// The low word of a held lock (the same bits a [`super::layout::Phase`]
/// `Running` word has, so a layout-4 object made before this type reads
/// the same).
const HELD: u32 = 1;

/// The lock word of a holder.
fn holder_word(pid: u32, start_time: u64) -> u128 {
    (u128::from(start_time) << 64) | (u128::from(pid) << 32) | u128::from(HELD)
}

/// `(pid, start time)` of the holder a lock word names; `None` if it names
/// none (a word no holder writes: scribbled).
fn holder_of(word: u128) -> Option<(u32, u64)> {
    (word as u32 == HELD).then_some(((word >> 32) as u32, (word >> 64) as u64))
}

/// The longest a `WINDOW` change of rate waits for the ring to have been
/// thawed as long as the last change froze it.
const PACE_MAX_NS: i64 = 10_000_000;

/// The lock, held: released on drop.
#[must_use = "the lock is released when this is dropped"]
pub struct Held<'a> {
    word: &'a AtomicU128,
    me: u128,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Only if it is still ours: a process that took it over from us
        // (it thought us dead) keeps it.
        let _ = self.word.compare_exchange(self.me, 0, SeqCst, SeqCst);
    }
}

/// A live process kept the lock longer than the caller would wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldByLive {
    /// The holder's pid (0 if the word named none).
    pub pid: u32,
}

/// Takes the lock whose holder word is `word` (the change lock's, or the
/// key table's of a keyed throttle), as [`ChangeLock::hold`] says.
pub fn hold(word: &AtomicU128, patience_ns: i64) -> Result<Held<'_>, HeldByLive> {
    // Its naps and /proc reads are cancellation points; whoever waits here
    // (a change of rate, a give-back, a keyed throttle adding a key) must
    // not be unwound by pthread_cancel.
    let _no_cancel = crate::wait::NoCancel::hold();
    let me = holder_word(process::id(), process::start_time());
    let give_up = monotonic_ns().saturating_add(patience_ns);
    loop {
        let held = match word.compare_exchange(0, me, SeqCst, SeqCst) {
            Ok(_) => return Ok(Held { word, me }),
            Err(held) => held,
        };
        let holder = holder_of(held);
        let alive =
            holder.is_some_and(|(pid, started)| held == me || process::is_alive(pid, started));
        if !alive {
            let _ = word.compare_exchange(held, 0, SeqCst, SeqCst);
            continue;
        }
        if monotonic_ns() > give_up {
            let pid = holder.map_or(0, |(pid, _)| pid);
            return Err(HeldByLive { pid });
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

impl ChangeLock {
    /// Takes the lock, taking it over from a dead holder (or from a word no
    /// holder writes); [`HeldByLive`] if a live process keeps it for
    /// `patience_ns`. Polls every 50 us: the lock is held for microseconds.
    pub fn hold(&self, patience_ns: i64) -> Result<Held<'_>, HeldByLive> {
        hold(&self.holder, patience_ns)
    }

    /// Waits until the ring of a `WINDOW` throttle has been thawed, since
    /// the last change of rate, as long as that change kept it frozen (at
    /// most `PACE_MAX_NS`, 10 ms: the figures are shared, and may be scribbled).
    /// Changes that call this first, before the lock (so that changers of
    /// other processes get their turn at it) and again under it, keep the
    /// ring frozen half the time at most, however many change in a loop.
    pub fn pace(&self) {
        let now = monotonic_ns();
        let thawed = self.thawed_ns.load(SeqCst).min(now);
        let frozen = self.frozen_ns.load(SeqCst).clamp(0, PACE_MAX_NS);
        let until = thawed.saturating_add(frozen);
        while monotonic_ns() < until {
            std::thread::yield_now();
        }
    }

    /// Records a change that froze the ring from `began` until now (the
    /// caller holds the lock).
    pub fn paced(&self, _held: &Held<'_>, began: i64) {
        let thawed = monotonic_ns();
        self.thawed_ns.store(thawed, SeqCst);
        self.frozen_ns.store(thawed - began, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_or_scribbled_holder_is_taken_over() {
        let lock = ChangeLock::default();
        // A word no holder writes.
        lock.holder.store(7, SeqCst);
        drop(lock.hold(0).expect("taken over from a scribbled word"));
        assert_eq!(lock.holder.load(SeqCst), 0, "released on drop");
        // A process that does not exist (pid 0 is never a process's).
        lock.holder.store(holder_word(0, 1), SeqCst);
        let held = lock.hold(0).expect("taken over from a dead holder");
        assert_eq!(
            holder_of(lock.holder.load(SeqCst)),
            Some((process::id(), process::start_time()))
        );
        drop(held);
    }

    #[test]
    fn a_live_holder_is_waited_for_then_named() {
        let lock = ChangeLock::default();
        let other = std::thread::scope(|s| {
            let held = lock.hold(0).expect("free");
            // Another thread of this process: its holder is alive.
            let other = s
                .spawn(|| lock.hold(2_000_000).err())
                .join()
                .expect("no panic");
            drop(held);
            other
        });
        assert_eq!(other, Some(HeldByLive { pid: process::id() }));
        assert!(lock.hold(0).is_ok(), "free again once dropped");
    }

    #[test]
    fn the_pace_is_bounded_whatever_the_figures() {
        let lock = ChangeLock::default();
        lock.thawed_ns.store(i64::MAX, SeqCst);
        lock.frozen_ns.store(i64::MAX, SeqCst);
        let t0 = monotonic_ns();
        lock.pace();
        let waited = monotonic_ns() - t0;
        assert!(
            (PACE_MAX_NS..PACE_MAX_NS * 100).contains(&waited),
            "waited {waited} ns for scribbled figures"
        );
        // A change that froze the ring 3 ms ago for 3 ms: about 3 ms more.
        let held = lock.hold(0).expect("free");
        lock.paced(&held, monotonic_ns() - 3_000_000);
        drop(held);
        let t0 = monotonic_ns();
        lock.pace();
        let waited = monotonic_ns() - t0;
        assert!(
            (2_900_000..300_000_000).contains(&waited),
            "waited {waited} ns after a 3 ms freeze"
        );
    }
}
