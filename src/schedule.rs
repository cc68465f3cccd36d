//! The schedule: when may the next unit of fuel be granted?
//!
//! Pure integer arithmetic on atomics, with no clock and no sleeping: every
//! function takes the current time as an argument, so tests drive it with
//! exact times. The atomics may live in process-private memory (tests) or in
//! the shared mapping ([`crate::store::shm`]); the algorithms are lock-free, so a
//! process that dies at any instant leaves a consistent state behind.
//!
//! Let `T = per / max_n`. Fuel unit k (k = 0, 1, ...) of a run that starts at
//! `t0` is due at `t0 + k*T`, computed exactly: times are kept in units of
//! `1/max_n` ns ("scaled"), where `T` is the integer `per_ns`, so there is no
//! rounding that could accumulate into drift. Grant times handed out are in
//! whole nanoseconds, rounded up (never early).
//!
//! - `LIMIT`, `ONE`, `NONE` are a generic cell rate algorithm (GCRA) on one
//!   128-bit word: the theoretical arrival time (TAT) of the next unit.
//!   `LIMIT` is a token bucket of capacity `max_n`, `ONE` of capacity 1 (so
//!   grants are at least `T` apart), `NONE` never discards fuel, so slow
//!   phases are caught up.
//! - `WINDOW` keeps the last grant times in a ring: grant k may not come
//!   before grant `k - max_n` plus `per`, so no half-open window of length
//!   `per` ever holds more than `max_n` grants, and no grant waits when the
//!   window allows it (see `schedule/window.rs`).
//!
//! A waiter reserves its unit first (one compare-and-swap) and then sleeps to
//! its grant time, so waiters are served first come, first served, and no
//! waiter needs to be woken per grant.

#![forbid(unsafe_code)]

use crate::store::shm::layout::{GiveBacks, Records, Seeds, pack_entry as pack};

mod gcra;
pub mod key;
mod window;
pub use gcra::Follow;
use portable_atomic::AtomicU128;
use std::sync::atomic::{AtomicU64, Ordering};
pub use window::{RING_MIN, Refused, TURN_PATIENCE_NS};

/// How much fuel the tank may hold, and so what the schedule guarantees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Hardcap {
    /// Token bucket of capacity `max_n` (mp_throttle's default, `'limit'`).
    Limit = 0,
    /// Capacity 1: grants at least `T` apart (mp_throttle's `'one'`).
    One = 1,
    /// Unbounded: slow phases are caught up (mp_throttle's other values).
    None = 2,
    /// Exact sliding window: never more than `max_n` grants in any half-open
    /// window of length `per`.
    Window = 3,
}

impl TryFrom<u32> for Hardcap {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        match value {
            0 => Ok(Self::Limit),
            1 => Ok(Self::One),
            2 => Ok(Self::None),
            3 => Ok(Self::Window),
            other => Err(other),
        }
    }
}

/// `max_n` units per `per_ns` nanoseconds. Both are at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    max_n: u64,
    per_ns: u64,
}

/// Largest `max_n` accepted: keeps every scaled time below 2^103, so that a
/// generation fits beside it in the schedule word (see `schedule/gcra.rs`).
pub const MAX_N: u64 = 1 << 40;
/// Largest `per` accepted, in nanoseconds (about 146 years).
pub const MAX_PER_NS: u64 = 1 << 62;

impl Rate {
    /// A rate, or `None` if either number is 0 or beyond its maximum.
    pub fn new(max_n: u64, per_ns: u64) -> Option<Self> {
        let ok = (1..=MAX_N).contains(&max_n) && (1..=MAX_PER_NS).contains(&per_ns);
        ok.then_some(Self { max_n, per_ns })
    }

    /// Units per period.
    pub fn max_n(&self) -> u64 {
        self.max_n
    }

    /// The period in nanoseconds.
    pub fn per_ns(&self) -> u64 {
        self.per_ns
    }

    /// A scaled time back in whole nanoseconds, rounded up.
    fn unscale_ceil(&self, scaled: u128) -> i64 {
        let ns = scaled.div_ceil(u128::from(self.max_n));
        i64::try_from(ns).unwrap_or(i64::MAX)
    }

    /// `ceil(k * T)` in nanoseconds: the offset of unit k from the start.
    pub fn offset_ns(&self, k: u64) -> i64 {
        self.unscale_ceil(u128::from(k) * u128::from(self.per_ns))
    }
}

/// The outcome of trying to reserve one unit of fuel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved; the unit is granted at this time (now, or later: the caller
    /// sleeps until then).
    Granted(i64),
    /// Nothing reserved: the earliest grant would be at this time, after the
    /// latest the caller accepted.
    Later(i64),
    /// Nothing reserved: a change of rate is being made (`WINDOW`); try
    /// again shortly (see `ShmStore::settle`).
    Busy,
    /// The shared state holds values no correct process writes.
    Corrupt,
}

/// The atomics a schedule works on (in the shared mapping, or in tests).
#[derive(Clone, Copy)]
pub struct State<'a> {
    /// GCRA: the generation and theoretical arrival time, scaled.
    pub tat: &'a AtomicU128,
    /// The change records (rates, units given back).
    pub records: &'a Records,
    /// GCRA: the last give-backs (see `schedule/gcra.rs`).
    pub give_backs: &'a GiveBacks,
    /// WINDOW: the sequence number of the next grant and the time of the
    /// last, packed as a ring entry.
    pub head: &'a AtomicU128,
    /// WINDOW: `max_n` entries `(sequence, grant time)`; empty otherwise.
    pub ring: &'a [AtomicU128],
    /// WINDOW: the highest sequence number whose waiter went ahead with its
    /// unit (see [`Schedule::confirm`]).
    pub confirmed: &'a AtomicU64,
    /// WINDOW: what the run's start says of the entries before it.
    pub seeds: &'a Seeds,
}

/// Which units a reservation holds: a sleeping waiter follows changes with
/// [`Schedule::follow`], and passes it to [`Schedule::confirm`] when it goes
/// ahead with them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticket {
    /// The generation of the rate the ticket was made or last followed in.
    generation: u32,
    /// Changes made up to that generation (`Records::serial`).
    serial: u64,
    /// GCRA: the scaled slot of the last unit, in the frame whose period is
    /// `per` (see [`gcra`]): set when the units are reserved, and moved
    /// only by give-backs ahead of them.
    slot: u128,
    /// GCRA: the period (ns) of the frame `slot` is in.
    per: u64,
    /// GCRA: the whole periods dropped up to that frame.
    shift: u128,
    /// GCRA: give-backs followed (`Records::give_backs`).
    give_backs: u64,
    /// GCRA: units held (0: nothing to follow or give back).
    units: u64,
    /// `WINDOW`: the sequence number of the first unit.
    first: u64,
    /// `WINDOW`: the sequence number of the last unit.
    seq: u64,
    /// `WINDOW`, once a change made the units void ([`Follow::Lost`]): the
    /// head the queue reaches when it is this waiter's turn to reserve
    /// again, in the numbering of generation `generation`.
    turn: u64,
    /// The grant time.
    grant: i64,
}

impl Ticket {
    /// A ticket for fuel that is always there (no throttling).
    pub fn now(now: i64) -> Self {
        Self {
            grant: now,
            ..Self::default()
        }
    }

    /// A ticket of a store that keeps the schedule elsewhere (Redis): `units`
    /// granted at `grant`, and what the store needs to give them back
    /// (`generation`, `seq`, and two words of its own in `slot`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn remote(grant: i64, units: u64, generation: u32, seq: u64, slot: u128) -> Self {
        Self {
            generation,
            seq,
            slot,
            units,
            grant,
            ..Self::default()
        }
    }

    /// What [`remote`](Self::remote) was given: `(generation, seq, slot)`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn remote_parts(&self) -> (u32, u64, u128) {
        (self.generation, self.seq, self.slot)
    }

    /// How many units it holds (GCRA; 0 for `WINDOW` and for fuel that is
    /// always there).
    pub fn units(&self) -> u64 {
        self.units
    }

    /// When the units are granted (as of the last [`Schedule::follow`]).
    pub fn grant(&self) -> i64 {
        self.grant
    }
}

/// The schedule of one throttle: its rate and hardcap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    rate: Rate,
    hardcap: Hardcap,
}

impl Schedule {
    /// The schedule for `rate` and `hardcap`.
    pub fn new(rate: Rate, hardcap: Hardcap) -> Self {
        Self { rate, hardcap }
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The hardcap.
    pub fn hardcap(&self) -> Hardcap {
        self.hardcap
    }

    /// Entries the `WINDOW` ring needs (0 for the other hardcaps): at least
    /// [`RING_MIN`], so that its `max_n` may grow.
    pub fn ring_len(&self) -> u64 {
        match self.hardcap {
            Hardcap::Window => window::ring_len(self.rate.max_n),
            _ => 0,
        }
    }

    /// Puts a fresh state in order (tags of the `WINDOW` ring). Call once,
    /// before the state is shared.
    pub fn init(&self, st: &State<'_>) {
        self.init_records(st);
        let n = st.ring.len() as u64;
        st.head.store(pack(n, i64::MIN), Ordering::Relaxed);
        st.confirmed.store(n.wrapping_sub(1), Ordering::Relaxed);
        st.seeds.max_n.store(0, Ordering::Relaxed); // no run yet: no seeds
        for (j, e) in st.ring.iter().enumerate() {
            e.store(pack(j as u64, i64::MIN), Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Release);
    }

    /// Reserves one unit at `now` if it can be granted no later than
    /// `latest` (pass `latest = now` to take only fuel that is there now).
    pub fn reserve(&self, st: &State<'_>, now: i64, latest: i64) -> Reservation {
        self.reserve_ticket(st, now, latest).0
    }

    /// As [`reserve`](Self::reserve), with the ticket of a granted unit.
    pub fn reserve_ticket(&self, st: &State<'_>, now: i64, latest: i64) -> (Reservation, Ticket) {
        self.reserve_n(st, 1, now, latest)
    }

    /// Reserves `n` units, all granted at once, at `now` if they can be
    /// granted no later than `latest`. `n` must be at least 1 and at most
    /// [`capacity`](Self::capacity) (the caller checks: a larger `n` could
    /// never be granted).
    #[inline(always)]
    pub fn reserve_n(
        &self,
        st: &State<'_>,
        n: u64,
        now: i64,
        latest: i64,
    ) -> (Reservation, Ticket) {
        match self.hardcap {
            Hardcap::Window => self.reserve_window(st, n.max(1), now, latest),
            _ => self.reserve_gcra(st, n.max(1), now, latest),
        }
    }

    /// Units the tank can ever hold at the current rate (`None`: unbounded),
    /// so the most one reservation may take; `None` also if corrupt.
    pub fn capacity(&self, st: &State<'_>) -> Option<Option<u64>> {
        self.current_rate(st).map(|rate| self.capacity_at(rate))
    }

    /// `(units in the tank now, ns from now until n units are there)`,
    /// taking nothing; `None` if corrupt.
    pub fn peek(&self, st: &State<'_>, n: u64, now: i64) -> Option<(u64, i64)> {
        match self.hardcap {
            Hardcap::Window => self.peek_window(st, n, now),
            _ => self.peek_gcra(st, n, now),
        }
    }

    /// Changes the rate from the time `now()` gives on; the caller holds the
    /// change lock. `LIMIT`, `ONE`, `NONE`: the queue of reserved units
    /// keeps its order and is respaced at the new rate. `WINDOW`: units
    /// reserved for after the change are void, and their waiters reserve
    /// again, in their order, under the new rate (see `schedule/window.rs`).
    pub fn set_rate(
        &self,
        st: &State<'_>,
        rate: Rate,
        now: &dyn Fn() -> i64,
    ) -> Result<(), Refused> {
        match self.hardcap {
            Hardcap::Window => self.set_rate_window(st, rate, now),
            _ if self.set_rate_gcra(st, rate, now()) => Ok(()),
            _ => Err(Refused::Corrupt),
        }
    }

    /// Records that the waiter holding `ticket` went ahead with its unit: a
    /// later restart counts it as a real grant. Reservations never confirmed
    /// (their waiters were told "killed") are given back at the restart.
    pub fn confirm(&self, st: &State<'_>, ticket: Ticket) {
        if self.hardcap == Hardcap::Window {
            st.confirmed.fetch_max(ticket.seq, Ordering::AcqRel);
        }
    }

    /// Opens the tank for a run starting at `t_start`.
    ///
    /// `last_stop` is when the previous run stopped (`None` for the first
    /// run). Reservations that the stop cut short (grant time after
    /// `last_stop`, their waiters were told "killed") are given back. The tank
    /// starts empty: its first unit is there at `t_start`, then one every `T`;
    /// bounded hardcaps also keep every promise across the pause (a `ONE`
    /// throttle restarted at once still waits `T` after its last grant), and
    /// `NONE` carries its backlog over.
    ///
    /// Call only while no process reserves (the throttle is starting).
    pub fn start(&self, st: &State<'_>, t_start: i64, last_stop: Option<i64>) {
        match self.hardcap {
            Hardcap::Window => self.start_window(st, t_start, last_stop),
            _ => self.start_gcra(st, t_start, last_stop),
        }
    }
}

#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_changes;
