//! Cancelling a wait from another thread, one waiter at a time.
//!
//! The kill flag and `stop` end every wait of a throttle. A [`Cancel`](crate::cancel::Cancel) ends
//! only the waits that were given it: a Go context, a Ruby `Thread#kill`, a
//! Python `asyncio` task being cancelled. A cancelled waiter takes nothing:
//! units it reserved are given back (as a waiter whose timeout a rate change
//! overtook does), so those behind it move up, in order.
//!
//! A token lives in the memory of the process that made it. Waiters register
//! the throttle they sleep on; `fire` sets the flag and moves the epoch of
//! each such throttle on, which wakes its sleepers (the others re-check what
//! they wait for and sleep again).

use crate::process;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Weak};

/// What waiters sleep on, as a token sees it: whatever holds a throttle's
/// state, which can wake every sleeper of that throttle, in every process
/// (each re-checks what it waits for).
pub trait Wakeable: Send + Sync {
    /// Wakes every sleeper.
    fn wake_sleepers(&self);
}

/// A cancellation token (see the module documentation).
pub struct Cancel {
    fired: AtomicBool,
    /// The throttles that waiters using this token sleep on, by
    /// registration. Weak: a registration copied into a forked child (whose
    /// waiting thread does not exist there) must not keep a state alive.
    sleepers: Mutex<Vec<(u64, Weak<dyn Wakeable>)>>,
    next_id: AtomicU64,
    /// The process that made the token: its mutex is not fork-safe.
    owner: u32,
}

impl Default for Cancel {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("fired", &self.is_fired())
            .finish_non_exhaustive()
    }
}

impl Cancel {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self {
            fired: AtomicBool::new(false),
            sleepers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            owner: process::id(),
        }
    }

    /// Whether this process made the token (a forked child must not use its
    /// parent's: the parent's thread may have held its lock at the fork).
    pub fn is_usable_here(&self) -> bool {
        process::id() == self.owner
    }

    /// Whether [`fire`](Self::fire) was called since the last reset.
    pub fn is_fired(&self) -> bool {
        self.fired.load(SeqCst)
    }

    /// Ends every wait using this token, now and until [`reset`](Self::reset).
    pub fn fire(&self) {
        self.fired.store(true, SeqCst);
        for (_, state) in self.sleepers.lock().iter() {
            if let Some(state) = state.upgrade() {
                state.wake_sleepers();
            }
        }
    }

    /// Makes the token usable for new waits.
    pub fn reset(&self) {
        self.fired.store(false, SeqCst);
    }

    /// Registers a waiter of this process sleeping on `state` until the
    /// guard drops; `WrongState` for a token made by another process
    /// (before a fork). Register before checking
    /// [`is_fired`](Self::is_fired): a `fire` after the check then wakes
    /// the sleep.
    pub(crate) fn register<W: Wakeable + 'static>(
        &self,
        state: &Arc<W>,
    ) -> crate::error::Result<Registered<'_>> {
        if !self.is_usable_here() {
            return Err(crate::error::Error::WrongState(
                "this mpt_cancel was made by another process (before a fork): make one in this \
                 process"
                    .into(),
            ));
        }
        let id = self.next_id.fetch_add(1, SeqCst);
        let state: Weak<dyn Wakeable> = Arc::downgrade(state) as Weak<W>;
        self.sleepers.lock().push((id, state));
        Ok(Registered { cancel: self, id })
    }
}

/// A waiter's registration with a [`Cancel`]; removed on drop.
pub(crate) struct Registered<'a> {
    cancel: &'a Cancel,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.cancel.sleepers.lock().retain(|(id, _)| *id != self.id);
    }
}
