//! The schedule's state in this process's memory, for the schedule's unit
//! tests: the words a throttle's shared mapping holds, without a mapping.

use super::{GiveBacks, Records, Schedule, Seeds, State};
use portable_atomic::AtomicU128;
use std::sync::atomic::AtomicU64;

/// Every word a [`State`] borrows, owned.
pub(super) struct Memory {
    pub tat: AtomicU128,
    pub records: Records,
    pub give_backs: GiveBacks,
    pub head: AtomicU128,
    pub ring: Vec<AtomicU128>,
    pub confirmed: AtomicU64,
    pub seeds: Seeds,
}

impl Memory {
    /// Zeroed words for `sched` (its ring as long as it needs), initialised
    /// by it.
    pub fn for_schedule(sched: &Schedule) -> Self {
        let memory = Self {
            tat: AtomicU128::new(0),
            records: Records::default(),
            give_backs: GiveBacks::default(),
            head: AtomicU128::new(0),
            ring: (0..sched.ring_len()).map(|_| AtomicU128::new(0)).collect(),
            confirmed: AtomicU64::new(0),
            seeds: Seeds::default(),
        };
        sched.init(&memory.st());
        memory
    }

    /// The state the schedule works on.
    pub fn st(&self) -> State<'_> {
        State {
            tat: &self.tat,
            records: &self.records,
            give_backs: &self.give_backs,
            head: &self.head,
            ring: &self.ring,
            confirmed: &self.confirmed,
            seeds: &self.seeds,
        }
    }
}
