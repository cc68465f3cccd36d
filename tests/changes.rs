//! Weighted fuel, live rate changes and give-backs on the real clock, across
//! threads and forked processes, through the C ABI (harness = false: the
//! tests fork).
//!
//! Bounds are generous for a noisy 2-core machine but tight enough to tell
//! a rescheduled waiter from one that slept on: each scenario is built so
//! that the wrong behaviour is off by hundreds of milliseconds or seconds.

mod common;

use common::{
    H, Kids, MS, OK, Overrun, Owned, SEC, Shm, Test, TestResult, check, kill_live, note, now,
};
use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::cancel::{
    MptCancel, mpt_await_fuel_cancellable, mpt_cancel_fire, mpt_cancel_free, mpt_cancel_new,
    mpt_cancel_reset,
};
use mp_throttle::ffi::options::{MPT_OPTIONS_VERSION, MptHardcap, MptOptions, mpt_options_init};
use mp_throttle::ffi::throttle::{
    MPT_FOREVER, mpt_await_fuel_n, mpt_get_rate, mpt_has_fuel_n, mpt_peek_fuel, mpt_set_rate,
    mpt_throttle_new,
};

fn throttle(max_n: u64, per_s: f64, hardcap: MptHardcap) -> Result<Owned, String> {
    let mut o = MptOptions::default();
    // SAFETY: `o` is valid for writing.
    let st = unsafe { mpt_options_init(&mut o, MPT_OPTIONS_VERSION) };
    check!(st == MptStatus::Ok, "options: {st:?}");
    o.hardcap = hardcap as u32;
    o.as_monitor = 0;
    let mut p = std::ptr::null_mut();
    // SAFETY: `o` is a valid options struct, `p` valid for writing.
    let st = unsafe { mpt_throttle_new(max_n, per_s, &o, &mut p) };
    check!(
        st == MptStatus::Ok && !p.is_null(),
        "mpt_throttle_new: {st:?}"
    );
    Ok(Owned(H(p)))
}

fn await_n(h: H, n: u64, timeout_s: f64) -> (MptStatus, i64) {
    let mut g = 0;
    // SAFETY: a live handle; `g` is valid for writing.
    let st = unsafe { mpt_await_fuel_n(h.0, n, timeout_s, &mut g) };
    (st, g)
}

fn set_rate(h: H, max_n: u64, per_s: f64) -> MptStatus {
    // SAFETY: a live handle.
    unsafe { mpt_set_rate(h.0, max_n, per_s) }
}

/// Three processes sleep towards units due 10, 20 and 30 s away; a fourth
/// process raises the rate 1,000-fold. All three go at once, in their order:
/// with LIMIT exactly one new period (10 ms) apart; with WINDOW, whose new
/// window of 1 s holds 100, as they reserve again (in their order), and
/// `mpt_get_rate` reads the new rate everywhere.
fn rate_change_reschedules_sleepers_in_other_processes(hardcap: MptHardcap) -> TestResult {
    let t = throttle(1, 10.0, hardcap)?;
    let h = t.h();
    check!(h.start() == MptStatus::Ok, "h.start() == MptStatus::Ok");
    check!(
        h.await_fuel(1.0).0 == MptStatus::Ok,
        "the first unit is there at start"
    );
    // Per child: status, grant, return time.
    let shm = Shm::new(9);
    let mut kids = Kids::new();
    for i in 0..3 {
        let shm = &shm;
        kids.spawn(move || {
            let (st, g) = h.await_fuel(60.0);
            shm.set(3 * i, st as i64);
            shm.set(3 * i + 1, g);
            shm.set(3 * i + 2, now());
            0
        });
        common::sleep_ms(100); // so they queue in order
    }
    common::sleep_ms(200);
    let before = now();
    let mut changer = Kids::new();
    let pid = changer.spawn(move || {
        if set_rate(h, 100, 1.0) == MptStatus::Ok {
            0
        } else {
            1
        }
    });
    check!(
        changer.wait(pid, 10 * SEC)? == 0,
        "mpt_set_rate failed in the child"
    );
    kids.wait_all_ok(10 * SEC)?;
    let grants: Vec<i64> = (0..3).map(|i| shm.get(3 * i + 1)).collect();
    for i in 0..3 {
        check!(shm.get(3 * i) == OK, "child {i}: status {}", shm.get(3 * i));
        let back = shm.get(3 * i + 2) - before;
        check!(
            back < 2 * SEC,
            "child {i} came back {} ms after the change",
            back / MS
        );
    }
    let apart: Vec<i64> = grants.windows(2).map(|w| w[1] - w[0]).collect();
    if hardcap == MptHardcap::Window {
        check!(
            apart.iter().all(|&d| d > 0 && d < SEC),
            "grants not in order, at once: {apart:?} ns apart"
        );
    } else {
        check!(
            apart == [10 * MS, 10 * MS],
            "grants not in order one new period apart: {apart:?} ns apart"
        );
    }
    check!(
        grants[0] >= before && grants[0] < before + SEC,
        "first grant {} ms after the change",
        (grants[0] - before) / MS
    );
    let (mut max_n, mut per_s) = (0, 0.0);
    // SAFETY: a live handle; both outputs valid for writing.
    let st = unsafe { mpt_get_rate(h.0, &mut max_n, &mut per_s) };
    check!(st == MptStatus::Ok, "mpt_get_rate: {st:?}");
    check!((max_n, per_s) == (100, 1.0), "rate {max_n} per {per_s} s");
    Ok(())
}

/// A waiter whose grant a slowdown moves past its timeout gives its unit
/// back at once: the waiters behind it move up one new period, in their
/// order. It returns TIMEOUT at its deadline, not before (a later change
/// could still have let it through).
fn timed_out_waiter_gives_back_its_unit() -> TestResult {
    let t = throttle(1, 0.1, MptHardcap::Limit)?;
    let h = t.h();
    check!(h.start() == MptStatus::Ok, "h.start() == MptStatus::Ok");
    let (st, g0) = h.await_fuel(1.0);
    check!(st == MptStatus::Ok, "st == MptStatus::Ok");
    // A (timeout 0.3 s) is due at g0 + 100 ms, B at + 200 ms, C at + 300 ms.
    let a = std::thread::spawn(move || {
        let called = now();
        let r = h.await_fuel(0.3);
        (r, called, now())
    });
    common::sleep_ms(10);
    let b = std::thread::spawn(move || h.await_fuel(60.0));
    common::sleep_ms(10);
    let c = std::thread::spawn(move || h.await_fuel(60.0));
    common::sleep_ms(20);
    // Now one unit a second: A would be due about 0.7 s from the change,
    // after its timeout; B and C 1.7 and 2.7 s.
    check!(
        set_rate(h, 1, 1.0) == MptStatus::Ok,
        "set_rate(h, 1, 1.0) == MptStatus::Ok"
    );
    let ((a_st, _), a_called, a_back) = a.join().unwrap();
    let (b_st, b_grant) = b.join().unwrap();
    let (c_st, c_grant) = c.join().unwrap();
    check!(a_st == MptStatus::Timeout, "A: {a_st:?}");
    check!(
        a_back - a_called >= 300 * MS && a_back - a_called < 450 * MS,
        "A returned TIMEOUT {} ms after it called, not at its 300 ms timeout",
        (a_back - a_called) / MS
    );
    check!(
        b_st == MptStatus::Ok && c_st == MptStatus::Ok,
        "b_st == MptStatus::Ok && c_st == MptStatus::Ok"
    );
    let b_at = b_grant - g0;
    check!(
        (550 * MS..=900 * MS).contains(&b_at),
        "B was granted {} ms after the first unit: A's unit was not given back \
         (about 1,750 ms) or the change was not followed (200 ms)",
        b_at / MS
    );
    note!("B granted {} ms after the first unit", b_at / MS);
    check!(
        c_grant - b_grant == SEC,
        "C {} ms after B",
        (c_grant - b_grant) / MS
    );
    Ok(())
}

/// Bandwidth-style: 1,000 units a second, three processes taking 100 at a
/// time for 2 s. The tank starts empty with one unit; grant k of 100 units
/// is due when 100k units have accrued, so 20 grants fit in 2 s (19 if a
/// process was off the CPU at the end). `mpt_has_fuel_n` and
/// `mpt_peek_fuel` agree on the tank.
fn weighted_fuel_across_processes() -> TestResult {
    let t = throttle(1000, 1.0, MptHardcap::Limit)?;
    let h = t.h();
    let shm = Shm::new(3);
    check!(h.start() == MptStatus::Ok, "h.start() == MptStatus::Ok");
    let end = now() + 2 * SEC - 5 * MS;
    let mut kids = Kids::new();
    for i in 0..3 {
        let shm = &shm;
        kids.spawn(move || {
            let mut got = 0;
            loop {
                let left = (end - now()) as f64 / 1e9;
                if left <= 0.0 {
                    break;
                }
                match await_n(h, 100, left) {
                    (MptStatus::Ok, g) if g <= end => got += 1,
                    (MptStatus::Ok, _) => {}
                    (MptStatus::Timeout, _) => break,
                    _ => return 1,
                }
            }
            shm.set(i, got);
            0
        });
    }
    kids.wait_all_ok(10 * SEC)?;
    let total: i64 = (0..3).map(|i| shm.get(i)).sum();
    check!(
        (19..=20).contains(&total),
        "{total} grants of 100 units in 2 s"
    );
    // Over 1,000 at once can never be granted.
    let mut g = 0;
    // SAFETY: a live handle; `g` valid for writing.
    let st = unsafe { mpt_has_fuel_n(h.0, 1001, &mut g) };
    check!(st == MptStatus::InvalidArgument, "{st:?}");
    common::sleep_ms(300);
    let (mut level, mut wait) = (0, -1.0);
    // SAFETY: a live handle; both outputs valid for writing.
    let st = unsafe { mpt_peek_fuel(h.0, 1000, &mut level, &mut wait) };
    check!(st == MptStatus::Ok, "mpt_peek_fuel: {st:?}");
    check!(
        (250..=1000).contains(&level) && wait > 0.0 || level == 1000,
        "{level}, {wait}"
    );
    // SAFETY: as above.
    let st = unsafe { mpt_has_fuel_n(h.0, level, &mut g) };
    check!(
        st == MptStatus::Ok,
        "peek said {level} units were there: {st:?}"
    );
    Ok(())
}

/// Processes that keep changing the rate (200/s, 400/s, back, every 2 ms:
/// far more often than any real use) are SIGKILLed
/// at random instants, inside `mpt_set_rate` included (holding the change
/// lock, or having committed a change nobody applied yet), 100 times, while
/// three worker processes wait for fuel with 100 ms timeouts. No worker
/// blocks beyond its timeout, the grants stay between the two rates, and
/// afterwards a change goes through at once and holds exactly.
fn rate_changers_killed_wedge_nobody(hardcap: MptHardcap) -> TestResult {
    let t = throttle(200, 1.0, hardcap)?;
    let h = t.h();
    check!(h.start() == MptStatus::Ok, "start");
    // Per worker: grants, calls, worst overrun (ns); a stop flag at 9; per
    // worker at 10 + i, a status it should never have had; at 13 + i, its
    // shortest wait that returned TIMEOUT (ns).
    let shm = Shm::new(16);
    for i in 0..3 {
        shm.set(13 + i, i64::MAX);
    }
    let mut workers = Kids::new();
    for i in 0..3 {
        let shm = &shm;
        workers.spawn(move || {
            while shm.get(9) == 0 {
                let t0 = now();
                let (st, _) = h.await_fuel(0.1);
                let over = now() - t0 - 100 * MS;
                shm.at(3 * i + 2)
                    .fetch_max(over, std::sync::atomic::Ordering::SeqCst);
                match st {
                    MptStatus::Ok => shm.set(3 * i, shm.get(3 * i) + 1),
                    MptStatus::Timeout => {
                        shm.at(13 + i)
                            .fetch_min(over + 100 * MS, std::sync::atomic::Ordering::SeqCst);
                    }
                    other => {
                        shm.set(10 + i, other as i64);
                        return 1;
                    }
                }
                shm.set(3 * i + 1, shm.get(3 * i + 1) + 1);
            }
            0
        });
    }
    let grants = |shm: &Shm| (0..3).map(|i| shm.get(3 * i)).sum::<i64>();
    let mut rng = now() as u64 | 1;
    let mut changers = Kids::new();
    let chaos_from = now();
    let before = grants(&shm);
    for _ in 0..100 {
        let pid = changers.spawn(move || {
            let mut fast = false;
            loop {
                fast = !fast;
                if set_rate(h, if fast { 400 } else { 200 }, 1.0) != MptStatus::Ok {
                    return 1;
                }
                common::sleep_ms(2);
                if false {
                    return 1;
                }
            }
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        common::sleep_ms(rng % 20);
        changers.kill(pid);
    }
    let chaos = now() - chaos_from;
    let during = grants(&shm) - before;
    let secs = chaos as f64 / 1e9;
    note!("{during} grants in {secs:.2} s of chaos");
    check!(
        (during as f64) >= 190.0 * secs && (during as f64) <= 400.0 * secs + 400.0,
        "{during} grants in {secs:.2} s: not between 200/s and 400/s"
    );
    // The lock is free (or taken over from the dead): a change goes through.
    let t0 = now();
    check!(
        set_rate(h, 100, 1.0) == MptStatus::Ok,
        "set_rate after the chaos"
    );
    check!(now() - t0 < SEC, "set_rate took {} ms", (now() - t0) / MS);
    common::sleep_ms(200); // the old reservations drain
    let from = grants(&shm);
    common::sleep_ms(2000);
    let steady = grants(&shm) - from;
    note!("{steady} grants in the 2 s after at 100/s");
    check!(
        (190..=212).contains(&steady),
        "{steady} grants in 2 s at 100/s"
    );
    shm.set(9, 1);
    workers.wait_all_ok(5 * SEC).map_err(|e| {
        let odd: Vec<i64> = (0..3).map(|i| shm.get(10 + i)).collect();
        format!("{e}; statuses the workers got besides OK and TIMEOUT: {odd:?}")
    })?;
    for i in 0..3 {
        let over = shm.get(3 * i + 2);
        check!(
            over < 50 * MS,
            "worker {i} overran its timeout by {} ms",
            over / MS
        );
        // A wait returns TIMEOUT at its deadline, never early, whatever the
        // changes did to its grant meanwhile.
        let shortest = shm.get(13 + i);
        check!(
            shortest >= 100 * MS,
            "worker {i} had a 100 ms wait return TIMEOUT after {:.1} ms",
            shortest as f64 / 1e6
        );
    }
    note!(
        "shortest wait that timed out: {:.1} ms (100 ms timeouts)",
        (0..3).map(|i| shm.get(13 + i)).min().unwrap_or(0) as f64 / 1e6
    );
    Ok(())
}

/// A cancellation token of this process (freed on drop).
struct Token(*mut MptCancel);

// SAFETY: the C API makes fire/reset/wait safe from any thread.
unsafe impl Send for Token {}
// SAFETY: as for Send.
unsafe impl Sync for Token {}

impl Token {
    fn new() -> Result<Token, String> {
        let mut p = std::ptr::null_mut();
        // SAFETY: `p` is valid for writing.
        let st = unsafe { mpt_cancel_new(&mut p) };
        check!(
            st == MptStatus::Ok && !p.is_null(),
            "mpt_cancel_new: {st:?}"
        );
        Ok(Token(p))
    }

    fn fire(&self) -> MptStatus {
        // SAFETY: a live token.
        unsafe { mpt_cancel_fire(self.0) }
    }

    fn reset(&self) -> MptStatus {
        // SAFETY: a live token.
        unsafe { mpt_cancel_reset(self.0) }
    }

    fn wait(&self, h: H, n: u64, timeout_s: f64) -> (MptStatus, i64) {
        let mut g = 0;
        // SAFETY: a live handle and token; `g` valid for writing.
        let st = unsafe { mpt_await_fuel_cancellable(h.0, n, timeout_s, self.0, &mut g) };
        (st, g)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        // SAFETY: a live token that no wait uses any more.
        unsafe { mpt_cancel_free(self.0) };
    }
}

/// A cancelled waiter returns CANCELLED at once and takes nothing: the
/// waiter behind it gets its place, and the one before it keeps its own.
/// A fired token refuses new waits until reset; a forked child cannot use
/// its parent's token.
fn cancel_ends_one_wait_and_the_others_move_up(hardcap: MptHardcap) -> TestResult {
    let t = throttle(1, 0.1, hardcap)?;
    let h = t.h();
    let token = std::sync::Arc::new(Token::new()?);
    check!(h.start() == MptStatus::Ok, "start");
    let (st, g0) = h.await_fuel(1.0);
    check!(st == MptStatus::Ok, "first unit: {st:?}");
    // A is due at g0 + 100 ms, B (cancellable) at + 200 ms, C at + 300 ms.
    let a = std::thread::spawn(move || h.await_fuel(60.0));
    common::sleep_ms(10);
    let b_token = std::sync::Arc::clone(&token);
    let b = std::thread::spawn(move || {
        let r = b_token.wait(h, 1, MPT_FOREVER);
        (r, now())
    });
    common::sleep_ms(10);
    let c = std::thread::spawn(move || h.await_fuel(60.0));
    common::sleep_ms(30);
    let fired = now();
    check!(token.fire() == MptStatus::Ok, "fire");
    let ((b_st, _), b_back) = b.join().unwrap();
    let (a_st, a_grant) = a.join().unwrap();
    let (c_st, c_grant) = c.join().unwrap();
    check!(b_st == MptStatus::Cancelled, "B: {b_st:?}");
    check!(
        b_back - fired < 100 * MS,
        "B returned {} ms after the cancel",
        (b_back - fired) / MS
    );
    check!(
        a_st == MptStatus::Ok && c_st == MptStatus::Ok,
        "A {a_st:?}, C {c_st:?}"
    );
    check!(a_grant - g0 == 100 * MS, "A at +{} ms", (a_grant - g0) / MS);
    check!(
        c_grant - g0 == 200 * MS,
        "C at +{} ms: B's unit was not given back (300 ms)",
        (c_grant - g0) / MS
    );
    // Fired: refused at once, until reset.
    let t0 = now();
    check!(
        token.wait(h, 1, MPT_FOREVER).0 == MptStatus::Cancelled,
        "fired token"
    );
    check!(now() - t0 < 50 * MS, "a fired token waited");
    check!(token.reset() == MptStatus::Ok, "reset");
    check!(token.wait(h, 1, 1.0).0 == MptStatus::Ok, "after reset");
    // A forked child may not use its parent's token.
    let shm = Shm::new(1);
    let mut kids = Kids::new();
    {
        let (shm, token) = (&shm, &token);
        kids.spawn(move || {
            shm.set(0, token.wait(h, 1, 0.0).0 as i64);
            0
        });
    }
    kids.wait_all_ok(10 * SEC)?;
    check!(
        shm.get(0) == MptStatus::WrongState as i64,
        "child using its parent's token: {}",
        shm.get(0)
    );
    Ok(())
}

/// `mpt_stop` reports every grant it let through: a grant that passed its
/// check before the kill flag is counted before the total is read. Three
/// processes take fuel at 1,000,000/s while this one starts and stops the
/// throttle 300 times; each stop's total must equal the total read 5 ms
/// later (a grant counted after the stop's read would show there).
fn stop_counts_every_grant_it_let_through() -> TestResult {
    let mut o = MptOptions::default();
    // SAFETY: `o` is valid for writing.
    let st = unsafe { mpt_options_init(&mut o, MPT_OPTIONS_VERSION) };
    check!(st == MptStatus::Ok, "options: {st:?}");
    o.hardcap = MptHardcap::None as u32;
    let mut p = std::ptr::null_mut();
    // SAFETY: `o` is a valid options struct, `p` valid for writing.
    let st = unsafe { mpt_throttle_new(1_000_000, 1.0, &o, &mut p) };
    check!(st == MptStatus::Ok, "mpt_throttle_new: {st:?}");
    let t = Owned(H(p));
    let h = t.h();
    let shm = Shm::new(1);
    let mut kids = Kids::new();
    for _ in 0..3 {
        let shm = &shm;
        kids.spawn(move || {
            while shm.get(0) == 0 {
                match h.has_fuel().0 {
                    MptStatus::Ok | MptStatus::NoFuel | MptStatus::Killed => {}
                    _ => return 1,
                }
            }
            0
        });
    }
    let mut missed = 0;
    for _ in 0..300 {
        check!(h.start() == MptStatus::Ok, "start");
        std::thread::sleep(std::time::Duration::from_micros(1500));
        let (st, at_stop) = h.stop();
        check!(st == MptStatus::Ok, "stop: {st:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut later = mp_throttle::ffi::throttle::MptSummary::default();
        // SAFETY: a live handle; `later` valid for writing.
        let st = unsafe { mp_throttle::ffi::stats::mpt_get_summary(h.0, &mut later) };
        check!(st == MptStatus::Ok, "mpt_get_summary: {st:?}");
        missed += later.total - at_stop.total;
    }
    shm.set(0, 1);
    kids.wait_all_ok(10 * SEC)?;
    check!(
        missed == 0,
        "{missed} grants were counted after the stop that let them through"
    );
    Ok(())
}

/// A waiter for more units than a slower rate's tank can hold is refused
/// when the change comes (INVALID_ARGUMENT at once, nothing taken), rather
/// than granted a burst the new rate forbids (WINDOW: when it would
/// reserve again under the new rate).
fn rate_change_refuses_a_waiter_the_new_tank_cannot_hold(hardcap: MptHardcap) -> TestResult {
    let t = throttle(10, 1.0, hardcap)?;
    let h = t.h();
    check!(h.start() == MptStatus::Ok, "start");
    // 8 units: due 0.7 s after the start (the tank starts with one).
    let big = std::thread::spawn(move || {
        let r = await_n(h, 8, 60.0);
        (r, now())
    });
    common::sleep_ms(50);
    let changed = now();
    check!(set_rate(h, 5, 1.0) == MptStatus::Ok, "set_rate");
    let ((st, _), back) = big.join().unwrap();
    check!(st == MptStatus::InvalidArgument, "the waiter for 8: {st:?}");
    check!(
        back - changed < 100 * MS,
        "refused {} ms after the change",
        (back - changed) / MS
    );
    // Its units were given back: 5 units are in the tank within about a
    // second at 5/s (less than the 8-unit wait would have left).
    let (st, _) = await_n(h, 5, 2.0);
    check!(st == MptStatus::Ok, "5 units after the refusal: {st:?}");
    Ok(())
}

/// Early timeouts: the rate swings between 100/s (for 30 ms) and one unit
/// per 10 s (for 150 ms), while three worker processes wait with 100 ms
/// timeouts (each hardcap). A slowdown moves queued grants past their deadlines; a waiter
/// so moved gives its units back at once, yet returns TIMEOUT only at its
/// deadline, never before (a later speed-up may still let it through).
fn timeouts_wait_out_their_deadline(hardcap: MptHardcap) -> TestResult {
    let t = throttle(100, 1.0, hardcap)?;
    let h = t.h();
    check!(h.start() == MptStatus::Ok, "start");
    // Per worker: [timeouts, grants, shortest timed-out wait (ns)]; [9]
    // stop.
    let shm = Shm::new(10);
    for i in 0..3 {
        shm.set(3 * i + 2, i64::MAX);
    }
    let mut workers = Kids::new();
    for i in 0..3 {
        let shm = &shm;
        workers.spawn(move || {
            while shm.get(9) == 0 {
                let t0 = now();
                match h.await_fuel(0.1).0 {
                    MptStatus::Ok => shm.set(3 * i + 1, shm.get(3 * i + 1) + 1),
                    MptStatus::Timeout => {
                        shm.set(3 * i, shm.get(3 * i) + 1);
                        shm.at(3 * i + 2)
                            .fetch_min(now() - t0, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => return 1,
                }
            }
            0
        });
    }
    let until = now() + 2000 * MS;
    while now() < until {
        check!(set_rate(h, 1, 10.0) == MptStatus::Ok, "set_rate");
        common::sleep_ms(150);
        check!(set_rate(h, 100, 1.0) == MptStatus::Ok, "set_rate");
        common::sleep_ms(30);
    }
    shm.set(9, 1);
    check!(set_rate(h, 100, 1.0) == MptStatus::Ok, "set_rate");
    workers.wait_all_ok(5 * SEC)?;
    let timeouts: i64 = (0..3).map(|i| shm.get(3 * i)).sum();
    let grants: i64 = (0..3).map(|i| shm.get(3 * i + 1)).sum();
    let shortest = (0..3).map(|i| shm.get(3 * i + 2)).min().unwrap_or(i64::MAX);
    note!(
        "{grants} grants, {timeouts} timeouts; the shortest timed-out wait took {:.1} ms",
        shortest as f64 / 1e6
    );
    check!(
        timeouts > 10,
        "only {timeouts} timeouts: the scenario did not happen"
    );
    check!(
        shortest >= 100 * MS,
        "a 100 ms wait returned TIMEOUT after {:.1} ms",
        shortest as f64 / 1e6
    );
    Ok(())
}

/// A rate-change storm: two processes change the rate in a tight loop,
/// alternating 1,000/s and 400/s, while four worker processes wait for fuel
/// without a timeout. Whatever the frequency of changes, the grants in any
/// stretch of time are at least what the slowest rate in force during it
/// allows, less one: at least 399 in every second of the storm (and at most
/// what the fastest allows, with LIMIT's tank). Then the rate is set to
/// 1,000/s and left alone: the first second after gives 1,000 (within 2:
/// no units lost to the storm, no waiter lost its place and queued again
/// behind units nobody takes).
fn rate_change_storm(hardcap: MptHardcap) -> TestResult {
    const WORKERS: usize = 4;
    const CAP: usize = 16_384;
    let t = throttle(1000, 1.0, hardcap)?;
    let h = t.h();
    // [0] changers stop, [1] changes made; per worker: grants, then times.
    let shm = Shm::new(2 + WORKERS * (1 + CAP));
    let at = |w: usize| 2 + w * (1 + CAP);
    let mut workers = Kids::new();
    for w in 0..WORKERS {
        let shm = &shm;
        workers.spawn(move || {
            let b = at(w);
            loop {
                match h.await_fuel(MPT_FOREVER) {
                    (MptStatus::Ok, g) => {
                        let i = shm.get(b) as usize;
                        if i >= CAP {
                            return 3;
                        }
                        shm.set(b + 1 + i, g);
                        shm.set(b, i as i64 + 1);
                    }
                    (MptStatus::Killed, _) => return 0,
                    (st, _) => return 10 + st as i32,
                }
            }
        });
    }
    check!(h.start() == MptStatus::Ok, "start");
    common::sleep_ms(300);
    let storm_from = now();
    let mut changers = Kids::new();
    for _ in 0..2 {
        let shm = &shm;
        changers.spawn(move || {
            while shm.get(0) == 0 {
                for max_n in [400, 1000] {
                    let st = set_rate(h, max_n, 1.0);
                    if st != MptStatus::Ok {
                        eprintln!("set_rate: {st:?}: {}", common::last_error());
                        return 1;
                    }
                }
                shm.at(1).fetch_add(2, std::sync::atomic::Ordering::SeqCst);
            }
            0
        });
    }
    common::sleep_ms(2500);
    shm.set(0, 1);
    changers.wait_all_ok(10 * SEC)?;
    let storm_to = now();
    check!(set_rate(h, 1000, 1.0) == MptStatus::Ok, "the last change");
    let settled = now();
    common::sleep_ms(1300);
    check!(h.stop().0 == MptStatus::Ok, "stop");
    workers.wait_all_ok(10 * SEC)?;
    let mut grants: Vec<i64> = (0..WORKERS)
        .flat_map(|w| shm.words(at(w) + 1, shm.get(at(w)) as usize))
        .collect();
    grants.sort_unstable();
    let count = |from: i64, to: i64| grants.iter().filter(|&&g| g >= from && g < to).count();
    let changes = shm.get(1);
    let secs = (storm_to - storm_from) as f64 / 1e9;
    // Every second of the storm, in steps of 100 ms.
    let (mut fewest, mut most) = (usize::MAX, 0);
    let mut from = storm_from;
    while from + SEC <= storm_to {
        let n = count(from, from + SEC);
        fewest = fewest.min(n);
        most = most.max(n);
        from += 100 * MS;
    }
    let after = count(settled, settled + SEC);
    note!(
        "{changes} changes in {secs:.2} s ({:.1} us apart): {fewest} to {most} grants in a second of the \
         storm; {after} in the second after it",
        secs * 1e6 / changes.max(1) as f64
    );
    check!(
        fewest >= 399,
        "{fewest} grants in a second of the storm, fewer than 400/s allows less one"
    );
    let ceiling = if hardcap == MptHardcap::Limit {
        2000
    } else {
        1001
    };
    check!(
        most <= ceiling,
        "{most} grants in a second of the storm, more than 1,000/s allows"
    );
    check!(
        (998..=1001).contains(&after),
        "{after} grants in the second after the storm at 1,000/s"
    );
    Ok(())
}

fn main() {
    let tests: &[Test] = &[
        (
            "rate_change_reschedules_sleepers_in_other_processes",
            || rate_change_reschedules_sleepers_in_other_processes(MptHardcap::Limit),
            30,
        ),
        (
            "window_rate_change_requeues_sleepers_in_other_processes",
            || rate_change_reschedules_sleepers_in_other_processes(MptHardcap::Window),
            30,
        ),
        (
            "timed_out_waiter_gives_back_its_unit",
            timed_out_waiter_gives_back_its_unit,
            30,
        ),
        (
            "weighted_fuel_across_processes",
            weighted_fuel_across_processes,
            30,
        ),
        (
            "cancel_ends_one_wait_and_the_others_move_up",
            || cancel_ends_one_wait_and_the_others_move_up(MptHardcap::Limit),
            30,
        ),
        (
            "window_cancel_ends_one_wait_and_the_others_move_up",
            || cancel_ends_one_wait_and_the_others_move_up(MptHardcap::Window),
            30,
        ),
        (
            "rate_change_refuses_a_waiter_the_new_tank_cannot_hold",
            || rate_change_refuses_a_waiter_the_new_tank_cannot_hold(MptHardcap::Limit),
            30,
        ),
        (
            "window_rate_change_refuses_a_waiter_the_new_window_cannot_hold",
            || rate_change_refuses_a_waiter_the_new_tank_cannot_hold(MptHardcap::Window),
            30,
        ),
        (
            "stop_counts_every_grant_it_let_through",
            stop_counts_every_grant_it_let_through,
            60,
        ),
        (
            "rate_changers_killed_wedge_nobody",
            || rate_changers_killed_wedge_nobody(MptHardcap::Limit),
            60,
        ),
        (
            "window_rate_changers_killed_wedge_nobody",
            || rate_changers_killed_wedge_nobody(MptHardcap::Window),
            60,
        ),
        (
            "limit_timeouts_wait_out_their_deadline",
            || timeouts_wait_out_their_deadline(MptHardcap::Limit),
            30,
        ),
        (
            "one_timeouts_wait_out_their_deadline",
            || timeouts_wait_out_their_deadline(MptHardcap::One),
            30,
        ),
        (
            "none_timeouts_wait_out_their_deadline",
            || timeouts_wait_out_their_deadline(MptHardcap::None),
            30,
        ),
        (
            "window_timeouts_wait_out_their_deadline",
            || timeouts_wait_out_their_deadline(MptHardcap::Window),
            30,
        ),
        (
            "limit_rate_change_storm",
            || rate_change_storm(MptHardcap::Limit),
            60,
        ),
        (
            "one_rate_change_storm",
            || rate_change_storm(MptHardcap::One),
            60,
        ),
        (
            "none_rate_change_storm",
            || rate_change_storm(MptHardcap::None),
            60,
        ),
        (
            "window_rate_change_storm",
            || rate_change_storm(MptHardcap::Window),
            60,
        ),
    ];
    common::run(
        tests,
        Overrun {
            cleanup: kill_live,
            done: "; children killed",
        },
        || {},
    );
}
