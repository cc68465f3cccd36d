//! Accuracy of the schedule under saturated demand, through the C ABI.
//!
//! For each hardcap and rate (`rate` per 1 s) the parent makes a throttle,
//! forks `--workers` children (default 4) that loop
//! `mpt_await_fuel(t, MPT_FOREVER, &grant_ns)` and record, per grant, the
//! grant time and the time read right after the call returned, into a
//! `MAP_SHARED` buffer (one per worker, prefaulted by the parent). The parent
//! starts the throttle, sleeps `--secs`, stops it, reaps the children and
//! prints one markdown row:
//!
//! - `grants` (counted by the workers), `lib total` (the summary's total),
//!   `expected` = 1 + floor(runtime_ns * rate / 1e9) with runtime the
//!   summary's, and `diff` = grants - expected;
//! - `max/per`: the most grant times in any half-open window of length `per`
//!   (exact: two-pointer sweep over all sorted grant times), and `>max_n`:
//!   how many windows (one starting at each grant) hold more than `max_n`;
//!   must be 0 for ONE and WINDOW;
//! - `ahead`: the largest number of grants ahead of the supply curve
//!   1 + floor((t - t0) / T), with t0 the clock read just before `mpt_start`
//!   (so lenient by the microseconds `mpt_start` takes); must be 0 for every
//!   hardcap (the tank starts empty);
//! - `min gap/T`: the shortest interval between consecutive grants, in units
//!   of T = per/rate (ONE: at least 1 up to the ns rounding);
//! - lateness = return time - grant time: p50, p99, max in microseconds,
//!   and `early`: returns before the grant time (must be 0);
//! - CPU seconds of the workers (`RUSAGE_CHILDREN` delta, user + sys) and of
//!   the parent (`RUSAGE_SELF` delta over start..stop: the monitor thread).
//!
//! `keeps up` says whether the workers took all the fuel: grants >= expected
//! minus (workers + 1), since a waiter whose grant falls just before `stop`
//! returns KILLED (each holds one reservation at most). With ONE, fuel that
//! comes while no worker is back to take it is lost for good, so there the
//! count also measures how promptly workers return.
//!
//! Usage (all optional):
//! `cargo bench --bench accuracy -- --rates 4,1000 --hardcaps limit,one
//! --secs 5 --spin 0.0002 --slack 1 --workers 4`
//!
//! `--spin S` sets `options.spin_s` (the precise mode; default 0),
//! `--slack NS` sets `options.timer_slack_ns` (default the library's, 1 ns;
//! 0 leaves the kernel's default 50 us slack alone).
//! The full default run is 4 hardcaps x 6 rates x 5 s, about 2 minutes.

use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::options::{MPT_OPTIONS_VERSION, MptHardcap, MptOptions, mpt_options_init};
use mp_throttle::ffi::throttle::{
    MPT_FOREVER, MptSummary, MptThrottle, mpt_await_fuel, mpt_start, mpt_stop, mpt_throttle_free,
    mpt_throttle_new,
};
use std::io::Write;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

const SEC: i64 = 1_000_000_000;
const PER_NS: i64 = SEC;

fn now() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * SEC + ts.tv_nsec
}

// ---------------------------------------------------------------- arguments

struct Args {
    rates: Vec<u64>,
    hardcaps: Vec<MptHardcap>,
    secs: f64,
    spin_s: f64,
    slack_ns: Option<u32>,
    workers: usize,
}

const USAGE: &str = "usage: cargo bench --bench accuracy -- [--rates 4,100,1000,10000,100000,1000000] \
[--hardcaps limit,one,none,window] [--secs 5] [--spin S] [--slack NS] [--workers 4]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rates: vec![4, 100, 1_000, 10_000, 100_000, 1_000_000],
        hardcaps: vec![
            MptHardcap::Limit,
            MptHardcap::One,
            MptHardcap::None,
            MptHardcap::Window,
        ],
        secs: 5.0,
        spin_s: 0.0,
        slack_ns: None,
        workers: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        // `cargo bench` appends `--bench` to harness = false benches.
        if arg == "--bench" {
            continue;
        }
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let (key, val) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => {
                let v = it.next().ok_or(format!("{arg} needs a value\n{USAGE}"))?;
                (arg, v)
            }
        };
        let bad = |what: &str| format!("{key}: bad {what} {val:?}\n{USAGE}");
        match key.as_str() {
            "--rates" => {
                a.rates = val
                    .split(',')
                    .map(|s| {
                        let s = s.trim().replace('_', "");
                        s.parse::<u64>()
                            .ok()
                            .or_else(|| s.parse::<f64>().ok().map(|f| f as u64))
                            .filter(|&r| r >= 1)
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("rate list"))?;
            }
            "--hardcaps" => {
                a.hardcaps = val
                    .split(',')
                    .map(|s| match s.trim().to_ascii_lowercase().as_str() {
                        "limit" => Some(MptHardcap::Limit),
                        "one" => Some(MptHardcap::One),
                        "none" => Some(MptHardcap::None),
                        "window" => Some(MptHardcap::Window),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("hardcap list"))?;
            }
            "--secs" => {
                a.secs = val
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| bad("number of seconds"))?;
            }
            "--spin" => {
                a.spin_s = val
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| bad("spin time"))?;
            }
            "--slack" => a.slack_ns = Some(val.parse().map_err(|_| bad("slack"))?),
            "--workers" => {
                a.workers = val
                    .parse()
                    .ok()
                    .filter(|&w| w >= 1)
                    .ok_or_else(|| bad("worker count"))?;
            }
            _ => return Err(format!("unknown argument {key:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn hardcap_name(h: MptHardcap) -> &'static str {
    match h {
        MptHardcap::Limit => "LIMIT",
        MptHardcap::One => "ONE",
        MptHardcap::None => "NONE",
        MptHardcap::Window => "WINDOW",
    }
}

/// 1234567 -> "1,234,567".
fn thousands(n: i128) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

// ---------------------------------------------------------------- shared memory

/// An anonymous `MAP_SHARED` mapping, inherited by forked children.
struct Shm {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Shm {
    fn new(len: usize, populate: bool) -> Result<Self, String> {
        let len = len.max(1);
        let flags = libc::MAP_SHARED
            | libc::MAP_ANONYMOUS
            | libc::MAP_NORESERVE
            | if populate { libc::MAP_POPULATE } else { 0 };
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {len} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self { ptr, len })
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no reference
        // into it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// What a worker reports besides its records.
#[repr(C, align(64))]
struct WorkerHdr {
    count: AtomicU64,
    overflow: AtomicU64,
    /// A status other than OK or KILLED that ended the worker (0 = none).
    error: AtomicI32,
    done: AtomicI32,
}

// ---------------------------------------------------------------- the C API

fn cpu_ns(who: libc::c_int) -> i64 {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid for writing.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec * SEC + t.tv_usec * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The worker: takes fuel until KILLED, records (grant, return) pairs.
fn worker(t: *const MptThrottle, rec: *mut [i64; 2], cap: usize, hdr: &WorkerHdr) -> ! {
    let mut n = 0usize;
    let mut overflow = 0u64;
    loop {
        let mut grant = 0i64;
        // SAFETY: a live handle inherited over fork; `grant` valid for writing.
        let st = unsafe { mpt_await_fuel(t, MPT_FOREVER, &mut grant) };
        let ret = now();
        match st {
            MptStatus::Ok => {
                if n < cap {
                    // SAFETY: n < cap, and the mapping holds `cap` records
                    // for this worker alone.
                    let slot = unsafe { rec.add(n) };
                    // SAFETY: as above: in bounds, aligned, ours alone.
                    unsafe { slot.write([grant, ret]) };
                    n += 1;
                } else {
                    overflow += 1;
                }
            }
            MptStatus::Killed => break,
            other => {
                hdr.error.store(other as i32, SeqCst);
                break;
            }
        }
    }
    hdr.count.store(n as u64, SeqCst);
    hdr.overflow.store(overflow, SeqCst);
    hdr.done.store(1, SeqCst);
    // SAFETY: leaves the child at once, running no destructor of the
    // parent's state twice.
    unsafe { libc::_exit(0) }
}

// ---------------------------------------------------------------- one run

struct Run {
    hardcap: MptHardcap,
    rate: u64,
    summary: MptSummary,
    t_before_start: i64,
    /// (grant, return) of every grant, sorted by grant time.
    recs: Vec<[i64; 2]>,
    overflow: u64,
    errors: Vec<String>,
    workers_cpu_ns: i64,
    parent_cpu_ns: i64,
}

fn run_one(a: &Args, hardcap: MptHardcap, rate: u64) -> Result<Run, String> {
    let mut opts = MptOptions::default();
    // SAFETY: `opts` is valid for writing.
    let st = unsafe { mpt_options_init(&mut opts, MPT_OPTIONS_VERSION) };
    if st != MptStatus::Ok {
        return Err(format!("mpt_options_init: {st:?}"));
    }
    opts.hardcap = hardcap as u32;
    opts.spin_s = a.spin_s;
    if let Some(s) = a.slack_ns {
        opts.timer_slack_ns = s;
    }
    let mut t: *mut MptThrottle = std::ptr::null_mut();
    // SAFETY: `opts` valid for reading, `t` for writing.
    let st = unsafe { mpt_throttle_new(rate, 1.0, &opts, &mut t) };
    if st != MptStatus::Ok {
        return Err(format!("mpt_throttle_new({rate}, 1.0): {st:?}"));
    }

    let cap = (rate as f64 * a.secs * 1.2) as usize + 100;
    let hdrs = Shm::new(a.workers * std::mem::size_of::<WorkerHdr>(), true)?;
    let data = Shm::new(a.workers * cap * 16, true)?;
    let hdr = |i: usize| -> &WorkerHdr {
        // SAFETY: in bounds: the mapping holds `workers` headers.
        let p = unsafe { hdrs.ptr.cast::<WorkerHdr>().add(i) };
        // SAFETY: zeroed (all-zero is a valid WorkerHdr), aligned (mmap
        // returns page-aligned memory), shared only through atomics.
        unsafe { &*p }
    };
    let recs_of = |i: usize| -> *mut [i64; 2] {
        // SAFETY: in bounds: worker i owns records i*cap .. (i+1)*cap.
        unsafe { data.ptr.cast::<[i64; 2]>().add(i * cap) }
    };

    let children0 = cpu_ns(libc::RUSAGE_CHILDREN);
    let mut pids = Vec::new();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    for i in 0..a.workers {
        // SAFETY: this process is single-threaded here (no run of any
        // throttle is going on, so no monitor thread exists); the child
        // calls only the library and libc, then _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            worker(t, recs_of(i), cap, hdr(i));
        }
        pids.push(pid);
    }
    // Let every worker reach await_fuel, which waits for the start.
    std::thread::sleep(Duration::from_millis(100));

    let self0 = cpu_ns(libc::RUSAGE_SELF);
    let t_before_start = now();
    // SAFETY: a live handle.
    let st = unsafe { mpt_start(t) };
    if st != MptStatus::Ok {
        for &p in &pids {
            // SAFETY: our own child.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        return Err(format!("mpt_start: {st:?}"));
    }
    std::thread::sleep(Duration::from_secs_f64(a.secs));
    let mut summary = MptSummary::default();
    // SAFETY: a live handle; `summary` valid for writing.
    let st = unsafe { mpt_stop(t, &mut summary) };
    let self1 = cpu_ns(libc::RUSAGE_SELF);
    let mut errors = Vec::new();
    if st != MptStatus::Ok {
        errors.push(format!("mpt_stop: {st:?}"));
    }

    // Reap, killing any worker that does not finish within 10 s.
    let deadline = now() + 10 * SEC;
    let mut left: Vec<libc::pid_t> = pids.clone();
    while !left.is_empty() {
        left.retain(|&p| {
            let mut status = 0;
            // SAFETY: our own child; `status` valid for writing.
            let r = unsafe { libc::waitpid(p, &mut status, libc::WNOHANG) };
            r == 0
        });
        if left.is_empty() {
            break;
        }
        if now() > deadline {
            for &p in &left {
                errors.push(format!("worker {p} still blocked 10 s after stop: SIGKILL"));
                // SAFETY: our own child.
                unsafe { libc::kill(p, libc::SIGKILL) };
                let mut status = 0;
                // SAFETY: as above.
                unsafe { libc::waitpid(p, &mut status, 0) };
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let children1 = cpu_ns(libc::RUSAGE_CHILDREN);
    // SAFETY: the handle is live and no other thread uses it.
    unsafe { mpt_throttle_free(t) };

    let mut recs = Vec::new();
    let mut overflow = 0;
    for i in 0..a.workers {
        let h = hdr(i);
        if h.done.load(SeqCst) == 0 {
            errors.push(format!("worker {i} did not finish"));
        }
        let e = h.error.load(SeqCst);
        if e != 0 {
            errors.push(format!("worker {i} ended with status {e}"));
        }
        let n = (h.count.load(SeqCst) as usize).min(cap);
        overflow += h.overflow.load(SeqCst);
        // SAFETY: worker i wrote its first n records before exiting, and
        // has been reaped.
        let s = unsafe { std::slice::from_raw_parts(recs_of(i), n) };
        recs.extend_from_slice(s);
    }
    recs.sort_unstable_by_key(|r| r[0]);
    Ok(Run {
        hardcap,
        rate,
        summary,
        t_before_start,
        recs,
        overflow,
        errors,
        workers_cpu_ns: children1 - children0,
        parent_cpu_ns: self1 - self0,
    })
}

// ---------------------------------------------------------------- analysis

struct Row {
    cells: Vec<String>,
    problems: Vec<String>,
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn analyse(a: &Args, r: &Run) -> Row {
    let rate = r.rate as i128;
    let n = r.recs.len() as i128;
    let runtime_ns = (r.summary.runtime_s * 1e9).round() as i128;
    let expected = 1 + runtime_ns * rate / PER_NS as i128;
    let diff = n - expected;
    let grants: Vec<i64> = r.recs.iter().map(|x| x[0]).collect();

    // Most grants in any half-open window [g_i, g_i + per): any window holds
    // at most as many as the one starting at its first grant.
    let mut max_win = 0usize;
    let mut over = 0usize;
    let mut j = 0usize;
    for i in 0..grants.len() {
        if j < i {
            j = i;
        }
        while j < grants.len() && grants[j] < grants[i] + PER_NS {
            j += 1;
        }
        let c = j - i;
        max_win = max_win.max(c);
        if c as u64 > r.rate {
            over += 1;
        }
    }

    // Grants ahead of the supply curve 1 + floor((t - t0) * rate / per).
    let mut ahead: i128 = 0;
    let mut ahead_at = 0usize;
    for (k, &g) in grants.iter().enumerate() {
        let d = (g - r.t_before_start) as i128;
        let supply = if d < 0 {
            0
        } else {
            1 + d * rate / PER_NS as i128
        };
        let over_supply = k as i128 + 1 - supply;
        if over_supply > ahead {
            ahead = over_supply;
            ahead_at = k;
        }
    }

    let min_gap = grants.windows(2).map(|w| w[1] - w[0]).min();

    let mut late: Vec<i64> = r.recs.iter().map(|x| x[1] - x[0]).collect();
    late.sort_unstable();
    let early = late.iter().take_while(|&&l| l < 0).count();
    let us = |ns: i64| format!("{:.1}", ns as f64 / 1e3);

    // A waiter whose grant falls just before `stop` returns KILLED (it holds
    // one reservation at most), and a slot may fall inside `stop` itself.
    let keeps_up = diff >= -(a.workers as i128 + 1);
    let t_ns = PER_NS as f64 / r.rate as f64;
    let mut problems = Vec::new();
    let name = hardcap_name(r.hardcap);
    let cfg = format!(
        "{name} rate {} per 1 s, secs {}, spin {}, slack {}",
        r.rate,
        a.secs,
        a.spin_s,
        a.slack_ns.map_or("default".into(), |s| s.to_string())
    );
    if matches!(r.hardcap, MptHardcap::One | MptHardcap::Window) && over > 0 {
        problems.push(format!(
            "BUG? {cfg}: {over} windows hold more than max_n = {} (most {max_win})",
            r.rate
        ));
    }
    if ahead > 0 {
        problems.push(format!(
            "BUG? {cfg}: grant #{ahead_at} is {ahead} ahead of the supply curve \
             1 + floor((t - t0)/T), t0 = clock before mpt_start"
        ));
    }
    if early > 0 {
        problems.push(format!(
            "BUG? {cfg}: {early} returns before their grant time (min lateness {} ns)",
            late[0]
        ));
    }
    match min_gap {
        Some(g) if r.hardcap == MptHardcap::One && (g as f64) < t_ns.floor() => {
            problems.push(format!(
                "BUG? {cfg}: ONE grants only {g} ns apart (T = {t_ns:.1} ns)"
            ));
        }
        _ => {}
    }
    if n != r.summary.total as i128 {
        problems.push(format!(
            "{cfg}: workers counted {n} grants, the library's total is {}",
            r.summary.total
        ));
    }
    if diff.abs() > 1 {
        problems.push(format!(
            "{cfg}: {n} grants, expected {expected} (diff {diff}){}",
            if keeps_up {
                ""
            } else {
                ": the workers do not keep up"
            }
        ));
    }
    if r.overflow > 0 {
        problems.push(format!(
            "{cfg}: {} grants not recorded (buffer full)",
            r.overflow
        ));
    }
    problems.extend(r.errors.iter().map(|e| format!("{cfg}: {e}")));

    let cells = vec![
        name.to_string(),
        thousands(r.rate as i128),
        format!("{:.4}", r.summary.runtime_s),
        thousands(n),
        thousands(r.summary.total as i128),
        thousands(expected),
        format!("{diff:+}"),
        thousands(max_win as i128),
        over.to_string(),
        ahead.to_string(),
        min_gap.map_or("-".into(), |g| format!("{:.3}", g as f64 / t_ns)),
        us(percentile(&late, 0.5)),
        us(percentile(&late, 0.99)),
        us(late.last().copied().unwrap_or(0)),
        early.to_string(),
        format!("{:.3}", r.workers_cpu_ns as f64 / 1e9),
        format!("{:.3}", r.parent_cpu_ns as f64 / 1e9),
        if keeps_up {
            "yes".to_string()
        } else {
            format!(
                "**no**: {} behind ({:.0} us)",
                -diff,
                -diff as f64 * t_ns / 1e3
            )
        },
    ];
    Row { cells, problems }
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "accuracy: {} workers (fork) x mpt_await_fuel(FOREVER), per = 1 s, {} s per run, \
         spin_s {}, timer_slack_ns {}; {} CPUs; load average before: {}",
        a.workers,
        a.secs,
        a.spin_s,
        a.slack_ns.map_or("default (1)".into(), |s| if s == 0 {
            "0 (kernel default 50 us)".into()
        } else {
            s.to_string()
        }),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!();
    println!(
        "| hardcap | rate/s | runtime s | grants | lib total | expected | diff | max/per | >max_n \
         | ahead | min gap/T | late p50 us | p99 us | max us | early | workers CPU s \
         | parent CPU s | keeps up |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
    let mut problems = Vec::new();
    for &h in &a.hardcaps {
        for &rate in &a.rates {
            eprintln!("accuracy: {} {} per 1 s ...", hardcap_name(h), rate);
            match run_one(&a, h, rate) {
                Ok(run) => {
                    let row = analyse(&a, &run);
                    println!("| {} |", row.cells.join(" | "));
                    problems.extend(row.problems);
                }
                Err(e) => {
                    println!("| {} | {} | error: {e} |", hardcap_name(h), rate);
                    problems.push(e);
                }
            }
            let _ = std::io::stdout().flush();
        }
    }
    println!();
    println!("load average after: {}", load_average());
    if problems.is_empty() {
        println!(
            "no problems: windows, supply curve, lateness sign and counts as the contract says"
        );
    } else {
        println!("notes:");
        for p in &problems {
            println!("- {p}");
        }
    }
}
