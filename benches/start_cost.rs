//! Start cost: how long `mpt_start` takes before the first grant, by
//! hardcap and rate, next to the floor of touching the same memory once.
//!
//! Run: `cargo bench --bench start_cost` (about 20 s; `MPT_BENCH_REPS=3`
//! for a smoke run). The table ends the output.
//!
//! A `WINDOW` throttle of `max_n` per period keeps `max(max_n, 4096)` grant
//! times (16 bytes each). A start writes none of them unless a stop cut
//! reservations short (see `src/schedule/window.rs`, `start_ring`); the
//! floor column says what writing them once would cost. Rows, each the
//! median (and the slowest) of `MPT_BENCH_REPS` starts:
//!
//! - `first start`: `mpt_start` of a new throttle (the call), and the time
//!   from the call to the first unit granted (`mpt_has_fuel` until one is);
//! - `restart`: the `mpt_start` call after `mpt_stop` of a throttle that
//!   granted max_n units in its first run (its grants are carried over,
//!   so its first unit may be due later: the rate, not the cost);
//! - `restart after a cut`: the next `mpt_start`, after a stop that cut
//!   a waiter's reservation of max_n / 2 units short (it is given back);
//! - floor: writing the ring's bytes once (`write_bytes` over memory
//!   already mapped and touched), measured in the same process just
//!   before; `x floor` is the start's median over it.
//!
//! LIMIT keeps no ring: its row shows what a start costs without one.

#[path = "common/mod.rs"]
mod common;

use common::{context, env_usize, now_ns, options, quantile, stop_and_free, throttle};
use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::options::MptHardcap;
use mp_throttle::ffi::throttle::{
    MptThrottle, mpt_await_fuel_n, mpt_has_fuel, mpt_has_fuel_n, mpt_start, mpt_stop,
};
use std::hint::black_box;

/// ns that `mpt_start` took, and ns from calling it to the first unit
/// granted.
fn start_to_grant(t: *mut MptThrottle) -> (f64, f64) {
    let t0 = now_ns();
    // SAFETY: a live, stopped handle.
    let st = unsafe { mpt_start(t) };
    let started = (now_ns() - t0) as f64;
    assert_eq!(st, MptStatus::Ok, "mpt_start");
    loop {
        // SAFETY: a live handle; NULL out-pointer allowed.
        match unsafe { mpt_has_fuel(t, std::ptr::null_mut()) } {
            MptStatus::Ok => break,
            MptStatus::NoFuel => std::hint::spin_loop(),
            other => panic!("mpt_has_fuel: {other:?}"),
        }
    }
    (started, (now_ns() - t0) as f64)
}

/// ns to write `bytes` bytes once, memory already mapped and touched.
fn write_floor(bytes: usize, reps: usize) -> Vec<f64> {
    let mut buf = vec![1u8; bytes];
    (0..reps)
        .map(|i| {
            let t0 = now_ns();
            // SAFETY: `buf` holds `bytes` bytes.
            unsafe { std::ptr::write_bytes(buf.as_mut_ptr(), i as u8, bytes) };
            black_box(&mut buf);
            (now_ns() - t0) as f64
        })
        .collect()
}

/// Stops `t` (running) while a thread waits for half a period's units,
/// reserved for later: the stop cuts that reservation short, and the next
/// start gives it back.
fn stop_with_a_waiter(t: *mut MptThrottle, max_n: u64) {
    let handle = t as usize;
    let waiter = std::thread::spawn(move || {
        // SAFETY: the handle lives until the thread is joined.
        unsafe {
            mpt_await_fuel_n(
                handle as *const MptThrottle,
                max_n / 2,
                10.0,
                std::ptr::null_mut(),
            )
        }
    });
    // Long enough for the waiter to reserve; it then sleeps half a second.
    std::thread::sleep(std::time::Duration::from_millis(20));
    // SAFETY: a live, running handle; NULL summary allowed.
    assert_eq!(unsafe { mpt_stop(t, std::ptr::null_mut()) }, MptStatus::Ok);
    assert_eq!(
        waiter.join().unwrap(),
        MptStatus::Killed,
        "the waiter's units were cut short"
    );
}

fn ms(ns: f64) -> String {
    format!("{:.3}", ns / 1e6)
}

fn main() {
    let reps = env_usize("MPT_BENCH_REPS", 11).max(1);
    print!(
        "{}",
        context(
            "start_cost: mpt_start to the first grant",
            &format!("cargo bench --bench start_cost   (MPT_BENCH_REPS={reps})")
        )
    );
    println!(
        "Median (slowest) of {reps} starts, ms. Floor: writing the ring's bytes once, \
         memory already touched, same process."
    );
    println!();
    println!(
        "| hardcap | rate | grant times kept | ring MB | floor ms | first `mpt_start` ms | x floor | to first grant ms | restart `mpt_start` ms | x floor | restart after a cut ms | x floor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut opts = options(false);
    for (hardcap, max_n) in [
        (MptHardcap::Limit, 1_000_000u64),
        (MptHardcap::Window, 1_000u64),
        (MptHardcap::Window, 100_000),
        (MptHardcap::Window, 1_000_000),
    ] {
        opts.hardcap = hardcap as u32;
        let kept = if hardcap == MptHardcap::Window {
            max_n.max(4096)
        } else {
            0
        };
        let bytes = (kept * 16) as usize;
        let mut floor = write_floor(bytes.max(1), reps);
        let mut first = Vec::new();
        let mut granted = Vec::new();
        let mut again = Vec::new();
        let mut cut = Vec::new();
        for _ in 0..reps {
            let t = throttle(max_n, 1.0, &opts, false);
            let (call, grant) = start_to_grant(t);
            first.push(call);
            granted.push(grant);
            // Take the rest of the first second's units, so that the
            // restart has max_n grants to carry over.
            let mut taken = 1;
            while taken < max_n {
                let n = (max_n - taken).min(1000);
                // SAFETY: a live handle; NULL out-pointer allowed.
                match unsafe { mpt_has_fuel_n(t, n, std::ptr::null_mut()) } {
                    MptStatus::Ok => taken += n,
                    MptStatus::NoFuel => std::hint::spin_loop(),
                    other => panic!("mpt_has_fuel_n: {other:?}"),
                }
            }
            // SAFETY: a live, running handle; NULL summary allowed.
            assert_eq!(unsafe { mpt_stop(t, std::ptr::null_mut()) }, MptStatus::Ok);
            again.push(start_to_grant(t).0);
            stop_with_a_waiter(t, max_n);
            cut.push(start_to_grant(t).0);
            stop_and_free(t);
        }
        for v in [&mut floor, &mut first, &mut granted, &mut again, &mut cut] {
            v.sort_by(f64::total_cmp);
        }
        let f = quantile(&floor, 0.5);
        let x = |v: &[f64]| {
            if bytes > 0 {
                format!("{:.1}", quantile(v, 0.5) / f)
            } else {
                "-".into()
            }
        };
        println!(
            "| {:?} | {max_n}/s | {kept} | {:.1} | {} | {} ({}) | {} | {} ({}) | {} ({}) | {} | {} ({}) | {} |",
            hardcap,
            bytes as f64 / 1e6,
            if bytes > 0 { ms(f) } else { "-".into() },
            ms(quantile(&first, 0.5)),
            ms(quantile(&first, 1.0)),
            x(&first),
            ms(quantile(&granted, 0.5)),
            ms(quantile(&granted, 1.0)),
            ms(quantile(&again, 0.5)),
            ms(quantile(&again, 1.0)),
            x(&again),
            ms(quantile(&cut, 0.5)),
            ms(quantile(&cut, 1.0)),
            x(&cut),
        );
    }
    println!();
}
