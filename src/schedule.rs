//! The schedule: when may the next unit of fuel be granted?
//!
//! Pure integer arithmetic on atomics, with no clock and no sleeping: every
//! function takes the current time as an argument, so tests drive it with
//! exact times. The atomics may live in process-private memory (tests) or in
//! the shared mapping ([`crate::shm`]); the algorithms are lock-free, so a
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
//! - `WINDOW` keeps the last `max_n` grant times in a ring: grant k may not
//!   come before grant `k - max_n` plus `per`, so no half-open window of
//!   length `per` ever holds more than `max_n` grants, and no grant waits
//!   when the window allows it.
//!
//! A waiter reserves its unit first (one compare-and-swap) and then sleeps to
//! its grant time, so waiters are served first come, first served, and no
//! waiter needs to be woken per grant.

#![forbid(unsafe_code)]

use portable_atomic::AtomicU128;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Largest `max_n` accepted: keeps every scaled time below 2^126.
pub const MAX_N: u64 = 1 << 62;
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

    /// `t_ns` in units of `1/max_n` ns. Negative times (never read from
    /// `CLOCK_MONOTONIC`) count as 0.
    fn scale(&self, t_ns: i64) -> u128 {
        u128::from(t_ns.max(0) as u64) * u128::from(self.max_n)
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
    /// The shared state holds values no correct process writes.
    Corrupt,
}

/// The atomics a schedule works on (in the shared mapping, or in tests).
#[derive(Clone, Copy)]
pub struct State<'a> {
    /// GCRA: the theoretical arrival time, scaled.
    pub tat: &'a AtomicU128,
    /// WINDOW: the sequence number of the next grant.
    pub head: &'a AtomicU64,
    /// WINDOW: `max_n` entries `(sequence, grant time)`; empty otherwise.
    pub ring: &'a [AtomicU128],
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

    /// Entries the `WINDOW` ring needs (0 for the other hardcaps).
    pub fn ring_len(&self) -> u64 {
        match self.hardcap {
            Hardcap::Window => self.rate.max_n,
            _ => 0,
        }
    }

    /// GCRA burst tolerance, scaled: `(capacity - 1) * T`; `None` = unbounded.
    fn tau(&self) -> Option<u128> {
        let per = u128::from(self.rate.per_ns);
        match self.hardcap {
            Hardcap::Limit => Some(u128::from(self.rate.max_n - 1) * per),
            Hardcap::One => Some(0),
            Hardcap::None | Hardcap::Window => None,
        }
    }

    /// Puts a fresh state in order (tags of the `WINDOW` ring). Call once,
    /// before the state is shared.
    pub fn init(&self, st: &State<'_>) {
        st.tat.store(0, Ordering::Relaxed);
        let n = st.ring.len() as u64;
        st.head.store(n, Ordering::Relaxed);
        for (j, e) in st.ring.iter().enumerate() {
            e.store(pack(j as u64, i64::MIN), Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Release);
    }

    /// Reserves one unit at `now` if it can be granted no later than
    /// `latest` (pass `latest = now` to take only fuel that is there now).
    pub fn reserve(&self, st: &State<'_>, now: i64, latest: i64) -> Reservation {
        match self.hardcap {
            Hardcap::Window => self.reserve_window(st, now, latest),
            _ => self.reserve_gcra(st.tat, now, latest),
        }
    }

    fn reserve_gcra(&self, tat: &AtomicU128, now: i64, latest: i64) -> Reservation {
        let per = u128::from(self.rate.per_ns);
        let now_s = self.rate.scale(now);
        let tau = self.tau();
        let mut cur = tat.load(Ordering::Acquire);
        loop {
            let earliest = match tau {
                Some(tau) => cur.saturating_sub(tau),
                None => cur,
            };
            let (grant_s, next) = if earliest <= now_s {
                // Fuel is in the tank now. A bounded tank restarts its
                // schedule from now; NONE keeps the old one to catch up.
                let base = match tau {
                    // Capacity 1: a caller at `now`, the due time `cur`
                    // rounded up to whole ns, is on time; restarting from
                    // `now_s` would lose the fraction at every grant.
                    Some(0) if self.rate.unscale_ceil(cur) == now => cur,
                    Some(_) => cur.max(now_s),
                    None => cur,
                };
                (now_s, base.saturating_add(per))
            } else {
                (earliest, cur.saturating_add(per))
            };
            let grant = self.rate.unscale_ceil(grant_s);
            if grant > latest {
                return Reservation::Later(grant);
            }
            match tat.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Reservation::Granted(grant),
                Err(actual) => cur = actual,
            }
        }
    }

    fn reserve_window(&self, st: &State<'_>, now: i64, latest: i64) -> Reservation {
        let n = st.ring.len() as u64;
        if n == 0 {
            return Reservation::Corrupt;
        }
        let per = i64::try_from(self.rate.per_ns).unwrap_or(i64::MAX);
        loop {
            let k = st.head.load(Ordering::Acquire);
            let entry = &st.ring[(k % n) as usize];
            let raw = entry.load(Ordering::Acquire);
            let (tag, window_start) = unpack(raw);
            if tag == k {
                // Claimed by a process that has not moved the head yet (or
                // died before it could): move it on its behalf.
                let _ = st.head.compare_exchange(
                    k,
                    k.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                continue;
            }
            let (prev_tag, prev) =
                unpack(st.ring[(k.wrapping_sub(1) % n) as usize].load(Ordering::Acquire));
            if tag != k.wrapping_sub(n) || prev_tag != k.wrapping_sub(1) {
                if st.head.load(Ordering::Acquire) == k {
                    return Reservation::Corrupt;
                }
                continue; // the head moved on while we read
            }
            // Grant k: not before grant k - max_n plus per, and not before
            // grant k - 1 (grant times never go backwards).
            let grant = now.max(window_start.saturating_add(per)).max(prev);
            if grant > latest {
                return Reservation::Later(grant);
            }
            if entry
                .compare_exchange(raw, pack(k, grant), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let _ = st.head.compare_exchange(
                    k,
                    k.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                return Reservation::Granted(grant);
            }
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
            _ => self.start_gcra(st.tat, t_start, last_stop),
        }
    }

    fn start_gcra(&self, tat: &AtomicU128, t_start: i64, last_stop: Option<i64>) {
        let start_s = self.rate.scale(t_start);
        let tau = self.tau();
        let next = match last_stop {
            None => start_s.saturating_add(tau.unwrap_or(0)),
            Some(stop) => {
                let stop_s = self.rate.scale(stop);
                let kept = self.refund_gcra(tat.load(Ordering::Acquire), stop_s);
                match tau {
                    Some(tau) => start_s.saturating_add(tau).max(kept),
                    None => kept.saturating_add(start_s.saturating_sub(stop_s)),
                }
            }
        };
        tat.store(next, Ordering::Release);
    }

    /// The TAT without the reservations granted after `stop_s`. Reservations
    /// made ahead of time are `T` apart, the last one granted at
    /// `tat - T - tau`; anything whose grant time is not known to be after
    /// the stop is kept (the safe side).
    fn refund_gcra(&self, tat: u128, stop_s: u128) -> u128 {
        let per = u128::from(self.rate.per_ns);
        let last_grant = tat.saturating_sub(per.saturating_add(self.tau().unwrap_or(0)));
        if last_grant <= stop_s {
            return tat;
        }
        let cut_short = (last_grant - stop_s).div_ceil(per);
        tat.saturating_sub(cut_short.saturating_mul(per))
    }

    fn start_window(&self, st: &State<'_>, t_start: i64, last_stop: Option<i64>) {
        let n = st.ring.len() as u64;
        let per = i64::try_from(self.rate.per_ns).unwrap_or(i64::MAX);
        let k = st.head.load(Ordering::Acquire);
        // The ring in sequence order: the grants k - n .. k - 1.
        // An entry some late process claimed meanwhile reads as cut short and
        // is left alone.
        let entries: Vec<(usize, u128, u64, Option<i64>)> = (0..n)
            .map(|j| {
                let tag = k.wrapping_sub(n).wrapping_add(j);
                let idx = (tag % n) as usize;
                let raw = st.ring[idx].load(Ordering::Acquire);
                let (found_tag, t) = unpack(raw);
                (idx, raw, tag, (found_tag == tag).then_some(t))
            })
            .collect();
        // Grants that really happened, oldest first. The entries of cut-short
        // reservations go; the older grants they overwrote are not known, so
        // they count as happening with the oldest one known (or at the stop):
        // later than they did, which errs on the safe side.
        let real: Vec<i64> = match last_stop {
            Some(stop) => entries
                .iter()
                .filter_map(|e| e.3)
                .filter(|&t| t <= stop)
                .collect(),
            None => Vec::new(),
        };
        let pad = real.first().copied().or(last_stop).unwrap_or(i64::MIN);
        // A cut-short grant at t came at least `per` after the grant it
        // overwrote, so t - per bounds that one more tightly than `pad`
        // (only while the entries line up: none was claimed meanwhile).
        let mut pads: Vec<i64> = match last_stop {
            Some(stop) if entries.iter().all(|e| e.3.is_some()) => entries
                .iter()
                .filter_map(|e| e.3)
                .filter(|&t| t > stop)
                .map(|t| pad.min(t.saturating_sub(per)))
                .collect(),
            _ => Vec::new(),
        };
        pads.resize(entries.len() - real.len(), pad);
        let known = pads.into_iter().chain(real);
        // The empty tank of DESIGN.md: as if the last window before t_start
        // held one grant every T, so that unit j is due at t_start + j*T.
        let mut floor = i64::MIN;
        for ((j, (idx, raw, tag, time)), known) in entries.iter().enumerate().zip(known) {
            let seed = t_start
                .saturating_sub(per)
                .saturating_add(self.rate.offset_ns(j as u64));
            floor = floor.max(seed).max(known);
            if time.is_none() {
                continue;
            }
            let _ = st.ring[*idx].compare_exchange(
                *raw,
                pack(*tag, floor),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }
}

/// A ring entry: sequence number in the high half, grant time in the low.
fn pack(tag: u64, t: i64) -> u128 {
    (u128::from(tag) << 64) | u128::from(t as u64)
}

fn unpack(raw: u128) -> (u64, i64) {
    ((raw >> 64) as u64, raw as u64 as i64)
}

#[cfg(test)]
mod tests;
