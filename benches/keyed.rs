//! Keyed throttles: the cost of one `mpt_keyed_has_fuel` with 1, 1,000 and
//! 1,000,000 live keys next to the unkeyed `mpt_has_fuel`, the aggregate of
//! many processes over many keys next to the single-key aggregate, and the
//! same keyed workload on governor's keyed limiter, all in one run.
//!
//! Run: `cargo bench --bench keyed` (about 1.5 minutes; `MPT_BENCH_SECONDS`
//! sets criterion's measuring time per row and each aggregate phase,
//! default 2 and 1; `MPT_BENCH_SAMPLES` criterion's samples, default 50;
//! `MPT_BENCH_SECONDS=0.2 MPT_BENCH_SAMPLES=10` is a smoke run of about
//! 30 s; `MPT_BENCH_PARTS=fast` or
//! `=aggregate` runs one part only, e.g. under `perf record`). Criterion's
//! own report comes first; the markdown report ends the output.
//!
//! The workload. Keys are 16-byte strings `user-00000000042`. A keyed
//! throttle has `MPT_KEYED_MAX_N` (2^24) units per 250 ms for each key
//! (LIMIT): 6.7e7 per second, never binding. (Not a shorter `per`: a call
//! whose clock read is older than `per` by the time it swaps the key's word
//! (its process was preempted meanwhile, common with 8 processes on 2
//! vCPUs) finds the key's tank already used beyond its `now`, and gets
//! `MPT_STATUS_NO_FUEL`: with `per` = 1 ms, up to 1 call in 40,000 did.)
//! Each key count has its own throttle of that capacity (1,000,000 keys:
//! 2^21 slots of 192 bytes, 384 MiB of shared memory), made and started
//! before anything is measured, and filled (each key used once) so that
//! every measured call finds its key live; at 1,000,000 keys a few keys
//! whose 32 slots are all taken drop an idle key to get in (the report
//! counts them). A caller cycles through the keys in order, so that with
//! 1,000 and 1,000,000 keys consecutive calls land on unrelated slots, as
//! the calls of a server for many users would.
//!
//! Part 1, fast path (criterion, one thread, never denied), in ns per call:
//!
//! - `floor_clock_cas`: clock read + load + CAS on a shared `AtomicU64`
//!   (GCRA), as in `benches/fast_path.rs`;
//! - `siphash13_16b`: SipHash-1-3 of one 16-byte key (what finding a key
//!   hashes; a reference for the profile, not a floor);
//! - `mpt_has_fuel_bare`: the unkeyed fast path through the C ABI (as
//!   `benches/fast_path.rs`: the `extern "C"` function called from Rust),
//!   max_n 1e12 per 1 s, as_monitor 0, auto_emit 0;
//! - `mpt_keyed_has_fuel_{1,1k,1m}`: `mpt_keyed_has_fuel(key, 1)` through
//!   the C ABI, same options, cycling through 1 / 1,000 / 1,000,000 keys;
//! - `mpt_has_fuel_defaults`, `mpt_keyed_has_fuel_defaults_1k`: both with
//!   the defaults (monitor thread, auto_emit);
//! - `governor_direct`: governor's `RateLimiter::direct(q).check()`, its
//!   unkeyed limiter; `governor_keyed_{1,1k,1m}`:
//!   `RateLimiter::keyed(q).check_key(&key)` (a `DashMap` hashed with std's
//!   SipHash-1-3, governor's default quanta/TSC clock), quota 1e9 per
//!   second, burst 1e9, the same keys in the same order, filled first;
//!   `governor_keyed_monotonic_1k`: with `MonotonicClock` (the same vDSO
//!   clock as mp_throttle's). governor is in-process only.
//!
//! Then the goal's two rows once more, alternating (20 rounds of 10^6
//! unkeyed calls, then 10^6 keyed calls over 1,000 keys): the fastest
//! round of each is the least disturbed by the rest of a shared machine.
//!
//! Part 2, aggregate (as `benches/aggregate.rs`): 1, 2, 4 and 8 workers loop
//! for `MPT_BENCH_SECONDS` (default 1) each, worker `i` starting its cycle
//! at key `i * keys / workers`; total grants per second. Forked processes:
//! the floor (clock + CAS on one shared u64), the plain throttle (the
//! single-key aggregate: every grant on one schedule word), and the keyed
//! throttles of 1, 1,000 and 1,000,000 keys (the throttles of part 1, used
//! by the children that fork from this process; each child first looks at
//! every key once, before the start barrier, to map the table's pages).
//! Threads of this process: the keyed throttle of 1,000 keys again (threads
//! and processes share one mapping the same way), and governor's keyed
//! limiters of 1, 1,000 and 1,000,000 keys.
//!
//! Checks printed under the tables: every call was granted; the tables of
//! 1 and 1,000 keys hold exactly their keys; where no key was dropped, the
//! sum of the keys' granted counters (`mpt_keyed_key_stats`) equals every
//! grant this process and its children counted on that table.

#[path = "common/mod.rs"]
mod common;

use common::{
    child_exit, context, env_f64, env_usize, estimate, fork, mark_started, now_ns, options, reap,
    secs, shared_mem, stop_and_free, throttle,
};
use criterion::Criterion;
use governor::clock::MonotonicClock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::keyed::{
    MPT_KEYED_MAX_N, MptKeyStats, MptKeyed, MptKeyedStats, mpt_keyed_free, mpt_keyed_get_stats,
    mpt_keyed_has_fuel, mpt_keyed_key_stats, mpt_keyed_new, mpt_keyed_start, mpt_keyed_stop,
};
use mp_throttle::ffi::options::MptOptions;
use mp_throttle::ffi::throttle::{MptThrottle, mpt_has_fuel};
use std::cell::RefCell;
use std::hash::Hasher;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

const GROUP: &str = "keyed";

/// Key counts measured.
const KEY_COUNTS: [usize; 3] = [1, 1_000, 1_000_000];
/// Workers of the aggregate.
const WORKERS: [usize; 4] = [1, 2, 4, 8];
const MAX_WORKERS: usize = 8;

/// Keys are 16 bytes: `user-` and 11 digits.
const KEY_LEN: usize = 16;
type KeyBytes = [u8; KEY_LEN];

/// A keyed throttle's rate: `MPT_KEYED_MAX_N` units per 250 ms for each
/// key (6.7e7 per second, a tank of 2^24 units): never binding.
const KEYED_PER_S: f64 = 0.25;

/// The goal: the keyed fast path with 1,000 keys at most this many
/// times the unkeyed one.
const GOAL_X: f64 = 2.0;

fn make_keys(n: usize) -> Vec<KeyBytes> {
    (0..n)
        .map(|i| {
            let s = format!("user-{i:011}");
            s.as_bytes().try_into().expect("16-byte key")
        })
        .collect()
}

fn label(n: usize) -> &'static str {
    match n {
        1 => "1",
        1_000 => "1k",
        1_000_000 => "1m",
        _ => "?",
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A keyed throttle handle that threads may share: every `mpt_keyed_*`
/// call used here is thread-safe by its contract (src/ffi/keyed.rs).
#[derive(Clone, Copy)]
struct KeyedPtr(*mut MptKeyed);

// SAFETY: the handle is only used with `mpt_keyed_has_fuel` (thread-safe
// per its contract) while it is live; it is freed after every thread ended.
unsafe impl Send for KeyedPtr {}
// SAFETY: as above.
unsafe impl Sync for KeyedPtr {}

/// One keyed throttle of `keys.len()` keys, filled.
struct Table {
    keys: Vec<KeyBytes>,
    k: KeyedPtr,
    /// Grants counted on it by this process and its children.
    counted: u64,
    fill_s: f64,
    /// Live keys and keys dropped after the fill.
    fill_live: u64,
    fill_evictions: u64,
}

#[inline(always)]
fn keyed_take(k: KeyedPtr, key: &KeyBytes) -> MptStatus {
    // SAFETY: a live handle; the key is valid for KEY_LEN bytes; NULL
    // out-pointer allowed.
    unsafe { mpt_keyed_has_fuel(k.0, key.as_ptr().cast(), KEY_LEN, 1, std::ptr::null_mut()) }
}

fn keyed_stats(k: KeyedPtr) -> MptKeyedStats {
    let mut s = MptKeyedStats::default();
    // SAFETY: a live handle and a valid out-pointer.
    let st = unsafe { mpt_keyed_get_stats(k.0, &mut s) };
    assert_eq!(st, MptStatus::Ok, "mpt_keyed_get_stats");
    s
}

/// A started keyed throttle of `n` keys with `opts`, each key used once.
fn keyed_table(n: usize, opts: &MptOptions) -> Table {
    let mut k: *mut MptKeyed = std::ptr::null_mut();
    // SAFETY: valid options and out-pointer.
    let st = unsafe { mpt_keyed_new(MPT_KEYED_MAX_N, KEYED_PER_S, n as u64, opts, &mut k) };
    assert_eq!(st, MptStatus::Ok, "mpt_keyed_new({n} keys)");
    // SAFETY: a live handle.
    let st = unsafe { mpt_keyed_start(k) };
    assert_eq!(st, MptStatus::Ok, "mpt_keyed_start");
    let k = KeyedPtr(k);
    let keys = make_keys(n);
    let t0 = now_ns();
    for key in &keys {
        let st = keyed_take(k, key);
        assert_eq!(st, MptStatus::Ok, "filling the table of {n} keys");
    }
    let fill_s = (now_ns() - t0) as f64 / 1e9;
    let s = keyed_stats(k);
    // A new key whose 32 slots are all taken drops an idle key of those
    // (every key here is idle again at once): the table may then hold a
    // few keys fewer than were used.
    assert_eq!(
        s.live_keys + s.evictions,
        n as u64,
        "the table of {n} keys after filling"
    );
    Table {
        keys,
        k,
        counted: n as u64,
        fill_s,
        fill_live: s.live_keys,
        fill_evictions: s.evictions,
    }
}

/// Stops and frees a keyed throttle.
fn keyed_free(k: KeyedPtr) {
    // SAFETY: a live handle; NULL summary allowed. Its status is ignored:
    // it may be stopped already.
    unsafe { mpt_keyed_stop(k.0, std::ptr::null_mut()) };
    // SAFETY: a live handle that no other thread uses, freed once, here.
    unsafe { mpt_keyed_free(k.0) };
}

/// The sum of the granted counters of every key of `t`, and how many of
/// its keys are not in the table.
fn granted_sum(t: &Table) -> (u64, u64) {
    let mut sum = 0u64;
    let mut missing = 0u64;
    for key in &t.keys {
        let mut s = MptKeyStats::default();
        // SAFETY: a live handle, a key valid for KEY_LEN bytes, a valid
        // out-pointer.
        let st = unsafe { mpt_keyed_key_stats(t.k.0, key.as_ptr().cast(), KEY_LEN, &mut s) };
        assert_eq!(st, MptStatus::Ok, "mpt_keyed_key_stats");
        sum += s.granted;
        missing += u64::from(s.in_table == 0);
    }
    (sum, missing)
}

fn governor_keyed(keys: &[KeyBytes]) -> DefaultKeyedRateLimiter<KeyBytes> {
    let gov = RateLimiter::keyed(quota());
    for key in keys {
        assert!(gov.check_key(key).is_ok(), "filling governor");
    }
    assert_eq!(gov.len(), keys.len());
    gov
}

fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
}

/// clock + load + CAS: the floor of a lock-free grant (as fast_path.rs).
#[inline(never)]
fn floor_clock_cas(tat: &AtomicU64) -> bool {
    let now = now_ns() as u64;
    let mut cur = tat.load(Acquire);
    loop {
        if cur > now + 1_000_000_000 {
            return false;
        }
        match tat.compare_exchange_weak(cur, cur.max(now) + 1, AcqRel, Acquire) {
            Ok(_) => return true,
            Err(actual) => cur = actual,
        }
    }
}

// ---------------------------------------------------------------------
// Part 1: the fast path.

/// Rows actually run, in order, with a note each.
struct Row {
    name: String,
    what: String,
    note: String,
}

thread_local! {
    static ROWS: RefCell<Vec<Row>> = const { RefCell::new(Vec::new()) };
}

fn record(name: &str, what: &str, note: String) {
    ROWS.with(|r| {
        r.borrow_mut().push(Row {
            name: name.into(),
            what: what.into(),
            note,
        })
    });
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// `mpt_keyed_has_fuel` cycling through the keys of `t`.
fn bench_keyed(g: &mut Group<'_>, name: &str, what: &str, t: &mut Table) {
    let (mut calls, mut bad, mut i) = (0u64, 0u64, 0usize);
    let (k, keys) = (t.k, &t.keys);
    g.bench_function(name, |b| {
        b.iter(|| {
            let st = keyed_take(k, &keys[i]);
            i += 1;
            if i == keys.len() {
                i = 0;
            }
            calls += 1;
            bad += u64::from(black_box(st) != MptStatus::Ok);
        })
    });
    t.counted += calls - bad;
    assert_eq!(bad, 0, "{name}: {bad} of {calls} calls not OK");
    record(name, what, format!("{} calls, all OK", thousands(calls)));
}

/// governor's `check_key` cycling through `keys`.
fn bench_governor<C: governor::clock::Clock>(
    g: &mut Group<'_>,
    name: &str,
    what: &str,
    gov: &RateLimiter<
        KeyBytes,
        governor::state::keyed::DefaultKeyedStateStore<KeyBytes>,
        C,
        governor::middleware::NoOpMiddleware<C::Instant>,
    >,
    keys: &[KeyBytes],
) {
    let (mut calls, mut bad, mut i) = (0u64, 0u64, 0usize);
    g.bench_function(name, |b| {
        b.iter(|| {
            let ok = gov.check_key(&keys[i]).is_ok();
            i += 1;
            if i == keys.len() {
                i = 0;
            }
            calls += 1;
            bad += u64::from(!black_box(ok));
        })
    });
    assert_eq!(bad, 0, "{name}: {bad} of {calls} calls denied");
    assert_eq!(gov.len(), keys.len(), "{name}: keys dropped");
    record(
        name,
        what,
        format!("{} calls, all granted; in-process only", thousands(calls)),
    );
}

fn fast_path(c: &mut Criterion, tables: &mut [Table], govs: &[DefaultKeyedRateLimiter<KeyBytes>]) {
    let mut g = c.benchmark_group(GROUP);

    let tat = shared_mem(64).cast::<AtomicU64>();
    // SAFETY: a zeroed, aligned, shared mapping that lives for the process.
    let tat: &AtomicU64 = unsafe { &*tat };
    let mut denied = 0u64;
    g.bench_function("floor_clock_cas", |b| {
        b.iter(|| denied += u64::from(!black_box(floor_clock_cas(tat))))
    });
    assert_eq!(denied, 0);
    record(
        "floor_clock_cas",
        "**floor**: clock + load + CAS on a shared `AtomicU64` (GCRA)",
        String::new(),
    );

    let seed: (u64, u64) = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
    let key = *b"user-00000000042";
    g.bench_function("siphash13_16b", |b| {
        b.iter(|| {
            let mut h = siphasher::sip::SipHasher13::new_with_keys(seed.0, seed.1);
            h.write(black_box(&key));
            black_box(h.finish())
        })
    });
    record(
        "siphash13_16b",
        "SipHash-1-3 of one 16-byte key (reference)",
        String::new(),
    );

    // The unkeyed fast path, as benches/fast_path.rs measures it.
    for defaults in [false, true] {
        let t: *mut MptThrottle = throttle(1_000_000_000_000, 1.0, &options(defaults), true);
        let name = if defaults {
            "mpt_has_fuel_defaults"
        } else {
            "mpt_has_fuel_bare"
        };
        let (mut calls, mut bad) = (0u64, 0u64);
        g.bench_function(name, |b| {
            b.iter(|| {
                // SAFETY: a live handle; NULL out-pointer is allowed.
                let st = unsafe { mpt_has_fuel(t, std::ptr::null_mut()) };
                calls += 1;
                bad += u64::from(black_box(st) != MptStatus::Ok);
            })
        });
        stop_and_free(t);
        assert_eq!(bad, 0, "{name}: {bad} of {calls} calls not OK");
        let what = if defaults {
            "**unkeyed** `mpt_has_fuel`, defaults (monitor + auto_emit)"
        } else {
            "**unkeyed** `mpt_has_fuel`, as_monitor 0, auto_emit 0"
        };
        record(name, what, format!("{} calls, all OK", thousands(calls)));

        if !defaults {
            for t in tables.iter_mut() {
                let n = t.keys.len();
                let name = format!("mpt_keyed_has_fuel_{}", label(n));
                let what = format!(
                    "`mpt_keyed_has_fuel`, {} live key{}, as_monitor 0, auto_emit 0",
                    thousands(n as u64),
                    if n == 1 { "" } else { "s" }
                );
                bench_keyed(&mut g, &name, &what, t);
            }
        } else {
            // The defaults: a table of its own (a monitor thread runs for
            // it), stopped and freed before any fork.
            let mut t = keyed_table(1_000, &options(true));
            bench_keyed(
                &mut g,
                "mpt_keyed_has_fuel_defaults_1k",
                "`mpt_keyed_has_fuel`, 1,000 live keys, defaults (monitor + auto_emit)",
                &mut t,
            );
            let (sum, missing) = granted_sum(&t);
            assert_eq!(
                (sum, missing),
                (t.counted, 0),
                "defaults table: granted counters"
            );
            keyed_free(t.k);
        }
    }

    let direct = RateLimiter::direct(quota());
    g.bench_function("governor_direct", |b| {
        b.iter(|| denied += u64::from(black_box(direct.check()).is_err()))
    });
    assert_eq!(denied, 0);
    record(
        "governor_direct",
        "governor **unkeyed** `direct(q).check()` (quanta/TSC clock)",
        "in-process only".into(),
    );
    for (gov, t) in govs.iter().zip(tables.iter()) {
        let n = t.keys.len();
        bench_governor(
            &mut g,
            &format!("governor_keyed_{}", label(n)),
            &format!(
                "governor `keyed(q).check_key`, {} key{} (DashMap; quanta/TSC clock)",
                thousands(n as u64),
                if n == 1 { "" } else { "s" }
            ),
            gov,
            &t.keys,
        );
    }
    let keys = &tables
        .iter()
        .find(|t| t.keys.len() == 1_000)
        .expect("1,000 keys")
        .keys;
    let gov = RateLimiter::dashmap_with_clock(quota(), MonotonicClock);
    for key in keys {
        assert!(gov.check_key(key).is_ok());
    }
    bench_governor(
        &mut g,
        "governor_keyed_monotonic_1k",
        "governor `check_key`, 1,000 keys, `MonotonicClock` (vDSO, as ours)",
        &gov,
        keys,
    );
    g.finish();
}

/// The goal's two rows again, alternating: `rounds` rounds of `calls`
/// unkeyed `mpt_has_fuel` then as many `mpt_keyed_has_fuel` over 1,000
/// keys; ns per call of each round, sorted. The fastest round of each is
/// the one least disturbed by the rest of the machine.
struct Paired {
    calls: usize,
    unkeyed: Vec<f64>,
    keyed: Vec<f64>,
}

fn paired(t: &mut Table, rounds: usize, calls: usize) -> Paired {
    let plain: *mut MptThrottle = throttle(1_000_000_000_000, 1.0, &options(false), true);
    let (mut unkeyed, mut keyed) = (Vec::new(), Vec::new());
    let mut bad = 0u64;
    let mut j = 0usize;
    for _ in 0..rounds {
        let t0 = now_ns();
        for _ in 0..calls {
            // SAFETY: a live handle; NULL out-pointer is allowed.
            let st = unsafe { mpt_has_fuel(plain, std::ptr::null_mut()) };
            bad += u64::from(black_box(st) != MptStatus::Ok);
        }
        let t1 = now_ns();
        for _ in 0..calls {
            let st = keyed_take(t.k, &t.keys[j]);
            j += 1;
            if j == t.keys.len() {
                j = 0;
            }
            bad += u64::from(black_box(st) != MptStatus::Ok);
        }
        let t2 = now_ns();
        unkeyed.push((t1 - t0) as f64 / calls as f64);
        keyed.push((t2 - t1) as f64 / calls as f64);
    }
    stop_and_free(plain);
    assert_eq!(bad, 0, "paired rounds: calls not OK");
    t.counted += (rounds * calls) as u64;
    unkeyed.sort_by(f64::total_cmp);
    keyed.sort_by(f64::total_cmp);
    Paired {
        calls,
        unkeyed,
        keyed,
    }
}

// ---------------------------------------------------------------------
// Part 2: the aggregate.

/// The page the parent and its workers share.
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
    slots: [Slot; MAX_WORKERS],
}

#[repr(C, align(64))]
struct Slot {
    count: AtomicU64,
    bad: AtomicU64,
    /// The status of the last call not granted, + 1 (0: none).
    last_bad: AtomicU32,
    /// CPU time of the worker's thread while it ran (ns).
    cpu_ns: AtomicU64,
}

#[derive(Clone, Copy, PartialEq)]
enum Work {
    Floor,
    Plain,
    /// The table of this many keys.
    Keyed(usize),
    /// governor's keyed limiter of this many keys (threads).
    Governor(usize),
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    Processes,
    Threads,
}

struct Outcome {
    work: Work,
    via: Via,
    workers: usize,
    total: u64,
    wall_ns: i64,
    min: u64,
    max: u64,
    bad: u64,
    /// Statuses (as numbers) of calls not granted.
    bad_statuses: Vec<u32>,
    /// The workers' CPU time over the wall time: the CPUs they had.
    cpus: f64,
    all_exited: bool,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.total as f64 / (self.wall_ns.max(1) as f64 / 1e9)
    }

    fn name(&self) -> String {
        let via = match self.via {
            Via::Processes => "processes",
            Via::Threads => "threads",
        };
        match self.work {
            Work::Floor => "floor: clock + CAS on one shared u64 (processes)".into(),
            Work::Plain => "**single key**: plain throttle, `mpt_has_fuel` (processes)".into(),
            Work::Keyed(1) => "`mpt_keyed_has_fuel`, 1 key (processes)".into(),
            Work::Keyed(n) => format!("`mpt_keyed_has_fuel`, {} keys ({via})", thousands(n as u64)),
            Work::Governor(n) => format!(
                "governor `check_key`, {} key{} (threads)",
                thousands(n as u64),
                if n == 1 { "" } else { "s" }
            ),
        }
    }
}

/// What one worker does until the stop flag: (calls, calls not granted).
fn work_loop(
    board: &Board,
    i: usize,
    workers: usize,
    work: Work,
    plain: *mut MptThrottle,
    table: Option<&Table>,
    gov: Option<&DefaultKeyedRateLimiter<KeyBytes>>,
) {
    if let (Work::Keyed(_), Some(t)) = (work, table) {
        // A forked child maps each 4 KiB page of the shared table on its
        // first touch (a minor fault: about 98,000 pages for 1,000,000
        // keys); a long-lived worker pays that once, so it is paid here,
        // before the barrier, by looking at every key without taking.
        for key in &t.keys {
            let mut s = MptKeyStats::default();
            // SAFETY: a live handle, a key valid for KEY_LEN bytes, a
            // valid out-pointer.
            let st = unsafe { mpt_keyed_key_stats(t.k.0, key.as_ptr().cast(), KEY_LEN, &mut s) };
            assert_eq!(st, MptStatus::Ok);
        }
    }
    board.ready.fetch_add(1, SeqCst);
    while board.go.load(Acquire) == 0 {
        // 8 workers on 2 cores: let the others reach the barrier.
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    let cpu0 = thread_cpu_ns();
    let (mut count, mut bad) = (0u64, 0u64);
    match work {
        Work::Floor => {
            while board.stop.load(Relaxed) == 0 {
                bad += u64::from(!floor_clock_cas(&board.tat));
                count += 1;
            }
        }
        Work::Plain => {
            while board.stop.load(Relaxed) == 0 {
                // SAFETY: a live handle made before the fork; NULL out-pointer allowed.
                let st = unsafe { mpt_has_fuel(plain, std::ptr::null_mut()) };
                bad += u64::from(st != MptStatus::Ok);
                count += 1;
            }
        }
        Work::Keyed(_) => {
            let t = table.expect("a table");
            let keys = &t.keys;
            let mut j = i * keys.len() / workers;
            while board.stop.load(Relaxed) == 0 {
                let st = keyed_take(t.k, &keys[j]);
                if st != MptStatus::Ok {
                    bad += 1;
                    board.slots[i].last_bad.store(st as u32 + 1, Relaxed);
                }
                j += 1;
                if j == keys.len() {
                    j = 0;
                }
                count += 1;
            }
        }
        Work::Governor(_) => {
            let (gov, keys) = (gov.expect("a limiter"), &table.expect("keys").keys);
            let mut j = i * keys.len() / workers;
            while board.stop.load(Relaxed) == 0 {
                bad += u64::from(gov.check_key(&keys[j]).is_err());
                j += 1;
                if j == keys.len() {
                    j = 0;
                }
                count += 1;
            }
        }
    }
    board.slots[i]
        .cpu_ns
        .store(thread_cpu_ns().saturating_sub(cpu0), Release);
    board.slots[i].count.store(count, Release);
    board.slots[i].bad.store(bad, Release);
}

fn aggregate(
    work: Work,
    via: Via,
    workers: usize,
    seconds: f64,
    table: Option<&Table>,
    gov: Option<&DefaultKeyedRateLimiter<KeyBytes>>,
) -> Outcome {
    let board_ptr = shared_mem(std::mem::size_of::<Board>()).cast::<Board>();
    // SAFETY: a zeroed, aligned mapping the size of a Board; all atomics.
    let board: &Board = unsafe { &*board_ptr };
    let plain: *mut MptThrottle = match work {
        Work::Plain => throttle(1_000_000_000_000, 1.0, &options(false), true),
        _ => std::ptr::null_mut(),
    };
    let mut all_exited = true;
    let (t0, t1) = match via {
        Via::Processes => {
            let mut pids = Vec::new();
            for i in 0..workers {
                let pid = fork();
                if pid == 0 {
                    work_loop(board, i, workers, work, plain, table, gov);
                    child_exit(0);
                }
                pids.push(pid);
            }
            let (t0, t1) = drive(board, workers, seconds);
            for pid in pids {
                all_exited &= reap(pid, Duration::from_secs(20));
            }
            (t0, t1)
        }
        Via::Threads => std::thread::scope(|s| {
            for i in 0..workers {
                // No plain throttle runs in threads.
                s.spawn(move || {
                    work_loop(board, i, workers, work, std::ptr::null_mut(), table, gov)
                });
            }
            drive(board, workers, seconds)
        }),
    };
    if !plain.is_null() {
        stop_and_free(plain);
    }
    let counts: Vec<u64> = board.slots[..workers]
        .iter()
        .map(|s| s.count.load(Acquire))
        .collect();
    let bad = board.slots[..workers]
        .iter()
        .map(|s| s.bad.load(Acquire))
        .sum();
    let cpu: u64 = board.slots[..workers]
        .iter()
        .map(|s| s.cpu_ns.load(Acquire))
        .sum();
    let cpus = cpu as f64 / (t1 - t0).max(1) as f64;
    let mut bad_statuses: Vec<u32> = board.slots[..workers]
        .iter()
        .filter_map(|s| s.last_bad.load(Acquire).checked_sub(1))
        .collect();
    bad_statuses.sort_unstable();
    bad_statuses.dedup();
    // SAFETY: the mapping made above, no longer used by anyone.
    unsafe { libc::munmap(board_ptr.cast(), std::mem::size_of::<Board>()) };
    Outcome {
        work,
        via,
        workers,
        total: counts.iter().sum(),
        wall_ns: t1 - t0,
        min: counts.iter().copied().min().unwrap_or(0),
        max: counts.iter().copied().max().unwrap_or(0),
        bad,
        bad_statuses,
        cpus,
        all_exited,
    }
}

/// CPU time of the calling thread (ns).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec * 1_000_000_000 + ts.tv_nsec) as u64
}

/// Waits for the workers at the barrier, lets them run `seconds`, stops
/// them: the go -> stop interval.
fn drive(board: &Board, workers: usize, seconds: f64) -> (i64, i64) {
    let limit = now_ns() + 10_000_000_000;
    while (board.ready.load(Acquire) as usize) < workers && now_ns() < limit {
        std::thread::sleep(Duration::from_micros(200));
    }
    // Let every worker reach its spin at the barrier.
    std::thread::sleep(Duration::from_millis(20));
    let t0 = now_ns();
    board.go.store(1, Release);
    std::thread::sleep(secs(seconds));
    board.stop.store(1, Release);
    (t0, now_ns())
}

// ---------------------------------------------------------------------
// The report.

fn ns(dir: &Path, name: &str) -> Option<(f64, f64, f64)> {
    estimate(dir, GROUP, name, "slope").or_else(|| estimate(dir, GROUP, name, "mean"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "?".into(),
    }
}

fn main() {
    mark_started();
    let measure = env_f64("MPT_BENCH_SECONDS", 2.0);
    let phase = env_f64("MPT_BENCH_SECONDS", 1.0);
    let samples = env_usize("MPT_BENCH_SAMPLES", 50).max(10);
    // MPT_BENCH_PARTS=fast or =aggregate runs one part only (profiling).
    let parts = std::env::var("MPT_BENCH_PARTS").unwrap_or_default();
    let run_fast = parts.is_empty() || parts.contains("fast");
    let run_agg = parts.is_empty() || parts.contains("aggregate");
    let out: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion");
    let heading = context(
        "keyed: keyed throttles, fast path and aggregate, next to the unkeyed fast path and governor (one run)",
        &format!(
            "cargo bench --bench keyed   (MPT_BENCH_SECONDS={}, MPT_BENCH_SAMPLES={samples})",
            std::env::var("MPT_BENCH_SECONDS")
                .unwrap_or_else(|_| "default: 2 per row, 1 per aggregate phase".into())
        ),
    );

    // Every table and limiter is made and filled before anything is timed.
    let mut tables: Vec<Table> = KEY_COUNTS
        .iter()
        .map(|&n| {
            let t = keyed_table(n, &options(false));
            eprintln!("keyed: {n} keys filled in {:.2} s", t.fill_s);
            t
        })
        .collect();
    let t0 = now_ns();
    let govs: Vec<DefaultKeyedRateLimiter<KeyBytes>> =
        tables.iter().map(|t| governor_keyed(&t.keys)).collect();
    eprintln!(
        "keyed: governor filled in {:.2} s",
        (now_ns() - t0) as f64 / 1e9
    );

    let mut c = Criterion::default()
        .output_directory(&out)
        .warm_up_time(secs((measure / 4.0).max(0.1)))
        .measurement_time(secs(measure))
        .sample_size(samples)
        .configure_from_args();
    let mut pair = None;
    if run_fast {
        fast_path(&mut c, &mut tables, &govs);
        c.final_summary();
        let t = tables
            .iter_mut()
            .find(|t| t.keys.len() == 1_000)
            .expect("1,000 keys");
        // 20 rounds of 2 x about 0.1 s at the default; shorter with
        // MPT_BENCH_SECONDS.
        let calls = ((measure / 2.0) * 1e6) as usize;
        pair = Some(paired(t, 20, calls.clamp(10_000, 1_000_000)));
    }

    // Part 2. Processes first (this process has no other thread then),
    // then threads.
    let mut outs = Vec::new();
    let mut runs: Vec<(Work, Via)> =
        vec![(Work::Floor, Via::Processes), (Work::Plain, Via::Processes)];
    runs.extend(KEY_COUNTS.iter().map(|&n| (Work::Keyed(n), Via::Processes)));
    runs.push((Work::Keyed(1_000), Via::Threads));
    runs.extend(
        KEY_COUNTS
            .iter()
            .map(|&n| (Work::Governor(n), Via::Threads)),
    );
    if !run_agg {
        runs.clear();
    }
    for (work, via) in runs {
        let idx = KEY_COUNTS.iter().position(|&n| match work {
            Work::Keyed(k) | Work::Governor(k) => k == n,
            _ => false,
        });
        for workers in WORKERS {
            let o = aggregate(
                work,
                via,
                workers,
                phase,
                idx.map(|i| &tables[i]),
                match work {
                    Work::Governor(_) => idx.map(|i| &govs[i]),
                    _ => None,
                },
            );
            if let (Work::Keyed(_), Some(i)) = (work, idx) {
                tables[i].counted += o.total - o.bad;
            }
            eprintln!(
                "keyed: {} x{}: {:.1} M grants/s",
                o.name(),
                workers,
                o.rate() / 1e6
            );
            outs.push(o);
        }
    }

    // Checks.
    let mut failures = Vec::new();
    let mut checks = Vec::new();
    for t in &tables {
        let n = t.keys.len();
        let s = keyed_stats(t.k);
        let (sum, missing) = granted_sum(t);
        let exact = s.evictions == 0;
        checks.push(format!(
            "| {} | {:.2} | {} / {} | {} / {} | {} | {} | {} | {} |",
            thousands(n as u64),
            t.fill_s,
            thousands(t.fill_live),
            t.fill_evictions,
            thousands(s.live_keys),
            thousands(s.evictions),
            thousands(missing),
            thousands(t.counted),
            thousands(sum),
            if exact {
                if sum == t.counted {
                    "equal"
                } else {
                    "**differ**"
                }
            } else {
                "(keys dropped: their counters restarted)"
            }
        ));
        if n <= 1_000 && (s.live_keys != n as u64 || s.evictions != 0 || missing != 0) {
            failures.push(format!(
                "{n} keys: live {} evictions {} missing {missing}",
                s.live_keys, s.evictions
            ));
        }
        if (exact && sum != t.counted) || sum > t.counted {
            failures.push(format!(
                "{n} keys: the keys' granted counters sum to {sum}, the callers counted {}",
                t.counted
            ));
        }
    }
    for o in &outs {
        if o.bad > 0 {
            failures.push(format!(
                "{} x{}: {} calls not granted (statuses {:?})",
                o.name(),
                o.workers,
                o.bad,
                o.bad_statuses
            ));
        }
        if !o.all_exited {
            failures.push(format!(
                "{} x{}: a child did not exit cleanly",
                o.name(),
                o.workers
            ));
        }
    }
    for t in &tables {
        keyed_free(t.k);
    }

    // The report.
    let rows = ROWS.with(|r| r.take());
    let p = |name: &str| ns(&out, name).map(|e| e.0);
    let floor = p("floor_clock_cas");
    let unkeyed_bare = p("mpt_has_fuel_bare");
    let unkeyed_defaults = p("mpt_has_fuel_defaults");
    print!("{heading}");
    if run_fast {
        println!("### Fast path: ns per call, one thread, never denied");
        println!();
        println!(
            "Criterion's slope estimate with its 95% CI, and the median of the samples. \
         `x unkeyed`: against `mpt_has_fuel` with the same options (bare or defaults), \
         for governor against its own unkeyed `check()`; `x floor`: against `floor_clock_cas`."
        );
        println!();
        println!("| row | what | ns/call | 95% CI | median ns | x unkeyed | x floor | notes |");
        println!("|---|---|---:|---|---:|---:|---:|---|");
        for r in &rows {
            let e = ns(&out, &r.name);
            let med = estimate(&out, GROUP, &r.name, "median")
                .map_or("?".into(), |m| format!("{:.1}", m.0));
            let (pt, ci) = e.map_or(("?".into(), "?".into()), |(p, lo, hi)| {
                (format!("{p:.1}"), format!("{lo:.1}..{hi:.1}"))
            });
            let base = if r.name.starts_with("governor_keyed") {
                p("governor_direct")
            } else if r.name.starts_with("mpt_keyed_has_fuel_defaults") {
                unkeyed_defaults
            } else if r.name.starts_with("mpt_keyed") {
                unkeyed_bare
            } else {
                None
            };
            let x_unkeyed = if base.is_some() {
                ratio(e.map(|e| e.0), base)
            } else {
                "-".into()
            };
            println!(
                "| `{}` | {} | {pt} | {ci} | {med} | {x_unkeyed} | {} | {} |",
                r.name,
                r.what,
                ratio(e.map(|e| e.0), floor),
                r.note
            );
        }
        println!();
        println!("mp_throttle against governor, keyed, same keys in the same order:");
        println!();
        println!(
            "| live keys | `mpt_keyed_has_fuel` ns | governor `check_key` ns | mpt / governor | mpt keyed / mpt unkeyed |"
        );
        println!("|---:|---:|---:|---:|---:|");
        for n in KEY_COUNTS {
            let m = p(&format!("mpt_keyed_has_fuel_{}", label(n)));
            let g = p(&format!("governor_keyed_{}", label(n)));
            let f = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.1}"));
            println!(
                "| {} | {} | {} | {} | {} |",
                thousands(n as u64),
                f(m),
                f(g),
                ratio(m, g),
                ratio(m, unkeyed_bare)
            );
        }
        println!();
        let x1k = match (p("mpt_keyed_has_fuel_1k"), unkeyed_bare) {
            (Some(k), Some(u)) if u > 0.0 => Some(k / u),
            _ => None,
        };
        match x1k {
            Some(x) => println!(
                "Goal (keyed fast path with 1,000 keys at most {GOAL_X}x the unkeyed fast path): \
             {x:.2}x: **{}**.",
                if x <= GOAL_X { "met" } else { "not met" }
            ),
            None => {
                println!("Goal (keyed 1,000 keys <= {GOAL_X}x unkeyed): not measured in this run.")
            }
        }
        println!();
        if let Some(pr) = &pair {
            let q = |v: &[f64], f: f64| common::quantile(v, f);
            let (u0, k0) = (q(&pr.unkeyed, 0.0), q(&pr.keyed, 0.0));
            let (u5, k5) = (q(&pr.unkeyed, 0.5), q(&pr.keyed, 0.5));
            println!(
                "The same two calls alternating, {} rounds of {} calls each (unkeyed, then keyed \
                 over 1,000 keys): fastest round {u0:.1} vs {k0:.1} ns, **{:.2}x**; median \
                 round {u5:.1} vs {k5:.1} ns, {:.2}x.",
                pr.unkeyed.len(),
                thousands(pr.calls as u64),
                k0 / u0,
                k5 / u5
            );
            println!();
        }
    }

    if run_agg {
        println!("### Aggregate: grants per second from N workers ({phase} s each)");
        println!();
        println!(
            "`x single key`: against the plain throttle (one schedule word) with the same number \
         of workers, in this run; `x its 1 worker`: against the same workload with one \
         worker (how it scales); `CPUs used`: the workers' CPU time over the wall time (at most the number of CPUs; \
         lower when the host or other processes took a CPU); worker i starts its cycle at key i x keys / N."
        );
        println!();
        println!(
            "| workload | workers | grants/s total | ns per grant (aggregate) | x single key | x its 1 worker | per-worker min..max share | CPUs used |"
        );
        println!("|---|---:|---:|---:|---:|---:|---|---:|");
        let single = |w: usize| {
            outs.iter()
                .find(|o| o.work == Work::Plain && o.workers == w)
                .map(Outcome::rate)
        };
        for o in &outs {
            let share = |c: u64| 100.0 * c as f64 / o.total.max(1) as f64;
            let x = if o.work == Work::Plain {
                "1.00".into()
            } else {
                ratio(Some(o.rate()), single(o.workers))
            };
            let alone = outs
                .iter()
                .find(|a| a.work == o.work && a.via == o.via && a.workers == 1)
                .map(Outcome::rate);
            println!(
                "| {} | {} | {:.2} M | {:.1} | {} | {} | {:.1}..{:.1} % | {:.2} |",
                o.name(),
                o.workers,
                o.rate() / 1e6,
                1e9 / o.rate().max(1e-9),
                x,
                ratio(Some(o.rate()), alone),
                share(o.min),
                share(o.max),
                o.cpus
            );
        }
        println!();
        for n in [1_000, 1_000_000] {
            let xs: Vec<String> = [2, 4, 8]
                .iter()
                .filter_map(|&w| {
                    let o = outs.iter().find(|o| {
                        o.work == Work::Keyed(n) && o.via == Via::Processes && o.workers == w
                    })?;
                    Some(format!("{:.2}x", o.rate() / single(w)?))
                })
                .collect();
            println!(
                "Keyed, {} keys, 2 / 4 / 8 processes against the single key: {}.",
                thousands(n as u64),
                xs.join(" / ")
            );
        }
        println!();
    }
    println!("Checks of the keyed tables (bare) after every run above:");
    println!();
    println!(
        "| keys | fill s | after the fill: live keys / dropped | at the end: live keys / dropped | keys not in the table at the end | grants counted by the callers | sum of the keys' `granted` | counters |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|");
    for c in &checks {
        println!("{c}");
    }
    println!();
    if failures.is_empty() {
        println!(
            "All checks passed: every call was granted; the tables of 1 and 1,000 keys hold \
             exactly their keys, and the keys' granted counters equal the grants counted \
             wherever no key was dropped."
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
