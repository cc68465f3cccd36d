//! Unit tests of weighted fuel, peeking, rate changes and give-backs, with
//! explicit times: no clock, no sleeping.
//!
//! Every expected grant time is computed here from docs/design.md and the module
//! doc of [`super::gcra`], independently of the code under test, in exact
//! integer arithmetic (`u128`):
//! - unit k of a run started at `t0` is due at `t0 + ceil(k * per / max_n)`;
//! - times are exact in "scaled" units of `1/max_n` ns (unit k at
//!   `t0*max_n + k*per`), grants are whole ns rounded up;
//! - a rate change at `t_c` keeps virtual time (periods elapsed): a unit due
//!   by `t_c` stays where it is; a unit due after `t_c` keeps its place in
//!   virtual time, so its offset from `t_c` is respaced to the new `T`
//!   (`t_c + d * T_new / T_old`, `d` its exact offset). On the new scaled
//!   grid the unit's place is rounded up and `t_c`'s rounded down, so its
//!   grant is that exact time rounded up, or at most 1 ns later (see
//!   [`Frame`]: the frames of the module doc of `gcra`, as plain numbers);
//! - a rate change with nothing queued keeps the tank's content and its
//!   progress towards the next unit: the time accrued since its first unit
//!   (at most what the old tank holds), respaced to the new `T` rounded
//!   down, at most what the new tank holds;
//! - giving back `n` units moves every later unit `n*T` earlier.
//!
//! Bounds are checked in exact (scaled) time, as DESIGN's timing model
//! states them; grant times are those rounded up to whole ns.
//!
//! Models used:
//! - a waiter: `reserve_n(n, now, i64::MAX)`;
//! - `has_fuel`: `reserve_n(n, now, now)` (takes only what is there now);
//! - a waiter with a timeout: `reserve_n(n, now, deadline)`.

use super::memory::Memory;
use super::tests::Rng;
use super::*;
use crate::store::shm::layout::{GIVE_BACKS, RECORDS};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// A start time that is a multiple of nothing in particular.
const T0: i64 = 7_000_000_000_123;

const GCRA: [Hardcap; 3] = [Hardcap::Limit, Hardcap::One, Hardcap::None];

/// `(max_n, per_ns)`: a rate as plain numbers, for the expected values.
type R = (u64, u64);

/// `ceil(k * per_ns / max_n)`: the offset of unit k from the start.
fn slot((max_n, per_ns): R, k: u64) -> i64 {
    let num = u128::from(k) * u128::from(per_ns);
    i64::try_from(num.div_ceil(u128::from(max_n))).unwrap()
}

/// `floor(d_ns * max_n / per_ns)`: whole units of `T` in `d_ns`.
fn units_in((max_n, per_ns): R, d_ns: i64) -> u64 {
    let d = u128::try_from(d_ns).unwrap();
    u64::try_from(d * u128::from(max_n) / u128::from(per_ns)).unwrap()
}

/// `t_ns` scaled by `max_n` (units of `1/max_n` ns).
fn scaled((max_n, _): R, t_ns: i64) -> u128 {
    u128::try_from(t_ns).unwrap() * u128::from(max_n)
}

/// The grant (whole ns, rounded up) of an exact scaled time.
fn grant_of((max_n, _): R, x: u128) -> i64 {
    i64::try_from(x.div_ceil(u128::from(max_n))).unwrap()
}

/// Where a unit at exact scaled time `x` (at rate `old`, a throttle's first
/// rate: scaled time `t * max_n`) is after a change to `new` at `tc`, in
/// `new`'s scaled units counted from `tc` (`scaled(new, tc)` plus its
/// distance from `tc`): unchanged if due by `tc` (kept at its grant); else
/// its place on the new grid (`x * per_new / per_old`, rounded up) less
/// `tc`'s (rounded down).
fn moved(old: R, new: R, tc: i64, x: u128) -> u128 {
    let tc_old = scaled(old, tc);
    if x <= tc_old {
        scaled(new, grant_of(old, x))
    } else {
        let (po, pn) = (u128::from(old.1), u128::from(new.1));
        scaled(new, tc) + (x * pn).div_ceil(po) - tc_old * pn / po
    }
}

/// The grant of a unit at exact scaled time `x` after a change at `tc`
/// (see [`moved`]).
fn moved_grant(old: R, new: R, tc: i64, x: u128) -> i64 {
    grant_of(new, moved(old, new, tc, x))
}

/// The grant of a unit at exact scaled time `x` after a change at `tc` in
/// exact time, from DESIGN terms: `tc + ceil(offset_ns * T_new / T_old)`.
/// [`moved_grant`] is this, or 1 ns later.
fn exact_moved_grant(old: R, new: R, tc: i64, x: u128) -> i64 {
    let tc_old = scaled(old, tc);
    if x <= tc_old {
        return grant_of(old, x);
    }
    // offset_ns = (x - tc_old)/max_old; T_new/T_old = per_new*max_old /
    // (max_new*per_old).
    let num = (x - tc_old) * u128::from(new.1);
    let den = u128::from(old.1) * u128::from(new.0);
    tc + i64::try_from(num.div_ceil(den)).unwrap()
}

/// A frame of the module doc of `gcra`, as plain numbers: scaled time
/// `t * max_n + off`, one period `T` is `per_ns` scaled units.
#[derive(Clone, Copy, Debug)]
struct Frame {
    r: R,
    off: i128,
}

impl Frame {
    /// A throttle's first frame.
    fn first(r: R) -> Self {
        Self { r, off: 0 }
    }

    fn at(&self, t: i64) -> i128 {
        i128::from(t) * i128::from(self.r.0) + self.off
    }

    /// The frame of `new` from `tc` on: virtual time goes on where it was
    /// (`tc`'s place rescaled, rounded down).
    fn changed(&self, new: R, tc: i64) -> Self {
        let x = self.at(tc) * i128::from(new.1) / i128::from(self.r.1);
        Self {
            r: new,
            off: x - i128::from(tc) * i128::from(new.0),
        }
    }

    /// A place `x` of the frame of `from` in this one: rescaled, rounded up.
    fn place(&self, from: R, x: u128) -> u128 {
        (x * u128::from(self.r.1)).div_ceil(u128::from(from.1))
    }

    /// The grant of place `x`: whole ns, rounded up.
    fn grant(&self, x: u128) -> i64 {
        let d = u128::try_from(i128::try_from(x).unwrap() - self.off).unwrap();
        i64::try_from(d.div_ceil(u128::from(self.r.0))).unwrap()
    }
}

fn rate((max_n, per_ns): R) -> Rate {
    Rate::new(max_n, per_ns).unwrap()
}

/// Random arrivals: the gap before the next arrival.
fn gap(rng: &mut Rng, per: u64) -> i64 {
    let t = (per / 8).max(1);
    let g = match rng.below(10) {
        0..=3 => 0,
        4..=6 => rng.below(t),
        7..=8 => rng.below(per),
        _ => per + rng.below(2 * per),
    };
    i64::try_from(g).unwrap()
}

/// The latest grant a random caller accepts: a waiter, has_fuel, or a
/// waiter with a timeout of up to `2 per`.
fn latest(rng: &mut Rng, now: i64, per: u64) -> i64 {
    match rng.below(20) {
        0..=9 => i64::MAX,
        10..=16 => now,
        _ => now + i64::try_from(rng.below(2 * per)).unwrap(),
    }
}

/// Every word of a state, to check that something changed nothing.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    tat: u128,
    tags: Vec<u64>,
    max_n: Vec<u64>,
    per_ns: Vec<u64>,
    base_lo: Vec<u64>,
    base_hi: Vec<u64>,
    serial: Vec<u64>,
    give_backs: Vec<u64>,
    shift_lo: Vec<u64>,
    shift_hi: Vec<u64>,
    t_c: Vec<i64>,
    x_c: Vec<u128>,
    units: Vec<u128>,
    gb_tags: Vec<u64>,
    gb_slot: Vec<u128>,
    gb_per: Vec<u64>,
    gb_shift: Vec<u128>,
    gb_units: Vec<u64>,
    head: u128,
    ring: Vec<u128>,
    confirmed: u64,
    /// `Seeds`: head, t_start, cap, max_n, per_ns.
    seeds: (u64, i64, i64, u64, u64),
}

/// A schedule and its own state (its words read as `fx.tat`, `fx.head`...).
struct Fx {
    sched: Schedule,
    memory: Memory,
}

impl std::ops::Deref for Fx {
    type Target = Memory;

    fn deref(&self) -> &Memory {
        &self.memory
    }
}

impl Fx {
    /// Made and initialised, not started.
    fn new(r: R, hardcap: Hardcap) -> Self {
        let sched = Schedule::new(rate(r), hardcap);
        let memory = Memory::for_schedule(&sched);
        Self { sched, memory }
    }

    /// Made, initialised and started (first run) at `t0`.
    fn started(r: R, hardcap: Hardcap, t0: i64) -> Self {
        let fx = Self::new(r, hardcap);
        fx.sched.start(&fx.st(), t0, None);
        fx
    }

    fn hc(&self) -> Hardcap {
        self.sched.hardcap()
    }

    /// An independent copy of the whole state (to try things on).
    fn fork(&self) -> Self {
        let copy = Self::new(
            (self.sched.rate().max_n(), self.sched.rate().per_ns()),
            self.hc(),
        );
        let s = self.snapshot();
        copy.tat.store(s.tat, Ordering::SeqCst);
        for i in 0..RECORDS {
            copy.records.tags[i].store(s.tags[i], Ordering::SeqCst);
            copy.records.max_n[i].store(s.max_n[i], Ordering::SeqCst);
            copy.records.per_ns[i].store(s.per_ns[i], Ordering::SeqCst);
            copy.records.base_lo[i].store(s.base_lo[i], Ordering::SeqCst);
            copy.records.base_hi[i].store(s.base_hi[i], Ordering::SeqCst);
            copy.records.serial[i].store(s.serial[i], Ordering::SeqCst);
            copy.records.give_backs[i].store(s.give_backs[i], Ordering::SeqCst);
            copy.records.shift_lo[i].store(s.shift_lo[i], Ordering::SeqCst);
            copy.records.shift_hi[i].store(s.shift_hi[i], Ordering::SeqCst);
            copy.records.t_c[i].store(s.t_c[i], Ordering::SeqCst);
            copy.records.x_c[i].store(s.x_c[i], Ordering::SeqCst);
            copy.records.units[i].store(s.units[i], Ordering::SeqCst);
        }
        let gb = &copy.give_backs;
        for i in 0..GIVE_BACKS {
            gb.tags[i].store(s.gb_tags[i], Ordering::SeqCst);
            gb.slot[i].store(s.gb_slot[i], Ordering::SeqCst);
            gb.per_ns[i].store(s.gb_per[i], Ordering::SeqCst);
            gb.shift[i].store(s.gb_shift[i], Ordering::SeqCst);
            gb.units[i].store(s.gb_units[i], Ordering::SeqCst);
        }
        copy.head.store(s.head, Ordering::SeqCst);
        for (e, v) in copy.ring.iter().zip(&s.ring) {
            e.store(*v, Ordering::SeqCst);
        }
        copy.confirmed.store(s.confirmed, Ordering::SeqCst);
        let (head, t_start, cap, max_n, per_ns) = s.seeds;
        copy.seeds.head.store(head, Ordering::SeqCst);
        copy.seeds.t_start.store(t_start, Ordering::SeqCst);
        copy.seeds.cap.store(cap, Ordering::SeqCst);
        copy.seeds.max_n.store(max_n, Ordering::SeqCst);
        copy.seeds.per_ns.store(per_ns, Ordering::SeqCst);
        assert_eq!(copy.snapshot(), s);
        copy
    }

    fn word(&self) -> u128 {
        self.tat.load(Ordering::SeqCst)
    }

    fn snapshot(&self) -> Snapshot {
        let r = &self.records;
        let gb = &self.give_backs;
        Snapshot {
            tat: self.word(),
            tags: r.tags.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            max_n: r.max_n.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            per_ns: r.per_ns.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            base_lo: r.base_lo.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            base_hi: r.base_hi.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            serial: r.serial.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            give_backs: r
                .give_backs
                .iter()
                .map(|a| a.load(Ordering::SeqCst))
                .collect(),
            shift_lo: r
                .shift_lo
                .iter()
                .map(|a| a.load(Ordering::SeqCst))
                .collect(),
            shift_hi: r
                .shift_hi
                .iter()
                .map(|a| a.load(Ordering::SeqCst))
                .collect(),
            t_c: r.t_c.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            x_c: r.x_c.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            units: r.units.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            gb_tags: gb.tags.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            gb_slot: gb.slot.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            gb_per: gb.per_ns.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            gb_shift: gb.shift.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            gb_units: gb.units.iter().map(|a| a.load(Ordering::SeqCst)).collect(),
            head: self.head.load(Ordering::SeqCst),
            ring: self.ring.iter().map(|e| e.load(Ordering::SeqCst)).collect(),
            confirmed: self.confirmed.load(Ordering::SeqCst),
            seeds: (
                self.seeds.head.load(Ordering::SeqCst),
                self.seeds.t_start.load(Ordering::SeqCst),
                self.seeds.cap.load(Ordering::SeqCst),
                self.seeds.max_n.load(Ordering::SeqCst),
                self.seeds.per_ns.load(Ordering::SeqCst),
            ),
        }
    }

    fn reserve_n(&self, n: u64, now: i64, latest: i64) -> (Reservation, Ticket) {
        self.sched.reserve_n(&self.st(), n, now, latest)
    }

    /// has_fuel for `n` units.
    fn take(&self, n: u64, now: i64) -> Reservation {
        self.reserve_n(n, now, now).0
    }

    /// A waiter for `n` units without timeout: must be granted.
    fn wait(&self, n: u64, now: i64) -> (i64, Ticket) {
        match self.reserve_n(n, now, i64::MAX) {
            (Reservation::Granted(g), t) => {
                assert_eq!(t.grant(), g, "{:?}: ticket and grant differ", self.hc());
                (g, t)
            }
            (other, _) => panic!("{:?}: waiter for {n} at {now} got {other:?}", self.hc()),
        }
    }

    /// Takes one unit at a time with has_fuel at `now` until the tank is
    /// empty: (units taken, each asserted granted at `now`; the `Later`).
    fn drain(&self, now: i64) -> (u64, i64) {
        let mut count = 0;
        loop {
            match self.take(1, now) {
                Reservation::Granted(g) => {
                    assert_eq!(g, now, "{:?}: has_fuel granted another time", self.hc());
                    count += 1;
                    assert!(count < 1_000_000, "{:?}: tank never empties", self.hc());
                }
                Reservation::Later(t) => return (count, t),
                Reservation::Corrupt | Reservation::Busy => panic!("{:?}: Corrupt", self.hc()),
            }
        }
    }

    fn peek(&self, n: u64, now: i64) -> (u64, i64) {
        self.sched
            .peek(&self.st(), n, now)
            .unwrap_or_else(|| panic!("{:?}: peek says corrupt", self.hc()))
    }

    fn set_rate(&self, r: R, now: i64) {
        assert_eq!(
            self.sched.set_rate(&self.st(), rate(r), &|| now),
            Ok(()),
            "{:?}: set_rate",
            self.hc()
        );
    }

    /// Follows `ticket`; its grant (asserting it is not lost).
    fn follow(&self, ticket: &mut Ticket) -> i64 {
        match self.sched.follow(&self.st(), ticket) {
            Some(Follow::At(g)) => {
                assert_eq!(g, ticket.grant(), "{:?}", self.hc());
                g
            }
            other => panic!("{:?}: follow gave {other:?}", self.hc()),
        }
    }

    fn give_back(&self, ticket: &Ticket) -> bool {
        self.sched.give_back(&self.st(), ticket, &|| T0)
    }

    /// The place of a (followed) ticket's last unit in the frame in force.
    fn place(&self, ticket: &Ticket) -> u128 {
        self.sched.place_in_force(&self.st(), ticket).unwrap().0
    }

    fn current_rate(&self) -> R {
        let r = self.sched.current_rate(&self.st()).unwrap();
        (r.max_n(), r.per_ns())
    }
}

/// `reserve_n`, `capacity`: several units granted at once.
mod weighted {
    use super::*;

    /// The rates the exact checks run with (odd ones included).
    const RATES: [R; 6] = [
        (10, SEC),
        (3, SEC),
        (7, MS),
        (5, 17),
        (64, 1000),
        (1000, SEC),
    ];

    /// `capacity`: LIMIT max_n, ONE 1, NONE unbounded, WINDOW max_n (it
    /// claims batches since 44d5194); for GCRA it follows the current rate.
    #[test]
    fn capacity_per_hardcap() {
        for (hc, want) in [
            (Hardcap::Limit, Some(7)),
            (Hardcap::One, Some(1)),
            (Hardcap::None, None),
            (Hardcap::Window, Some(7)),
        ] {
            let fx = Fx::started((7, SEC), hc, T0);
            assert_eq!(fx.sched.capacity(&fx.st()), Some(want), "{hc:?}");
        }
        let fx = Fx::started((7, SEC), Hardcap::Limit, T0);
        fx.set_rate((50, SEC), T0 + 1);
        assert_eq!(fx.sched.capacity(&fx.st()), Some(Some(50)));
    }

    /// A full LIMIT tank gives `n` units at once at `now` as long as `n` is
    /// at most what is left; the next reservation of `m` units is due
    /// exactly when `m` units have accrued (`now + ceil((m - left) T)`).
    #[test]
    fn full_tank_gives_n_at_once_then_waits_for_accrual() {
        for r in RATES {
            let max_n = r.0;
            // Splits of the full tank, then what the next one asks for.
            let splits: Vec<(Vec<u64>, u64)> = vec![
                (vec![max_n], 1),
                (vec![max_n], max_n),
                (vec![1, max_n - 1], max_n.div_ceil(2)),
                (vec![max_n / 2, max_n / 3], max_n),
                (vec![max_n.div_ceil(3); 2], max_n / 2 + 1),
            ];
            for (takes, m) in splits {
                let what = format!("{r:?} takes {takes:?} then {m}");
                let fx = Fx::started(r, Hardcap::Limit, T0);
                // Full at T0 + (max_n - 1) T; a little later it is still max_n.
                let t = T0 + slot(r, max_n - 1) + 12_345;
                assert_eq!(fx.peek(1, t).0, max_n, "{what}");
                let mut left = max_n;
                for &n in takes.iter().filter(|&&n| n > 0) {
                    assert_eq!(fx.take(n, t), Reservation::Granted(t), "{what}");
                    left -= n;
                    assert_eq!(fx.peek(1, t).0, left, "{what}");
                }
                if m > left {
                    let due = t + slot(r, m - left);
                    let before = fx.word();
                    assert_eq!(fx.take(m, t), Reservation::Later(due), "{what}");
                    assert_eq!(fx.reserve_n(m, t, due - 1).0, Reservation::Later(due));
                    assert_eq!(fx.word(), before, "{what}: refused call changed tat");
                    assert_eq!(fx.wait(m, t).0, due, "{what}");
                    // Then one unit every T from there.
                    assert_eq!(fx.wait(1, t).0, t + slot(r, m - left + 1), "{what}");
                } else {
                    assert_eq!(fx.take(m, t), Reservation::Granted(t), "{what}");
                }
            }
        }
    }

    /// Saturated demand of `n` units at a time (each reserved at the grant
    /// of the previous one): reservation j is granted when unit
    /// `(j+1) n - 1` is due, `t0 + ceil(((j+1) n - 1) T)`: exactly `n T`
    /// apart, without drift. ONE with `n = 1`.
    #[test]
    fn saturated_n_at_a_time_is_exactly_n_t_apart() {
        for r in RATES {
            for hc in GCRA {
                let ns: Vec<u64> = match hc {
                    Hardcap::One => vec![1],
                    _ => vec![1, 2, r.0.div_ceil(2), r.0],
                };
                for n in ns {
                    let fx = Fx::started(r, hc, T0);
                    let mut now = T0;
                    for j in 0..300 {
                        let (g, _) = fx.wait(n, now);
                        let want = T0 + slot(r, (j + 1) * n - 1);
                        assert_eq!(g, want, "{hc:?} {r:?} n={n}: reservation {j}");
                        now = g;
                    }
                }
            }
        }
        // Many waiters for n units arriving at once.
        for hc in [Hardcap::Limit, Hardcap::None] {
            let fx = Fx::started((3, SEC), hc, T0);
            for j in 0..20 {
                assert_eq!(fx.wait(2, T0).0, T0 + slot((3, SEC), 2 * j + 1), "{hc:?}");
            }
        }
    }

    /// ONE: `reserve_n(1)` is `reserve`.
    #[test]
    fn one_with_single_units_is_reserve() {
        let a = Fx::started((3, SEC), Hardcap::One, T0);
        let b = Fx::started((3, SEC), Hardcap::One, T0);
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let mut now = T0;
        for _ in 0..500 {
            now += gap(&mut rng, SEC);
            let l = latest(&mut rng, now, SEC);
            assert_eq!(a.reserve_n(1, now, l).0, b.sched.reserve(&b.st(), now, l));
            assert_eq!(a.word(), b.word());
        }
    }

    /// A reservation that would be granted after `latest` reserves nothing:
    /// `Later(due)` with the grant it would have had, and the `tat` word is
    /// untouched (LIMIT, ONE, NONE; several n).
    #[test]
    fn reservation_due_after_latest_reserves_nothing() {
        for hc in GCRA {
            let r = (7, MS);
            let fx = Fx::started(r, hc, T0);
            assert_eq!(fx.take(1, T0), Reservation::Granted(T0), "{hc:?}");
            // Units 1..=n, the last due at t0 + ceil(n T).
            let n = if hc == Hardcap::One { 1 } else { 3 };
            let due = T0 + slot(r, n);
            for (now, latest) in [(T0, T0), (T0, due - 1), (due - 1, due - 1)] {
                let before = fx.word();
                let got = fx.reserve_n(n, now, latest).0;
                assert_eq!(got, Reservation::Later(due), "{hc:?}");
                assert_eq!(fx.word(), before, "{hc:?}: refused call changed tat");
            }
            assert_eq!(fx.reserve_n(n, T0, due).0, Reservation::Granted(due));
            let due2 = T0 + slot(r, 2 * n);
            let before = fx.word();
            assert_eq!(fx.take(n, due), Reservation::Later(due2), "{hc:?}");
            assert_eq!(fx.word(), before, "{hc:?}");
            assert_eq!(fx.reserve_n(n, due, due2).0, Reservation::Granted(due2));
        }
    }

    /// Token-bucket model of LIMIT, independent of the code, in exact time
    /// (DESIGN's timing model: unit k falls at `t0 + k*per/max_n` exactly,
    /// grants are that rounded up to whole ns): time in scaled units
    /// (`ns * max_n`), the level in the same units (one unit of fuel is
    /// `per`), accruing 1 per scaled unit, capacity `max_n * per`.
    struct Bucket {
        max: u128,
        per: u128,
        cap: u128,
        /// The exact time of the last reservation.
        x: u128,
        /// The level at `x` (after that reservation).
        level: u128,
    }

    impl Bucket {
        fn new((max_n, per_ns): R, t0: i64) -> Self {
            let per = u128::from(per_ns);
            Self {
                max: u128::from(max_n),
                per,
                cap: u128::from(max_n) * per,
                x: scaled((max_n, per_ns), t0),
                level: per, // the first unit is there at the start instant
            }
        }

        fn level_at(&self, x: u128) -> u128 {
            (self.level + (x - self.x)).min(self.cap)
        }

        fn now_s(&self, now: i64) -> u128 {
            u128::try_from(now).unwrap() * self.max
        }

        /// Whole units in the tank at `now` (none before the last
        /// reservation: the fuel up to it is reserved).
        fn units(&self, now: i64) -> u64 {
            let now_s = self.now_s(now);
            if now_s < self.x {
                0
            } else {
                u64::try_from(self.level_at(now_s) / self.per).unwrap()
            }
        }

        /// `(grant, exact time, level after)` of `n` units asked at `now`.
        fn due(&self, n: u64, now: i64) -> (i64, u128, u128) {
            let need = u128::from(n) * self.per;
            let x0 = self.now_s(now).max(self.x);
            let l0 = self.level_at(x0);
            let (x, after) = if l0 >= need {
                (x0, l0 - need)
            } else {
                // The level grows linearly (below the cap) until it is `need`.
                (self.x + (need - self.level), 0)
            };
            let grant = i64::try_from(x.div_ceil(self.max)).unwrap().max(now);
            (grant, x, after)
        }

        /// Ok((grant, exact time)) or Err(later).
        fn call(&mut self, n: u64, now: i64, latest: i64) -> Result<(i64, u128), i64> {
            let (g, x, after) = self.due(n, now);
            if g > latest {
                return Err(g);
            }
            self.x = x;
            self.level = after;
            Ok((g, x))
        }
    }

    /// Random arrivals asking for random `n` in `1..=max_n` (waiters,
    /// has_fuel, timeouts): every outcome equals the weighted token bucket
    /// (in exact time), peek agrees with it before each call, refused calls
    /// change nothing, and over every pair of reservations the units in
    /// `[x_i, x_j]` (exact times) never exceed `max_n + floor((x_j - x_i)/T)`
    /// (and by `x` never exceed `1 + floor((x - t0)/T)`).
    #[test]
    fn random_weighted_arrivals_follow_the_token_bucket() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for r in [
            (3, SEC),
            (7, MS),
            (2, 3),
            (5, 17),
            (64, 1000),
            (10, 999_999_937),
        ] {
            for round in 0..3 {
                let what = format!("{r:?} round {round}");
                let fx = Fx::started(r, Hardcap::Limit, T0);
                let mut model = Bucket::new(r, T0);
                let mut now = T0;
                let mut grants: Vec<(u128, u64)> = Vec::new();
                for i in 0..800 {
                    now += gap(&mut rng, r.1);
                    let n = rng.one_to(r.0);
                    let l = latest(&mut rng, now, r.1);
                    let (due, _, _) = model.due(n, now);
                    assert_eq!(
                        fx.peek(n, now),
                        (model.units(now), due - now),
                        "{what}: peek {n} before call {i} at t0+{}",
                        now - T0
                    );
                    let before = fx.snapshot();
                    let got = fx.reserve_n(n, now, l).0;
                    match model.call(n, now, l) {
                        Ok((g, x)) => {
                            assert_eq!(got, Reservation::Granted(g), "{what}: call {i}");
                            grants.push((x, n));
                        }
                        Err(t) => {
                            assert_eq!(got, Reservation::Later(t), "{what}: call {i}");
                            assert_eq!(fx.snapshot(), before, "{what}: refused call");
                        }
                    }
                }
                let (t0_s, per) = (scaled(r, T0), u128::from(r.1));
                let mut by_x = 0;
                for (i, &(xi, ni)) in grants.iter().enumerate() {
                    by_x += u128::from(ni);
                    assert!(by_x <= 1 + (xi - t0_s) / per, "{what}: from start");
                    let mut sum = 0;
                    for &(xj, nj) in &grants[i..] {
                        sum += u128::from(nj);
                        assert!(
                            sum <= u128::from(r.0) + (xj - xi) / per,
                            "{what}: {sum} units in [{xi}, {xj}] (scaled)"
                        );
                    }
                }
                assert!(grants.iter().any(|&(_, n)| n > 1), "{what}");
            }
        }
    }

    /// NONE with random `n`: the units are numbered on the original
    /// schedule (unit k due at `t0 + ceil(k T)`); a reservation of `n` units
    /// from unit `u` is granted at `max(now, t0 + ceil((u + n - 1) T))`;
    /// nothing is ever discarded. Peek agrees (level = units due by now not
    /// taken).
    #[test]
    fn random_weighted_arrivals_on_none_are_exact() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for r in [(3, SEC), (7, MS), (2, 3), (5, 17), (64, 1000)] {
            for round in 0..3 {
                let what = format!("{r:?} round {round}");
                let fx = Fx::started(r, Hardcap::None, T0);
                let mut u = 0u64;
                let mut now = T0;
                for i in 0..800 {
                    now += gap(&mut rng, r.1);
                    let n = rng.one_to(r.0);
                    let l = latest(&mut rng, now, r.1);
                    let want = now.max(T0 + slot(r, u + n - 1));
                    let level = (1 + units_in(r, now - T0)).saturating_sub(u);
                    assert_eq!(fx.peek(n, now), (level, want - now), "{what}: {i}");
                    let before = fx.word();
                    let got = fx.reserve_n(n, now, l).0;
                    if want <= l {
                        assert_eq!(got, Reservation::Granted(want), "{what}: call {i}");
                        u += n;
                    } else {
                        assert_eq!(got, Reservation::Later(want), "{what}: call {i}");
                        assert_eq!(fx.word(), before, "{what}: refused call");
                    }
                }
            }
        }
    }
}

/// `peek`: the level and the wait, taking nothing.
mod peek {
    use super::*;

    /// Exact values on a fresh LIMIT tank of 10 per 1 s: one unit at the
    /// start, `n` units `(n-1) T` later; after a burst the level is what is
    /// left; peek never changes the state.
    #[test]
    fn exact_values_on_a_fresh_tank() {
        let r = (10, SEC);
        let fx = Fx::started(r, Hardcap::Limit, T0);
        assert_eq!(fx.peek(1, T0), (1, 0));
        assert_eq!(fx.peek(3, T0), (1, slot(r, 2)));
        assert_eq!(fx.peek(10, T0), (1, slot(r, 9)));
        assert_eq!(fx.peek(1, T0 + slot(r, 1) - 1), (1, 0));
        assert_eq!(fx.peek(2, T0 + slot(r, 1) - 1), (1, 1));
        assert_eq!(fx.peek(2, T0 + slot(r, 1)), (2, 0));
        let t = T0 + 5 * SEC as i64;
        assert_eq!(fx.peek(10, t), (10, 0));
        let before = fx.snapshot();
        for n in 1..=10 {
            fx.peek(n, t);
        }
        assert_eq!(fx.snapshot(), before, "peek changed the state");
        assert_eq!(fx.take(4, t), Reservation::Granted(t));
        assert_eq!(fx.peek(6, t), (6, 0));
        assert_eq!(fx.peek(8, t), (6, slot(r, 2)));
        // Before the start: nothing there (the tank opens at the start).
        let fresh = Fx::started(r, Hardcap::Limit, T0);
        assert_eq!(fresh.peek(1, T0 - 1), (0, 1));
    }

    /// Checks, on copies of the state, that `peek(n, now)` says what the
    /// reservations then do: `level` has_fuel takes of one unit succeed at
    /// `now` and the next one does not; `n` units reserved at once at `now`
    /// are granted at `now + wait` (WINDOW: also `n` units one at a time).
    fn check_peek(fx: &Fx, n: u64, now: i64, what: &str) {
        let before = fx.snapshot();
        let (level, wait) = fx.peek(n, now);
        assert_eq!(fx.snapshot(), before, "{what}: peek changed the state");
        assert!(wait >= 0, "{what}");
        let copy = fx.fork();
        let (taken, _) = copy.drain(now);
        assert_eq!(taken, level, "{what}: level");
        let copy = fx.fork();
        assert_eq!(copy.wait(n, now).0, now + wait, "{what}: wait for {n}");
        if fx.hc() == Hardcap::Window {
            // One at a time, the n-th unit comes when the batch would.
            let copy = fx.fork();
            let g = (0..n).map(|_| copy.wait(1, now).0).last().unwrap();
            assert_eq!(g, now + wait, "{what}: n-th of single units");
        }
        assert_eq!(wait == 0, level >= n, "{what}");
    }

    /// Random runs on every hardcap (random `n` within the capacity), with
    /// peek checked against reservations before every call.
    #[test]
    fn peek_agrees_with_reservations() {
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        for hc in [Hardcap::Limit, Hardcap::One, Hardcap::None, Hardcap::Window] {
            for r in [(3, SEC), (7, MS), (2, 3), (5, 17), (1, 10)] {
                let what = format!("{hc:?} {r:?}");
                let fx = Fx::started(r, hc, T0);
                let cap = match hc {
                    Hardcap::One => 1,
                    _ => r.0,
                };
                let mut now = T0;
                for i in 0..400 {
                    now += gap(&mut rng, r.1);
                    // Peek for any n up to max_n (WINDOW: units one at a time).
                    let n_peek = match hc {
                        Hardcap::One => 1,
                        _ => rng.one_to(r.0),
                    };
                    check_peek(&fx, n_peek, now, &format!("{what} step {i}"));
                    let n = rng.one_to(cap);
                    let l = latest(&mut rng, now, r.1);
                    fx.reserve_n(n, now, l);
                }
            }
        }
    }

    /// WINDOW by hand: 3 per 1 s, a burst of 3 at t0, then the window
    /// frees one unit at each of `t0 + 1 s`, and peek counts them.
    #[test]
    fn window_level_and_wait() {
        let r = (3, SEC);
        let fx = Fx::started(r, Hardcap::Window, T0);
        // The tank starts empty: units at t0, t0 + T, t0 + 2T.
        assert_eq!(fx.peek(1, T0), (1, 0));
        assert_eq!(fx.peek(3, T0), (1, slot(r, 2)));
        let t = T0 + 2 * SEC as i64;
        assert_eq!(fx.peek(3, t), (3, 0));
        assert_eq!(fx.drain(t), (3, t + SEC as i64));
        assert_eq!(fx.peek(1, t), (0, SEC as i64));
        assert_eq!(fx.peek(3, t + 1), (0, SEC as i64 - 1));
        assert_eq!(fx.peek(1, t + SEC as i64), (3, 0));
    }
}

/// `set_rate`, `current_rate`, `follow`.
mod rate_change {
    use super::*;

    /// 10 waiters reserved at t0 (tank empty at the start: unit k at
    /// `t0 + ceil(k T)`), exact scaled slot of waiter k `t0*max_n + k*per`.
    fn queue(r: R, hc: Hardcap, count: u64) -> (Fx, Vec<Ticket>) {
        let fx = Fx::started(r, hc, T0);
        let tickets = (0..count)
            .map(|k| {
                let (g, t) = fx.wait(1, T0);
                assert_eq!(g, T0 + slot(r, k), "{hc:?} {r:?}");
                t
            })
            .collect();
        (fx, tickets)
    }

    fn queue_slot(r: R, k: u64) -> u128 {
        scaled(r, T0) + u128::from(k) * u128::from(r.1)
    }

    /// A queue of 10 waiters and a rate change at `tc`: a waiter due by
    /// `tc` keeps its grant; one due after is at `tc + ceil(d T_new/T_old)`
    /// (d its exact offset from tc); the moved ones are exactly `T_new`
    /// apart on the exact grid (grant j = `ceil((S + j per_new)/max_new)`);
    /// new reservations continue the queue at the new rate, the first one
    /// exactly one new `T` after the last waiter (no gap, no overlap).
    #[test]
    fn queue_is_respaced_exactly() {
        let pairs: [(R, R); 7] = [
            ((10, SEC), (100, SEC)),
            ((10, SEC), (1, SEC)),
            ((3, SEC), (7, SEC)),
            ((7, MS), (5, 17)),
            ((10, SEC), (10, 3 * SEC)),
            ((1000, SEC), (3, 2 * SEC)),
            ((6, 10 * SEC + 1), (999_983, SEC)),
        ];
        for hc in GCRA {
            for (old, new) in pairs {
                let tcs = [
                    T0,
                    T0 + 1,
                    T0 + slot(old, 2) + slot(old, 1) / 2,
                    T0 + slot(old, 3) - 1,
                    T0 + slot(old, 3),
                    T0 + slot(old, 3) + 1,
                    T0 + slot(old, 9) - 1,
                ];
                for tc in tcs {
                    let what = format!("{hc:?} {old:?} -> {new:?} at t0+{}", tc - T0);
                    let (fx, mut tickets) = queue(old, hc, 10);
                    fx.set_rate(new, tc);
                    assert_eq!(fx.current_rate(), new, "{what}");
                    // The first waiter due after tc, and its new exact slot.
                    let k0 = (0..10).find(|&k| T0 + slot(old, k) > tc).unwrap();
                    let s0 = moved(old, new, tc, queue_slot(old, k0));
                    for (k, t) in (0u64..).zip(tickets.iter_mut()) {
                        let g = fx.follow(t);
                        let x = queue_slot(old, k);
                        if k < k0 {
                            assert_eq!(g, T0 + slot(old, k), "{what}: waiter {k} moved");
                        } else {
                            let j = u128::from(k - k0);
                            assert_eq!(g, moved_grant(old, new, tc, x), "{what}: waiter {k}");
                            let exact = exact_moved_grant(old, new, tc, x);
                            assert!((exact..=exact + 1).contains(&g), "{what}: {k} vs {exact}");
                            assert_eq!(g, grant_of(new, s0 + j * u128::from(new.1)), "{what}");
                        }
                        // Following again changes nothing.
                        assert_eq!(fx.follow(t), g, "{what}: follow twice");
                    }
                    // New reservations: units 10, 11, 12 of the queue.
                    for k in 10..13 {
                        let want = moved_grant(old, new, tc, queue_slot(old, k));
                        assert_eq!(fx.wait(1, tc).0, want, "{what}: new reservation {k}");
                        let j = u128::from(k - k0);
                        assert_eq!(want, grant_of(new, s0 + j * u128::from(new.1)));
                    }
                }
            }
        }
    }

    /// A rate change after the whole queue is due moves nothing; the next
    /// unit follows the new rate.
    #[test]
    fn change_after_the_queue_moves_nothing() {
        let (old, new) = ((10, SEC), (100, SEC));
        for hc in GCRA {
            let (fx, mut tickets) = queue(old, hc, 5);
            let tc = T0 + slot(old, 4);
            fx.set_rate(new, tc);
            for (k, t) in (0u64..).zip(tickets.iter_mut()) {
                assert_eq!(fx.follow(t), T0 + slot(old, k), "{hc:?}");
            }
            // Unit 5 was due at t0 + 5 T_old = tc + T_old: in units of T
            // it is one T after tc, now a new T.
            assert_eq!(fx.wait(1, tc).0, tc + slot(new, 1), "{hc:?}");
        }
    }

    /// The tank after a change at `tc` when nothing is queued: the first
    /// unit in the old tank was due at exact scaled time `first` (at `old`,
    /// `first <= tc`). The time accrued since then is what the tank holds
    /// (its whole units and the progress towards the next one), at most
    /// what the old tank holds (`cap_old - 1` periods past its first unit:
    /// a full tank makes no progress); respaced to the new `T`, rounded
    /// down (never more fuel than there was), and at most what the new tank
    /// holds. Returns the new exact scaled time of the first unit.
    fn tank_first(old: R, new: R, caps: (Option<u64>, Option<u64>), tc: i64, first: u128) -> u128 {
        let (po, pn) = (u128::from(old.1), u128::from(new.1));
        let mut acc = scaled(old, tc) - first;
        if let Some(c) = caps.0 {
            acc = acc.min(u128::from(c - 1) * po);
        }
        acc = acc * pn / po;
        if let Some(c) = caps.1 {
            acc = acc.min(u128::from(c - 1) * pn);
        }
        scaled(new, tc) - acc
    }

    /// `(level, exact scaled time of the next unit after draining it)` of a
    /// tank whose first unit is at exact scaled `first` at rate `r`, at `t`.
    fn level_and_next(r: R, cap: Option<u64>, first: u128, t: i64) -> (u64, u128) {
        let per = u128::from(r.1);
        let whole = u64::try_from((scaled(r, t) - first) / per + 1).unwrap();
        let level = cap.map_or(whole, |c| whole.min(c));
        // Draining a full tank at t restarts it from t.
        let next = if cap.is_some_and(|c| whole >= c) {
            scaled(r, t) + per
        } else {
            first + u128::from(level) * per
        };
        (level, next)
    }

    /// LIMIT 1000 per 1 s with a full tank, changed to 10 per 1 s: the
    /// tank keeps only what the new one holds, 10; has_fuel gets 10 at
    /// once, then one every 100 ms; a part-full tank keeps its units and
    /// its progress (respaced, rounded down).
    #[test]
    fn no_burst_beyond_the_new_rate() {
        let (old, new) = ((1000, SEC), (10, SEC));
        let fx = Fx::started(old, Hardcap::Limit, T0);
        let tc = T0 + 2 * SEC as i64;
        assert_eq!(fx.peek(1, tc), (1000, 0));
        fx.set_rate(new, tc);
        assert_eq!(fx.peek(1, tc), (10, 0));
        assert_eq!(fx.peek(10, tc + 5), (10, 0));
        assert_eq!(fx.drain(tc), (10, tc + slot(new, 1)));
        for k in 1..20 {
            assert_eq!(fx.wait(1, tc).0, tc + slot(new, k));
        }
        // Idle again for a long time: still only 10.
        let t = tc + 100 * SEC as i64;
        assert_eq!(fx.drain(t), (10, t + slot(new, 1)));

        // Part full: 1000 per 1 s drained at t1 (its next unit at t1 +
        // 1 ms), changed at t1 + 5.3 ms: 5 units and 0.3 of the next kept.
        let fx = Fx::started(old, Hardcap::Limit, T0);
        let t1 = T0 + 2 * SEC as i64;
        assert_eq!(fx.drain(t1), (1000, t1 + slot(old, 1)));
        let tc = t1 + slot(old, 5) + 300_000;
        fx.set_rate(new, tc);
        let first = tank_first(
            old,
            new,
            (Some(1000), Some(10)),
            tc,
            scaled(old, t1) + u128::from(old.1),
        );
        assert_eq!(first, scaled(new, tc) - 43 * u128::from(new.1) / 10);
        let (level, next) = level_and_next(new, Some(10), first, tc);
        assert_eq!((level, grant_of(new, next)), (5, tc + 70 * MS as i64));
        assert_eq!(fx.peek(1, tc), (5, 0));
        assert_eq!(fx.drain(tc), (5, tc + 70 * MS as i64));
    }

    /// With no backlog, a higher rate keeps no more fuel than the old tank
    /// held: a full LIMIT tank of 10 at 10 per 1 s, idle for a while, holds
    /// 10 after a change to a rate with a bigger tank, not the whole time
    /// since its first unit (respaced, up to the new capacity). Cases: 10/s
    /// idle 3 s -> 1000/s; 10/s idle 10 s -> 20/s; 10/s idle 1000 s ->
    /// 1000/s. In each, has_fuel then gets exactly 10 at once and the next
    /// unit one new T later.
    #[test]
    fn increase_after_idle_never_exceeds_the_old_tank() {
        let mut failures = Vec::new();
        for (new, idle) in [((1000, SEC), 3), ((20, SEC), 10), ((1000, SEC), 1000)] {
            let old = (10, SEC);
            let fx = Fx::started(old, Hardcap::Limit, T0);
            let tc = T0 + idle * SEC as i64;
            fx.set_rate(new, tc);
            // The model: the first unit at T0, the tank full since.
            let first = tank_first(old, new, (Some(10), Some(new.0)), tc, scaled(old, T0));
            let want = level_and_next(new, Some(new.0), first, tc);
            assert_eq!(want, (10, scaled(new, tc) + u128::from(new.1)));
            let peeked = fx.peek(1, tc);
            let (taken, later) = fx.drain(tc);
            let got = (peeked, (taken, later - tc));
            let want = ((10, 0), (10, slot(new, 1)));
            if got != want {
                failures.push(format!(
                    "10/s idle {idle} s -> {new:?} at tc: ((peek level, wait), (drained, next \
                     - tc)) = {got:?}, want {want:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// With no backlog, a higher rate keeps the tank content and its
    /// progress (respaced, rounded down), then accrues at the new rate up
    /// to the new capacity; ONE keeps its one unit, NONE its backlog.
    #[test]
    fn increase_keeps_the_tank_content() {
        let (old, new) = ((10, SEC), (1000, SEC));
        let caps = (Some(10), Some(1000));
        // The tank of 10 after a drain at t1 holds 3 and half the next at
        // t1 + 350 ms (units at t1 + 100, 200, 300 ms).
        let fx = Fx::started(old, Hardcap::Limit, T0);
        let t1 = T0 + 3 * SEC as i64;
        assert_eq!(fx.drain(t1), (10, t1 + slot(old, 1)));
        let tc = t1 + 350 * MS as i64;
        fx.set_rate(new, tc);
        let first = tank_first(old, new, caps, tc, scaled(old, t1) + u128::from(old.1));
        assert_eq!(first, scaled(new, tc) - 25 * u128::from(new.1) / 10);
        assert_eq!(fx.peek(1, tc), (3, 0));
        let t = tc + 5 * MS as i64;
        let (level, next) = level_and_next(new, Some(1000), first, t);
        assert_eq!((level, grant_of(new, next)), (8, t + 500_000));
        assert_eq!(fx.peek(1, t), (8, 0));
        assert_eq!(fx.drain(t), (8, t + 500_000));
        // Then the tank fills to the new capacity of 1000.
        let t = tc + 10 * SEC as i64;
        assert_eq!(fx.drain(t), (1000, t + slot(new, 1)));

        // ONE keeps its one unit (a full tank: no progress); NONE keeps its
        // whole backlog and its progress.
        let fx = Fx::started(old, Hardcap::One, T0);
        fx.set_rate(new, tc);
        assert_eq!(fx.drain(tc), (1, tc + slot(new, 1)));
        let fx = Fx::started(old, Hardcap::None, T0);
        let tc = T0 + 2 * SEC as i64 + 50 * MS as i64; // units 0..=20 due, half of 21
        fx.set_rate(new, tc);
        assert_eq!(fx.peek(1, tc), (21, 0));
        assert_eq!(fx.drain(tc), (21, tc + 500_000));
    }

    /// Progress towards the next unit survives a change (so frequent
    /// changes cannot starve anyone): LIMIT, ONE and NONE with an empty
    /// tank half way to its next unit keep the half, in new periods; with
    /// one unit and a half in the tank, the unit and the half.
    #[test]
    fn progress_is_kept_across_a_change() {
        let (old, new) = ((10, SEC), (100, SEC));
        for hc in GCRA {
            let cap_of = |r: R| match hc {
                Hardcap::Limit => Some(r.0),
                Hardcap::One => Some(1),
                _ => None,
            };
            // Empty tank half way (the queue case): next unit 0.5 new T on.
            let fx = Fx::started(old, hc, T0);
            assert_eq!(fx.drain(T0), (1, T0 + slot(old, 1)), "{hc:?}");
            let tc = T0 + 50 * MS as i64;
            fx.set_rate(new, tc);
            assert_eq!(fx.peek(1, tc), (0, 5 * MS as i64), "{hc:?}");
            assert_eq!(
                fx.drain(tc + 5 * MS as i64),
                (1, tc + 15 * MS as i64),
                "{hc:?}"
            );
            // One unit and a half (first unit at T0 + 100 ms, tc 150 ms on).
            let fx = Fx::started(old, hc, T0);
            assert_eq!(fx.drain(T0), (1, T0 + slot(old, 1)), "{hc:?}");
            let tc = T0 + 150 * MS as i64;
            fx.set_rate(new, tc);
            let first = tank_first(
                old,
                new,
                (cap_of(old), cap_of(new)),
                tc,
                scaled(old, T0) + u128::from(old.1),
            );
            let (level, next) = level_and_next(new, cap_of(new), first, tc);
            // ONE holds 1 and makes no progress while full.
            let want_next = if hc == Hardcap::One {
                tc + 10 * MS as i64
            } else {
                tc + 5 * MS as i64
            };
            assert_eq!((level, grant_of(new, next)), (1, want_next), "{hc:?}");
            assert_eq!(fx.peek(1, tc), (1, 0), "{hc:?}");
            assert_eq!(fx.drain(tc), (1, want_next), "{hc:?}");
        }
    }

    /// `(rate, t_c)` of change i (i = 0..): every rate differs from the one
    /// before, every change comes while units are still queued (the last
    /// of the 10 waiters of [`queue`] is about 4 new periods ahead after the
    /// 32nd change).
    fn change(i: u64) -> (R, i64) {
        (
            (50 + 7 * i, SEC),
            T0 + i64::try_from((i + 1) * MS + i).unwrap(),
        )
    }

    /// `m` changes of rate, `changes` gives each: the 10 waiters of a
    /// queue of `r0` are followed at every change (`each`, for up to 64
    /// changes), and once after them all (`once`). A waiter is granted in
    /// the frame in force when virtual time reached it: the frame after the
    /// last change it was due after (in the frame before that change), at
    /// its place (first reserved) in that frame. `each` gives exactly that;
    /// `once` too, unless the records no longer hold the frames back to the
    /// one it was due in: then no later than the oldest change they hold
    /// (never early). New reservations continue the queue: the TAT
    /// converted one change at a time. No waiter loses its place, however
    /// many changes it slept through.
    fn followed_through(m: u64, changes: fn(u64) -> (R, i64)) {
        let r0 = (10, SEC);
        let recs = RECORDS as u64;
        // The frames (the first, then one per change), and the changes.
        let mut frames = vec![Frame::first(r0)];
        for i in 0..m {
            let (r, tc) = changes(i);
            let f = frames.last().unwrap().changed(r, tc);
            frames.push(f);
        }
        let want = |k: u64| {
            let x = queue_slot(r0, k);
            let piece = (1..=m)
                .rev()
                .find(|&j| {
                    let before = frames[j as usize - 1];
                    i128::try_from(before.place(r0, x)).unwrap() > before.at(changes(j - 1).1)
                })
                .unwrap_or(0);
            let f = frames[piece as usize];
            f.grant(f.place(r0, x))
        };
        // The oldest change whose record is still held.
        let oldest_kept = if m > recs {
            changes(m - recs).1
        } else {
            i64::MIN
        };
        for hc in GCRA {
            let what = format!("{hc:?} {m} changes");
            let (each, mut t_each) = queue(r0, hc, 10);
            let (once, mut t_once) = queue(r0, hc, 10);
            // The model of the TAT: the next unit's place, one change at a
            // time (units are reserved ahead: always the queue case).
            let mut next = queue_slot(r0, 10);
            for i in 0..m {
                let (r, tc) = changes(i);
                each.set_rate(r, tc);
                once.set_rate(r, tc);
                if m <= 64 {
                    for t in &mut t_each {
                        each.follow(t);
                    }
                }
                let (before, after) = (frames[i as usize], frames[i as usize + 1]);
                next = after.place(before.r, next);
            }
            let now = changes(m - 1).1;
            for k in 0..10u64 {
                let want = want(k);
                if m <= 64 {
                    let a = &mut t_each[k as usize];
                    assert_eq!(
                        each.follow(a),
                        want,
                        "{what}: followed each time, waiter {k}"
                    );
                }
                let b = &mut t_once[k as usize];
                let got = once.sched.follow(&once.st(), b);
                let Some(Follow::At(g)) = got else {
                    panic!("{what}: waiter {k} lost its place: {got:?}");
                };
                assert!(
                    (want..=want.max(oldest_kept)).contains(&g),
                    "{what}: waiter {k} at {g}, due at {want}, bound {oldest_kept}"
                );
                if m <= recs {
                    assert_eq!(g, want, "{what}: followed once, waiter {k}");
                }
            }
            // New reservations: the queue goes on, one new T apart.
            let frame = frames[m as usize];
            assert!(frame.grant(next) > now, "{what}: queue drained");
            for j in 0..3u128 {
                let want = frame.grant(next + j * u128::from(frame.r.1));
                assert_eq!(each.wait(1, now).0, want, "{what}: new {j}");
                assert_eq!(once.wait(1, now).0, want, "{what}: new {j}");
            }
        }
    }

    /// A few changes, up to and beyond what the records hold.
    #[test]
    fn several_changes_followed_at_once() {
        let recs = RECORDS as u64;
        for m in [1, 2, 3, recs - 1, recs, recs + 1, recs + 2] {
            followed_through(m, change);
        }
    }

    /// A storm: 100,000 changes 1 us apart, alternating 10 and 4 per
    /// second.
    #[test]
    fn storm_of_changes_keeps_every_place() {
        fn storm(i: u64) -> (R, i64) {
            let r = if i % 2 == 0 { (4, SEC) } else { (10, SEC) };
            (r, T0 + 1 + i64::try_from(i * 1000).unwrap())
        }
        followed_through(100_000, storm);
    }

    /// Rates far apart, after a long time at the faster (10 ms at 2^40
    /// units per ns is 2^63 periods), then a period of 146 years: the
    /// frame renumbers (drops whole periods) rather than overflow, and the
    /// schedule stays what the rates say: the tank holds what it held, up
    /// to the new capacity (NONE: its backlog, up to what the frame keeps),
    /// and the next unit is one new period on. Peeking never reports a
    /// negative wait.
    #[test]
    fn extreme_rates_keep_the_schedule_in_range() {
        let (fast, slow) = ((1 << 40, 1), (3, 1 << 62));
        let t_new = i64::try_from((1u64 << 62) / 3).unwrap();
        for hc in GCRA {
            let fx = Fx::started((1_000_000, SEC), hc, T0);
            let t1 = T0 + MS as i64;
            fx.set_rate(fast, t1);
            let t2 = t1 + 10 * MS as i64;
            fx.set_rate(slow, t2);
            let (level, wait) = fx.peek(1, t2);
            assert_eq!(wait, 0, "{hc:?}");
            match hc {
                Hardcap::Limit => assert_eq!(level, 3),
                Hardcap::One => assert_eq!(level, 1),
                _ => assert!((3..=(1 << 40) + 1).contains(&level), "{hc:?}: {level}"),
            }
            if hc == Hardcap::None {
                let (_, wait) = fx.peek(1 << 41, t2);
                assert!(wait > 0, "{hc:?}: {wait}");
                continue;
            }
            let (taken, next) = fx.drain(t2);
            assert_eq!(taken, level, "{hc:?}");
            assert!(
                (t2 + t_new - 2..=t2 + t_new + 2).contains(&next),
                "{hc:?}: {next}"
            );
            let (g, _) = fx.wait(1, t2 + 1);
            assert_eq!(g, next, "{hc:?}");
            let (_, wait) = fx.peek(1, t2 + 2);
            assert!(wait > t_new, "{hc:?}: {wait}");
        }
    }

    /// Setting the rate in force changes nothing (no new generation: a
    /// ticket is not moved, and no record is spent).
    #[test]
    fn same_rate_is_no_change() {
        for hc in GCRA {
            let (fx, mut tickets) = queue((10, SEC), hc, 3);
            let before = fx.snapshot();
            fx.set_rate((10, SEC), T0 + 1);
            assert_eq!(fx.snapshot(), before, "{hc:?}");
            assert_eq!(fx.follow(&mut tickets[2]), T0 + slot((10, SEC), 2));
        }
    }
}

/// `give_back`: units a waiter does not use go back to the queue.
mod give_back {
    use super::*;

    /// Waiters A (1 unit), B (`nb` units), C (1), D (`nd`) reserved at t0
    /// (without B if `with_b` is false).
    fn abcd(r: R, hc: Hardcap, (nb, nd): (u64, u64), with_b: bool) -> (Fx, [Option<Ticket>; 4]) {
        let fx = Fx::started(r, hc, T0);
        let mut ts = [None; 4];
        for (i, n) in [1, nb, 1, nd].into_iter().enumerate() {
            if i == 1 && !with_b {
                continue;
            }
            ts[i] = Some(fx.wait(n, T0).1);
        }
        (fx, ts)
    }

    /// Giving back B's units (3 of them; 1 on ONE) moves C and D exactly
    /// `n_B T` earlier, leaves A alone, and the next reservation lands
    /// where it would have if B had never reserved: compared with the
    /// exact expected times and with a twin that never had B.
    #[test]
    fn later_waiters_move_up_exactly() {
        for hc in GCRA {
            for r in [(10, SEC), (3, SEC), (7, MS), (5, 17)] {
                let what = format!("{hc:?} {r:?}");
                let (nb, nd) = if hc == Hardcap::One { (1, 1) } else { (3, 2) };
                let (fx, ts) = abcd(r, hc, (nb, nd), true);
                let [a, b, c, d] = ts.map(Option::unwrap);
                // Units: A 0, B 1..=nb, C nb+1, D nb+2..=nb+1+nd.
                let at = |k: u64| T0 + slot(r, k);
                let grants = [a, b, c, d].map(|t| t.grant());
                assert_eq!(
                    grants,
                    [at(0), at(nb), at(nb + 1), at(nb + 1 + nd)],
                    "{what}"
                );
                let (twin, tw) = abcd(r, hc, (nb, nd), false);
                assert!(fx.give_back(&b), "{what}");
                // Without B: A 0, C 1, D 2..=1+nd.
                let after = [(a, at(0), tw[0]), (c, at(1), tw[2]), (d, at(1 + nd), tw[3])];
                for (mut t, want, twin_t) in after {
                    assert_eq!(fx.follow(&mut t), want, "{what}");
                    assert_eq!(want, twin_t.unwrap().grant(), "{what}");
                }
                let now = T0 + 1;
                for k in 2 + nd..6 + nd {
                    assert_eq!(fx.wait(1, now).0, at(k), "{what}: new {k}");
                    assert_eq!(twin.wait(1, now).0, at(k), "{what}: twin {k}");
                }
            }
        }
    }

    /// The same after a rate change (B followed to the current generation
    /// first): C and D move `n_B T_new` earlier, and everything equals a
    /// twin that never had B and saw the same change.
    #[test]
    fn give_back_after_a_rate_change() {
        let (old, new) = ((10, SEC), (3, SEC));
        let tc = T0 + 30 * MS as i64; // after A (t0), before everyone else
        for hc in [Hardcap::Limit, Hardcap::None] {
            let (fx, ts) = abcd(old, hc, (3, 2), true);
            let [mut a, mut b, mut c, mut d] = ts.map(Option::unwrap);
            let (twin, tw) = abcd(old, hc, (3, 2), false);
            let [mut ta, _, mut tc_, mut td] = tw;
            fx.set_rate(new, tc);
            twin.set_rate(new, tc);
            let c_before = fx.follow(&mut c);
            let d_before = fx.follow(&mut d);
            // Give-back only with a current ticket.
            assert!(!fx.give_back(&b), "{hc:?}: stale ticket accepted");
            fx.follow(&mut b);
            assert!(fx.give_back(&b), "{hc:?}");
            // Exact: C was unit 4 (0.4 s), now 0.37 s of old T = 3.7 new T
            // after tc; minus 3 new T.
            let want_c = moved_grant(old, new, tc, scaled(old, T0) + 4 * u128::from(old.1));
            assert_eq!(c_before, want_c, "{hc:?}");
            let xc = moved(old, new, tc, scaled(old, T0) + 4 * u128::from(old.1));
            let c_after = fx.follow(&mut c);
            assert_eq!(c_after, grant_of(new, xc - 3 * u128::from(new.1)), "{hc:?}");
            let d_after = fx.follow(&mut d);
            assert_eq!(
                d_after,
                grant_of(new, xc - u128::from(new.1)),
                "{hc:?}: D (units 5, 6 -> 2, 3)"
            );
            assert!(d_before > d_after, "{hc:?}");
            assert_eq!(fx.follow(&mut a), T0, "{hc:?}");
            assert_eq!(twin.follow(ta.as_mut().unwrap()), T0);
            assert_eq!(twin.follow(tc_.as_mut().unwrap()), c_after, "{hc:?}");
            assert_eq!(twin.follow(td.as_mut().unwrap()), d_after, "{hc:?}");
            // The next unit is where C was before the give-back.
            for j in 0..3u128 {
                let want = grant_of(new, xc + j * u128::from(new.1));
                assert_eq!(fx.wait(1, tc).0, want, "{hc:?}: new {j}");
                assert_eq!(twin.wait(1, tc).0, want, "{hc:?}: twin new {j}");
            }
        }
    }

    /// A ticket a generation behind (a change went through since it was
    /// followed) is refused: `give_back` is false and changes nothing.
    /// Followed, it is accepted; giving back twice is refused (the first
    /// give-back is a change the ticket has not followed).
    #[test]
    fn stale_ticket_is_refused() {
        for hc in GCRA {
            let fx = Fx::started((10, SEC), hc, T0);
            fx.wait(1, T0);
            let (_, mut b) = fx.wait(1, T0);
            let (_, mut c) = fx.wait(1, T0);
            fx.set_rate((20, SEC), T0 + 1);
            let before = fx.snapshot();
            assert!(!fx.give_back(&b), "{hc:?}");
            assert_eq!(fx.snapshot(), before, "{hc:?}: refused give-back wrote");
            // Another waiter's give-back makes b stale too.
            fx.follow(&mut c);
            assert!(fx.give_back(&c), "{hc:?}");
            let before = fx.snapshot();
            assert!(!fx.give_back(&b), "{hc:?}");
            assert!(!fx.give_back(&c), "{hc:?}: given back twice");
            assert_eq!(fx.snapshot(), before, "{hc:?}");
            fx.follow(&mut b);
            assert!(fx.give_back(&b), "{hc:?}");
            // Both given back: the next unit is unit 1 (new rate after tc).
            assert_eq!(
                fx.wait(1, T0 + 1).0,
                grant_of(
                    (20, SEC),
                    moved((10, SEC), (20, SEC), T0 + 1, queue_unit(1))
                ),
                "{hc:?}"
            );
        }
    }

    fn queue_unit(k: u64) -> u128 {
        scaled((10, SEC), T0) + u128::from(k) * u128::from(SEC)
    }

    /// Random queues: waiters of random `n` reserved while the queue is
    /// not empty, rate changes, give-backs of random waiters (followed
    /// first), time passing (waiters whose grant came are served). After
    /// each step every waiter still queued, followed, keeps the order, and
    /// the queue is a chain at the current rate: consecutive waiters'
    /// places in the frame in force (each the place of its last unit) are
    /// `n T` apart, or later by at most a scaled unit of a frame per change
    /// of rate (the TAT is converted one change at a time, rounded up, a
    /// ticket in one step; a scaled unit is `1/per_ns` of a period), and
    /// each grant is its place rounded up.
    #[test]
    fn random_queues_stay_a_perfect_chain() {
        let rates: [R; 6] = [
            (10, SEC),
            (3, SEC),
            (7, MS),
            (100, SEC),
            (5, 17),
            (64, 1000),
        ];
        let mut rng = Rng(0xA076_1D64_78BD_642F);
        for hc in GCRA {
            for round in 0..6 {
                let what = format!("{hc:?} round {round}");
                let mut cur = rates[round % rates.len()];
                let fx = Fx::started(cur, hc, T0);
                let mut now = T0;
                let mut queued: Vec<Ticket> = Vec::new();
                let mut changes = 0;
                // The finest frame seen: the coarsest rounding.
                let mut min_per = cur.1;
                for step in 0..400 {
                    // At most a scaled unit of the frame each change made,
                    // in the frame in force.
                    let slack = changes * (u128::from(cur.1).div_ceil(u128::from(min_per)) + 1);
                    let cap = if hc == Hardcap::One { 1 } else { cur.0 };
                    match rng.below(10) {
                        0..=4 => {
                            let n = rng.one_to(cap);
                            let (_, t) = fx.wait(n, now);
                            if let Some(prev) = queued.last() {
                                let want = fx.place(prev) + u128::from(n) * u128::from(cur.1);
                                let got = fx.place(&t);
                                assert!(
                                    (want..=want + slack).contains(&got),
                                    "{what}: step {step} joins the chain at {got}, not {want}"
                                );
                            }
                            queued.push(t);
                        }
                        5..=6 => {
                            let r = rates[rng.below(rates.len() as u64) as usize];
                            if r != cur {
                                fx.set_rate(r, now);
                                cur = r;
                                changes += 1;
                                min_per = min_per.min(r.1);
                            }
                        }
                        7 if !queued.is_empty() => {
                            let i = rng.below(queued.len() as u64) as usize;
                            let mut t = queued.remove(i);
                            fx.follow(&mut t);
                            assert!(fx.give_back(&t), "{what}: step {step}");
                        }
                        _ => {
                            let t = (cur.1 / cur.0).max(1);
                            now += gap(&mut rng, 2 * t);
                        }
                    }
                    for t in &mut queued {
                        fx.follow(t);
                    }
                    queued.retain(|t| t.grant() > now);
                    let slack = changes * (u128::from(cur.1).div_ceil(u128::from(min_per)) + 1);
                    for w in queued.windows(2) {
                        let want = fx.place(&w[0]) + u128::from(w[1].units) * u128::from(cur.1);
                        let got = fx.place(&w[1]);
                        assert!(
                            (want..=want + slack).contains(&got),
                            "{what}: step {step}: chain broken: {got}, not {want}"
                        );
                    }
                    for t in &queued {
                        let (place, frame) = fx.sched.place_in_force(&fx.st(), t).unwrap();
                        assert_eq!(t.grant(), frame.time_of(place), "{what}: step {step}");
                    }
                }
                assert!(changes > 10, "{what}: too few changes");
            }
        }
    }
}

/// `start` after a rate change.
mod restart {
    use super::*;

    /// Stopped, rate changed, restarted long after: the tank starts empty
    /// (DESIGN: first unit at the restart instant, then one every new T),
    /// for LIMIT and ONE.
    #[test]
    fn restart_after_a_change_starts_empty_at_the_new_rate() {
        for hc in [Hardcap::Limit, Hardcap::One] {
            for (old, new) in [((10, SEC), (100, SEC)), ((10, SEC), (3, SEC))] {
                let what = format!("{hc:?} {old:?} -> {new:?}");
                let fx = Fx::started(old, hc, T0);
                for k in 0..5 {
                    assert_eq!(fx.wait(1, T0).0, T0 + slot(old, k), "{what}");
                }
                let stop = T0 + 150 * MS as i64;
                fx.set_rate(new, stop);
                let t1 = stop + 10 * SEC as i64;
                fx.sched.start(&fx.st(), t1, Some(stop));
                assert_eq!(fx.current_rate(), new, "{what}");
                assert_eq!(fx.peek(1, t1), (1, 0), "{what}");
                assert_eq!(fx.drain(t1), (1, t1 + slot(new, 1)), "{what}");
                for k in 1..10 {
                    assert_eq!(fx.wait(1, t1).0, t1 + slot(new, k), "{what}");
                }
            }
        }
    }

    /// Stopped at 150 ms with waiters 2..4 (due 200..400 ms at 10 per 1 s)
    /// cut short, rate changed to 100 per 1 s at the stop, restarted at
    /// once: the cut-short units are given back, and the next unit is where
    /// waiter 2 was moved (0.5 T after the stop: stop + 5 ms), then one
    /// every new T (LIMIT and ONE). NONE, restarted 10 s later, counts in
    /// running time: the same units, shifted by the pause.
    #[test]
    fn restart_gives_back_cut_short_units_at_the_new_rate() {
        let (old, new) = ((10, SEC), (100, SEC));
        let stop = T0 + 150 * MS as i64;
        let x2 = moved_grant(old, new, stop, scaled(old, T0) + 2 * u128::from(old.1));
        assert_eq!(x2, stop + 5 * MS as i64);
        for hc in GCRA {
            let fx = Fx::started(old, hc, T0);
            let mut tickets: Vec<Ticket> = (0..5).map(|_| fx.wait(1, T0).1).collect();
            fx.set_rate(new, stop);
            let followed: Vec<i64> = tickets.iter_mut().map(|t| fx.follow(t)).collect();
            assert_eq!(
                &followed[2..],
                &[x2, x2 + 10 * MS as i64, x2 + 20 * MS as i64]
            );
            let t1 = if hc == Hardcap::None {
                stop + 10 * SEC as i64
            } else {
                stop
            };
            fx.sched.start(&fx.st(), t1, Some(stop));
            let first = x2 + (t1 - stop);
            assert_eq!(fx.drain(t1), (0, first), "{hc:?}");
            for k in 0..5 {
                assert_eq!(fx.wait(1, t1).0, first + slot(new, k), "{hc:?}");
            }
        }
    }
}

/// Scribbled records, and changes left half done by a dead process.
mod records {
    use super::*;

    /// A fixture at generation 2 (two rate changes) with a queued waiter.
    fn at_generation_2(hc: Hardcap) -> (Fx, Ticket) {
        let fx = Fx::started((10, SEC), hc, T0);
        let (_, t) = fx.wait(1, T0 + 1);
        fx.wait(1, T0 + 1);
        fx.set_rate((20, SEC), T0 + 2);
        fx.set_rate((30, SEC), T0 + 3);
        (fx, t)
    }

    /// Everything reads a scribbled state as corrupt: reserve, peek,
    /// current_rate, capacity, set_rate, follow, give_back; start leaves it
    /// so. Never a panic.
    fn assert_corrupt(fx: &Fx, ticket: Ticket, what: &str) {
        let st = fx.st();
        let now = T0 + 10 * SEC as i64;
        for (n, latest) in [(1, now), (1, i64::MAX), (2, i64::MAX), (1, now + 1)] {
            let n = if fx.hc() == Hardcap::One { 1 } else { n };
            assert_eq!(
                fx.reserve_n(n, now, latest).0,
                Reservation::Corrupt,
                "{what}"
            );
        }
        assert_eq!(fx.sched.peek(&st, 1, now), None, "{what}");
        assert_eq!(fx.sched.current_rate(&st), None, "{what}");
        assert_eq!(fx.sched.capacity(&st), None, "{what}");
        assert_eq!(
            fx.sched.set_rate(&st, rate((7, SEC)), &|| now),
            Err(Refused::Corrupt),
            "{what}"
        );
        let mut t = ticket;
        assert_eq!(fx.sched.follow(&st, &mut t), None, "{what}");
        assert!(!fx.give_back(&ticket), "{what}");
        fx.sched.start(&st, now, Some(now - 1));
        assert_eq!(
            fx.reserve_n(1, now, i64::MAX).0,
            Reservation::Corrupt,
            "{what}"
        );
    }

    /// The current record's tag scribbled (zero, all ones, another
    /// generation, no kind), its rate scribbled (0, beyond the maxima), or
    /// the generation in the `tat` word scribbled: Corrupt / None / false
    /// everywhere.
    #[test]
    fn scribbled_records_are_reported() {
        for hc in GCRA {
            // Generation 2 lives in record 2: the generation in bits 0..24,
            // the kind in bits 24..26 (2 = a rate).
            let tag = |generation: u64, kind: u64| generation | (kind << 24);
            let garbage = [
                0,
                u64::MAX,
                tag(6, 2),
                tag(2, 0),
                tag(3, 2),
                tag(1 << 23, 2),
            ];
            for g in garbage {
                let (fx, t) = at_generation_2(hc);
                // The tag as the code wrote it is what `tag` builds.
                assert_eq!(fx.records.tags[2].load(Ordering::SeqCst), tag(2, 2));
                fx.records.tags[2].store(g, Ordering::SeqCst);
                assert_corrupt(&fx, t, &format!("{hc:?} tag {g:#x}"));
            }
            let rates: [(u64, u64); 4] = [(0, SEC), (29, 0), (MAX_N + 1, SEC), (29, u64::MAX)];
            for (max_n, per_ns) in rates {
                let (fx, t) = at_generation_2(hc);
                fx.records.max_n[2].store(max_n, Ordering::SeqCst);
                fx.records.per_ns[2].store(per_ns, Ordering::SeqCst);
                assert_corrupt(&fx, t, &format!("{hc:?} rate {max_n} per {per_ns}"));
            }
            // The word's generation moved to one no record holds.
            for generation in [3u128, 5, 7, (1 << 24) - 1] {
                let (fx, t) = at_generation_2(hc);
                let tat = fx.word() & ((1 << 104) - 1);
                fx.tat.store((generation << 104) | tat, Ordering::SeqCst);
                assert_corrupt(&fx, t, &format!("{hc:?} generation {generation}"));
            }
        }
    }

    /// A change committed (record g + 1 written) whose maker died before
    /// moving the word to g + 1 is applied by the next caller, who helps:
    /// reserve, peek, current_rate, follow and give_back all see the new
    /// rate, and the state ends up exactly as if the maker had finished.
    #[test]
    fn committed_change_is_applied_by_the_next_caller() {
        // One call after the half-done change.
        type Op = fn(&Fx, &mut Ticket) -> String;
        for hc in GCRA {
            let ops: [Op; 5] = [
                |fx, _| format!("{:?}", fx.reserve_n(1, T0 + 10, i64::MAX).0),
                |fx, _| format!("{:?}", fx.peek(1, T0 + 10)),
                |fx, _| format!("{:?}", fx.current_rate()),
                |fx, t| format!("{:?}", fx.follow(t)),
                |fx, t| {
                    fx.follow(t);
                    format!("{:?}", fx.give_back(t))
                },
            ];
            for (i, op) in ops.iter().enumerate() {
                let what = format!("{hc:?} op {i}");
                let half = Fx::started((10, SEC), hc, T0);
                let done = Fx::started((10, SEC), hc, T0);
                let mut th: Vec<Ticket> = (0..4).map(|_| half.wait(1, T0).1).collect();
                let mut td: Vec<Ticket> = (0..4).map(|_| done.wait(1, T0).1).collect();
                let old_word = half.word();
                half.set_rate((100, SEC), T0 + 5);
                done.set_rate((100, SEC), T0 + 5);
                assert_ne!(half.word(), old_word, "{what}: set_rate moved nothing");
                half.tat.store(old_word, Ordering::SeqCst);
                // The record is there, the word is one generation behind.
                assert_eq!(op(&half, &mut th[2]), op(&done, &mut td[2]), "{what}");
                assert_eq!(half.snapshot(), done.snapshot(), "{what}");
                for (a, b) in th.iter_mut().zip(&mut td) {
                    assert_eq!(half.follow(a), done.follow(b), "{what}");
                }
                for _ in 0..3 {
                    assert_eq!(half.wait(1, T0 + 10).0, done.wait(1, T0 + 10).0, "{what}");
                }
            }
        }
    }
}

/// `WINDOW` rate changes, against a model that keeps every unit's grant
/// time: a unit is due at the latest of its arrival, the grant `max_n`
/// units before it plus `per`, and the unit before it; a change at `t_c`
/// drops the units due after `t_c`, and their waiters reserve again in
/// their order under the new rate.
mod window {
    use super::*;

    struct Model {
        /// Every unit's grant time, oldest first, after the seeds a fresh
        /// start puts before `t0` (one every T).
        units: Vec<i64>,
        r: R,
    }

    impl Model {
        fn started((n, per): R, t0: i64) -> Self {
            let seed = |i: u64| {
                t0 - i64::try_from(u128::from(i) * u128::from(per) / u128::from(n)).unwrap()
            };
            Self {
                units: (1..=RING_MIN).rev().map(seed).collect(),
                r: (n, per),
            }
        }

        fn due(&self, m: u64, now: i64) -> i64 {
            let (n, per) = self.r;
            let back = self.units[self.units.len() + m as usize - 1 - n as usize];
            now.max(back + per as i64).max(*self.units.last().unwrap())
        }

        fn claim(&mut self, m: u64, now: i64) -> i64 {
            let g = self.due(m, now);
            self.units.extend(std::iter::repeat_n(g, m as usize));
            g
        }

        /// A change at `t_c`: the units due after it are dropped.
        fn change(&mut self, r: R, t_c: i64) {
            let kept = self.units.partition_point(|&t| t <= t_c);
            self.units.truncate(kept);
            self.r = r;
        }
    }

    /// No window of length `per` ending at `units[from..]` holds more than
    /// `max_n` of `units` (sorted): counted directly.
    fn check_windows(units: &[i64], (n, per): R, from: usize, what: &str) {
        for (j, &g) in units.iter().enumerate().skip(from) {
            let inside = units[..=j].iter().filter(|&&t| t > g - per as i64).count()
                + units[j + 1..].iter().take_while(|&&t| t == g).count();
            assert!(
                inside as u64 <= n,
                "{what}: {inside} grants in the window ending at {g} (rate {n} per {per}, from {from}): {:?}",
                &units[j.saturating_sub(8)..(j + 4).min(units.len())]
            );
        }
    }

    /// Waiters for `ms[i]` units each, arriving at `now`.
    fn queue(fx: &Fx, model: &mut Model, ms: &[u64], now: i64) -> Vec<(u64, Ticket)> {
        ms.iter()
            .map(|&m| {
                let (g, t) = fx.wait(m, now);
                assert_eq!(g, model.claim(m, now), "waiter for {m} at {now}");
                (m, t)
            })
            .collect()
    }

    /// After a change at `t_c`: every waiter follows it; one due by `t_c`
    /// keeps its grant, the others lost their units and reserve again at
    /// `now`, in their order, each once its turn has come (and the turn of
    /// the next has not). Returns the waiters, with their new tickets.
    fn requeue(
        fx: &Fx,
        model: &mut Model,
        waiters: Vec<(u64, Ticket)>,
        t_c: i64,
        now: i64,
    ) -> Vec<(u64, Ticket)> {
        let st = fx.st();
        let mut kept = Vec::new();
        let mut lost = Vec::new();
        for (m, mut t) in waiters {
            let before = t.grant();
            match fx.sched.follow(&st, &mut t) {
                Some(Follow::At(g)) => {
                    assert!(
                        g == before && g <= t_c,
                        "kept a unit due at {g} after {t_c}"
                    );
                    kept.push((m, t));
                }
                Some(Follow::Lost) => {
                    assert!(before > t_c, "lost a unit due at {before}, by {t_c}");
                    lost.push((m, t));
                }
                other => panic!("follow gave {other:?}"),
            }
        }
        // Once a waiter left the queue, those after it wait for their turn
        // in vain (the throttle gives up after TURN_PATIENCE_NS).
        let mut gap = false;
        for i in 0..lost.len() {
            let reached = fx.sched.turn_reached(&st, &lost[i].1);
            assert_eq!(reached, !gap, "waiter {i}: turn reached {reached}");
            if let Some(next) = lost.get(i + 1) {
                assert!(
                    !fx.sched.turn_reached(&st, &next.1),
                    "waiter {} went before {i}",
                    i + 1
                );
            }
            let m = lost[i].0;
            if m > model.r.0 {
                // The new window is too small for it: refused (the
                // throttle says InvalidArgument), nothing taken.
                let before = fx.snapshot();
                assert_eq!(fx.reserve_n(m, now, i64::MAX).0, Reservation::Corrupt);
                assert_eq!(fx.snapshot(), before);
                gap = true;
                continue;
            }
            let (g, t) = fx.wait(m, now);
            assert_eq!(g, model.claim(m, now), "waiter {i} for {m} again at {now}");
            kept.push((m, t));
        }
        kept
    }

    /// A change at `t_c` (to the same rate: no change at all).
    fn change(fx: &Fx, model: &mut Model, r: R, t_c: i64) {
        fx.set_rate(r, t_c);
        if r != model.r {
            model.change(r, t_c);
        }
        assert_eq!(fx.current_rate(), r);
    }

    /// Halving the rate: units due after the change are void; their waiters
    /// keep their order and wait as the new window says.
    #[test]
    fn slowdown_requeues_in_order() {
        let (old, new) = ((3, SEC), (3, 2 * SEC));
        let fx = Fx::started(old, Hardcap::Window, T0);
        let mut model = Model::started(old, T0);
        let waiters = queue(&fx, &mut model, &[1; 6], T0);
        let grants: Vec<i64> = waiters.iter().map(|(_, t)| t.grant()).collect();
        assert_eq!(grants[..3], [T0, T0 + 333_333_334, T0 + 666_666_667]);
        let t_c = T0 + (SEC / 2) as i64;
        change(&fx, &mut model, new, t_c);
        let from = model.units.len();
        let waiters = requeue(&fx, &mut model, waiters, t_c, t_c + 5);
        let grants: Vec<i64> = waiters.iter().map(|(_, t)| t.grant()).collect();
        // Units 0 and 1 were granted; unit 2 waits for the seed one T
        // before the start plus the new period, unit 3 for unit 0, ...
        let third = 333_333_333;
        assert_eq!(
            grants,
            [
                T0,
                T0 + 333_333_334,
                T0 - third + 2 * SEC as i64,
                T0 + 2 * SEC as i64,
                T0 + 333_333_334 + 2 * SEC as i64,
                T0 - third + 4 * SEC as i64,
            ]
        );
        check_windows(&model.units, new, from, "slowdown");
    }

    /// Ten times faster, with batches: every waiter moves earlier, in order.
    #[test]
    fn speedup_with_batches_moves_the_queue_earlier() {
        let (old, new) = ((4, 10 * SEC), (4, SEC));
        let fx = Fx::started(old, Hardcap::Window, T0);
        let mut model = Model::started(old, T0);
        let ms = [2, 1, 3, 1, 2, 4, 1];
        let waiters = queue(&fx, &mut model, &ms, T0);
        let before: Vec<i64> = waiters.iter().map(|(_, t)| t.grant()).collect();
        let t_c = T0 + 3 * SEC as i64;
        change(&fx, &mut model, new, t_c);
        let from = model.units.len();
        let waiters = requeue(&fx, &mut model, waiters, t_c, t_c + 1);
        for (i, ((_, t), b)) in waiters.iter().zip(&before).enumerate() {
            assert!(t.grant() <= *b, "waiter {i} moved later");
        }
        // The 14 units went in under 4 s of the new rate, not 30 s.
        assert!(waiters.last().unwrap().1.grant() < t_c + 4 * SEC as i64);
        check_windows(&model.units, new, from, "speedup");
    }

    /// max_n may grow to the ring's length, not beyond; a grown window lets
    /// waiting units through at once; a shrunk one refuses a batch it can
    /// no longer hold.
    #[test]
    fn max_n_grows_to_the_ring_and_shrinks() {
        let fx = Fx::started((3, SEC), Hardcap::Window, T0);
        let mut model = Model::started((3, SEC), T0);
        let waiters = queue(&fx, &mut model, &[1; 5], T0);
        let before = fx.snapshot();
        let st = fx.st();
        assert_eq!(
            fx.sched
                .set_rate(&st, rate((RING_MIN + 1, SEC)), &|| T0 + 1),
            Err(Refused::RingTooSmall(RING_MIN))
        );
        assert_eq!(fx.snapshot(), before, "a refused change changed something");
        let t_c = T0 + 1;
        change(&fx, &mut model, (RING_MIN, SEC), t_c);
        assert_eq!(fx.sched.capacity(&st), Some(Some(RING_MIN)));
        let waiters = requeue(&fx, &mut model, waiters, t_c, t_c);
        assert!(waiters.iter().all(|(_, t)| t.grant() <= t_c));
        let (level, _) = fx.peek(1, t_c);
        // The last second holds the 5 units and 2 of the seeds (one every
        // T before the start).
        assert_eq!(level, RING_MIN - 7);
        change(&fx, &mut model, (2, SEC), t_c + 2);
        assert_eq!(fx.reserve_n(3, t_c + 2, i64::MAX).0, Reservation::Corrupt);
        assert_eq!(fx.sched.capacity(&st), Some(Some(2)));
    }

    /// Random waiters, has_fuel calls and changes of rate: every grant is
    /// the model's, and no window of any rate in force holds too many.
    #[test]
    fn random_changes_follow_the_model() {
        let mut rng = Rng(0x005e_ed0f_3a11);
        for round in 0..40 {
            let mut r = (
                rng.one_to(5),
                [SEC / 2, SEC, 3 * SEC][rng.below(3) as usize],
            );
            let fx = Fx::started(r, Hardcap::Window, T0);
            let mut model = Model::started(r, T0);
            let mut now = T0;
            let mut waiters: Vec<(u64, Ticket)> = Vec::new();
            let mut checked_from = 0;
            for _ in 0..200 {
                now += gap(&mut rng, r.1);
                // Waiters whose units are due went ahead.
                waiters.retain(|(_, t)| t.grant() > now);
                match rng.below(10) {
                    0 => {
                        check_windows(&model.units, r, checked_from, &format!("round {round}"));
                        let old = r;
                        while r == old {
                            r = (
                                rng.one_to(5),
                                [SEC / 2, SEC, 3 * SEC][rng.below(3) as usize],
                            );
                        }
                        change(&fx, &mut model, r, now);
                        checked_from = model.units.len();
                        waiters = requeue(&fx, &mut model, waiters, now, now);
                    }
                    1..=3 => {
                        let m = rng.one_to(r.0);
                        let want = model.due(m, now);
                        match fx.take(m, now) {
                            Reservation::Granted(g) => {
                                assert_eq!((g, want), (now, now), "round {round}");
                                model.claim(m, now);
                            }
                            Reservation::Later(g) => assert_eq!(g, want, "round {round}"),
                            other => panic!("round {round}: {other:?}"),
                        }
                    }
                    _ => {
                        let m = rng.one_to(r.0);
                        waiters.extend(queue(&fx, &mut model, &[m], now));
                    }
                }
            }
            check_windows(&model.units, r, checked_from, &format!("round {round}"));
        }
    }

    /// More units waiting than the ring holds: those the ring lost count as
    /// granted by the change (the safe side); no window is overfull, and no
    /// unit is later than one new period after the model's.
    #[test]
    fn queue_longer_than_the_ring_is_safe() {
        let (old, new) = ((100, SEC), (200, SEC));
        let fx = Fx::started(old, Hardcap::Window, T0);
        let mut model = Model::started(old, T0);
        let count = RING_MIN as usize + 1000;
        let waiters = queue(&fx, &mut model, &vec![1; count], T0);
        let t_c = T0 + SEC as i64;
        fx.set_rate(new, t_c);
        model.change(new, t_c);
        let st = fx.st();
        let mut granted: Vec<i64> = model.units.clone();
        let from = granted.len();
        let mut exact = Model {
            units: model.units.clone(),
            r: new,
        };
        for (i, (m, mut t)) in waiters.into_iter().enumerate() {
            match fx.sched.follow(&st, &mut t) {
                Some(Follow::At(g)) => assert!(g <= t_c),
                Some(Follow::Lost) => {
                    assert!(fx.sched.turn_reached(&st, &t), "waiter {i}");
                    let (g, _) = fx.wait(m, t_c);
                    let best = exact.claim(m, t_c);
                    assert!(
                        g >= best && g <= best + SEC as i64,
                        "waiter {i}: {g} vs {best}"
                    );
                    granted.push(g);
                }
                other => panic!("{other:?}"),
            }
        }
        check_windows(&granted, new, from, "long queue");
    }

    /// Sleepers that slept through more changes than the records hold
    /// keep their places: each change numbers the queue anew, and a waiter
    /// whose units were made void waits for its turn (the head reaching its
    /// first unit, renumbered by every change since), so the waiters
    /// reserve again in their order, and get what the model gives. The same
    /// with a few changes, which the records still hold.
    #[test]
    fn lapped_sleepers_keep_their_turns() {
        for changes in [3, RECORDS as u64 + 5, 10 * RECORDS as u64] {
            let what = format!("{changes} changes");
            let r = (3, SEC);
            let fx = Fx::started(r, Hardcap::Window, T0);
            let mut model = Model::started(r, T0);
            for _ in 0..3 {
                assert_eq!(fx.wait(1, T0).0, model.claim(1, T0), "{what}");
            }
            // Granted at T0, +1/3 s, +2/3 s; the queue after them.
            let ms = [1, 2, 1];
            let mut waiters = queue(&fx, &mut model, &ms, T0);
            for i in 0..changes {
                let r = if i % 2 == 0 { (4, SEC) } else { (3, SEC) };
                let t_c = T0 + 700 * MS as i64 + i64::try_from(i).unwrap();
                fx.set_rate(r, t_c);
                model.change(r, t_c);
            }
            let st = fx.st();
            for (_, t) in &mut waiters {
                assert_eq!(fx.sched.follow(&st, t), Some(Follow::Lost), "{what}");
            }
            let now = T0 + 800 * MS as i64;
            for i in 0..waiters.len() {
                for (j, (_, t)) in waiters.iter().enumerate() {
                    let reached = fx.sched.turn_reached(&st, t);
                    assert_eq!(reached, j <= i, "{what}: waiter {j} while {i} is due");
                }
                let m = waiters[i].0;
                assert_eq!(fx.wait(m, now).0, model.claim(m, now), "{what}: waiter {i}");
            }
        }
    }

    /// A change whose maker dies after any of its steps is finished (or,
    /// before its commit, undone) by the next who takes the change lock,
    /// exactly as if it had not died; meanwhile nobody reserves.
    #[test]
    fn dead_changer_is_recovered() {
        let old = (3, SEC);
        let len = RING_MIN;
        for steps in [1, 2, 3, 4, 5, len / 2, len + 2] {
            let fx = Fx::started(old, Hardcap::Window, T0);
            let mut model = Model::started(old, T0);
            let waiters = queue(&fx, &mut model, &[1, 2, 1], T0);
            let t_c = T0 + 1;
            let whole = fx.fork();
            whole.set_rate((5, SEC), t_c);
            let before = fx.snapshot();
            let st = fx.st();
            assert_eq!(
                fx.sched.change_window(&st, rate((5, SEC)), &|| t_c, steps),
                Ok(())
            );
            if steps < len + 3 {
                assert!(fx.sched.busy(&st), "steps {steps}");
                assert_eq!(fx.reserve_n(1, t_c, i64::MAX).0, Reservation::Busy);
                assert_eq!(fx.sched.peek(&st, 1, t_c), None);
                let mut t = waiters[2].1;
                assert_eq!(fx.sched.follow(&st, &mut t), Some(Follow::Wait));
                // A claimer that read the head before the freeze (same
                // number, another time) and finds rewritten entries sees that
                // the head moved: it looks again, it does not call the ring
                // corrupt.
                let rewritten = steps == len + 2;
                assert_eq!(
                    crate::schedule::window::fill_pending(&st, before.head),
                    Some(!rewritten)
                );
            }
            assert!(fx.sched.recover_window(&st));
            assert!(!fx.sched.busy(&st));
            if steps == 1 {
                assert_eq!(fx.snapshot(), before, "undone");
            } else {
                assert_eq!(fx.snapshot(), whole.snapshot(), "steps {steps}");
            }
        }
    }

    /// A cancelled waiter gives its units back: those before it keep
    /// theirs, those after it reserve again one place up, in their order,
    /// as if it had never come; a unit due already, or a ticket a change
    /// went past, cannot be given back (nothing changes).
    #[test]
    fn give_back_moves_the_waiters_behind_up() {
        let r = (3, SEC);
        let fx = Fx::started(r, Hardcap::Window, T0);
        let st = fx.st();
        let mut model = Model::started(r, T0);
        let ms = [1, 1, 2, 1, 1, 2, 1];
        let mut waiters = queue(&fx, &mut model, &ms, T0);
        let now = T0 + 10;
        // Due already: refused.
        let before = fx.snapshot();
        assert!(!fx.sched.give_back(&st, &waiters[0].1, &|| now));
        assert_eq!(fx.snapshot(), before);
        for cancel in [2, 3] {
            // Cancel waiter `cancel` of those left.
            let (_, gone) = waiters.remove(cancel);
            let old: Vec<i64> = waiters.iter().map(|(_, t)| t.grant()).collect();
            assert!(
                fx.sched.give_back(&st, &gone, &|| now),
                "give back {cancel}"
            );
            let kept = RING_MIN as usize
                + waiters[..cancel]
                    .iter()
                    .map(|&(m, _)| m as usize)
                    .sum::<usize>();
            model.units.truncate(kept);
            let mut lost = Vec::new();
            for (i, (m, t)) in waiters.iter_mut().enumerate() {
                match fx.sched.follow(&st, t) {
                    Some(Follow::At(g)) => assert!(i < cancel && g == old[i], "waiter {i}"),
                    Some(Follow::Lost) => {
                        assert!(i >= cancel, "waiter {i} lost its units");
                        lost.push((i, *m));
                    }
                    other => panic!("waiter {i}: {other:?}"),
                }
            }
            for (j, &(i, m)) in lost.iter().enumerate() {
                assert!(
                    fx.sched.turn_reached(&st, &waiters[i].1),
                    "waiter {i}'s turn"
                );
                if let Some(&(next, _)) = lost.get(j + 1) {
                    assert!(
                        !fx.sched.turn_reached(&st, &waiters[next].1),
                        "waiter {next} early"
                    );
                }
                let (g, t) = fx.wait(m, now);
                assert_eq!(g, model.claim(m, now), "waiter {i} again");
                assert!(g <= old[i], "waiter {i} moved later");
                waiters[i].1 = t;
            }
        }
        check_windows(&model.units, r, 0, "give-backs");
        // A ticket that a change went past is not current: refused.
        let stale = waiters.last().unwrap().1;
        fx.set_rate((3, 2 * SEC), now);
        let before = fx.snapshot();
        assert!(!fx.sched.give_back(&st, &stale, &|| now));
        assert_eq!(fx.snapshot(), before);
    }

    /// The last waiter's units given back are the next comer's.
    #[test]
    fn give_back_of_the_last_waiter_frees_its_place() {
        let fx = Fx::started((2, SEC), Hardcap::Window, T0);
        let st = fx.st();
        for _ in 0..4 {
            fx.wait(1, T0);
        }
        let (g, t) = fx.wait(1, T0);
        assert!(fx.sched.give_back(&st, &t, &|| T0 + 1));
        assert_eq!(fx.wait(1, T0 + 2).0, g);
    }

    /// A change while stopped; the next start opens an empty tank at the
    /// new rate.
    #[test]
    fn change_while_stopped_then_start() {
        let fx = Fx::new((3, SEC), Hardcap::Window);
        fx.set_rate((5, SEC), T0 - 10);
        fx.sched.start(&fx.st(), T0, None);
        assert_eq!(fx.drain(T0), (1, T0 + 200_000_000));
        let g: Vec<i64> = (0..6).map(|_| fx.wait(1, T0).0).collect();
        let want: Vec<i64> = (1..=6).map(|j| T0 + slot((5, SEC), j)).collect();
        assert_eq!(g, want);
    }
}
