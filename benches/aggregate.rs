//! Aggregate throughput: total grants per second when 1, 2, 4 and 8 forked
//! processes share ONE throttle with an "unlimited" rate (max_n = 1e12 per
//! 1 s) and each loops `mpt_has_fuel` for about one second.
//!
//! Run: `cargo bench --bench aggregate` (about 15 s; `MPT_BENCH_SECONDS`
//! sets each phase's length, default 1).
//!
//! The throttle is made (and started, so the monitor thread of the defaults
//! runs in this parent) before the fork. Children wait at a start barrier in
//! a `MAP_SHARED` page, loop until the parent raises the stop flag, and
//! report their exact counts through the same page. The wall time is the
//! parent's go -> stop interval.
//!
//! Modes: `bare` (as_monitor 0, auto_emit 0), `defaults` (monitor thread +
//! auto_emit), and `floor`: the same children running the physical floor
//! (clock read + CAS on one shared `AtomicU64`, GCRA T = 1 ns) instead of the
//! library, for comparison in the same run.
//!
//! Checks printed under the table: every call returned OK; with auto_emit on,
//! the throttle's total emissions (`mpt_get_summary`) equal the sum of the
//! children's counts (nothing lost or double counted); `mpt_latest` (the
//! monitor's last-second rate) next to the real rate; whether children
//! shared an emission lane.

#[path = "common/mod.rs"]
mod common;

use common::{
    child_exit, env_f64, fork, now_ns, options, print_context, reap, shared_mem, stop_and_free,
    throttle,
};
use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::stats::{MptRate, mpt_get_summary, mpt_latest};
use mp_throttle::ffi::throttle::{MptSummary, MptThrottle, mpt_has_fuel};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};
use std::time::Duration;

const MAX_PROCS: usize = 8;

/// The page the parent and its children share.
#[repr(C, align(64))]
struct Board {
    ready: AtomicU32,
    _pad0: [u8; 60],
    go: AtomicU32,
    _pad1: [u8; 60],
    stop: AtomicU32,
    _pad2: [u8; 60],
    /// The floor's TAT, on its own line.
    tat: AtomicU64,
    _pad3: [u8; 56],
    /// Per child, each on its own line: count, non-OK calls, lane.
    slots: [Slot; MAX_PROCS],
}

#[repr(C, align(64))]
struct Slot {
    count: AtomicU64,
    bad: AtomicU64,
    lane: AtomicI64,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Bare,
    Defaults,
    Floor,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Bare => "mpt bare (monitor 0, auto_emit 0)",
            Mode::Defaults => "mpt defaults (monitor + auto_emit)",
            Mode::Floor => "floor: clock + CAS on one shared u64",
        }
    }
}

struct Outcome {
    mode: Mode,
    procs: usize,
    total: u64,
    wall_ns: i64,
    min: u64,
    max: u64,
    bad: u64,
    emitted: Option<u64>,
    latest: Option<f64>,
    lanes_shared: Option<usize>,
    all_exited: bool,
}

#[inline(never)]
fn floor_grant(tat: &AtomicU64) -> bool {
    let now = now_ns() as u64;
    let mut cur = tat.load(Acquire);
    loop {
        if cur > now + 1_000_000_000 {
            return false;
        }
        match tat.compare_exchange_weak(cur, cur.max(now) + 1, AcqRelOrd::V, Acquire) {
            Ok(_) => return true,
            Err(actual) => cur = actual,
        }
    }
}

struct AcqRelOrd;
impl AcqRelOrd {
    const V: std::sync::atomic::Ordering = std::sync::atomic::Ordering::AcqRel;
}

fn child(board: &Board, i: usize, mode: Mode, t: *const MptThrottle) -> ! {
    board.ready.fetch_add(1, SeqCst);
    while board.go.load(Acquire) == 0 {
        // 8 children on 2 cores: let the others reach the barrier.
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    let mut count = 0u64;
    let mut bad = 0u64;
    match mode {
        Mode::Floor => {
            while board.stop.load(Relaxed) == 0 {
                bad += u64::from(!floor_grant(&board.tat));
                count += 1;
            }
        }
        _ => {
            while board.stop.load(Relaxed) == 0 {
                // SAFETY: a live handle made before the fork; NULL out-pointer allowed.
                let st = unsafe { mpt_has_fuel(t, std::ptr::null_mut()) };
                bad += u64::from(st != MptStatus::Ok);
                count += 1;
            }
        }
    }
    let slot = &board.slots[i];
    slot.count.store(count, Release);
    slot.bad.store(bad, Release);
    if mode != Mode::Floor {
        let lanes = mp_throttle::store::shm::layout::LANES;
        slot.lane
            .store(mp_throttle::process::lane(lanes) as i64, Release);
    }
    child_exit(0)
}

fn run(mode: Mode, procs: usize, seconds: f64) -> Outcome {
    let board_ptr = shared_mem(std::mem::size_of::<Board>()).cast::<Board>();
    // SAFETY: a zeroed, aligned mapping the size of a Board; all atomics.
    let board: &Board = unsafe { &*board_ptr };
    for s in &board.slots {
        s.lane.store(-1, Relaxed);
    }
    let t: *mut MptThrottle = match mode {
        Mode::Floor => std::ptr::null_mut(),
        _ => throttle(
            1_000_000_000_000,
            1.0,
            &options(mode == Mode::Defaults),
            true,
        ),
    };
    let mut pids = Vec::new();
    for i in 0..procs {
        let pid = fork();
        if pid == 0 {
            child(board, i, mode, t);
        }
        pids.push(pid);
    }
    let limit = now_ns() + 10_000_000_000;
    while (board.ready.load(Acquire) as usize) < procs && now_ns() < limit {
        std::thread::sleep(Duration::from_micros(200));
    }
    // Let every child reach its spin at the barrier.
    std::thread::sleep(Duration::from_millis(20));
    let t0 = now_ns();
    board.go.store(1, Release);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    board.stop.store(1, Release);
    let t1 = now_ns();
    let mut all_exited = true;
    for pid in pids {
        all_exited &= reap(pid, Duration::from_secs(20));
    }
    let counts: Vec<u64> = board.slots[..procs]
        .iter()
        .map(|s| s.count.load(Acquire))
        .collect();
    let bad = board.slots[..procs]
        .iter()
        .map(|s| s.bad.load(Acquire))
        .sum();
    let total: u64 = counts.iter().sum();
    let (mut emitted, mut latest, mut lanes_shared) = (None, None, None);
    if !t.is_null() {
        if mode == Mode::Defaults {
            let mut r = MptRate::default();
            // SAFETY: a live handle and a valid out-pointer.
            if unsafe { mpt_latest(t, &mut r) } == MptStatus::Ok {
                latest = Some(r.per_second);
            }
        }
        let mut s = MptSummary::default();
        // SAFETY: a live handle and a valid out-pointer.
        if unsafe { mpt_get_summary(t, &mut s) } == MptStatus::Ok {
            emitted = Some(s.total);
        }
        let mut lanes: Vec<i64> = board.slots[..procs]
            .iter()
            .map(|s| s.lane.load(Acquire))
            .collect();
        lanes.sort_unstable();
        let distinct = {
            let mut l = lanes.clone();
            l.dedup();
            l.len()
        };
        lanes_shared = Some(procs - distinct);
        stop_and_free(t);
    }
    // SAFETY: the mapping made above, no longer used by anyone.
    unsafe { libc::munmap(board_ptr.cast(), std::mem::size_of::<Board>()) };
    Outcome {
        mode,
        procs,
        total,
        wall_ns: t1 - t0,
        min: counts.iter().copied().min().unwrap_or(0),
        max: counts.iter().copied().max().unwrap_or(0),
        bad,
        emitted,
        latest,
        lanes_shared,
        all_exited,
    }
}

fn main() {
    let seconds = env_f64("MPT_BENCH_SECONDS", 1.0);
    print_context(
        "aggregate: grants/s from N forked processes sharing one unlimited throttle",
        &format!("cargo bench --bench aggregate   (MPT_BENCH_SECONDS={seconds})"),
    );
    let mut outs = Vec::new();
    for mode in [Mode::Floor, Mode::Bare, Mode::Defaults] {
        for procs in [1, 2, 4, 8] {
            let o = run(mode, procs, seconds);
            eprintln!(
                "aggregate: {} x{}: {:.1} M grants/s",
                mode.name(),
                procs,
                o.total as f64 / (o.wall_ns as f64 / 1e9) / 1e6
            );
            outs.push(o);
        }
    }
    println!(
        "| mode | processes | grants total | grants/s total | ns per grant (aggregate) | per-process min..max share | emissions check |"
    );
    println!("|---|---:|---:|---:|---:|---|---|");
    let mut failures = Vec::new();
    for o in &outs {
        let wall_s = o.wall_ns as f64 / 1e9;
        let rate = o.total as f64 / wall_s;
        let share = |c: u64| 100.0 * c as f64 / o.total.max(1) as f64;
        let check = match (o.mode, o.emitted) {
            (Mode::Defaults, Some(e)) if e == o.total => format!("summary.total {e} = sum"),
            (Mode::Defaults, Some(e)) => {
                failures.push(format!(
                    "{} x{}: summary.total {e} != sum {}",
                    o.mode.name(),
                    o.procs,
                    o.total
                ));
                format!("**MISMATCH** summary.total {e} != sum {}", o.total)
            }
            (Mode::Bare, Some(e)) => format!("auto_emit off: summary.total {e}"),
            _ => "-".into(),
        };
        if o.bad > 0 {
            failures.push(format!(
                "{} x{}: {} calls were not OK",
                o.mode.name(),
                o.procs,
                o.bad
            ));
        }
        if !o.all_exited {
            failures.push(format!(
                "{} x{}: a child did not exit cleanly",
                o.mode.name(),
                o.procs
            ));
        }
        println!(
            "| {} | {} | {} | {:.2} M | {:.1} | {:.1}..{:.1} % | {} |",
            o.mode.name(),
            o.procs,
            o.total,
            rate / 1e6,
            1e9 / rate.max(1e-9),
            share(o.min),
            share(o.max),
            check
        );
    }
    println!();
    println!(
        "Monitor's view (defaults): `mpt_latest` (emissions in the last second) read right after the children stopped, vs the grants really made in that last second (all of them if the run was shorter than 1 s); and children that shared an emission lane:"
    );
    println!();
    println!(
        "| processes | real grants in the last second | `mpt_latest` per_second | latest / real | children sharing a lane |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for o in outs.iter().filter(|o| o.mode == Mode::Defaults) {
        let real = o.total as f64 / (o.wall_ns as f64 / 1e9).max(1.0);
        let latest = o.latest.map_or("?".into(), |l| format!("{:.0}", l));
        let ratio = o.latest.map_or("?".into(), |l| format!("{:.3}", l / real));
        println!(
            "| {} | {:.0} | {} | {} | {} |",
            o.procs,
            real,
            latest,
            ratio,
            o.lanes_shared.map_or("?".into(), |s| s.to_string())
        );
    }
    println!();
    if failures.is_empty() {
        println!(
            "All checks passed: every call returned OK; with auto_emit the summary total equals the children's counts exactly."
        );
    } else {
        println!("**Checks failed:**");
        for f in &failures {
            println!("- {f}");
        }
    }
    println!();
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
