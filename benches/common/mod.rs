//! Helpers shared by the benchmarks (`benches/*.rs` include this file with
//! `#[path = "common/mod.rs"] mod common;`): the machine-noise context every
//! report starts with, a clock, shared anonymous mappings for forked
//! children, making a throttle through the C ABI, percentiles, and
//! criterion's estimates read back for a report.

#![allow(dead_code, missing_docs)]

use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::options::{MPT_OPTIONS_VERSION, MptOptions, mpt_options_init};
use mp_throttle::ffi::throttle::{
    MptThrottle, mpt_start, mpt_stop, mpt_throttle_free, mpt_throttle_new,
};
use std::time::Duration;

/// `CLOCK_MONOTONIC` in nanoseconds: the library's clock (vDSO, ~30 ns).
#[inline(always)]
pub fn now_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// Prints the heading of a report: what produced it and how noisy the
/// machine was when it started.
pub fn print_context(title: &str, command: &str) {
    print!("{}", context(title, command));
}

/// The heading of a report, as text (read the load now, print it later).
pub fn context(title: &str, command: &str) -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into());
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into());
    format!(
        "\n## {title}\n\n- command: `{command}`\n- context: {date}, git {git}{}, nproc {nproc}, \
         loadavg at start `{}`, kernel {}, clocksource {}\n\n",
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        read_trim("/proc/loadavg"),
        read_trim("/proc/sys/kernel/osrelease"),
        read_trim("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
    )
}

/// Reads the benchmark's seconds-long knobs from the environment
/// (e.g. `MPT_BENCH_SECONDS=0.2` for a quick smoke run).
pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .unwrap_or(default)
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A zeroed `MAP_SHARED | MAP_ANONYMOUS` mapping of `len` bytes: memory that
/// forked children share with the parent. Never unmapped (a benchmark makes
/// a handful).
pub fn shared_mem(len: usize) -> *mut u8 {
    // SAFETY: an anonymous mapping with no address hint; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap failed");
    p.cast()
}

/// The mpt options: `monitor_and_emit == true` is the defaults (as_monitor 1,
/// auto_emit default = on); false is as_monitor 0, auto_emit 0.
pub fn options(monitor_and_emit: bool) -> MptOptions {
    let mut o = std::mem::MaybeUninit::<MptOptions>::uninit();
    // SAFETY: `o` is valid for writing one MptOptions.
    let st = unsafe { mpt_options_init(o.as_mut_ptr(), MPT_OPTIONS_VERSION) };
    assert_eq!(st, MptStatus::Ok);
    // SAFETY: initialised by mpt_options_init (status checked).
    let mut o = unsafe { o.assume_init() };
    if !monitor_and_emit {
        o.as_monitor = 0;
        o.auto_emit = 0;
    }
    o
}

/// A throttle of `max_n` per `per_s` through the C ABI, optionally started.
pub fn throttle(max_n: u64, per_s: f64, opts: &MptOptions, start: bool) -> *mut MptThrottle {
    let mut t: *mut MptThrottle = std::ptr::null_mut();
    // SAFETY: valid options and out-pointer.
    let st = unsafe { mpt_throttle_new(max_n, per_s, opts, &mut t) };
    assert_eq!(st, MptStatus::Ok, "mpt_throttle_new");
    if start {
        // SAFETY: a live handle.
        let st = unsafe { mpt_start(t) };
        assert_eq!(st, MptStatus::Ok, "mpt_start");
    }
    t
}

/// `mpt_stop` (its status ignored: the throttle may be stopped already),
/// then `mpt_throttle_free`.
pub fn stop_and_free(t: *mut MptThrottle) {
    // SAFETY: a live handle; NULL summary allowed.
    unsafe { mpt_stop(t, std::ptr::null_mut()) };
    // SAFETY: a live handle, freed exactly once, here.
    unsafe { mpt_throttle_free(t) };
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Waits for child `pid` at most `limit`; kills it with SIGKILL past that.
/// Returns true if it exited with status 0.
pub fn reap(pid: libc::pid_t, limit: Duration) -> bool {
    let end = now_ns() + limit.as_nanos() as i64;
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        }
        if r < 0 {
            return false;
        }
        if now_ns() > end {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let mut status = 0;
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `fork()`, asserting it worked.
pub fn fork() -> libc::pid_t {
    // SAFETY: the benchmark's children only call the library, touch shared
    // mappings and leave with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    pid
}

/// Leaves a forked child without running the parent's destructors.
pub fn child_exit(code: i32) -> ! {
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(code) }
}

/// When this process started: criterion estimates written before it are
/// stale (from an earlier run, e.g. when `cargo test --benches` only
/// smoke-runs them). Set by [`mark_started`], first thing in `main`.
static STARTED: std::sync::OnceLock<std::time::SystemTime> = std::sync::OnceLock::new();

pub fn mark_started() {
    STARTED.get_or_init(std::time::SystemTime::now);
}

/// (point, lower, upper) of `stat` ("slope", "mean", "median") in ns of
/// criterion's row `group/name` under `dir`, as this run wrote it.
pub fn estimate(
    dir: &std::path::Path,
    group: &str,
    name: &str,
    stat: &str,
) -> Option<(f64, f64, f64)> {
    let path = dir
        .join(group)
        .join(name)
        .join("new")
        .join("estimates.json");
    let written = std::fs::metadata(&path).ok()?.modified().ok()?;
    if written < *STARTED.get()? {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let e = v.get(stat)?;
    let p = e.get("point_estimate")?.as_f64()?;
    let ci = e.get("confidence_interval")?;
    Some((
        p,
        ci.get("lower_bound")?.as_f64()?,
        ci.get("upper_bound")?.as_f64()?,
    ))
}
