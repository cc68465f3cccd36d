//! Fast path: the cost of one call when fuel is always there, next to the
//! alternatives and the physical floor, all in one process and one run.
//!
//! Run: `cargo bench --bench fast_path` (about 35 s; `MPT_BENCH_SECONDS=0.3`
//! for a smoke run). Criterion's own report comes first; a markdown table
//! of the same figures (read back from criterion's `estimates.json`) ends
//! the output.
//!
//! Rows (every row is single-threaded and never denied):
//!
//! - `clock_gettime`: one `clock_gettime(CLOCK_MONOTONIC)` (vDSO).
//! - `floor_clock_cas`: the physical floor of a lock-free grant: one clock
//!   read + load + one `compare_exchange` on an `AtomicU64` TAT in a
//!   `MAP_SHARED` mapping (GCRA with T = 1 ns, burst 1e9).
//! - `floor128_clock_cas`: the same on a 128-bit word
//!   (`portable_atomic::AtomicU128`: a 16-byte load and `cmpxchg16b`), as
//!   the schedule keeps its generation and scaled TAT: the floor of this
//!   design, before any of its work.
//! - `robust_mutex_gcra`: the same GCRA arithmetic under a process-shared
//!   robust pthread mutex in a `MAP_SHARED` mapping (what a lock-based design
//!   pays uncontended).
//! - `governor_check_quanta` / `governor_check_monotonic`: governor's
//!   `RateLimiter::direct(q).check()` with its default clock (quanta, TSC
//!   based, no `clock_gettime`) and with `MonotonicClock` (`std::time::Instant`,
//!   the same vDSO read as ours); quota 1e9/s, burst 1e9, never exceeded.
//!   governor is in-process only: it cannot be shared between processes.
//! - `mpt_has_fuel_*`, `mpt_await_fuel_*` through the C ABI, max_n = 1e12
//!   per 1 s, started: `bare` = as_monitor 0 + auto_emit 0; `defaults` =
//!   monitor thread on, auto_emit on (each call also pushes an emission
//!   timestamp that the monitor thread drains on the other core; its CPU use
//!   is reported under the table).

#[path = "common/mod.rs"]
mod common;

use common::{
    context, env_f64, env_usize, estimate, mark_started, now_ns, options, secs, shared_mem,
    stop_and_free, throttle,
};
use criterion::Criterion;
use governor::clock::MonotonicClock;
use governor::{Quota, RateLimiter};
use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::options::MptHardcap;
use mp_throttle::ffi::stats::mpt_get_summary;
use mp_throttle::ffi::throttle::{
    MPT_FOREVER, MptSummary, MptThrottle, mpt_await_fuel, mpt_has_fuel, mpt_set_rate,
};
use portable_atomic::AtomicU128;
use std::cell::RefCell;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const GROUP: &str = "fast_path";

/// GCRA parameters of the hand-written rows: T = 1 ns, burst 1e9.
const T_NS: u64 = 1;
const TAU_NS: u64 = 1_000_000_000;

/// Rows actually run in this process, in order, with a note each.
struct Row {
    name: &'static str,
    what: &'static str,
    note: String,
}

thread_local! {
    static ROWS: RefCell<Vec<Row>> = const { RefCell::new(Vec::new()) };
}

fn record(name: &'static str, what: &'static str, note: String) {
    ROWS.with(|r| r.borrow_mut().push(Row { name, what, note }));
}

/// The robust mutex and its TAT, in one `MAP_SHARED` mapping.
#[repr(C)]
struct Locked {
    mutex: libc::pthread_mutex_t,
    tat: u64,
}

fn robust_mutex() -> *mut Locked {
    let p = shared_mem(std::mem::size_of::<Locked>()).cast::<Locked>();
    // SAFETY: all-zero bytes are a valid (if uninitialised) attribute object,
    // which pthread_mutexattr_init then initialises.
    let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is a writable attribute object on this stack.
    let rc = unsafe { libc::pthread_mutexattr_init(&mut attr) };
    assert_eq!(rc, 0);
    // SAFETY: an initialised attribute object.
    let rc = unsafe { libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED) };
    assert_eq!(rc, 0);
    // SAFETY: an initialised attribute object.
    let rc = unsafe { libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST) };
    assert_eq!(rc, 0);
    // SAFETY: `p` is a fresh, zeroed, writable mapping the size of a
    // Locked, whose first field (repr(C)) is the mutex; `attr` is initialised.
    let rc = unsafe { libc::pthread_mutex_init(p.cast(), &attr) };
    assert_eq!(rc, 0);
    // SAFETY: an initialised attribute object, no longer needed.
    unsafe { libc::pthread_mutexattr_destroy(&mut attr) };
    p
}

/// clock + lock + GCRA compare/update of a u64 TAT + unlock.
#[inline(never)]
fn robust_mutex_gcra(l: *mut Locked) -> bool {
    let now = now_ns() as u64;
    // The mutex is the first field of the repr(C) Locked.
    let m = l.cast::<libc::pthread_mutex_t>();
    // SAFETY: `l` is the live mapping made by robust_mutex(); only raw
    // pointers to its fields are made, never references.
    let tat = unsafe { &raw mut (*l).tat };
    // SAFETY: an initialised process-shared robust mutex.
    let rc = unsafe { libc::pthread_mutex_lock(m) };
    if rc == libc::EOWNERDEAD {
        // SAFETY: we own the mutex; its last owner died (never happens here).
        unsafe { libc::pthread_mutex_consistent(m) };
    }
    // SAFETY: the TAT is only touched under the mutex, which we hold.
    let cur = unsafe { tat.read() };
    let ok = cur <= now + TAU_NS;
    if ok {
        // SAFETY: as above.
        unsafe { tat.write(cur.max(now) + T_NS) };
    }
    // SAFETY: we hold the mutex.
    unsafe { libc::pthread_mutex_unlock(m) };
    ok
}

/// The same GCRA on a 128-bit word (`portable_atomic`, as the throttle's
/// schedule word), in scaled units of 1/1e12 ns: what the width of the
/// word costs before any of the throttle's work.
#[inline(never)]
fn floor128_clock_cas(tat: &AtomicU128) -> bool {
    const SCALE: u128 = 1_000_000_000_000;
    let now = u128::from(now_ns() as u64) * SCALE;
    let mut cur = tat.load(Ordering::Acquire);
    loop {
        if cur > now + u128::from(TAU_NS) * SCALE {
            return false;
        }
        let next = cur.max(now) + u128::from(T_NS) * SCALE;
        match tat.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(actual) => cur = actual,
        }
    }
}

/// clock + load + CAS: the floor of a lock-free grant.
#[inline(never)]
fn floor_clock_cas(tat: &AtomicU64) -> bool {
    let now = now_ns() as u64;
    let mut cur = tat.load(Ordering::Acquire);
    loop {
        if cur > now + TAU_NS {
            return false;
        }
        match tat.compare_exchange_weak(
            cur,
            cur.max(now) + T_NS,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return true,
            Err(actual) => cur = actual,
        }
    }
}

/// CPU time (ns) so far of this process's threads named `mpt-monitor`.
fn monitor_cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "mpt-monitor")
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn bench_mpt(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    defaults: bool,
) {
    let opts = options(defaults);
    for await_ in [false, true] {
        let t: *mut MptThrottle = throttle(1_000_000_000_000, 1.0, &opts, true);
        let (name, what) = match (await_, defaults) {
            (false, false) => (
                "mpt_has_fuel_bare",
                "`mpt_has_fuel`, as_monitor 0, auto_emit 0",
            ),
            (false, true) => (
                "mpt_has_fuel_defaults",
                "`mpt_has_fuel`, defaults (monitor + auto_emit)",
            ),
            (true, false) => (
                "mpt_await_fuel_bare",
                "`mpt_await_fuel(FOREVER)`, as_monitor 0, auto_emit 0",
            ),
            (true, true) => (
                "mpt_await_fuel_defaults",
                "`mpt_await_fuel(FOREVER)`, defaults (monitor + auto_emit)",
            ),
        };
        let mut calls = 0u64;
        let mut bad = 0u64;
        let cpu0 = monitor_cpu_ns();
        let wall0 = now_ns();
        c.bench_function(name, |b| {
            if await_ {
                b.iter(|| {
                    // SAFETY: a live handle; NULL out-pointer is allowed.
                    let st = unsafe { mpt_await_fuel(t, MPT_FOREVER, std::ptr::null_mut()) };
                    calls += 1;
                    bad += u64::from(black_box(st) != MptStatus::Ok);
                })
            } else {
                b.iter(|| {
                    // SAFETY: a live handle; NULL out-pointer is allowed.
                    let st = unsafe { mpt_has_fuel(t, std::ptr::null_mut()) };
                    calls += 1;
                    bad += u64::from(black_box(st) != MptStatus::Ok);
                })
            }
        });
        let wall = (now_ns() - wall0).max(1) as f64;
        let cpu = monitor_cpu_ns().saturating_sub(cpu0) as f64;
        let mut sum = MptSummary::default();
        // SAFETY: a live handle and a valid out-pointer.
        let st = unsafe { mpt_get_summary(t, &mut sum) };
        let emitted = if st == MptStatus::Ok { sum.total } else { 0 };
        stop_and_free(t);
        assert_eq!(
            bad, 0,
            "{name}: {bad} of {calls} calls did not return MPT_STATUS_OK"
        );
        let mut note = format!("{calls} calls, all OK");
        if defaults {
            note += &format!(
                "; emissions counted {emitted} (= calls: {}); monitor thread CPU {:.0} % of the wall time",
                emitted == calls,
                100.0 * cpu / wall
            );
        }
        record(name, what, note);
    }
}

/// Benches `grant`, a row whose every call must grant (asserted), and
/// records it.
fn granting(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &'static str,
    what: &'static str,
    note: &str,
    mut grant: impl FnMut() -> bool,
) {
    let mut denied = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| denied += u64::from(!black_box(grant())))
    });
    assert_eq!(denied, 0, "{name}: denied");
    record(name, what, note.into());
}

fn run(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);

    g.bench_function("clock_gettime", |b| b.iter(|| black_box(now_ns())));
    record(
        "clock_gettime",
        "one `clock_gettime(CLOCK_MONOTONIC)` (reference)",
        String::new(),
    );

    let tat = shared_mem(64).cast::<AtomicU64>();
    // SAFETY: a zeroed, aligned, shared mapping that lives for the process.
    let tat: &AtomicU64 = unsafe { &*tat };
    granting(
        &mut g,
        "floor_clock_cas",
        "**floor**: clock + load + CAS on a shared `AtomicU64` (GCRA)",
        "",
        || floor_clock_cas(tat),
    );

    let tat128 = shared_mem(64).cast::<AtomicU128>();
    // SAFETY: a zeroed, 64-byte aligned, shared mapping that lives for the
    // process (zero is a valid AtomicU128).
    let tat128: &AtomicU128 = unsafe { &*tat128 };
    granting(
        &mut g,
        "floor128_clock_cas",
        "the floor on a 128-bit word (`portable_atomic::AtomicU128`, as the schedule's)",
        "",
        || floor128_clock_cas(tat128),
    );

    let l = robust_mutex();
    granting(
        &mut g,
        "robust_mutex_gcra",
        "clock + robust PROCESS_SHARED mutex lock + GCRA on a u64 + unlock",
        "",
        || robust_mutex_gcra(l),
    );

    let quota = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap());
    let gov = RateLimiter::direct(quota);
    granting(
        &mut g,
        "governor_check_quanta",
        "governor `direct(q).check()`, default clock (quanta/TSC)",
        "in-process only",
        || gov.check().is_ok(),
    );
    let gov = RateLimiter::direct_with_clock(quota, MonotonicClock);
    granting(
        &mut g,
        "governor_check_monotonic",
        "governor `check()` with `MonotonicClock` (`Instant`: same vDSO clock)",
        "in-process only",
        || gov.check().is_ok(),
    );

    bench_mpt(&mut g, false);
    bench_mpt(&mut g, true);
    bench_window_and_changes(&mut g);
    g.finish();
}

/// `WINDOW`'s fast path, and what a change of rate costs its maker (for
/// `WINDOW`, how long reservations are held off: it rewrites the window's
/// 4096 grant times).
fn bench_window_and_changes(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
) {
    let mut opts = options(false);
    opts.hardcap = MptHardcap::Window as u32;
    // 4096 units per ns: fuel always there.
    let t: *mut MptThrottle = throttle(4096, 1e-9, &opts, true);
    let mut bad = 0u64;
    c.bench_function("mpt_has_fuel_window", |b| {
        b.iter(|| {
            // SAFETY: a live handle; NULL out-pointer is allowed.
            let st = unsafe { mpt_has_fuel(t, std::ptr::null_mut()) };
            bad += u64::from(black_box(st) != MptStatus::Ok);
        })
    });
    assert_eq!(bad, 0, "mpt_has_fuel_window: not all OK");
    record(
        "mpt_has_fuel_window",
        "`mpt_has_fuel`, `MPT_HARDCAP_WINDOW`, as_monitor 0, auto_emit 0",
        String::new(),
    );
    for (name, what, hardcap, max_n, per) in [
        (
            "mpt_set_rate_limit",
            "`mpt_set_rate`, LIMIT, alternating two rates",
            MptHardcap::Limit,
            1_000_000_000_000u64,
            1.0,
        ),
        (
            "mpt_set_rate_window",
            "`mpt_set_rate`, WINDOW (4096 grant times), alternating two rates",
            MptHardcap::Window,
            4096,
            1e-9,
        ),
    ] {
        opts.hardcap = hardcap as u32;
        let t2: *mut MptThrottle = throttle(max_n, per, &opts, true);
        let mut flip = false;
        c.bench_function(name, |b| {
            b.iter(|| {
                flip = !flip;
                let n = if flip { max_n / 2 } else { max_n };
                // SAFETY: a live handle.
                let st = unsafe { mpt_set_rate(t2, n, per) };
                bad += u64::from(black_box(st) != MptStatus::Ok);
            })
        });
        assert_eq!(bad, 0, "{name}: not all OK");
        stop_and_free(t2);
        record(name, what, String::new());
    }
    stop_and_free(t);
}

fn main() {
    mark_started();
    let measure = env_f64("MPT_BENCH_SECONDS", 2.0);
    let out: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion");
    let samples = env_usize("MPT_BENCH_SAMPLES", 50).max(10);
    // Printed after criterion's own report, so that the markdown report is
    // one block at the end of the output.
    let heading = context(
        "fast_path: cost per call, fuel always available (one process, one run)",
        &format!(
            "cargo bench --bench fast_path   (MPT_BENCH_SECONDS={measure}, MPT_BENCH_SAMPLES={samples})"
        ),
    );
    let mut c = Criterion::default()
        .output_directory(&out)
        .warm_up_time(secs((measure / 4.0).max(0.1)))
        .measurement_time(secs(measure))
        .sample_size(samples)
        .configure_from_args();
    run(&mut c);
    c.final_summary();

    let rows = ROWS.with(|r| r.take());
    let floor = estimate(&out, GROUP, "floor_clock_cas", "slope")
        .or_else(|| estimate(&out, GROUP, "floor_clock_cas", "mean"))
        .map(|e| e.0);
    print!("{heading}");
    println!(
        "ns per call: criterion's slope estimate with its 95% CI, and the median of the samples."
    );
    println!();
    println!("| row | what | ns/call | 95% CI | median ns | x floor | notes |");
    println!("|---|---|---:|---|---:|---:|---|");
    for r in &rows {
        let e = estimate(&out, GROUP, r.name, "slope")
            .or_else(|| estimate(&out, GROUP, r.name, "mean"));
        let med =
            estimate(&out, GROUP, r.name, "median").map_or("?".into(), |m| format!("{:.1}", m.0));
        let (p, ci) = e.map_or(("?".into(), "?".into()), |(p, lo, hi)| {
            (format!("{p:.1}"), format!("{lo:.1}..{hi:.1}"))
        });
        let x = match (e, floor) {
            (Some(e), Some(f)) if f > 0.0 => format!("{:.2}", e.0 / f),
            _ => "?".into(),
        };
        println!(
            "| `{}` | {} | {p} | {ci} | {med} | {x} | {} |",
            r.name, r.what, r.note
        );
    }
    println!();
}
