//! Named throttles (docs/design.md, "Sharing between processes"; the issue
//! "Beyond mp_throttle: named throttles for unrelated processes"): a
//! throttle created under a name is opened by that name from any process of
//! the same user, and opening refuses anything foreign, truncated or corrupt
//! with a clear error, never a crash or a hang.
//!
//! `harness = false`: tests that `fork()` run one at a time on
//! the main thread. Children call only the library, report through a
//! `MAP_SHARED` mapping or their exit code and leave with `_exit`. "Unrelated"
//! processes are this binary run again (`--child MODE ...`): they inherit no
//! mapping, only the name. Every wait is bounded and a watchdog ends the
//! binary if a test overruns its bound.
//!
//! The named objects are `/dev/shm/mp_throttle.<name>`; each test uses names
//! with this process's pid in them and unlinks them at the end (also when it
//! fails).
//!
//! - `open_same_process`, `open_from_forked_child`,
//!   `open_from_unrelated_process`: create, then open by name; both handles
//!   see one schedule (fuel taken through one is gone for the other) and the
//!   opener adopts the creator's configuration.
//! - `concurrent_create_*`: 8 processes create the same name at the same
//!   instant: all succeed with one fully initialised throttle (one inode,
//!   one start wins, fuel shared); with two configurations racing, the
//!   losers get `Mismatch`.
//! - `mismatch_and_adopt`, `unlink_semantics`, `names_are_validated`.
//! - `permission_denied_for_other_user` (needs root: a child becomes
//!   `nobody`), `mode_is_0600_whatever_the_umask`.
//! - `never_finished_objects`: a zero-length object and a full one without
//!   its magic word are refused with `Corrupt` after the open's patience
//!   (about 2 s); a creator that finishes within it is waited for.
//! - `corrupt_objects_are_refused_or_survived`: more than 1,000 damaged
//!   copies of real throttles (every hardcap): refused with the right error,
//!   or opened and then every call returns a status in bounded time, in a
//!   forked child with a 5 s alarm. `MPT_NAMED_SEED=<n>` replays a run.
//! - `corrupt_waiter_count_still_wakes`: the sleepers' counter is shared
//!   memory too; a damaged one must not make `kill` miss a sleeper.
//!
//! Run one test, or those whose name contains a word:
//! `cargo test --test named -- corrupt`.

mod common;

use common::{
    KILLED, MS, NO_FUEL, OK, Overrun, SEC, Shm, TIMEOUT, Test, TestResult, check, kill_and_reap,
    note, now, sleep_ms,
};
use mp_throttle::config::{Config, MAX_WINDOW, Options};
use mp_throttle::error::Error;
use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::throttle::{
    MptThrottle, mpt_throttle_create_named, mpt_throttle_free, mpt_throttle_open,
    mpt_throttle_unlink,
};
use mp_throttle::schedule::{Hardcap, MAX_N, MAX_PER_NS, RING_MIN};
use mp_throttle::store::shm::layout::{
    ChangeLock, Control, FLAG_AUTO_EMIT, FLAG_MONITOR, FLAG_THROTTLE, Header, LAYOUT_VERSION, Lane,
    MAGIC, Published, Shared,
};
use mp_throttle::store::shm::named::MAX_NAME_LEN;
use mp_throttle::throttle::Throttle;
use std::ffi::CString;
use std::io::{Read, Write};
use std::mem::{offset_of, size_of};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

// ---------------------------------------------------------------- time

/// Sleeps to within a millisecond of `t`, then spins to it (a start barrier
/// for processes that share CLOCK_MONOTONIC).
fn sleep_until(t: i64) {
    let d = t - now() - MS;
    if d > 0 {
        std::thread::sleep(Duration::from_nanos(d as u64));
    }
    while now() < t {
        std::hint::spin_loop();
    }
}

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

// ---------------------------------------------------------------- names

/// A throttle name unique to this process and test; unlinked on drop (also
/// when the test fails). Forked children leave with `_exit`, so only the
/// parent unlinks.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        let name = Name(format!("named-test.{}.{tag}", std::process::id()));
        let _ = Throttle::unlink(&name.0); // a leftover of an earlier run
        name
    }

    fn path(&self) -> String {
        shm_path(&self.0)
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = Throttle::unlink(&self.0);
    }
}

fn shm_path(name: &str) -> String {
    format!("/dev/shm/mp_throttle.{name}")
}

fn options(hardcap: Hardcap) -> Options {
    Options {
        hardcap,
        ..Options::default()
    }
}

fn config(max_n: u64, per_s: f64, o: &Options) -> Config {
    Config::new(max_n, per_s, o).expect("a valid configuration")
}

/// The status code the C boundary gives an error (`MptStatus` values).
fn code(e: &Error) -> i64 {
    MptStatus::of(e) as i64
}

fn code_of<T>(r: &Result<T, Error>) -> i64 {
    r.as_ref().err().map_or(0, code)
}

const NOT_RUNNING: i64 = MptStatus::NotRunning as i64;
const WRONG_STATE: i64 = MptStatus::WrongState as i64;
const MONITOR_OFF: i64 = MptStatus::MonitorOff as i64;
const UNSUPPORTED: i64 = MptStatus::Unsupported as i64;
const CORRUPT: i64 = MptStatus::Corrupt as i64;
const INVALID_ARGUMENT: i64 = MptStatus::InvalidArgument as i64;
/// A panic caught in a child (MPT_STATUS_PANIC at the C boundary).
const PANIC: i64 = MptStatus::Panic as i64;

fn status_name(c: i64) -> String {
    MptStatus::ALL
        .iter()
        .find(|s| **s as i64 == c)
        .map_or_else(|| format!("status {c}"), |s| format!("{s:?}"))
}

// ---------------------------------------------------------------- children

/// Forks a child that runs `body` and `_exit`s with its value (101 if it
/// panicked).
fn fork_child(body: impl FnOnce() -> i32) -> libc::pid_t {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the child runs only `body` (library calls, system calls and
    // atomics on shared memory) and leaves with `_exit`, never returning
    // into the runner.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(101);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0, "fork failed: {}", std::io::Error::last_os_error());
    pid
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Exit {
    Code(i32),
    Signal(i32),
    /// Still running at the deadline: killed with SIGKILL.
    Hung,
}

/// Waits for `pid` at most `timeout_ns`; a child still running then is
/// killed.
fn wait_child(pid: libc::pid_t, timeout_ns: i64) -> Exit {
    let deadline = now() + timeout_ns;
    loop {
        let mut status = 0;
        // SAFETY: `status` is valid for writing; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) {
                Exit::Code(libc::WEXITSTATUS(status))
            } else {
                Exit::Signal(libc::WTERMSIG(status))
            };
        }
        if r < 0 || now() > deadline {
            kill_and_reap(pid);
            return Exit::Hung;
        }
        sleep_ms(1);
    }
}

/// This binary run again as `--child MODE ARGS...`: a process unrelated to
/// this one (exec'd: it inherits no mapping), its stdout piped back.
fn exec_child(mode: &str, args: &[String]) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    Command::new(exe)
        .arg("--child")
        .arg(mode)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run the child: {e}"))
}

/// Waits for an exec'd child at most `timeout_ns` (killing it then); its
/// exit code and what it printed.
fn finish_child(mut child: Child, timeout_ns: i64) -> Result<(i32, String), String> {
    let deadline = now() + timeout_ns;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "child {} still running after {} ms: killed",
                    child.id(),
                    timeout_ns / MS
                ));
            }
            Ok(None) => sleep_ms(2),
            Err(e) => return Err(format!("waiting for the child: {e}")),
        }
    };
    let mut out = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_string(&mut out);
    }
    match status.code() {
        Some(c) => Ok((c, out)),
        None => Err(format!("child died of {status}; it printed:\n{out}")),
    }
}

/// `key=value` from a child's `RESULT ...` line.
fn field(out: &str, key: &str) -> Option<String> {
    let line = out.lines().find(|l| l.starts_with("RESULT "))?;
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

fn num(out: &str, key: &str) -> Result<i64, String> {
    field(out, key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key}=<number> in the child's output:\n{out}"))
}

/// The `--child` side: returns the exit code.
fn child_main(args: &[String]) -> i32 {
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "take" => child_take(&arg(1)),
        "race" => child_race(
            &arg(1),
            arg(2).parse().unwrap_or(0),
            arg(3).parse().unwrap_or(0),
        ),
        other => {
            eprintln!("unknown child mode {other:?}");
            2
        }
    }
}

/// Opens `name`, prints its configuration, takes fuel if the tank has some.
fn child_take(name: &str) -> i32 {
    let t = match Throttle::open(name, &Options::default()) {
        Ok(t) => t,
        Err(e) => {
            println!("RESULT open={} msg={e}", code(&e));
            return 1;
        }
    };
    let c = t.config();
    let before = t.summary().total;
    let took = t.has_fuel();
    println!(
        "RESULT open=0 max_n={} per_ns={} hardcap={} monitor={} auto_emit={} refresh_ns={} \
         running={} before={before} has_fuel={} after={}",
        c.schedule.rate().max_n(),
        c.schedule.rate().per_ns(),
        c.schedule.hardcap() as u32,
        c.as_monitor as u8,
        c.auto_emit as u8,
        c.refresh_ns,
        t.is_running() as u8,
        code_of(&took),
        t.summary().total
    );
    0
}

/// The configuration the racers of `concurrent_create_*` ask for: LIMIT,
/// 5 per 2 s.
fn race_config() -> Config {
    config(5, 2.0, &options(Hardcap::Limit))
}

/// One racer: creates `name` at `go`, starts it (one racer wins), and at
/// `drain_at` takes fuel until the tank is empty.
fn child_race(name: &str, go: i64, drain_at: i64) -> i32 {
    sleep_until(go);
    let created = now();
    let t = match Throttle::create_named(name, race_config()) {
        Ok(t) => t,
        Err(e) => {
            println!("RESULT create={} msg={e}", code(&e));
            return 1;
        }
    };
    let took_ms = (now() - created) / MS;
    let ino = std::fs::metadata(shm_path(name)).map_or(0, |m| m.ino());
    // Fully initialised: the configuration asked for, no emission, a
    // readable run state (the first of these would report Corrupt).
    let same = *t.config() == race_config();
    let total = t.summary().total;
    let started = match t.start() {
        Ok(()) => 1,
        Err(Error::WrongState(_)) => 0,
        Err(e) => {
            println!("RESULT create=0 start={} msg={e}", code(&e));
            return 1;
        }
    };
    sleep_until(drain_at);
    let mut units = 0;
    let last = loop {
        match t.has_fuel() {
            Ok(_) => units += 1,
            Err(e) => break code(&e),
        }
    };
    println!(
        "RESULT create=0 same={} total={total} ino={ino} started={started} units={units} \
         last={last} create_ms={took_ms}",
        same as u8
    );
    0
}

// ---------------------------------------------------------------- open

/// Create, then open by name in the same process: one schedule, the
/// creator's configuration adopted.
fn open_same_process() -> TestResult {
    let n = Name::new("same");
    let o = Options {
        hardcap: Hardcap::One,
        refresh_s: 0.05,
        auto_emit: Some(true),
        ..Options::default()
    };
    let a = Throttle::create_named(&n, config(5, 1000.0, &o))
        .map_err(|e| format!("create_named: {e}"))?;
    // Opened with other wishes: only timer slack and spin are its own.
    let wishes = Options {
        timer_slack_ns: 0,
        spin_s: 0.001,
        hardcap: Hardcap::Window,
        refresh_s: 1.0,
        ..Options::default()
    };
    let b = Throttle::open(&n, &wishes).map_err(|e| format!("open: {e}"))?;
    check!(
        b.config().schedule == a.config().schedule
            && b.config().refresh_ns == 50_000_000
            && b.config().as_monitor
            && b.config().auto_emit,
        "open did not adopt the configuration: {:?} vs {:?}",
        b.config(),
        a.config()
    );
    check!(
        b.config().timer_slack_ns == 0 && b.config().spin_ns == 1_000_000,
        "the opener's waiting preferences were not kept: {:?}",
        b.config()
    );
    check!(
        !b.is_running() && matches!(b.has_fuel(), Err(Error::NoFuel)),
        "a fresh named throttle is not stopped"
    );
    a.start().map_err(|e| format!("start: {e}"))?;
    check!(b.is_running(), "b does not see a's start");
    // 5 per 1000 s: one unit at the start, the next 200 s later.
    check!(b.has_fuel().is_ok(), "b got no fuel after a's start");
    let second = a.has_fuel();
    check!(
        matches!(second, Err(Error::NoFuel)),
        "the unit b took is still there for a: {second:?}"
    );
    check!(
        matches!(b.await_fuel(Some(20 * MS)), Err(Error::Timeout)),
        "b got a second unit"
    );
    check!(
        a.summary().total == 1 && b.summary().total == 1,
        "totals {} / {} (expected 1)",
        a.summary().total,
        b.summary().total
    );
    b.kill();
    check!(a.kill_flag_is_set(), "a does not see b's kill");
    let s = b.stop().map_err(|e| format!("stop through b: {e}"))?;
    check!(
        !a.is_running() && s.total == 1,
        "a still running after b's stop ({s:?})"
    );
    check!(
        matches!(a.stop(), Err(Error::WrongState(_))),
        "stop through a after b's stop did not say WRONG_STATE"
    );
    Ok(())
}

/// A forked child opens the name (it does not use the parent's handle):
/// fuel taken in one process is gone for the other, both ways.
fn open_from_forked_child() -> TestResult {
    let n = Name::new("fork");
    let a = Throttle::create_named(&n, config(2, 1000.0, &Options::default()))
        .map_err(|e| format!("create_named: {e}"))?;
    a.start().map_err(|e| format!("start: {e}"))?;
    check!(a.has_fuel().is_ok(), "the parent got no fuel at the start");
    let name = n.0.clone();
    let pid = fork_child(move || {
        let Ok(b) = Throttle::open(&name, &Options::default()) else {
            return 2;
        };
        if !b.is_running() || b.summary().total != 1 {
            return 3;
        }
        // The parent took the unit of the start; the next is 500 s away.
        if !matches!(b.has_fuel(), Err(Error::NoFuel)) {
            return 4;
        }
        b.kill();
        0
    });
    let exit = wait_child(pid, 10 * SEC);
    check!(exit == Exit::Code(0), "child: {exit:?}");
    check!(
        a.kill_flag_is_set(),
        "the parent does not see the child's kill"
    );
    let _ = a.stop();
    Ok(())
}

/// A process exec'd from this binary (no inherited mapping) opens the name.
fn open_from_unrelated_process() -> TestResult {
    let n = Name::new("exec");
    let o = Options {
        hardcap: Hardcap::Window,
        refresh_s: 0.02,
        ..Options::default()
    };
    let a = Throttle::create_named(&n, config(3, 600.0, &o)).map_err(|e| format!("create: {e}"))?;
    a.start().map_err(|e| format!("start: {e}"))?;
    // The child takes the unit of the start.
    let (rc, out) = finish_child(exec_child("take", std::slice::from_ref(&n.0))?, 10 * SEC)?;
    check!(rc == 0, "child exited with {rc}:\n{out}");
    check!(
        num(&out, "max_n")? == 3
            && num(&out, "per_ns")? == 600 * SEC
            && num(&out, "hardcap")? == Hardcap::Window as i64
            && num(&out, "refresh_ns")? == 20 * MS
            && num(&out, "running")? == 1,
        "the child sees another throttle: {out}"
    );
    check!(
        num(&out, "has_fuel")? == OK && num(&out, "after")? == 1,
        "the child got no fuel: {out}"
    );
    let mine = a.has_fuel();
    check!(
        matches!(mine, Err(Error::NoFuel)),
        "the unit the child took is still there: {mine:?}"
    );
    check!(a.summary().total == 1, "total {}", a.summary().total);
    // And the other way: a fresh run whose first unit the parent takes.
    let _ = a.stop();
    let b_name = Name::new("exec2");
    let b = Throttle::create_named(&b_name, config(3, 600.0, &Options::default()))
        .map_err(|e| format!("create: {e}"))?;
    b.start().map_err(|e| format!("start: {e}"))?;
    check!(b.has_fuel().is_ok(), "no fuel at the start");
    let (rc, out) = finish_child(
        exec_child("take", std::slice::from_ref(&b_name.0))?,
        10 * SEC,
    )?;
    check!(rc == 0, "child exited with {rc}:\n{out}");
    check!(
        num(&out, "before")? == 1 && num(&out, "has_fuel")? == NO_FUEL,
        "the child got the unit the parent took: {out}"
    );
    let _ = b.stop();
    Ok(())
}

// ---------------------------------------------------------------- create races

/// 8 unrelated processes create the same name at the same instant: each
/// gets a handle on one throttle, fully initialised; one start wins; they
/// share its fuel.
///
/// LIMIT, 5 per 2 s: the tank starts empty and is full (5 units) 1.6 s after
/// the start; at 2.2 s every racer drains it. Together they must get exactly
/// 5: a sixth would need 0.4 s more, and a racer that had its own throttle
/// would get its own 5.
fn concurrent_create_unrelated() -> TestResult {
    const RACERS: usize = 8;
    let n = Name::new("race");
    let go = now() + 500 * MS;
    let drain_at = go + 2200 * MS;
    let mut kids = Vec::new();
    for _ in 0..RACERS {
        kids.push(exec_child(
            "race",
            &[n.0.clone(), go.to_string(), drain_at.to_string()],
        )?);
    }
    let mut outs = Vec::new();
    for k in kids {
        let (rc, out) = finish_child(k, 15 * SEC)?;
        check!(rc == 0, "a racer failed ({rc}): {out}");
        outs.push(out);
    }
    let mut inos = Vec::new();
    let (mut starts, mut units, mut slowest) = (0, 0, 0);
    for out in &outs {
        check!(
            num(out, "same")? == 1 && num(out, "total")? == 0,
            "a racer saw a half-made or other throttle: {out}"
        );
        check!(
            num(out, "last")? == NO_FUEL,
            "a racer's drain ended with {}",
            status_name(num(out, "last")?)
        );
        inos.push(num(out, "ino")?);
        starts += num(out, "started")?;
        units += num(out, "units")?;
        slowest = slowest.max(num(out, "create_ms")?);
    }
    note!("{RACERS} racers: slowest create_named {slowest} ms; {units} units in all");
    check!(
        inos.iter().all(|&i| i != 0 && i == inos[0]),
        "the racers have different objects: inodes {inos:?}"
    );
    check!(
        starts == 1,
        "{starts} racers started the throttle (one wins)"
    );
    check!(
        units == 5,
        "the racers got {units} units together, expected exactly 5"
    );
    let t = Throttle::open(&n, &Options::default()).map_err(|e| format!("open: {e}"))?;
    check!(
        t.summary().total == 5,
        "the throttle counted {}",
        t.summary().total
    );
    let _ = t.stop();
    Ok(())
}

/// Many rounds of 8 forked children creating one name at the same instant
/// (half of the rounds with two configurations): every creator of the
/// winning configuration gets a handle, immediately usable; the others get
/// `Mismatch`; nobody sees `Corrupt` or a half-made header.
fn concurrent_create_rounds() -> TestResult {
    const KIDS: usize = 8;
    const ROUNDS: usize = 24;
    // Per child: result code, max_n seen, ino.
    let shm = Shm::new(1 + KIDS * 3);
    let mut mismatches = 0;
    for round in 0..ROUNDS {
        let n = Name::new(&format!("rounds{round}"));
        let two_configs = round % 2 == 1;
        let go = now() + 30 * MS;
        shm.set(0, go);
        let mut pids = Vec::new();
        for k in 0..KIDS {
            let shm = &shm;
            let name = n.0.clone();
            let max_n = if two_configs && k % 2 == 1 { 6 } else { 5 };
            pids.push(fork_child(move || {
                sleep_until(shm.get(0));
                let r = Throttle::create_named(&name, config(max_n, 1.0, &Options::default()));
                shm.set(1 + k * 3, code_of(&r));
                if let Ok(t) = r {
                    shm.set(
                        2 + k * 3,
                        t.config().schedule.rate().max_n() as i64 * 1000
                            + i64::from(t.is_running())
                            + i64::from(t.summary().total != 0) * 10
                            + i64::from(!matches!(t.has_fuel(), Err(Error::NoFuel))) * 100,
                    );
                    let ino = std::fs::metadata(shm_path(&name)).map_or(0, |m| m.ino());
                    shm.set(3 + k * 3, ino as i64);
                }
                0
            }));
        }
        for pid in pids {
            let exit = wait_child(pid, 10 * SEC);
            check!(exit == Exit::Code(0), "round {round}: child {exit:?}");
        }
        let codes: Vec<i64> = (0..KIDS).map(|k| shm.get(1 + k * 3)).collect();
        let seen: Vec<i64> = (0..KIDS).map(|k| shm.get(2 + k * 3)).collect();
        let inos: Vec<i64> = (0..KIDS).map(|k| shm.get(3 + k * 3)).collect();
        let winners: Vec<usize> = (0..KIDS).filter(|&k| codes[k] == OK).collect();
        check!(
            !winners.is_empty(),
            "round {round}: nobody got the throttle: {codes:?}"
        );
        let max_n = seen[winners[0]] / 1000;
        for k in 0..KIDS {
            let asked = if two_configs && k % 2 == 1 { 6 } else { 5 };
            if codes[k] == OK {
                check!(
                    seen[k] == asked * 1000 && inos[k] == inos[winners[0]],
                    "round {round}: child {k} asked max_n {asked} and got {} (flags {}), \
                     inode {} vs {}",
                    seen[k] / 1000,
                    seen[k] % 1000,
                    inos[k],
                    inos[winners[0]]
                );
            } else {
                check!(
                    codes[k] == MptStatus::Mismatch as i64 && asked != max_n,
                    "round {round}: child {k} (max_n {asked}, winner {max_n}) got {}",
                    status_name(codes[k])
                );
                mismatches += 1;
            }
        }
    }
    note!("{ROUNDS} rounds of {KIDS} creators; {mismatches} got Mismatch");
    Ok(())
}

// ---------------------------------------------------------------- mismatch, unlink, names

/// `create_named` of an existing name with another configuration is
/// refused with `Mismatch`; `open` adopts whatever is there.
fn mismatch_and_adopt() -> TestResult {
    let n = Name::new("mismatch");
    let base = Options::default();
    let a = Throttle::create_named(&n, config(5, 1.0, &base))
        .map_err(|e| format!("create_named: {e}"))?;
    let others: Vec<(&str, u64, f64, Options)> = vec![
        ("max_n 6", 6, 1.0, base),
        ("per 2 s", 5, 2.0, base),
        ("per 1.000000001 s", 5, 1.000000001, base),
        ("hardcap ONE", 5, 1.0, options(Hardcap::One)),
        ("hardcap NONE", 5, 1.0, options(Hardcap::None)),
        ("hardcap WINDOW", 5, 1.0, options(Hardcap::Window)),
        (
            "as_monitor off",
            5,
            1.0,
            Options {
                as_monitor: false,
                ..base
            },
        ),
        (
            "as_throttle off",
            5,
            1.0,
            Options {
                as_throttle: false,
                ..base
            },
        ),
        (
            "auto_emit off",
            5,
            1.0,
            Options {
                auto_emit: Some(false),
                ..base
            },
        ),
        (
            "refresh 0.02",
            5,
            1.0,
            Options {
                refresh_s: 0.02,
                ..base
            },
        ),
    ];
    for (what, max_n, per, o) in &others {
        match Throttle::create_named(&n, config(*max_n, *per, o)) {
            Err(Error::Mismatch(m)) => {
                check!(
                    m.contains(&n.0),
                    "{what}: the message does not name the throttle: {m}"
                );
            }
            other => {
                check!(false, "create with {what}: {other:?}, expected Mismatch");
            }
        }
    }
    // auto_emit spelled out as its default, and other waiting preferences:
    // the same throttle.
    let same = Options {
        auto_emit: Some(true),
        timer_slack_ns: 0,
        spin_s: 0.0005,
        ..base
    };
    let b = Throttle::create_named(&n, config(5, 1.0, &same))
        .map_err(|e| format!("create with the same configuration: {e}"))?;
    a.start().map_err(|e| format!("start: {e}"))?;
    check!(b.is_running(), "the second create made another throttle");
    let _ = a.stop();
    // open adopts, whatever its options say.
    let c = Throttle::open(&n, &options(Hardcap::Window)).map_err(|e| format!("open: {e}"))?;
    check!(
        c.config().schedule == a.config().schedule
            && c.config().refresh_ns == a.config().refresh_ns,
        "open did not adopt: {:?}",
        c.config()
    );
    // The waiting preferences of open are still validated.
    let bad = Options {
        spin_s: 5.0,
        ..base
    };
    let r = Throttle::open(&n, &bad);
    check!(
        matches!(r, Err(Error::InvalidArgument(_))),
        "open with spin_s 5: {r:?}"
    );
    Ok(())
}

/// Unlink removes the name only: handles (in this and another process) keep
/// working; open then says NotFound; create makes a new throttle.
fn unlink_semantics() -> TestResult {
    let n = Name::new("unlink");
    let a = Throttle::create_named(&n, config(5, 1.0, &Options::default()))
        .map_err(|e| format!("create_named: {e}"))?;
    let b = Throttle::open(&n, &Options::default()).map_err(|e| format!("open: {e}"))?;
    // A child that opened it before the unlink, and waits for a unit after.
    let shm = Shm::new(2);
    let name = n.0.clone();
    let shm_ref = &shm;
    let pid = fork_child(move || {
        let Ok(t) = Throttle::open(&name, &Options::default()) else {
            return 2;
        };
        shm_ref.set(0, 1);
        let give_up = now() + 5 * SEC;
        while shm_ref.get(1) == 0 {
            if now() > give_up {
                return 3;
            }
            sleep_ms(1);
        }
        match t.await_fuel(Some(2 * SEC)) {
            Ok(_) => 0,
            Err(e) => 10 + code(&e) as i32,
        }
    });
    let give_up = now() + 5 * SEC;
    while shm.get(0) == 0 && now() < give_up {
        sleep_ms(1);
    }
    check!(shm.get(0) == 1, "the child could not open the throttle");
    a.start().map_err(|e| format!("start: {e}"))?;
    Throttle::unlink(&n).map_err(|e| format!("unlink: {e}"))?;
    check!(
        std::fs::metadata(n.path()).is_err(),
        "{} is still there after unlink",
        n.path()
    );
    check!(b.has_fuel().is_ok(), "no fuel through b after the unlink");
    check!(
        matches!(a.has_fuel(), Err(Error::NoFuel)),
        "a does not share b's schedule after the unlink"
    );
    shm.set(1, 1);
    let exit = wait_child(pid, 10 * SEC);
    check!(
        exit == Exit::Code(0),
        "the child that opened it before the unlink: {exit:?} (10 + status)"
    );
    check!(
        a.summary().total == 2,
        "total {} after the child's unit",
        a.summary().total
    );
    let r = Throttle::open(&n, &Options::default());
    check!(
        matches!(r, Err(Error::NotFound(_))),
        "open after unlink: {r:?}"
    );
    let r = Throttle::unlink(&n);
    check!(
        matches!(r, Err(Error::NotFound(_))),
        "unlink after unlink: {r:?}"
    );
    // Create again: a new throttle, even with another configuration.
    let c = Throttle::create_named(&n, config(7, 1.0, &Options::default()))
        .map_err(|e| format!("create after unlink: {e}"))?;
    check!(
        !c.is_running() && c.summary().total == 0 && a.is_running(),
        "the new throttle is not new"
    );
    c.start().map_err(|e| format!("start: {e}"))?;
    check!(c.has_fuel().is_ok(), "no fuel from the new throttle");
    check!(
        a.summary().total == 2,
        "the new throttle counts into the old"
    );
    let _ = c.stop();
    let _ = a.stop();
    Ok(())
}

/// Names: 1 to 200 bytes without '/', not "." or "..".
fn names_are_validated() -> TestResult {
    let c = config(1, 1.0, &Options::default());
    let long = "x".repeat(MAX_NAME_LEN + 1);
    for bad in ["", "/", "a/b", "/lead", "trail/", ".", "..", long.as_str()] {
        let r = Throttle::create_named(bad, c);
        check!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "create_named({bad:?}): {r:?}"
        );
        let r = Throttle::open(bad, &Options::default());
        check!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "open({bad:?}): {r:?}"
        );
        let r = Throttle::unlink(bad);
        check!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "unlink({bad:?}): {r:?}"
        );
    }
    // The longest name, and one with spaces and other bytes.
    let pid = std::process::id().to_string();
    let longest = format!("{pid}{}", "y".repeat(MAX_NAME_LEN - pid.len()));
    for name in [longest, format!("{pid} spaces, dots... ünïcode\ttab")] {
        let t = Throttle::create_named(&name, c).map_err(|e| format!("{name:?}: {e}"))?;
        check!(
            std::fs::metadata(shm_path(&name)).is_ok(),
            "no {}",
            shm_path(&name)
        );
        drop(t);
        Throttle::unlink(&name).map_err(|e| format!("unlink {name:?}: {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- permissions

fn c_name(name: &str) -> CString {
    CString::new(name).expect("no NUL in test names")
}

/// Becomes `nobody` (65534) for good: groups, gid, uid.
fn become_nobody() -> bool {
    // SAFETY: an empty group list; no pointer is read for size 0.
    let groups = unsafe { libc::setgroups(0, std::ptr::null()) };
    // SAFETY: plain system calls on this (single-threaded) child.
    let gid = unsafe { libc::setgid(65534) };
    // SAFETY: as above.
    let uid = unsafe { libc::setuid(65534) };
    // SAFETY: geteuid has no preconditions.
    groups == 0 && gid == 0 && uid == 0 && unsafe { libc::geteuid() } == 65534
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Root creates a throttle (mode 0600); a child that became `nobody` is
/// refused with PERMISSION_DENIED and a message, through the C ABI, for
/// open, create_named and unlink; its own throttle it creates and opens.
fn permission_denied_for_other_user() -> TestResult {
    if !is_root() {
        note!("SKIPPED: needs root (to become another user)");
        return Ok(());
    }
    let n = Name::new("perm");
    let _a = Throttle::create_named(&n, config(5, 1.0, &Options::default()))
        .map_err(|e| format!("create_named: {e}"))?;
    let meta = std::fs::metadata(n.path()).map_err(|e| format!("stat {}: {e}", n.path()))?;
    check!(
        meta.permissions().mode() & 0o7777 == 0o600 && meta.uid() == 0,
        "{}: mode {:o}, uid {} (expected 0600, 0)",
        n.path(),
        meta.permissions().mode() & 0o7777,
        meta.uid()
    );
    let theirs = Name::new("perm-nobody");
    // Per check: 1 passed, else the failing status + 100.
    let shm = Shm::new(8);
    let shm_ref = &shm;
    let (mine, their_name) = (c_name(&n), c_name(&theirs));
    let pid = fork_child(move || {
        if !become_nobody() {
            return 2;
        }
        let denied = |slot: usize, st: MptStatus| {
            let msg = common::last_error();
            let ok = st == MptStatus::PermissionDenied && msg.contains("another user");
            shm_ref.set(slot, if ok { 1 } else { 100 + st as i64 });
        };
        let mut h: *mut MptThrottle = std::ptr::null_mut();
        // SAFETY: a NUL-terminated name, NULL options, `h` valid for writing.
        let st = unsafe { mpt_throttle_open(mine.as_ptr(), std::ptr::null(), &mut h) };
        denied(0, st);
        // SAFETY: as above.
        let st =
            unsafe { mpt_throttle_create_named(mine.as_ptr(), 5, 1.0, std::ptr::null(), &mut h) };
        denied(1, st);
        // SAFETY: a NUL-terminated name.
        let st = unsafe { mpt_throttle_unlink(mine.as_ptr()) };
        denied(2, st);
        shm_ref.set(3, i64::from(h.is_null()));
        // Its own throttle: created with its uid, mode 0600, opened again.
        let mut own: *mut MptThrottle = std::ptr::null_mut();
        // SAFETY: as above.
        let st = unsafe {
            mpt_throttle_create_named(their_name.as_ptr(), 5, 1.0, std::ptr::null(), &mut own)
        };
        shm_ref.set(4, st as i64);
        let mut again: *mut MptThrottle = std::ptr::null_mut();
        // SAFETY: as above.
        let st = unsafe { mpt_throttle_open(their_name.as_ptr(), std::ptr::null(), &mut again) };
        shm_ref.set(5, st as i64);
        // SAFETY: handles this child owns (or NULL), freed once.
        unsafe { mpt_throttle_free(again) };
        // SAFETY: as above.
        unsafe { mpt_throttle_free(own) };
        0
    });
    let exit = wait_child(pid, 10 * SEC);
    check!(
        exit == Exit::Code(0),
        "the nobody child: {exit:?} (2: cannot switch user)"
    );
    for (slot, call) in [
        "mpt_throttle_open",
        "mpt_throttle_create_named",
        "mpt_throttle_unlink",
    ]
    .iter()
    .enumerate()
    {
        let v = shm.get(slot);
        check!(
            v == 1,
            "{call} of root's throttle as nobody: {} (expected PERMISSION_DENIED with a message \
             saying it belongs to another user)",
            if v >= 100 {
                status_name(v - 100)
            } else {
                "wrong message".into()
            }
        );
    }
    check!(shm.get(3) == 1, "a refused call wrote out_throttle");
    check!(
        std::fs::metadata(n.path()).is_ok(),
        "nobody's unlink removed root's throttle"
    );
    check!(
        shm.get(4) == OK && shm.get(5) == OK,
        "nobody's own throttle: create {}, open {}",
        status_name(shm.get(4)),
        status_name(shm.get(5))
    );
    let meta = std::fs::metadata(theirs.path()).map_err(|e| format!("stat: {e}"))?;
    check!(
        meta.permissions().mode() & 0o7777 == 0o600 && meta.uid() == 65534,
        "nobody's throttle: mode {:o}, uid {}",
        meta.permissions().mode() & 0o7777,
        meta.uid()
    );
    Ok(())
}

/// The mode is 0600 whatever the creator's umask (0, 077, 277): another
/// process of the same user can always open it, nobody else can (unless
/// it was made `group_shared`, see tests/owners.rs).
fn mode_is_0600_whatever_the_umask() -> TestResult {
    let masks: [libc::mode_t; 3] = [0, 0o077, 0o277];
    let shm = Shm::new(masks.len() * 2);
    let names: Vec<Name> = masks
        .iter()
        .map(|m| Name::new(&format!("umask{m:o}")))
        .collect();
    for (i, &mask) in masks.iter().enumerate() {
        let name = names[i].0.clone();
        let shm_ref = &shm;
        // A child: umask is per process. As nobody (if root), so that the
        // mode matters to a second process of the same user.
        let pid = fork_child(move || {
            if is_root() && !become_nobody() {
                return 2;
            }
            // SAFETY: umask only sets this process's mask.
            unsafe { libc::umask(mask) };
            let Ok(t) = Throttle::create_named(&name, config(5, 1.0, &Options::default())) else {
                return 3;
            };
            let mode = std::fs::metadata(shm_path(&name))
                .map_or(-1, |m| i64::from(m.permissions().mode() & 0o7777));
            shm_ref.set(i * 2, mode);
            // A second process of the same user opens it.
            let opener = fork_child(|| match Throttle::open(&name, &Options::default()) {
                Ok(_) => 0,
                Err(e) => code(&e) as i32,
            });
            let exit = wait_child(opener, 5 * SEC);
            shm_ref.set(
                i * 2 + 1,
                match exit {
                    Exit::Code(c) => i64::from(c),
                    _ => -1,
                },
            );
            drop(t);
            0
        });
        let exit = wait_child(pid, 10 * SEC);
        check!(exit == Exit::Code(0), "umask {mask:o}: child {exit:?}");
    }
    let mut bad = Vec::new();
    for (i, mask) in masks.iter().enumerate() {
        let (mode, open) = (shm.get(i * 2), shm.get(i * 2 + 1));
        if mode != 0o600 || open != 0 {
            bad.push(format!(
                "umask {mask:03o}: mode {mode:o}, open by the same user: {}",
                status_name(open)
            ));
        }
    }
    check!(
        bad.is_empty(),
        "named throttles must be created with mode 0600 (docs/design.md): {}",
        bad.join("; ")
    );
    Ok(())
}

// ---------------------------------------------------------------- raw objects

/// The bytes of the named object `name`.
fn object_bytes(name: &str) -> Result<Vec<u8>, String> {
    std::fs::read(shm_path(name)).map_err(|e| format!("read {}: {e}", shm_path(name)))
}

/// Writes a new object `name` (mode 0600): `bytes`, then cut or extended
/// (with zeros) to `len`.
fn write_object(name: &str, bytes: &[u8], len: u64) -> Result<(), String> {
    let path = shm_path(name);
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("create {path}: {e}"))?;
    let n = bytes.len().min(len as usize);
    f.write_all(&bytes[..n])
        .and_then(|()| f.set_len(len))
        .map_err(|e| format!("write {path}: {e}"))
}

/// A real throttle's bytes after a short run (lanes, statistics, WINDOW
/// ring all written): its name is unlinked again.
fn used_object(tag: &str, max_n: u64, per_s: f64, o: &Options) -> Result<Vec<u8>, String> {
    let n = Name::new(tag);
    let t = Throttle::create_named(&n, config(max_n, per_s, o))
        .map_err(|e| format!("create_named: {e}"))?;
    t.start().map_err(|e| format!("start: {e}"))?;
    for _ in 0..4 {
        let _ = t.await_fuel(Some(60 * MS));
        if !t.config().auto_emit {
            let _ = t.emit(None);
        }
    }
    sleep_ms(30); // a monitor refresh or two
    t.stop().map_err(|e| format!("stop: {e}"))?;
    drop(t);
    object_bytes(&n)
}

// Offsets of the fields in the shared layout.
const HEADER: usize = offset_of!(Shared, header);
const CONTROL: usize = offset_of!(Shared, control);
const PUBLISHED: usize = offset_of!(Shared, published);
const TAT: usize = offset_of!(Shared, tat);
const HEAD: usize = offset_of!(Shared, head);
const CONFIRMED: usize = offset_of!(Shared, confirmed);
const LOCK: usize = offset_of!(Shared, change_lock);
const THAWED: usize = LOCK + offset_of!(ChangeLock, thawed_ns);
const FROZEN: usize = LOCK + offset_of!(ChangeLock, frozen_ns);
const LANES: usize = offset_of!(Shared, lanes);
const H_MAGIC: usize = HEADER + offset_of!(Header, magic);
const H_VERSION: usize = HEADER + offset_of!(Header, layout_version);
const H_HARDCAP: usize = HEADER + offset_of!(Header, hardcap);
const H_SIZE: usize = HEADER + offset_of!(Header, size);
const H_MAX_N: usize = HEADER + offset_of!(Header, max_n);
const H_PER: usize = HEADER + offset_of!(Header, per_ns);
const H_REFRESH: usize = HEADER + offset_of!(Header, refresh_ns);
const H_FLAGS: usize = HEADER + offset_of!(Header, flags);
const H_KEYS: usize = HEADER + offset_of!(Header, keys);
const H_RING_LEN: usize = HEADER + offset_of!(Header, ring_len);
const C_RUN: usize = CONTROL + offset_of!(Control, run);

/// The header fields `open` validates: (offset, length).
const HEADER_FIELDS: [(usize, usize); 11] = [
    (H_MAGIC, 8),
    (H_VERSION, 4),
    (H_HARDCAP, 4),
    (H_SIZE, 8),
    (H_MAX_N, 8),
    (H_PER, 8),
    (H_REFRESH, 8),
    (H_FLAGS, 4),
    (H_KEYS, 4),
    (H_RING_LEN, 8),
    (C_RUN, 8),
];

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    put(b, off, &v.to_ne_bytes());
}

fn put64(b: &mut [u8], off: usize, v: u64) {
    put(b, off, &v.to_ne_bytes());
}

fn get64(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn get32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

/// A full-size object that no process finishes: `open` waits its patience
/// (about 2 s) and says Corrupt; so does `create_named` of that name. A
/// creator that finishes within the patience is waited for.
fn never_finished_objects() -> TestResult {
    let good = used_object("nf-base", 5, 1.0, &Options::default())?;
    let empty = Name::new("nf-empty");
    write_object(&empty, &[], 0)?;
    let unsealed = Name::new("nf-unsealed");
    let mut b = good.clone();
    put64(&mut b, H_MAGIC, 0);
    write_object(&unsealed, &b, b.len() as u64)?;
    let late = Name::new("nf-late");
    write_object(&late, &[], 0)?;
    let (e1, e2, u1, l1) = std::thread::scope(|s| {
        let timed = |f: Box<dyn FnOnce() -> Result<Throttle, Error> + Send>| {
            s.spawn(move || {
                let t0 = now();
                let r = f();
                (code_of(&r), now() - t0)
            })
        };
        let e1 = timed(Box::new(|| Throttle::open(&empty, &Options::default())));
        let e2 = timed(Box::new(|| {
            Throttle::create_named(&empty, config(5, 1.0, &Options::default()))
        }));
        let u1 = timed(Box::new(|| Throttle::open(&unsealed, &Options::default())));
        let l1 = timed(Box::new(|| Throttle::open(&late, &Options::default())));
        // The late creator: sizes its object after 200 ms, seals it after
        // 400 ms (the magic word last, as the library does).
        sleep_ms(200);
        let mut unsealed_copy = good.clone();
        put64(&mut unsealed_copy, H_MAGIC, 0);
        // As the library's creator: the whole size at once (it uses
        // posix_fallocate), then the contents, the magic word last.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(late.path())
            .and_then(|f| {
                f.set_len(unsealed_copy.len() as u64)?;
                std::os::unix::fs::FileExt::write_all_at(&f, &unsealed_copy, 0)
            });
        sleep_ms(200);
        let sealed = std::fs::OpenOptions::new()
            .write(true)
            .open(late.path())
            .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, &MAGIC.to_ne_bytes(), 0));
        let join = |h: std::thread::ScopedJoinHandle<'_, (i64, i64)>| h.join().unwrap_or((-1, 0));
        let out = (join(e1), join(e2), join(u1), join(l1));
        (
            out.0,
            out.1,
            out.2,
            (out.3, written.is_ok() && sealed.is_ok()),
        )
    });
    note!(
        "empty: open {} after {:.2} s, create_named {} after {:.2} s; unsealed: open {} after \
         {:.2} s; sealed after 0.4 s: open {} after {:.2} s",
        status_name(e1.0),
        secs(e1.1),
        status_name(e2.0),
        secs(e2.1),
        status_name(u1.0),
        secs(u1.1),
        status_name(l1.0.0),
        secs(l1.0.1)
    );
    for (what, (c, t)) in [
        ("open of a zero-length object", e1),
        ("create_named of a zero-length object", e2),
        ("open of an object never sealed", u1),
    ] {
        check!(
            c == CORRUPT && (1800 * MS..4 * SEC).contains(&t),
            "{what}: {} after {:.2} s (expected Corrupt after about 2 s)",
            status_name(c),
            secs(t)
        );
    }
    check!(l1.1, "could not write the late object");
    check!(
        l1.0.0 == OK && (350 * MS..1500 * MS).contains(&l1.0.1),
        "open of an object sealed after 0.4 s: {} after {:.2} s",
        status_name(l1.0.0),
        secs(l1.0.1)
    );
    Ok(())
}

// ---------------------------------------------------------------- corruption

/// splitmix64: a small deterministic generator, so that a seed replays a
/// run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// What `open` must say of a variant.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Exactly this status (OK: it opens).
    Is(i64),
    /// It opens, or is refused with Corrupt (a field changed to a value
    /// that may or may not be one a correct process writes).
    OkOrCorrupt,
}

/// A damaged copy of base object `base`: `patches` (offset, bytes) written
/// over it, then cut or extended to `len`.
struct Variant {
    desc: String,
    base: usize,
    patches: Vec<(usize, Vec<u8>)>,
    len: u64,
    expect: Expect,
}

impl Variant {
    fn bytes(&self, bases: &[Vec<u8>]) -> Vec<u8> {
        let mut b = bases[self.base].clone();
        for (off, v) in &self.patches {
            put(&mut b, *off, v);
        }
        b
    }
}

/// Derives what `open` must say from what changed: the length → Corrupt;
/// the magic word → Corrupt; else the layout version → Unsupported; else
/// another field open validates → open or Corrupt; else (padding,
/// statistics, lanes, schedule state, ring) → it must open.
fn oracle(base: &[u8], patches: &[(usize, Vec<u8>)], len: u64) -> Expect {
    if len != base.len() as u64 {
        return Expect::Is(CORRUPT);
    }
    let mut b: Vec<u8> = base[..LANES].to_vec();
    for (off, v) in patches {
        for (i, x) in v.iter().enumerate() {
            if off + i < b.len() {
                b[off + i] = *x;
            }
        }
    }
    let changed = |(off, n): (usize, usize)| base[off..off + n] != b[off..off + n];
    if changed((H_MAGIC, 8)) {
        return Expect::Is(CORRUPT);
    }
    if changed((H_VERSION, 4)) {
        return Expect::Is(UNSUPPORTED);
    }
    if HEADER_FIELDS.iter().any(|&f| changed(f)) {
        return Expect::OkOrCorrupt;
    }
    Expect::Is(OK)
}

fn p32(off: usize, v: u32) -> (usize, Vec<u8>) {
    (off, v.to_ne_bytes().to_vec())
}

fn p64(off: usize, v: u64) -> (usize, Vec<u8>) {
    (off, v.to_ne_bytes().to_vec())
}

/// The variants of base object number `index`.
fn variants(tag: &str, index: usize, base: &[u8], rng: &mut Rng) -> Vec<Variant> {
    let size = base.len() as u64;
    let shared = size_of::<Shared>() as u64;
    let window = get32(base, H_HARDCAP) == Hardcap::Window as u32;
    let mut out = Vec::new();
    let mut add =
        |desc: String, patches: Vec<(usize, Vec<u8>)>, len: u64, expect: Option<Expect>| {
            let expect = expect.unwrap_or_else(|| oracle(base, &patches, len));
            out.push(Variant {
                desc: format!("{tag}: {desc}"),
                base: index,
                patches,
                len,
                expect,
            });
        };
    let corrupt = Some(Expect::Is(CORRUPT));
    let opens = Some(Expect::Is(OK));

    // Truncated and extended (0 bytes: see never_finished_objects).
    let mut lens = vec![
        1,
        7,
        8,
        63,
        64,
        65,
        127,
        128,
        shared / 2,
        shared - 1,
        size - 1,
        size + 1,
        size + 16,
        size + 4096,
        1 << 30,
    ];
    for _ in 0..6 {
        lens.push(1 + rng.below(size - 1));
    }
    for len in lens {
        add(format!("length {len}"), vec![], len, corrupt);
    }

    // The magic word (not 0: that means "being made", see
    // never_finished_objects).
    for (what, m) in [
        ("magic ^ 1", MAGIC ^ 1),
        ("magic ^ 1<<63", MAGIC ^ (1 << 63)),
        ("magic all ones", u64::MAX),
        ("magic byte-swapped", MAGIC.swap_bytes()),
        ("magic 'NOTATHRT'", u64::from_le_bytes(*b"NOTATHRT")),
    ] {
        add(what.into(), vec![p64(H_MAGIC, m)], size, corrupt);
    }
    // The layout version.
    for v in [
        LAYOUT_VERSION + 1,
        LAYOUT_VERSION - 1,
        LAYOUT_VERSION + 100,
        u32::MAX,
    ] {
        add(
            format!("layout version {v}"),
            vec![p32(H_VERSION, v)],
            size,
            Some(Expect::Is(UNSUPPORTED)),
        );
    }
    // The size field.
    for s in [0, size - 1, size + 1, size + 16, size * 2, u64::MAX] {
        add(
            format!("size field {s}"),
            vec![p64(H_SIZE, s)],
            size,
            corrupt,
        );
    }
    // Out-of-range fields.
    for h in [4, 9, 0xff, u32::MAX] {
        add(
            format!("hardcap {h}"),
            vec![p32(H_HARDCAP, h)],
            size,
            corrupt,
        );
    }
    for m in [0, MAX_N + 1, u64::MAX] {
        add(format!("max_n {m}"), vec![p64(H_MAX_N, m)], size, corrupt);
    }
    for p in [0, MAX_PER_NS + 1, u64::MAX] {
        add(format!("per_ns {p}"), vec![p64(H_PER, p)], size, corrupt);
    }
    for r in [0, 1, 999, MAX_PER_NS + 1, u64::MAX] {
        add(
            format!("refresh_ns {r}"),
            vec![p64(H_REFRESH, r)],
            size,
            corrupt,
        );
    }
    let flags = get32(base, H_FLAGS);
    for f in [
        0,
        FLAG_AUTO_EMIT,
        flags | 8,
        flags | 0x10,
        flags | 0x8000_0000,
        u32::MAX,
    ] {
        add(
            format!("flags {f:#x}"),
            vec![p32(H_FLAGS, f)],
            size,
            corrupt,
        );
    }
    let ring_len = get64(base, H_RING_LEN);
    for r in [ring_len + 1, ring_len.wrapping_sub(1), u64::MAX, 1 << 40] {
        add(
            format!("ring_len {r}"),
            vec![p64(H_RING_LEN, r)],
            size,
            corrupt,
        );
    }
    for low in [4u64, 5, 0xffff_ffff] {
        add(
            format!("run word phase {low}"),
            vec![p64(C_RUN, (12345 << 32) | low)],
            size,
            corrupt,
        );
    }
    // Values a correct process may write: it opens.
    for (what, word) in [
        ("running, pid 0x7fffffff", (0x7fff_ffffu64 << 32) | 1),
        ("starting, dead pid 0xfffffff0", (0xffff_fff0u64 << 32) | 2),
        ("stopping, pid 1 (alive)", (1u64 << 32) | 3),
        ("stopped, pid garbage", 0xdead_beefu64 << 32),
    ] {
        add(
            format!("run word {what}"),
            vec![p64(C_RUN, word)],
            size,
            opens,
        );
    }
    add("per_ns 1".into(), vec![p64(H_PER, 1)], size, opens);
    add(
        "per_ns MAX_PER_NS".into(),
        vec![p64(H_PER, MAX_PER_NS)],
        size,
        opens,
    );
    add(
        "refresh_ns 1000 (the least)".into(),
        vec![p64(H_REFRESH, 1000)],
        size,
        opens,
    );
    add(
        "refresh_ns 1 h".into(),
        vec![p64(H_REFRESH, 3600 * SEC as u64)],
        size,
        opens,
    );
    add(
        "flags monitor only".into(),
        vec![p32(H_FLAGS, FLAG_MONITOR)],
        size,
        opens,
    );
    add(
        "flags throttle only".into(),
        vec![p32(H_FLAGS, FLAG_THROTTLE)],
        size,
        opens,
    );
    if window {
        let n = get64(base, H_MAX_N);
        let ring = get64(base, H_RING_LEN);
        add(
            format!("WINDOW max_n {} (ring {ring})", ring + 1),
            vec![p64(H_MAX_N, ring + 1)],
            size,
            corrupt,
        );
        let big = MAX_WINDOW + 1;
        add(
            format!("WINDOW max_n {big} > MAX_WINDOW"),
            vec![
                p64(H_MAX_N, big),
                p64(H_RING_LEN, big),
                p64(H_SIZE, shared + 16 * big),
            ],
            shared + 16 * big,
            corrupt,
        );
        add(
            "as LIMIT with a ring".into(),
            vec![p32(H_HARDCAP, Hardcap::Limit as u32)],
            size,
            corrupt,
        );
        // A consistent header over a ring that does not fit it: it opens;
        // the calls say Corrupt (or cope).
        for m in [n + 1, n - 1, MAX_WINDOW] {
            let r = m.max(RING_MIN);
            let len = shared + 16 * r;
            add(
                format!("WINDOW grown/shrunk consistently to max_n {m}"),
                vec![p64(H_MAX_N, m), p64(H_RING_LEN, r), p64(H_SIZE, len)],
                len,
                opens,
            );
        }
    } else {
        add(
            "as WINDOW without a ring".into(),
            vec![p32(H_HARDCAP, Hardcap::Window as u32)],
            size,
            corrupt,
        );
        for h in [Hardcap::Limit, Hardcap::One, Hardcap::None] {
            add(
                format!("hardcap rewritten to {h:?}"),
                vec![p32(H_HARDCAP, h as u32)],
                size,
                opens,
            );
        }
        add("max_n MAX_N".into(), vec![p64(H_MAX_N, MAX_N)], size, opens);
    }

    // Garbage in what open does not read: it opens; the calls must cope.
    let c = |f: usize| CONTROL + f;
    let p = |f: usize| PUBLISHED + f;
    let lane3 = LANES + 3 * size_of::<Lane>();
    let words: Vec<(&str, (usize, Vec<u8>))> = vec![
        (
            "kill 0xffffffff",
            p32(c(offset_of!(Control, kill)), u32::MAX),
        ),
        ("kill 2", p32(c(offset_of!(Control, kill)), 2)),
        (
            "waiters 0x7fffffff",
            p32(c(offset_of!(Control, waiters)), 0x7fff_ffff),
        ),
        (
            "epoch 0xffffffff",
            p32(c(offset_of!(Control, epoch)), u32::MAX),
        ),
        (
            "run_id 0xffffffff",
            p32(c(offset_of!(Control, run_id)), u32::MAX),
        ),
        (
            "ever_started 7",
            p32(c(offset_of!(Control, ever_started)), 7),
        ),
        (
            "monitor_pid 0xffffffff",
            p32(c(offset_of!(Control, monitor_pid)), u32::MAX),
        ),
        (
            "run_start_ns MIN",
            p64(c(offset_of!(Control, run_start_ns)), i64::MIN as u64),
        ),
        (
            "run_start_ns MAX",
            p64(c(offset_of!(Control, run_start_ns)), i64::MAX as u64),
        ),
        (
            "runtime_ns MAX",
            p64(c(offset_of!(Control, runtime_ns)), i64::MAX as u64),
        ),
        (
            "runtime_ns MIN",
            p64(c(offset_of!(Control, runtime_ns)), i64::MIN as u64),
        ),
        (
            "runtime_ns -1",
            p64(c(offset_of!(Control, runtime_ns)), u64::MAX),
        ),
        (
            "last_stop_ns MAX",
            p64(c(offset_of!(Control, last_stop_ns)), i64::MAX as u64),
        ),
        (
            "last_stop_ns MIN",
            p64(c(offset_of!(Control, last_stop_ns)), i64::MIN as u64),
        ),
        (
            "latest MAX",
            p64(p(offset_of!(Published, latest)), u64::MAX),
        ),
        (
            "lo_ns MIN",
            p64(p(offset_of!(Published, lo_ns)), i64::MIN as u64),
        ),
        (
            "lo_ns MAX",
            p64(p(offset_of!(Published, lo_ns)), i64::MAX as u64),
        ),
        (
            "hi_ns MAX",
            p64(p(offset_of!(Published, hi_ns)), i64::MAX as u64),
        ),
        ("lost MAX", p64(p(offset_of!(Published, lost)), u64::MAX)),
        (
            "monitor status 2 (panicked)",
            p32(p(offset_of!(Published, status)), 2),
        ),
        (
            "monitor status 99",
            p32(p(offset_of!(Published, status)), 99),
        ),
        (
            "heartbeat MIN",
            p64(p(offset_of!(Published, heartbeat_ns)), i64::MIN as u64),
        ),
        (
            "heartbeat MAX",
            p64(p(offset_of!(Published, heartbeat_ns)), i64::MAX as u64),
        ),
        ("tat all ones", (TAT, vec![0xff; 16])),
        ("tat 0", (TAT, vec![0; 16])),
        ("tat 1<<126", (TAT, (1u128 << 126).to_ne_bytes().to_vec())),
        ("head MAX", p64(HEAD, u64::MAX)),
        ("head 0", p64(HEAD, 0)),
        ("pace thawed MAX", p64(THAWED, i64::MAX as u64)),
        ("pace frozen MAX", p64(FROZEN, i64::MAX as u64)),
        ("pace frozen MIN", p64(FROZEN, i64::MIN as u64)),
        ("confirmed MAX", p64(CONFIRMED, u64::MAX)),
        ("confirmed 0", p64(CONFIRMED, 0)),
        (
            "lane 0 head MAX",
            p64(LANES + offset_of!(Lane, head), u64::MAX),
        ),
        (
            "lane 0 tail MAX",
            p64(LANES + offset_of!(Lane, tail), u64::MAX),
        ),
        (
            "lane 3 head 1<<40",
            p64(lane3 + offset_of!(Lane, head), 1 << 40),
        ),
        (
            "lane 0 entry 0 all ones",
            (LANES + offset_of!(Lane, ring), vec![0xff; 16]),
        ),
    ];
    for (what, patch) in words {
        add(what.into(), vec![patch], size, opens);
    }
    // Whole regions of random bytes.
    for (what, from, to) in [
        ("schedule state", TAT, LANES),
        ("lanes", LANES, shared as usize),
        ("ring", shared as usize, size as usize),
    ] {
        if to > from {
            let fill: Vec<u8> = (from..to).map(|_| rng.byte()).collect();
            add(
                format!("random {what} [{from}, {to})"),
                vec![(from, fill)],
                size,
                opens,
            );
        }
    }
    // A few random bytes over the header (and the run word).
    for _ in 0..60 {
        let mut patches = Vec::new();
        for _ in 0..1 + rng.below(6) {
            let off = if rng.below(8) == 0 {
                C_RUN + rng.below(8) as usize
            } else {
                HEADER + rng.below(size_of::<Header>() as u64) as usize
            };
            patches.push((off, vec![rng.byte()]));
        }
        let magic_zero = (0..8).all(|i| {
            patches
                .iter()
                .rev()
                .find(|(off, _)| *off == H_MAGIC + i)
                .map_or(base[H_MAGIC + i], |(_, v)| v[0])
                == 0
        });
        if magic_zero {
            patches.push((H_MAGIC, vec![0x5a])); // see never_finished_objects
        }
        let at: Vec<usize> = patches.iter().map(|p| p.0).collect();
        add(
            format!("random header bytes at {at:?}"),
            patches,
            size,
            None,
        );
    }
    // Random bytes in the control and statistics lines, then anywhere past
    // the header.
    for i in 0..100 {
        let (lo, hi, most) = if i < 20 {
            (CONTROL as u64, TAT as u64, 24)
        } else {
            (CONTROL as u64, size, 256)
        };
        let from = lo + rng.below(hi - lo);
        let n = (1 + rng.below(most)).min(hi - from);
        let fill: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
        add(
            format!("random bytes [{from}, {})", from + n),
            vec![(from as usize, fill)],
            size,
            None,
        );
    }
    out
}

/// The calls made on an opened variant, in order: (name, statuses allowed).
const CALLS: [(&str, &[i64]); 21] = [
    ("is_running", &[OK]),
    ("summary", &[OK]),
    ("has_fuel", &[OK, NO_FUEL, KILLED, CORRUPT]),
    ("await_fuel(10 ms)", &[OK, TIMEOUT, KILLED, CORRUPT]),
    ("emit", &[OK, WRONG_STATE, NOT_RUNNING, KILLED]),
    ("latest", &[OK, MONITOR_OFF]),
    ("mean", &[OK, MONITOR_OFF]),
    ("lo_hi", &[OK, MONITOR_OFF]),
    ("start", &[OK, WRONG_STATE]),
    ("set_rate", &[OK, INVALID_ARGUMENT, CORRUPT]),
    ("has_fuel", &[OK, NO_FUEL, KILLED, CORRUPT]),
    ("await_fuel(10 ms)", &[OK, TIMEOUT, KILLED, CORRUPT]),
    ("emit", &[OK, WRONG_STATE, NOT_RUNNING, KILLED]),
    ("latest", &[OK, MONITOR_OFF]),
    ("hi_lo", &[OK, MONITOR_OFF]),
    ("kill", &[OK]),
    ("has_fuel", &[OK, NO_FUEL, KILLED, CORRUPT]),
    ("stop", &[OK, WRONG_STATE]),
    ("start", &[OK, WRONG_STATE]),
    ("stop", &[OK, WRONG_STATE]),
    ("drop", &[OK]),
];

/// Words per variant in the report mapping: [0] open status + 1, [1] open
/// time, then per call its status + 1 (0: not reached) and its time, then
/// the panics (count, then the first one's text).
const SLOT: usize = PANICS + 1 + PANIC_WORDS;
const PANICS: usize = 2 + 2 * CALLS.len();
const PANIC_WORDS: usize = 24;

/// In a variant's child: every panic, in any thread (the monitor's too), is
/// counted in the report words and the first one described there.
fn record_panics(shm: &Shm, slot: usize) {
    let words: *const AtomicI64 = shm.at(slot + PANICS);
    let words = words as usize;
    std::panic::set_hook(Box::new(move |info| {
        let w = |i: usize| {
            let p = (words as *const AtomicI64).wrapping_add(i);
            // SAFETY: the report words of this variant, in a mapping that
            // stays mapped until the child's `_exit` (1 + PANIC_WORDS words
            // from `words`, i < that).
            unsafe { &*p }
        };
        if w(0).fetch_add(1, SeqCst) != 0 {
            return;
        }
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let text = format!(
            "thread {:?} at {}: {what}",
            std::thread::current().name().unwrap_or("?"),
            info.location().map_or_else(String::new, |l| l.to_string())
        );
        for (i, chunk) in text.as_bytes().chunks(8).take(PANIC_WORDS).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            w(1 + i).store(i64::from_ne_bytes(b), SeqCst);
        }
    }));
}

/// The first panic a variant's child recorded.
fn panic_text(shm: &Shm, slot: usize) -> String {
    let bytes: Vec<u8> = (0..PANIC_WORDS)
        .flat_map(|i| shm.get(slot + PANICS + 1 + i).to_ne_bytes())
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The child's side: opens `name` and makes the calls, recording each.
fn probe(name: &str, shm: &Shm, slot: usize) {
    let rec = |i: usize, code: i64, t: i64| {
        shm.set(slot + i, code + 1);
        shm.set(slot + i + 1, t);
    };
    let t0 = now();
    let opened = catch_unwind(|| Throttle::open(name, &Options::default()));
    let t = match opened {
        Ok(Ok(t)) => {
            rec(0, OK, now() - t0);
            t
        }
        Ok(Err(e)) => return rec(0, code(&e), now() - t0),
        Err(_) => return rec(0, PANIC, now() - t0),
    };
    let mut t = Some(t);
    for (i, (call, _)) in CALLS.iter().enumerate() {
        let started = now();
        let r = catch_unwind(AssertUnwindSafe(|| {
            let Some(h) = t.as_ref() else {
                return OK;
            };
            match *call {
                "is_running" => {
                    let _ = (h.is_running(), h.kill_flag_is_set());
                    OK
                }
                "summary" => {
                    let _ = (h.summary(), h.runtime_ns(), h.total_emissions());
                    OK
                }
                "has_fuel" => code_of(&h.has_fuel()),
                "await_fuel(10 ms)" => code_of(&h.await_fuel(Some(10 * MS))),
                "emit" => code_of(&h.emit(None)),
                "latest" => code_of(&h.latest()),
                "mean" => code_of(&h.mean()),
                "lo_hi" => code_of(&h.lo_hi()),
                "hi_lo" => code_of(&h.hi_lo()),
                "start" => code_of(&h.start()),
                // Half the rate: a change every hardcap makes (WINDOW too).
                "set_rate" => match h.rate() {
                    Ok((max_n, per_ns)) => {
                        code_of(&h.set_rate(max_n, per_ns.saturating_mul(2).min(MAX_PER_NS)))
                    }
                    Err(e) => code(&e),
                },
                "stop" => code_of(&h.stop()),
                "kill" => {
                    h.kill();
                    OK
                }
                _ => {
                    t = None; // "drop"
                    OK
                }
            }
        }));
        rec(2 + 2 * i, r.unwrap_or(PANIC), now() - started);
    }
}

/// How long a call may take: await_fuel(10 ms) and everything else alike
/// (generous: many children run at once on a small machine).
const CALL_BOUND_NS: i64 = 3 * SEC;

/// More than 1,000 damaged copies of real named throttles of every hardcap,
/// each written as a new object and opened in a forked child (5 s alarm):
/// refused with the right status, or opened, and then every call returns a
/// status it may return, within a bounded time, without a crash.
fn corrupt_objects_are_refused_or_survived() -> TestResult {
    let seed = std::env::var("MPT_NAMED_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now() as u64);
    let mut rng = Rng(seed);
    let monitor_only = Options {
        as_throttle: false,
        auto_emit: Some(false),
        ..Options::default()
    };
    let bases = [
        ("LIMIT", 3, options(Hardcap::Limit)),
        ("ONE", 3, options(Hardcap::One)),
        ("NONE", 3, options(Hardcap::None)),
        ("WINDOW", 3, options(Hardcap::Window)),
        ("monitor only", 3, monitor_only),
    ];
    let mut objects = Vec::new();
    let mut all = Vec::new();
    for (i, (tag, max_n, o)) in bases.iter().enumerate() {
        let base = used_object(&format!("corrupt-base{i}"), *max_n, 0.1, o)?;
        all.extend(variants(tag, i, &base, &mut rng));
        objects.push(base);
    }
    check!(all.len() >= 1000, "only {} variants", all.len());
    let shm = Shm::new(all.len() * SLOT);
    let prefix = format!("named-test.{}.v", std::process::id());
    const PARALLEL: usize = 12;
    let mut running: Vec<(usize, libc::pid_t, i64)> = Vec::new();
    let mut exits = vec![Exit::Code(0); all.len()];
    let mut next = 0;
    let t0 = now();
    while next < all.len() || !running.is_empty() {
        while running.len() < PARALLEL && next < all.len() {
            let v = &all[next];
            let name = format!("{prefix}{next}");
            write_object(&name, &v.bytes(&objects), v.len)?;
            let shm_ref = &shm;
            let slot = next * SLOT;
            let pid = fork_child(move || {
                // SAFETY: alarm only schedules SIGALRM for this process,
                // whose default action ends it: the child's watchdog.
                unsafe { libc::alarm(5) };
                record_panics(shm_ref, slot);
                probe(&name, shm_ref, slot);
                0
            });
            running.push((next, pid, now()));
            next += 1;
        }
        let mut status = 0;
        // SAFETY: `status` is valid for writing; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            if let Some(at) = running.iter().position(|r| r.1 == pid) {
                let (i, _, _) = running.swap_remove(at);
                exits[i] = if libc::WIFEXITED(status) {
                    Exit::Code(libc::WEXITSTATUS(status))
                } else {
                    Exit::Signal(libc::WTERMSIG(status))
                };
                let _ = std::fs::remove_file(shm_path(&format!("{prefix}{i}")));
            }
            continue;
        }
        // Children are bounded by their alarm; this is the backstop.
        for r in running.iter_mut() {
            if now() - r.2 > 8 * SEC {
                // SAFETY: SIGKILL to our own child, reaped above.
                unsafe { libc::kill(r.1, libc::SIGKILL) };
            }
        }
        sleep_ms(1);
    }
    let elapsed = now() - t0;

    let mut failures = Vec::new();
    let (mut refused, mut opened, mut slowest) = (0, 0, (0, String::new()));
    let mut seen_codes = std::collections::BTreeMap::<String, usize>::new();
    for (i, v) in all.iter().enumerate() {
        let s = i * SLOT;
        let open = shm.get(s) - 1;
        let mut problems = Vec::new();
        match exits[i] {
            Exit::Code(0) => {}
            Exit::Signal(sig) if sig == libc::SIGALRM => {
                problems.push("hung: killed by its 5 s alarm".to_string());
            }
            other => problems.push(format!("child {other:?}")),
        }
        let ok_open = match v.expect {
            Expect::Is(want) => open == want,
            Expect::OkOrCorrupt => open == OK || open == CORRUPT,
        };
        if !ok_open {
            problems.push(format!(
                "open said {} (expected {:?} i.e. {})",
                status_name(open),
                v.expect,
                match v.expect {
                    Expect::Is(c) => status_name(c),
                    Expect::OkOrCorrupt => "Ok or Corrupt".into(),
                }
            ));
        }
        if shm.get(s + 1) > CALL_BOUND_NS {
            problems.push(format!("open took {:.2} s", secs(shm.get(s + 1))));
        }
        if open == OK {
            opened += 1;
            for (c, (call, allowed)) in CALLS.iter().enumerate() {
                let got = shm.get(s + 2 + 2 * c) - 1;
                let took = shm.get(s + 3 + 2 * c);
                if took > slowest.0 {
                    slowest = (took, format!("{call} of {}", v.desc));
                }
                if got < 0 {
                    problems.push(format!("{call} never returned (call {c})"));
                    break;
                }
                *seen_codes
                    .entry(format!("{call} {}", status_name(got)))
                    .or_default() += 1;
                if !allowed.contains(&got) {
                    problems.push(format!("{call} returned {}", status_name(got)));
                }
                if took > CALL_BOUND_NS {
                    problems.push(format!("{call} took {:.2} s", secs(took)));
                }
            }
        } else if open > 0 {
            refused += 1;
            *seen_codes
                .entry(format!("open {}", status_name(open)))
                .or_default() += 1;
        }
        let panics = shm.get(s + PANICS);
        if panics > 0 {
            problems.push(format!(
                "the library panicked {panics} time(s), first in {}",
                panic_text(&shm, s)
            ));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", v.desc, problems.join("; ")));
        }
    }
    note!(
        "seed {seed} (MPT_NAMED_SEED={seed} replays it): {} variants in {:.1} s; {refused} \
         refused, {opened} opened; slowest call {:.3} s ({})",
        all.len(),
        secs(elapsed),
        secs(slowest.0),
        slowest.1
    );
    note!(
        "statuses: {}",
        seen_codes
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    check!(
        failures.is_empty(),
        "{} of {} variants failed (seed {seed}):\n      {}",
        failures.len(),
        all.len(),
        failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n      ")
    );
    Ok(())
}

/// `Control::waiters` is shared memory too: a damaged count (here
/// 0xffffffff, which the next sleeper's increment wraps to 0) must not make
/// `kill` skip the wake-up: a sleeper is woken at once, not at its timeout.
fn corrupt_waiter_count_still_wakes() -> TestResult {
    let mut bytes = used_object("waiters-base", 5, 1.0, &Options::default())?;
    put32(&mut bytes, CONTROL + offset_of!(Control, waiters), u32::MAX);
    // The copy was stopped, which sets the kill flag: clear it, so that the
    // sleeper sleeps.
    put32(&mut bytes, CONTROL + offset_of!(Control, kill), 0);
    let n = Name::new("waiters");
    write_object(&n, &bytes, bytes.len() as u64)?;
    let t = Throttle::open(&n, &Options::default()).map_err(|e| format!("open: {e}"))?;
    let (r, waited) = std::thread::scope(|s| {
        let sleeper = s.spawn(|| {
            let t0 = now();
            // Not started: it sleeps until the start, a kill or 2 s.
            let r = t.await_fuel(Some(2 * SEC));
            (r, now() - t0)
        });
        sleep_ms(100);
        t.kill();
        sleeper.join().unwrap_or((Err(Error::NoFuel), 0))
    });
    note!("sleeper: {r:?} after {:.3} s", secs(waited));
    check!(
        matches!(r, Err(Error::Killed)) && waited < SEC,
        "a sleeper was not woken by kill: {r:?} after {:.2} s (the waiters count wrapped to 0 \
         so kill skipped FUTEX_WAKE)",
        secs(waited)
    );
    Ok(())
}

// ---------------------------------------------------------------- the runner

/// Removes every `/dev/shm/mp_throttle.named-test.<pid>.*` left behind.
fn remove_leftovers() {
    common::remove_objects("named-test");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let code = child_main(&args[2..]);
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    }
    let tests: &[Test] = &[
        ("open_same_process", open_same_process, 10),
        ("open_from_forked_child", open_from_forked_child, 15),
        (
            "open_from_unrelated_process",
            open_from_unrelated_process,
            20,
        ),
        (
            "concurrent_create_unrelated",
            concurrent_create_unrelated,
            20,
        ),
        ("concurrent_create_rounds", concurrent_create_rounds, 30),
        ("mismatch_and_adopt", mismatch_and_adopt, 10),
        ("unlink_semantics", unlink_semantics, 15),
        ("names_are_validated", names_are_validated, 10),
        (
            "permission_denied_for_other_user",
            permission_denied_for_other_user,
            15,
        ),
        (
            "mode_is_0600_whatever_the_umask",
            mode_is_0600_whatever_the_umask,
            15,
        ),
        ("never_finished_objects", never_finished_objects, 15),
        (
            "corrupt_objects_are_refused_or_survived",
            corrupt_objects_are_refused_or_survived,
            60,
        ),
        (
            "corrupt_waiter_count_still_wakes",
            corrupt_waiter_count_still_wakes,
            10,
        ),
    ];
    common::run(
        tests,
        Overrun {
            cleanup: remove_leftovers,
            done: "",
        },
        remove_leftovers,
    );
}
