//! `LIMIT`, `ONE`, `NONE`: a generic cell rate algorithm on one 128-bit word,
//! whose rate can change while it runs.
//!
//! The word holds a generation (24 bits) and the theoretical arrival time
//! (TAT) of the next unit, scaled (104 bits: `ns * max_n < 2^103`). The rate
//! of generation g is in change record `g % RECORDS`. A change (a new rate,
//! or units a waiter gives back) is made under the change lock (see
//! `Throttle`): its maker writes record g + 1, which commits the change the
//! moment its head is stored, and then moves the word to generation g + 1,
//! converting the TAT. Anyone who finds record g + 1 committed while the
//! word is still at g does that conversion first, so a maker that dies
//! after committing leaves nothing half done, and no reservation is ever
//! made under a rate that no longer holds (its compare-and-swap fails: the
//! generation moved).
//!
//! A waiter sleeping towards a reserved unit keeps its exact scaled slot and
//! generation. When it wakes it follows every record committed since,
//! which maps its slot exactly as the conversion mapped the TAT:
//! - a new rate at `t_c`: slots up to `t_c` stay (they are due already);
//!   the queue after `t_c` keeps its order and is respaced at the new `T`;
//! - units given back: every slot after the given-back one moves earlier by
//!   as many units; the order of the other waiters holds.
//!
//! Mapping offsets with `ceil(d * per_new / per_old)` keeps the spacing of
//! consecutive reserved units exactly the new `T`, as the conversion of the
//! TAT (the slot after the last reserved unit) does.

#![forbid(unsafe_code)]

use super::{Hardcap, Rate, Reservation, Schedule, State, Ticket};
use crate::shm::layout::{RECORDS, Records};
use std::sync::atomic::Ordering::SeqCst;

const GEN_MASK: u32 = (1 << 24) - 1;
const TAT_MAX: u128 = (1 << 104) - 1;

/// `(generation, TAT)` of the schedule word.
pub(super) fn split(word: u128) -> (u32, u128) {
    ((word >> 104) as u32, word & TAT_MAX)
}

/// The schedule word of generation `generation` and TAT `tat` (saturated).
pub(super) fn join(generation: u32, tat: u128) -> u128 {
    (u128::from(generation & GEN_MASK) << 104) | tat.min(TAT_MAX)
}

/// The generation after `generation`. 0 is the throttle's first and never
/// comes back (after 2^24 - 1 it is 1): a throttle whose rate never changed
/// reads its rate from its configuration, not from the records.
pub(super) fn next_generation(generation: u32) -> u32 {
    match generation.wrapping_add(1) & GEN_MASK {
        0 => 1,
        next => next,
    }
}

/// What a change record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// The rate the throttle was made with (record 0 only).
    Initial = 1,
    /// A new rate from `t_c` on.
    Rate = 2,
    /// `units` units of fuel given back, the last of them at slot `x_c`.
    GiveBack = 3,
}

/// One committed change record.
#[derive(Clone, Copy, Debug)]
pub(super) struct Record {
    pub(super) kind: Kind,
    pub(super) rate: Rate,
    pub(super) t_c: i64,
    pub(super) x_c: u128,
    pub(super) units: u128,
}

/// A record tag: generation (bits 0..24) and kind (bits 24..26); 0 (kind 0)
/// is "no record".
fn pack_tag(generation: u32, kind: Kind) -> u64 {
    u64::from(generation & GEN_MASK) | ((kind as u64) << 24)
}

/// The kind of a tag that holds `generation`, if it does.
fn tag_kind(raw: u64, generation: u32) -> Option<Kind> {
    if raw & u64::from(GEN_MASK) != u64::from(generation) || raw >> 26 != 0 {
        return None;
    }
    match (raw >> 24) & 3 {
        1 => Some(Kind::Initial),
        2 => Some(Kind::Rate),
        3 => Some(Kind::GiveBack),
        _ => None,
    }
}

/// Record `generation`, if its slot holds it complete.
pub(super) fn read_record(recs: &Records, generation: u32) -> Option<Record> {
    let i = generation as usize % RECORDS;
    let tag = recs.tags[i].load(SeqCst);
    let kind = tag_kind(tag, generation)?;
    let rate = Rate::new(recs.max_n[i].load(SeqCst), recs.per_ns[i].load(SeqCst));
    let rec = Record {
        kind,
        rate: rate?,
        t_c: recs.t_c[i].load(SeqCst),
        x_c: recs.x_c[i].load(SeqCst),
        units: recs.units[i].load(SeqCst),
    };
    (recs.tags[i].load(SeqCst) == tag).then_some(rec)
}

/// Whether record `generation` is committed (one load: the common answer
/// is no).
fn committed(recs: &Records, generation: u32) -> bool {
    tag_kind(
        recs.tags[generation as usize % RECORDS].load(SeqCst),
        generation,
    )
    .is_some()
}

/// The rate of record `generation`, if its slot holds it complete (the tag
/// is read before and after the fields: a maker rewriting the slot clears
/// the tag first). Plain 64-bit loads: this is on every reservation of a
/// throttle whose rate changed.
fn record_rate(recs: &Records, generation: u32) -> Option<Rate> {
    let i = generation as usize % RECORDS;
    let tag = recs.tags[i].load(SeqCst);
    tag_kind(tag, generation)?;
    let rate = Rate::new(recs.max_n[i].load(SeqCst), recs.per_ns[i].load(SeqCst));
    (recs.tags[i].load(SeqCst) == tag).then_some(rate?)
}

/// Writes and commits record `generation` (the caller holds the change lock).
pub(super) fn write_record(recs: &Records, generation: u32, rec: &Record) {
    let i = generation as usize % RECORDS;
    recs.tags[i].store(0, SeqCst);
    recs.max_n[i].store(rec.rate.max_n(), SeqCst);
    recs.per_ns[i].store(rec.rate.per_ns(), SeqCst);
    recs.t_c[i].store(rec.t_c, SeqCst);
    recs.x_c[i].store(rec.x_c, SeqCst);
    recs.units[i].store(rec.units, SeqCst);
    recs.tags[i].store(pack_tag(generation, rec.kind), SeqCst);
}

/// `ceil(d * per_new / per_old)`: an offset of `d` old scaled units in new
/// ones, without overflow (saturating).
fn respace(d: u128, per_old: u64, per_new: u64) -> u128 {
    let (po, pn) = (u128::from(per_old), u128::from(per_new));
    let (q, r) = (d / po, d % po);
    q.saturating_mul(pn).saturating_add((r * pn).div_ceil(po))
}

/// `floor(d * per_new / per_old)`, as [`respace`] rounded down.
fn respace_floor(d: u128, per_old: u64, per_new: u64) -> u128 {
    let (po, pn) = (u128::from(per_old), u128::from(per_new));
    let (q, r) = (d / po, d % po);
    q.saturating_mul(pn).saturating_add(r * pn / po)
}

/// Where a sleeping waiter's unit is, after following the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Due at this time (unchanged or moved).
    At(i64),
    /// Its units are gone, and it must reserve again: the records it would
    /// need were overwritten by later changes (it slept through more than
    /// `RECORDS - 1` of them), or (`WINDOW`) a change made them void; then
    /// it waits for its turn first (`Schedule::turn_reached`).
    Lost,
    /// `WINDOW`: a change is being made; look again shortly.
    Wait,
}

impl Schedule {
    /// Units the tank can hold: `None` = unbounded.
    pub(super) fn capacity_at(&self, rate: Rate) -> Option<u64> {
        match self.hardcap {
            Hardcap::Limit | Hardcap::Window => Some(rate.max_n),
            Hardcap::One => Some(1),
            Hardcap::None => None,
        }
    }

    /// GCRA burst tolerance at `rate`, scaled: `(capacity - 1) * T`.
    fn tau_at(&self, rate: Rate) -> u128 {
        match self.capacity_at(rate) {
            Some(cap) => u128::from(cap - 1) * u128::from(rate.per_ns),
            None => 0,
        }
    }

    /// The rate of `generation`: the configuration's for 0 (never changed:
    /// no record to read), else its record's.
    #[inline(always)]
    pub(super) fn rate_of(&self, st: &State<'_>, generation: u32) -> Option<Rate> {
        match generation {
            0 => Some(self.rate),
            g => record_rate(st.records, g),
        }
    }

    pub(super) fn init_gcra(&self, st: &State<'_>) {
        for tag in &st.records.tags {
            tag.store(0, SeqCst);
        }
        let first = Record {
            kind: Kind::Initial,
            rate: self.rate,
            t_c: 0,
            x_c: 0,
            units: 0,
        };
        write_record(st.records, 0, &first);
        st.tat.store(join(0, 0), SeqCst);
    }

    /// The schedule word, its generation, TAT and rate, after finishing any
    /// committed change; `None` if corrupt.
    #[inline(always)]
    fn current(&self, st: &State<'_>) -> Option<(u128, u32, u128, Rate)> {
        loop {
            let word = st.tat.load(SeqCst);
            let (generation, cur) = split(word);
            let rate = match self.rate_of(st, generation) {
                Some(rate) => rate,
                None if st.tat.load(SeqCst) != word => continue, // a change went through
                None => return None,
            };
            let next = next_generation(generation);
            if committed(st.records, next) {
                match read_record(st.records, next) {
                    Some(rec) => {
                        let done = join(next, self.convert(cur, rate, &rec));
                        let _ = st.tat.compare_exchange(word, done, SeqCst, SeqCst);
                    }
                    // A record is rewritten only for a later generation.
                    None if st.tat.load(SeqCst) == word => return None,
                    None => {}
                }
                continue;
            }
            return Some((word, generation, cur, rate));
        }
    }

    /// The rate in force now.
    pub fn current_rate(&self, st: &State<'_>) -> Option<Rate> {
        match self.hardcap {
            Hardcap::Window => self.window_current_rate(st),
            _ => self.current(st).map(|(_, _, _, rate)| rate),
        }
    }

    /// The TAT of the next generation: `cur` (at `old`) after change `next`.
    fn convert(&self, cur: u128, old: Rate, next: &Record) -> u128 {
        match next.kind {
            Kind::Initial => cur,
            Kind::GiveBack => cur.saturating_sub(next.units.saturating_mul(old.per_ns.into())),
            Kind::Rate => {
                let new = next.rate;
                let (tau_old, tau_new) = (self.tau_at(old), self.tau_at(new));
                let tc_old = old.scale(next.t_c);
                let tc_new = new.scale(next.t_c);
                // The next unit is due at cur - tau_old; kept as sums, as
                // cur may be less than tau_old.
                let ready = tc_old.saturating_add(tau_old);
                if cur > ready {
                    // Units reserved ahead: the queue after t_c, respaced.
                    let first_new =
                        tc_new.saturating_add(respace(cur - ready, old.per_ns, new.per_ns));
                    first_new.saturating_add(tau_new)
                } else {
                    // Fuel in the tank, and progress towards the next unit:
                    // the time it took (a full tank gains nothing more by
                    // waiting), respaced (rounded down: never more fuel than
                    // it was), and no more than the new tank holds.
                    let bounded = self.capacity_at(new).is_some();
                    let held = if bounded {
                        (ready - cur).min(tau_old)
                    } else {
                        ready - cur
                    };
                    let accrued = respace_floor(held, old.per_ns, new.per_ns);
                    let accrued = if bounded {
                        accrued.min(tau_new)
                    } else {
                        accrued
                    };
                    // At least tc_new for a bounded tank; NONE's backlog is
                    // limited to the time since boot at the new rate.
                    tc_new.saturating_add(tau_new).saturating_sub(accrued)
                }
            }
        }
    }

    /// Reserves `n` units at `now` if they can all be granted (at once) no
    /// later than `latest`. The caller checked `n` against the capacity.
    #[inline(always)]
    pub(super) fn reserve_gcra(
        &self,
        st: &State<'_>,
        n: u64,
        now: i64,
        latest: i64,
    ) -> (Reservation, Ticket) {
        'fresh: loop {
            let Some((mut word, generation, _, rate)) = self.current(st) else {
                return (Reservation::Corrupt, Ticket::default());
            };
            let per = u128::from(rate.per_ns);
            let now_s = rate.scale(now);
            let tau = self.tau_at(rate);
            // Retries after a lost compare-and-swap start from the word it
            // returned (no reload of the contended line) while the
            // generation holds.
            loop {
                let (g, cur) = split(word);
                if g != generation {
                    continue 'fresh;
                }
                // The last of the n units is due at cur - tau + (n-1)*per; kept
                // as sums (`due` against `ready`): cur may be less than tau.
                let due = cur.saturating_add(u128::from(n - 1) * per);
                let ready = now_s.saturating_add(tau);
                let take = u128::from(n) * per;
                let (grant, slot, next) = if due <= ready {
                    // The fuel is in the tank now. A bounded tank restarts its
                    // schedule from now; NONE keeps the old one to catch up.
                    let base = match self.hardcap {
                        // Capacity 1: a caller at `now`, the due time `cur`
                        // rounded up to whole ns (now_s - cur < max_n), is on
                        // time; restarting from `now_s` would lose the fraction
                        // at every grant.
                        Hardcap::One if now_s - cur < u128::from(rate.max_n) => cur,
                        Hardcap::None => cur,
                        _ => cur.max(now_s),
                    };
                    (now.max(0), now_s, base.saturating_add(take))
                } else {
                    let slot = due - tau; // due > ready >= tau
                    (rate.unscale_ceil(slot), slot, cur.saturating_add(take))
                };
                if grant > latest {
                    return (Reservation::Later(grant), Ticket::default());
                }
                match st
                    .tat
                    .compare_exchange_weak(word, join(generation, next), SeqCst, SeqCst)
                {
                    Ok(_) => {
                        let ticket = Ticket {
                            generation,
                            slot,
                            units: n,
                            grant,
                            ..Ticket::default()
                        };
                        return (Reservation::Granted(grant), ticket);
                    }
                    Err(actual) => word = actual,
                }
            }
        }
    }

    /// Follows the changes committed since `ticket` was made or last
    /// followed, updating it; `None` if the state is corrupt.
    pub fn follow(&self, st: &State<'_>, ticket: &mut Ticket) -> Option<Follow> {
        if self.hardcap == Hardcap::Window {
            return self.follow_window(st, ticket);
        }
        if ticket.units == 0 {
            return Some(Follow::At(ticket.grant));
        }
        let (_, generation, _, _) = self.current(st)?;
        while ticket.generation != generation {
            let Some(old) = self.rate_of(st, ticket.generation) else {
                return Some(Follow::Lost);
            };
            let to = next_generation(ticket.generation);
            let Some(rec) = read_record(st.records, to) else {
                return Some(Follow::Lost);
            };
            match rec.kind {
                Kind::Initial => {}
                Kind::GiveBack => {
                    if ticket.slot > rec.x_c {
                        ticket.slot = ticket
                            .slot
                            .saturating_sub(rec.units.saturating_mul(old.per_ns.into()));
                    }
                }
                Kind::Rate => {
                    let tc_old = old.scale(rec.t_c);
                    ticket.slot = if ticket.slot > tc_old {
                        rec.rate.scale(rec.t_c).saturating_add(respace(
                            ticket.slot - tc_old,
                            old.per_ns,
                            rec.rate.per_ns,
                        ))
                    } else {
                        // Due before the change: in the new units, never
                        // earlier than the grant time it was given.
                        rec.rate.scale(ticket.grant)
                    };
                }
            }
            ticket.grant = rec.rate.unscale_ceil(ticket.slot);
            ticket.generation = to;
        }
        Some(Follow::At(ticket.grant))
    }

    /// Changes the rate from `now` on. The caller holds the change lock.
    /// Returns false if the state is corrupt.
    pub(super) fn set_rate_gcra(&self, st: &State<'_>, rate: Rate, now: i64) -> bool {
        let Some((_, generation, _, old)) = self.current(st) else {
            return false;
        };
        if old == rate {
            return true;
        }
        let rec = Record {
            kind: Kind::Rate,
            rate,
            t_c: now,
            x_c: 0,
            units: 0,
        };
        write_record(st.records, next_generation(generation), &rec);
        self.current(st).is_some()
    }

    /// Gives back the units of `ticket` (followed to the current generation
    /// by the caller, who holds the change lock): every waiter after it
    /// moves earlier by as many units (`WINDOW`: reserves again, one place
    /// up, see `window`; `now` reads the time once its head is frozen).
    /// Returns false if the ticket is not current (a change went through:
    /// follow it and try again), `WINDOW` cannot, or the state is corrupt.
    pub fn give_back(&self, st: &State<'_>, ticket: &Ticket, now: &dyn Fn() -> i64) -> bool {
        if self.hardcap == Hardcap::Window {
            return self.give_back_window(st, ticket, now);
        }
        if ticket.units == 0 {
            return true;
        }
        let Some((_, generation, _, rate)) = self.current(st) else {
            return false;
        };
        if generation != ticket.generation {
            return false;
        }
        let rec = Record {
            kind: Kind::GiveBack,
            rate,
            t_c: 0,
            x_c: ticket.slot,
            units: ticket.units.into(),
        };
        write_record(st.records, next_generation(generation), &rec);
        self.current(st).is_some()
    }

    /// `(units in the tank now, ns until n units are there)` for GCRA.
    pub(super) fn peek_gcra(&self, st: &State<'_>, n: u64, now: i64) -> Option<(u64, i64)> {
        let (_, _, cur, rate) = self.current(st)?;
        let per = u128::from(rate.per_ns);
        let tau = self.tau_at(rate);
        // As in reserve_gcra: sums, as cur may be less than tau.
        let ready = rate.scale(now).saturating_add(tau);
        let level = if cur <= ready {
            let held = (ready - cur) / per + 1;
            let held = match self.capacity_at(rate) {
                Some(cap) => held.min(cap.into()),
                None => held,
            };
            u64::try_from(held).unwrap_or(u64::MAX)
        } else {
            0
        };
        let due = cur.saturating_add(u128::from(n.max(1) - 1) * per);
        let wait = if due <= ready {
            0
        } else {
            rate.unscale_ceil(due - tau).saturating_sub(now)
        };
        Some((level, wait))
    }

    /// GCRA part of `start`: see [`Schedule::start`].
    pub(super) fn start_gcra(&self, st: &State<'_>, t_start: i64, last_stop: Option<i64>) {
        // Nobody reserves while the throttle starts but a late process of
        // the old run: then start over (it soon sees the throttle stopped).
        for _ in 0..64 {
            let Some((word, generation, cur, rate)) = self.current(st) else {
                return; // corrupt: reserve() reports it
            };
            let start_s = rate.scale(t_start);
            let tau = self.tau_at(rate);
            let next = match last_stop {
                None => start_s.saturating_add(tau),
                Some(stop) => {
                    let stop_s = rate.scale(stop);
                    let kept = refund(cur, stop_s, rate.per_ns.into(), tau);
                    match self.capacity_at(rate) {
                        Some(_) => start_s.saturating_add(tau).max(kept),
                        None => kept.saturating_add(start_s.saturating_sub(stop_s)),
                    }
                }
            };
            if st
                .tat
                .compare_exchange(word, join(generation, next), SeqCst, SeqCst)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// The TAT without the reservations granted after `stop_s`. Reservations
/// made ahead of time are `per` apart, the last one granted at
/// `tat - per - tau`; anything whose grant time is not known to be after
/// the stop is kept (the safe side).
fn refund(tat: u128, stop_s: u128, per: u128, tau: u128) -> u128 {
    let last_grant = tat.saturating_sub(per.saturating_add(tau));
    if last_grant <= stop_s {
        return tat;
    }
    let cut_short = (last_grant - stop_s).div_ceil(per);
    tat.saturating_sub(cut_short.saturating_mul(per))
}
