//! Chaos: no worker can wedge the others by dying (docs/design.md, "Sharing
//! between processes": "a process killed with SIGKILL at any instant —
//! inside `await_fuel` included — leaves every other process running at the
//! configured rate. If the process that called `start` dies, the others keep
//! being throttled.").
//!
//! `harness = false`, as tests/fork.rs: `main` runs each test
//! in turn on the main thread and prints `test <name> ... ok` / `FAILED`,
//! then `N passed, N failed`, and exits non-zero if any failed. Children call
//! only the library, report through a `MAP_SHARED` log and leave with
//! `_exit`. Every wait is bounded, and a watchdog thread kills every child
//! (and removes the names of named throttles) if a test overruns its bound.
//!
//! Every worker logs each call it makes into a shared log: which worker, its
//! kind, when it called, the grant time the library reported, when the call
//! returned, its timeout and its status. A worker marks "in a call" before
//! each call and clears the mark only after the log entry is written, so
//! after killing a worker the parent knows whether the kill landed inside a
//! call (between the call's start and its log entry): only such a kill can
//! take a unit of fuel to its grave (a reservation whose waiter died, or a
//! grant it never logged). Each test states its tolerance in these terms.
//!
//! The tests (a throttle of 200 per 1 s, T = 5 ms, unless said otherwise):
//!
//! - `sigkill_chaos_limit`, `sigkill_chaos_window`: 6 workers (2 waiting
//!   FOREVER, 2 with random timeouts of 1-50 ms, one polling `has_fuel`,
//!   one calling `await_fuel(0)`), forked from the process that made and
//!   started the throttle. For ~6.5 s the parent SIGKILLs a random worker
//!   after a random sleep of 0-30 ms and forks a replacement, at least 200
//!   times. Then `mpt_stop`. Asserted: grants logged =
//!   1 + floor(run / T) (the saturated schedule) to within
//!   `kills inside a call + 3` below and 1 above; the logged grants never
//!   come early (grant k no earlier than start + k*T), LIMIT's token bucket
//!   bound on every interval, WINDOW's max_n in every half-open window of
//!   1 s, no gap over 100 ms; every timed call returned within its timeout
//!   plus 50 ms and every granted call within 50 ms of its grant time; nobody
//!   saw KILLED or an error before the stop; after the stop every worker
//!   returns KILLED and exits within 1 s.
//! - `starter_killed_then_kill_from_another_process`,
//!   `starter_killed_then_stop_from_another_process`: a child calls
//!   `mpt_start` (so the monitor thread lives there) and then waits for fuel
//!   itself; 4 workers run; the starter is SIGKILLed. In the 2 s that
//!   follow the workers get 400 grants (-3, +1); then a process forked after
//!   the death calls `mpt_kill` (or `mpt_stop`) and every worker returns
//!   KILLED within 200 ms.
//! - `named_creator_killed_then_chaos`: a child creates a named throttle,
//!   starts it and waits for fuel; 4 workers forked from the parent (which
//!   never had a handle) open it by name; the creator is SIGKILLed; the
//!   next 2 s hold 400 grants (-3, +1); then 3 s of SIGKILL chaos among the
//!   workers, each replacement opening the throttle by name again (kills
//!   land inside `mpt_throttle_open` too); then the parent opens it by name
//!   and stops it: every worker returns KILLED within 200 ms; the name is
//!   unlinked, and opening it then says NOT_FOUND.
//!
//! - `killed_inside_start_stop_blocks_nobody`: a child restarts the
//!   throttle in a loop and is SIGKILLed at a random instant, 100 times;
//!   while it is dead but unreaped, this process must be able to start or
//!   stop the throttle. Shows a library bug (see its doc comment).
//! - `threads_restarting_one_handle_never_wedge`: 3 threads of this process
//!   start, stop, kill and wait on one handle for 30 ms, then stop; every
//!   call must be over within 1 s (150 rounds). Shows a library bug (see the
//!   test's doc comment); it fails until that is fixed.
//!
//! The random choices come from a seed printed under each test; set
//! `MPT_CHAOS_SEED` to replay one. Run one test, or those whose name
//! contains a word: `cargo test --test chaos -- window`.

mod common;

use common::{
    H, KILLED, Kids, MS, NO_FUEL, OK, Overrun, Owned, Rng, SEC, Shm, TIMEOUT, Test, TestResult,
    check, getpid, kill_live, max_in_window, ms, note, now, seed, sleep_ns, sleep_until, wait_for,
};
use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::options::{MPT_OPTIONS_VERSION, MptHardcap, MptOptions, mpt_options_init};
use mp_throttle::ffi::stats::{MptRate, mpt_latest};
use mp_throttle::ffi::throttle::{
    MPT_FOREVER, MptSummary, mpt_throttle_create_named, mpt_throttle_new, mpt_throttle_open,
    mpt_throttle_unlink,
};
use std::ffi::{CStr, CString};
use std::sync::Mutex;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::SeqCst;

/// The throttle of every test: MAX_N per PER (T = 5 ms).
const MAX_N: i64 = 200;
const PER: i64 = SEC;

/// How late a call may return after its deadline (its grant time, or its
/// call time + timeout): generous, for this noisy 2-core VM.
const SLACK: i64 = 50 * MS;
/// A FOREVER waiter's grant must come within this of its call: a wedge
/// would show as seconds.
const FOREVER_BOUND: i64 = 250 * MS;
/// The largest gap between consecutive grants of a saturated run.
const GAP_BOUND: i64 = 100 * MS;
/// How soon every waiter must return KILLED after `mpt_kill` / `mpt_stop`.
const KILLED_BOUND: i64 = 200 * MS;

// ---------------------------------------------------------------- time, randomness

fn sleep_ms(ms: i64) {
    sleep_ns(ms * MS);
}

// ---------------------------------------------------------------- the C API

/// The calls only this file makes (common.rs has the others).
impl H {
    fn latest(self) -> (MptStatus, MptRate) {
        let mut r = MptRate::default();
        // SAFETY: a live handle; `r` is valid for writing.
        let st = unsafe { mpt_latest(self.0, &mut r) };
        (st, r)
    }

    /// Opens the named throttle `name` (default waiting options).
    fn open(name: &CStr) -> Result<H, MptStatus> {
        let mut p = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated, `p` valid for writing.
        let st = unsafe { mpt_throttle_open(name.as_ptr(), std::ptr::null(), &mut p) };
        if st == MptStatus::Ok && !p.is_null() {
            Ok(H(p))
        } else {
            Err(st)
        }
    }

    /// Creates (or opens, same configuration) the named throttle `name`.
    fn create_named(name: &CStr, o: &MptOptions) -> Result<H, MptStatus> {
        let mut p = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated, `o` a valid options struct, `p`
        // valid for writing.
        let st = unsafe {
            mpt_throttle_create_named(name.as_ptr(), MAX_N as u64, PER as f64 / 1e9, o, &mut p)
        };
        if st == MptStatus::Ok && !p.is_null() {
            Ok(H(p))
        } else {
            Err(st)
        }
    }
}

fn unlink(name: &CStr) -> MptStatus {
    // SAFETY: `name` is NUL-terminated.
    unsafe { mpt_throttle_unlink(name.as_ptr()) }
}

fn options(hardcap: MptHardcap) -> MptOptions {
    let mut o = MptOptions::default();
    // SAFETY: `o` is valid for writing.
    let st = unsafe { mpt_options_init(&mut o, MPT_OPTIONS_VERSION) };
    assert_eq!(st, MptStatus::Ok);
    o.hardcap = hardcap as u32;
    o
}

fn throttle(hardcap: MptHardcap) -> Result<Owned, String> {
    let mut p = std::ptr::null_mut();
    let o = options(hardcap);
    // SAFETY: `o` is a valid options struct, `p` valid for writing.
    let st = unsafe { mpt_throttle_new(MAX_N as u64, PER as f64 / 1e9, &o, &mut p) };
    check!(
        st == MptStatus::Ok && !p.is_null(),
        "mpt_throttle_new: {st:?}"
    );
    Ok(Owned(H(p)))
}

/// Names of named throttles this binary made: the watchdog removes them.
static NAMES: Mutex<Vec<CString>> = Mutex::new(Vec::new());

/// A fresh name unique to this process, registered for the watchdog.
fn fresh_name(what: &str) -> CString {
    let name = CString::new(format!(
        "chaos_{}_{}_{}",
        getpid(),
        what,
        now() % 1_000_000_007
    ))
    .expect("no NUL in the name");
    NAMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(name.clone());
    name
}

/// Removes a name when dropped (also when a test fails).
struct Unlink(CString);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = unlink(&self.0);
        NAMES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| n != &self.0);
    }
}

// ---------------------------------------------------------------- the log

/// Words of the log's header.
const NEXT: usize = 0; // next record index
const OVERFLOW: usize = 1; // 1 if a record did not fit
const CALLS: usize = 2; // calls made by every worker
const FLAG: usize = 3; // test-specific: "started", "created"
const KILL_AT: usize = 4; // test-specific: when a process called kill/stop
const KILL_STATUS: usize = 5; // its status (+ 1000 so that 0 means "not yet")
const KILL_TOTAL: usize = 6; // the total its mpt_stop reported
const BEFORE_START: usize = 7; // test-specific: just before mpt_start
/// Per worker slot: [in a call since (0: not), pid, opened (named tests)].
const SLOT_BASE: usize = 8;
const SLOT_WORDS: usize = 3;
const MAX_SLOTS: usize = 16;
const REC_BASE: usize = SLOT_BASE + MAX_SLOTS * SLOT_WORDS;
/// A record: [valid, slot, kind, call, grant, return, timeout, status].
const REC_WORDS: usize = 8;
const CAP: usize = 100_000;

fn log_shm() -> Shm {
    Shm::new(REC_BASE + CAP * REC_WORDS)
}

fn in_call(slot: usize) -> usize {
    SLOT_BASE + slot * SLOT_WORDS
}

fn opened(slot: usize) -> usize {
    SLOT_BASE + slot * SLOT_WORDS + 2
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `mpt_await_fuel(MPT_FOREVER)`.
    Forever = 0,
    /// `mpt_await_fuel` with a random timeout of 1 to 50 ms.
    Timed = 1,
    /// `mpt_has_fuel`, 1 ms apart while the tank is empty.
    Poll = 2,
    /// `mpt_await_fuel(0)`, 1 ms apart while the tank is empty.
    Zero = 3,
}

impl Kind {
    fn from(v: i64) -> Kind {
        match v {
            0 => Kind::Forever,
            1 => Kind::Timed,
            2 => Kind::Poll,
            _ => Kind::Zero,
        }
    }
}

/// The kinds of the 6 chaos workers, by slot.
const MIX: [Kind; 6] = [
    Kind::Forever,
    Kind::Forever,
    Kind::Timed,
    Kind::Timed,
    Kind::Poll,
    Kind::Zero,
];

#[derive(Clone, Copy, Debug)]
struct Rec {
    slot: usize,
    kind: Kind,
    call: i64,
    grant: i64,
    ret: i64,
    /// ns; -1 = FOREVER, -2 = has_fuel.
    timeout: i64,
    status: i64,
}

fn push(shm: &Shm, r: &Rec) {
    let i = shm.at(NEXT).fetch_add(1, SeqCst) as usize;
    if i >= CAP {
        shm.set(OVERFLOW, 1);
        return;
    }
    let b = REC_BASE + i * REC_WORDS;
    let words = [
        r.slot as i64,
        r.kind as i64,
        r.call,
        r.grant,
        r.ret,
        r.timeout,
        r.status,
    ];
    for (j, w) in words.iter().enumerate() {
        shm.set(b + 1 + j, *w);
    }
    shm.set(b, 1); // valid: written last
}

/// Every complete record (a worker killed while writing one leaves it
/// invalid: it is skipped, and that kill counts as inside a call).
fn records(shm: &Shm) -> Result<Vec<Rec>, String> {
    check!(shm.get(OVERFLOW) == 0, "the log overflowed ({CAP} records)");
    let n = (shm.get(NEXT) as usize).min(CAP);
    Ok((0..n)
        .map(|i| REC_BASE + i * REC_WORDS)
        .filter(|&b| shm.get(b) == 1)
        .map(|b| Rec {
            slot: shm.get(b + 1) as usize,
            kind: Kind::from(shm.get(b + 2)),
            call: shm.get(b + 3),
            grant: shm.get(b + 4),
            ret: shm.get(b + 5),
            timeout: shm.get(b + 6),
            status: shm.get(b + 7),
        })
        .collect())
}

/// A worker: calls the library in a loop as `kind` says and logs every
/// call (Poll and Zero: every grant, and every call slower than 2 ms); ends
/// with 0 on KILLED, with 10 + status on anything unexpected.
fn worker(h: H, shm: &Shm, slot: usize, kind: Kind, seed: u64) -> i32 {
    let mut rng = Rng::new(seed);
    loop {
        let (timeout_s, timeout) = match kind {
            Kind::Forever => (MPT_FOREVER, -1),
            Kind::Timed => {
                let t = (1 + rng.below(50) as i64) * MS;
                (t as f64 / 1e9, t)
            }
            Kind::Poll => (0.0, -2),
            Kind::Zero => (0.0, 0),
        };
        let call = now();
        shm.set(in_call(slot), call);
        let (st, grant) = if kind == Kind::Poll {
            h.has_fuel()
        } else {
            h.await_fuel(timeout_s)
        };
        let ret = now();
        shm.at(CALLS).fetch_add(1, SeqCst);
        let status = st as i64;
        let quiet = matches!(kind, Kind::Poll | Kind::Zero)
            && matches!(status, NO_FUEL | TIMEOUT)
            && ret - call < 2 * MS;
        if !quiet {
            push(
                shm,
                &Rec {
                    slot,
                    kind,
                    call,
                    grant: if status == OK { grant } else { 0 },
                    ret,
                    timeout,
                    status,
                },
            );
        }
        shm.set(in_call(slot), 0);
        match st {
            MptStatus::Ok => {}
            MptStatus::Killed => return 0,
            MptStatus::Timeout if kind != Kind::Poll => {
                if kind == Kind::Zero {
                    sleep_ms(1);
                }
            }
            MptStatus::NoFuel if kind == Kind::Poll => sleep_ms(1),
            _ => return 10 + st as i32,
        }
    }
}

/// A worker on the named throttle `name`, opened in this process.
fn named_worker(name: &CStr, shm: &Shm, slot: usize, kind: Kind, seed: u64) -> i32 {
    let h = match H::open(name) {
        Ok(h) => h,
        Err(st) => return 40 + st as i32,
    };
    shm.set(opened(slot), 1);
    let code = worker(h, shm, slot, kind, seed);
    if h.free() != MptStatus::Ok && code == 0 {
        return 60;
    }
    code
}

// ---------------------------------------------------------------- checks

/// `floor(d / T)`, exact.
fn slots(d: i64) -> i64 {
    (i128::from(d.max(0)) * i128::from(MAX_N) / i128::from(PER)) as i64
}

/// `ceil(k * T)`: the offset of unit k from the start.
fn offset(k: i64) -> i64 {
    ((i128::from(k) * i128::from(PER) + i128::from(MAX_N) - 1) / i128::from(MAX_N)) as i64
}

/// What the records of a run say, once each has passed the per-call checks.
#[derive(Default)]
struct Summary {
    /// Sorted grant times.
    grants: Vec<i64>,
    timeouts: usize,
    killed: usize,
    /// Largest return - grant.
    late_return: i64,
    /// Largest return - (call + timeout) of a timed call.
    overshoot: i64,
    /// Largest grant - call of a FOREVER waiter.
    forever_wait: i64,
}

/// The per-call checks: statuses, deadlines; KILLED only from `killed_from`.
fn check_records(recs: &[Rec], killed_from: i64) -> Result<Summary, String> {
    let mut s = Summary {
        late_return: i64::MIN,
        overshoot: i64::MIN,
        ..Summary::default()
    };
    for r in recs {
        let what = format!("{r:?}");
        match (r.kind, r.status) {
            (_, OK) => {
                check!(
                    r.grant >= r.call && r.grant <= r.ret,
                    "grant time outside its call: {what}"
                );
                check!(
                    r.ret - r.grant <= SLACK,
                    "returned {:.1} ms after its grant time: {what}",
                    ms(r.ret - r.grant)
                );
                s.late_return = s.late_return.max(r.ret - r.grant);
                if r.timeout >= 0 {
                    check!(
                        r.grant - r.call <= r.timeout + SLACK,
                        "granted {:.1} ms after the call, timeout {:.1} ms: {what}",
                        ms(r.grant - r.call),
                        ms(r.timeout)
                    );
                }
                if r.kind == Kind::Forever {
                    s.forever_wait = s.forever_wait.max(r.grant - r.call);
                    check!(
                        r.grant - r.call <= FOREVER_BOUND,
                        "a FOREVER waiter waited {:.1} ms for its grant: {what}",
                        ms(r.grant - r.call)
                    );
                }
                s.grants.push(r.grant);
            }
            (Kind::Timed | Kind::Zero, TIMEOUT) => s.timeouts += 1,
            (Kind::Poll, NO_FUEL) => {}
            (_, KILLED) => {
                check!(
                    r.ret >= killed_from,
                    "KILLED {:.1} ms before anyone set the kill flag: {what}",
                    ms(killed_from - r.ret)
                );
                s.killed += 1;
            }
            _ => {
                return Err(format!("unexpected status {}: {what}", r.status));
            }
        }
        if r.timeout >= 0 {
            let over = r.ret - r.call - r.timeout;
            s.overshoot = s.overshoot.max(over);
            check!(
                over <= SLACK,
                "returned {:.1} ms after its deadline (timeout {:.1} ms): {what}",
                ms(over),
                ms(r.timeout)
            );
        }
        if r.kind == Kind::Poll {
            check!(
                r.ret - r.call <= SLACK,
                "has_fuel took {:.1} ms: {what}",
                ms(r.ret - r.call)
            );
        }
    }
    s.grants.sort_unstable();
    Ok(s)
}

/// The schedule checks on the (sorted) grants of a run that started in
/// `[t_a, t_b]`: never early; LIMIT's token bucket; WINDOW's window.
fn check_schedule(g: &[i64], hc: MptHardcap, t_a: i64) -> TestResult {
    for (k, &gk) in g.iter().enumerate() {
        let earliest = t_a + offset(k as i64);
        check!(
            gk >= earliest,
            "grant {k} at +{:.3} ms is {:.3} ms early (unit k is due at start + k*T at the \
             earliest)",
            ms(gk - t_a),
            ms(earliest - gk)
        );
    }
    match hc {
        MptHardcap::Window => {
            let most = max_in_window(g, PER);
            check!(
                most <= MAX_N as usize,
                "WINDOW: {most} grants in one half-open window of 1 s (max_n {MAX_N})"
            );
        }
        MptHardcap::Limit => {
            // A token bucket of capacity max_n: any closed interval [a, b]
            // holds at most max_n + floor((b - a) / T) grants.
            for i in 0..g.len() {
                for j in i..g.len() {
                    let allowed = MAX_N + slots(g[j] - g[i]);
                    check!(
                        (j - i + 1) as i64 <= allowed,
                        "LIMIT: {} grants in [{:.3}, {:.3}] ms, a token bucket allows {allowed}",
                        j - i + 1,
                        ms(g[i] - t_a),
                        ms(g[j] - t_a)
                    );
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn max_gap(g: &[i64]) -> i64 {
    g.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
}

fn count_in(g: &[i64], from: i64, to: i64) -> i64 {
    g.iter().filter(|&&x| x >= from && x < to).count() as i64
}

// ---------------------------------------------------------------- chaos

/// Kills a random worker of `slots` after a random sleep of 0-30 ms and
/// forks a replacement (made by `respawn`), until `until`. Returns
/// (kills, kills that landed inside a call).
fn chaos(
    kids: &mut Kids,
    shm: &Shm,
    pids: &mut [libc::pid_t],
    first_slot: usize,
    until: i64,
    rng: &mut Rng,
    mut respawn: impl FnMut(&mut Kids, usize, u64) -> libc::pid_t,
) -> (i64, i64) {
    let (mut kills, mut inside) = (0, 0);
    while now() < until {
        sleep_ns(rng.below(30 * MS as u64) as i64);
        let i = rng.below(pids.len() as u64) as usize;
        let slot = first_slot + i;
        kids.kill(pids[i]);
        kills += 1;
        // Dead and reaped: the mark says whether it died inside a call.
        if shm.get(in_call(slot)) != 0 {
            inside += 1;
        }
        shm.set(in_call(slot), 0);
        shm.set(opened(slot), 0);
        pids[i] = respawn(kids, slot, rng.next());
    }
    (kills, inside)
}

/// The SIGKILL chaos test for one hardcap (see the file's doc).
fn sigkill_chaos(hc: MptHardcap, run_ms: i64) -> TestResult {
    let seed = seed();
    note!("seed {seed} (MPT_CHAOS_SEED)");
    let mut rng = Rng::new(seed);
    let t = throttle(hc)?;
    let h = t.0;
    let shm = log_shm();
    let mut kids = Kids::polling_every(200_000);
    let spawn = |kids: &mut Kids, slot: usize, seed: u64| {
        let shm = &shm;
        kids.spawn(move || worker(h, shm, slot, MIX[slot], seed))
    };
    let mut pids: Vec<_> = (0..MIX.len())
        .map(|slot| spawn(&mut kids, slot, rng.next()))
        .collect();
    sleep_ms(50); // the workers wait for the start
    let t_a = now();
    check!(h.start() == MptStatus::Ok, "start");
    let t_b = now();
    let (kills, inside) = chaos(
        &mut kids,
        &shm,
        &mut pids,
        0,
        t_b + run_ms * MS,
        &mut rng,
        spawn,
    );
    let t_c = now();
    let (st, summary) = h.stop();
    let t_d = now();
    check!(st == MptStatus::Ok, "stop: {st:?}");
    let all_gone = kids.wait_all_ok(5 * SEC)?;
    let recs = records(&shm)?;
    let s = check_records(&recs, t_c)?;
    let g = &s.grants;
    let n = g.len() as i64;
    // The saturated schedule from an empty tank: 1 + floor(run / T) units.
    let lo = 1 + slots(t_c - t_b) - inside - 3;
    let hi = 1 + slots(t_d - t_a);
    note!(
        "{kills} SIGKILLs in {:.2} s ({inside} inside a call), {} calls; {n} grants logged, \
         expected {}..={} for the run (accepted {lo}..={hi}: the run's units less one per kill \
         inside a call, less 3); mpt_stop counted {} emissions",
        ms(t_c - t_b) / 1e3,
        shm.get(CALLS),
        1 + slots(t_c - t_b),
        hi,
        summary.total
    );
    note!(
        "rate {:.1}/s (configured {MAX_N}/s); largest gap {:.1} ms; most in a 1 s window {}",
        n as f64 / ((t_c - t_b) as f64 / 1e9),
        ms(max_gap(g)),
        max_in_window(g, PER)
    );
    note!(
        "latest return after a grant {:.2} ms; worst timed call {:+.2} ms past its deadline; \
         longest FOREVER wait for a grant {:.1} ms; {} timeouts",
        ms(s.late_return),
        ms(s.overshoot),
        ms(s.forever_wait),
        s.timeouts
    );
    note!(
        "mpt_stop took {:.2} ms; every worker returned KILLED and exited {:.1} ms after it",
        ms(t_d - t_c),
        ms(all_gone - t_c)
    );
    check!(kills >= 200, "only {kills} kills");
    check!(
        (lo..=hi).contains(&n),
        "{n} grants logged, expected {lo}..={hi}"
    );
    check!(
        (n as u64..=hi as u64).contains(&summary.total),
        "mpt_stop counted {} emissions; {n} grants were logged and at most {hi} units were due",
        summary.total
    );
    check_schedule(g, hc, t_a)?;
    check!(
        max_gap(g) <= GAP_BOUND,
        "a gap of {:.1} ms between grants",
        ms(max_gap(g))
    );
    check!(
        all_gone - t_d <= SEC,
        "the workers took {:.1} ms to finish after mpt_stop",
        ms(all_gone - t_c)
    );
    // One KILLED per worker alive at the stop (a worker forked too late to
    // log it cannot be, the stop comes after the last fork).
    check!(
        s.killed == MIX.len(),
        "{} workers returned KILLED, {} were alive at the stop",
        s.killed,
        MIX.len()
    );
    Ok(())
}

/// After a kill flag set at `kill_at`, every worker's last record is KILLED
/// within `KILLED_BOUND`. Returns the largest latency.
fn killed_promptly(recs: &[Rec], slots_: &[usize], kill_at: i64) -> Result<i64, String> {
    let mut worst = 0;
    for &slot in slots_ {
        let last = recs.iter().filter(|r| r.slot == slot).max_by_key(|r| r.ret);
        let Some(last) = last else {
            return Err(format!("worker {slot} logged nothing"));
        };
        check!(
            last.status == KILLED,
            "worker {slot}'s last call returned {}, not KILLED: {last:?}",
            last.status
        );
        let lat = last.ret - kill_at;
        worst = worst.max(lat);
        check!(
            lat <= KILLED_BOUND,
            "worker {slot} returned KILLED {:.1} ms after the kill flag was set",
            ms(lat)
        );
    }
    Ok(worst)
}

/// The process that called `mpt_start` (and runs the monitor thread) dies;
/// the workers are still throttled; another process sets the kill flag by
/// `mpt_kill` (`stop` false) or `mpt_stop` (`stop` true).
fn starter_killed(stop: bool) -> TestResult {
    const WORKERS: [Kind; 4] = [Kind::Forever, Kind::Forever, Kind::Timed, Kind::Timed];
    let seed = seed();
    let mut rng = Rng::new(seed);
    let t = throttle(MptHardcap::Limit)?;
    let h = t.0;
    let shm = log_shm();
    let mut kids = Kids::polling_every(200_000);
    // Slot 0 is the starter, 1..=4 the workers.
    for (i, kind) in WORKERS.into_iter().enumerate() {
        let shm = &shm;
        let s = rng.next();
        kids.spawn(move || worker(h, shm, i + 1, kind, s));
    }
    let starter = {
        let shm = &shm;
        let s = rng.next();
        kids.spawn(move || {
            shm.set(BEFORE_START, now());
            if h.start() != MptStatus::Ok {
                return 20;
            }
            shm.set(FLAG, now());
            worker(h, shm, 0, Kind::Forever, s)
        })
    };
    check!(
        wait_for(5 * SEC, || shm.get(FLAG) != 0),
        "the starter did not start the throttle"
    );
    let t_start = shm.get(BEFORE_START);
    sleep_ms(1000);
    let (st_before, before) = h.latest();
    let t_kill = now();
    kids.kill(starter);
    let died_inside = shm.get(in_call(0)) != 0;
    sleep_until(t_kill + 2100 * MS);
    let (st_after, after) = h.latest();
    // Another process, forked after the death, ends it all.
    let killer = {
        let shm = &shm;
        kids.spawn(move || {
            let t = now();
            shm.set(KILL_AT, t);
            let st = if stop {
                h.stop()
            } else {
                (h.kill(), MptSummary::default())
            };
            shm.set(KILL_TOTAL, st.1.total as i64);
            shm.set(KILL_STATUS, 1000 + st.0 as i64);
            0
        })
    };
    kids.wait_ok(killer, 5 * SEC)?;
    let all_gone = kids.wait_all_ok(5 * SEC)?;
    let kill_at = shm.get(KILL_AT);
    check!(
        shm.get(KILL_STATUS) == 1000,
        "{} from another process: status {}",
        if stop { "mpt_stop" } else { "mpt_kill" },
        shm.get(KILL_STATUS) - 1000
    );
    let recs = records(&shm)?;
    let s = check_records(&recs, kill_at)?;
    let g = &s.grants;
    check_schedule(g, MptHardcap::Limit, t_start)?;
    let n = count_in(g, t_kill + 50 * MS, t_kill + 2050 * MS);
    let worst = killed_promptly(&recs, &[1, 2, 3, 4], kill_at)?;
    note!(
        "starter killed {:.0} ms after its start ({}inside await_fuel); {n} grants in the 2 s \
         from 50 ms after its death (expected {}, accepted {}..={})",
        ms(t_kill - t_start),
        if died_inside { "" } else { "not " },
        slots(2 * SEC),
        slots(2 * SEC) - 3,
        slots(2 * SEC) + 1
    );
    note!(
        "{} from a process forked after the death: every worker returned KILLED within {:.2} \
         ms, all exited {:.1} ms after it",
        if stop { "mpt_stop" } else { "mpt_kill" },
        ms(worst),
        ms(all_gone - kill_at)
    );
    note!(
        "mpt_latest: {st_before:?} {:.0}/s with the starter alive; {st_after:?} {:.0}/s 2.1 s \
         after its death",
        before.per_second,
        after.per_second
    );
    check!(
        (slots(2 * SEC) - 3..=slots(2 * SEC) + 1).contains(&n),
        "{n} grants in the 2 s after the starter died, expected {}",
        slots(2 * SEC)
    );
    check!(
        max_gap(&g[g.partition_point(|&x| x < t_kill)..]) <= GAP_BOUND,
        "a gap of {:.1} ms after the starter died",
        ms(max_gap(&g[g.partition_point(|&x| x < t_kill)..]))
    );
    if stop {
        check!(
            !h.is_running(),
            "still running after mpt_stop from another process"
        );
        check!(
            shm.get(KILL_TOTAL) >= g.len() as i64,
            "mpt_stop counted {} emissions, {} grants were logged",
            shm.get(KILL_TOTAL),
            g.len()
        );
        check!(
            h.stop().0 == MptStatus::WrongState,
            "a second stop is not WRONG_STATE"
        );
    } else {
        check!(
            h.is_running() && h.kill_flag(),
            "after mpt_kill from another process: running {}, kill flag {}",
            h.is_running(),
            h.kill_flag()
        );
        check!(h.stop().0 == MptStatus::Ok, "stop after the kill");
    }
    Ok(())
}

/// A named throttle whose creator (and starter) dies; then chaos among the
/// processes that opened it by name (see the file's doc).
fn named_creator_killed_then_chaos() -> TestResult {
    const WORKERS: [Kind; 4] = [Kind::Forever, Kind::Forever, Kind::Timed, Kind::Poll];
    let seed = seed();
    note!("seed {seed} (MPT_CHAOS_SEED)");
    let mut rng = Rng::new(seed);
    let name = fresh_name("named");
    let _unlink = Unlink(name.clone());
    let shm = log_shm();
    let mut kids = Kids::polling_every(200_000);
    let creator = {
        let (shm, name) = (&shm, &name);
        let s = rng.next();
        kids.spawn(move || {
            let h = match H::create_named(name, &options(MptHardcap::Limit)) {
                Ok(h) => h,
                Err(st) => return 20 + st as i32,
            };
            shm.set(BEFORE_START, now());
            if h.start() != MptStatus::Ok {
                return 30;
            }
            shm.set(FLAG, now());
            worker(h, shm, 0, Kind::Forever, s)
        })
    };
    check!(
        wait_for(5 * SEC, || shm.get(FLAG) != 0),
        "the creator did not create and start the throttle"
    );
    let t_start = shm.get(BEFORE_START);
    // Slots 1..=4: forked from this process, which has no handle: each
    // opens the throttle by name.
    let spawn = |kids: &mut Kids, slot: usize, seed: u64| {
        let (shm, name) = (&shm, &name);
        kids.spawn(move || named_worker(name, shm, slot, WORKERS[slot - 1], seed))
    };
    let mut pids: Vec<_> = (1..=WORKERS.len())
        .map(|slot| spawn(&mut kids, slot, rng.next()))
        .collect();
    check!(
        wait_for(5 * SEC, || (1..=WORKERS.len())
            .all(|s| shm.get(opened(s)) != 0)),
        "the workers could not open the throttle by name"
    );
    sleep_ms(800);
    let t_kill = now();
    kids.kill(creator);
    let died_inside = shm.get(in_call(0)) != 0;
    sleep_until(t_kill + 2100 * MS);
    // Chaos among the workers; each replacement opens the name again.
    let t_c0 = now();
    let (kills, inside) = chaos(
        &mut kids,
        &shm,
        &mut pids,
        1,
        t_c0 + 3000 * MS,
        &mut rng,
        spawn,
    );
    let t_c1 = now();
    sleep_ms(100);
    // The parent opens it by name and stops it.
    let hp = H::open(&name).map_err(|st| format!("the parent cannot open the name: {st:?}"))?;
    let kill_at = now();
    let (st, summary) = hp.stop();
    check!(
        st == MptStatus::Ok,
        "stop by a process that opened the name: {st:?}"
    );
    let all_gone = kids.wait_all_ok(5 * SEC)?;
    check!(hp.free() == MptStatus::Ok, "free");
    let recs = records(&shm)?;
    let s = check_records(&recs, kill_at)?;
    let g = &s.grants;
    check_schedule(g, MptHardcap::Limit, t_start)?;
    let n1 = count_in(g, t_kill + 50 * MS, t_kill + 2050 * MS);
    let n2 = count_in(g, t_c0, t_c1);
    let e2 = slots(t_c1 - t_c0);
    let worst = killed_promptly(&recs, &[1, 2, 3, 4], kill_at)?;
    note!(
        "creator killed ({}inside await_fuel); {n1} grants in the 2 s from 50 ms after its death \
         (expected {}, accepted {}..={})",
        if died_inside { "" } else { "not " },
        slots(2 * SEC),
        slots(2 * SEC) - 3,
        slots(2 * SEC) + 1
    );
    note!(
        "then {kills} SIGKILLs in {:.2} s ({inside} inside a call), replacements opening by \
         name: {n2} grants (expected {e2}, accepted {}..={})",
        ms(t_c1 - t_c0) / 1e3,
        e2 - inside - 3,
        e2 + 1
    );
    note!(
        "mpt_stop from the parent (opened by name): every worker returned KILLED within {:.2} \
         ms, all exited {:.1} ms after it; {} emissions counted, {} grants logged",
        ms(worst),
        ms(all_gone - kill_at),
        summary.total,
        g.len()
    );
    check!(
        (slots(2 * SEC) - 3..=slots(2 * SEC) + 1).contains(&n1),
        "{n1} grants in the 2 s after the creator died, expected {}",
        slots(2 * SEC)
    );
    check!(kills >= 80, "only {kills} kills");
    check!(
        (e2 - inside - 3..=e2 + 1).contains(&n2),
        "{n2} grants during the chaos, expected {e2} (less one per kill inside a call)"
    );
    check!(
        max_gap(&g[g.partition_point(|&x| x < t_kill)..]) <= GAP_BOUND,
        "a gap of {:.1} ms after the creator died",
        ms(max_gap(&g[g.partition_point(|&x| x < t_kill)..]))
    );
    check!(
        summary.total >= g.len() as u64,
        "mpt_stop counted {} emissions, {} grants were logged",
        summary.total,
        g.len()
    );
    // The name goes; the throttle with it (nobody holds it any more).
    check!(unlink(&name) == MptStatus::Ok, "unlink");
    check!(
        matches!(H::open(&name), Err(MptStatus::NotFound)),
        "the name can still be opened after unlink"
    );
    check!(
        unlink(&name) == MptStatus::NotFound,
        "a second unlink is not NOT_FOUND"
    );
    Ok(())
}

// ---------------------------------------------------------------- start / stop

/// A process SIGKILLed inside `mpt_start` or `mpt_stop` must not keep the
/// others from starting or stopping the throttle (docs/design.md, "When
/// things fail": a process that dies in the middle of start or stop is
/// detected by the next one). A child restarts the throttle in a loop
/// (as_monitor off, so nearly all its time is spent in the transitions); it
/// is killed at a random instant; while it is dead but not yet reaped
/// (every killed process is a zombie until its parent waits for it), this
/// process stops the throttle if it runs, else starts it. 100 kills.
///
/// It failed when `Throttle::transition` recovered a Starting / Stopping
/// state left by a dead process only if `kill(pid, 0)` said it was dead:
/// that is false for a zombie and for any later process that reuses the pid
/// (pid_max is 32768 here), so the survivors got WRONG_STATE ("process N is
/// starting or stopping this throttle right now") until the dead process
/// was reaped, and for good if its pid was reused. Hence the owner word
/// stores a pid and that process's start time.
fn killed_inside_start_stop_blocks_nobody() -> TestResult {
    const KILLS: usize = 100;
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut o = options(MptHardcap::Limit);
    o.as_monitor = 0;
    let mut p = std::ptr::null_mut();
    // SAFETY: `o` is a valid options struct, `p` valid for writing.
    let st = unsafe { mpt_throttle_new(MAX_N as u64, PER as f64 / 1e9, &o, &mut p) };
    check!(st == MptStatus::Ok, "mpt_throttle_new: {st:?}");
    let t = Owned(H(p));
    let h = t.0;
    let mut kids = Kids::polling_every(200_000);
    let (mut refused, mut first) = (0, String::new());
    for i in 0..KILLS {
        let pid = kids.spawn(move || {
            loop {
                let _ = h.start();
                let _ = h.stop();
            }
        });
        sleep_ns(rng.below(2 * MS as u64) as i64);
        // SAFETY: SIGKILL to our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Wait until it is dead, without reaping it.
        // SAFETY: a zeroed siginfo_t is valid; waitid only writes it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid for writing; WNOWAIT leaves the child
        // waitable.
        unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        let running = h.is_running();
        let st = if running { h.stop().0 } else { h.start() };
        if st != MptStatus::Ok {
            let msg = common::last_error();
            refused += 1;
            if first.is_empty() {
                first = format!(
                    "kill {i}: mpt_{} -> {st:?} \"{msg}\" (process {pid} is dead, not yet reaped)",
                    if running { "stop" } else { "start" }
                );
            }
        }
        kids.kill(pid); // reaps it
        // Once it is reaped, both work again.
        let st = if h.is_running() {
            h.stop().0
        } else {
            h.start()
        };
        check!(
            st == MptStatus::Ok,
            "kill {i}: start/stop after reaping the dead process: {st:?}"
        );
    }
    note!(
        "{refused} of {KILLS} SIGKILLs left the throttle impossible to start or stop while the \
         dead process was unreaped (seed {seed})"
    );
    if !first.is_empty() {
        note!("first: {first}");
    }
    check!(
        refused == 0,
        "{refused} of {KILLS} SIGKILLs in a start/stop loop left a dead process owning the \
         transition: {first}"
    );
    Ok(())
}

// ---------------------------------------------------------------- threads

/// Threads of one process start, stop, kill and wait on one handle for
/// 30 ms, then stop calling; every call must then be over within 1 s
/// (header: `mpt_start` "Blocking: never", `mpt_stop` "joins this process's
/// monitor thread (about a millisecond)"). 150 rounds (about 5 s), or until
/// the first stuck call.
///
/// Found by tests/c/fuzz_api.c; fails until fixed: `Throttle::start`
/// publishes the new run (Running, waiters woken) before it stores its
/// monitor thread in the handle's private slot, and `Throttle::stop`
/// publishes Stopped before it takes the slot. In between, another thread
/// of the same process can stop and start the throttle again and store the
/// monitor of the *new* run; the first thread then joins that monitor
/// (src/throttle.rs: start's `old.join()` "a finished run's monitor", or
/// stop's `thread.join()`), which ends only when the run ends: the call
/// blocks until some process stops the throttle, forever if none does.
fn threads_restarting_one_handle_never_wedge() -> TestResult {
    const THREADS: usize = 3;
    const ROUNDS: usize = 150;
    const ROUND_MS: i64 = 30;
    let names = ["", "mpt_start", "mpt_stop", "mpt_kill", "mpt_await_fuel"];
    let mut worst = 0;
    for round in 0..ROUNDS {
        let t = throttle(MptHardcap::Limit)?;
        let h = t.0;
        let go = std::sync::atomic::AtomicBool::new(true);
        // Per thread: the call it is in (0: none) and since when.
        let inside: Vec<(AtomicI64, AtomicI64)> = (0..THREADS)
            .map(|_| (AtomicI64::new(0), AtomicI64::new(0)))
            .collect();
        let longest = AtomicI64::new(0);
        let stuck = std::thread::scope(|s| {
            for (i, slot) in inside.iter().enumerate() {
                let (go, longest) = (&go, &longest);
                s.spawn(move || {
                    let mut rng = Rng::new(seed() ^ i as u64);
                    while go.load(SeqCst) {
                        let op = 1 + rng.below(4) as i64;
                        let t0 = now();
                        slot.1.store(t0, SeqCst);
                        slot.0.store(op, SeqCst);
                        let _ = match op {
                            1 => h.start(),
                            2 => h.stop().0,
                            3 => h.kill(),
                            _ => h.await_fuel(0.001).0,
                        };
                        slot.0.store(0, SeqCst);
                        longest.fetch_max(now() - t0, SeqCst);
                    }
                });
            }
            sleep_ms(ROUND_MS);
            go.store(false, SeqCst);
            let done = wait_for(SEC, || inside.iter().all(|x| x.0.load(SeqCst) == 0));
            let stuck: Vec<(i64, i64)> = inside
                .iter()
                .map(|x| (x.0.load(SeqCst), now() - x.1.load(SeqCst)))
                .filter(|x| x.0 != 0)
                .collect();
            // A stop ends the run whose monitor a stuck call joins.
            let released = done
                || wait_for(5 * SEC, || {
                    let _ = h.stop();
                    inside.iter().all(|x| x.0.load(SeqCst) == 0)
                });
            (stuck, released)
        });
        let (stuck, released) = stuck;
        worst = worst.max(longest.load(SeqCst));
        if let Some(&(op, for_ns)) = stuck.first() {
            return Err(format!(
                "round {round}: {} thread(s) still inside a call 1 s after the others stopped \
                 calling: {} for {:.0} ms (3 threads restarting one handle); a stop from this \
                 thread then {}",
                stuck.len(),
                names[op as usize],
                ms(for_ns),
                if released {
                    "released it"
                } else {
                    "did not release it"
                }
            ));
        }
    }
    note!(
        "{ROUNDS} rounds of {ROUND_MS} ms, no call stuck; the longest call took {:.1} ms",
        ms(worst)
    );
    Ok(())
}

// ---------------------------------------------------------------- the runner

/// What the watchdog does before it ends an overrunning binary: kills every
/// child and removes the names of named throttles.
fn watchdog_cleanup() {
    kill_live();
    if let Ok(names) = NAMES.try_lock() {
        for name in names.iter() {
            let _ = unlink(name);
        }
    }
}

fn main() {
    let tests: &[Test] = &[
        (
            "sigkill_chaos_limit",
            || sigkill_chaos(MptHardcap::Limit, 6500),
            30,
        ),
        (
            "sigkill_chaos_window",
            || sigkill_chaos(MptHardcap::Window, 6500),
            30,
        ),
        (
            "starter_killed_then_kill_from_another_process",
            || starter_killed(false),
            20,
        ),
        (
            "starter_killed_then_stop_from_another_process",
            || starter_killed(true),
            20,
        ),
        (
            "named_creator_killed_then_chaos",
            named_creator_killed_then_chaos,
            30,
        ),
        (
            "killed_inside_start_stop_blocks_nobody",
            killed_inside_start_stop_blocks_nobody,
            30,
        ),
        (
            "threads_restarting_one_handle_never_wedge",
            threads_restarting_one_handle_never_wedge,
            40,
        ),
    ];
    common::run(
        tests,
        Overrun {
            cleanup: watchdog_cleanup,
            done: "; children killed",
        },
        || {},
    );
}
