//! Kill / stop wake-up latency: 8 waiters blocked in
//! `mpt_await_fuel(MPT_FOREVER)` on a started throttle with no fuel left
//! (1 per 1000 s, its first unit taken); the parent reads the clock (t0)
//! right before `mpt_kill` (or `mpt_stop`); every waiter records the
//! `CLOCK_MONOTONIC` time at which its call returned (it must return
//! `MPT_STATUS_KILLED`) in a `MAP_SHARED` page. Latency = the last of the 8
//! returns - t0. Waiters are 8 forked processes, or 8 threads of this
//! process.
//!
//! Run: `cargo bench --bench kill_wakeup` (about 10-20 s;
//! `MPT_BENCH_REPS` repetitions per series, default 200, at least 100 for
//! the report).
//!
//! Before t0 the parent waits until all 8 waiters are asleep (each has
//! announced itself and its thread shows state `S` in `/proc/<tid>/stat`),
//! then 2 ms more. A waiter process exits only after all 8 have returned
//! (an exiting process would take a core from those still waking, which is
//! the benchmark's cost, not the library's). A fresh throttle (defaults: monitor thread on) is made
//! for every repetition, so no reservation of an earlier one interferes.
//! The target: p99 of the last-of-8 latency within 1 ms.

#[path = "common/mod.rs"]
mod common;

use common::{
    child_exit, env_usize, fork, now_ns, options, print_context, quantile, reap, shared_mem,
    stop_and_free, throttle,
};
use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::throttle::{
    MPT_FOREVER, MptThrottle, mpt_await_fuel, mpt_has_fuel, mpt_kill, mpt_stop, mpt_throttle_free,
};
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::atomic::{AtomicI32, AtomicI64};
use std::time::Duration;

const WAITERS: usize = 8;
const TARGET_P99_US: f64 = 1000.0;

#[repr(C, align(64))]
struct Slot {
    /// The waiter's tid once it is about to call `mpt_await_fuel` (0 before).
    tid: AtomicI32,
    /// The status `mpt_await_fuel` returned (-1 before).
    status: AtomicI32,
    /// `CLOCK_MONOTONIC` when it returned.
    returned_ns: AtomicI64,
}

#[derive(Clone, Copy, PartialEq)]
enum Waiters {
    Processes,
    Threads,
}

#[derive(Clone, Copy, PartialEq)]
enum Waker {
    Kill,
    Stop,
}

/// Shared pointers a waiter thread needs (the handle is thread-safe).
#[derive(Clone, Copy)]
struct Ptrs {
    t: *const MptThrottle,
    slot: *const Slot,
}
// SAFETY: the handle is documented thread-safe and the slot holds only
// atomics in a mapping that outlives the threads.
unsafe impl Send for Ptrs {}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

fn wait_once(p: Ptrs) {
    // SAFETY: the slot lives in a mapping that outlives every waiter.
    let slot = unsafe { &*p.slot };
    slot.tid.store(gettid(), Release);
    // SAFETY: a live handle; NULL out-pointer allowed.
    let st = unsafe { mpt_await_fuel(p.t, MPT_FOREVER, std::ptr::null_mut()) };
    let at = now_ns();
    slot.returned_ns.store(at, Release);
    slot.status.store(st as i32, Release);
}

/// Whether the thread `tid` is asleep (state S) right now.
fn asleep(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/stat")).is_ok_and(|s| {
        // The state follows the ")" that closes the command name.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "S"))
            .unwrap_or(false)
    })
}

struct Rep {
    last_us: f64,
    first_us: f64,
    waker_us: f64,
}

fn one(who: Waiters, how: Waker, slots: &[Slot]) -> Result<Rep, String> {
    for s in slots {
        s.tid.store(0, Release);
        s.status.store(-1, Release);
        s.returned_ns.store(0, Release);
    }
    let t = throttle(1, 1000.0, &options(true), true);
    // The first unit is there at the start: take it, so the tank is empty.
    // SAFETY: a live handle; NULL out-pointer allowed.
    let st = unsafe { mpt_has_fuel(t, std::ptr::null_mut()) };
    if st != MptStatus::Ok {
        return Err(format!("taking the first unit: status {}", st as i32));
    }
    let mut pids = Vec::new();
    let mut threads = Vec::new();
    for slot in slots {
        let p = Ptrs { t, slot };
        match who {
            Waiters::Processes => {
                let pid = fork();
                if pid == 0 {
                    wait_once(p);
                    // Exit only once every waiter has returned: an exiting
                    // process would take a core from those still waking.
                    let end = now_ns() + 10_000_000_000;
                    while slots.iter().any(|s| s.status.load(Acquire) == -1) && now_ns() < end {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    child_exit(0);
                }
                pids.push(pid);
            }
            Waiters::Threads => threads.push(std::thread::spawn(move || wait_once(p))),
        }
    }
    let limit = now_ns() + 5_000_000_000;
    let mut ready = false;
    while now_ns() < limit {
        let all = slots.iter().all(|s| {
            let tid = s.tid.load(Acquire);
            tid != 0 && s.status.load(Acquire) == -1 && asleep(tid)
        });
        if all {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    std::thread::sleep(Duration::from_millis(2));
    let early = slots
        .iter()
        .filter(|s| s.status.load(Acquire) != -1)
        .count();
    let t0 = now_ns();
    match how {
        // SAFETY: a live handle.
        Waker::Kill => unsafe { mpt_kill(t) },
        // SAFETY: a live handle; NULL summary allowed.
        Waker::Stop => unsafe { mpt_stop(t, std::ptr::null_mut()) },
    };
    let t_waker = now_ns();
    let mut clean = true;
    for pid in pids {
        clean &= reap(pid, Duration::from_secs(10));
    }
    if who == Waiters::Threads {
        // Bounded: a waiter that missed the wake-up would hang the join.
        let end = now_ns() + 10_000_000_000;
        while slots.iter().any(|s| s.status.load(Acquire) == -1) && now_ns() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        if slots.iter().any(|s| s.status.load(Acquire) == -1) {
            return Err("a waiter thread did not return within 10 s".into());
        }
        for th in threads {
            let _ = th.join();
        }
    }
    if how == Waker::Kill {
        stop_and_free(t);
    } else {
        // SAFETY: a live handle, stopped already; freed once.
        unsafe { mpt_throttle_free(t) };
    }
    if !ready {
        return Err("the waiters were not all asleep within 5 s".into());
    }
    if early > 0 {
        return Err(format!("{early} waiters returned before the kill"));
    }
    if !clean {
        return Err("a waiter process did not exit cleanly".into());
    }
    let mut first = i64::MAX;
    let mut last = i64::MIN;
    for s in slots {
        let st = s.status.load(Acquire);
        if st != MptStatus::Killed as i32 {
            return Err(format!("a waiter returned status {st}, not KILLED"));
        }
        let at = s.returned_ns.load(Acquire);
        first = first.min(at);
        last = last.max(at);
    }
    Ok(Rep {
        last_us: (last - t0) as f64 / 1e3,
        first_us: (first - t0) as f64 / 1e3,
        waker_us: (t_waker - t0) as f64 / 1e3,
    })
}

fn main() {
    let reps = env_usize("MPT_BENCH_REPS", 200);
    print_context(
        "kill_wakeup: 8 blocked waiters, time from mpt_kill / mpt_stop to the last one's return",
        &format!("cargo bench --bench kill_wakeup   (MPT_BENCH_REPS={reps})"),
    );
    let size = std::mem::size_of::<Slot>() * WAITERS;
    let base = shared_mem(size).cast::<Slot>();
    // SAFETY: a zeroed, aligned mapping of WAITERS slots (atomics only),
    // never unmapped.
    let slots: &[Slot] = unsafe { std::slice::from_raw_parts(base, WAITERS) };
    println!(
        "| waiters | woken by | reps | last-of-8 p50 us | p99 us | max us | first-of-8 p50 us | waker's call p50 / max us | p99 <= 1 ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|---|");
    let mut errors = Vec::new();
    for who in [Waiters::Processes, Waiters::Threads] {
        for how in [Waker::Kill, Waker::Stop] {
            let (mut last, mut first, mut waker) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..reps {
                match one(who, how, slots) {
                    Ok(r) => {
                        last.push(r.last_us);
                        first.push(r.first_us);
                        waker.push(r.waker_us);
                    }
                    Err(e) => errors.push(e),
                }
            }
            for v in [&mut last, &mut first, &mut waker] {
                v.sort_by(f64::total_cmp);
            }
            let p99 = quantile(&last, 0.99);
            let name_who = match who {
                Waiters::Processes => "8 processes",
                Waiters::Threads => "8 threads",
            };
            let name_how = match how {
                Waker::Kill => "`mpt_kill`",
                Waker::Stop => "`mpt_stop`",
            };
            println!(
                "| {name_who} | {name_how} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {} |",
                last.len(),
                quantile(&last, 0.5),
                p99,
                last.last().copied().unwrap_or(f64::NAN),
                quantile(&first, 0.5),
                quantile(&waker, 0.5),
                waker.last().copied().unwrap_or(f64::NAN),
                if p99 <= TARGET_P99_US {
                    "yes"
                } else {
                    "**no**"
                }
            );
        }
    }
    println!();
    println!(
        "Latencies in microseconds from t0 (the clock read right before the call). `mpt_stop` also joins the monitor thread, so its waker's call is longer."
    );
    if errors.is_empty() {
        println!("Every waiter returned MPT_STATUS_KILLED, none before t0.");
    } else {
        println!("**{} repetitions failed:**", errors.len());
        for e in errors.iter().take(10) {
            println!("- {e}");
        }
    }
    println!();
    if !errors.is_empty() {
        std::process::exit(1);
    }
}
