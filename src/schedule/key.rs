//! One key's schedule, in a keyed throttle: the four hardcaps on the two
//! things a key has in the shared table, one 128-bit word and (`WINDOW`)
//! a ring of grant times. Every key of a throttle has the same rate and
//! hardcap, which never change (a keyed throttle has no `set_rate`), so
//! none of the change records of [`crate::schedule`] are needed here.
//!
//! The top 32 bits of the word are the key's *incarnation*: the table
//! bumps it when it evicts or forgets the key, so a reservation of a
//! process that found the key before that fails its compare-and-swap and
//! looks the key up again. The other 96 bits:
//!
//! - `LIMIT`, `ONE`, `NONE`: the theoretical arrival time (TAT) of the
//!   key's next unit, in units of `1/max_n` ns as in `schedule/gcra.rs`
//!   (so that `T = per/max_n` is the integer `per_ns`), plus `BIAS`;
//!   0 means "never used".
//! - `WINDOW`: the sequence number of the key's next grant (32 bits) and
//!   the time of its last grant (64 bits).
//!
//! A key never used counts as idle for ever: its tank is full (`max_n`
//! units for `LIMIT`, 1 for `ONE`), its window empty (`WINDOW`), and
//! `NONE` counts its units from its first use. [`Schedule::key_idle`]
//! says when a key behaves exactly like one never used again, so that the
//! table may drop it without changing what any caller sees (for `NONE`,
//! without loosening its guarantee; see `docs/design.md`, "Keyed
//! throttles").
//!
//! Every update is one compare-and-swap of the word, so a process killed at
//! any instant leaves a consistent key behind; a `WINDOW` grant writes its
//! ring entries after that swap, and a reader that finds one not yet
//! written (its writer was killed, or is slow) uses the time of the key's
//! last grant instead, which is never earlier than the missing one: the
//! window can only get stricter, never looser.

#![forbid(unsafe_code)]

use super::{Hardcap, Schedule};
use crate::store::shm::layout::{pack_entry, unpack_entry};
use portable_atomic::AtomicU128;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};

/// Largest `max_n` of a keyed throttle: keeps every scaled time of a key
/// within 2^88, so that it fits the 96 bits beside the incarnation.
pub const KEYED_MAX_N: u64 = 1 << 24;
/// Largest `max_n` of a keyed `WINDOW` throttle: each key keeps the times
/// of its last `max_n` grants (16 bytes each, rounded up to a power of two).
pub const KEYED_MAX_WINDOW: u64 = 1 << 16;

/// Added to a stored TAT, so that 0 stays free to mean "never used" and a
/// TAT before the clock's origin (a full tank early after boot) is stored
/// as a positive number.
const BIAS: i128 = 1 << 90;
/// The low 96 bits of a word.
const LOW96: u128 = (1 << 96) - 1;

/// The atomics of one key.
#[derive(Clone, Copy)]
pub struct KeyState<'a> {
    /// The incarnation and the schedule word.
    pub word: &'a AtomicU128,
    /// `WINDOW`: [`Schedule::key_ring_len`] entries `(tag, grant time)`,
    /// where a tag is the incarnation and the sequence number of the grant
    /// (see `tag`); empty for the other hardcaps.
    pub ring: &'a [AtomicU128],
}

/// What became of a reservation on a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyReservation {
    /// Reserved: the units are granted at the ticket's time.
    Granted(KeyTicket),
    /// Nothing reserved: the earliest grant would be at this time, after
    /// the latest the caller accepted.
    Later(i64),
    /// Nothing reserved: the key was evicted or forgotten since it was
    /// looked up (its incarnation moved on); look it up again.
    Moved,
    /// The word or the ring holds values no correct process writes.
    Corrupt,
}

/// Units reserved on a key: when they are granted, and what it takes to
/// give them back while nothing was reserved on the key after them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyTicket {
    /// When the units are granted (clock ns).
    pub grant: i64,
    before: u128,
    after: u128,
}

/// The word of incarnation `inc` holding `low`.
fn word(inc: u32, low: u128) -> u128 {
    (u128::from(inc) << 96) | (low & LOW96)
}

/// The incarnation a word is of.
pub fn incarnation(w: u128) -> u32 {
    (w >> 96) as u32
}

/// The tag of `WINDOW` ring entries: incarnation and sequence number.
fn tag(inc: u32, seq: u32) -> u64 {
    (u64::from(inc) << 32) | u64::from(seq)
}

/// `ceil(a / b)` for `b > 0`, `a` of either sign.
fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 { q } else { q + 1 }
}

/// A time of at most `i64::MAX` ns.
fn to_ns(t: i128) -> i64 {
    i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
}

impl Schedule {
    /// The most units one reservation on a key may take (`None`: no
    /// bound): the tank of `LIMIT`, `ONE`; the window of `WINDOW`.
    pub fn key_capacity(&self) -> Option<u64> {
        match self.hardcap {
            Hardcap::Limit | Hardcap::Window => Some(self.rate.max_n),
            Hardcap::One => Some(1),
            Hardcap::None => None,
        }
    }

    /// Entries of each key's ring: `WINDOW`, `max_n` rounded up to a power
    /// of two (at least 4, so that a key's whole record stays a multiple
    /// of a cache line); 0 for the other hardcaps.
    pub fn key_ring_len(&self) -> u64 {
        match self.hardcap {
            Hardcap::Window => self.rate.max_n.next_power_of_two().max(4),
            _ => 0,
        }
    }

    /// Makes `st` the state of a key never used, of incarnation `inc`, as
    /// of `now`: its tank full (`NONE`: its first unit there) at `now`, its
    /// window empty with no grant before `now`. Not "at any time": a
    /// process that read its clock before `now` and reserves after it (it
    /// was held up meanwhile) must not find a full tank at that older time,
    /// when the key's previous incarnation (dropped once idle, at `now` at
    /// the latest) may have granted units. The caller owns the key's slot
    /// (no process uses it until it publishes the key).
    pub fn key_init(&self, st: &KeyState<'_>, inc: u32, now: i64) {
        if self.hardcap == Hardcap::Window {
            let len = st.ring.len() as u32;
            for (j, e) in st.ring.iter().enumerate() {
                // The grant `len` before the first: never made.
                let seq = (j as u32).wrapping_sub(len);
                e.store(pack_entry(tag(inc, seq), i64::MIN), Release);
            }
            st.word.store(word(inc, u128::from(now as u64)), Release);
        } else {
            let full = self.tank_floor(self.scaled(now)) + BIAS;
            st.word
                .store(word(inc, full.clamp(1, 2 * BIAS - 1) as u128), Release);
        }
    }

    /// Reserves `n` units (1 to [`key_capacity`](Self::key_capacity)) of
    /// the key of incarnation `inc`, at `now`, if they are granted no later
    /// than `latest`.
    #[inline(always)]
    pub fn key_reserve(
        &self,
        st: &KeyState<'_>,
        inc: u32,
        n: u64,
        now: i64,
        latest: i64,
    ) -> KeyReservation {
        match self.hardcap {
            Hardcap::Window => self.key_reserve_window(st, inc, n, now, latest),
            _ => self.key_reserve_gcra(st, inc, n, now, latest),
        }
    }

    /// Gives back the units of `ticket` if nothing was reserved on its key
    /// after them (true), so that the next caller may have them. `WINDOW`
    /// never gives back: its ring entries may already be read by others;
    /// its units stay taken, which only makes the window stricter.
    pub fn key_give_back(&self, st: &KeyState<'_>, ticket: &KeyTicket) -> bool {
        self.hardcap != Hardcap::Window
            && st
                .word
                .compare_exchange(ticket.after, ticket.before, AcqRel, Acquire)
                .is_ok()
    }

    /// Whether a key whose word is `w` behaves, at `now`, exactly like a
    /// key never used (its tank full, or its window empty), so that it may
    /// be dropped; `NONE`: whether it holds nothing back (its units are not
    /// ahead of its schedule). A corrupt word is never idle.
    pub fn key_idle(&self, w: u128, now: i64) -> bool {
        let low = w & LOW96;
        if self.hardcap == Hardcap::Window {
            let last = low as u64 as i64;
            return last == i64::MIN || last <= now.saturating_sub(self.per_i64());
        }
        low == 0
            || self
                .stored_tat(low)
                .is_some_and(|tat| tat <= self.tank_floor(self.scaled(now)))
    }

    /// `(units the key's tank holds now, ns from now until n units are
    /// there)`, taking nothing; `None` if the word is not of `inc` or
    /// corrupt. A `NONE` key's tank holds its backlog.
    pub fn key_peek(&self, st: &KeyState<'_>, inc: u32, n: u64, now: i64) -> Option<(u64, i64)> {
        match self.hardcap {
            Hardcap::Window => self.key_peek_window(st, inc, n, now),
            _ => self.key_peek_gcra(st, inc, n, now),
        }
    }

    fn per_i64(&self) -> i64 {
        i64::try_from(self.rate.per_ns).unwrap_or(i64::MAX)
    }

    /// `t` ns in units of `1/max_n` ns.
    fn scaled(&self, t: i64) -> i128 {
        i128::from(t) * i128::from(self.rate.max_n)
    }

    /// The earliest TAT a key may have at scaled time `now_s`: that of a
    /// full tank (`LIMIT`, `ONE`: `max_n`, 1 units there now; `NONE`: one).
    fn tank_floor(&self, now_s: i128) -> i128 {
        let t = i128::from(self.rate.per_ns);
        match self.key_capacity() {
            Some(b) if self.hardcap != Hardcap::None => now_s - (i128::from(b) - 1) * t,
            _ => now_s,
        }
    }

    /// The TAT a stored value holds; `None` if no correct process stores it.
    fn stored_tat(&self, low: u128) -> Option<i128> {
        let v = i128::try_from(low).ok()?;
        (v > 0 && v < 2 * BIAS).then_some(v - BIAS)
    }

    /// The TAT in force at scaled `now_s` for the stored `low`.
    fn tat_in_force(&self, low: u128, now_s: i128) -> Option<i128> {
        let floor = self.tank_floor(now_s);
        if low == 0 {
            return Some(floor);
        }
        let tat = self.stored_tat(low)?;
        Some(match self.hardcap {
            Hardcap::None => tat,
            _ => tat.max(floor),
        })
    }

    #[inline(always)]
    fn key_reserve_gcra(
        &self,
        st: &KeyState<'_>,
        inc: u32,
        n: u64,
        now: i64,
        latest: i64,
    ) -> KeyReservation {
        let t = i128::from(self.rate.per_ns);
        let max_n = i128::from(self.rate.max_n);
        let now_s = self.scaled(now);
        loop {
            let w = st.word.load(Acquire);
            if incarnation(w) != inc {
                return KeyReservation::Moved;
            }
            let Some(tat) = self.tat_in_force(w & LOW96, now_s) else {
                return KeyReservation::Corrupt;
            };
            let due = tat + (i128::from(n) - 1) * t;
            // In the tank now (the common case): no division.
            let grant = if due <= now_s {
                now
            } else {
                to_ns(div_ceil(due, max_n)).max(now)
            };
            if grant > latest {
                return KeyReservation::Later(grant);
            }
            let stored = tat + i128::from(n) * t + BIAS;
            if !(1..2 * BIAS).contains(&stored) {
                // Beyond any time a clock reaches (NONE, a huge n): never.
                return KeyReservation::Later(i64::MAX);
            }
            let after = word(inc, stored as u128);
            if st
                .word
                .compare_exchange_weak(w, after, AcqRel, Acquire)
                .is_ok()
            {
                return KeyReservation::Granted(KeyTicket {
                    grant,
                    before: w,
                    after,
                });
            }
        }
    }

    fn key_peek_gcra(&self, st: &KeyState<'_>, inc: u32, n: u64, now: i64) -> Option<(u64, i64)> {
        let w = st.word.load(Acquire);
        if incarnation(w) != inc {
            return None;
        }
        let t = i128::from(self.rate.per_ns);
        let now_s = self.scaled(now);
        let tat = self.tat_in_force(w & LOW96, now_s)?;
        let there = if now_s < tat {
            0
        } else {
            (now_s - tat) / t + 1
        };
        let there = u64::try_from(there).unwrap_or(u64::MAX);
        let there = self.key_capacity().map_or(there, |b| there.min(b));
        let due = tat + (i128::from(n) - 1) * t;
        let wait = to_ns(div_ceil(due, i128::from(self.rate.max_n))).saturating_sub(now);
        Some((there, wait.max(0)))
    }

    /// `WINDOW`: the time of grant `seq` of incarnation `inc` as the ring
    /// holds it, given that of the key's last grant, `last`. An entry not
    /// yet written (its writer is slow, or was killed after its swap of the
    /// word) reads as `last`, and is written so, for every later reader to
    /// agree: its grant was no later. `None` if the entry holds a grant no
    /// correct process would have left there.
    fn key_grant_time(&self, st: &KeyState<'_>, inc: u32, seq: u32, last: i64) -> Option<i64> {
        let len = st.ring.len() as u32;
        let entry = &st.ring[(seq & (len - 1)) as usize];
        let raw = entry.load(Acquire);
        let (t, at) = unpack_entry(raw);
        if t == tag(inc, seq) {
            return Some(at);
        }
        if t == tag(inc, seq.wrapping_sub(len)) {
            let _ = entry.compare_exchange(raw, pack_entry(tag(inc, seq), last), AcqRel, Acquire);
            return Some(last);
        }
        None
    }

    /// `WINDOW`: the earliest time `n` more units may be granted after the
    /// key's grant `s - 1` (made at `last`): `max_n` grants before the
    /// last of them, plus `per`.
    fn key_window_edge(
        &self,
        st: &KeyState<'_>,
        inc: u32,
        s: u32,
        n: u64,
        last: i64,
    ) -> Option<i64> {
        let q = s
            .wrapping_add(n as u32)
            .wrapping_sub(1)
            .wrapping_sub(self.rate.max_n as u32);
        let t = self.key_grant_time(st, inc, q, last)?;
        Some(if t == i64::MIN {
            i64::MIN
        } else {
            t.saturating_add(self.per_i64())
        })
    }

    fn key_reserve_window(
        &self,
        st: &KeyState<'_>,
        inc: u32,
        n: u64,
        now: i64,
        latest: i64,
    ) -> KeyReservation {
        let len = st.ring.len() as u32;
        loop {
            let w = st.word.load(Acquire);
            if incarnation(w) != inc {
                return KeyReservation::Moved;
            }
            let s = (w >> 64) as u32;
            let last = w as u64 as i64;
            let Some(edge) = self.key_window_edge(st, inc, s, n, last) else {
                if st.word.load(Acquire) == w {
                    return KeyReservation::Corrupt;
                }
                continue; // another grant moved the ring on meanwhile
            };
            let grant = now.max(last).max(edge);
            if grant > latest {
                return KeyReservation::Later(grant);
            }
            let next = s.wrapping_add(n as u32);
            let after = word(inc, (u128::from(next) << 64) | u128::from(grant as u64));
            if st
                .word
                .compare_exchange_weak(w, after, AcqRel, Acquire)
                .is_ok()
            {
                // Each entry over the grant a lap before only: a writer held
                // up after its swap (a reader filled its entry meanwhile,
                // and the key may have gone laps on) writes nothing.
                for k in 0..n as u32 {
                    let seq = s.wrapping_add(k);
                    let entry = &st.ring[(seq & (len - 1)) as usize];
                    let lap = tag(inc, seq.wrapping_sub(len));
                    let mut raw = entry.load(Acquire);
                    while unpack_entry(raw).0 == lap {
                        let mine = pack_entry(tag(inc, seq), grant);
                        match entry.compare_exchange_weak(raw, mine, AcqRel, Acquire) {
                            Ok(_) => break,
                            Err(seen) => raw = seen,
                        }
                    }
                }
                return KeyReservation::Granted(KeyTicket {
                    grant,
                    before: w,
                    after,
                });
            }
        }
    }

    fn key_peek_window(&self, st: &KeyState<'_>, inc: u32, n: u64, now: i64) -> Option<(u64, i64)> {
        let w = st.word.load(Acquire);
        if incarnation(w) != inc {
            return None;
        }
        let s = (w >> 64) as u32;
        let last = w as u64 as i64;
        let at =
            |m: u64| -> Option<i64> { Some(self.key_window_edge(st, inc, s, m, last)?.max(last)) };
        let wait = at(n)?.saturating_sub(now).max(0);
        let mut there = 0;
        while there < self.rate.max_n && at(there + 1)? <= now {
            there += 1;
        }
        Some((there, wait))
    }
}
