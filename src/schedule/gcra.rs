//! `LIMIT`, `ONE`, `NONE`: a generic cell rate algorithm on one 128-bit word,
//! whose rate can change while it runs, however often.
//!
//! The word holds a generation (24 bits) and the theoretical arrival time
//! (TAT) of the next unit (104 bits), in the *frame* of that generation:
//! scaled time, which from the frame's start `since` on is `X(t) = base +
//! (t - since) * max_n`, so that one period `T` is `per_ns` units, and
//! `X / per_ns` counts periods. That count is the schedule's virtual time,
//! and a change of rate never moves it. The frame of generation 0 is the
//! configuration's rate from time 0 (`X = ns * max_n`: unit k of a run is
//! due at `t0 + ceil(k * per / max_n)`, exactly); the frame of generation g
//! is in change record `g % RECORDS`.
//!
//! A change (a new rate, or units a waiter gives back) is made under the
//! change lock (see `Throttle`): its maker writes record g + 1, which commits
//! the change the moment its tag is stored, and then moves the word to
//! generation g + 1, converting the TAT. Anyone who finds record g + 1
//! committed while the word is still at g does that conversion first, so a
//! maker that dies after committing leaves nothing half done, and no
//! reservation is ever made under a rate that no longer holds (its
//! compare-and-swap fails: the generation moved).
//!
//! A new rate at `t_c` keeps virtual time: the new frame starts at `t_c`,
//! its `base` the old frame's `X(t_c)` rescaled and rounded down. A time
//! before a frame's start (a caller that read the clock just before a
//! change) counts as its start: later, never earlier. Units reserved ahead
//! keep their places in virtual time, so the queue after `t_c` keeps its
//! order and is respaced at the new `T`; fuel in the tank is kept, counted
//! in periods, up to what the new tank holds.
//!
//! A waiter sleeping towards reserved units holds its ticket's *base*: the
//! scaled slot of its last unit in the frame it reserved in. Frames differ
//! by a factor only (`X_new = X_old * per_new / per_old`), so it finds its
//! slot in the frame in force in one step, however many changes of rate it
//! slept through: no storm of changes can make it lose its place. Units
//! given back (by a waiter that timed out, or was cancelled) move every
//! later unit earlier by as many periods. Each give-back is kept, besides
//! its change record, in a ring of its own ([`GIVE_BACKS`] entries, which
//! rate changes never overwrite); a sleeper behind it moves its base by as
//! many periods, in the give-back's frame. A sleeper loses its place (and
//! queues again) only if more than [`GIVE_BACKS`] give-backs were made
//! while it slept.
//!
//! Scaled time grows as virtual time does, `per_ns` units a period. So
//! that it stays below 2^104 whatever the rates, a change that would put
//! the new frame's base above 2^102 renumbers instead: it drops whole
//! periods from the start (exactly), and counts them in its record's
//! `shift`; a ticket or give-back made in an earlier frame drops as many.
//! Only units due that long ago (or a `NONE` backlog that long) are
//! affected: they count as due at the frame's start.
//!
//! Rounding: every conversion of a slot to another frame rounds up, to the
//! frame's grid of `1/per_ns` of a period. The TAT is converted one change
//! at a time; a ticket in one step from its base, which is never later
//! than the TAT's conversion of the same slot. So units reserved one after
//! another stay at least one new `T` apart in every frame, and no unit is
//! granted early. A unit reserved after a change may be late by up to one
//! grid step of the frame of each change the TAT was carried through (a
//! billionth of a period with `per` = 1 s); a unit's grant is its place
//! rounded up to whole ns.

#![forbid(unsafe_code)]

use super::{Hardcap, Rate, Reservation, Schedule, State, Ticket};
use crate::store::shm::layout::{GIVE_BACKS, GiveBacks, RECORDS, Records};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;

const GEN_MASK: u32 = (1 << 24) - 1;
const TAT_MAX: u128 = (1 << 104) - 1;
/// A new frame's base stays below this (see [`Frame::changed`]), so that
/// the frame's scaled time stays below `TAT_MAX` for the 2^63 ns it can
/// run (at most 2^103 scaled units more).
const BASE_MAX: u128 = 1 << 102;

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

/// The generation before `generation`, whose record has serial `serial`
/// (generation 0 is serial 0, and comes only first).
fn previous_generation(generation: u32, serial: u64) -> u32 {
    match (serial, generation) {
        (1, _) => 0,
        (_, 1) => GEN_MASK,
        (_, g) => g - 1,
    }
}

/// The frame of a generation: its rate, and where its scaled time starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Frame {
    /// The rate in force.
    pub(super) rate: Rate,
    /// When the frame began.
    pub(super) since: i64,
    /// Scaled time at `since`.
    pub(super) base: u128,
}

impl Frame {
    /// The frame of generation 0: the configuration's rate, from time 0.
    pub(super) fn first(rate: Rate) -> Self {
        Self {
            rate,
            since: 0,
            base: 0,
        }
    }

    /// Scaled time at `t_ns` (a time before the frame began counts as its
    /// start), at most `TAT_MAX`.
    #[inline(always)]
    pub(super) fn at(&self, t_ns: i64) -> u128 {
        let elapsed = t_ns.saturating_sub(self.since).max(0) as u64;
        // elapsed * max_n < 2^104: no overflow.
        (u128::from(elapsed) * u128::from(self.rate.max_n()))
            .saturating_add(self.base)
            .min(TAT_MAX)
    }

    /// When scaled time `x` comes: whole ns, rounded up (never early); the
    /// frame's start for a time at or before it.
    #[inline(always)]
    pub(super) fn time_of(&self, x: u128) -> i64 {
        let d = x.min(TAT_MAX).saturating_sub(self.base);
        let ns = d.div_ceil(u128::from(self.rate.max_n()));
        i64::try_from(ns).map_or(i64::MAX, |ns| self.since.saturating_add(ns))
    }

    /// The frame of a new `rate` from `t_c` on, and the whole periods it
    /// drops: its base is this one's `X(t_c)`, less the periods dropped,
    /// rescaled and rounded down, so virtual time goes on where it was. It
    /// drops as many whole periods as keep its base below `BASE_MAX` (none,
    /// but with rates far apart after a long time at the faster).
    fn changed(&self, rate: Rate, t_c: i64) -> (Self, u128) {
        let (po, pn) = (u128::from(self.rate.per_ns()), u128::from(rate.per_ns()));
        let now = self.at(t_c);
        let dropped = (now / po).saturating_sub(BASE_MAX / pn);
        let base = respace_floor(now - dropped * po, self.rate.per_ns(), rate.per_ns());
        let frame = Self {
            rate,
            since: t_c,
            base,
        };
        (frame, dropped)
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

/// What the changes up to a generation add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    /// Changes made (0: the first rate).
    pub(super) serial: u64,
    /// GCRA: give-backs made.
    pub(super) give_backs: u64,
    /// GCRA: whole periods dropped from the frames' scaled time.
    pub(super) shift: u128,
}

/// One committed change record.
#[derive(Clone, Copy, Debug)]
pub(super) struct Record {
    pub(super) kind: Kind,
    /// The frame in force from this record on (`WINDOW`: its rate only).
    pub(super) frame: Frame,
    /// The changes up to and including this one.
    pub(super) counts: Counts,
    /// GCRA: when the frame began (a new rate's change; a give-back
    /// copies its predecessor's). `WINDOW`: when the change was made.
    pub(super) t_c: i64,
    /// GCRA: a new rate, the periods it dropped; units given back, the
    /// scaled slot of the last one. `WINDOW`: where the ring was cut.
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

/// A 128-bit value kept as two 64-bit words (read inside a record's tags).
fn wide(lo: &AtomicU64, hi: &AtomicU64) -> u128 {
    (u128::from(hi.load(SeqCst)) << 64) | u128::from(lo.load(SeqCst))
}

/// Stores a value [`wide`] reads.
fn store_wide(lo: &AtomicU64, hi: &AtomicU64, value: u128) {
    lo.store(value as u64, SeqCst);
    hi.store((value >> 64) as u64, SeqCst);
}

/// Record `generation`, if its slot holds it complete.
pub(super) fn read_record(recs: &Records, generation: u32) -> Option<Record> {
    let i = generation as usize % RECORDS;
    let tag = recs.tags[i].load(SeqCst);
    let kind = tag_kind(tag, generation)?;
    let rate = Rate::new(recs.max_n[i].load(SeqCst), recs.per_ns[i].load(SeqCst));
    let t_c = recs.t_c[i].load(SeqCst);
    let rec = Record {
        kind,
        frame: Frame {
            rate: rate?,
            since: t_c,
            base: wide(&recs.base_lo[i], &recs.base_hi[i]),
        },
        counts: Counts {
            serial: recs.serial[i].load(SeqCst),
            give_backs: recs.give_backs[i].load(SeqCst),
            shift: wide(&recs.shift_lo[i], &recs.shift_hi[i]),
        },
        t_c,
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

/// The frame of record `generation`, if its slot holds it complete (the
/// tag is read before and after the fields: a maker rewriting the slot
/// clears the tag first). Plain 64-bit loads: this is on every reservation
/// of a throttle whose rate changed.
#[inline(always)]
fn record_frame(recs: &Records, generation: u32) -> Option<Frame> {
    let i = generation as usize % RECORDS;
    let tag = recs.tags[i].load(SeqCst);
    tag_kind(tag, generation)?;
    let rate = Rate::new(recs.max_n[i].load(SeqCst), recs.per_ns[i].load(SeqCst));
    let since = recs.t_c[i].load(SeqCst);
    let base = wide(&recs.base_lo[i], &recs.base_hi[i]);
    (recs.tags[i].load(SeqCst) == tag).then_some(Frame {
        rate: rate?,
        since,
        base,
    })
}

/// Writes and commits record `generation` (the caller holds the change lock).
pub(super) fn write_record(recs: &Records, generation: u32, rec: &Record) {
    let i = generation as usize % RECORDS;
    recs.tags[i].store(0, SeqCst);
    recs.max_n[i].store(rec.frame.rate.max_n(), SeqCst);
    recs.per_ns[i].store(rec.frame.rate.per_ns(), SeqCst);
    store_wide(&recs.base_lo[i], &recs.base_hi[i], rec.frame.base);
    recs.serial[i].store(rec.counts.serial, SeqCst);
    recs.give_backs[i].store(rec.counts.give_backs, SeqCst);
    store_wide(&recs.shift_lo[i], &recs.shift_hi[i], rec.counts.shift);
    recs.t_c[i].store(rec.t_c, SeqCst);
    recs.x_c[i].store(rec.x_c, SeqCst);
    recs.units[i].store(rec.units, SeqCst);
    recs.tags[i].store(pack_tag(generation, rec.kind), SeqCst);
}

/// A give-back, as its ring keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GiveBack {
    /// The scaled slot of the last unit given back, in the frame of `per`
    /// and `shift`.
    slot: u128,
    per: u64,
    shift: u128,
    units: u64,
}

/// Writes give-back number `number` (the caller holds the change lock and
/// commits it with a record counting it).
fn write_give_back(gbs: &GiveBacks, number: u64, gb: &GiveBack) {
    let i = (number % GIVE_BACKS as u64) as usize;
    gbs.tags[i].store(0, SeqCst);
    gbs.slot[i].store(gb.slot, SeqCst);
    gbs.per_ns[i].store(gb.per, SeqCst);
    gbs.shift[i].store(gb.shift, SeqCst);
    gbs.units[i].store(gb.units, SeqCst);
    gbs.tags[i].store(number, SeqCst);
}

/// Give-back number `number`, if its entry still holds it complete.
fn read_give_back(gbs: &GiveBacks, number: u64) -> Option<GiveBack> {
    let i = (number % GIVE_BACKS as u64) as usize;
    if number == 0 || gbs.tags[i].load(SeqCst) != number {
        return None;
    }
    let gb = GiveBack {
        slot: gbs.slot[i].load(SeqCst),
        per: gbs.per_ns[i].load(SeqCst),
        shift: gbs.shift[i].load(SeqCst),
        units: gbs.units[i].load(SeqCst),
    };
    (gbs.tags[i].load(SeqCst) == number && gb.per > 0).then_some(gb)
}

/// `ceil(d * per_new / per_old)`: scaled units of a frame of period
/// `per_old` in one of period `per_new`, without overflow (saturating).
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

/// A place `slot` in a frame of period `per` that had dropped `shift`
/// periods, in a frame of period `to_per` that had dropped `to_shift`:
/// renumbered exactly, rescaled and rounded up.
fn place(slot: u128, (per, shift): (u64, u128), (to_per, to_shift): (u64, u128)) -> u128 {
    let periods = |d: u128| d.saturating_mul(u128::from(per));
    let x = if to_shift >= shift {
        slot.saturating_sub(periods(to_shift - shift))
    } else {
        slot.saturating_add(periods(shift - to_shift))
    };
    respace(x, per, to_per)
}

/// Where a sleeping waiter's unit is, after following the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Due at this time (unchanged or moved).
    At(i64),
    /// Its units are gone, and it must reserve again: GCRA, more than
    /// `GIVE_BACKS` give-backs were made while it slept; `WINDOW`, a change
    /// made them void, and it waits for its turn first
    /// (`Schedule::turn_reached`).
    Lost,
    /// `WINDOW`: a change is being made; look again shortly.
    Wait,
}

impl Schedule {
    /// Units the tank can hold: `None` = unbounded.
    pub(crate) fn capacity_at(&self, rate: Rate) -> Option<u64> {
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

    /// The frame of `generation`: the configuration's for 0 (never changed:
    /// no record to read), else its record's.
    #[inline(always)]
    pub(super) fn frame_of(&self, st: &State<'_>, generation: u32) -> Option<Frame> {
        match generation {
            0 => Some(Frame::first(self.rate)),
            g => record_frame(st.records, g),
        }
    }

    /// The rate of `generation` (see [`frame_of`](Self::frame_of)).
    #[inline(always)]
    pub(super) fn rate_of(&self, st: &State<'_>, generation: u32) -> Option<Rate> {
        self.frame_of(st, generation).map(|f| f.rate)
    }

    /// What the changes up to `generation` add up to.
    pub(super) fn counts(&self, st: &State<'_>, generation: u32) -> Option<Counts> {
        match generation {
            0 => Some(Counts::default()),
            g => read_record(st.records, g).map(|r| r.counts),
        }
    }

    /// Puts fresh records in order: record 0 holds the configuration's rate.
    pub(super) fn init_records(&self, st: &State<'_>) {
        for tag in st.records.tags.iter().chain(&st.give_backs.tags) {
            tag.store(0, SeqCst);
        }
        let first = Record {
            kind: Kind::Initial,
            frame: Frame::first(self.rate),
            counts: Counts::default(),
            t_c: 0,
            x_c: 0,
            units: 0,
        };
        write_record(st.records, 0, &first);
        st.tat.store(join(0, 0), SeqCst);
    }

    /// The schedule word, its generation, TAT and frame, after finishing any
    /// committed change; `None` if corrupt.
    #[inline(always)]
    fn current(&self, st: &State<'_>) -> Option<(u128, u32, u128, Frame)> {
        loop {
            let word = st.tat.load(SeqCst);
            let (generation, cur) = split(word);
            let frame = match self.frame_of(st, generation) {
                Some(frame) => frame,
                None if st.tat.load(SeqCst) != word => continue, // a change went through
                None => return None,
            };
            let next = next_generation(generation);
            if committed(st.records, next) {
                match read_record(st.records, next) {
                    Some(rec) => {
                        let done = join(next, self.convert(cur, frame, &rec));
                        let _ = st.tat.compare_exchange(word, done, SeqCst, SeqCst);
                    }
                    // A record is rewritten only for a later generation.
                    None if st.tat.load(SeqCst) == word => return None,
                    None => {}
                }
                continue;
            }
            return Some((word, generation, cur, frame));
        }
    }

    /// The rate in force now.
    pub fn current_rate(&self, st: &State<'_>) -> Option<Rate> {
        match self.hardcap {
            Hardcap::Window => self.window_current_rate(st),
            _ => self.current(st).map(|(_, _, _, frame)| frame.rate),
        }
    }

    /// The TAT of the next generation: `cur` (in frame `old`) after change
    /// `next`.
    fn convert(&self, cur: u128, old: Frame, next: &Record) -> u128 {
        let per_old = old.rate.per_ns;
        match next.kind {
            Kind::Initial => cur,
            Kind::GiveBack => cur.saturating_sub(next.units.saturating_mul(per_old.into())),
            Kind::Rate => {
                let new = next.frame;
                let per_new = new.rate.per_ns;
                let (tau_old, tau_new) = (self.tau_at(old.rate), self.tau_at(new.rate));
                // The next unit is due at cur - tau_old; kept as sums, as
                // cur may be less than tau_old.
                let ready = old.at(next.t_c).saturating_add(tau_old);
                if cur > ready {
                    // Units reserved ahead: the next one's place in virtual
                    // time, in the new frame (less the periods it drops).
                    let dropped = next.x_c.saturating_mul(per_old.into());
                    respace((cur - tau_old).saturating_sub(dropped), per_old, per_new)
                        .saturating_add(tau_new)
                } else {
                    // Fuel in the tank, and progress towards the next unit:
                    // the periods it took (a full tank gains nothing more by
                    // waiting), rounded down (never more fuel than it was),
                    // and no more than the new tank holds.
                    let bounded = self.capacity_at(new.rate).is_some();
                    let held = if bounded {
                        (ready - cur).min(tau_old)
                    } else {
                        ready - cur
                    };
                    let accrued = respace_floor(held, per_old, per_new);
                    let accrued = if bounded {
                        accrued.min(tau_new)
                    } else {
                        accrued
                    };
                    // NONE's backlog is limited to the frame's time 0.
                    new.at(next.t_c)
                        .saturating_add(tau_new)
                        .saturating_sub(accrued)
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
            let Some((mut word, generation, _, frame)) = self.current(st) else {
                return (Reservation::Corrupt, Ticket::default());
            };
            let rate = frame.rate;
            let per = u128::from(rate.per_ns);
            let now_s = frame.at(now);
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
                    (frame.time_of(slot), slot, cur.saturating_add(take))
                };
                if grant > latest {
                    return (Reservation::Later(grant), Ticket::default());
                }
                // A waiter that sleeps follows the changes made after its
                // generation: it keeps how many there were.
                let counts = if grant > now {
                    match self.counts(st, generation) {
                        Some(counts) => counts,
                        None => continue 'fresh, // overwritten: moved on
                    }
                } else {
                    Counts::default()
                };
                match st
                    .tat
                    .compare_exchange_weak(word, join(generation, next), SeqCst, SeqCst)
                {
                    Ok(_) => {
                        let ticket = Ticket {
                            generation,
                            serial: counts.serial,
                            slot,
                            per: rate.per_ns,
                            shift: counts.shift,
                            give_backs: counts.give_backs,
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
        loop {
            let (word, generation, _, frame) = self.current(st)?;
            if generation == ticket.generation && generation == 0 {
                return Some(Follow::At(ticket.grant));
            }
            let Some(counts) = self.counts(st, generation) else {
                if st.tat.load(SeqCst) == word {
                    return None;
                }
                continue; // overwritten meanwhile: look again
            };
            if counts.serial == ticket.serial {
                return Some(Follow::At(ticket.grant));
            }
            // The give-backs made since, in order: those ahead move the
            // base up.
            let pending = counts.give_backs.wrapping_sub(ticket.give_backs);
            if pending > GIVE_BACKS as u64 {
                return Some(Follow::Lost);
            }
            let mut base = (ticket.slot, ticket.per, ticket.shift);
            // Its grant as of the changes it followed, unless a give-back
            // moves it.
            let mut known = Some((ticket.serial, ticket.grant));
            for number in ticket.give_backs + 1..=counts.give_backs {
                let Some(gb) = read_give_back(st.give_backs, number) else {
                    return Some(Follow::Lost); // overwritten by later ones
                };
                let here = place(base.0, (base.1, base.2), (gb.per, gb.shift));
                if here > gb.slot {
                    let moved = here.saturating_sub(u128::from(gb.units) * u128::from(gb.per));
                    base = (moved, gb.per, gb.shift);
                    known = None;
                }
            }
            let grant = self.time_of_slot(st, base, (generation, frame, counts.shift), known)?;
            if st.tat.load(SeqCst) != word {
                continue; // a change went through meanwhile: follow it too
            }
            (ticket.slot, ticket.per, ticket.shift) = base;
            ticket.give_backs = counts.give_backs;
            ticket.serial = counts.serial;
            ticket.generation = generation;
            ticket.grant = grant;
            return Some(Follow::At(grant));
        }
    }

    /// When a unit at `slot` (in the frame of period `per` and shift
    /// `shift`) is granted, the frame of `generation` being in force: in the
    /// frame in force when virtual time reached it, found walking back
    /// through the records (a unit is after a change if it is after the
    /// change's instant in the frame before it). `known`: the changes the
    /// ticket followed before, and its grant then: a unit due before them
    /// is granted then. A unit due before the oldest frame the records
    /// still hold is granted at that frame's start, at the latest (never
    /// early). `None` if corrupt.
    fn time_of_slot(
        &self,
        st: &State<'_>,
        (slot, per, shift): (u128, u64, u128),
        (generation, frame, frame_shift): (u32, Frame, u128),
        known: Option<(u64, i64)>,
    ) -> Option<i64> {
        let (mut g, mut f, mut f_shift) = (generation, frame, frame_shift);
        loop {
            let here = place(slot, (per, shift), (f.rate.per_ns, f_shift));
            if g == 0 {
                return Some(f.time_of(here));
            }
            // A unit due before the frame began comes at its start.
            let Some(rec) = read_record(st.records, g) else {
                return Some(f.time_of(here));
            };
            let before = previous_generation(g, rec.counts.serial);
            let followed = known.filter(|(serial, _)| rec.counts.serial <= serial + 1);
            match rec.kind {
                Kind::Initial => return None, // only generation 0 is the first rate
                // The same frame as the generation before: back to one the
                // ticket followed, or on.
                Kind::GiveBack => match followed {
                    Some((_, grant)) => return Some(grant),
                    None => g = before,
                },
                Kind::Rate => {
                    let older = match before {
                        0 => Some((Frame::first(self.rate), 0)),
                        b => read_record(st.records, b).map(|r| (r.frame, r.counts.shift)),
                    };
                    let Some((older, older_shift)) = older else {
                        // Lapped: the frame before is unknown.
                        return Some(f.time_of(here));
                    };
                    let there = place(slot, (per, shift), (older.rate.per_ns, older_shift));
                    if there > older.at(rec.t_c) {
                        return Some(f.time_of(here));
                    }
                    if let Some((_, grant)) = followed {
                        return Some(grant); // due in a frame it followed
                    }
                    (g, f, f_shift) = (before, older, older_shift);
                }
            }
        }
    }

    /// The place of `ticket`'s last unit in the frame in force, and that
    /// frame (tests: the ticket was followed).
    #[cfg(test)]
    pub(super) fn place_in_force(&self, st: &State<'_>, ticket: &Ticket) -> Option<(u128, Frame)> {
        let (_, generation, _, frame) = self.current(st)?;
        let counts = self.counts(st, generation)?;
        let to = (frame.rate.per_ns, counts.shift);
        Some((place(ticket.slot, (ticket.per, ticket.shift), to), frame))
    }

    /// Changes the rate from `now` on. The caller holds the change lock.
    /// Returns false if the state is corrupt.
    pub(super) fn set_rate_gcra(&self, st: &State<'_>, rate: Rate, now: i64) -> bool {
        let Some((_, generation, _, old)) = self.current(st) else {
            return false;
        };
        if old.rate == rate {
            return true;
        }
        let Some(counts) = self.counts(st, generation) else {
            return false;
        };
        let (frame, dropped) = old.changed(rate, now);
        let rec = Record {
            kind: Kind::Rate,
            frame,
            counts: Counts {
                serial: counts.serial + 1,
                shift: counts.shift.saturating_add(dropped),
                ..counts
            },
            t_c: now,
            x_c: dropped,
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
        let Some((_, generation, _, frame)) = self.current(st) else {
            return false;
        };
        let Some(counts) = self.counts(st, generation) else {
            return false;
        };
        if generation != ticket.generation || counts.serial != ticket.serial {
            return false;
        }
        let to = (frame.rate.per_ns, counts.shift);
        let gb = GiveBack {
            slot: place(ticket.slot, (ticket.per, ticket.shift), to),
            per: to.0,
            shift: to.1,
            units: ticket.units,
        };
        let number = counts.give_backs + 1;
        write_give_back(st.give_backs, number, &gb);
        let rec = Record {
            kind: Kind::GiveBack,
            frame,
            counts: Counts {
                serial: counts.serial + 1,
                give_backs: number,
                ..counts
            },
            t_c: frame.since,
            x_c: gb.slot,
            units: ticket.units.into(),
        };
        write_record(st.records, next_generation(generation), &rec);
        self.current(st).is_some()
    }

    /// `(units in the tank now, ns until n units are there)` for GCRA.
    pub(super) fn peek_gcra(&self, st: &State<'_>, n: u64, now: i64) -> Option<(u64, i64)> {
        let (_, _, cur, frame) = self.current(st)?;
        let rate = frame.rate;
        let per = u128::from(rate.per_ns);
        let tau = self.tau_at(rate);
        // As in reserve_gcra: sums, as cur may be less than tau.
        let ready = frame.at(now).saturating_add(tau);
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
            frame.time_of(due - tau).saturating_sub(now)
        };
        Some((level, wait))
    }

    /// GCRA part of `start`: see [`Schedule::start`].
    pub(super) fn start_gcra(&self, st: &State<'_>, t_start: i64, last_stop: Option<i64>) {
        // Nobody reserves while the throttle starts but a late process of
        // the old run: then start over (it soon sees the throttle stopped).
        for _ in 0..64 {
            let Some((word, generation, cur, frame)) = self.current(st) else {
                return; // corrupt: reserve() reports it
            };
            let rate = frame.rate;
            let start_s = frame.at(t_start);
            let tau = self.tau_at(rate);
            let next = match last_stop {
                None => start_s.saturating_add(tau),
                Some(stop) => {
                    // Units granted after the stop: after its time, or after
                    // the frame began if the rate changed since (a unit due
                    // before that is kept: the safe side).
                    let stop_s = frame.at(stop);
                    let kept = refund(cur, stop_s, rate.per_ns.into(), tau);
                    match self.capacity_at(rate) {
                        Some(_) => start_s.saturating_add(tau).max(kept),
                        // NONE carries its backlog over the pause, which
                        // does not count.
                        None => {
                            let pause = u128::from(t_start.saturating_sub(stop).max(0) as u64);
                            kept.saturating_add(pause * u128::from(rate.max_n))
                        }
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
