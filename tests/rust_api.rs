//! The Rust API (`mp_throttle::Throttle`, `src/api.rs`): the calls, the
//! tutorial example's logic, and with `--features tokio`, `until_ready`.

use mp_throttle::{CancelToken, Error, Hardcap, Options, Throttle};
use std::time::{Duration, Instant};

#[path = "../examples/rust_tutorial.rs"]
#[allow(dead_code)] // its main
mod tutorial;

const MS: Duration = Duration::from_millis(1);

#[test]
fn handles_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Throttle>();
    check::<CancelToken>();
    check::<Error>();
}

#[test]
fn tutorial_logic_counts_exactly() {
    // 20 per second for 0.5 s: units at 0, 50, ... ms.
    let (summary, counts) = tutorial::run(5, 20, Duration::from_secs(1), 500 * MS).unwrap();
    assert_eq!(counts.len(), 5);
    assert_eq!(counts.iter().sum::<u64>(), summary.total);
    let due = (summary.runtime.as_secs_f64() * 20.0).floor() as u64 + 1;
    assert!(summary.total <= due, "{summary:?}: more than the {due} due");
    assert!(summary.total >= 8, "{summary:?}");
    assert!(summary.runtime >= 500 * MS, "{summary:?}");
}

#[test]
fn rejects_bad_arguments() {
    for (max_n, per) in [(0, Duration::from_secs(1)), (1, Duration::ZERO)] {
        assert!(matches!(
            Throttle::new(max_n, per),
            Err(Error::InvalidArgument(_))
        ));
    }
    let o = Options::new().monitor(false).ration(false);
    let e = Throttle::with_options(1, Duration::from_secs(1), &o).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)));
    assert!(e.to_string().contains("both off"), "{e}");
    let t = Throttle::new(2, Duration::from_secs(1)).unwrap();
    assert!(matches!(t.set_rate(0, MS), Err(Error::InvalidArgument(_))));
    assert!(matches!(t.stop(), Err(Error::WrongState(_))));
    t.start().unwrap();
    assert!(matches!(t.start(), Err(Error::WrongState(_))));
    assert!(matches!(t.has_fuel_n(3), Err(Error::InvalidArgument(_))));
    assert!(matches!(t.emit(), Err(Error::WrongState(_)))); // auto emit on
}

#[test]
fn fuel_timeouts_and_kill() {
    let t = Throttle::new(1, Duration::from_secs(3600)).unwrap();
    assert_eq!(t.has_fuel(), Err(Error::NoFuel));
    assert_eq!(t.await_fuel(Some(Duration::ZERO)), Err(Error::Timeout));
    t.start().unwrap();
    assert!(t.is_running() && !t.is_killed());
    let before = Instant::now();
    let g = t.await_fuel(None).unwrap();
    let at = g.instant();
    assert!(
        at + 5 * MS >= before && at <= Instant::now() + 5 * MS,
        "{g:?}"
    );
    let began = Instant::now();
    assert_eq!(t.await_fuel(Some(30 * MS)), Err(Error::Timeout));
    assert!(began.elapsed() >= 30 * MS);
    t.kill();
    assert!(t.is_killed());
    assert_eq!(t.await_fuel(None), Err(Error::Killed));
    assert_eq!(t.has_fuel(), Err(Error::Killed));
    let s = t.stop().unwrap();
    assert_eq!(s.total, 1);
    assert_eq!(t.summary(), s);
}

#[test]
fn rates_peek_and_weighted_fuel() {
    let o = Options::new().hardcap(Hardcap::Window).monitor(false);
    let t = Throttle::with_options(4, Duration::from_secs(1), &o).unwrap();
    assert_eq!(t.rate().unwrap(), (4, Duration::from_secs(1)));
    assert_eq!(t.peek(1), Err(Error::NotRunning));
    t.start().unwrap();
    // The first unit is there at the start, then one every 250 ms.
    let p = t.peek(4).unwrap();
    assert_eq!(p.available, 1, "{p:?}");
    assert!(p.wait > 500 * MS && p.wait <= 750 * MS, "{p:?}");
    t.has_fuel().unwrap();
    assert_eq!(t.has_fuel(), Err(Error::NoFuel));
    t.set_rate(1000, Duration::from_millis(1500)).unwrap();
    assert_eq!(t.rate().unwrap(), (1000, Duration::from_millis(1500)));
    t.await_fuel_n(3, Some(Duration::from_secs(1))).unwrap();
    assert!(matches!(t.latest(), Err(Error::MonitorOff(_))));
}

#[test]
fn emit_and_statistics() {
    let o = Options::new().ration(false).refresh(MS);
    let t = Throttle::with_options(1, Duration::from_secs(1), &o).unwrap();
    t.start().unwrap();
    let now = Instant::now();
    t.emit_at(now).unwrap();
    t.emit_at(now + 10 * MS).unwrap();
    t.emit().unwrap();
    std::thread::sleep(50 * MS); // a few monitor refreshes
    let lo = t.lo_hi().unwrap();
    assert!(lo.seconds_between > 0.0 && lo.per_second > 0.0, "{lo:?}");
    assert!(t.latest().unwrap().per_second >= 1.0);
    t.hi_lo().unwrap();
    let s = t.stop().unwrap();
    assert_eq!(s.total, 3);
    assert!((s.mean.per_second * s.runtime.as_secs_f64() - 3.0).abs() < 1e-6);
    assert_eq!(t.mean().unwrap(), s.mean);
}

#[test]
fn cancelled_wait_gives_its_unit_back() {
    let t = Throttle::new(1, Duration::from_secs(10)).unwrap();
    t.start().unwrap();
    t.await_fuel(None).unwrap(); // the next unit is 10 s away
    let token = CancelToken::new();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| t.await_fuel_cancellable(None, &token));
        wait_for(|| t.peek(1).unwrap().wait > Duration::from_secs(15)); // queued
        token.cancel();
        assert!(token.is_cancelled());
        assert_eq!(waiter.join().unwrap(), Err(Error::Cancelled));
    });
    assert!(t.peek(1).unwrap().wait <= Duration::from_secs(10)); // given back
    token.reset();
    assert_eq!(
        t.await_fuel_cancellable(Some(MS), &token),
        Err(Error::Timeout)
    );
}

#[test]
fn named_throttles() {
    let name = format!("mpt-rust-api-{}", std::process::id());
    let _ = Throttle::unlink(&name);
    let o = Options::new().hardcap(Hardcap::One);
    let a = Throttle::create_named(&name, 3, Duration::from_secs(1), &o).unwrap();
    assert!(a.created());
    let b = Throttle::create_named(&name, 3, Duration::from_secs(1), &o).unwrap();
    assert!(!b.created());
    let other = Throttle::create_named(&name, 4, Duration::from_secs(1), &o);
    assert!(matches!(other, Err(Error::Mismatch(_))));
    let c = Throttle::open(&name).unwrap();
    assert_eq!(
        c.hardcap(),
        Hardcap::One,
        "an opened throttle's hardcap is its maker's"
    );
    assert!(
        c.counts_grants() && c.has_monitor(),
        "the defaults: auto_emit, monitor"
    );
    // Listed, with its owner: this process's effective uid.
    let listed = Throttle::list_named().unwrap();
    let me = listed
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("{name} in {listed:?}"));
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(me.uid, euid);
    assert!(me.owner.starts_with(&format!("uid {euid}")), "{}", me.owner);
    a.start().unwrap();
    assert!(c.is_running());
    c.has_fuel().unwrap();
    assert_eq!(b.has_fuel(), Err(Error::NoFuel)); // ONE: 1/3 s apart
    Throttle::unlink(&name).unwrap();
    assert!(matches!(Throttle::open(&name), Err(Error::NotFound(_))));
    assert!(matches!(Throttle::unlink(&name), Err(Error::NotFound(_))));
    assert_eq!(a.stop().unwrap().total, 1);
}

#[test]
fn sleepers_are_counted() {
    let t =
        Throttle::with_options(1, Duration::from_secs(60), &Options::new().monitor(false)).unwrap();
    assert_eq!(t.sleepers(), 0);
    // Two waiters for a start, asleep.
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || t.await_fuel(None))
        })
        .collect();
    wait_for(|| t.sleepers() == 2);
    t.start().unwrap();
    // One goes at once; the other sleeps towards its grant a minute later.
    wait_for(|| t.summary().total == 1 && t.sleepers() == 1);
    t.kill();
    for w in waiters {
        let _ = w.join().unwrap();
    }
    assert_eq!(t.sleepers(), 0);
}

/// Polls `cond` every millisecond for up to 5 s.
fn wait_for(cond: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < end, "condition not met within 5 s");
        std::thread::sleep(MS);
    }
}

#[cfg(feature = "tokio")]
mod with_tokio {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn until_ready_does_not_block_the_runtime() {
        let t = Throttle::new(1, 300 * MS).unwrap();
        t.start().unwrap();
        runtime().block_on(async {
            t.until_ready().await.unwrap(); // in the tank: no thread hop
            let began = Instant::now();
            let t2 = t.clone();
            let next = tokio::spawn(async move { t2.until_ready().await });
            // One thread runs this runtime: these yields go on while the
            // other task waits.
            let mut turns = 0u64;
            while !next.is_finished() {
                tokio::task::yield_now().await;
                turns += 1;
            }
            next.await.unwrap().unwrap();
            assert!(began.elapsed() >= 250 * MS, "{:?}", began.elapsed());
            assert!(turns > 100, "{turns} turns: the runtime was blocked");
            let two = t.until_n_ready(2).await; // more than the tank holds
            assert!(matches!(two, Err(Error::InvalidArgument(_))), "{two:?}");
        });
    }

    #[test]
    fn a_dropped_until_ready_gives_its_unit_back() {
        let t = Throttle::new(1, Duration::from_secs(10)).unwrap();
        t.start().unwrap();
        let rt = runtime();
        rt.block_on(async {
            t.until_ready().await.unwrap(); // the next unit is 10 s away
            let t2 = t.clone();
            let waiter = tokio::spawn(async move { t2.until_ready().await });
            // Queued: a new arrival would now wait for the unit after its.
            while t.peek(1).unwrap().wait <= Duration::from_secs(15) {
                tokio::task::yield_now().await;
            }
            waiter.abort(); // drops the future
            assert!(waiter.await.unwrap_err().is_cancelled());
        });
        // The blocking wait ends and gives the unit back.
        wait_for(|| t.peek(1).unwrap().wait <= Duration::from_secs(10));
        rt.block_on(async {
            t.kill();
            assert_eq!(t.until_ready().await, Err(Error::Killed));
        });
    }
}
