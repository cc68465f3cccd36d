//! `WINDOW`: an exact sliding window over a ring of the last grant times,
//! whose rate can change while it runs.
//!
//! The ring holds `(sequence number, grant time)` of the last `len` units
//! granted or reserved (`len` is at least the largest `max_n` the rate may
//! take, see [`ring_len`]); the head holds the sequence number of the next
//! unit and the time of the last. Unit k may not be granted before unit
//! `k - max_n` plus `per`, so no half-open window of length `per` holds more
//! than `max_n` grants, and none waits when the window allows it.
//!
//! A change of rate at `t_c` (made under the change lock, see `Throttle`):
//! 1. freezes the head (its time becomes a marker naming the change), so no
//!    one reserves while the ring is rewritten;
//! 2. finds the first unit reserved for after `t_c` (grant times never go
//!    backwards, so a binary search does);
//! 3. commits a change record (the new rate, `t_c`, where the ring was cut)
//!    and moves the generation in the schedule word;
//! 4. rewrites the ring to hold the last `len` units granted by `t_c`, under
//!    sequence numbers shifted by [`shift`] (so that no process that read an
//!    entry before the change can take the rewritten one for it), and
//!    unfreezes the head just after them.
//!
//! Every unit reserved for after `t_c` is void: its waiter sees the change
//! when it follows its ticket, and reserves again under the new rate, in its
//! old place in the queue (it waits for the head to reach its old sequence
//! number, shifted, for at most [`TURN_PATIENCE_NS`]). Grants made by `t_c`
//! that later units overwrote in the ring are replaced by upper bounds of
//! their times (a unit `q` laps later was granted at least `q * per` after
//! them, and they were granted by `t_c`): a bound only ever errs late, the
//! safe side. Units of the queue that even the ring no longer holds (more
//! waiting units than the ring has entries) count as granted at `t_c` at
//! the latest: the safe side again, paid for with a late first grant.
//!
//! A start writes no entry (but one after a stop that cut reservations
//! short, below): as if one unit had been granted every T before
//! it (the empty tank), an entry from before the run counts as granted at
//! the later of that seed and its own time, which every reader of a time in
//! the ring computes from the start's record (`Seeds`, through `time_at`).
//! A change of rate or a give-back rewrites every entry, seeds included,
//! and ends the record. A start after a stop that cut reservations short
//! rewrites the ring to give them back, and records itself first, so that
//! whoever finds its head still frozen finishes it.
//!
//! Units given back (a cancelled waiter) are a cut of the same kind, at the
//! first of them rather than at a time: the ring keeps every unit before
//! them, waiting ones included, and the waiters after them reserve again,
//! each one place up (`Kind::GiveBack`). A waiter kept by a cut takes the
//! ring's new numbering when it follows the record.
//!
//! Whoever finds the head frozen and can take the change lock (its holder
//! died, see `ShmStore::settle`) finishes the change from its record, or
//! undoes the freeze if the record was never committed: every step can be
//! done again with the same result.

#![forbid(unsafe_code)]

use super::gcra::{
    Counts, Frame, Kind, Record, join, next_generation, read_record, split, write_record,
};
use super::{Follow, Rate, Reservation, Schedule, State, Ticket};
use crate::store::shm::layout::{pack_entry as pack, unpack_entry as unpack};
use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};

/// A `MPT_HARDCAP_WINDOW` throttle keeps the times of its last
/// `max(max_n, MPT_WINDOW_MIN_RING)` grants (`max_n` as made), so
/// `mpt_set_rate` may raise its `max_n` to that many, no further.
pub const RING_MIN: u64 = 4096;

/// How long a waiter whose unit a change made void waits for those before
/// it in the queue to reserve again, before it reserves anyway (they may
/// have timed out, or died).
pub const TURN_PATIENCE_NS: i64 = 2_000_000;

/// Head times at and above this are not times: the head is frozen by the
/// change that makes generation `i64::MAX - time`.
const FROZEN_MIN: i64 = i64::MAX - (1 << 24);

/// Entries of the ring of a throttle made with `max_n` units per period.
pub fn ring_len(max_n: u64) -> u64 {
    max_n.max(RING_MIN)
}

/// How far a change moves sequence numbers: a multiple of the ring length
/// (every unit keeps its slot), far from any number in use.
fn shift(len: u64) -> u64 {
    len.wrapping_mul(1 << 16)
}

/// Whether sequence number `a` is at or after `b` (numbers wrap).
fn reached(a: u64, b: u64) -> bool {
    a.wrapping_sub(b) < 1 << 63
}

/// The generation a frozen head's time names, if frozen.
fn frozen_for(last: i64) -> Option<u32> {
    (last > FROZEN_MIN).then(|| (i64::MAX - last) as u32)
}

/// What a change record of this schedule keeps besides the rate: the head
/// when it froze, where the ring was cut, and the old period.
fn pack_cut(k: u64, rho: u64) -> u128 {
    (u128::from(k) << 64) | u128::from(rho)
}

fn unpack_cut(x: u128) -> (u64, u64) {
    ((x >> 64) as u64, x as u64)
}

/// Why a rate could not be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `WINDOW`: the ring has only this many entries, fewer than `max_n`.
    RingTooSmall(u64),
    /// The shared state holds values no correct process writes.
    Corrupt,
}

impl Schedule {
    /// The generation and rate in force; `None` if corrupt.
    fn window_rate(&self, st: &State<'_>) -> Option<(u32, Rate)> {
        loop {
            let word = st.tat.load(SeqCst);
            let (generation, _) = split(word);
            match self.rate_of(st, generation) {
                Some(rate) => return Some((generation, rate)),
                None if st.tat.load(SeqCst) != word => {} // a change went through
                None => return None,
            }
        }
    }

    /// The rate in force (`WINDOW`).
    pub(super) fn window_current_rate(&self, st: &State<'_>) -> Option<Rate> {
        self.window_rate(st).map(|(_, rate)| rate)
    }

    /// Whether a change is being made right now (`WINDOW`: the head is
    /// frozen); see `ShmStore::settle`.
    pub fn busy(&self, st: &State<'_>) -> bool {
        frozen_for(unpack(st.head.load(SeqCst)).1).is_some()
    }

    /// Claims entries `k .. k + m` of the ring at once by moving the head
    /// from `(k, last grant)` to `(k + m, grant)`; the entries are then
    /// filled, by the claimer or by whoever comes next, so a process that
    /// dies between the two wedges nobody.
    pub(super) fn reserve_window(
        &self,
        st: &State<'_>,
        m: u64,
        now: i64,
        latest: i64,
    ) -> (Reservation, Ticket) {
        let len = st.ring.len() as u64;
        loop {
            let raw = st.head.load(SeqCst);
            let (k, last) = unpack(raw);
            if frozen_for(last).is_some() {
                return (Reservation::Busy, Ticket::default());
            }
            // The rate after the head: a change moves the head first, so the
            // compare-and-swap below fails if one came between.
            let Some((generation, rate)) = self.window_rate(st) else {
                return (Reservation::Corrupt, Ticket::default());
            };
            let n = rate.max_n;
            if len == 0 || n > len || m > n {
                return (Reservation::Corrupt, Ticket::default());
            }
            match fill_pending(st, raw) {
                Some(true) => {}
                Some(false) => continue, // the head moved on while we looked
                None => return (Reservation::Corrupt, Ticket::default()),
            }
            // The last unit of the batch, k + m - 1, may not come before
            // unit k + m - 1 - n plus per (grants never go backwards).
            let back = k.wrapping_add(m - 1).wrapping_sub(n);
            let (tag, t) = unpack(st.ring[(back % len) as usize].load(SeqCst));
            if tag != back {
                if st.head.load(SeqCst) == raw {
                    return (Reservation::Corrupt, Ticket::default());
                }
                continue;
            }
            let window_start = time_at(st, back, t);
            let per = i64::try_from(rate.per_ns).unwrap_or(i64::MAX);
            let grant = now.max(window_start.saturating_add(per)).max(last);
            if grant > latest {
                return (Reservation::Later(grant), Ticket::default());
            }
            // A waiter that sleeps follows the changes made after its
            // generation: it keeps how many there were.
            let serial = if grant > now {
                match self.counts(st, generation) {
                    Some(counts) => counts.serial,
                    None => continue, // overwritten: moved on
                }
            } else {
                0
            };
            let claimed = pack(k.wrapping_add(m), grant);
            if st
                .head
                .compare_exchange(raw, claimed, SeqCst, SeqCst)
                .is_ok()
            {
                fill_pending(st, claimed);
                let ticket = Ticket {
                    seq: k.wrapping_add(m - 1),
                    first: k,
                    generation,
                    serial,
                    grant,
                    ..Ticket::default()
                };
                return (Reservation::Granted(grant), ticket);
            }
        }
    }

    /// Follows a `WINDOW` ticket through the changes made since it was made
    /// or last followed: a change that cut the ring before its units made
    /// them void ([`Follow::Lost`], and the ticket's turn says where in the
    /// queue it was); [`Follow::Wait`] while a change is made.
    pub(super) fn follow_window(&self, st: &State<'_>, ticket: &mut Ticket) -> Option<Follow> {
        // The head first: a change freezes it before it reads its time, so a
        // waiter that found it thawed and its unit due went ahead before
        // the change (which then counts the unit as granted).
        if self.busy(st) {
            return Some(Follow::Wait);
        }
        let (generation, _) = self.window_rate(st)?;
        let d = shift(st.ring.len() as u64);
        while ticket.generation != generation {
            let to = next_generation(ticket.generation);
            let Some(rec) = read_record(st.records, to) else {
                // Overwritten by later changes: whether they kept its units
                // or made them void, its place in the queue is its first
                // unit's, renumbered by each of them. (Units kept and
                // taken for void cost a unit, never a window over.)
                let serial = self.counts(st, generation)?.serial;
                let changes = serial.wrapping_sub(ticket.serial);
                ticket.turn = ticket.first.wrapping_add(d.wrapping_mul(changes));
                (ticket.generation, ticket.serial) = (generation, serial);
                return Some(Follow::Lost);
            };
            let (_, rho) = unpack_cut(rec.x_c);
            let first = ticket.first;
            let turn = match rec.kind {
                // A new rate: void if due after it.
                Kind::Rate if ticket.grant > rec.t_c => Some(if reached(first, rho) {
                    first
                } else {
                    rho // the ring no longer held it: no place to keep
                }),
                // Units given back: void if after them, and one place up.
                Kind::GiveBack if reached(first, rho) => {
                    let units = u64::try_from(rec.units).unwrap_or(u64::MAX);
                    Some(first.wrapping_sub(units))
                }
                Kind::Rate | Kind::GiveBack => None,
                Kind::Initial => return None, // never a change: corrupt
            };
            if let Some(turn) = turn {
                ticket.turn = turn.wrapping_add(d);
                (ticket.generation, ticket.serial) = (to, rec.counts.serial);
                return Some(Follow::Lost);
            }
            // Kept: in the ring's new numbering.
            ticket.seq = ticket.seq.wrapping_add(d);
            ticket.first = first.wrapping_add(d);
            (ticket.generation, ticket.serial) = (to, rec.counts.serial);
        }
        Some(Follow::At(ticket.grant))
    }

    /// Whether the queue has come to the place of a waiter whose units a
    /// change made void (see [`Follow::Lost`]), renumbered by every change
    /// made since; always true for GCRA.
    pub fn turn_reached(&self, st: &State<'_>, ticket: &Ticket) -> bool {
        if self.hardcap != super::Hardcap::Window {
            return true;
        }
        let head = unpack(st.head.load(SeqCst)).0;
        let since = self
            .window_rate(st)
            .and_then(|(generation, _)| self.counts(st, generation));
        let Some(counts) = since else {
            return true; // corrupt: reserve() reports it
        };
        let d = shift(st.ring.len() as u64);
        let changes = counts.serial.wrapping_sub(ticket.serial);
        reached(head, ticket.turn.wrapping_add(d.wrapping_mul(changes)))
    }

    /// `(units grantable now, ns until n units are)` for `WINDOW`: unit j
    /// from now is due when unit `head + j - 1 - max_n` leaves the window.
    /// `None` if corrupt or a change is being made.
    pub(super) fn peek_window(&self, st: &State<'_>, n: u64, now: i64) -> Option<(u64, i64)> {
        let len = st.ring.len() as u64;
        // Read again if a change went through meanwhile: it may have
        // rewritten the entries read (it rewrites them only after it moved
        // the generation, and while the head is frozen).
        for _ in 0..64 {
            let (generation, rate) = self.window_rate(st)?;
            let (k, prev) = unpack(st.head.load(SeqCst));
            let cap = rate.max_n;
            if len == 0 || cap > len || frozen_for(prev).is_some() {
                return None;
            }
            let per = i64::try_from(rate.per_ns).unwrap_or(i64::MAX);
            let time_of = |seq: u64| {
                let (_, t) = unpack(st.ring[(seq % len) as usize].load(SeqCst));
                time_at(st, seq, t)
            };
            let due = |j: u64| {
                time_of(k.wrapping_add(j - 1).wrapping_sub(cap))
                    .saturating_add(per)
                    .max(prev)
                    .max(now)
            };
            // Grant times never go backwards, so "due by now" holds for a
            // prefix.
            let (mut lo, mut hi) = (0, cap);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if due(mid) <= now {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            let found = (lo, due(n.clamp(1, cap)) - now);
            if split(st.tat.load(SeqCst)).0 == generation {
                return Some(found);
            }
        }
        None
    }

    /// Changes the rate at the time `now()` gives (read once the head is
    /// frozen). The caller holds the change lock.
    pub(super) fn set_rate_window(
        &self,
        st: &State<'_>,
        rate: Rate,
        now: &dyn Fn() -> i64,
    ) -> Result<(), Refused> {
        self.change_window(st, rate, now, u64::MAX)
    }

    /// [`set_rate_window`](Self::set_rate_window), making only the first
    /// `steps` steps (freeze, commit, new generation, then one per ring
    /// entry rewritten), as a maker that dies would: tests use it.
    pub(super) fn change_window(
        &self,
        st: &State<'_>,
        rate: Rate,
        now: &dyn Fn() -> i64,
        steps: u64,
    ) -> Result<(), Refused> {
        let len = st.ring.len() as u64;
        if rate.max_n > len {
            return Err(Refused::RingTooSmall(len));
        }
        if !self.recover_window(st) {
            return Err(Refused::Corrupt);
        }
        let (generation, old) = self.window_rate(st).ok_or(Refused::Corrupt)?;
        if old == rate {
            return Ok(());
        }
        let to = next_generation(generation);
        let (k, last) = self.freeze(st, to).ok_or(Refused::Corrupt)?;
        if steps < 2 {
            return Ok(());
        }
        let t_c = now();
        // The first unit reserved for after t_c (at most k: none).
        let time_of = |seq: u64| {
            let (tag, t) = unpack(st.ring[(seq % len) as usize].load(SeqCst));
            (tag == seq).then(|| time_at(st, seq, t))
        };
        let (mut lo, mut hi) = (k.wrapping_sub(len), k);
        while lo != hi {
            let mid = lo.wrapping_add(hi.wrapping_sub(lo) / 2);
            match time_of(mid) {
                Some(t) if t <= t_c => lo = mid.wrapping_add(1),
                Some(_) => hi = mid,
                None => {
                    self.thaw(st, k, last);
                    return Err(Refused::Corrupt);
                }
            }
        }
        let Some(counts) = self.counts(st, generation) else {
            self.thaw(st, k, last);
            return Err(Refused::Corrupt);
        };
        let rec = Record {
            kind: Kind::Rate,
            frame: Frame::first(rate),
            counts: Counts {
                serial: counts.serial + 1,
                ..counts
            },
            t_c,
            x_c: pack_cut(k, lo),
            units: u128::from(old.per_ns),
        };
        write_record(st.records, to, &rec);
        if steps < 3 {
            return Ok(());
        }
        st.tat.store(join(to, 0), SeqCst);
        if self.cut_window(st, k, &rec, steps - 3) {
            Ok(())
        } else {
            Err(Refused::Corrupt)
        }
    }

    /// Gives back the units of `ticket` (current: followed by the caller,
    /// who holds the change lock), if they are still in the ring and not
    /// due by the time `now()` gives once the head is frozen: the ring is
    /// cut before them, and every unit after them is void, its waiter
    /// reserving again one place up (see [`follow_window`]). False if it
    /// cannot (the units stay taken), or corrupt.
    ///
    /// [`follow_window`]: Self::follow_window
    pub(super) fn give_back_window(
        &self,
        st: &State<'_>,
        ticket: &Ticket,
        now: &dyn Fn() -> i64,
    ) -> bool {
        let len = st.ring.len() as u64;
        if len == 0 || !self.recover_window(st) {
            return false;
        }
        let Some((generation, rate)) = self.window_rate(st) else {
            return false;
        };
        if generation != ticket.generation {
            return false;
        }
        let to = next_generation(generation);
        let Some((k, last)) = self.freeze(st, to) else {
            return false;
        };
        let t = now();
        let a = ticket.first;
        let (tag, due) = unpack(st.ring[(a % len) as usize].load(SeqCst));
        let due = time_at(st, a, due);
        let units = ticket.seq.wrapping_sub(a).wrapping_add(1);
        // Still in the ring, and not due: no unit from a on has gone ahead.
        if !(1..=len).contains(&k.wrapping_sub(a)) || tag != a || due <= t || units > len {
            self.thaw(st, k, last);
            return false;
        }
        let Some(counts) = self.counts(st, generation) else {
            self.thaw(st, k, last);
            return false;
        };
        let rec = Record {
            kind: Kind::GiveBack,
            frame: Frame::first(rate),
            counts: Counts {
                serial: counts.serial + 1,
                ..counts
            },
            t_c: t,
            x_c: pack_cut(k, a),
            units: u128::from(units),
        };
        write_record(st.records, to, &rec);
        st.tat.store(join(to, 0), SeqCst);
        self.cut_window(st, k, &rec, u64::MAX)
    }

    /// Freezes the head for the change that makes generation `to`, after
    /// filling the entries of its last batch: the `(k, last)` it held;
    /// `None` if corrupt.
    fn freeze(&self, st: &State<'_>, to: u32) -> Option<(u64, i64)> {
        loop {
            let raw = st.head.load(SeqCst);
            let (k, last) = unpack(raw);
            if !fill_pending(st, raw)? {
                continue;
            }
            let frozen = pack(k, i64::MAX - i64::from(to));
            if st
                .head
                .compare_exchange(raw, frozen, SeqCst, SeqCst)
                .is_ok()
            {
                return Some((k, last));
            }
        }
    }

    /// Unfreezes a head frozen at `k` whose change was never committed.
    fn thaw(&self, st: &State<'_>, k: u64, last: i64) {
        self.thaw_at(st, k, k, last);
    }

    /// Unfreezes a head frozen at `k` to `(to, last)`.
    fn thaw_at(&self, st: &State<'_>, k: u64, to: u64, last: i64) {
        let raw = st.head.load(SeqCst);
        if unpack(raw).0 == k && frozen_for(unpack(raw).1).is_some() {
            let _ = st
                .head
                .compare_exchange(raw, pack(to, last), SeqCst, SeqCst);
        }
    }

    /// Finishes or undoes a change whose maker died with the head frozen.
    /// The caller holds the change lock. False if corrupt.
    pub fn recover_window(&self, st: &State<'_>) -> bool {
        let len = st.ring.len() as u64;
        let (k, last) = unpack(st.head.load(SeqCst));
        let Some(to) = frozen_for(last) else {
            return true;
        };
        if len == 0 {
            return false;
        }
        let mine = |rec: &Record| {
            matches!(rec.kind, Kind::Rate | Kind::GiveBack) && unpack_cut(rec.x_c).0 == k
        };
        match read_record(st.records, to) {
            Some(rec) if mine(&rec) => {
                st.tat.store(join(to, 0), SeqCst);
                self.cut_window(st, k, &rec, u64::MAX)
            }
            _ => {
                // Frozen, nothing committed: a start that was renumbering
                // the ring is finished; else the head as it was (its last
                // grant is in the ring, filled before the freeze).
                if let Some(seeding) = Seeding::read(st)
                    && seeding.from == k
                    && seeding.head != k
                {
                    return self.finish_start(st, &seeding, u64::MAX) == Some(true);
                }
                let (tag, t) = unpack(st.ring[(k.wrapping_sub(1) % len) as usize].load(SeqCst));
                if tag != k.wrapping_sub(1) {
                    return false;
                }
                self.thaw(st, k, time_at(st, tag, t));
                true
            }
        }
    }

    /// Step 4 of a change (see the module): rewrites the ring of a head
    /// frozen at `k` to hold the units granted by `rec.t_c`, shifted, and
    /// unfreezes the head after them. Can be done again after a partial
    /// run with the same result. Stops after rewriting `limit` entries (a
    /// test's dying maker). False if corrupt.
    fn cut_window(&self, st: &State<'_>, k: u64, rec: &Record, limit: u64) -> bool {
        let len = st.ring.len() as u64;
        let (_, rho) = unpack_cut(rec.x_c);
        // The period the units after the cut were reserved at. A new rate's
        // units kept were granted by t_c; units given back leave the queue
        // before them as it was.
        let (per_old, mut cap) = match rec.kind {
            Kind::Rate => (i64::try_from(rec.units).unwrap_or(i64::MAX), rec.t_c),
            _ => (
                i64::try_from(rec.frame.rate.per_ns).unwrap_or(i64::MAX),
                i64::MAX,
            ),
        };
        let d = shift(len);
        let pending = k.wrapping_sub(rho);
        if pending > len {
            return false;
        }
        // The times the run counts, seeds included, first (the first change
        // after a start; again, with the same result, after a maker died).
        write_seeds(st);
        // From the newest down, each bounded by those after it (grant times
        // never go backwards).
        let mut newest = None;
        for i in 1..=len {
            if i > limit {
                return true;
            }
            let r = rho.wrapping_sub(i);
            let entry = &st.ring[(r % len) as usize];
            let (tag, t) = unpack(entry.load(SeqCst));
            let laps = tag.wrapping_sub(r);
            cap = if tag == r.wrapping_add(d) || tag == r {
                cap.min(t) // rewritten already, or granted and still here
            } else if laps % len == 0 && tag.wrapping_sub(rho) < pending {
                // Overwritten by unit `tag`, `laps / len` laps later.
                let laps = i64::try_from(laps / len).unwrap_or(i64::MAX);
                cap.min(t.saturating_sub(per_old.saturating_mul(laps)))
            } else {
                return false;
            };
            newest.get_or_insert(cap);
            // Release: the head is thawed (SeqCst) after every store; nobody
            // reserves from the ring before.
            entry.store(pack(r.wrapping_add(d), cap), Release);
        }
        let raw = st.head.load(SeqCst);
        if unpack(raw).0 != k || frozen_for(unpack(raw).1).is_none() {
            return false;
        }
        // A restart counts every unit kept as granted (after a new rate they
        // were; after a give-back some may be waiting: the safe side).
        st.confirmed
            .store(rho.wrapping_add(d).wrapping_sub(1), SeqCst);
        let last = match rec.kind {
            Kind::Rate => rec.t_c,
            _ => newest.unwrap_or(i64::MIN),
        };
        let thawed = pack(rho.wrapping_add(d), last);
        st.head
            .compare_exchange(raw, thawed, SeqCst, SeqCst)
            .is_ok()
    }

    /// Opens the tank for a run starting at `t_start`; see
    /// [`Schedule::start`]. The caller holds the change lock.
    pub(super) fn start_window(&self, st: &State<'_>, t_start: i64, last_stop: Option<i64>) {
        self.start_window_steps(st, t_start, last_stop, u64::MAX);
    }

    /// [`start_window`](Self::start_window), rewriting at most `steps`
    /// entries and leaving the head frozen if there were more, as a starter
    /// that dies would: tests use it.
    pub(super) fn start_window_steps(
        &self,
        st: &State<'_>,
        t_start: i64,
        last_stop: Option<i64>,
        steps: u64,
    ) {
        if !self.recover_window(st) {
            return; // corrupt: reserve() reports it
        }
        self.start_ring(st, t_start, last_stop, steps);
    }

    /// Puts the ring in order for a run starting at `t_start`, with the head
    /// frozen meanwhile, as a change of rate freezes it: a late process of
    /// the old run that tries to reserve waits (`Busy`). A process that
    /// dies here leaves the head frozen with no change committed, which
    /// `recover_window` thaws, as it does for a change; or, once the start
    /// is recorded, finishes (`finish_start`). Returns at once if the ring
    /// is corrupt (reserve() reports it).
    ///
    /// The run then finds the empty tank of docs/design.md: as if the time
    /// before `t_start` held one grant every T, so unit j of the new run is
    /// due at t_start + j*T. Those grants are not written: the start
    /// records itself ([`Seeding`]), and every reader of an entry from
    /// before the run takes the later of its seed and the entry's own time
    /// (a real grant of the last run, which stopped at `last_stop`). So a
    /// start costs the same at any `max_n`, with two exceptions, which
    /// write entries:
    /// - a restart less than `ran * T` after the last start (whose run
    ///   granted `ran < len` units, at full speed): the entries from
    ///   before the last run get the times its seeds gave them, which the
    ///   new run keeps (see [`keep_old_seeds`](Self::keep_old_seeds));
    /// - reservations cut short by the stop (their waiters were told
    ///   "killed") are given back: the ring is rewritten to hold the last
    ///   `len` real grants, and the run goes on from a head `shift(len)`
    ///   further on ([`renumber`](Self::renumber)). A grant is real if its
    ///   waiter confirmed it, which it does only before `last_stop`.
    fn start_ring(&self, st: &State<'_>, t_start: i64, last_stop: Option<i64>, steps: u64) {
        let len = st.ring.len() as u64;
        let Some((generation, rate)) = self.window_rate(st) else {
            return;
        };
        if len == 0 || rate.max_n > len {
            return;
        }
        // Fills what claims before it left pending, then freezes.
        let Some((k, last)) = self.freeze(st, next_generation(generation)) else {
            return;
        };
        // The last real grant: the highest confirmed one (a waiter confirms
        // only before the stop), never past the head even if scribbled.
        let confirmed = st.confirmed.load(SeqCst);
        let newest = k.wrapping_sub(1);
        let (last_real, cap) = match last_stop {
            None => (k.wrapping_sub(len).wrapping_sub(1), i64::MIN),
            Some(stop) if newest.wrapping_sub(confirmed) > u64::MAX / 2 => (newest, stop),
            Some(stop) => (confirmed, stop),
        };
        // Reservations cut short: the ring is renumbered, `shift(len)` on.
        let head = match last_stop {
            Some(_) if last_real != newest => last_real.wrapping_add(1).wrapping_add(shift(len)),
            _ => k,
        };
        let seeding = Seeding {
            head,
            from: k,
            t_start,
            cap,
            rate,
        };
        if !self.keep_old_seeds(st, &seeding, last_real.wrapping_add(1), k) {
            self.thaw(st, k, last); // corrupt: left as found
            return;
        }
        // Recorded before the ring is renumbered: if this process dies
        // meanwhile, whoever finds the head frozen finishes the start.
        seeding.write(st);
        if self.finish_start(st, &seeding, steps) == Some(false) {
            st.seeds.max_n.store(0, SeqCst);
            self.thaw(st, k, last); // corrupt
        }
    }

    /// The rest of a start recorded as `seeding`, its head frozen at
    /// `seeding.from`: renumbers the ring if reservations were cut short,
    /// then counts every unit before the head as granted and thaws the head
    /// at the newest entry's time, as the run counts it. Can be done again
    /// after a partial run with the same result. `None` if it stopped after
    /// `steps` entries (a test's dying starter), `Some(false)` if corrupt.
    fn finish_start(&self, st: &State<'_>, seeding: &Seeding, steps: u64) -> Option<bool> {
        let len = st.ring.len() as u64;
        let (k, head) = (seeding.from, seeding.head);
        if head != k && !self.renumber(st, seeding, steps)? {
            return Some(false);
        }
        let newest = head.wrapping_sub(1);
        let (tag, t) = unpack(st.ring[(newest % len) as usize].load(SeqCst));
        if tag != newest {
            return Some(false);
        }
        st.confirmed.store(newest, SeqCst);
        self.thaw_at(st, k, head, seeding.time(newest, t));
        st.seeds.from.store(head, SeqCst); // nothing left to finish
        Some(true)
    }

    /// A start, before `new` is recorded: the entries from before the last
    /// run that it did not overwrite (it granted `ran < len` units, up to
    /// `ran_to`; a reservation cut short may have taken some of their
    /// places, the head frozen at `k`) keep the times its seeds gave them. Their
    /// new seeds are as late or later unless the run restarts less than
    /// `ran * T` after the last start: only then are those times written
    /// (`len - ran` entries). False if corrupt.
    fn keep_old_seeds(&self, st: &State<'_>, new: &Seeding, ran_to: u64, k: u64) -> bool {
        let len = st.ring.len() as u64;
        let Some(old) = Seeding::read(st) else {
            return true;
        };
        let ran = ran_to.wrapping_sub(old.head);
        if ran >= len || old.outrun_by(new, ran) {
            return true; // overwritten by the last run, or as late anyway
        }
        for back in 1..=len - ran {
            let seq = old.head.wrapping_sub(back);
            let entry = &st.ring[(seq % len) as usize];
            let (tag, t) = unpack(entry.load(SeqCst));
            match tag.wrapping_sub(seq) {
                0 => entry.store(pack(seq, old.time(seq, t)), Release),
                // A reservation cut short took its place (renumber bounds it).
                laps if laps % len == 0 && k.wrapping_sub(tag).wrapping_sub(1) < len => {}
                _ => return false,
            }
        }
        true
    }

    /// A start after a stop that cut reservations short (the head frozen at
    /// `new.from`): rewrites the whole ring to hold the last `len` real
    /// grants, up to `new.head - 1 - shift(len)`, each in its own slot under
    /// its sequence number plus `shift(len)` (so the new run goes on from
    /// `new.head`), each no earlier than its seed in the new run. Reservations
    /// cut short overwrote older real grants; each such grant is bounded by
    /// the time of the reservation `m*len` later in its slot, less `m*per`
    /// (a unit is never granted before the one `max_n` earlier plus per), by
    /// the stop, and by every grant after it (grant times never go
    /// backwards): bounds that only ever err late, the safe side. An entry
    /// found rewritten already (a redo, after a starter died) is taken as it
    /// is, so a redo gives the same ring. Stops after `steps` entries (a
    /// test's dying starter: `None`). False if corrupt.
    fn renumber(&self, st: &State<'_>, new: &Seeding, steps: u64) -> Option<bool> {
        let len = st.ring.len() as u64;
        let d = shift(len);
        let per = i64::try_from(new.rate.per_ns).unwrap_or(i64::MAX);
        let first = new.from.wrapping_sub(len);
        let last_real = new.head.wrapping_sub(1).wrapping_sub(d);
        let mut known = vec![i64::MIN; len as usize];
        let mut cap = new.cap;
        // The slot of the newest real grant, then one down a step (no
        // division a step).
        let mut idx = (last_real % len) as usize;
        for j in (0..len).rev() {
            let real = last_real.wrapping_sub(len - 1).wrapping_add(j);
            let (tag, t) = unpack(st.ring[idx].load(Acquire));
            idx = idx.checked_sub(1).unwrap_or(len as usize - 1);
            if tag == real.wrapping_add(d) {
                cap = cap.min(t); // rewritten already
                known[j as usize] = cap;
                continue;
            }
            // Every slot is read once: the ring holds the entries
            // k - len .. k - 1, or it is corrupt (nothing written yet).
            if tag.wrapping_sub(first) >= len {
                return Some(false);
            }
            // Laps are 0 or 1 but after a scribble: no division then.
            let laps = match tag.wrapping_sub(real) {
                d if d < len => 0,
                d if d - len < len => 1,
                d => d / len,
            };
            let bound =
                i64::try_from(laps).map_or(i64::MIN, |m| t.saturating_sub(per.saturating_mul(m)));
            cap = cap.min(bound);
            known[j as usize] = cap;
        }
        // The seeds go in with them: the i-th grant before t_start at
        // t_start - floor(i*T), for i = len down to 1. Plain stores: nobody
        // claims an entry while the head is frozen, and a claim made before
        // finds its entries filled (by the freeze) and leaves them.
        let mut ago = Ago::new(new.rate, len);
        let mut floor = i64::MIN;
        let mut idx = (last_real.wrapping_add(1) % len) as usize;
        for (j, &bound) in known.iter().enumerate() {
            if j as u64 >= steps {
                return None;
            }
            let seed = new.t_start.saturating_sub(ago.ns());
            floor = floor.max(seed).max(bound);
            let real = last_real.wrapping_sub(len - 1).wrapping_add(j as u64);
            st.ring[idx].store(pack(real.wrapping_add(d), floor), Release);
            idx += 1;
            if idx == len as usize {
                idx = 0;
            }
            ago.down();
        }
        Some(true)
    }
}

/// Fills the entries of the last claimed batch that are still empty (their
/// claimer may be slow, or dead). Below the head `(k, last)`, read as `raw`,
/// the ring holds units `k - len .. k - 1`; the empty ones (still tagged a
/// lap back) are a suffix, all of the last batch, granted at `last`.
/// `Some(false)` if the head moved on meanwhile (or froze: a change keeps
/// its number, not its time), `None` if the ring is corrupt.
pub(super) fn fill_pending(st: &State<'_>, raw: u128) -> Option<bool> {
    let n = st.ring.len() as u64;
    let (k, last) = unpack(raw);
    let moved_or_corrupt = || (st.head.load(SeqCst) != raw).then_some(false);
    let mut j = k;
    while k.wrapping_sub(j) < n {
        let seq = j.wrapping_sub(1);
        let (tag, _) = unpack(st.ring[(seq % n) as usize].load(SeqCst));
        if tag == seq {
            break;
        }
        if tag != seq.wrapping_sub(n) {
            return moved_or_corrupt();
        }
        j = seq;
    }
    while j != k {
        let entry = &st.ring[(j % n) as usize];
        let raw = entry.load(SeqCst);
        let (tag, _) = unpack(raw);
        if tag == j.wrapping_sub(n) {
            let _ = entry.compare_exchange(raw, pack(j, last), SeqCst, SeqCst);
        } else if tag != j {
            return moved_or_corrupt();
        }
        j = j.wrapping_add(1);
    }
    Some(true)
}

/// The start of a run as its [`Seeds`](crate::store::shm::layout::Seeds)
/// record it: the time an entry before the run counts as granted at.
#[derive(Clone, Copy)]
struct Seeding {
    head: u64,
    from: u64,
    t_start: i64,
    cap: i64,
    rate: Rate,
}

impl Seeding {
    /// The record, if a start left one.
    fn read(st: &State<'_>) -> Option<Self> {
        let s = st.seeds;
        let max_n = s.max_n.load(SeqCst);
        let seeding = Self {
            head: s.head.load(SeqCst),
            from: s.from.load(SeqCst),
            t_start: s.t_start.load(SeqCst),
            cap: s.cap.load(SeqCst),
            rate: Rate::new(max_n, s.per_ns.load(SeqCst))?,
        };
        Some(seeding)
    }

    /// Records a run from `head` at `t_start`, at `rate`, whose entries
    /// before it count their own times up to `cap`. Disabled while written:
    /// a process that dies halfway leaves no record, not half of one.
    fn write(&self, st: &State<'_>) {
        let s = st.seeds;
        s.max_n.store(0, SeqCst);
        s.head.store(self.head, SeqCst);
        s.from.store(self.from, SeqCst);
        s.t_start.store(self.t_start, SeqCst);
        s.cap.store(self.cap, SeqCst);
        s.per_ns.store(self.rate.per_ns, SeqCst);
        s.max_n.store(self.rate.max_n, SeqCst);
    }

    /// Whether the seeds of `new`, a start after a run that granted `ran`
    /// units from this one's, are as late as these for every entry before
    /// this run, so that these need not be kept. Unit `a` before this start
    /// is `floor((a + ran)*T)` before the new one, at most `ceil(ran*T)`
    /// further back than before this one (same rate: a change of rate ends
    /// seeds).
    fn outrun_by(&self, new: &Seeding, ran: u64) -> bool {
        let rate = self.rate;
        let further = (u128::from(ran) * u128::from(rate.per_ns)).div_ceil(u128::from(rate.max_n));
        let between = u128::try_from(new.t_start.saturating_sub(self.t_start)).unwrap_or(0);
        rate == new.rate && between >= further
    }

    /// Whether entry `seq` is one of the `len` before the run.
    fn covers(&self, seq: u64, len: u64) -> bool {
        (1..=len).contains(&self.head.wrapping_sub(seq))
    }

    /// When entry `seq`, holding time `t`, counts as granted: as if one unit
    /// had been granted every T before the start (the empty tank of
    /// docs/design.md), and never before its own time up to `cap`.
    fn time(&self, seq: u64, t: i64) -> i64 {
        let back = u128::from(self.head.wrapping_sub(seq)) * u128::from(self.rate.per_ns);
        let ago = i64::try_from(back / u128::from(self.rate.max_n)).unwrap_or(i64::MAX);
        self.at(ago, t)
    }

    /// The time of an entry holding `t` whose seed is `ago` ns before the
    /// start.
    fn at(&self, ago: i64, t: i64) -> i64 {
        self.t_start.saturating_sub(ago).max(t.min(self.cap))
    }
}

/// Writes the run's seeds into the entries they cover and ends them, as a
/// start that wrote every entry would have left the ring. Writing an entry
/// twice gives the same time. A change rewrites the ring from these times
/// (the head is frozen, under the change lock); tests compare a ring read
/// through seeds with one written.
pub(super) fn write_seeds(st: &State<'_>) {
    let len = st.ring.len() as u64;
    let Some(seeding) = Seeding::read(st) else {
        return;
    };
    let mut ago = Ago::new(seeding.rate, 1);
    for back in 1..=len {
        let seq = seeding.head.wrapping_sub(back);
        let entry = &st.ring[(seq % len) as usize];
        let (tag, t) = unpack(entry.load(Acquire));
        if tag == seq {
            entry.store(pack(seq, seeding.at(ago.ns(), t)), Release);
        }
        ago.up();
    }
    st.seeds.max_n.store(0, SeqCst);
}

/// `floor(a * T)` in whole nanoseconds for `a` = a0, then one more or one
/// less a step, kept as quotient and remainder: no division a step.
struct Ago {
    q: u128,
    r: u128,
    step_q: u128,
    step_r: u128,
    max_n: u128,
}

impl Ago {
    fn new(rate: Rate, a0: u64) -> Self {
        let (max_n, per) = (u128::from(rate.max_n), u128::from(rate.per_ns));
        let x = u128::from(a0) * per;
        Self {
            q: x / max_n,
            r: x % max_n,
            step_q: per / max_n,
            step_r: per % max_n,
            max_n,
        }
    }

    /// `floor(a * T)`, saturated.
    fn ns(&self) -> i64 {
        i64::try_from(self.q).unwrap_or(i64::MAX)
    }

    /// `a + 1`.
    fn up(&mut self) {
        self.r += self.step_r;
        self.q = self.q.saturating_add(self.step_q);
        if self.r >= self.max_n {
            self.r -= self.max_n;
            self.q = self.q.saturating_add(1);
        }
    }

    /// `a - 1`; `a` must be at least 1.
    fn down(&mut self) {
        if self.r >= self.step_r {
            self.r -= self.step_r;
            self.q = self.q.wrapping_sub(self.step_q);
        } else {
            self.r = self.r + self.max_n - self.step_r;
            self.q = self.q.wrapping_sub(self.step_q + 1);
        }
    }
}

/// When the unit of entry `seq`, holding time `t`, counts as granted: its
/// time, or for an entry from before the run, what the run's seeds say.
/// Every reader of a time in the ring reads it through here.
#[inline(always)]
fn time_at(st: &State<'_>, seq: u64, t: i64) -> i64 {
    let back = st.seeds.head.load(SeqCst).wrapping_sub(seq);
    if back == 0 || back > st.ring.len() as u64 {
        return t; // a unit of this run (the common case)
    }
    seeded_time(st, seq, t)
}

#[inline(never)]
fn seeded_time(st: &State<'_>, seq: u64, t: i64) -> i64 {
    match Seeding::read(st) {
        Some(seeding) if seeding.covers(seq, st.ring.len() as u64) => seeding.time(seq, t),
        _ => t,
    }
}
