//! Unit tests of the schedule with explicit times: no clock, no sleeping.
//!
//! Every expected grant time is computed here independently of the code
//! under test (`slot` is `ceil(k * per_ns / max_n)` in `u128`), and every
//! guarantee of docs/design.md ("Hardcaps") is checked exactly.
//!
//! Models used:
//! - a waiter: `reserve(now, i64::MAX)` (reserves and sleeps to its grant);
//! - `has_fuel`: `reserve(now, now)` (takes only what is there now);
//! - a waiter with a timeout: `reserve(now, deadline)`.

use super::memory::Memory;
use super::*;
use crate::store::shm::layout::unpack_entry as unpack;

const SEC: u64 = 1_000_000_000;
/// A start time that is a multiple of nothing in particular.
const T0: i64 = 7_000_000_000_123;

const ALL: [Hardcap; 4] = [Hardcap::Limit, Hardcap::One, Hardcap::None, Hardcap::Window];

/// `ceil(k * per_ns / max_n)`: the offset of unit k from the start.
fn slot(max_n: u64, per_ns: u64, k: u64) -> i64 {
    let num = u128::from(k) * u128::from(per_ns);
    let den = u128::from(max_n);
    i64::try_from(num.div_ceil(den)).unwrap()
}

/// `floor(d_ns * max_n / per_ns)`: whole units of `T` in `d_ns`.
fn units_in(max_n: u64, per_ns: u64, d_ns: i64) -> u64 {
    assert!(d_ns >= 0);
    let q = u128::try_from(d_ns).unwrap() * u128::from(max_n) / u128::from(per_ns);
    u64::try_from(q).unwrap()
}

/// A deterministic xorshift64 generator (tests_changes.rs uses it too).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// True with probability `pct` percent.
    pub(super) fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    /// A number in `1..=n`.
    pub(super) fn one_to(&mut self, n: u64) -> u64 {
        1 + self.below(n)
    }
}

/// A schedule and its own state (its words read as `fx.tat`, `fx.head`...).
struct Fx {
    sched: Schedule,
    max_n: u64,
    per_ns: u64,
    memory: Memory,
    /// Granted units not yet confirmed: a restart confirms those due by the
    /// stop, as their waiters would have.
    pending: std::sync::Mutex<Vec<(i64, Ticket)>>,
}

impl std::ops::Deref for Fx {
    type Target = Memory;

    fn deref(&self) -> &Memory {
        &self.memory
    }
}

impl Fx {
    /// Made and initialised, not started.
    fn new(max_n: u64, per_ns: u64, hardcap: Hardcap) -> Self {
        let sched = Schedule::new(Rate::new(max_n, per_ns).unwrap(), hardcap);
        let memory = Memory::for_schedule(&sched);
        Self {
            sched,
            max_n,
            per_ns,
            memory,
            pending: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Made, initialised and started (first run) at `t0`.
    fn started(max_n: u64, per_ns: u64, hardcap: Hardcap, t0: i64) -> Self {
        let fx = Self::new(max_n, per_ns, hardcap);
        fx.start(t0, None);
        fx
    }

    fn hc(&self) -> Hardcap {
        self.sched.hardcap()
    }

    fn start(&self, t: i64, last_stop: Option<i64>) {
        self.start_steps(t, last_stop, u64::MAX);
    }

    /// [`start`](Self::start) by a starter that dies after giving back
    /// `steps` entries (`WINDOW`).
    fn start_steps(&self, t: i64, last_stop: Option<i64>, steps: u64) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        for (grant, ticket) in pending {
            if last_stop.is_some_and(|stop| grant <= stop) {
                self.sched.confirm(&self.st(), ticket);
            }
        }
        if self.hc() == Hardcap::Window {
            self.sched
                .start_window_steps(&self.st(), t, last_stop, steps);
        } else {
            self.sched.start(&self.st(), t, last_stop);
        }
    }

    /// Reserves; a granted unit is confirmed at the next restart if it is
    /// due by the stop (its waiter went ahead), else it was cut short.
    fn reserve(&self, now: i64, latest: i64) -> Reservation {
        let (r, ticket) = self.sched.reserve_ticket(&self.st(), now, latest);
        if let Reservation::Granted(grant) = r {
            self.pending.lock().unwrap().push((grant, ticket));
        }
        r
    }

    /// The has_fuel model.
    fn take(&self, now: i64) -> Reservation {
        self.reserve(now, now)
    }

    /// A waiter without timeout: must be granted.
    fn wait(&self, now: i64) -> i64 {
        match self.reserve(now, i64::MAX) {
            Reservation::Granted(g) => g,
            other => panic!("{:?}: waiter at {now} got {other:?}", self.hc()),
        }
    }

    /// Takes with has_fuel at `now` until the tank is empty; returns how many
    /// were granted (each asserted to be granted at `now`) and the `Later`
    /// time.
    fn drain(&self, now: i64) -> (u64, i64) {
        let mut count = 0;
        loop {
            match self.take(now) {
                Reservation::Granted(g) => {
                    assert_eq!(
                        g,
                        now,
                        "{:?}: has_fuel granted a time other than now",
                        self.hc()
                    );
                    count += 1;
                    assert!(
                        count <= 10 * self.max_n + 10,
                        "{:?}: tank never empties",
                        self.hc()
                    );
                }
                Reservation::Later(t) => return (count, t),
                Reservation::Corrupt | Reservation::Busy => panic!("{:?}: Corrupt", self.hc()),
            }
        }
    }

    fn snapshot(&self) -> (u128, u128, Vec<u128>) {
        (
            self.tat.load(Ordering::SeqCst),
            self.head.load(Ordering::SeqCst),
            self.ring.iter().map(|e| e.load(Ordering::SeqCst)).collect(),
        )
    }

    fn slot(&self, k: u64) -> i64 {
        slot(self.max_n, self.per_ns, k)
    }

    fn per(&self) -> i64 {
        i64::try_from(self.per_ns).unwrap()
    }
}

/// Odd rates for the drift checks: (max_n, per_ns, grants to check).
const DRIFT_RATES: [(u64, u64, u64); 8] = [
    (3, SEC, 3_000),
    (7, 1_000_000, 20_000),
    (1_000_000, SEC, 1_100_000),
    (999_983, SEC, 1_100_000),
    (2, 3, 10_000),
    (1, 7, 1_000),
    (10, SEC, 1_000),
    (6, 10 * SEC + 1, 1_000),
];

/// Saturated demand, one waiter: it reserves at the instant it was granted
/// the previous unit. Grant k must be at exactly `t0 + ceil(k*T)`, and the
/// number of grants by any time t is exactly `1 + floor((t - t0)/T)`.
fn check_saturated_sequential(hardcap: Hardcap) {
    let mut failures = Vec::new();
    for (max_n, per_ns, count) in DRIFT_RATES {
        let fx = Fx::started(max_n, per_ns, hardcap, T0);
        let mut now = T0;
        let mut grants = Vec::with_capacity(count as usize);
        for k in 0..count {
            let g = fx.wait(now);
            if g != T0 + slot(max_n, per_ns, k) {
                failures.push(format!(
                    "{hardcap:?} {max_n} per {per_ns} ns: grant {k} at t0+{} instead of t0+{} \
                     (drift {} ns)",
                    g - T0,
                    slot(max_n, per_ns, k),
                    g - T0 - slot(max_n, per_ns, k)
                ));
                break;
            }
            grants.push(g);
            now = g;
        }
        if grants.len() as u64 == count {
            check_count_by_time(&grants, max_n, per_ns);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Saturated demand, has_fuel: a poller that asks at t0 and then exactly at
/// each instant `Later` named (the first nanosecond its unit is there) takes
/// unit k at exactly `t0 + ceil(k*T)`.
fn check_saturated_poller(hardcap: Hardcap) {
    let mut failures = Vec::new();
    for (max_n, per_ns, count) in DRIFT_RATES {
        let count = count.min(200_000);
        let fx = Fx::started(max_n, per_ns, hardcap, T0);
        let mut now = T0;
        let mut grants = Vec::with_capacity(count as usize);
        for k in 0..count {
            let due = T0 + slot(max_n, per_ns, k);
            let (n, later) = fx.drain(now);
            if n != 1 || now != due {
                failures.push(format!(
                    "{hardcap:?} {max_n} per {per_ns} ns: unit {k} taken at t0+{} (x{n}) instead of \
                     t0+{} (drift {} ns)",
                    now - T0,
                    due - T0,
                    now - due
                ));
                break;
            }
            grants.push(now);
            now = later;
        }
        if grants.len() as u64 == count {
            check_count_by_time(&grants, max_n, per_ns);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Saturated demand, many waiters arriving at once at t0 (and more at every
/// grant instant): grant k at exactly `t0 + ceil(k*T)`.
fn check_saturated_many(hardcap: Hardcap) {
    for (max_n, per_ns, count) in DRIFT_RATES {
        let count = count.min(3 * max_n + 50).min(100_000);
        let fx = Fx::started(max_n, per_ns, hardcap, T0);
        let mut grants = Vec::new();
        for k in 0..count {
            let g = fx.wait(T0);
            assert_eq!(
                g - T0,
                slot(max_n, per_ns, k),
                "{hardcap:?} {max_n}/{per_ns}: waiter {k}"
            );
            grants.push(g);
        }
        check_count_by_time(&grants, max_n, per_ns);
        // More waiters arriving later, while reservations are pending, keep
        // the chain: each arrives at the grant time of the previous one.
        let fx = Fx::started(max_n, per_ns, hardcap, T0);
        let mut pending = std::collections::VecDeque::new();
        for k in 0..count {
            let now = pending.front().copied().unwrap_or(T0);
            if pending.len() > 5 {
                pending.pop_front();
            }
            let g = fx.wait(now);
            assert_eq!(
                g - T0,
                slot(max_n, per_ns, k),
                "{hardcap:?} {max_n}/{per_ns}: waiter {k}"
            );
            pending.push_back(g);
        }
    }
}

/// The grants are `t0 + ceil(k*T)`: the count by t is exact for every t.
fn check_count_by_time(grants: &[i64], max_n: u64, per_ns: u64) {
    let step = (grants.len() / 5_000).max(1);
    for g in grants.iter().step_by(step) {
        for t in [*g - 1, *g, *g + 1] {
            if t < T0 {
                continue;
            }
            let by_t = grants.partition_point(|&x| x <= t) as u64;
            let last = *grants.last().unwrap();
            if t < last {
                assert_eq!(
                    by_t,
                    1 + units_in(max_n, per_ns, t - T0),
                    "{max_n}/{per_ns}: grants by t0+{}",
                    t - T0
                );
            }
        }
    }
}

/// Random arrivals: gap before the next arrival.
fn gap(rng: &mut Rng, per: i64) -> i64 {
    let per = per.max(1) as u64;
    let t = (per / 8).max(1);
    (match rng.below(10) {
        0..=3 => 0,
        4..=6 => rng.below(t),
        7..=8 => rng.below(per),
        _ => per + rng.below(2 * per),
    }) as i64
}

/// What a random caller does.
#[derive(Clone, Copy, Debug)]
enum Call {
    Waiter,
    HasFuel,
    /// With a timeout of this many ns (shown in failure messages).
    Timeout(#[expect(dead_code, reason = "read by Debug only")] i64),
}

fn call(rng: &mut Rng, now: i64, per: i64) -> (Call, i64) {
    match rng.below(20) {
        0..=9 => (Call::Waiter, i64::MAX),
        10..=16 => (Call::HasFuel, now),
        _ => {
            let d = rng.below(2 * per.max(1) as u64) as i64;
            (Call::Timeout(d), now + d)
        }
    }
}

/// Runs `calls` random arrivals from `t0`; returns (arrival, grant) of every
/// granted call, and checks that every `Later` left the state untouched and
/// that `Later(t)` is after `latest`.
fn random_run(fx: &Fx, rng: &mut Rng, t0: i64, calls: usize) -> Vec<(i64, i64, Call)> {
    let mut now = t0;
    let mut out = Vec::new();
    for _ in 0..calls {
        now += gap(rng, fx.per());
        let (c, latest) = call(rng, now, fx.per());
        let before = fx.snapshot();
        match fx.reserve(now, latest) {
            Reservation::Granted(g) => {
                assert!(
                    g >= now && g <= latest,
                    "{:?}: granted {g} outside [{now}, {latest}]",
                    fx.hc()
                );
                out.push((now, g, c));
            }
            Reservation::Later(t) => {
                assert!(t > latest, "{:?}: Later({t}) but latest {latest}", fx.hc());
                assert_eq!(
                    fx.snapshot(),
                    before,
                    "{:?}: a refused call changed the state",
                    fx.hc()
                );
            }
            Reservation::Corrupt | Reservation::Busy => panic!("{:?}: Corrupt", fx.hc()),
        }
    }
    out
}

/// Grants never go backwards (first come, first served).
fn check_fifo(grants: &[(i64, i64, Call)], what: &str) {
    for w in grants.windows(2) {
        assert!(
            w[1].1 >= w[0].1,
            "{what}: grant {} after grant {}",
            w[1].1,
            w[0].1
        );
    }
}

/// No half-open window `[s, s + per)` holds more than `max_n` of `times`
/// (sorted); every window starting at a grant time is checked.
fn check_windows(times: &[i64], max_n: u64, per: i64, what: &str) {
    for (i, &s) in times.iter().enumerate() {
        let lo = times[..=i].partition_point(|&x| x < s);
        let hi = times.partition_point(|&x| x < s.saturating_add(per));
        assert!(
            (hi - lo) as u64 <= max_n,
            "{what}: {} grants in [{s}, {s}+{per}) (max_n {max_n})",
            hi - lo
        );
    }
}

/// Common checks for one hardcap.
mod common {
    use super::*;

    /// has_fuel that is refused reserves nothing: the state is unchanged and
    /// a waiter at the same instant gets the grant it would have got anyway.
    #[test]
    fn refused_has_fuel_reserves_nothing() {
        for hc in ALL {
            let a = Fx::started(3, SEC, hc, T0);
            let b = Fx::started(3, SEC, hc, T0);
            assert_eq!(a.take(T0), Reservation::Granted(T0), "{hc:?}");
            assert_eq!(b.take(T0), Reservation::Granted(T0), "{hc:?}");
            let now = T0 + 1_000;
            let before = a.snapshot();
            assert_eq!(a.take(now), Reservation::Later(T0 + a.slot(1)), "{hc:?}");
            assert_eq!(a.take(now), Reservation::Later(T0 + a.slot(1)), "{hc:?}");
            assert_eq!(
                a.snapshot(),
                before,
                "{hc:?}: refused has_fuel changed the state"
            );
            for k in 1..10 {
                let ga = a.wait(now);
                let gb = b.wait(now);
                assert_eq!(ga, gb, "{hc:?}");
                assert_eq!(ga, T0 + a.slot(k), "{hc:?}");
            }
            // Pending reservations: has_fuel must not jump the queue.
            assert_eq!(a.take(now), Reservation::Later(T0 + a.slot(10)), "{hc:?}");
            assert_eq!(a.wait(now), T0 + a.slot(10), "{hc:?}");
        }
    }

    /// A waiter whose grant would come after its `latest` reserves nothing.
    #[test]
    fn waiter_past_its_deadline_reserves_nothing() {
        for hc in ALL {
            let fx = Fx::started(7, 1_000_000, hc, T0);
            assert_eq!(fx.wait(T0), T0, "{hc:?}");
            let due = T0 + fx.slot(1);
            let before = fx.snapshot();
            assert_eq!(fx.reserve(T0, due - 1), Reservation::Later(due), "{hc:?}");
            assert_eq!(
                fx.reserve(T0 + 5, T0 + 6),
                Reservation::Later(due),
                "{hc:?}"
            );
            assert_eq!(
                fx.snapshot(),
                before,
                "{hc:?}: a timed-out waiter changed the state"
            );
            // A deadline exactly at the grant is enough.
            assert_eq!(fx.reserve(T0, due), Reservation::Granted(due), "{hc:?}");
            assert_eq!(
                fx.reserve(T0, i64::MAX),
                Reservation::Granted(T0 + fx.slot(2)),
                "{hc:?}"
            );
        }
    }

    /// The tank starts empty at start: the first unit is there at the start
    /// instant (not before), then one every T.
    #[test]
    fn tank_starts_empty() {
        for hc in ALL {
            for (max_n, per_ns) in [(3, SEC), (7, 1_000_000), (1, 10), (1000, SEC)] {
                let fx = Fx::started(max_n, per_ns, hc, T0);
                assert_eq!(
                    fx.drain(T0),
                    (1, T0 + fx.slot(1)),
                    "{hc:?} {max_n}/{per_ns}"
                );
                if per_ns > 1 {
                    assert_eq!(
                        fx.drain(T0 + fx.slot(1) - 1),
                        (0, T0 + fx.slot(1)),
                        "{hc:?} {max_n}/{per_ns}"
                    );
                }
                // (ONE: see one::saturated_poller_exact.)
                let next = fx.drain(T0 + fx.slot(1) + 1);
                // Arrived 1 ns late: a tank of capacity 1 restarts from now
                // (a WINDOW of 1 too: the next grant is one per later).
                if hc == Hardcap::One || (hc != Hardcap::None && max_n == 1) {
                    assert_eq!(
                        next,
                        (1, T0 + fx.slot(1) + 1 + fx.slot(1)),
                        "{hc:?} {max_n}/{per_ns}"
                    );
                } else {
                    assert_eq!(next, (1, T0 + fx.slot(2)), "{hc:?} {max_n}/{per_ns}");
                }
            }
        }
    }

    #[test]
    fn rate_and_ring_len() {
        assert!(Rate::new(0, 1).is_none());
        assert!(Rate::new(1, 0).is_none());
        assert!(Rate::new(MAX_N + 1, 1).is_none());
        assert!(Rate::new(1, MAX_PER_NS + 1).is_none());
        assert!(Rate::new(MAX_N, MAX_PER_NS).is_some());
        let r = Rate::new(3, SEC).unwrap();
        assert_eq!(
            (
                r.offset_ns(0),
                r.offset_ns(1),
                r.offset_ns(2),
                r.offset_ns(3)
            ),
            (0, 333_333_334, 666_666_667, 1_000_000_000)
        );
        // At least RING_MIN entries, so that max_n may grow.
        assert_eq!(Schedule::new(r, Hardcap::Window).ring_len(), RING_MIN);
        let big = Rate::new(RING_MIN + 1, SEC).unwrap();
        assert_eq!(Schedule::new(big, Hardcap::Window).ring_len(), RING_MIN + 1);
        for hc in [Hardcap::Limit, Hardcap::One, Hardcap::None] {
            assert_eq!(Schedule::new(r, hc).ring_len(), 0);
        }
        for (v, hc) in ALL.iter().enumerate() {
            assert_eq!(Hardcap::try_from(v as u32), Ok(*hc));
        }
        assert_eq!(Hardcap::try_from(4), Err(4));
    }

    /// The largest rates accepted do not overflow.
    #[test]
    fn extreme_rates_do_not_overflow() {
        for hc in [Hardcap::Limit, Hardcap::One, Hardcap::None] {
            for (max_n, per_ns) in [(MAX_N, MAX_PER_NS), (MAX_N, 1), (1, MAX_PER_NS)] {
                let t0 = i64::MAX / 4;
                let fx = Fx::started(max_n, per_ns, hc, t0);
                assert_eq!(
                    fx.take(t0),
                    Reservation::Granted(t0),
                    "{hc:?} {max_n}/{per_ns}"
                );
                let g = fx.wait(t0);
                assert_eq!(g, t0 + slot(max_n, per_ns, 1), "{hc:?} {max_n}/{per_ns}");
            }
        }
        let fx = Fx::started(2, MAX_PER_NS, Hardcap::Window, i64::MAX / 4);
        assert_eq!(fx.wait(i64::MAX / 4), i64::MAX / 4);
        assert_eq!(fx.wait(i64::MAX / 4), i64::MAX / 4 + slot(2, MAX_PER_NS, 1));
    }
}

/// `LIMIT`: token bucket of capacity `max_n` and rate `max_n/per`.
mod limit {
    use super::*;

    #[test]
    fn saturated_single_waiter_exact() {
        check_saturated_sequential(Hardcap::Limit);
    }

    #[test]
    fn saturated_many_waiters_exact() {
        check_saturated_many(Hardcap::Limit);
    }

    #[test]
    fn saturated_poller_exact() {
        check_saturated_poller(Hardcap::Limit);
    }

    /// After idling for at least `per`: exactly `max_n` at once, then one
    /// every T; after idling a little less: one fewer.
    #[test]
    fn burst_after_idle_is_exactly_max_n() {
        for (max_n, per_ns) in [
            (3, SEC),
            (7, 1_000_000),
            (1000, SEC),
            (999_983, SEC),
            (1, 10),
            (2, 3),
        ] {
            let what = format!("{max_n}/{per_ns}");
            let fx = Fx::started(max_n, per_ns, Hardcap::Limit, T0);
            assert_eq!(fx.drain(T0), (1, T0 + fx.slot(1)), "{what}");
            // The max_n-th unit after the one taken at t0 is due at t0+per.
            let t1 = T0 + fx.per();
            if per_ns > 1 && max_n > 1 {
                let twin = Fx::started(max_n, per_ns, Hardcap::Limit, T0);
                twin.drain(T0);
                assert_eq!(twin.drain(t1 - 1), (max_n - 1, t1), "{what}: idle per-1ns");
            }
            assert_eq!(fx.drain(t1), (max_n, t1 + fx.slot(1)), "{what}: idle per");
            for k in 1..5 {
                assert_eq!(fx.wait(t1), t1 + fx.slot(k), "{what}");
            }
            // A long idle: still only max_n (the tank holds max_n).
            let t2 = t1 + 10 * fx.per() + 12_345;
            assert_eq!(fx.drain(t2), (max_n, t2 + fx.slot(1)), "{what}: long idle");
            for k in 1..=(2 * max_n).min(5_000) {
                assert_eq!(fx.wait(t2), t2 + fx.slot(k), "{what}: after burst");
            }
        }
    }

    /// Idling exactly `per` after a saturated phase refills exactly max_n.
    #[test]
    fn refill_after_saturated_phase() {
        let fx = Fx::started(7, 1_000_000, Hardcap::Limit, T0);
        let mut g = T0;
        for k in 0..50 {
            g = fx.wait(g);
            assert_eq!(g, T0 + fx.slot(k));
        }
        let t = T0 + fx.slot(49) + fx.per();
        // slot(49) = 7 ms exactly: t = t0 + 56 T, units 50..=56 are due.
        assert_eq!(t, T0 + fx.slot(56));
        assert_eq!(fx.drain(t - 1), (6, t));
        assert_eq!(fx.drain(t), (1, T0 + fx.slot(57)));
    }

    /// Token-bucket model, independent of the code: the level in units of
    /// `1/per` of a unit of fuel, accruing `max_n` per ns, capacity
    /// `cap * per`, one unit costs `per`.
    struct Bucket {
        n: u128,
        per: u128,
        cap: u128,
        level: u128,
        t: i64,
        last: i64,
    }

    impl Bucket {
        fn new(max_n: u64, per_ns: u64, t0: i64) -> Self {
            let per = u128::from(per_ns);
            Self {
                n: u128::from(max_n),
                per,
                cap: u128::from(max_n) * per,
                level: per, // the first unit is there at the start instant
                t: t0,
                last: t0,
            }
        }

        fn level_at(&self, t: i64) -> u128 {
            (self.level + self.n * (t - self.t) as u128).min(self.cap)
        }

        /// Ok(grant) or Err(later).
        fn call(&mut self, now: i64, latest: i64) -> Result<i64, i64> {
            let g0 = now.max(self.last);
            let g = if self.level_at(g0) >= self.per {
                g0
            } else {
                self.t + (self.per - self.level).div_ceil(self.n) as i64
            };
            if g > latest {
                return Err(g);
            }
            self.level = self.level_at(g) - self.per;
            self.t = g;
            self.last = g;
            Ok(g)
        }
    }

    /// Random arrivals (waiters, has_fuel, waiters with timeouts), checked
    /// against the token-bucket model, and the bucket bound checked over
    /// every pair of grants: grants in `[g_i, g_j]` never exceed
    /// `max_n + floor((g_j - g_i)/T)`.
    #[test]
    fn random_arrivals_follow_the_token_bucket() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for (max_n, per_ns) in [
            (3, SEC),
            (7, 1_000_000),
            (2, 3),
            (5, 17),
            (64, 1000),
            (10, 999_999_937),
        ] {
            for round in 0..4 {
                let what = format!("{max_n}/{per_ns} round {round}");
                let fx = Fx::started(max_n, per_ns, Hardcap::Limit, T0);
                let mut model = Bucket::new(max_n, per_ns, T0);
                let per = fx.per();
                let mut now = T0;
                let mut grants = Vec::new();
                for i in 0..1500 {
                    now += gap(&mut rng, per);
                    let (c, latest) = call(&mut rng, now, per);
                    let before = fx.snapshot();
                    let got = fx.reserve(now, latest);
                    let want = match model.call(now, latest) {
                        Ok(g) => Reservation::Granted(g),
                        Err(t) => Reservation::Later(t),
                    };
                    assert_eq!(got, want, "{what}: call {i} {c:?} at t0+{}", now - T0);
                    match got {
                        Reservation::Granted(g) => grants.push(g),
                        _ => assert_eq!(fx.snapshot(), before, "{what}"),
                    }
                }
                for i in 0..grants.len() {
                    let by_t = i as u64 + 1;
                    assert!(
                        by_t <= 1 + units_in(max_n, per_ns, grants[i] - T0),
                        "{what}: from start"
                    );
                    for j in i..grants.len() {
                        let n = (j - i + 1) as u64;
                        assert!(
                            n <= max_n + units_in(max_n, per_ns, grants[j] - grants[i]),
                            "{what}: {n} grants in [{}, {}]",
                            grants[i],
                            grants[j]
                        );
                    }
                }
            }
        }
    }

    /// Restart: reservations granted after the stop are given back; the
    /// token bucket holds across the pause; the tank starts empty.
    #[test]
    fn restart_gives_back_cut_short_reservations() {
        let fx = Fx::started(3, SEC, Hardcap::Limit, T0);
        assert_eq!(fx.wait(T0), T0);
        for k in 1..=3 {
            assert_eq!(fx.wait(T0), T0 + fx.slot(k));
        }
        // Stopped when grant 1 happened: grants 2 and 3 were cut short.
        let stop = T0 + fx.slot(1);
        fx.start(stop, Some(stop));
        // Immediately restarted: the next unit is the one grant 2 had.
        assert_eq!(fx.drain(stop), (0, T0 + fx.slot(2)));
        assert_eq!(fx.wait(stop), T0 + fx.slot(2));
        assert_eq!(fx.wait(stop), T0 + fx.slot(3));

        // Restarted long after: the tank starts empty, cut-short units or not.
        let fx = Fx::started(3, SEC, Hardcap::Limit, T0);
        for k in 0..=3 {
            assert_eq!(fx.wait(T0), T0 + fx.slot(k));
        }
        let t1 = T0 + 100 * SEC as i64;
        fx.start(t1, Some(stop));
        assert_eq!(fx.drain(t1), (1, t1 + fx.slot(1)));
        assert_eq!(fx.wait(t1), t1 + fx.slot(1));
    }

    /// A burst just before the stop still counts after an immediate restart.
    #[test]
    fn restart_keeps_the_bucket_across_a_short_pause() {
        let fx = Fx::started(3, SEC, Hardcap::Limit, T0);
        fx.drain(T0);
        let t = T0 + 10 * SEC as i64;
        assert_eq!(fx.drain(t), (3, t + fx.slot(1)));
        // Stop and restart at once: the bucket is empty, next unit at t+T.
        fx.start(t, Some(t));
        assert_eq!(fx.drain(t), (0, t + fx.slot(1)));
        // Stop at t+0.5 s, restart at t+0.5 s: the tank starts empty at the
        // restart (one unit there), the unit due at t+T is there too.
        let fx = Fx::started(3, SEC, Hardcap::Limit, T0);
        fx.drain(T0);
        fx.drain(t);
        let half = t + 500_000_000;
        fx.start(half, Some(half));
        assert_eq!(fx.drain(half), (1, half + fx.slot(1)));
    }
}

/// `ONE`: grants at least T apart; never more than max_n per window.
mod one {
    use super::*;

    #[test]
    fn saturated_single_waiter_exact() {
        check_saturated_sequential(Hardcap::One);
    }

    #[test]
    fn saturated_many_waiters_exact() {
        check_saturated_many(Hardcap::One);
    }

    /// BUG (see the report): a has_fuel poller that takes each unit at the
    /// first nanosecond it is there drifts by up to `(max_n-1)/max_n` ns per
    /// unit when `T` is fractional: `reserve_gcra` restarts a bounded tank's
    /// schedule from `now` although `now` is only the rounded-up due instant.
    #[test]
    fn saturated_poller_exact() {
        check_saturated_poller(Hardcap::One);
    }

    /// After idling: exactly one immediate grant, then one every T.
    #[test]
    fn after_idle_exactly_one() {
        for (max_n, per_ns) in [(3, SEC), (7, 1_000_000), (1000, SEC), (1, 10)] {
            let what = format!("{max_n}/{per_ns}");
            let fx = Fx::started(max_n, per_ns, Hardcap::One, T0);
            assert_eq!(fx.drain(T0), (1, T0 + fx.slot(1)), "{what}");
            let t1 = T0 + 10 * fx.per() + 777;
            assert_eq!(fx.drain(t1), (1, t1 + fx.slot(1)), "{what}");
            for k in 1..5 {
                assert_eq!(fx.wait(t1), t1 + fx.slot(k), "{what}");
            }
        }
    }

    /// Random arrivals: consecutive grants at least floor(T) apart, any
    /// max_n+1 consecutive grants span at least per, grants by t within
    /// `1 + floor((t-t0)/T)`, and no grant later than needed.
    #[test]
    fn random_arrivals_keep_spacing() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for (max_n, per_ns) in [
            (3, SEC),
            (7, 1_000_000),
            (2, 3),
            (5, 17),
            (64, 1000),
            (1, 10),
        ] {
            for round in 0..4 {
                let what = format!("{max_n}/{per_ns} round {round}");
                let fx = Fx::started(max_n, per_ns, Hardcap::One, T0);
                let grants = random_run(&fx, &mut rng, T0, 1500);
                check_fifo(&grants, &what);
                let floor_t = (per_ns / max_n) as i64;
                let ceil_t = slot(max_n, per_ns, 1);
                for (i, &(a, g, _)) in grants.iter().enumerate() {
                    assert!(i as u64 <= units_in(max_n, per_ns, g - T0), "{what}");
                    if i == 0 {
                        assert_eq!(g, a, "{what}: first grant");
                        continue;
                    }
                    let prev = grants[i - 1].1;
                    assert!(
                        g - prev >= floor_t,
                        "{what}: grants {prev} and {g} closer than floor(T)"
                    );
                    assert!(
                        g <= a.max(prev + ceil_t),
                        "{what}: grant {g} waited for nothing"
                    );
                    if i >= max_n as usize {
                        let first = grants[i - max_n as usize].1;
                        assert!(
                            g - first >= fx.per(),
                            "{what}: {} grants within {}",
                            max_n + 1,
                            g - first
                        );
                    }
                }
                let times: Vec<i64> = grants.iter().map(|x| x.1).collect();
                check_windows(&times, max_n, fx.per(), &what);
            }
        }
    }

    /// Restart: the cut-short reservation is given back, and a ONE throttle
    /// restarted at once still waits T after its last real grant.
    #[test]
    fn restart_waits_t_after_last_real_grant() {
        let fx = Fx::started(3, SEC, Hardcap::One, T0);
        assert_eq!(fx.wait(T0), T0);
        assert_eq!(fx.wait(T0), T0 + fx.slot(1));
        assert_eq!(fx.wait(T0), T0 + fx.slot(2));
        let stop = T0 + fx.slot(1) + 5; // grant 1 real, grant 2 cut short
        fx.start(stop, Some(stop));
        assert_eq!(fx.drain(stop), (0, T0 + fx.slot(2)));
        assert_eq!(fx.wait(stop), T0 + fx.slot(2));

        // Granted at the stop instant, restarted at once: T later.
        let fx = Fx::started(3, SEC, Hardcap::One, T0);
        let x = T0 + 5 * SEC as i64;
        assert_eq!(fx.drain(x), (1, x + fx.slot(1)));
        fx.start(x, Some(x));
        assert_eq!(fx.drain(x), (0, x + fx.slot(1)));
        let y = x + fx.slot(1) + 1_000;
        assert_eq!(fx.drain(y), (1, y + fx.slot(1)));

        // Restarted long after: one at the restart, then T.
        let t1 = x + 100 * SEC as i64;
        fx.start(t1, Some(x + fx.slot(1)));
        assert_eq!(fx.drain(t1), (1, t1 + fx.slot(1)));
    }
}

/// `NONE`: grants by t never exceed `1 + floor((t - t0)/T)` over running
/// time; slow phases are caught up.
mod none {
    use super::*;

    #[test]
    fn saturated_single_waiter_exact() {
        check_saturated_sequential(Hardcap::None);
    }

    #[test]
    fn saturated_many_waiters_exact() {
        check_saturated_many(Hardcap::None);
    }

    #[test]
    fn saturated_poller_exact() {
        check_saturated_poller(Hardcap::None);
    }

    /// A slow phase (one take every 2 s at 3 per 1 s), then the backlog is
    /// granted at once, then one every T on the original schedule.
    #[test]
    fn slow_phase_is_caught_up() {
        let fx = Fx::started(3, SEC, Hardcap::None, T0);
        let mut taken = 0u64;
        for s in 0..5 {
            let t = T0 + 2 * s * SEC as i64;
            assert_eq!(fx.take(t), Reservation::Granted(t), "slow phase at {s}");
            taken += 1;
        }
        // At t0 + 10 s units 0..=30 are due: 31 - 5 are waiting.
        let t = T0 + 10 * SEC as i64;
        let (n, later) = fx.drain(t);
        assert_eq!(n, 31 - taken);
        assert_eq!(later, T0 + fx.slot(31));
        for k in 31..40 {
            assert_eq!(fx.wait(t), T0 + fx.slot(k));
        }
        // At an odd instant the count is exact too.
        let t = T0 + 20 * SEC as i64 + 123;
        let (n, later) = fx.drain(t);
        assert_eq!(n, 1 + units_in(3, SEC, t - T0) - 40);
        assert_eq!(later, T0 + fx.slot(61));
    }

    /// Random arrivals: grant i is exactly `max(arrival, t0 + ceil(i*T))`
    /// (first come, first served, never early, never later than needed).
    #[test]
    fn random_arrivals_exact() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for (max_n, per_ns) in [
            (3, SEC),
            (7, 1_000_000),
            (2, 3),
            (5, 17),
            (64, 1000),
            (1, 10),
        ] {
            for round in 0..4 {
                let what = format!("{max_n}/{per_ns} round {round}");
                let fx = Fx::started(max_n, per_ns, Hardcap::None, T0);
                let mut now = T0;
                let mut i = 0u64;
                for _ in 0..1500 {
                    now += gap(&mut rng, fx.per());
                    let (c, latest) = call(&mut rng, now, fx.per());
                    let want = now.max(T0 + fx.slot(i));
                    let before = fx.snapshot();
                    let got = fx.reserve(now, latest);
                    if want <= latest {
                        assert_eq!(got, Reservation::Granted(want), "{what}: {c:?} grant {i}");
                        i += 1;
                        assert!(i <= 1 + units_in(max_n, per_ns, want - T0), "{what}");
                    } else {
                        assert_eq!(got, Reservation::Later(want), "{what}: {c:?} grant {i}");
                        assert_eq!(fx.snapshot(), before, "{what}");
                    }
                }
            }
        }
    }

    /// Restart: the backlog carries over the pause.
    #[test]
    fn restart_carries_backlog_over() {
        let fx = Fx::started(3, SEC, Hardcap::None, T0);
        assert_eq!(fx.drain(T0), (1, T0 + fx.slot(1)));
        // Idle until the stop at t0 + 5 s: units 1..=15 waiting.
        let stop = T0 + 5 * SEC as i64;
        let t1 = T0 + 100 * SEC as i64;
        fx.start(t1, Some(stop));
        let (n, later) = fx.drain(t1);
        assert_eq!(n, 15);
        // Unit 16 is due 1/3 s after the stop in running time.
        assert_eq!(later, t1 + fx.slot(16) - 5 * SEC as i64);
    }

    /// Restart: cut-short reservations are given back; the count bound holds
    /// over running time.
    #[test]
    fn restart_gives_back_cut_short_reservations() {
        let fx = Fx::started(3, SEC, Hardcap::None, T0);
        for k in 0..=3 {
            assert_eq!(fx.wait(T0), T0 + fx.slot(k));
        }
        let stop = T0 + fx.slot(1); // grants 2 and 3 cut short
        let t1 = T0 + 10 * SEC as i64;
        fx.start(t1, Some(stop));
        // Running time at t1 is slot(1); unit 2 is due at running time 2T.
        let run_off = t1 - fx.slot(1);
        assert_eq!(fx.drain(t1), (0, run_off + fx.slot(2)));
        assert_eq!(fx.wait(t1), run_off + fx.slot(2));
        assert_eq!(fx.wait(t1), run_off + fx.slot(3));
        // Immediately restarted: the units come back at their old times.
        let fx = Fx::started(3, SEC, Hardcap::None, T0);
        for k in 0..=3 {
            assert_eq!(fx.wait(T0), T0 + fx.slot(k));
        }
        fx.start(stop, Some(stop));
        assert_eq!(fx.wait(stop), T0 + fx.slot(2));
    }
}

/// `WINDOW`: never more than max_n grants in any half-open window of length
/// per, and no grant waits when the window allows it.
mod window {
    use super::*;

    #[test]
    fn saturated_single_waiter_exact() {
        check_saturated_sequential(Hardcap::Window);
    }

    #[test]
    fn saturated_many_waiters_exact() {
        check_saturated_many(Hardcap::Window);
    }

    #[test]
    fn saturated_poller_exact() {
        check_saturated_poller(Hardcap::Window);
    }

    /// After idling at least per: exactly max_n at once; the next one when
    /// the first of them leaves the window.
    #[test]
    fn burst_after_idle_is_exactly_max_n() {
        for (max_n, per_ns) in [(3, SEC), (7, 1_000_000), (1000, SEC), (1, 10), (2, 3)] {
            let what = format!("{max_n}/{per_ns}");
            let fx = Fx::started(max_n, per_ns, Hardcap::Window, T0);
            assert_eq!(fx.drain(T0), (1, T0 + fx.slot(1)), "{what}");
            // At t0 + per the grant at t0 has left the window.
            let t1 = T0 + fx.per();
            if per_ns > 1 && max_n > 1 {
                let twin = Fx::started(max_n, per_ns, Hardcap::Window, T0);
                twin.drain(T0);
                assert_eq!(twin.drain(t1 - 1), (max_n - 1, t1), "{what}: at t0+per-1");
            }
            assert_eq!(fx.drain(t1), (max_n, t1 + fx.per()), "{what}");
            // Waiters: one window later, all at once again.
            for _ in 0..max_n {
                assert_eq!(fx.wait(t1), t1 + fx.per(), "{what}");
            }
            assert_eq!(
                fx.take(t1 + fx.per()),
                Reservation::Later(t1 + 2 * fx.per()),
                "{what}"
            );
        }
    }

    /// Model: grant i is `max(arrival, grant i-1, grant i-max_n + per)`,
    /// where the max_n grants "before" the first are the seeds that make the
    /// tank start empty: `t0 - per + ceil(j*T)`, j = 0..max_n.
    struct Model {
        n: usize,
        per: i64,
        hist: Vec<i64>,
    }

    impl Model {
        fn new(max_n: u64, per_ns: u64, t0: i64) -> Self {
            let per = per_ns as i64;
            let hist = (0..max_n)
                .map(|j| t0 - per + slot(max_n, per_ns, j))
                .collect();
            Self {
                n: max_n as usize,
                per,
                hist,
            }
        }

        fn due(&self, now: i64) -> i64 {
            let last = *self.hist.last().unwrap();
            let back = self.hist[self.hist.len() - self.n];
            now.max(last).max(back + self.per)
        }
    }

    /// Brute force over random arrival patterns (bursts, idles, pile-ups of
    /// waiters, has_fuel, timeouts): exact model, and no window holds more
    /// than max_n grants (every window starting at a grant time).
    #[test]
    fn random_arrivals_exact_and_windows_hold() {
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        let mut saw_full_burst = 0;
        for (max_n, per_ns) in [
            (3, SEC),
            (7, 1_000_000),
            (2, 3),
            (5, 17),
            (64, 1000),
            (1, 10),
            (10, 999_999_937),
        ] {
            for round in 0..4 {
                let what = format!("{max_n}/{per_ns} round {round}");
                let fx = Fx::started(max_n, per_ns, Hardcap::Window, T0);
                let mut model = Model::new(max_n, per_ns, T0);
                let mut now = T0;
                let mut times = Vec::new();
                for i in 0..2000 {
                    now += gap(&mut rng, fx.per());
                    let (c, latest) = call(&mut rng, now, fx.per());
                    let want = model.due(now);
                    let before = fx.snapshot();
                    let got = fx.reserve(now, latest);
                    if want <= latest {
                        assert_eq!(got, Reservation::Granted(want), "{what}: call {i} {c:?}");
                        model.hist.push(want);
                        times.push(want);
                    } else {
                        assert_eq!(got, Reservation::Later(want), "{what}: call {i} {c:?}");
                        assert_eq!(
                            fx.snapshot(),
                            before,
                            "{what}: refused call changed the state"
                        );
                    }
                }
                check_windows(&times, max_n, fx.per(), &what);
                if max_n > 1
                    && times
                        .windows(max_n as usize)
                        .any(|w| w[0] == w[w.len() - 1])
                {
                    saw_full_burst += 1;
                }
            }
        }
        assert!(
            saw_full_burst > 5,
            "the random patterns should include full bursts"
        );
    }

    /// Concurrent callers read the clock before they reserve, so a caller
    /// may reserve with an older `now` than the caller before it: grants
    /// still never go backwards, the model holds, and no window overflows.
    #[test]
    fn stale_clock_readings_never_go_backwards() {
        let mut rng = Rng(0x5851_F42D_4C95_7F2D);
        for (max_n, per_ns) in [(3, SEC), (7, 1_000_000), (2, 3), (5, 17), (1, 10)] {
            for round in 0..4 {
                let what = format!("{max_n}/{per_ns} round {round}");
                let fx = Fx::started(max_n, per_ns, Hardcap::Window, T0);
                let mut model = Model::new(max_n, per_ns, T0);
                let mut clock = T0;
                let mut times = Vec::new();
                for i in 0..2000 {
                    clock += gap(&mut rng, fx.per());
                    // Read up to 2 periods ago (not before the start).
                    let stale = if rng.pct(40) {
                        rng.below(2 * per_ns) as i64
                    } else {
                        0
                    };
                    let now = (clock - stale).max(T0);
                    let (c, latest) = call(&mut rng, now, fx.per());
                    let want = model.due(now);
                    let got = fx.reserve(now, latest);
                    if want <= latest {
                        assert_eq!(got, Reservation::Granted(want), "{what}: call {i} {c:?}");
                        model.hist.push(want);
                        times.push(want);
                    } else {
                        assert_eq!(got, Reservation::Later(want), "{what}: call {i} {c:?}");
                    }
                }
                assert!(
                    times.windows(2).all(|w| w[0] <= w[1]),
                    "{what}: grants went backwards"
                );
                check_windows(&times, max_n, fx.per(), &what);
            }
        }
    }

    /// Restart with random runs on both sides of the pause: counting only
    /// grants <= stop as real, no window spanning the pause holds more than
    /// max_n; the tank starts empty at the restart; without cut-short
    /// reservations the model above holds exactly across the pause.
    #[test]
    fn random_restarts_keep_windows() {
        let mut rng = Rng(0xA076_1D64_78BD_642F);
        for (max_n, per_ns) in [
            (3, SEC),
            (7, 1_000_000),
            (2, 3),
            (5, 17),
            (64, 1000),
            (1, 10),
        ] {
            for round in 0..8 {
                let what = format!("{max_n}/{per_ns} round {round}");
                let per = per_ns as i64;
                let fx = Fx::started(max_n, per_ns, Hardcap::Window, T0);
                let run1 = random_run(&fx, &mut rng, T0, 300);
                let last_arrival = run1.iter().map(|x| x.0).max().unwrap_or(T0);
                let last_grant = run1.iter().map(|x| x.1).max().unwrap_or(T0);
                // Stop somewhere between the last arrival and past the last
                // grant; odd rounds: after every grant.
                let stop = if round % 2 == 1 {
                    last_grant + rng.below(per as u64) as i64
                } else {
                    last_arrival + rng.below((last_grant - last_arrival + 1) as u64) as i64
                };
                let t1 = stop
                    + if rng.pct(50) {
                        0
                    } else {
                        rng.below(2 * per as u64) as i64
                    };
                fx.start(t1, Some(stop));
                let mut real: Vec<i64> = run1.iter().map(|x| x.1).filter(|&g| g <= stop).collect();
                let cut_short = run1.len() - real.len();
                let mut model = Model::new(max_n, per_ns, T0);
                model.hist.extend(&real);
                let mut now = t1;
                let mut run2 = Vec::new();
                for i in 0..300usize {
                    now += gap(&mut rng, per);
                    let (c, latest) = call(&mut rng, now, per);
                    match fx.reserve(now, latest) {
                        Reservation::Granted(g) => {
                            assert!(g >= now && g <= latest, "{what}");
                            if run2.len() < max_n as usize {
                                assert!(
                                    g >= t1 + slot(max_n, per_ns, run2.len() as u64),
                                    "{what}: tank not empty at restart"
                                );
                            }
                            if cut_short == 0 && run2.len() < max_n as usize {
                                let w = model
                                    .due(now)
                                    .max(t1 + slot(max_n, per_ns, run2.len() as u64));
                                assert_eq!(g, w, "{what}: call {i} {c:?} after restart");
                            } else if run2.len() < max_n as usize {
                                // Cut-short reservations are given back: at
                                // worst the grants they hid count as at the
                                // stop, never later.
                                let j = run2.len();
                                let prev = run2.last().copied().unwrap_or(i64::MIN);
                                let bound = now
                                    .max(prev)
                                    .max(t1 + slot(max_n, per_ns, j as u64))
                                    .max(stop + per);
                                assert!(g <= bound, "{what}: call {i}: {g} > {bound}");
                            } else {
                                // A full window of new grants: exact again.
                                assert_eq!(
                                    g,
                                    model.due(now),
                                    "{what}: call {i} {c:?} after restart"
                                );
                            }
                            model.hist.push(g);
                            run2.push(g);
                        }
                        Reservation::Later(t) => assert!(t > latest, "{what}"),
                        Reservation::Corrupt | Reservation::Busy => panic!("{what}: Corrupt"),
                    }
                }
                real.extend(&run2);
                check_windows(&real, max_n, per, &what);
                for w in real.windows(2) {
                    assert!(w[1] >= w[0], "{what}: grants go backwards across the pause");
                }
            }
        }
    }

    /// Late reservations of the old run race the restart's rewrite of the
    /// ring (plain stores: a claim that moves the head makes the rewrite
    /// start over, one made before it is filled in first). Whatever the
    /// interleaving, the ring is in order after the start: every later
    /// reservation is granted, never `Corrupt`, and those grants keep the
    /// window.
    #[test]
    fn restart_races_late_reservations() {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        let (max_n, per_ns) = (8u64, 1000u64);
        let mut raced = 0;
        for round in 0..200 {
            let what = format!("round {round}");
            let fx = Fx::started(max_n, per_ns, Hardcap::Window, T0);
            for k in 0..20 {
                fx.wait(T0 + k * 100);
            }
            let stop = T0 + 5_000;
            let t1 = stop + 10;
            let started = AtomicBool::new(false);
            let barrier = std::sync::Barrier::new(2);
            let during = std::thread::scope(|s| {
                let late = s.spawn(|| {
                    barrier.wait();
                    let mut during = 0;
                    for i in 0..100_000 {
                        if started.load(SeqCst) {
                            break;
                        }
                        match fx.reserve(t1 + i, t1 + i) {
                            Reservation::Corrupt => panic!("{what}: Corrupt while racing"),
                            _ => during += 1,
                        }
                    }
                    during
                });
                barrier.wait();
                fx.start(t1, Some(stop));
                started.store(true, SeqCst);
                late.join().unwrap()
            });
            raced += usize::from(during > 0);
            let mut after = Vec::new();
            for i in 0..3 * max_n as i64 {
                match fx.reserve(t1 + 200_000 + i, i64::MAX) {
                    Reservation::Granted(g) => after.push(g),
                    other => panic!("{what}: reservation {i} after the start: {other:?}"),
                }
            }
            check_windows(&after, max_n, per_ns as i64, &what);
            for w in after.windows(2) {
                assert!(w[1] >= w[0], "{what}: grants go backwards");
            }
        }
        // The late thread did reserve while the start ran, in some rounds.
        assert!(raced > 0, "no round raced");
    }

    /// Restart with cut-short reservations, by hand.
    #[test]
    fn restart_with_cut_short_reservations() {
        let fx = Fx::started(3, SEC, Hardcap::Window, T0);
        for k in 0..5 {
            assert_eq!(fx.wait(T0), T0 + fx.slot(k));
        }
        // Grants 0, 1, 2 real; 3 and 4 cut short.
        let stop = T0 + fx.slot(2);
        fx.start(stop, Some(stop));
        let mut real = vec![T0, T0 + fx.slot(1), T0 + fx.slot(2)];
        let mut g = Vec::new();
        for _ in 0..6 {
            g.push(fx.wait(stop));
        }
        // Never before the window allows it, never backwards.
        let allowed = [T0 + fx.slot(3), T0 + fx.slot(4), T0 + fx.slot(5)];
        for (i, (&got, &min)) in g.iter().zip(&allowed).enumerate() {
            assert!(got >= min, "grant {i} at {got}, before {min}");
        }
        real.extend(&g);
        check_windows(&real, 3, fx.per(), "cut short");
        // Grant 2 at t0 + slot(2) is real: the third new grant cannot come
        // before t0 + slot(2) + per.
        assert!(g[2] >= T0 + fx.slot(2) + fx.per());
        // Grants 3 and 4 were given back: none of the first three new grants
        // waits for them (at worst, per after the stop).
        for (i, &got) in g.iter().take(3).enumerate() {
            assert!(
                got <= stop + fx.per(),
                "grant {i} at {got} waits for a cut-short one"
            );
        }
        // Then one window after each of them.
        for i in 3..6 {
            assert_eq!(g[i], g[i - 3] + fx.per());
        }
    }

    /// The window may allow grants earlier than the pad of unknown grants
    /// gives: here the ring knew grants 0..2 (T0, T0+slot1, T0+slot2) were
    /// overwritten by the cut-short 3..5 (each exactly per after one of
    /// them), so new grants are allowed at T0+slot(3), slot(4), slot(5); the
    /// restart must not pad them to the stop (which would make them wait
    /// until stop + per).
    #[test]
    fn restart_does_not_wait_longer_than_the_window_requires() {
        let fx = Fx::started(3, SEC, Hardcap::Window, T0);
        for k in 0..6 {
            assert_eq!(fx.wait(T0), T0 + fx.slot(k));
        }
        // Grants 0..=2 real, 3..=5 cut short.
        let stop = T0 + fx.slot(2) + 1;
        fx.start(stop, Some(stop));
        assert_eq!(fx.wait(stop), T0 + fx.slot(3));
        assert_eq!(fx.wait(stop), T0 + fx.slot(4));
        assert_eq!(fx.wait(stop), T0 + fx.slot(5));
    }

    /// More reservations cut short than the ring holds: every entry is a
    /// cut-short one, and the real grants they overwrote are still bounded
    /// exactly (m laps back, m * per earlier).
    #[test]
    fn restart_after_more_than_max_n_cut_short() {
        for (waiting, real) in [(8u64, 3u64), (11, 3), (12, 2), (20, 5)] {
            let fx = Fx::started(3, SEC, Hardcap::Window, T0);
            for k in 0..waiting {
                assert_eq!(fx.wait(T0), T0 + fx.slot(k));
            }
            let stop = T0 + fx.slot(real - 1) + 1;
            fx.start(stop, Some(stop));
            for (j, k) in (real..real + 6).enumerate() {
                // The window, and the tank that restarts empty.
                let due = (T0 + fx.slot(k)).max(stop + fx.slot(j as u64));
                assert_eq!(
                    fx.wait(stop),
                    due,
                    "{waiting} waiting, {real} real: grant {k}"
                );
            }
        }
    }

    /// A grant its waiter never confirmed (told "killed" at the stop) is
    /// given back even if its time came before the stop.
    #[test]
    fn unconfirmed_grants_are_given_back() {
        let fx = Fx::started(3, SEC, Hardcap::Window, T0);
        for k in 0..3 {
            assert_eq!(fx.wait(T0), T0 + fx.slot(k));
        }
        // Two more reserved, due before the stop, but never confirmed.
        for k in 3..5 {
            let (r, _ticket) = fx.sched.reserve_ticket(&fx.st(), T0, i64::MAX);
            assert_eq!(r, Reservation::Granted(T0 + fx.slot(k)));
        }
        let stop = T0 + fx.slot(4) + 1;
        fx.start(stop, Some(stop));
        // Unit 3 of the sequence is free again: the window since grant 0
        // allows it at once.
        assert_eq!(fx.wait(stop), stop);
        // The tank restarts empty: the next unit one T later.
        assert_eq!(fx.wait(stop), stop + fx.slot(1));
    }

    fn scribbled(f: impl FnOnce(&Fx, u64)) -> Reservation {
        let fx = Fx::started(3, SEC, Hardcap::Window, T0);
        for _ in 0..5 {
            fx.wait(T0);
        }
        let k = unpack(fx.head.load(Ordering::SeqCst)).0;
        f(&fx, k);
        let r = fx.reserve(T0 + 10 * SEC as i64, i64::MAX);
        // has_fuel and a waiter with a timeout see the same.
        assert_eq!(fx.take(T0 + 10 * SEC as i64), r);
        r
    }

    /// Scribbled shared state is reported as Corrupt, never a hang or panic.
    #[test]
    fn corrupt_state_is_reported() {
        let n = RING_MIN;
        // The entry the next window starts at holds a foreign tag.
        assert_eq!(
            scribbled(
                |fx, k| fx.ring[((k - 3) % n) as usize].store(pack(12345, T0), Ordering::SeqCst)
            ),
            Reservation::Corrupt
        );
        // The previous entry holds a foreign tag.
        assert_eq!(
            scribbled(|fx, k| fx.ring[((k - 1) % n) as usize].store(pack(99, T0), Ordering::SeqCst)),
            Reservation::Corrupt
        );
        // The head far ahead, far behind, at the end of the u64 range.
        let heads: [fn(u64) -> u64; 4] = [
            |k| k + 100_000,
            |k| k.wrapping_sub(100_000),
            |_| u64::MAX,
            |_| 1,
        ];
        for h in heads {
            assert_eq!(
                scribbled(|fx, k| fx.head.store(pack(h(k), T0), Ordering::SeqCst)),
                Reservation::Corrupt
            );
        }
        // Every entry zeroed.
        assert_eq!(
            scribbled(|fx, _| fx.ring.iter().for_each(|e| e.store(0, Ordering::SeqCst))),
            Reservation::Corrupt
        );
        // No ring at all.
        let sched = Schedule::new(Rate::new(3, SEC).unwrap(), Hardcap::Window);
        let (tat, head) = (AtomicU128::new(0), AtomicU128::new(0));
        let confirmed = AtomicU64::new(0);
        let records = Records::default();
        let give_backs = GiveBacks::default();
        let seeds = Seeds::default();
        let st = State {
            tat: &tat,
            records: &records,
            give_backs: &give_backs,
            head: &head,
            ring: &[],
            confirmed: &confirmed,
            seeds: &seeds,
        };
        sched.init(&st);
        sched.start(&st, T0, None);
        assert_eq!(sched.reserve(&st, T0, i64::MAX), Reservation::Corrupt);
    }

    /// A head left one behind by a process that died between claiming an
    /// entry and moving the head is moved on: no corruption, no lost grant.
    /// Batches of random size at random arrivals, some with deadlines: each
    /// batch is granted exactly when an independent model of the window
    /// first allows all its units (never a window over max_n, never a wait
    /// the window does not need), and a batch refused for its deadline
    /// takes nothing.
    #[test]
    fn batches_follow_the_window_exactly() {
        for (max_n, per_ns) in [(5, SEC), (3, 1_000_000), (16, 7 * SEC + 3)] {
            let fx = Fx::started(max_n, per_ns, Hardcap::Window, T0);
            let per = fx.per();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ max_n);
            // The model: every unit's grant time, in order.
            let mut units: Vec<i64> = Vec::new();
            let mut now = T0;
            for _ in 0..2_000 {
                now += gap(&mut rng, per);
                let m = 1 + rng.below(max_n);
                let seq = units.len() as u64 + m - 1;
                let window = seq
                    .checked_sub(max_n)
                    .map_or(i64::MIN, |b| units[b as usize].saturating_add(per));
                // The tank starts empty: unit j of the run at T0 + j*T.
                let first = if seq < max_n {
                    T0 + slot(max_n, per_ns, seq)
                } else {
                    window
                };
                let want = now
                    .max(first)
                    .max(units.last().copied().unwrap_or(i64::MIN));
                let latest = if rng.pct(30) {
                    now + rng.below(per as u64) as i64
                } else {
                    i64::MAX
                };
                let (r, _) = fx.sched.reserve_n(&fx.st(), m, now, latest);
                if want > latest {
                    assert_eq!(r, Reservation::Later(want), "m {m} at {now}");
                    continue;
                }
                assert_eq!(r, Reservation::Granted(want), "m {m} at {now}");
                units.extend(std::iter::repeat_n(want, m as usize));
            }
            check_windows(&units, max_n, per, "window batches");
        }
    }

    /// A count of confirmed units ahead of the head (scribbled) makes a
    /// restart count every reservation as granted, but none later than the
    /// stop: the window then holds at most what it would after real grants
    /// at the stop.
    #[test]
    fn scribbled_confirmations_count_no_later_than_the_stop() {
        let fx = Fx::started(3, SEC, Hardcap::Window, T0);
        for k in 0..3 {
            assert_eq!(fx.wait(T0), T0 + fx.slot(k));
        }
        let (k, _) = unpack(fx.head.load(Ordering::SeqCst));
        fx.confirmed.store(k + 5, Ordering::SeqCst);
        // Stopped at T0: units 1 and 2 (due later) were cut short, but count.
        fx.start(T0 + 1, Some(T0));
        let per = SEC as i64;
        for _ in 0..3 {
            assert_eq!(fx.wait(T0 + 1), T0 + per, "each counts as granted at T0");
        }
    }

    /// A start that dies while it gives reservations cut short back, after
    /// any number of the entries it writes, is finished by the next one
    /// (recover_window): never Corrupt, the tank empty at the new start, no
    /// window over the real grants of both runs above max_n, and exactly the
    /// grants of a start that did not die.
    #[test]
    fn starter_dying_while_giving_back_is_recovered() {
        let (max_n, per_ns) = (3u64, SEC);
        let per = per_ns as i64;
        for cut in [1u64, 2, 5, RING_MIN + 2] {
            for steps in [0, 1, 2, 4, RING_MIN - 1, RING_MIN] {
                let what = format!("{cut} cut short, dead after {steps}");
                let run = |dying: bool| {
                    let fx = Fx::started(max_n, per_ns, Hardcap::Window, T0);
                    let mut real: Vec<i64> = (0..max_n).map(|_| fx.wait(T0)).collect();
                    for _ in 0..cut {
                        fx.wait(T0); // queued after the stop
                    }
                    let stop = *real.last().unwrap();
                    let t1 = stop + per / 2;
                    if dying {
                        fx.start_steps(t1, Some(stop), steps);
                    }
                    fx.start(t1, Some(stop));
                    let again: Vec<i64> = (0..2 * max_n).map(|_| fx.wait(t1)).collect();
                    for (j, &g) in again.iter().take(max_n as usize).enumerate() {
                        assert!(
                            g >= t1 + slot(max_n, per_ns, j as u64),
                            "{what}: tank not empty"
                        );
                    }
                    real.extend(&again);
                    check_windows(&real, max_n, per, &what);
                    again
                };
                assert_eq!(run(true), run(false), "{what}");
            }
        }
    }

    /// A stop and a start at once, after the run granted fewer units than
    /// the window holds at full speed, change nothing: the next units come
    /// when they would have without the pause (the old run's empty tank
    /// still counts, though the new start's does not reach that far back).
    #[test]
    fn restart_at_once_keeps_the_pace() {
        for (max_n, per_ns, before) in [(3, SEC, 2), (5, 17, 3), (4100, 1_000_000, 1000)] {
            let paused = Fx::started(max_n, per_ns, Hardcap::Window, T0);
            let steady = Fx::started(max_n, per_ns, Hardcap::Window, T0);
            for k in 0..before {
                let due = T0 + slot(max_n, per_ns, k);
                assert_eq!(paused.wait(T0), due);
                assert_eq!(steady.wait(T0), due);
            }
            let stop = T0 + slot(max_n, per_ns, before - 1);
            paused.start(stop, Some(stop));
            for k in before..2 * max_n {
                assert_eq!(
                    paused.wait(stop),
                    steady.wait(stop),
                    "{max_n}/{per_ns}: unit {k}"
                );
            }
        }
    }

    /// A start writes no entry of the ring: readers take an entry from
    /// before the run at the later of its seed and its own time. Over runs
    /// of every length (none, a few units, more than the ring holds),
    /// restarts at once or after a pause, and stops that cut reservations
    /// short, every call gets exactly what it gets from a twin whose seeds
    /// are written into its ring after each start; and no window over the
    /// real grants of all runs holds more than max_n.
    #[test]
    fn seeds_read_as_if_written() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for (max_n, per_ns) in [(3, SEC), (7, 3), (64, 1000), (1, 10), (4100, 1_000_000)] {
            let per = per_ns as i64;
            let lazy = Fx::started(max_n, per_ns, Hardcap::Window, T0);
            let eager = Fx::started(max_n, per_ns, Hardcap::Window, T0);
            super::super::window::write_seeds(&eager.st());
            let len = eager.ring.len() as u64;
            let (mut now, mut t_start) = (T0, T0);
            let mut real = Vec::new();
            for run in 0..12 {
                let what = format!("{max_n}/{per_ns} run {run}");
                let calls = match rng.below(4) {
                    0 => 0,
                    1 => rng.below(2 * max_n + 2),
                    2 => rng.below(300),
                    _ => len + rng.below(len),
                };
                let mut granted = Vec::new();
                for i in 0..calls {
                    now += gap(&mut rng, per);
                    let (c, latest) = call(&mut rng, now, per);
                    let got = lazy.reserve(now, latest);
                    assert_eq!(got, eager.reserve(now, latest), "{what}: call {i} {c:?}");
                    if let Reservation::Granted(g) = got {
                        if granted.len() < max_n as usize {
                            let j = granted.len() as u64;
                            assert!(
                                g >= t_start + slot(max_n, per_ns, j),
                                "{what}: tank not empty"
                            );
                        }
                        granted.push(g);
                    }
                }
                // Stop after every grant, or now (cutting short those due
                // later); start again at once, within T, or later.
                let last = granted.iter().copied().max().unwrap_or(now);
                let stop = if rng.pct(50) { last.max(now) } else { now };
                real.extend(granted.iter().copied().filter(|&g| g <= stop));
                now = stop
                    + match rng.below(3) {
                        0 => 0,
                        1 => rng.below(per as u64) as i64,
                        _ => rng.below(3 * per as u64) as i64,
                    };
                t_start = now;
                lazy.start(now, Some(stop));
                eager.start(now, Some(stop));
                super::super::window::write_seeds(&eager.st());
            }
            let what = format!("{max_n}/{per_ns}");
            check_windows(&real, max_n, per, &what);
            assert!(real.windows(2).all(|w| w[0] <= w[1]), "{what}: backwards");
        }
    }

    #[test]
    fn batch_left_unfilled_by_a_dead_process_is_filled() {
        let fx = Fx::started(3, SEC, Hardcap::Window, T0);
        for k in 0..4 {
            assert_eq!(fx.wait(T0), T0 + fx.slot(k));
        }
        // A process moved the head over two entries, granted at g, and died
        // before it wrote them.
        let (k, _) = unpack(fx.head.load(Ordering::SeqCst));
        let g = T0 + fx.slot(4) + 7;
        fx.head.store(pack(k + 2, g), Ordering::SeqCst);
        // The next waiter fills them, and counts them: grant k + 2 waits for
        // grant k - 1 (entry k + 2 - 3) plus per, and for g.
        let prev = T0 + fx.slot(3);
        assert_eq!(fx.wait(T0), (prev + SEC as i64).max(g));
        for j in [k, k + 1] {
            assert_eq!(
                unpack(fx.ring[(j % RING_MIN) as usize].load(Ordering::SeqCst)),
                (j, g)
            );
        }
    }
}
