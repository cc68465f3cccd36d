//! Multi-process tests with real `fork()`.
//!
//! `harness = false`: libtest runs tests on threads and holds output locks,
//! which a forked child would inherit. This `main` runs each test in turn on
//! the main thread, prints `test <name> ... ok` / `FAILED`, then
//! `N passed, N failed`, and exits non-zero if any failed.
//!
//! Children call only the library (through the exported `mpt_*` functions),
//! report through a small `MAP_SHARED` mapping, and leave with `_exit`, so no
//! destructor of the parent runs twice. Every wait is bounded: a child that
//! hangs is killed with SIGKILL and its test fails, and a watchdog thread ends
//! the whole binary if a test overruns its time bound, so a library bug can
//! never hang CI.
//!
//! Timing bounds are generous (the 2-core VMs this runs on stall for
//! milliseconds at times); measured figures are printed under each test.
//!
//! The tests:
//!
//! - `schedule_*`: 4 children share one throttle (20 per 1 s) for each
//!   hardcap; the merged grant times follow the schedule (count within one
//!   of the exact figure, never early, ONE spacing, WINDOW window, LIMIT
//!   token bucket), both from an empty tank and after an idle phase.
//! - `stop_wakes_blocked_children`, `kill_from_child_wakes_siblings_and_parent`,
//!   `kill_before_start_wakes_waiters`: the kill flag and `mpt_stop` wake
//!   every waiter of every process (latencies printed).
//! - `fork_storm_never_deadlocks`: 200 forks while monitors refresh every
//!   1 ms, parent threads hammer the throttle and a throttle restarts in a
//!   loop.
//! - `stats_agree_across_processes`: a child reads the parent's figures.
//! - `pause_resume_across_processes`, `restart_keeps_*`: stop/start from
//!   any process is a pause; promises and reservations survive it.
//! - `sigkill_in_await_keeps_rate`, `concurrent_start_stop_one_wins`.
//! - `restart_keeps_window_limit`, `lo_hi_hi_lo_survive_a_pause` and
//!   `monitor_process_death_is_not_silent` show library bugs found by this
//!   file (their doc comments say what is expected); they fail until fixed.
//!
//! Run one test, or those whose name contains a word:
//! `cargo test --test fork -- schedule_one`.

mod common;

use common::{
    H, Kids, MS, Overrun, Owned, SEC, Shm, Test, TestResult, check, kill_live, max_in_window, note,
    now, sleep_ms, sleep_until, wait_for,
};
use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::options::{MPT_OPTIONS_VERSION, MptHardcap, MptOptions, mpt_options_init};
use mp_throttle::ffi::stats::{
    MptRate, mpt_get_summary, mpt_hi_lo, mpt_latest, mpt_lo_hi, mpt_mean,
};
use mp_throttle::ffi::throttle::{
    MPT_FOREVER, MptSummary, mpt_emit, mpt_emit_at, mpt_throttle_new,
};
use std::sync::Mutex;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicI64};

/// `auto_emit` as `as_throttle` (the default).
const AUTO: i32 = -1;

// ---------------------------------------------------------------- time

fn us(ns: i64) -> f64 {
    ns as f64 / 1e3
}

// ---------------------------------------------------------------- the C API

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stat {
    Latest,
    Mean,
    LoHi,
    HiLo,
}

/// The calls only this file makes (common.rs has the others).
impl H {
    fn emit(self) -> MptStatus {
        // SAFETY: a live handle.
        unsafe { mpt_emit(self.0) }
    }

    fn emit_at(self, ts: i64) -> MptStatus {
        // SAFETY: a live handle.
        unsafe { mpt_emit_at(self.0, ts) }
    }

    fn stat(self, which: Stat) -> (MptStatus, MptRate) {
        let mut r = MptRate::default();
        let f = match which {
            Stat::Latest => mpt_latest,
            Stat::Mean => mpt_mean,
            Stat::LoHi => mpt_lo_hi,
            Stat::HiLo => mpt_hi_lo,
        };
        // SAFETY: a live handle; `r` is valid for writing.
        let st = unsafe { f(self.0, &mut r) };
        (st, r)
    }

    fn summary(self) -> (MptStatus, MptSummary) {
        let mut s = MptSummary::default();
        // SAFETY: a live handle; `s` is valid for writing.
        let st = unsafe { mpt_get_summary(self.0, &mut s) };
        (st, s)
    }
}

fn options(hardcap: MptHardcap, refresh_s: f64, auto_emit: i32) -> MptOptions {
    let mut o = MptOptions::default();
    // SAFETY: `o` is valid for writing.
    let st = unsafe { mpt_options_init(&mut o, MPT_OPTIONS_VERSION) };
    assert_eq!(st, MptStatus::Ok);
    o.hardcap = hardcap as u32;
    o.refresh_s = refresh_s;
    o.auto_emit = auto_emit;
    o
}

fn throttle(max_n: u64, per_s: f64, o: &MptOptions) -> Result<Owned, String> {
    let mut p = std::ptr::null_mut();
    // SAFETY: `o` is a valid options struct, `p` valid for writing.
    let st = unsafe { mpt_throttle_new(max_n, per_s, o, &mut p) };
    check!(
        st == MptStatus::Ok && !p.is_null(),
        "mpt_throttle_new: {st:?}"
    );
    Ok(Owned(H(p)))
}

/// Every statistic, as one process read it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Snap {
    latest: MptRate,
    mean: MptRate,
    lo_hi: MptRate,
    hi_lo: MptRate,
    summary: MptSummary,
}

const SNAP_WORDS: usize = 12;

impl Snap {
    fn read(h: H) -> Result<Snap, MptStatus> {
        let rate = |w| match h.stat(w) {
            (MptStatus::Ok, r) => Ok(r),
            (st, _) => Err(st),
        };
        let (st, summary) = h.summary();
        if st != MptStatus::Ok {
            return Err(st);
        }
        Ok(Snap {
            latest: rate(Stat::Latest)?,
            mean: rate(Stat::Mean)?,
            lo_hi: rate(Stat::LoHi)?,
            hi_lo: rate(Stat::HiLo)?,
            summary,
        })
    }

    fn words(&self) -> [i64; SNAP_WORDS] {
        let b = |x: f64| x.to_bits() as i64;
        let s = &self.summary;
        [
            b(self.latest.seconds_between),
            b(self.latest.per_second),
            b(self.mean.seconds_between),
            b(self.mean.per_second),
            b(self.lo_hi.seconds_between),
            b(self.lo_hi.per_second),
            b(self.hi_lo.seconds_between),
            b(self.hi_lo.per_second),
            b(s.runtime_s),
            s.total as i64,
            b(s.mean_seconds_between),
            b(s.mean_per_second),
        ]
    }

    fn from_words(w: &[i64]) -> Snap {
        let f = |i: usize| f64::from_bits(w[i] as u64);
        let r = |i: usize| MptRate {
            seconds_between: f(i),
            per_second: f(i + 1),
        };
        Snap {
            latest: r(0),
            mean: r(2),
            lo_hi: r(4),
            hi_lo: r(6),
            summary: MptSummary {
                runtime_s: f(8),
                total: w[9] as u64,
                mean_seconds_between: f(10),
                mean_per_second: f(11),
            },
        }
    }
}

// ---------------------------------------------------------------- children

/// The scheduler state of a process (`S` = sleeping), from /proc.
fn proc_state(pid: libc::pid_t) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Waits (at most `timeout_ns`) until every pid sleeps in the kernel.
fn all_asleep(pids: &[libc::pid_t], timeout_ns: i64) -> bool {
    let deadline = now() + timeout_ns;
    while now() < deadline {
        if pids.iter().all(|&p| proc_state(p) == Some('S')) {
            return true;
        }
        sleep_ms(2);
    }
    false
}

// ---------------------------------------------------------------- schedule checks

/// `floor(d / T)` with `T = per / max_n`, exact.
fn slots(d: i64, max_n: i64, per: i64) -> i64 {
    (i128::from(d.max(0)) * i128::from(max_n) / i128::from(per)) as i64
}

/// Grants a saturated demand gets by `s`, for a run started at `t0` whose
/// demand began with the first grant at `g` (docs/design.md, "Hardcaps").
fn expected_grants(hc: MptHardcap, max_n: i64, per: i64, t0: i64, g: i64, s: i64) -> i64 {
    // The tank is full at g when max_n units have accrued since t0.
    let full = slots(g - t0, max_n, per) >= max_n - 1;
    match hc {
        MptHardcap::Limit if full => max_n + slots(s - g, max_n, per),
        MptHardcap::Limit | MptHardcap::None => 1 + slots(s - t0, max_n, per),
        MptHardcap::One => 1 + slots(s - g, max_n, per),
        MptHardcap::Window if full => max_n * (1 + (s - g) / per),
        MptHardcap::Window => 1 + slots(s - t0, max_n, per),
    }
}

/// Test 1: 4 children share a throttle of 20 per 1 s and take fuel as fast
/// as they can; the merged grant times must follow the hardcap's schedule.
///
/// With `idle_ms` 0 the children already wait when the throttle starts (the
/// tank starts empty, so every hardcap grants one unit every T). Otherwise
/// they start demanding only `idle_ms` after the start, when the tank is
/// full: LIMIT and WINDOW give a burst of max_n, ONE gives one, NONE catches
/// up everything.
fn schedule(hc: MptHardcap, idle_ms: i64, demand_ms: i64) -> TestResult {
    const KIDS: usize = 4;
    const CAP: usize = 200;
    let (max_n, per) = (20_i64, SEC);
    let tick = per / max_n;
    let t = throttle(max_n as u64, 1.0, &options(hc, 0.01, AUTO))?;
    let h = t.h();
    // [0] = when to start demanding (0: not yet); then per child a count
    // and its grant times.
    let shm = Shm::new(1 + KIDS * (1 + CAP));
    let base = |k: usize| 1 + k * (1 + CAP);
    let mut kids = Kids::new();
    let mut pids = Vec::new();
    for k in 0..KIDS {
        let shm = &shm;
        pids.push(kids.spawn(move || {
            let give_up = now() + 20 * SEC;
            loop {
                let go = shm.get(0);
                if go != 0 && now() >= go {
                    break;
                }
                if now() > give_up {
                    return 2;
                }
                sleep_ms(1);
            }
            loop {
                match h.await_fuel(MPT_FOREVER) {
                    (MptStatus::Ok, g) => {
                        let i = shm.get(base(k)) as usize;
                        if i >= CAP {
                            return 3;
                        }
                        shm.set(base(k) + 1 + i, g);
                        shm.set(base(k), i as i64 + 1);
                    }
                    (MptStatus::Killed, _) => return 0,
                    (st, _) => return 10 + st as i32,
                }
            }
        }));
    }
    if idle_ms == 0 {
        // The children wait in mpt_await_fuel before the start.
        shm.set(0, 1);
        check!(
            all_asleep(&pids, 5 * SEC),
            "the children did not block before the start"
        );
        sleep_ms(20);
        for k in 0..KIDS {
            check!(shm.get(base(k)) == 0, "child {k} got fuel before the start");
        }
    }
    let t_a = now();
    check!(h.start() == MptStatus::Ok, "start");
    let t_b = now();
    if idle_ms > 0 {
        shm.set(0, t_b + idle_ms * MS);
    }
    sleep_until(t_b + (idle_ms + demand_ms) * MS);
    let t_c = now();
    let (st, summary) = h.stop();
    let t_d = now();
    check!(st == MptStatus::Ok, "stop: {st:?}");
    kids.wait_all_ok(5 * SEC)?;

    let mut g: Vec<i64> = (0..KIDS)
        .flat_map(|k| shm.words(base(k) + 1, shm.get(base(k)) as usize))
        .collect();
    g.sort_unstable();
    let total = g.len() as i64;
    check!(total > 0, "no grants at all");
    check!(
        summary.total == total as u64,
        "stop reports {} emissions, the children got {total} grants",
        summary.total
    );
    let g0 = g[0];
    let lo = expected_grants(hc, max_n, per, t_b, g0, t_c);
    let hi = expected_grants(hc, max_n, per, t_a, g0, t_d);
    note!(
        "{total} grants in {:.3} s (expected {lo}..={hi}, accepted {}..={}); first grant {:.0} us after start",
        (t_c - t_b) as f64 / 1e9,
        lo - 2,
        hi + 1,
        us(g0 - t_a)
    );
    check!(
        (lo - 2..=hi + 1).contains(&total),
        "{total} grants, expected {lo}..={hi} (+-1)"
    );
    check!(
        g0 >= t_a && g[g.len() - 1] <= t_d,
        "grant times outside the run: first {g0}, last {}, run [{t_a}, {t_d}]",
        g[g.len() - 1]
    );
    // Scheduled slots are distinct instants. In a burst, grants are "now"
    // of each taker, and a grant never precedes the one reserved before it,
    // so two processes may share an instant (WINDOW: max(now, previous)).
    let same = g.windows(2).filter(|w| w[1] == w[0]).count();
    if same > 0 {
        note!("{same} pairs of grants share an instant");
    }
    check!(
        same == 0 || (idle_ms > 0 && hc != MptHardcap::One),
        "{same} pairs of grants at the same instant"
    );
    // The tank starts empty: unit k is there at t0 + k*T at the earliest.
    for (k, &gk) in g.iter().enumerate() {
        let earliest = t_a + (i128::from(per) * k as i128 / i128::from(max_n)) as i64;
        check!(
            gk >= earliest,
            "grant {k} at +{:.3} ms is {:.3} ms early (unit k is due at start + k*T)",
            (gk - t_a) as f64 / 1e6,
            (earliest - gk) as f64 / 1e6
        );
    }
    let in_window = max_in_window(&g, per);
    let min_gap = g.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(0);
    note!(
        "most grants in a window of 1 s: {in_window}; smallest gap {:.3} ms",
        min_gap as f64 / 1e6
    );
    match hc {
        MptHardcap::One => {
            check!(
                min_gap >= tick,
                "ONE: two grants {:.3} ms apart, T is {:.3} ms",
                min_gap as f64 / 1e6,
                tick as f64 / 1e6
            );
            check!(
                in_window <= max_n as usize,
                "ONE: {in_window} grants in one window of per"
            );
        }
        MptHardcap::Window => {
            check!(
                in_window <= max_n as usize,
                "WINDOW: {in_window} grants in one half-open window of per (max_n {max_n})"
            );
        }
        MptHardcap::Limit => {
            // A token bucket of capacity max_n: any closed interval [a, b]
            // holds at most max_n + floor((b - a) / T) grants.
            for i in 0..g.len() {
                for j in i..g.len() {
                    let allowed = max_n + slots(g[j] - g[i], max_n, per);
                    check!(
                        (j - i + 1) as i64 <= allowed,
                        "LIMIT: {} grants in [{:.3}, {:.3}] ms, a token bucket allows {allowed}",
                        j - i + 1,
                        (g[i] - t_a) as f64 / 1e6,
                        (g[j] - t_a) as f64 / 1e6
                    );
                }
            }
        }
        MptHardcap::None => {}
    }
    if idle_ms > 0 {
        // After a long idle phase the hardcaps differ in their bursts.
        // The next scheduled grant is T (ONE, LIMIT) or per (WINDOW) later.
        let span = 20 * MS;
        let burst = g.iter().filter(|&&x| x < g0 + span).count() as i64;
        note!("burst at the first demand: {burst} grants within 20 ms");
        let (lo, hi) = match hc {
            MptHardcap::Limit | MptHardcap::Window => (max_n, max_n),
            MptHardcap::One => (1, 1),
            // Everything accrued since t0, and maybe one more due meanwhile.
            MptHardcap::None => (
                1 + slots(g0 - t_b, max_n, per),
                1 + slots(g0 + span - t_a, max_n, per),
            ),
        };
        check!(
            (lo - 1..=hi + 1).contains(&burst),
            "{burst} grants at the first demand, the hardcap allows {lo}..={hi}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- waiters

/// Per waiter: [calls started, grants, when it returned, its last status].
const WAITER_WORDS: usize = 4;

/// Loops `mpt_await_fuel(FOREVER)`; on anything but a grant records the
/// status and the time and returns 0 (3 after too many grants).
fn blocked_waiter(h: H, shm: &Shm, slot: usize) -> i32 {
    let b = slot * WAITER_WORDS;
    loop {
        shm.at(b).fetch_add(1, SeqCst);
        let (st, _) = h.await_fuel(MPT_FOREVER);
        let t = now();
        if st == MptStatus::Ok {
            if shm.at(b + 1).fetch_add(1, SeqCst) >= 2 {
                return 3;
            }
            continue;
        }
        shm.set(b + 2, t);
        shm.set(b + 3, st as i64);
        return 0;
    }
}

/// Whether every waiter has entered the call it is (still) in.
fn waiters_inside(shm: &Shm, n: usize) -> bool {
    let sum = |w: usize| (0..n).map(|k| shm.get(k * WAITER_WORDS + w)).sum::<i64>();
    let returned = (0..n)
        .filter(|&k| shm.get(k * WAITER_WORDS + 2) != 0)
        .count() as i64;
    returned == 0 && sum(0) == n as i64 + sum(1)
}

fn latency_report(lat: &mut [i64]) -> String {
    lat.sort_unstable();
    format!(
        "{} waiters: median {:.0} us, max {:.0} us",
        lat.len(),
        us(lat[lat.len() / 2]),
        us(lat[lat.len() - 1])
    )
}

/// Test 2: children blocked in `mpt_await_fuel(FOREVER)` (1 unit per 1000 s,
/// so only one grant) all return KILLED promptly when the parent stops.
fn stop_wakes_blocked_children() -> TestResult {
    const KIDS: usize = 4;
    const REPS: usize = 3;
    let mut lat = Vec::new();
    let mut stop_call = Vec::new();
    for rep in 0..REPS {
        let t = throttle(1, 1000.0, &options(MptHardcap::Limit, 0.01, AUTO))?;
        let h = t.h();
        check!(h.start() == MptStatus::Ok, "start");
        let shm = Shm::new(KIDS * WAITER_WORDS);
        let mut kids = Kids::new();
        let pids: Vec<_> = (0..KIDS)
            .map(|k| {
                let shm = &shm;
                kids.spawn(move || blocked_waiter(h, shm, k))
            })
            .collect();
        check!(
            wait_for(5 * SEC, || waiters_inside(&shm, KIDS)),
            "waiters did not start"
        );
        check!(all_asleep(&pids, 5 * SEC), "waiters did not block");
        sleep_ms(20);
        let grants: i64 = (0..KIDS).map(|k| shm.get(k * WAITER_WORDS + 1)).sum();
        check!(
            grants == 1,
            "rep {rep}: {grants} grants of a 1-per-1000-s throttle"
        );
        check!(
            waiters_inside(&shm, KIDS),
            "a waiter returned before the stop"
        );
        let t_stop = now();
        let (st, _) = h.stop();
        stop_call.push(now() - t_stop);
        check!(st == MptStatus::Ok, "stop: {st:?}");
        kids.wait_all_ok(5 * SEC)?;
        for k in 0..KIDS {
            let b = k * WAITER_WORDS;
            let status = shm.get(b + 3);
            check!(
                status == MptStatus::Killed as i64,
                "rep {rep} child {k}: status {status}, expected KILLED"
            );
            lat.push(shm.get(b + 2) - t_stop);
        }
    }
    let max = *lat.iter().max().unwrap_or(&0);
    note!("stop -> KILLED in each child, {}", latency_report(&mut lat));
    note!(
        "mpt_stop call itself: max {:.0} us",
        us(*stop_call.iter().max().unwrap_or(&0))
    );
    check!(
        max <= 100 * MS,
        "a waiter took {:.1} ms to see the stop",
        max as f64 / 1e6
    );
    Ok(())
}

/// Test 3: `mpt_kill` from a child wakes its blocked siblings and threads of
/// the parent blocked on the same throttle.
fn kill_from_child_wakes_all() -> TestResult {
    const KIDS: usize = 4;
    const THREADS: usize = 2;
    let n = KIDS + THREADS;
    let t = throttle(1, 1000.0, &options(MptHardcap::Limit, 0.01, AUTO))?;
    let h = t.h();
    check!(h.start() == MptStatus::Ok, "start");
    // Waiter slots, then [go, kill time, kill status, flag seen, has_fuel].
    let shm = Shm::new(n * WAITER_WORDS + 5);
    let ctl = n * WAITER_WORDS;
    let mut kids = Kids::new();
    let pids: Vec<_> = (0..KIDS)
        .map(|k| {
            let shm = &shm;
            kids.spawn(move || blocked_waiter(h, shm, k))
        })
        .collect();
    let killer = {
        let shm = &shm;
        kids.spawn(move || {
            if !wait_for(20 * SEC, || shm.get(ctl) != 0) {
                return 2;
            }
            let t = now();
            let st = h.kill();
            shm.set(ctl + 1, t);
            shm.set(ctl + 2, st as i64);
            shm.set(ctl + 3, i64::from(h.kill_flag()));
            shm.set(ctl + 4, h.has_fuel().0 as i64);
            0
        })
    };
    std::thread::scope(|s| -> TestResult {
        // On any failure below, free the parent's threads before the scope
        // joins them.
        struct KillOnDrop(H);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                let _ = self.0.kill();
            }
        }
        let _unblock = KillOnDrop(h);
        let shm = &shm;
        for k in KIDS..n {
            s.spawn(move || blocked_waiter(h, shm, k));
        }
        check!(
            wait_for(5 * SEC, || waiters_inside(shm, n)),
            "waiters did not start"
        );
        check!(all_asleep(&pids, 5 * SEC), "the children did not block");
        sleep_ms(50);
        check!(waiters_inside(shm, n), "a waiter returned before the kill");
        shm.set(ctl, 1);
        kids.wait_ok(killer, 5 * SEC)?;
        kids.wait_all_ok(5 * SEC)?;
        // The parent's threads: wait for them here, bounded.
        check!(
            wait_for(5 * SEC, || (KIDS..n)
                .all(|k| shm.get(k * WAITER_WORDS + 2) != 0)),
            "a thread of the parent is still blocked 5 s after the kill"
        );
        Ok(())
    })?;
    check!(
        shm.get(ctl + 2) == MptStatus::Ok as i64,
        "mpt_kill in the child failed"
    );
    check!(
        shm.get(ctl + 3) == 1,
        "the killer does not see the kill flag"
    );
    check!(
        shm.get(ctl + 4) == MptStatus::Killed as i64,
        "has_fuel after the kill: status {}, expected KILLED",
        shm.get(ctl + 4)
    );
    let t_kill = shm.get(ctl + 1);
    let mut lat = Vec::new();
    for k in 0..n {
        let b = k * WAITER_WORDS;
        let who = if k < KIDS { "child" } else { "parent thread" };
        check!(
            shm.get(b + 3) == MptStatus::Killed as i64,
            "{who} {k}: status {}, expected KILLED",
            shm.get(b + 3)
        );
        lat.push(shm.get(b + 2) - t_kill);
    }
    let max = *lat.iter().max().unwrap_or(&0);
    note!(
        "child's mpt_kill -> KILLED, {} (4 siblings, 2 parent threads)",
        latency_report(&mut lat)
    );
    check!(
        max <= 100 * MS,
        "a waiter took {:.1} ms to see the kill",
        max as f64 / 1e6
    );
    // The kill flag does not stop the run; the next start clears it.
    check!(h.kill_flag(), "the parent does not see the kill flag");
    check!(
        h.is_running(),
        "mpt_kill stopped the run (it should only set the flag)"
    );
    check!(
        h.await_fuel(0.0).0 == MptStatus::Killed,
        "await after the kill is not KILLED"
    );
    check!(h.stop().0 == MptStatus::Ok, "stop after the kill");
    check!(h.start() == MptStatus::Ok, "restart after the kill");
    check!(!h.kill_flag(), "start did not clear the kill flag");
    Ok(())
}

// ---------------------------------------------------------------- fork storm

/// Test 4: fork 200 children while monitor threads refresh every 1 ms, other
/// threads hammer the throttle and another restarts a throttle in a loop;
/// no child may hang (each gets 5 s) and each call must answer sensibly.
fn fork_storm_never_deadlocks() -> TestResult {
    const CHILDREN: usize = 200;
    const BATCH: usize = 4;
    let fast = 0.001;
    let a = throttle(1000, 1.0, &options(MptHardcap::Limit, fast, AUTO))?;
    let b = throttle(100_000, 1.0, &options(MptHardcap::Limit, fast, 0))?;
    let c = throttle(50, 1.0, &options(MptHardcap::One, fast, AUTO))?;
    let (ha, hb, hc) = (a.h(), b.h(), c.h());
    for h in [ha, hb, hc] {
        check!(h.start() == MptStatus::Ok, "start");
    }
    // Per child: the step it reached (for a hang report) and its result.
    let shm = Shm::new(CHILDREN * 2);
    let stop = AtomicBool::new(false);
    let parent_emits = AtomicI64::new(0);
    let bad = Mutex::new(Vec::<String>::new());
    let mut kids = Kids::new();
    let mut slowest = 0;
    let result = std::thread::scope(|s| -> TestResult {
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, SeqCst);
            }
        }
        let _stop = StopOnDrop(&stop);
        let (stop, bad, parent_emits) = (&stop, &bad, &parent_emits);
        for _ in 0..3 {
            s.spawn(move || {
                while !stop.load(SeqCst) {
                    let st = ha.has_fuel().0;
                    if !matches!(st, MptStatus::Ok | MptStatus::NoFuel) {
                        bad.lock().unwrap().push(format!("parent has_fuel: {st:?}"));
                    }
                    for w in [Stat::Latest, Stat::Mean, Stat::LoHi] {
                        let st = ha.stat(w).0;
                        if st != MptStatus::Ok {
                            bad.lock().unwrap().push(format!("parent {w:?}: {st:?}"));
                        }
                    }
                    if hb.emit() == MptStatus::Ok {
                        parent_emits.fetch_add(1, SeqCst);
                    }
                    std::thread::yield_now();
                }
            });
        }
        // Restarts throttle C over and over: its monitor thread comes and
        // goes (and its private slot is locked) while we fork.
        s.spawn(move || {
            while !stop.load(SeqCst) {
                let _ = hc.stop();
                sleep_ms(1);
                let _ = hc.start();
                sleep_ms(2);
            }
        });
        for first in (0..CHILDREN).step_by(BATCH) {
            let mut batch = Vec::new();
            for i in first..first + BATCH {
                let shm = &shm;
                let t_fork = now();
                let pid = kids.spawn(move || storm_child(ha, hb, hc, shm, i));
                batch.push((i, pid, t_fork));
            }
            for (i, pid, t_fork) in batch {
                match kids.wait(pid, 5 * SEC) {
                    Ok(0) => {}
                    Ok(code) => {
                        return Err(format!(
                            "child {i} (pid {pid}) failed at step {} with code {code}",
                            shm.get(2 * i)
                        ));
                    }
                    Err(e) => {
                        return Err(format!("child {i}: {e}; it was at step {}", shm.get(2 * i)));
                    }
                }
                slowest = slowest.max(now() - t_fork);
            }
        }
        Ok(())
    });
    result?;
    let bad = bad.into_inner().unwrap_or_else(|e| e.into_inner());
    check!(
        bad.is_empty(),
        "parent threads saw {} bad statuses, first {}",
        bad.len(),
        bad[0]
    );
    // The monitors still work, and the children's emissions were counted.
    let (st, latest) = ha.stat(Stat::Latest);
    check!(
        st == MptStatus::Ok && latest.per_second > 0.0,
        "A's monitor: {st:?} {latest:?}"
    );
    let child_emits: i64 = (0..CHILDREN).map(|i| shm.get(2 * i + 1)).sum();
    let (_, sb) = hb.summary();
    let expected = parent_emits.load(SeqCst) + child_emits;
    check!(
        sb.total as i64 == expected,
        "B counted {} emissions, parent {} + children {child_emits}",
        sb.total,
        parent_emits.load(SeqCst)
    );
    note!(
        "{CHILDREN} children, slowest fork-to-reap {:.1} ms; B counted {} emissions ({child_emits} from children)",
        slowest as f64 / 1e6,
        sb.total
    );
    Ok(())
}

/// A child of the fork storm: every kind of call, each answer checked.
fn storm_child(a: H, b: H, c: H, shm: &Shm, i: usize) -> i32 {
    let step = |n: i64| shm.set(2 * i, n);
    step(1);
    if !matches!(a.has_fuel().0, MptStatus::Ok | MptStatus::NoFuel) {
        return 10;
    }
    step(2);
    if !matches!(a.await_fuel(0.5).0, MptStatus::Ok | MptStatus::Timeout) {
        return 11;
    }
    step(3);
    for (n, w) in [Stat::Latest, Stat::Mean, Stat::LoHi, Stat::HiLo]
        .into_iter()
        .enumerate()
    {
        if a.stat(w).0 != MptStatus::Ok {
            return 12 + n as i32;
        }
    }
    step(4);
    if a.summary().0 != MptStatus::Ok || !a.is_running() || a.kill_flag() {
        return 16;
    }
    step(5);
    if b.emit() != MptStatus::Ok || b.emit_at(now()) != MptStatus::Ok {
        return 17;
    }
    shm.set(2 * i + 1, 2);
    step(6);
    // C restarts all the time: any state is possible, but no error.
    let ok_c = |st: MptStatus| {
        matches!(
            st,
            MptStatus::Ok | MptStatus::NoFuel | MptStatus::Killed | MptStatus::Timeout
        )
    };
    if !ok_c(c.has_fuel().0)
        || !ok_c(c.await_fuel(0.01).0)
        || c.stat(Stat::Latest).0 != MptStatus::Ok
    {
        return 18;
    }
    step(7);
    if i % 2 == 1 {
        // A child may release its copies (header: free once per process).
        for h in [a, b, c] {
            if h.free() != MptStatus::Ok {
                return 19;
            }
        }
    }
    step(8);
    0
}

// ---------------------------------------------------------------- statistics

/// Snapshots from a child (words in `shm` at `at`) and the parent.
fn child_snap(kids: &mut Kids, h: H, shm: &Shm, at: usize) -> Result<Snap, String> {
    let pid = kids.spawn(|| match Snap::read(h) {
        Ok(s) => {
            for (j, w) in s.words().iter().enumerate() {
                shm.set(at + j, *w);
            }
            0
        }
        Err(st) => 10 + st as i32,
    });
    kids.wait_ok(pid, 5 * SEC)?;
    Ok(Snap::from_words(&shm.words(at, SNAP_WORDS)))
}

fn parent_snap(h: H) -> Result<Snap, String> {
    Snap::read(h).map_err(|st| format!("parent statistics: {st:?}"))
}

fn close(a: f64, b: f64, eps: f64) -> bool {
    (a - b).abs() <= eps * a.abs().max(b.abs()).max(1e-300)
}

/// Test 5: the statistics a child reads equal the parent's: a known pattern
/// of emissions (auto_emit off, `mpt_emit_at`), emissions made by a child,
/// then the frozen figures after the stop; then workers at a fixed rate.
fn stats_agree_across_processes() -> TestResult {
    let t = throttle(10, 1.0, &options(MptHardcap::Limit, 0.01, 0))?;
    let h = t.h();
    check!(h.start() == MptStatus::Ok, "start");
    let base = now();
    let shm = Shm::new(4 * SNAP_WORDS);
    let mut kids = Kids::new();
    sleep_until(base + 400 * MS);
    // Intervals 20, 5, 65, 200 ms: lo 5 ms, hi 200 ms.
    for ms in [10, 30, 35, 100, 300] {
        check!(h.emit_at(base + ms * MS) == MptStatus::Ok, "emit_at");
    }
    sleep_ms(100); // the monitor settles them (lag 2 refreshes)
    let p1 = parent_snap(h)?;
    let c1 = child_snap(&mut kids, h, &shm, 0)?;
    let p2 = parent_snap(h)?;
    note!("running, parent: {p1:?}");
    check!(
        c1.lo_hi == p1.lo_hi && c1.lo_hi == p2.lo_hi,
        "lo_hi: child {:?}, parent {:?}",
        c1.lo_hi,
        p1.lo_hi
    );
    check!(
        c1.hi_lo == p1.hi_lo && c1.hi_lo == p2.hi_lo,
        "hi_lo: child {:?}, parent {:?}",
        c1.hi_lo,
        p1.hi_lo
    );
    check!(
        c1.latest == p1.latest,
        "latest: child {:?}, parent {:?}",
        c1.latest,
        p1.latest
    );
    check!(
        close(p1.lo_hi.seconds_between, 0.005, 1e-12),
        "lo_hi {:?}, expected 5 ms",
        p1.lo_hi
    );
    check!(
        close(p1.hi_lo.seconds_between, 0.2, 1e-12),
        "hi_lo {:?}, expected 200 ms",
        p1.hi_lo
    );
    check!(
        p1.latest.per_second == 5.0,
        "latest {:?}, expected 5 in the last second",
        p1.latest
    );
    for s in [&p1, &c1, &p2] {
        check!(s.summary.total == 5, "total {}", s.summary.total);
    }
    // The mean falls as runtime grows: parent before <= child <= parent after.
    let tol = 1e-9;
    check!(
        p1.mean.per_second * (1.0 + tol) >= c1.mean.per_second
            && c1.mean.per_second >= p2.mean.per_second * (1.0 - tol),
        "mean per second: parent {} then child {} then parent {}",
        p1.mean.per_second,
        c1.mean.per_second,
        p2.mean.per_second
    );
    check!(
        p1.summary.runtime_s <= c1.summary.runtime_s
            && c1.summary.runtime_s <= p2.summary.runtime_s,
        "runtime: parent {} child {} parent {}",
        p1.summary.runtime_s,
        c1.summary.runtime_s,
        p2.summary.runtime_s
    );
    check!(
        close(c1.mean.per_second, 5.0 / c1.summary.runtime_s, 1e-3),
        "child's mean {} vs total/runtime {}",
        c1.mean.per_second,
        5.0 / c1.summary.runtime_s
    );

    // A child emits: a 300 ms interval (new hi) and a 2 ms one (new lo).
    let pid = kids.spawn(|| {
        sleep_until(base + 620 * MS);
        let a = h.emit_at(base + 600 * MS);
        let b = h.emit_at(base + 602 * MS);
        if a == MptStatus::Ok && b == MptStatus::Ok {
            0
        } else {
            10
        }
    });
    kids.wait_ok(pid, 5 * SEC)?;
    sleep_ms(80);
    let p3 = parent_snap(h)?;
    let read_at = now();
    let c3 = child_snap(&mut kids, h, &shm, SNAP_WORDS)?;
    check!(
        p3.summary.total == 7,
        "the child's emissions are not counted: total {}",
        p3.summary.total
    );
    check!(
        close(p3.lo_hi.seconds_between, 0.002, 1e-12),
        "lo_hi after the child: {:?}",
        p3.lo_hi
    );
    check!(
        close(p3.hi_lo.seconds_between, 0.3, 1e-12),
        "hi_lo after the child: {:?}",
        p3.hi_lo
    );
    check!(
        c3.lo_hi == p3.lo_hi && c3.hi_lo == p3.hi_lo,
        "lo/hi: child {c3:?}, parent {p3:?}"
    );
    if read_at < base + 950 * MS {
        check!(
            p3.latest.per_second == 7.0,
            "latest {:?}, expected 7",
            p3.latest
        );
        check!(
            c3.latest == p3.latest,
            "latest: child {:?}, parent {:?}",
            c3.latest,
            p3.latest
        );
    } else {
        note!(
            "(latest not compared: read too late, {:.0} ms)",
            (read_at - base) as f64 / 1e6
        );
    }

    // Stopped: everything is frozen, so every figure is identical.
    let (st, stopped) = h.stop();
    check!(st == MptStatus::Ok, "stop");
    let p4 = parent_snap(h)?;
    let c4 = child_snap(&mut kids, h, &shm, 2 * SNAP_WORDS)?;
    check!(p4 == c4, "after the stop: parent {p4:?}, child {c4:?}");
    check!(
        p4.summary == stopped,
        "get_summary {:?} != stop's {stopped:?}",
        p4.summary
    );
    check!(
        p4.latest.per_second == 0.0,
        "latest after the stop: {:?}",
        p4.latest
    );
    check!(
        p4.summary.total == 7,
        "total after the stop: {}",
        p4.summary.total
    );
    drop(t);

    // Workers at a fixed rate (auto_emit), then a reader after the stop.
    let t = throttle(50, 1.0, &options(MptHardcap::Limit, 0.01, AUTO))?;
    let h = t.h();
    check!(h.start() == MptStatus::Ok, "start");
    let counts = Shm::new(2);
    for k in 0..2 {
        let counts = &counts;
        kids.spawn(move || {
            for _ in 0..1000 {
                match h.await_fuel(MPT_FOREVER).0 {
                    MptStatus::Ok => {
                        counts.at(k).fetch_add(1, SeqCst);
                    }
                    MptStatus::Killed => return 0,
                    st => return 10 + st as i32,
                }
            }
            3
        });
    }
    sleep_ms(1000);
    let (st, stopped) = h.stop();
    check!(st == MptStatus::Ok, "stop");
    kids.wait_all_ok(5 * SEC)?;
    let p5 = parent_snap(h)?;
    let c5 = child_snap(&mut kids, h, &shm, 3 * SNAP_WORDS)?;
    note!("fixed rate, after the stop: {p5:?}");
    check!(p5 == c5, "after the stop: parent {p5:?}, child {c5:?}");
    check!(
        p5.summary == stopped,
        "get_summary {:?} != stop's {stopped:?}",
        p5.summary
    );
    let grants = (counts.get(0) + counts.get(1)) as u64;
    check!(
        p5.summary.total == grants,
        "total {} != grants {grants}",
        p5.summary.total
    );
    check!(
        p5.lo_hi.seconds_between > 0.0 && p5.lo_hi.seconds_between <= p5.hi_lo.seconds_between,
        "lo {:?} hi {:?}",
        p5.lo_hi,
        p5.hi_lo
    );
    check!(
        (40.0..=55.0).contains(&p5.mean.per_second),
        "mean {} per second at 50 per second",
        p5.mean.per_second
    );
    Ok(())
}

// ---------------------------------------------------------------- pause/resume

/// Loops `mpt_await_fuel(FOREVER)` counting grants in `shm[at]` until KILLED.
fn worker(h: H, shm: &Shm, at: usize) -> i32 {
    for _ in 0..10_000 {
        match h.await_fuel(MPT_FOREVER).0 {
            MptStatus::Ok => {
                shm.at(at).fetch_add(1, SeqCst);
            }
            MptStatus::Killed => return 0,
            st => return 10 + st as i32,
        }
    }
    3
}

/// Test 6: a child waiting before the start gets fuel when the parent starts;
/// a child stops the run; totals and runtime carry over the pause (which
/// does not count), and the restarted run follows the schedule again.
fn pause_resume_across_processes() -> TestResult {
    let (max_n, per) = (20_i64, SEC);
    let t = throttle(max_n as u64, 1.0, &options(MptHardcap::Limit, 0.01, AUTO))?;
    let h = t.h();
    // [0] early status, [1] its grant, [2] when it returned, [3..5] worker
    // counts (run 1: 3, 4; run 2: 5, 6), [8..] stop summary from a child
    // [t_before, t_after, status, runtime, total], [16..] pause readings.
    let shm = Shm::new(32);
    let mut kids = Kids::new();
    let early = kids.spawn(|| {
        let (st, g) = h.await_fuel(5.0);
        shm.set(2, now());
        shm.set(1, g);
        shm.set(0, st as i64);
        if st != MptStatus::Ok {
            return 0;
        }
        shm.at(3).fetch_add(1, SeqCst);
        worker(h, &shm, 3)
    });
    // The second worker joins once the early child has its unit, so that the
    // early child is alone at the start (two waiters woken by the start race
    // for the first slots: the later one may get the third slot, T*2 later).
    let other = kids.spawn(|| {
        if !wait_for(10 * SEC, || shm.get(2) != 0) {
            return 2;
        }
        worker(h, &shm, 4)
    });
    check!(
        all_asleep(&[early, other], 5 * SEC),
        "the children did not wait for the start"
    );
    sleep_ms(200);
    check!(
        shm.get(2) == 0,
        "the early child returned before the start: {}",
        shm.get(0)
    );
    check!(
        h.has_fuel().0 == MptStatus::NoFuel,
        "has_fuel before the start"
    );
    let t_a = now();
    check!(h.start() == MptStatus::Ok, "start");
    let t_b = now();
    sleep_until(t_b + 500 * MS);
    // A child stops the run.
    let stopper = kids.spawn(|| {
        let before = now();
        let (st, s) = h.stop();
        shm.set(9, now());
        shm.set(8, before);
        shm.set(10, st as i64);
        shm.set(11, s.runtime_s.to_bits() as i64);
        shm.set(12, s.total as i64);
        0
    });
    kids.wait_ok(stopper, 5 * SEC)?;
    kids.wait_ok(early, 5 * SEC)?;
    kids.wait_ok(other, 5 * SEC)?;
    check!(
        shm.get(0) == MptStatus::Ok as i64,
        "early child: status {}, expected OK",
        shm.get(0)
    );
    let (g, ret) = (shm.get(1), shm.get(2));
    check!(
        g >= t_a && g <= ret,
        "early grant at {g}, start [{t_a}, {t_b}], returned {ret}"
    );
    note!(
        "a child waiting before the start got fuel {:.0} us after mpt_start was called (the call took {:.0} us)",
        us(ret - t_a),
        us(t_b - t_a)
    );
    check!(
        ret - t_a <= 100 * MS,
        "the early child took {:.1} ms",
        (ret - t_a) as f64 / 1e6
    );
    check!(
        shm.get(10) == MptStatus::Ok as i64,
        "stop from a child: {}",
        shm.get(10)
    );
    let (s_before, s_after) = (shm.get(8), shm.get(9));
    let runtime1 = f64::from_bits(shm.get(11) as u64);
    let total1 = shm.get(12) as u64;
    let run1 = (shm.get(3) + shm.get(4)) as u64;
    check!(
        total1 == run1,
        "run 1: the child's stop reports {total1}, the workers got {run1}"
    );
    let r1 = (runtime1 * 1e9) as i64;
    check!(
        r1 >= s_before - t_b - MS && r1 <= s_after - t_a + MS,
        "run 1 runtime {runtime1} s, the run lasted {:.4}..{:.4} s",
        (s_before - t_b) as f64 / 1e9,
        (s_after - t_a) as f64 / 1e9
    );
    let (lo, hi) = (
        1 + slots(s_before - t_b, max_n, per),
        1 + slots(s_after - t_a, max_n, per),
    );
    check!(
        (lo - 2..=hi + 1).contains(&(run1 as i64)),
        "run 1: {run1} grants, expected {lo}..={hi}"
    );

    // The pause: nothing moves, no fuel, and a child sees the same figures.
    check!(!h.is_running(), "running after a child stopped it");
    let paused = kids.spawn(|| {
        let (st, s) = h.summary();
        shm.set(16, st as i64);
        shm.set(17, s.runtime_s.to_bits() as i64);
        shm.set(18, s.total as i64);
        shm.set(19, h.has_fuel().0 as i64);
        shm.set(20, h.await_fuel(0.05).0 as i64);
        shm.set(21, i64::from(h.is_running()));
        0
    });
    sleep_ms(300);
    kids.wait_ok(paused, 5 * SEC)?;
    let (_, s_paused) = h.summary();
    check!(
        s_paused.runtime_s == runtime1 && s_paused.total == total1,
        "the parent's figures during the pause {s_paused:?} differ from the child's stop: {runtime1} s, {total1}"
    );
    check!(
        f64::from_bits(shm.get(17) as u64) == runtime1 && shm.get(18) as u64 == total1,
        "a child during the pause reads runtime {} total {}",
        f64::from_bits(shm.get(17) as u64),
        shm.get(18)
    );
    for (i, what) in [(19, "has_fuel"), (20, "await_fuel")] {
        let st = shm.get(i);
        check!(
            st == MptStatus::Killed as i64
                || st == MptStatus::NoFuel as i64
                || st == MptStatus::Timeout as i64,
            "{what} during the pause: status {st}"
        );
    }
    check!(shm.get(21) == 0, "a child sees the paused throttle running");

    // Run 2: workers wait for the run, the parent resumes and stops.
    for at in [5, 6] {
        let shm = &shm;
        kids.spawn(move || {
            if !wait_for(10 * SEC, || h.is_running()) {
                return 2;
            }
            worker(h, shm, at)
        });
    }
    let t_c = now();
    check!(h.start() == MptStatus::Ok, "restart");
    let t_d = now();
    sleep_until(t_d + 500 * MS);
    let t_e = now();
    let (st, s2) = h.stop();
    let t_f = now();
    check!(st == MptStatus::Ok, "stop 2");
    kids.wait_all_ok(5 * SEC)?;
    let run2 = (shm.get(5) + shm.get(6)) as u64;
    check!(
        s2.total == total1 + run2,
        "total {} after run 2, expected {total1} + {run2}",
        s2.total
    );
    let r2 = ((s2.runtime_s - runtime1) * 1e9) as i64;
    check!(
        r2 >= t_e - t_d - MS && r2 <= t_f - t_c + MS,
        "run 2 added {:.4} s of runtime, it lasted {:.4}..{:.4} s (the pause must not count)",
        r2 as f64 / 1e9,
        (t_e - t_d) as f64 / 1e9,
        (t_f - t_c) as f64 / 1e9
    );
    let (lo, hi) = (
        1 + slots(t_e - t_d, max_n, per),
        1 + slots(t_f - t_c, max_n, per),
    );
    // The workers of run 2 poll for the start (up to ~1 ms late).
    check!(
        (lo - 2..=hi + 1).contains(&(run2 as i64)),
        "run 2: {run2} grants, expected {lo}..={hi} (the tank restarts empty)"
    );
    check!(
        close(s2.mean_per_second, s2.total as f64 / s2.runtime_s, 1e-9),
        "mean {} != total / runtime {}",
        s2.mean_per_second,
        s2.total as f64 / s2.runtime_s
    );
    let (_, hi_lo) = h.stat(Stat::HiLo);
    note!(
        "run 1: {run1} grants, {runtime1:.4} s; run 2: {run2} grants; after: {:.4} s, {}; longest interval {:.1} ms",
        s2.runtime_s,
        s2.total,
        hi_lo.seconds_between * 1e3
    );
    check!(
        hi_lo.seconds_between < 0.2,
        "hi_lo {:?}: an interval spanning the 300 ms pause was counted",
        hi_lo
    );
    Ok(())
}

// ---------------------------------------------------------------- a dead worker

/// A child killed with SIGKILL while asleep in `mpt_await_fuel` (holding a
/// reservation) does not wedge the others: they keep the rate.
fn sigkill_in_await_keeps_rate() -> TestResult {
    const KIDS: usize = 3;
    const CAP: usize = 100;
    let (max_n, per) = (20_i64, SEC);
    let tick = per / max_n;
    let t = throttle(max_n as u64, 1.0, &options(MptHardcap::One, 0.01, AUTO))?;
    let h = t.h();
    let shm = Shm::new(KIDS * (1 + CAP));
    let base = |k: usize| k * (1 + CAP);
    let mut kids = Kids::new();
    let pids: Vec<_> = (0..KIDS)
        .map(|k| {
            let shm = &shm;
            kids.spawn(move || {
                loop {
                    match h.await_fuel(MPT_FOREVER) {
                        (MptStatus::Ok, g) => {
                            let i = shm.get(base(k)) as usize;
                            if i >= CAP {
                                return 3;
                            }
                            shm.set(base(k) + 1 + i, g);
                            shm.set(base(k), i as i64 + 1);
                        }
                        (MptStatus::Killed, _) => return 0,
                        (st, _) => return 10 + st as i32,
                    }
                }
            })
        })
        .collect();
    check!(h.start() == MptStatus::Ok, "start");
    sleep_ms(500);
    // Kill the child asleep on the latest reservation.
    let victim = 0;
    check!(
        all_asleep(&pids[victim..=victim], 2 * SEC),
        "the victim never slept"
    );
    let t_kill = now();
    kids.kill(pids[victim]);
    sleep_ms(1000);
    let t_stop = now();
    check!(h.stop().0 == MptStatus::Ok, "stop");
    kids.wait_all_ok(5 * SEC)?;
    // The survivors' grants, from the last one before the kill on.
    let mut g: Vec<i64> = (1..KIDS)
        .flat_map(|k| shm.words(base(k) + 1, shm.get(base(k)) as usize))
        .collect();
    g.sort_unstable();
    let before = g.iter().filter(|&&x| x <= t_kill).count();
    let g = &g[before.saturating_sub(1)..];
    let max_gap = g.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let n = g.iter().filter(|&&x| x > t_kill).count() as i64;
    let expected = slots(t_stop - t_kill, max_n, per);
    note!(
        "after the SIGKILL: {n} grants in {:.3} s (expected ~{expected}), largest gap {:.1} ms",
        (t_stop - t_kill) as f64 / 1e9,
        max_gap as f64 / 1e6
    );
    check!(
        (expected - 3..=expected + 1).contains(&n),
        "{n} grants after the kill, expected {expected} (one lost reservation allowed)"
    );
    check!(
        max_gap <= 3 * tick,
        "a gap of {:.1} ms after the kill",
        max_gap as f64 / 1e6
    );
    Ok(())
}

// ---------------------------------------------------------------- races

/// Before the first start, the kill flag set by a child wakes every waiter
/// (children waiting for the start); the next start clears it.
fn kill_before_start_wakes_waiters() -> TestResult {
    const KIDS: usize = 4;
    let t = throttle(10, 1.0, &options(MptHardcap::Limit, 0.01, AUTO))?;
    let h = t.h();
    let shm = Shm::new(KIDS * WAITER_WORDS + 1);
    let mut kids = Kids::new();
    let pids: Vec<_> = (0..KIDS)
        .map(|k| {
            let shm = &shm;
            kids.spawn(move || blocked_waiter(h, shm, k))
        })
        .collect();
    check!(
        wait_for(5 * SEC, || waiters_inside(&shm, KIDS)),
        "waiters did not start"
    );
    check!(all_asleep(&pids, 5 * SEC), "waiters did not block");
    let killer = kids.spawn(|| {
        shm.set(KIDS * WAITER_WORDS, now());
        if h.kill() == MptStatus::Ok { 0 } else { 10 }
    });
    kids.wait_ok(killer, 5 * SEC)?;
    let t_kill = shm.get(KIDS * WAITER_WORDS);
    kids.wait_all_ok(5 * SEC)?;
    let mut lat = Vec::new();
    for k in 0..KIDS {
        let b = k * WAITER_WORDS;
        check!(shm.get(b + 1) == 0, "waiter {k} got fuel before the start");
        check!(
            shm.get(b + 3) == MptStatus::Killed as i64,
            "waiter {k}: status {}, expected KILLED",
            shm.get(b + 3)
        );
        lat.push(shm.get(b + 2) - t_kill);
    }
    note!(
        "kill before the start -> KILLED, {} (4 children)",
        latency_report(&mut lat)
    );
    check!(
        h.kill_flag() && !h.is_running(),
        "kill flag / running after the kill"
    );
    check!(h.start() == MptStatus::Ok, "start");
    check!(!h.kill_flag(), "start did not clear the kill flag");
    let pid = kids.spawn(|| match h.await_fuel(1.0).0 {
        MptStatus::Ok => 0,
        st => 10 + st as i32,
    });
    kids.wait_ok(pid, 5 * SEC)?;
    Ok(())
}

/// Eight children call `mpt_start` at the same instant: exactly one wins
/// (the others get WRONG_STATE); then they all call `mpt_stop` at once:
/// again exactly one wins. The winner's summary equals the parent's.
///
/// Every child is ready before the start instant is set, and every start
/// has returned before the stop instant is set: a child that came late
/// (forked or scheduled after the stop) would rightly start a second run,
/// and fail the count without any race in the library.
fn concurrent_start_stop_one_wins() -> TestResult {
    const KIDS: usize = 8;
    let t = throttle(100, 1.0, &options(MptHardcap::Limit, 0.01, AUTO))?;
    let h = t.h();
    // [0] start at, [1] stop at, [2] children ready, [3] starts returned;
    // per child [start status, stop status, summary runtime bits, summary
    // total].
    const BASE: usize = 4;
    let shm = Shm::new(BASE + 4 * KIDS);
    let mut kids = Kids::new();
    for k in 0..KIDS {
        let shm = &shm;
        kids.spawn(move || {
            let b = BASE + 4 * k;
            shm.at(2).fetch_add(1, SeqCst);
            while shm.get(0) == 0 || now() < shm.get(0) {
                std::hint::spin_loop();
            }
            shm.set(b, h.start() as i64);
            // Everyone takes a little fuel meanwhile.
            let _ = h.has_fuel();
            shm.at(3).fetch_add(1, SeqCst);
            while shm.get(1) == 0 || now() < shm.get(1) {
                std::hint::spin_loop();
            }
            let (st, s) = h.stop();
            shm.set(b + 1, st as i64);
            shm.set(b + 2, s.runtime_s.to_bits() as i64);
            shm.set(b + 3, s.total as i64);
            0
        });
    }
    check!(
        wait_for(10 * SEC, || shm.get(2) == KIDS as i64),
        "only {} of {KIDS} children got ready",
        shm.get(2)
    );
    shm.set(0, now() + 20 * MS);
    check!(
        wait_for(10 * SEC, || shm.get(3) == KIDS as i64),
        "only {} of {KIDS} starts returned",
        shm.get(3)
    );
    shm.set(1, now() + 20 * MS);
    kids.wait_all_ok(10 * SEC)?;
    let count = |field: usize, st: MptStatus| {
        (0..KIDS)
            .filter(|&k| shm.get(BASE + 4 * k + field) == st as i64)
            .count()
    };
    let (starts, stops) = (count(0, MptStatus::Ok), count(1, MptStatus::Ok));
    let wrong = (
        count(0, MptStatus::WrongState),
        count(1, MptStatus::WrongState),
    );
    note!(
        "{starts} start and {stops} stop succeeded; {} / {} got WRONG_STATE",
        wrong.0,
        wrong.1
    );
    check!(
        starts == 1 && wrong.0 == KIDS - 1,
        "{starts} starts succeeded, {} WRONG_STATE",
        wrong.0
    );
    check!(
        stops == 1 && wrong.1 == KIDS - 1,
        "{stops} stops succeeded, {} WRONG_STATE",
        wrong.1
    );
    check!(!h.is_running(), "still running");
    let winner = (0..KIDS)
        .find(|&k| shm.get(BASE + 4 * k + 1) == MptStatus::Ok as i64)
        .unwrap_or(0);
    let (_, s) = h.summary();
    let b = BASE + 4 * winner;
    check!(
        f64::from_bits(shm.get(b + 2) as u64) == s.runtime_s && shm.get(b + 3) as u64 == s.total,
        "the winner's stop reported {} s / {}, the parent reads {s:?}",
        f64::from_bits(shm.get(b + 2) as u64),
        shm.get(b + 3)
    );
    check!(s.total >= 1 && s.total <= KIDS as u64, "total {}", s.total);
    Ok(())
}

// ---------------------------------------------------------------- restart

/// Runs `KIDS` children that wait for the run, then take fuel until KILLED,
/// recording their grant times in `shm` from `at` (per child: count, times).
fn greedy_children(kids: &mut Kids, h: H, shm: &Shm, at: usize, n: usize, cap: usize) {
    for k in 0..n {
        let b = at + k * (1 + cap);
        kids.spawn(move || {
            if !wait_for(10 * SEC, || h.is_running()) {
                return 2;
            }
            loop {
                match h.await_fuel(MPT_FOREVER) {
                    (MptStatus::Ok, g) => {
                        let i = shm.get(b) as usize;
                        if i >= cap {
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
}

fn gather(shm: &Shm, at: usize, n: usize, cap: usize) -> Vec<i64> {
    let mut g: Vec<i64> = (0..n)
        .flat_map(|k| {
            let b = at + k * (1 + cap);
            shm.words(b + 1, shm.get(b) as usize)
        })
        .collect();
    g.sort_unstable();
    g
}

/// Stop/start is a pause: a ONE or WINDOW throttle keeps its promise on
/// grant times across it (ONE: grants at least T apart; WINDOW: at most
/// max_n in any window of per), the reservations the stop cut short are
/// given back (the next run's first grant is not late), and the restarted
/// tank starts empty. Six children saturate the throttle in each run.
///
/// With 5 per second, run 1 grants at 0, 0.2, ..., 1.0 s and stops at 1.1 s,
/// 100 ms from any slot, so no waiter can have been told KILLED for a slot
/// the library counts as granted (that would move the due time legitimately).
/// Six waiters on max_n = 5 leave six reservations cut short: more than
/// max_n, so some ring entry overwritten by a cut-short reservation held
/// another cut-short one, not a real grant.
fn restart_keeps_promises(hc: MptHardcap, max_n: i64) -> TestResult {
    const KIDS: usize = 6;
    const CAP: usize = 64;
    let per = SEC;
    let tick = per / max_n;
    let t = throttle(max_n as u64, 1.0, &options(hc, 0.01, AUTO))?;
    let h = t.h();
    let shm = Shm::new(2 * KIDS * (1 + CAP));
    let run2 = KIDS * (1 + CAP);
    let mut kids = Kids::new();
    greedy_children(&mut kids, h, &shm, 0, KIDS, CAP);
    check!(h.start() == MptStatus::Ok, "start");
    sleep_ms(1100);
    check!(h.stop().0 == MptStatus::Ok, "stop");
    kids.wait_all_ok(5 * SEC)?;
    greedy_children(&mut kids, h, &shm, run2, KIDS, CAP);
    let t_a = now();
    check!(h.start() == MptStatus::Ok, "restart");
    let t_b = now();
    sleep_ms(1100);
    check!(h.stop().0 == MptStatus::Ok, "stop 2");
    kids.wait_all_ok(5 * SEC)?;
    let g1 = gather(&shm, 0, KIDS, CAP);
    let g2 = gather(&shm, run2, KIDS, CAP);
    check!(
        g1.len() >= max_n as usize && !g2.is_empty(),
        "too few grants: {} then {}",
        g1.len(),
        g2.len()
    );
    let mut all = g1.clone();
    all.extend(&g2);
    all.sort_unstable();
    // When the first grant of run 2 may come, by the promise.
    let due = match hc {
        MptHardcap::One => g1[g1.len() - 1] + tick,
        _ => g1[g1.len() - max_n as usize] + per,
    };
    let first = g2[0];
    note!(
        "run 1: {} grants, run 2: {}; restart {:.1} ms after the last grant; run 2's first grant {:.1} ms after the restart (due {:.1} ms after it)",
        g1.len(),
        g2.len(),
        (t_a - g1[g1.len() - 1]) as f64 / 1e6,
        (first - t_a) as f64 / 1e6,
        (due.max(t_a) - t_a) as f64 / 1e6
    );
    let rel = |v: &[i64]| {
        v.iter()
            .map(|&x| format!("{:.0}", (x - g1[0]) as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(" ")
    };
    note!(
        "grant times, ms after run 1's first: run 1 [{}], restart at {:.0}, run 2 [{}]",
        rel(&g1),
        (t_a - g1[0]) as f64 / 1e6,
        rel(&g2)
    );
    match hc {
        MptHardcap::One => {
            let min_gap = all.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(tick);
            check!(
                min_gap >= tick,
                "ONE: grants {:.3} ms apart across the pause, T is {:.1} ms",
                min_gap as f64 / 1e6,
                tick as f64 / 1e6
            );
        }
        _ => {
            let most = max_in_window(&all, per);
            check!(
                most <= max_n as usize,
                "WINDOW: {most} grants in one window of per across the pause"
            );
        }
    }
    check!(
        first >= due,
        "run 2's first grant breaks the promise by {:.3} ms",
        (due - first) as f64 / 1e6
    );
    check!(
        first <= due.max(t_b) + 20 * MS,
        "run 2's first grant is {:.1} ms later than the promise requires: the restart lost \
         the times of grants overwritten by reservations the stop cut short",
        (first - due.max(t_b)) as f64 / 1e6
    );
    // The restarted tank starts empty: unit j at the restart + j*T at the earliest.
    for (j, &gj) in g2.iter().enumerate() {
        let earliest = t_a + (i128::from(per) * j as i128 / i128::from(max_n)) as i64;
        check!(
            gj >= earliest,
            "run 2's grant {j} is {:.3} ms early",
            (earliest - gj) as f64 / 1e6
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- found bugs

/// `lo_hi` / `hi_lo` are the shortest / longest interval seen, over all
/// runs (src/stats.rs: "over all runs", `Engine::new_run`: "lo/hi carry
/// over"; the header: "intervals that span a pause are not counted"). A
/// stop/start is a pause: it must not forget them. Read from a child.
fn lo_hi_hi_lo_survive_a_pause() -> TestResult {
    let t = throttle(10, 1.0, &options(MptHardcap::Limit, 0.01, 0))?;
    let h = t.h();
    let shm = Shm::new(3 * SNAP_WORDS);
    let mut kids = Kids::new();
    check!(h.start() == MptStatus::Ok, "start");
    let base = now();
    sleep_until(base + 400 * MS);
    // Intervals 20, 5, 65, 200 ms.
    for ms in [10, 30, 35, 100, 300] {
        check!(h.emit_at(base + ms * MS) == MptStatus::Ok, "emit_at");
    }
    sleep_ms(100);
    check!(h.stop().0 == MptStatus::Ok, "stop");
    let stopped = child_snap(&mut kids, h, &shm, 0)?;
    check!(h.start() == MptStatus::Ok, "restart");
    sleep_ms(60); // several monitor refreshes, no emission yet
    let restarted = child_snap(&mut kids, h, &shm, SNAP_WORDS)?;
    // A child emits three times, 50 ms apart.
    let b2 = now();
    let pid = kids.spawn(|| {
        let ok = [0, 50, 100]
            .iter()
            .all(|ms| h.emit_at(b2 + ms * MS) == MptStatus::Ok);
        if ok { 0 } else { 10 }
    });
    kids.wait_ok(pid, 5 * SEC)?;
    sleep_ms(150);
    let later = child_snap(&mut kids, h, &shm, 2 * SNAP_WORDS)?;
    let ms = |r: MptRate| r.seconds_between * 1e3;
    note!(
        "lo_hi / hi_lo in ms: run 1 stopped {:.1} / {:.1}; restarted {:.1} / {:.1}; after run 2's 50 ms intervals {:.1} / {:.1}",
        ms(stopped.lo_hi),
        ms(stopped.hi_lo),
        ms(restarted.lo_hi),
        ms(restarted.hi_lo),
        ms(later.lo_hi),
        ms(later.hi_lo)
    );
    check!(
        close(stopped.lo_hi.seconds_between, 0.005, 1e-9)
            && close(stopped.hi_lo.seconds_between, 0.2, 1e-9),
        "run 1: lo_hi {:?} hi_lo {:?}, expected 5 ms / 200 ms",
        stopped.lo_hi,
        stopped.hi_lo
    );
    check!(
        restarted.lo_hi == stopped.lo_hi && restarted.hi_lo == stopped.hi_lo,
        "the restart forgot the intervals seen: lo_hi {:?} hi_lo {:?} right after mpt_start, \
         {:?} / {:?} before it (nothing was emitted in between)",
        restarted.lo_hi,
        restarted.hi_lo,
        stopped.lo_hi,
        stopped.hi_lo
    );
    check!(
        later.lo_hi == stopped.lo_hi && later.hi_lo == stopped.hi_lo,
        "after run 2 (intervals of 50 ms): lo_hi {:?} hi_lo {:?}, expected run 1's 5 ms / 200 ms",
        later.lo_hi,
        later.hi_lo
    );
    Ok(())
}

/// The monitor runs in the process that called `mpt_start`. If that process
/// dies, the others keep being throttled (docs/design.md), and the statistics
/// must not silently freeze: `mpt_latest` ("refreshed by the monitor every
/// refresh interval"; MONITOR_OFF when "the monitor thread failed") must
/// then say MONITOR_OFF, or keep counting (0 after a second without any
/// emission), never a stale rate with status OK.
fn monitor_process_death_is_not_silent() -> TestResult {
    let t = throttle(20, 1.0, &options(MptHardcap::Limit, 0.01, AUTO))?;
    let h = t.h();
    // [0] grants, [1] stop demanding, [2] grants after the death.
    let shm = Shm::new(4);
    let mut kids = Kids::new();
    let starter = kids.spawn(|| {
        if h.start() != MptStatus::Ok {
            return 10;
        }
        sleep_ms(30_000);
        0
    });
    check!(
        wait_for(5 * SEC, || h.is_running()),
        "the child did not start the throttle"
    );
    let worker = {
        let shm = &shm;
        kids.spawn(move || {
            while shm.get(1) == 0 {
                match h.await_fuel(0.2).0 {
                    MptStatus::Ok => {
                        shm.at(0).fetch_add(1, SeqCst);
                    }
                    MptStatus::Timeout => {}
                    MptStatus::Killed => return 0,
                    st => return 10 + st as i32,
                }
            }
            0
        })
    };
    sleep_ms(1100);
    let (st, before) = h.stat(Stat::Latest);
    check!(
        st == MptStatus::Ok && (15.0..=22.0).contains(&before.per_second),
        "latest with the child's monitor alive: {st:?} {before:?}"
    );
    kids.kill(starter);
    let n0 = shm.get(0);
    sleep_ms(500);
    let after_death = shm.get(0) - n0;
    note!("{after_death} grants in the 0.5 s after the starter (and its monitor) died");
    check!(
        (8..=12).contains(&after_death),
        "throttling after the starter died: {after_death} grants in 0.5 s"
    );
    shm.set(1, 1);
    kids.wait_ok(worker, 5 * SEC)?;
    sleep_ms(1200); // no emission at all for more than a second
    let (st, stale) = h.stat(Stat::Latest);
    let child = kids.spawn(|| match h.stat(Stat::Latest) {
        (MptStatus::MonitorOff, _) => 1,
        (MptStatus::Ok, r) if r.per_second == 0.0 => 0,
        (MptStatus::Ok, _) => 2,
        _ => 3,
    });
    let child_says = kids.wait(child, 5 * SEC)?;
    note!(
        "1.2 s after the last emission, monitor's process dead: parent reads {st:?} {stale:?}; child code {child_says}"
    );
    check!(
        st == MptStatus::MonitorOff || (st == MptStatus::Ok && stale.per_second == 0.0),
        "the monitor's process died 1.7 s ago and nothing was emitted for 1.2 s, yet mpt_latest \
         returns OK with {} per second (frozen at the moment of the death)",
        stale.per_second
    );
    check!(
        child_says <= 1,
        "a child reads a stale latest too (code {child_says})"
    );
    Ok(())
}

// ---------------------------------------------------------------- the runner

fn main() {
    let tests: &[Test] = &[
        (
            "schedule_limit_steady",
            || schedule(MptHardcap::Limit, 0, 2000),
            20,
        ),
        (
            "schedule_one_steady",
            || schedule(MptHardcap::One, 0, 2000),
            20,
        ),
        (
            "schedule_window_steady",
            || schedule(MptHardcap::Window, 0, 2000),
            20,
        ),
        (
            "schedule_none_steady",
            || schedule(MptHardcap::None, 0, 2000),
            20,
        ),
        (
            "schedule_limit_after_idle",
            || schedule(MptHardcap::Limit, 1200, 1300),
            20,
        ),
        (
            "schedule_one_after_idle",
            || schedule(MptHardcap::One, 1200, 1300),
            20,
        ),
        (
            "schedule_window_after_idle",
            || schedule(MptHardcap::Window, 1200, 1300),
            20,
        ),
        (
            "schedule_none_after_idle",
            || schedule(MptHardcap::None, 1200, 1300),
            20,
        ),
        (
            "stop_wakes_blocked_children",
            stop_wakes_blocked_children,
            30,
        ),
        (
            "kill_from_child_wakes_siblings_and_parent",
            kill_from_child_wakes_all,
            30,
        ),
        ("fork_storm_never_deadlocks", fork_storm_never_deadlocks, 60),
        (
            "stats_agree_across_processes",
            stats_agree_across_processes,
            30,
        ),
        (
            "pause_resume_across_processes",
            pause_resume_across_processes,
            30,
        ),
        (
            "sigkill_in_await_keeps_rate",
            sigkill_in_await_keeps_rate,
            20,
        ),
        (
            "kill_before_start_wakes_waiters",
            kill_before_start_wakes_waiters,
            20,
        ),
        (
            "concurrent_start_stop_one_wins",
            concurrent_start_stop_one_wins,
            20,
        ),
        (
            "restart_keeps_one_spacing",
            || restart_keeps_promises(MptHardcap::One, 5),
            20,
        ),
        (
            "restart_keeps_window_limit",
            || restart_keeps_promises(MptHardcap::Window, 5),
            20,
        ),
        (
            "lo_hi_hi_lo_survive_a_pause",
            lo_hi_hi_lo_survive_a_pause,
            20,
        ),
        (
            "monitor_process_death_is_not_silent",
            monitor_process_death_is_not_silent,
            20,
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
