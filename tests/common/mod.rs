//! The harness shared by the multi-process test binaries (tests/fork.rs,
//! tests/named.rs, tests/chaos.rs; each `harness = false`): the test runner
//! and its watchdog, shared memory between processes, forked children,
//! throttle handles and small time helpers.

// Shared by several test binaries: each compiles this module and uses only
// part of it.
#![allow(dead_code)]

use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::throttle::{
    MptSummary, MptThrottle, mpt_await_fuel, mpt_has_fuel, mpt_is_running, mpt_kill,
    mpt_kill_flag_is_set, mpt_start, mpt_stop, mpt_throttle_free,
};
use std::cell::RefCell;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicI64, AtomicUsize};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub const MS: i64 = 1_000_000;
pub const SEC: i64 = 1_000_000_000;

pub const OK: i64 = MptStatus::Ok as i64;
pub const TIMEOUT: i64 = MptStatus::Timeout as i64;
pub const KILLED: i64 = MptStatus::Killed as i64;
pub const NO_FUEL: i64 = MptStatus::NoFuel as i64;

pub type TestResult = Result<(), String>;

/// Fails the test (returns `Err`) with the line and a message.
macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        let ok: bool = $cond;
        if !ok {
            return Err(format!("line {}: {}", line!(), format!($($arg)*)));
        }
    };
}
pub(crate) use check;

/// A figure to print under the test's result line.
macro_rules! note {
    ($($arg:tt)*) => { $crate::common::add_note(format!($($arg)*)) };
}
pub(crate) use note;

thread_local! {
    static NOTES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

pub fn add_note(s: String) {
    NOTES.with(|n| n.borrow_mut().push(s));
}

// ---------------------------------------------------------------- time

/// Removes every `/dev/shm/mp_throttle.<tag>.<pid>.*` this process left
/// behind (the names its tests make carry its pid).
pub fn remove_objects(tag: &str) {
    let prefix = format!("mp_throttle.{tag}.{}.", std::process::id());
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The C boundary's last error message of this thread.
pub fn last_error() -> String {
    let mut buf = [0u8; 1024];
    let mut len = 0usize;
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes, `len` for one.
    let st = unsafe {
        mp_throttle::ffi::mpt_last_error_message(buf.as_mut_ptr().cast(), buf.len(), &mut len)
    };
    if st != MptStatus::Ok {
        return String::new();
    }
    String::from_utf8_lossy(&buf[..len.min(buf.len() - 1)]).into_owned()
}

pub fn now() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * SEC + ts.tv_nsec
}

pub fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

pub fn sleep_ns(ns: i64) {
    if ns > 0 {
        std::thread::sleep(Duration::from_nanos(ns as u64));
    }
}

/// Sleeps until CLOCK_MONOTONIC reads `t` (at once if it is past).
pub fn sleep_until(t: i64) {
    sleep_ns(t - now());
}

/// Nanoseconds in milliseconds, for messages.
pub fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

pub fn getpid() -> i64 {
    // SAFETY: getpid has no preconditions.
    i64::from(unsafe { libc::getpid() })
}

/// xorshift64*: small, allocation-free, fine for picking keys and victims.
#[derive(Clone, Copy)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The seed of a randomised test: `MPT_CHAOS_SEED`, or the clock.
pub fn seed() -> u64 {
    std::env::var("MPT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now() as u64 ^ ((getpid() as u64) << 32))
}

// ---------------------------------------------------------------- the C API

/// A throttle handle. Every call but `free` is safe from any thread and any
/// process that inherited it (the header's rule for `const mpt_throttle *`).
/// Each binary adds the calls only it needs in its own `impl H`.
#[derive(Clone, Copy)]
pub struct H(pub *mut MptThrottle);

// SAFETY: the C API makes every call on a `const mpt_throttle *` safe from
// any thread; the only non-const call (free) is made by the owner alone.
unsafe impl Send for H {}
// SAFETY: as for Send.
unsafe impl Sync for H {}

impl H {
    pub fn start(self) -> MptStatus {
        // SAFETY: a live handle.
        unsafe { mpt_start(self.0) }
    }

    pub fn stop(self) -> (MptStatus, MptSummary) {
        let mut s = MptSummary::default();
        // SAFETY: a live handle; `s` is valid for writing.
        let st = unsafe { mpt_stop(self.0, &mut s) };
        (st, s)
    }

    pub fn await_fuel(self, timeout_s: f64) -> (MptStatus, i64) {
        let mut g = 0;
        // SAFETY: a live handle; `g` is valid for writing.
        let st = unsafe { mpt_await_fuel(self.0, timeout_s, &mut g) };
        (st, g)
    }

    pub fn has_fuel(self) -> (MptStatus, i64) {
        let mut g = 0;
        // SAFETY: a live handle; `g` is valid for writing.
        let st = unsafe { mpt_has_fuel(self.0, &mut g) };
        (st, g)
    }

    pub fn kill(self) -> MptStatus {
        // SAFETY: a live handle.
        unsafe { mpt_kill(self.0) }
    }

    pub fn is_running(self) -> bool {
        let mut b = false;
        // SAFETY: a live handle; `b` is valid for writing.
        let st = unsafe { mpt_is_running(self.0, &mut b) };
        st == MptStatus::Ok && b
    }

    pub fn kill_flag(self) -> bool {
        let mut b = false;
        // SAFETY: a live handle; `b` is valid for writing.
        let st = unsafe { mpt_kill_flag_is_set(self.0, &mut b) };
        st == MptStatus::Ok && b
    }

    /// Releases this process's handle (in a child: its inherited copy).
    pub fn free(self) -> MptStatus {
        // SAFETY: a live handle that no other thread of this process uses.
        unsafe { mpt_throttle_free(self.0) }
    }
}

/// The parent's handle: on drop (also when a test fails) it kills, stops and
/// frees, so no thread or process stays blocked on it.
pub struct Owned(pub H);

impl Owned {
    pub fn h(&self) -> H {
        self.0
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let h = self.0;
        let _ = h.kill();
        let _ = h.stop();
        let _ = h.free();
    }
}

// ---------------------------------------------------------------- shared memory

/// Zeroed `i64` words in a `MAP_SHARED` anonymous mapping: what a child
/// writes there, the parent reads.
pub struct Shm {
    ptr: *mut AtomicI64,
    len: usize,
}

// SAFETY: the words are atomics; the mapping lives as long as the value.
unsafe impl Sync for Shm {}

impl Shm {
    pub fn new(len: usize) -> Shm {
        let bytes = len.max(1) * 8;
        // SAFETY: an anonymous shared mapping at an address of the kernel's
        // choice; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap failed");
        Shm {
            ptr: p.cast(),
            len: len.max(1),
        }
    }

    pub fn at(&self, i: usize) -> &AtomicI64 {
        assert!(i < self.len, "shm index {i} out of {}", self.len);
        let p = self.ptr.wrapping_add(i);
        // SAFETY: in bounds (checked) of a live mapping of zero-initialised
        // (so valid) AtomicI64 words, aligned by mmap's page alignment.
        unsafe { &*p }
    }

    pub fn get(&self, i: usize) -> i64 {
        self.at(i).load(SeqCst)
    }

    pub fn set(&self, i: usize, v: i64) {
        self.at(i).store(v, SeqCst);
    }

    pub fn words(&self, from: usize, n: usize) -> Vec<i64> {
        (from..from + n).map(|i| self.get(i)).collect()
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer referenced.
        unsafe { libc::munmap(self.ptr.cast(), self.len * 8) };
    }
}

// ---------------------------------------------------------------- children

/// Every child not yet reaped, for the watchdog.
static LIVE: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<libc::pid_t>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGKILLs every child in `LIVE` (for the watchdog: never blocks on the
/// lock).
pub fn kill_live() {
    if let Ok(pids) = LIVE.try_lock() {
        for &pid in pids.iter() {
            // SAFETY: SIGKILL to our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The children of one test. Dropping it SIGKILLs and reaps any left.
pub struct Kids {
    pids: Vec<libc::pid_t>,
    /// How long `wait` sleeps between two polls.
    poll_ns: i64,
}

impl Kids {
    /// `wait` polls every millisecond.
    pub fn new() -> Kids {
        Kids::polling_every(MS)
    }

    /// `wait` polls every `poll_ns`.
    pub fn polling_every(poll_ns: i64) -> Kids {
        Kids {
            pids: Vec::new(),
            poll_ns,
        }
    }

    /// Forks a child that runs `body` and `_exit`s with its value (101 if it
    /// panicked).
    pub fn spawn(&mut self, body: impl FnOnce() -> i32) -> libc::pid_t {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: the child runs only `body` (library calls and atomics on
        // shared memory) and leaves with `_exit`, never returning into the
        // harness.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(101);
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        assert!(pid > 0, "fork failed: {}", std::io::Error::last_os_error());
        self.pids.push(pid);
        live().push(pid);
        pid
    }

    /// SIGKILLs and reaps one child.
    pub fn kill(&mut self, pid: libc::pid_t) {
        kill_and_reap(pid);
        self.forget(pid);
    }

    pub fn forget(&mut self, pid: libc::pid_t) {
        self.pids.retain(|&p| p != pid);
        live().retain(|&p| p != pid);
    }

    /// The exit code of `pid`, waiting at most `timeout_ns`. A child still
    /// running then is killed with SIGKILL and reported.
    pub fn wait(&mut self, pid: libc::pid_t, timeout_ns: i64) -> Result<i32, String> {
        let deadline = now() + timeout_ns;
        loop {
            let mut status = 0;
            // SAFETY: `status` is valid for writing; WNOHANG never blocks.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                self.forget(pid);
                if libc::WIFEXITED(status) {
                    return Ok(libc::WEXITSTATUS(status));
                }
                return Err(format!(
                    "child {pid} died of signal {}",
                    libc::WTERMSIG(status)
                ));
            }
            if r < 0 {
                self.forget(pid);
                return Err(format!(
                    "waitpid({pid}): {}",
                    std::io::Error::last_os_error()
                ));
            }
            if now() > deadline {
                kill_and_reap(pid);
                self.forget(pid);
                return Err(format!(
                    "child {pid} still running after {} ms: killed with SIGKILL",
                    timeout_ns / MS
                ));
            }
            std::thread::sleep(Duration::from_nanos(self.poll_ns as u64));
        }
    }

    pub fn wait_ok(&mut self, pid: libc::pid_t, timeout_ns: i64) -> TestResult {
        match self.wait(pid, timeout_ns)? {
            0 => Ok(()),
            code => Err(format!("child {pid} exited with code {code}")),
        }
    }

    /// Waits for every child (together at most `timeout_ns`); all must exit
    /// 0. Returns when the last one was reaped.
    pub fn wait_all_ok(&mut self, timeout_ns: i64) -> Result<i64, String> {
        let deadline = now() + timeout_ns;
        let mut errors = Vec::new();
        for pid in self.pids.clone() {
            if let Err(e) = self.wait_ok(pid, (deadline - now()).max(MS)) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(now())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for pid in self.pids.clone() {
            kill_and_reap(pid);
            self.forget(pid);
        }
    }
}

pub fn kill_and_reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: SIGKILL to our own unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // SAFETY: `status` is valid for writing; the child is dead or dying.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// Polls `cond` every millisecond for at most `timeout_ns`.
pub fn wait_for(timeout_ns: i64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = now() + timeout_ns;
    loop {
        if cond() {
            return true;
        }
        if now() > deadline {
            return false;
        }
        sleep_ms(1);
    }
}

// ---------------------------------------------------------------- checks

/// Most grants in any half-open window `[t, t + len)` (of sorted times).
pub fn max_in_window(g: &[i64], len: i64) -> usize {
    let mut best = 0;
    let mut j = 0;
    for i in 0..g.len() {
        j = j.max(i);
        while j < g.len() && g[j] < g[i] + len {
            j += 1;
        }
        best = best.max(j - i);
    }
    best
}

// ---------------------------------------------------------------- the runner

static DEADLINE: AtomicI64 = AtomicI64::new(0);
static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);

fn raw_print(s: &str) {
    // SAFETY: writes from a valid buffer to stdout, without Rust's stdout
    // lock (which a stuck main thread might hold).
    unsafe { libc::write(1, s.as_ptr().cast(), s.len()) };
}

/// A test: its name, its body and its time bound in seconds.
pub type Test = (&'static str, fn() -> TestResult, i64);

/// What the watchdog does before it ends an overrunning binary: `cleanup`
/// runs first (never blocking), then `done` completes the message
/// "FAILED (watchdog: the test overran its time bound...".
#[derive(Clone, Copy)]
pub struct Overrun {
    pub cleanup: fn(),
    pub done: &'static str,
}

/// Ends the binary if a test overruns its bound (after `overrun.cleanup`).
fn watchdog(overrun: Overrun) {
    loop {
        sleep_ms(50);
        let d = DEADLINE.load(SeqCst);
        if d == 0 || now() < d {
            continue;
        }
        (overrun.cleanup)();
        raw_print(&format!(
            "FAILED (watchdog: the test overran its time bound{})\n{} passed, {} failed\n",
            overrun.done,
            PASSED.load(SeqCst),
            FAILED.load(SeqCst) + 1
        ));
        // SAFETY: ends the process at once.
        unsafe { libc::_exit(1) };
    }
}

/// Runs each test whose name contains a word of the command line (every
/// test without one) in turn on the main thread, under a watchdog; prints
/// `test <name> ... ok` / `FAILED`, runs `at_end`, prints
/// `N passed, N failed` and exits non-zero if any failed.
pub fn run(tests: &[Test], overrun: Overrun, at_end: fn()) -> ! {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    std::thread::spawn(move || watchdog(overrun));
    let started = now();
    for (name, test, bound_s) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        print!("test {name} ... ");
        let _ = std::io::stdout().flush();
        let t0 = now();
        DEADLINE.store(t0 + bound_s * SEC, SeqCst);
        let outcome = catch_unwind(test);
        DEADLINE.store(0, SeqCst);
        let secs = (now() - t0) as f64 / 1e9;
        match outcome {
            Ok(Ok(())) => {
                PASSED.fetch_add(1, SeqCst);
                println!("ok ({secs:.2} s)");
            }
            Ok(Err(e)) => {
                FAILED.fetch_add(1, SeqCst);
                println!("FAILED ({secs:.2} s)\n    {e}");
            }
            Err(p) => {
                FAILED.fetch_add(1, SeqCst);
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("FAILED (panicked: {msg})");
            }
        }
        for n in NOTES.with(|n| std::mem::take(&mut *n.borrow_mut())) {
            println!("    {n}");
        }
    }
    at_end();
    let (passed, failed) = (PASSED.load(SeqCst), FAILED.load(SeqCst));
    println!("total time {:.1} s", (now() - started) as f64 / 1e9);
    println!("{passed} passed, {failed} failed");
    let _ = std::io::stdout().flush();
    std::process::exit(if failed > 0 { 1 } else { 0 });
}
