//! The throttle on a manual clock: exact grants at exact times through the
//! non-blocking calls only (`start`, `has_fuel`, `stop`, `kill`, `summary`,
//! `emit`). No sleeping: `await_fuel` sleeps on the real clock, so it is
//! not used here.

use mp_throttle::clock::ManualClock;
use mp_throttle::config::{Config, Options};
use mp_throttle::error::Error;
use mp_throttle::schedule::Hardcap;
use mp_throttle::throttle::Throttle;
use std::sync::Arc;

const SEC: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
/// A start time that is a multiple of nothing in particular.
const T0: i64 = 5_000 * SEC + 123;

/// `ceil(k * per_ns / max_n)`.
fn slot(max_n: i64, per_ns: i64, k: i64) -> i64 {
    (k * per_ns + max_n - 1) / max_n
}

/// `x` rounded up to a multiple of `step`.
fn ceil_to(x: i64, step: i64) -> i64 {
    (x + step - 1) / step * step
}

fn throttle(max_n: u64, per_s: f64, options: Options) -> (Throttle, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let config = Config::new(max_n, per_s, &options).unwrap();
    let t = Throttle::with_clock(config, clock.clone()).unwrap();
    (t, clock)
}

fn opts(hardcap: Hardcap, as_monitor: bool) -> Options {
    Options {
        hardcap,
        as_monitor,
        ..Options::default()
    }
}

/// Calls has_fuel until it says NoFuel; returns the grants.
fn take_all(t: &Throttle) -> Vec<i64> {
    let mut out = Vec::new();
    loop {
        match t.has_fuel() {
            Ok(g) => out.push(g),
            Err(Error::NoFuel) => return out,
            Err(e) => panic!("has_fuel: {e:?}"),
        }
        assert!(out.len() < 1000, "the tank never empties");
    }
}

/// Advances the clock in `step` ns steps from now to `until` (inclusive),
/// taking all the fuel there is at each step; returns the grants.
fn poll(t: &Throttle, clock: &ManualClock, step: i64, until: i64) -> Vec<i64> {
    let mut grants = Vec::new();
    let mut now = clock.now();
    loop {
        clock.set(now);
        for g in take_all(t) {
            assert_eq!(g, now, "has_fuel grants at the instant of the call");
            grants.push(g);
        }
        if now >= until {
            return grants;
        }
        now = (now + step).min(until);
    }
}

trait Now {
    fn now(&self) -> i64;
}

impl Now for ManualClock {
    fn now(&self) -> i64 {
        mp_throttle::clock::Clock::now_ns(self)
    }
}

/// 3 per 1 s, polled every 1 ms for 10 s: unit k at the first poll at or
/// after t0 + ceil(k/3 s), 31 units in all (k = 0..=30, the last at 10 s).
/// LIMIT, NONE and WINDOW agree; ONE, whose tank holds one unit, restarts
/// its schedule from each late poll: one every ceil-to-1-ms(T) = 334 ms.
#[test]
fn polling_every_ms_gets_exact_grants() {
    for hardcap in [Hardcap::Limit, Hardcap::None, Hardcap::Window, Hardcap::One] {
        let (t, clock) = throttle(3, 1.0, opts(hardcap, hardcap == Hardcap::Limit));
        t.start().unwrap();
        let grants = poll(&t, &clock, MS, T0 + 10 * SEC);
        let want: Vec<i64> = if hardcap == Hardcap::One {
            (0..)
                .map(|k| T0 + k * 334 * MS)
                .take_while(|&g| g <= T0 + 10 * SEC)
                .collect()
        } else {
            (0..=30)
                .map(|k| T0 + ceil_to(slot(3, SEC, k), MS))
                .collect()
        };
        assert_eq!(grants, want, "{hardcap:?}");
        let s = t.stop().unwrap();
        assert_eq!(s.runtime_s, 10.0, "{hardcap:?}");
        assert_eq!(s.total, want.len() as u64, "{hardcap:?}");
    }
}

/// Polled every 400 ms: the tank keeps what accrued between polls, so up to
/// two units come at one poll. LIMIT and NONE: unit k at the first poll at
/// or after its due time t0 + ceil(k/3 s). WINDOW: also not before one
/// period after the unit 3 before it, which a late poll delayed.
#[test]
fn coarse_polling_takes_what_accrued() {
    for hardcap in [Hardcap::Limit, Hardcap::None, Hardcap::Window] {
        let (t, clock) = throttle(3, 1.0, opts(hardcap, false));
        t.start().unwrap();
        let mut want: Vec<i64> = Vec::new();
        for i in 0..=25 {
            let now = T0 + i * 400 * MS;
            clock.set(now);
            let got = take_all(&t);
            loop {
                let k = want.len();
                let mut due = T0 + slot(3, SEC, k as i64);
                if hardcap == Hardcap::Window && k >= 3 {
                    due = due.max(want[k - 3] + SEC);
                }
                if due > now {
                    break;
                }
                want.push(now);
            }
            assert_eq!(got, vec![now; got.len()], "{hardcap:?}");
            assert_eq!(
                want.iter().filter(|&&g| g == now).count(),
                got.len(),
                "{hardcap:?} at poll {i} (t0+{} ms)",
                i * 400
            );
        }
        let s = t.stop().unwrap();
        assert_eq!(s.total, want.len() as u64, "{hardcap:?}");
        // LIMIT and NONE: the count by the last poll is exact.
        if hardcap != Hardcap::Window {
            assert_eq!(s.total, 1 + 10 * 3, "{hardcap:?}");
        } else {
            assert!(s.total < 31, "WINDOW: late polls delay the next window");
        }
    }
}

/// A clock stepped to each unit's exact due time: 7 per 1 ms gets unit k at
/// exactly t0 + ceil(k/7 ms), for 10 periods, with no drift.
#[test]
fn exact_due_times_with_fractional_period() {
    for hardcap in [Hardcap::Limit, Hardcap::None, Hardcap::Window] {
        let (t, clock) = throttle(7, 0.001, opts(hardcap, false));
        t.start().unwrap();
        for k in 0..70 {
            let due = T0 + slot(7, MS, k);
            if k > 0 {
                clock.set(due - 1);
                assert_eq!(
                    t.has_fuel(),
                    Err(Error::NoFuel),
                    "{hardcap:?} unit {k} early"
                );
            }
            clock.set(due);
            assert_eq!(t.has_fuel(), Ok(due), "{hardcap:?} unit {k}");
            assert_eq!(
                t.has_fuel(),
                Err(Error::NoFuel),
                "{hardcap:?} unit {k} twice"
            );
        }
        assert_eq!(t.total_emissions(), 70);
        t.stop().unwrap();
    }
}

/// After idling, LIMIT gives exactly max_n at once.
#[test]
fn limit_burst_after_idle() {
    let (t, clock) = throttle(5, 1.0, opts(Hardcap::Limit, false));
    t.start().unwrap();
    assert_eq!(take_all(&t), vec![T0]);
    clock.set(T0 + 60 * SEC);
    assert_eq!(take_all(&t), vec![T0 + 60 * SEC; 5]);
    clock.set(T0 + 60 * SEC + 200 * MS - 1);
    assert_eq!(take_all(&t), Vec::<i64>::new());
    clock.set(T0 + 60 * SEC + 200 * MS);
    assert_eq!(take_all(&t), vec![T0 + 60 * SEC + 200 * MS]);
    t.stop().unwrap();
}

/// stop/start is pause/resume: runtime and totals carry over, runtime
/// excludes the pause, and the tank starts empty at the restart.
#[test]
fn pause_resume_keeps_runtime_and_total() {
    for as_monitor in [true, false] {
        let (t, clock) = throttle(3, 1.0, opts(Hardcap::Limit, as_monitor));
        t.start().unwrap();
        let run1 = poll(&t, &clock, MS, T0 + 2 * SEC);
        let want1: Vec<i64> = (0..=6).map(|k| T0 + ceil_to(slot(3, SEC, k), MS)).collect();
        assert_eq!(run1, want1);
        assert_eq!(t.runtime_ns(), 2 * SEC);
        let s = t.stop().unwrap();
        assert_eq!((s.runtime_s, s.total), (2.0, 7));
        assert_eq!(s.mean_per_second, 3.5);
        assert!((s.mean_seconds_between - 2.0 / 7.0).abs() < 1e-12);
        assert!(!t.is_running());

        // Paused for 5 s: nothing accrues, runtime stands still.
        clock.set(T0 + 7 * SEC);
        assert_eq!(t.has_fuel(), Err(Error::Killed));
        assert_eq!(t.runtime_ns(), 2 * SEC);
        assert_eq!(t.summary(), s);

        let t1 = T0 + 7 * SEC;
        t.start().unwrap();
        assert_eq!(t.runtime_ns(), 2 * SEC);
        let run2 = poll(&t, &clock, MS, t1 + SEC);
        let want2: Vec<i64> = (0..=3).map(|k| t1 + ceil_to(slot(3, SEC, k), MS)).collect();
        assert_eq!(run2, want2, "the tank starts empty at the restart");
        clock.set(t1 + SEC + 500 * MS);
        assert_eq!(t.runtime_ns(), 3 * SEC + 500 * MS);
        let s = t.stop().unwrap();
        assert_eq!((s.runtime_s, s.total), (3.5, 11));
        assert_eq!(s.mean_per_second, 11.0 / 3.5);

        // Stopped again: summary unchanged however long the pause.
        clock.set(t1 + 100 * SEC);
        assert_eq!(t.summary(), s);
        assert_eq!(t.total_emissions(), 11);
    }
}

/// Immediately restarted, a ONE throttle still waits T after its last grant.
#[test]
fn one_restarted_at_once_waits_t() {
    let (t, clock) = throttle(4, 1.0, opts(Hardcap::One, false));
    t.start().unwrap();
    assert_eq!(t.has_fuel(), Ok(T0));
    clock.set(T0 + 100 * MS);
    t.stop().unwrap();
    t.start().unwrap();
    assert_eq!(t.has_fuel(), Err(Error::NoFuel));
    clock.set(T0 + 250 * MS - 1);
    assert_eq!(t.has_fuel(), Err(Error::NoFuel));
    clock.set(T0 + 250 * MS);
    assert_eq!(t.has_fuel(), Ok(T0 + 250 * MS));
    t.stop().unwrap();
}

/// Before start: NoFuel (and emit: NotRunning). After stop: Killed.
#[test]
fn has_fuel_before_start_and_after_stop() {
    let o = Options {
        auto_emit: Some(false),
        ..opts(Hardcap::Limit, false)
    };
    let (t, clock) = throttle(3, 1.0, o);
    assert!(!t.is_running());
    assert!(!t.kill_flag_is_set());
    assert_eq!(t.has_fuel(), Err(Error::NoFuel));
    assert_eq!(t.emit(None), Err(Error::NotRunning));
    clock.set(T0 + 10 * SEC);
    assert_eq!(
        t.has_fuel(),
        Err(Error::NoFuel),
        "no fuel accrues before start"
    );
    assert!(matches!(t.stop(), Err(Error::WrongState(_))));
    assert_eq!(t.runtime_ns(), 0);

    t.start().unwrap();
    assert!(t.is_running());
    assert!(matches!(t.start(), Err(Error::WrongState(_))));
    assert_eq!(
        t.has_fuel(),
        Ok(T0 + 10 * SEC),
        "the tank starts at start, not at new"
    );
    assert_eq!(t.has_fuel(), Err(Error::NoFuel));
    t.stop().unwrap();
    assert!(t.kill_flag_is_set());
    assert_eq!(t.has_fuel(), Err(Error::Killed));
    assert_eq!(t.emit(None), Err(Error::Killed));
    clock.set(T0 + 20 * SEC);
    assert_eq!(t.has_fuel(), Err(Error::Killed));
}

/// kill() makes has_fuel Killed, with fuel in the tank or not, until the
/// next start (which needs a stop first).
#[test]
fn kill_until_next_start() {
    let (t, clock) = throttle(3, 1.0, opts(Hardcap::Limit, true));
    t.start().unwrap();
    assert_eq!(t.has_fuel(), Ok(T0));
    t.kill();
    assert!(t.kill_flag_is_set());
    assert!(t.is_running(), "kill sets the flag; it does not stop");
    assert_eq!(t.has_fuel(), Err(Error::Killed));
    clock.set(T0 + 10 * SEC);
    assert_eq!(
        t.has_fuel(),
        Err(Error::Killed),
        "killed even with a full tank"
    );
    assert!(matches!(t.start(), Err(Error::WrongState(_))));
    let s = t.stop().unwrap();
    assert_eq!((s.runtime_s, s.total), (10.0, 1));
    assert_eq!(t.has_fuel(), Err(Error::Killed));
    clock.set(T0 + 11 * SEC);
    t.start().unwrap();
    assert!(!t.kill_flag_is_set());
    assert_eq!(t.has_fuel(), Ok(T0 + 11 * SEC));
    // Killed fuel was never taken: the count is the grants, not the calls.
    let s = t.stop().unwrap();
    assert_eq!((s.runtime_s, s.total), (10.0, 2));
}

/// auto_emit off: taking fuel counts nothing; emit counts, with the caller's
/// timestamp or now. With auto_emit on, emit is refused.
#[test]
fn emit_with_auto_emit_off() {
    let o = Options {
        auto_emit: Some(false),
        ..opts(Hardcap::Limit, true)
    };
    let (t, clock) = throttle(3, 1.0, o);
    t.start().unwrap();
    assert_eq!(t.has_fuel(), Ok(T0));
    assert_eq!(t.total_emissions(), 0);
    t.emit(None).unwrap();
    t.emit(Some(T0 - 5)).unwrap();
    clock.set(T0 + 2 * SEC);
    for _ in 0..4 {
        t.emit(None).unwrap();
    }
    assert_eq!(t.total_emissions(), 6);
    let s = t.stop().unwrap();
    assert_eq!((s.runtime_s, s.total, s.mean_per_second), (2.0, 6, 3.0));

    let (t, _clock) = throttle(3, 1.0, opts(Hardcap::Limit, false));
    t.start().unwrap();
    assert!(matches!(t.emit(None), Err(Error::WrongState(_))));
    assert_eq!(t.total_emissions(), 0);
    t.stop().unwrap();
}

/// as_throttle off: fuel is always there, every call counts.
#[test]
fn counting_only() {
    let o = Options {
        as_throttle: false,
        ..Options::default()
    };
    let (t, clock) = throttle(1, 1.0, o);
    assert_eq!(t.has_fuel(), Err(Error::NoFuel), "not started");
    t.start().unwrap();
    for _ in 0..100 {
        assert_eq!(t.has_fuel(), Ok(T0));
    }
    clock.set(T0 + SEC);
    assert_eq!(t.has_fuel(), Ok(T0 + SEC));
    let s = t.stop().unwrap();
    assert_eq!(
        (s.runtime_s, s.total),
        (1.0, 0),
        "auto_emit defaults to off without throttling"
    );
}

/// The monitor's heartbeat is on the real clock: a handle on another clock
/// (far ahead of it here) still reads the statistics of a live monitor.
#[test]
fn statistics_of_a_live_monitor_whatever_the_handles_clock() {
    let (t, clock) = throttle(4, 1.0, opts(Hardcap::Limit, true));
    t.start().unwrap();
    clock.set(1_000_000_000_000_000); // about 11.6 days of uptime
    assert!(t.latest().is_ok(), "{:?}", t.latest());
    assert!(t.mean().is_ok());
    t.stop().unwrap();
}

/// n units at once: a full tank of 10 gives 10 at once, then nothing; half a
/// period later 5 have come back. n = 0 and n beyond the tank are refused.
#[test]
fn weighted_fuel_takes_n_units_at_once() {
    let (t, clock) = throttle(10, 1.0, opts(Hardcap::Limit, false));
    assert!(t.created(), "new makes its shared state");
    t.start().unwrap();
    // The tank starts empty: one unit at the start instant.
    assert_eq!(t.has_fuel_n(2), Err(Error::NoFuel));
    clock.set(T0 + SEC);
    assert_eq!(t.has_fuel_n(10), Ok(T0 + SEC));
    assert_eq!(t.has_fuel_n(1), Err(Error::NoFuel));
    clock.set(T0 + SEC + SEC / 2);
    assert_eq!(t.has_fuel_n(6), Err(Error::NoFuel));
    assert_eq!(t.has_fuel_n(5), Ok(T0 + SEC + SEC / 2));
    assert!(matches!(t.has_fuel_n(0), Err(Error::InvalidArgument(_))));
    assert!(matches!(t.has_fuel_n(11), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        t.await_fuel_n(11, None),
        Err(Error::InvalidArgument(_))
    ));
    // ONE holds one unit; NONE has no bound.
    let (one, _) = throttle(10, 1.0, opts(Hardcap::One, false));
    assert!(matches!(one.has_fuel_n(2), Err(Error::InvalidArgument(_))));
    let (none, clock) = throttle(10, 1.0, opts(Hardcap::None, false));
    none.start().unwrap();
    clock.set(T0 + 100 * SEC);
    assert_eq!(none.has_fuel_n(1001), Ok(T0 + 100 * SEC));
}

/// Peeking takes nothing and agrees with what taking then does.
#[test]
fn peek_reports_level_and_wait_without_taking() {
    let (t, clock) = throttle(4, 1.0, opts(Hardcap::Limit, false));
    assert_eq!(t.peek(1), Err(Error::NotRunning));
    t.start().unwrap();
    assert_eq!(t.peek(1), Ok((1, 0)));
    assert_eq!(t.peek(3), Ok((1, SEC / 2)));
    assert_eq!(t.peek(3), Ok((1, SEC / 2)), "peeking took something");
    clock.set(T0 + SEC / 2);
    assert_eq!(t.peek(3), Ok((3, 0)));
    assert_eq!(t.has_fuel_n(3), Ok(T0 + SEC / 2));
    assert_eq!(t.peek(1), Ok((0, SEC / 4)));
    assert!(matches!(t.peek(5), Err(Error::InvalidArgument(_))));
    // Without as_throttle fuel is always there.
    let free = Options {
        as_throttle: false,
        ..Options::default()
    };
    let (t, _) = throttle(4, 1.0, free);
    assert_eq!(t.peek(1_000_000), Ok((u64::MAX, 0)));
}

/// A rate change takes effect at once for has_fuel, keeps no more fuel than
/// the new tank holds, and is what `rate` reports; a WINDOW max_n grows
/// only to the grant times it keeps.
#[test]
fn rate_change_applies_at_once_without_a_burst() {
    let (t, clock) = throttle(1000, 1.0, opts(Hardcap::Limit, false));
    t.start().unwrap();
    clock.set(T0 + 10 * SEC); // a full tank of 1000
    assert_eq!(t.peek(1).unwrap().0, 1000);
    t.set_rate(10, SEC as u64).unwrap();
    assert_eq!(t.rate(), Ok((10, SEC as u64)));
    assert_eq!(t.peek(1).unwrap().0, 10, "the new tank holds 10");
    for _ in 0..10 {
        assert_eq!(t.has_fuel(), Ok(T0 + 10 * SEC));
    }
    assert_eq!(t.has_fuel(), Err(Error::NoFuel));
    // One unit every 100 ms from now on.
    clock.set(T0 + 10 * SEC + 100 * MS - 1);
    assert_eq!(t.has_fuel(), Err(Error::NoFuel));
    clock.set(T0 + 10 * SEC + 100 * MS);
    assert_eq!(t.has_fuel(), Ok(T0 + 10 * SEC + 100 * MS));
    // Faster again: the fuel accrued so far is kept.
    clock.set(T0 + 10 * SEC + 350 * MS);
    t.set_rate(100, SEC as u64).unwrap();
    assert_eq!(t.peek(1).unwrap().0, 2);
    assert!(matches!(
        t.set_rate(0, SEC as u64),
        Err(Error::InvalidArgument(_))
    ));
    // WINDOW: max_n grows to the grant times it keeps, no further.
    let (w, _) = throttle(10, 1.0, opts(Hardcap::Window, false));
    assert!(matches!(
        w.set_rate(4097, SEC as u64),
        Err(Error::InvalidArgument(m)) if m.contains("4096")
    ));
    assert_eq!(w.rate(), Ok((10, SEC as u64)));
    w.set_rate(4096, SEC as u64).unwrap();
    assert_eq!(w.rate(), Ok((4096, SEC as u64)));
}

/// A full tank survives a change to a period longer than the host's uptime
/// (the TAT would lie before boot: it is kept as sums, never negative).
#[test]
fn rate_change_keeps_a_full_tank_whatever_the_uptime() {
    let (t, clock) = throttle(100, 1.0, opts(Hardcap::Limit, false));
    t.start().unwrap();
    clock.set(T0 + 200 * SEC); // full: 100 units
    t.set_rate(100, 36_000 * SEC as u64).unwrap(); // 100 per 10 h
    assert_eq!(t.peek(100), Ok((100, 0)));
    assert_eq!(t.has_fuel_n(100), Ok(T0 + 200 * SEC));
    assert_eq!(t.has_fuel(), Err(Error::NoFuel));
    // Killed: peek says so, as every call that takes fuel does.
    t.kill();
    assert_eq!(t.peek(1), Err(Error::Killed));
}
