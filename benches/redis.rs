//! The Redis store (`Throttle::connect`) against a `redis-server` this
//! bench starts on a free loopback port (`--save '' --appendonly no`) and
//! stops at the end. Every figure is printed beside a floor measured in the
//! same run, on the same server:
//!
//! 1. Grants per second with 1, 2, 4 and 8 forked processes, each
//!    connected on its own after the fork, each calling `has_fuel` as fast
//!    as it can on a LIMIT throttle whose rate never binds (10^9 per 1 s);
//!    beside the same children on a shared-memory throttle
//!    (`Throttle::with_options`, made before the fork), and beside the
//!    floor: `redis-benchmark` running a minimal GCRA script (TIME, GET,
//!    SET) through EVALSHA (and EVAL) with as many clients as there are
//!    processes.
//! 2. Per-grant overhead, p50 and p99, of `has_fuel` and `await_fuel` on a
//!    tank that always has fuel, interleaved call by call with a PING (the
//!    floor) and with the minimal GCRA script (EVALSHA), each on a
//!    connection of its own, in one process.
//! 3. Accuracy at 100, 1,000 and 10,000 grants/s (hardcaps ONE and
//!    LIMIT): 1 and 4 forked processes loop `await_fuel(None)` for about
//!    2 s; the grants they got against the exact schedule, 1 + floor(runtime
//!    x rate), with the runtime the server's (from the stop's summary).
//! 4. Kill reaching 8 waiters in 8 other processes (each connected on its
//!    own, blocked in `await_fuel(None)` on a throttle whose only unit is
//!    taken): latency from `kill()` to each waiter's return with `Killed`,
//!    over 30 rounds; the floor is a PUBLISH reaching 8 processes
//!    subscribed with the `redis` crate, in rounds alternating with these.
//! 5. A baseline: the widely copied float-millisecond GCRA in Lua
//!    (`benches/redis_gcra_float.lua`), driven through EVALSHA by a client
//!    loop with explicit timestamps over one hour of virtual time, at 3,
//!    100, 1,000 and 10,000 per second, against the exact count; beside the
//!    store's own `reserve.lua` driven the same way (its `TIME` replaced by
//!    the timestamps: `src/` is read, not changed). Each script runs
//!    through Redis for up to 20,000 grants; a replica in Rust (f64, resp.
//!    integers) that matched it grant for grant over those runs the rest of
//!    the hour.
//!
//! Run: `cargo bench --bench redis` (about 1.5 minutes), or some sections only:
//! `cargo bench --bench redis -- 1 4`. Needs
//! `/usr/bin/redis-server` and `redis-benchmark` (Debian packages
//! redis-server, redis-tools). Knobs: `MPT_BENCH_SECONDS` (each phase of 1
//! and 3, default 2), `MPT_BENCH_REPS` (kill rounds, default 30),
//! `MPT_BENCH_SAMPLES` (samples per call in 2, default 10,000),
//! `MPT_BENCH_MONITOR=1` (throttles with the monitor on: every emission's
//! time then goes to Redis, for every host's `lo_hi` and `hi_lo`).
//!
//! Throttles are made with the monitor off (`Options::monitor(false)`,
//! unless `MPT_BENCH_MONITOR=1`) and auto emit on (the default), and only
//! the public API is used, so that the figures stay comparable when
//! reservations are batched.

#[path = "common/mod.rs"]
mod common;

use common::{context, env_f64, env_usize, now_ns, quantile, reap, shared_mem};
use mp_throttle::{Error, Hardcap, Options, Throttle};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64};
use std::time::Duration;

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const MAX_KIDS: usize = 8;
/// A rate that never binds: 10^9 per 1 s, a tank of 1 s (a process
/// preempted between its clock read and its grant is not refused); the
/// Redis store takes it (per is whole microseconds, max_n x per_us = 10^15
/// <= 2^52).
const FREE_N: u64 = 1_000_000_000;
const FREE_PER: Duration = Duration::from_secs(1);
const PROCS: [usize; 4] = [1, 2, 4, 8];
const RATES: [u64; 3] = [100, 1_000, 10_000];
const KILL_WAITERS: usize = 8;

const GOAL_GRANTS_4: f64 = 100_000.0;
const GOAL_OVER_PING_US: f64 = 50.0;
const GOAL_KILL_P99_US: f64 = 5_000.0;

/// The floor of (1) and a row of (2): GCRA in its least form (read TIME,
/// GET the TAT, SET it one microsecond on; never refuses at this rate).
const MIN_GCRA: &str = "local t = redis.call('TIME') local now = t[1] * 1000000 + t[2] \
local tat = tonumber(redis.call('GET', KEYS[1])) or 0 if tat < now then tat = now end \
if tat - now > 1000000 then return 0 end redis.call('SET', KEYS[1], tat + 1) return 1";

fn opts(hardcap: Hardcap) -> Options {
    let monitor = std::env::var("MPT_BENCH_MONITOR").is_ok_and(|v| v == "1");
    Options::new().hardcap(hardcap).monitor(monitor)
}

fn err(what: &str) -> impl Fn(Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn rerr(what: &str) -> impl Fn(redis::RedisError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

// ---------------------------------------------------------------- the server

/// A `redis-server` on a free loopback port, killed when dropped (by the
/// process that started it only: forked children never stop it).
struct Server {
    port: u16,
    child: Option<Child>,
    owner: u32,
}

impl Server {
    fn start() -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?
            .port();
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{REDIS_SERVER}: {e} (Debian package redis-server)"))?;
        let s = Self {
            port,
            child: Some(child),
            owner: std::process::id(),
        };
        let end = now_ns() + 10_000_000_000;
        while !s.answers() {
            if now_ns() > end {
                return Err(format!(
                    "redis-server did not answer on port {port} in 10 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(s)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("+PONG")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::process::id() != self.owner {
            return;
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------- children

/// Per child, on its own cache line.
#[repr(C, align(64))]
struct Slot {
    count: AtomicU64,
    bad: AtomicU64,
    /// When its first grant returned (monotonic ns; 0: none).
    first_ns: AtomicI64,
    /// When its wait returned (monotonic ns).
    ret_ns: AtomicI64,
    /// -1 running; 0 returned as expected; 1 otherwise.
    status: AtomicI32,
    tid: AtomicI32,
}

#[repr(C, align(64))]
struct Flags {
    ready: AtomicU32,
    go: AtomicU32,
    stop: AtomicU32,
    returned: AtomicU32,
}

/// The page the parent and its children share.
#[repr(C)]
struct Board {
    f: Flags,
    slots: [Slot; MAX_KIDS],
}

impl Board {
    fn new() -> &'static Board {
        let p = shared_mem(std::mem::size_of::<Board>()).cast::<Board>();
        // SAFETY: a zeroed, page-aligned mapping the size of a Board (all
        // atomics, for which zero is valid), never unmapped.
        unsafe { &*p }
    }

    fn reset(&self) {
        for a in [&self.f.ready, &self.f.go, &self.f.stop, &self.f.returned] {
            a.store(0, SeqCst);
        }
        for s in &self.slots {
            s.count.store(0, SeqCst);
            s.bad.store(0, SeqCst);
            s.first_ns.store(0, SeqCst);
            s.ret_ns.store(0, SeqCst);
            s.status.store(-1, SeqCst);
            s.tid.store(0, SeqCst);
        }
    }

    /// Waits until `n` children are ready (at most `secs`).
    fn wait_ready(&self, n: usize, secs: u64) -> bool {
        let end = now_ns() + secs as i64 * 1_000_000_000;
        while (self.f.ready.load(Acquire) as usize) < n {
            if now_ns() > end {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }

    /// Waits (at most `secs`) until every one of the first `n` children has
    /// left its wait, then returns (a child exits only then, so that an
    /// exiting process takes no core from one still waking).
    fn linger(&self, n: usize, secs: u64) {
        let end = now_ns() + secs as i64 * 1_000_000_000;
        while (self.f.returned.load(Acquire) as usize) < n && now_ns() < end {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// Forks a child that runs `body` and leaves with its code (101 if it
/// panicked), never returning into the parent's code.
fn spawn(body: impl FnOnce() -> i32) -> libc::pid_t {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the child runs only `body` (library calls, a Redis client and
    // atomics in a shared mapping) and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(101);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    pid
}

fn reap_all(pids: Vec<libc::pid_t>) -> bool {
    let mut clean = true;
    for pid in pids {
        clean &= reap(pid, Duration::from_secs(20));
    }
    clean
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Whether thread `tid` sleeps (state S) now.
fn asleep(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "S"))
            .unwrap_or(false)
    })
}

/// Waits (at most 10 s) until the first `n` children published their
/// thread and it sleeps.
fn all_asleep(board: &Board, n: usize) -> bool {
    let end = now_ns() + 10_000_000_000;
    while now_ns() < end {
        if board.slots[..n].iter().all(|s| {
            let tid = s.tid.load(Acquire);
            tid != 0 && s.status.load(Acquire) == -1 && asleep(tid)
        }) {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

// ---------------------------------------------------------------- formatting

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

fn signed(n: i128) -> String {
    if n > 0 {
        format!("+{}", thousands(n))
    } else {
        thousands(n)
    }
}

fn yes(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn host() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("?".to_owned(), |(_, m)| m.trim().to_owned());
    let logical = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let cores: std::collections::BTreeSet<(String, String)> = {
        let (mut phys, mut set) = (String::new(), std::collections::BTreeSet::new());
        for l in cpuinfo.lines() {
            if let Some((k, v)) = l.split_once(':') {
                match k.trim() {
                    "physical id" => phys = v.trim().to_owned(),
                    "core id" => {
                        set.insert((phys.clone(), v.trim().to_owned()));
                    }
                    _ => {}
                }
            }
        }
        set
    };
    let version = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "- host: {model}, {logical} logical CPUs ({} cores), redis-server `{}`, redis-benchmark `{}`\n",
        if cores.is_empty() {
            "?".into()
        } else {
            cores.len().to_string()
        },
        version(REDIS_SERVER),
        version("redis-benchmark"),
    )
}

// ---------------------------------------------------------------- 1. throughput

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Redis,
    Shm,
}

struct Tp {
    grants: u64,
    wall_s: f64,
    bad: u64,
    min: u64,
    max: u64,
    clean: bool,
}

impl Tp {
    fn rate(&self) -> f64 {
        self.grants as f64 / self.wall_s
    }
}

fn throughput(url: &str, kind: Kind, procs: usize, secs: f64, board: &Board) -> Result<Tp, String> {
    board.reset();
    let name = format!("bench-tp-{}-{procs}", std::process::id());
    let t = match kind {
        Kind::Redis => Throttle::connect(url, &name, FREE_N, FREE_PER, &opts(Hardcap::Limit)),
        Kind::Shm => Throttle::with_options(FREE_N, FREE_PER, &opts(Hardcap::Limit)),
    }
    .map_err(err("make the throttle"))?;
    t.start().map_err(err("start"))?;
    let mut pids = Vec::new();
    for i in 0..procs {
        let (name, shm) = (&name, &t);
        pids.push(spawn(move || {
            let slot = &board.slots[i];
            let connected;
            let t = match kind {
                Kind::Redis => {
                    connected =
                        Throttle::connect(url, name, FREE_N, FREE_PER, &opts(Hardcap::Limit));
                    match &connected {
                        Ok(t) => t,
                        Err(_) => {
                            slot.status.store(1, SeqCst);
                            board.f.ready.fetch_add(1, SeqCst);
                            return 2;
                        }
                    }
                }
                Kind::Shm => shm,
            };
            board.f.ready.fetch_add(1, SeqCst);
            while board.f.go.load(Acquire) == 0 {
                std::thread::sleep(Duration::from_micros(50));
            }
            let (mut ok, mut bad) = (0u64, 0u64);
            while board.f.stop.load(Relaxed) == 0 {
                match t.has_fuel() {
                    Ok(_) => ok += 1,
                    Err(_) => bad += 1,
                }
            }
            slot.count.store(ok, Release);
            slot.bad.store(bad, Release);
            slot.status.store(0, Release);
            0
        }));
    }
    let ready = board.wait_ready(procs, 20);
    std::thread::sleep(Duration::from_millis(20));
    let t0 = now_ns();
    board.f.go.store(1, Release);
    std::thread::sleep(Duration::from_secs_f64(secs));
    board.f.stop.store(1, Release);
    let t1 = now_ns();
    let clean = reap_all(pids);
    let _ = t.stop();
    drop(t);
    if kind == Kind::Redis {
        let _ = Throttle::unlink_url(url, &name);
    }
    if !ready {
        return Err("the children were not all connected within 20 s".into());
    }
    let counts: Vec<u64> = board.slots[..procs]
        .iter()
        .map(|s| s.count.load(Acquire))
        .collect();
    Ok(Tp {
        grants: counts.iter().sum(),
        wall_s: (t1 - t0) as f64 / 1e9,
        bad: board.slots[..procs]
            .iter()
            .map(|s| s.bad.load(Acquire))
            .sum(),
        min: counts.iter().copied().min().unwrap_or(0),
        max: counts.iter().copied().max().unwrap_or(0),
        clean: clean
            && board.slots[..procs]
                .iter()
                .all(|s| s.status.load(Acquire) == 0),
    })
}

/// `redis-benchmark` running MIN_GCRA (`command`: EVAL and the script,
/// or EVALSHA and its SHA1): requests per second.
fn redis_benchmark(
    port: u16,
    clients: usize,
    requests: u64,
    command: [&str; 2],
) -> Result<f64, String> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-c",
            &clients.to_string(),
            "-n",
            &requests.to_string(),
            "--csv",
        ])
        .args(command)
        .args(["1", "bench:floor"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("redis-benchmark (Debian package redis-tools): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.starts_with("\"EVAL"))
        .find_map(|l| l.split("\",\"").nth(1)?.parse::<f64>().ok())
        .ok_or_else(|| format!("redis-benchmark: no requests per second in {text:?}"))
}

/// One row of (1).
struct TpRow {
    procs: usize,
    redis: Result<Tp, String>,
    shm: Result<Tp, String>,
    /// The floor: redis-benchmark, EVALSHA (what the store sends).
    evalsha: Result<f64, String>,
    /// The same through EVAL (the script's text sent with every call).
    eval: Result<f64, String>,
}

struct Throughput {
    rows: Vec<TpRow>,
    requests: u64,
}

fn section_throughput(server: &Server, secs: f64, board: &Board) -> Throughput {
    let url = server.url();
    let sha: Result<String, String> = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .and_then(|mut c| redis::cmd("SCRIPT").arg("LOAD").arg(MIN_GCRA).query(&mut c))
        .map_err(|e| format!("SCRIPT LOAD: {e}"));
    // Size the floor's runs to last about `secs`.
    let requests = redis_benchmark(server.port, 1, 5_000, ["EVAL", MIN_GCRA])
        .map(|r| ((r * secs) as u64).max(10_000))
        .unwrap_or(100_000);
    let mut rows = Vec::new();
    for procs in PROCS {
        let redis = throughput(&url, Kind::Redis, procs, secs, board);
        let shm = throughput(&url, Kind::Shm, procs, secs, board);
        let evalsha = sha
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|sha| redis_benchmark(server.port, procs, requests, ["EVALSHA", sha]));
        let eval = redis_benchmark(server.port, procs, requests, ["EVAL", MIN_GCRA]);
        eprintln!(
            "redis: throughput x{procs}: store {:.0}/s, shm {:.0}/s, floor EVALSHA {:.0}/s, EVAL {:.0}/s",
            redis.as_ref().map_or(f64::NAN, Tp::rate),
            shm.as_ref().map_or(f64::NAN, Tp::rate),
            evalsha.as_ref().copied().unwrap_or(f64::NAN),
            eval.as_ref().copied().unwrap_or(f64::NAN)
        );
        rows.push(TpRow {
            procs,
            redis,
            shm,
            evalsha,
            eval,
        });
    }
    Throughput { rows, requests }
}

fn print_throughput(tp: &Throughput, secs: f64) {
    println!("### 1. Grants per second, processes sharing one throttle whose rate never binds");
    println!();
    println!(
        "Each process loops `has_fuel()` for {secs} s (LIMIT, 1,000,000,000 per 1 s). Redis store: each child connects after the fork; shared memory: the handle is made before the fork. Floor: `redis-benchmark -c C -n {} --csv EVALSHA <sha1> 1 bench:floor`, C = the number of processes, on the same server, running a minimal GCRA script (`TIME`, `GET`, `SET`; loaded with `SCRIPT LOAD`): one script call per grant, as the store makes, with nothing around it. Beside it the same through `EVAL \"<script>\" 1 bench:floor` (the text sent, and hashed by the server, at every call).",
        thousands(tp.requests as i128)
    );
    println!();
    println!(
        "| processes | Redis store grants/s | x floor | per-process min..max share | floor: redis-benchmark EVALSHA/s | redis-benchmark EVAL/s | shared memory grants/s | shared memory / Redis store | failed calls |"
    );
    println!("|---:|---:|---:|---|---:|---:|---:|---:|---|");
    for TpRow {
        procs,
        redis,
        shm,
        evalsha: floor,
        eval,
    } in &tp.rows
    {
        let floor_s = floor
            .as_ref()
            .map_or_else(|e| e.clone(), |f| thousands(*f as i128));
        let eval_s = eval
            .as_ref()
            .map_or_else(|e| e.clone(), |f| thousands(*f as i128));
        let (r_s, ratio, share, bad_r) = match redis {
            Ok(r) => (
                thousands(r.rate() as i128),
                floor
                    .as_ref()
                    .map_or("?".into(), |f| format!("{:.2}", r.rate() / f)),
                format!(
                    "{:.1}..{:.1} %",
                    100.0 * r.min as f64 / r.grants.max(1) as f64,
                    100.0 * r.max as f64 / r.grants.max(1) as f64
                ),
                r.bad,
            ),
            Err(e) => (format!("failed: {e}"), "-".into(), "-".into(), 0),
        };
        let (s_s, s_ratio, bad_s) = match (shm, redis) {
            (Ok(s), Ok(r)) => (
                format!("{:.2} M", s.rate() / 1e6),
                format!("{:.0}", s.rate() / r.rate()),
                s.bad,
            ),
            (Ok(s), Err(_)) => (format!("{:.2} M", s.rate() / 1e6), "-".into(), s.bad),
            (Err(e), _) => (format!("failed: {e}"), "-".into(), 0),
        };
        let clean = redis.as_ref().is_ok_and(|r| r.clean) && shm.as_ref().is_ok_and(|s| s.clean);
        println!(
            "| {procs} | {r_s} | {ratio} | {share} | {floor_s} | {eval_s} | {s_s} | {s_ratio} | {} |",
            if bad_r + bad_s == 0 && clean {
                "0".to_owned()
            } else {
                format!(
                    "**{} Redis, {} shm{}**",
                    bad_r,
                    bad_s,
                    if clean { "" } else { ", a child failed" }
                )
            }
        );
    }
    println!();
}

// ---------------------------------------------------------------- 2. overhead

struct Lat {
    name: &'static str,
    us: Vec<f64>,
}

fn section_overhead(url: &str, samples: usize) -> Result<Vec<Lat>, String> {
    let name = format!("bench-overhead-{}", std::process::id());
    let t = Throttle::connect(url, &name, FREE_N, FREE_PER, &opts(Hardcap::Limit))
        .map_err(err("connect"))?;
    t.start().map_err(err("start"))?;
    let client = redis::Client::open(url).map_err(rerr("client"))?;
    let mut con = client.get_connection().map_err(rerr("connection"))?;
    let gcra = redis::Script::new(MIN_GCRA);
    let warm = 1_000;
    let mut rows = [
        Lat {
            name: "PING (floor), `redis` crate, own connection",
            us: Vec::new(),
        },
        Lat {
            name: "minimal GCRA script (TIME, GET, SET), EVALSHA, own connection",
            us: Vec::new(),
        },
        Lat {
            name: "`has_fuel()`",
            us: Vec::new(),
        },
        Lat {
            name: "`await_fuel(None)`",
            us: Vec::new(),
        },
    ];
    for i in 0..warm + samples {
        let a = now_ns();
        let _: String = redis::cmd("PING").query(&mut con).map_err(rerr("PING"))?;
        let b = now_ns();
        t.has_fuel().map_err(err("has_fuel"))?;
        let c = now_ns();
        let _: i64 = gcra
            .key("bench:overhead")
            .invoke(&mut con)
            .map_err(rerr("EVALSHA"))?;
        let d = now_ns();
        t.await_fuel(None).map_err(err("await_fuel"))?;
        let e = now_ns();
        if i >= warm {
            for (row, ns) in [(0, b - a), (2, c - b), (1, d - c), (3, e - d)] {
                rows[row].us.push(ns as f64 / 1e3);
            }
        }
    }
    let _ = t.stop();
    drop(t);
    let _ = Throttle::unlink_url(url, &name);
    for r in &mut rows {
        r.us.sort_by(f64::total_cmp);
    }
    Ok(rows.into())
}

fn print_overhead(rows: &Result<Vec<Lat>, String>, samples: usize) -> Option<(f64, f64, f64)> {
    println!("### 2. Per-grant overhead, one process, a tank that always has fuel");
    println!();
    println!(
        "{samples} samples of each call after 1,000 of warm-up, the four calls interleaved (PING, `has_fuel`, EVALSHA, `await_fuel`) so that they see the same machine; one `CLOCK_MONOTONIC` read on each side of each call. The mean is the cost per grant averaged over the calls that go to Redis and those that do not."
    );
    println!();
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            println!("**Failed:** {e}");
            println!();
            return None;
        }
    };
    let (ping50, ping99) = (quantile(&rows[0].us, 0.5), quantile(&rows[0].us, 0.99));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let ping_mean = mean(&rows[0].us);
    println!(
        "| call | p50 us | p99 us | mean us | min us | p50 - PING p50, us | p50 x PING | p99 x PING | mean x PING |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let (p50, p99, m) = (quantile(&r.us, 0.5), quantile(&r.us, 0.99), mean(&r.us));
        println!(
            "| {} | {p50:.1} | {p99:.1} | {m:.1} | {:.1} | {:+.1} | {:.2} | {:.2} | {:.2} |",
            r.name,
            r.us.first().copied().unwrap_or(f64::NAN),
            p50 - ping50,
            p50 / ping50,
            p99 / ping99,
            m / ping_mean
        );
    }
    println!();
    Some((quantile(&rows[2].us, 0.5), ping50, mean(&rows[2].us)))
}

// ---------------------------------------------------------------- 3. accuracy

struct Acc {
    hardcap: Hardcap,
    rate: u64,
    procs: usize,
    grants: u64,
    bad: u64,
    runtime_us: u64,
    expected: u64,
    total: u64,
    lag_us: f64,
    clean: bool,
}

fn accuracy(
    url: &str,
    hardcap: Hardcap,
    rate: u64,
    procs: usize,
    secs: f64,
    board: &Board,
) -> Result<Acc, String> {
    board.reset();
    let name = format!(
        "bench-acc-{hardcap:?}-{rate}-{procs}-{}",
        std::process::id()
    );
    let per = Duration::from_secs(1);
    let t = Throttle::connect(url, &name, rate, per, &opts(hardcap)).map_err(err("connect"))?;
    let mut pids = Vec::new();
    for i in 0..procs {
        let name = &name;
        pids.push(spawn(move || {
            let slot = &board.slots[i];
            let Ok(t) = Throttle::connect(url, name, rate, per, &opts(hardcap)) else {
                slot.status.store(1, SeqCst);
                board.f.ready.fetch_add(1, SeqCst);
                return 2;
            };
            board.f.ready.fetch_add(1, SeqCst);
            let (mut n, mut bad) = (0u64, 0u64);
            loop {
                match t.await_fuel(None) {
                    Ok(_) => {
                        if n == 0 {
                            slot.first_ns.store(now_ns(), Release);
                        }
                        n += 1;
                    }
                    Err(Error::Killed) => break,
                    Err(_) => {
                        bad += 1;
                        if bad >= 10 {
                            break;
                        }
                    }
                }
            }
            slot.count.store(n, Release);
            slot.bad.store(bad, Release);
            slot.status.store(0, Release);
            0
        }));
    }
    let ready = board.wait_ready(procs, 20);
    // Every child blocks in await_fuel, which waits for the start.
    std::thread::sleep(Duration::from_millis(100));
    let t_start = now_ns();
    let started = t.start();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let summary = t.stop();
    let clean = reap_all(pids);
    drop(t);
    let _ = Throttle::unlink_url(url, &name);
    started.map_err(err("start"))?;
    let summary = summary.map_err(err("stop"))?;
    if !ready {
        return Err("the children were not all connected within 20 s".into());
    }
    let slots = &board.slots[..procs];
    let runtime_us = ((summary.runtime.as_nanos() + 500) / 1000) as u64;
    let first = slots
        .iter()
        .map(|s| s.first_ns.load(Acquire))
        .filter(|&f| f != 0)
        .min()
        .unwrap_or(t_start);
    Ok(Acc {
        hardcap,
        rate,
        procs,
        grants: slots.iter().map(|s| s.count.load(Acquire)).sum(),
        bad: slots.iter().map(|s| s.bad.load(Acquire)).sum(),
        runtime_us,
        expected: 1 + (u128::from(runtime_us) * u128::from(rate) / 1_000_000) as u64,
        total: summary.total,
        lag_us: (first - t_start) as f64 / 1e3,
        clean: clean && slots.iter().all(|s| s.status.load(Acquire) == 0),
    })
}

fn print_accuracy(rows: &[Result<Acc, String>], secs: f64) -> Option<i128> {
    println!("### 3. Accuracy against the exact schedule");
    println!();
    println!(
        "N forked processes, each connected on its own, loop `await_fuel(None)` on a throttle of `rate` per 1 s (ONE: a tank of one unit; LIMIT: a tank of `rate` units, which starts empty); they block before the start, the parent starts it, sleeps {secs} s and stops it. Exact = 1 + floor(runtime x rate), with the runtime the server's (the stop's summary), from the start. Diff = grants - exact (goal: within 1). First grant: from the parent's clock read before `start()` to the first worker's return (the wake-up by pub/sub and two round trips; ONE keeps no fuel for a late taker, so at 10,000/s each 100 us of it is a unit lost for good). Diff from the first grant: grants - (1 + floor((runtime - first grant) x rate)), what was lost after the start (approximate: the two times are read on two clocks, within a round trip). `summary.total`: the emissions the stop counted (every grant is one, auto emit)."
    );
    println!();
    println!(
        "| hardcap | rate/s | processes | runtime s | grants | exact | diff | first grant after start, us (units) | diff from the first grant | `summary.total` | failed calls |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut worst: Option<i128> = None;
    for r in rows {
        match r {
            Ok(a) => {
                let diff = a.grants as i128 - a.expected as i128;
                if worst.is_none_or(|w| diff.abs() > w.abs()) {
                    worst = Some(diff);
                }
                let after = a.runtime_us as f64 - a.lag_us;
                let from_first = 1 + (after.max(0.0) * a.rate as f64 / 1e6).floor() as i128;
                println!(
                    "| {:?} | {} | {} | {:.6} | {} | {} | {} | {:.0} ({:.1}) | {} | {} | {} |",
                    a.hardcap,
                    thousands(a.rate as i128),
                    a.procs,
                    a.runtime_us as f64 / 1e6,
                    thousands(a.grants as i128),
                    thousands(a.expected as i128),
                    if diff.abs() <= 1 {
                        signed(diff)
                    } else {
                        format!("**{}**", signed(diff))
                    },
                    a.lag_us,
                    a.lag_us * a.rate as f64 / 1e6,
                    signed(a.grants as i128 - from_first),
                    thousands(a.total as i128),
                    if a.bad == 0 && a.clean {
                        "0".to_owned()
                    } else {
                        format!(
                            "**{}{}**",
                            a.bad,
                            if a.clean { "" } else { ", a child failed" }
                        )
                    }
                );
            }
            Err(e) => println!("| ? | ? | ? | failed: {e} | | | | | | | |"),
        }
    }
    println!();
    worst
}

// ---------------------------------------------------------------- 4. kill

struct Round {
    /// Each waiter's latency, us.
    each: Vec<f64>,
    /// The waker's own call, us.
    waker: f64,
}

fn kill_round(url: &str, round: usize, board: &Board) -> Result<Round, String> {
    board.reset();
    let name = format!("bench-kill-{}-{round}", std::process::id());
    let per = Duration::from_secs(1000);
    let t = Throttle::connect(url, &name, 1, per, &opts(Hardcap::One)).map_err(err("connect"))?;
    t.start().map_err(err("start"))?;
    t.has_fuel().map_err(err("take the only unit"))?;
    let mut pids = Vec::new();
    for i in 0..KILL_WAITERS {
        let name = &name;
        pids.push(spawn(move || {
            let slot = &board.slots[i];
            let Ok(t) = Throttle::connect(url, name, 1, per, &opts(Hardcap::One)) else {
                slot.status.store(1, SeqCst);
                return 2;
            };
            board.f.ready.fetch_add(1, SeqCst);
            slot.tid.store(gettid(), Release);
            let r = t.await_fuel(None);
            slot.ret_ns.store(now_ns(), Release);
            slot.status
                .store(i32::from(r != Err(Error::Killed)), Release);
            board.f.returned.fetch_add(1, SeqCst);
            board.linger(KILL_WAITERS, 10);
            0
        }));
    }
    // Asleep, then 20 ms more: the reservation's round trip is over and the
    // event thread has subscribed.
    let settled = board.wait_ready(KILL_WAITERS, 20) && all_asleep(board, KILL_WAITERS);
    std::thread::sleep(Duration::from_millis(20));
    let early = board.f.returned.load(Acquire);
    let t0 = now_ns();
    t.kill();
    let t1 = now_ns();
    let clean = reap_all(pids);
    drop(t);
    let _ = Throttle::unlink_url(url, &name);
    if !settled {
        return Err("the waiters were not all asleep within 10 s".into());
    }
    if early > 0 {
        return Err(format!("{early} waiters returned before the kill"));
    }
    if !clean || board.slots.iter().any(|s| s.status.load(Acquire) != 0) {
        return Err("a waiter did not return Killed, or did not exit cleanly".into());
    }
    Ok(Round {
        each: board
            .slots
            .iter()
            .map(|s| (s.ret_ns.load(Acquire) - t0) as f64 / 1e3)
            .collect(),
        waker: (t1 - t0) as f64 / 1e3,
    })
}

/// The floor: a PUBLISH reaching 8 processes subscribed on their own
/// connections (the `redis` crate), from the parent's own connection.
fn publish_round(
    url: &str,
    round: usize,
    board: &Board,
    con: &mut redis::Connection,
) -> Result<Round, String> {
    board.reset();
    let chan = format!("bench:kill-floor:{}:{round}", std::process::id());
    let mut pids = Vec::new();
    for i in 0..KILL_WAITERS {
        let chan = &chan;
        pids.push(spawn(move || {
            let slot = &board.slots[i];
            let sub = || -> Result<(), redis::RedisError> {
                let mut c = redis::Client::open(url)?.get_connection()?;
                let mut ps = c.as_pubsub();
                ps.subscribe(chan)?;
                board.f.ready.fetch_add(1, SeqCst);
                slot.tid.store(gettid(), Release);
                let _ = ps.get_message()?;
                slot.ret_ns.store(now_ns(), Release);
                Ok(())
            };
            let ok = sub().is_ok();
            slot.status.store(i32::from(!ok), Release);
            board.f.returned.fetch_add(1, SeqCst);
            board.linger(KILL_WAITERS, 10);
            0
        }));
    }
    let mut settled = board.wait_ready(KILL_WAITERS, 20) && all_asleep(board, KILL_WAITERS);
    let end = now_ns() + 5_000_000_000;
    loop {
        let subs: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&chan)
            .query(con)
            .map_err(rerr("PUBSUB NUMSUB"))?;
        if subs.1 as usize >= KILL_WAITERS {
            break;
        }
        if now_ns() > end {
            settled = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    let early = board.f.returned.load(Acquire);
    let t0 = now_ns();
    let published: Result<i64, _> = redis::cmd("PUBLISH").arg(&chan).arg("kill").query(con);
    let t1 = now_ns();
    let clean = reap_all(pids);
    published.map_err(rerr("PUBLISH"))?;
    if !settled {
        return Err("the subscribers were not all waiting within 10 s".into());
    }
    if early > 0 {
        return Err(format!("{early} subscribers returned before the PUBLISH"));
    }
    if !clean || board.slots.iter().any(|s| s.status.load(Acquire) != 0) {
        return Err("a subscriber failed".into());
    }
    Ok(Round {
        each: board
            .slots
            .iter()
            .map(|s| (s.ret_ns.load(Acquire) - t0) as f64 / 1e3)
            .collect(),
        waker: (t1 - t0) as f64 / 1e3,
    })
}

struct Kills {
    lib: Vec<Round>,
    floor: Vec<Round>,
    errors: Vec<String>,
}

fn section_kill(url: &str, reps: usize, board: &Board) -> Kills {
    let mut k = Kills {
        lib: Vec::new(),
        floor: Vec::new(),
        errors: Vec::new(),
    };
    let mut con = match redis::Client::open(url).and_then(|c| c.get_connection()) {
        Ok(c) => c,
        Err(e) => {
            k.errors.push(format!("connection: {e}"));
            return k;
        }
    };
    for round in 0..reps {
        match kill_round(url, round, board) {
            Ok(r) => k.lib.push(r),
            Err(e) => k.errors.push(format!("kill round {round}: {e}")),
        }
        match publish_round(url, round, board, &mut con) {
            Ok(r) => k.floor.push(r),
            Err(e) => k.errors.push(format!("PUBLISH round {round}: {e}")),
        }
    }
    k
}

fn print_kill(k: &Kills, reps: usize) -> Option<f64> {
    println!("### 4. Kill reaching 8 waiters in 8 other processes");
    println!();
    println!(
        "{reps} rounds, alternating with the floor's. Each round: a fresh ONE throttle of 1 per 1000 s, started, its only unit taken by the parent; 8 forked children connect on their own and block in `await_fuel(None)`; once all 8 sleep (and 20 ms more) the parent reads the clock and calls `kill()`; each child records when its wait returned (`Killed`). Floor: 8 forked children subscribed to a channel with the `redis` crate, each on its own connection, blocked in `get_message()`; the parent PUBLISHes on its own connection. Latency from the clock read before the call to each return; \"last of 8\" is each round's slowest."
    );
    println!();
    println!(
        "| waking | rounds | each waiter p50 us | p99 us | max us | last of 8 p50 us | last of 8 p99 us | waker's call p50 us | p99 x floor's |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let stats = |rounds: &[Round]| {
        let mut each: Vec<f64> = rounds.iter().flat_map(|r| r.each.iter().copied()).collect();
        let mut last: Vec<f64> = rounds
            .iter()
            .map(|r| r.each.iter().copied().fold(f64::MIN, f64::max))
            .collect();
        let mut waker: Vec<f64> = rounds.iter().map(|r| r.waker).collect();
        for v in [&mut each, &mut last, &mut waker] {
            v.sort_by(f64::total_cmp);
        }
        (each, last, waker)
    };
    let (fe, fl, fw) = stats(&k.floor);
    let (le, ll, lw) = stats(&k.lib);
    let floor_p99 = quantile(&fe, 0.99);
    for (name, e, l, w) in [
        ("`kill()` (the Redis store)", &le, &ll, &lw),
        ("floor: PUBLISH to 8 subscribers", &fe, &fl, &fw),
    ] {
        println!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            l.len(),
            quantile(e, 0.5),
            quantile(e, 0.99),
            e.last().copied().unwrap_or(f64::NAN),
            quantile(l, 0.5),
            quantile(l, 0.99),
            quantile(w, 0.5),
            quantile(e, 0.99) / floor_p99
        );
    }
    println!();
    for (name, rounds) in [("`kill()`", &k.lib), ("floor", &k.floor)] {
        let mut spans: Vec<(f64, f64, f64)> = rounds
            .iter()
            .map(|r| {
                let first = r.each.iter().copied().fold(f64::MAX, f64::min);
                let last = r.each.iter().copied().fold(f64::MIN, f64::max);
                (first, last, r.waker)
            })
            .collect();
        spans.sort_by(|a, b| b.1.total_cmp(&a.1));
        let shown: Vec<String> = spans
            .iter()
            .take(3)
            .map(|(f, l, w)| format!("{f:.0}..{l:.0} ({w:.0})"))
            .collect();
        println!(
            "Slowest rounds, {name} (first..last of 8, us; in brackets the waker's own call): {}.",
            shown.join(", ")
        );
    }
    println!();
    if k.errors.is_empty() {
        println!(
            "Every waiter returned `Killed`, none before the kill; every subscriber got the message, none before the PUBLISH."
        );
    } else {
        println!("**{} rounds failed:**", k.errors.len());
        for e in k.errors.iter().take(10) {
            println!("- {e}");
        }
    }
    println!();
    (!le.is_empty()).then(|| quantile(&le, 0.99))
}

// ---------------------------------------------------------------- 5. float baseline

/// One hour of virtual time.
const SPAN_MS: i64 = 3_600_000;
/// 2025-01-01T00:00:00Z, in ms: where TIME-based timestamps stand.
const T0_MS: i64 = 1_735_689_600_000;
/// Grants driven through Redis per script and rate (the rest of the hour
/// is run by the replica that matched them).
const THROUGH_REDIS: u64 = 20_000;
const BASE_RATES: [u64; 4] = [3, 100, 1_000, 10_000];
/// The store's reserve.lua is asked for batches: up to 16 units, each
/// within 1 s of the call (a version without batches takes one, ignoring
/// these two arguments).
const STORE_BATCH: i64 = 16;
const STORE_HORIZON_US: i64 = 1_000_000;

/// `benches/redis_gcra_float.lua` in Rust f64 (Lua's numbers are doubles:
/// the same arithmetic, the same roundings).
struct FloatGcra {
    tat: Option<f64>,
    ei: f64,
    dt: f64,
}

impl FloatGcra {
    fn new(period_ms: f64, rate: f64, burst: f64) -> Self {
        let ei = period_ms / rate;
        Self {
            tat: None,
            ei,
            dt: ei * burst,
        }
    }

    fn call(&mut self, now: f64) -> (bool, f64) {
        let tat = self.tat.unwrap_or(now).max(now);
        let new_tat = tat + self.ei;
        let allow_at = new_tat - self.dt;
        if now < allow_at {
            return (false, allow_at);
        }
        self.tat = Some(new_tat);
        (true, new_tat + self.ei - self.dt)
    }
}

/// The client: asks at once after each grant, and when refused, again at
/// the time it was told. Grants at times < `end`; records them if asked.
struct Driven<T> {
    grants: u64,
    first: Option<T>,
    last: Option<T>,
    times: Vec<T>,
}

fn drive_float(
    mut call: impl FnMut(f64) -> Result<(bool, f64), String>,
    end: f64,
    max_grants: u64,
    record: bool,
) -> Result<Driven<f64>, String> {
    let mut d = Driven {
        grants: 0,
        first: None,
        last: None,
        times: Vec::new(),
    };
    let mut now = T0_MS as f64;
    let mut refused = 0;
    while now < end && d.grants < max_grants {
        let (ok, at) = call(now)?;
        if ok {
            d.grants += 1;
            d.first.get_or_insert(now);
            d.last = Some(now);
            if record {
                d.times.push(now);
            }
            refused = 0;
        } else {
            if at <= now || refused > 1000 {
                return Err(format!("refused at {now} and told to come back at {at}"));
            }
            now = at;
            refused += 1;
        }
    }
    Ok(d)
}

/// The store's ONE reservation (`gcra()` and `reserve.lua` of
/// `src/store/redis/lua/`) in Rust integers: microseconds since the
/// origin, the TAT as tf + tr / n.
struct IntGcra {
    n: i64,
    p: i64,
    tf: i64,
    tr: i64,
    last: i64,
}

fn divmod(a: i64, b: i64) -> (i64, i64) {
    (a.div_euclid(b), a.rem_euclid(b))
}

impl IntGcra {
    /// Reserves one unit at `t`: its grant time.
    fn reserve(&mut self, raw: i64) -> i64 {
        let t = raw.max(self.last);
        let (mut f, mut r) = (self.tf, self.tr);
        if f < t {
            (f, r) = (t, 0);
        }
        let (q, m) = divmod(r, self.n); // r + (units - cap) * p, units = cap = 1
        let mut grant = f + q + i64::from(m > 0);
        if grant < t {
            grant = t;
        }
        let (q2, r2) = divmod(r + self.p, self.n);
        (self.tf, self.tr, self.last) = (f + q2, r2, t);
        grant
    }
}

/// The client of the store: reserves at `t` (a batch of grant times, in
/// order), takes each at its time, and reserves again at the last one's.
fn drive_store(
    mut reserve: impl FnMut(i64) -> Result<Vec<i64>, String>,
    end_us: i64,
    max_grants: u64,
    record: bool,
) -> Result<Driven<i64>, String> {
    let mut d = Driven {
        grants: 0,
        first: None,
        last: None,
        times: Vec::new(),
    };
    let mut t = 0;
    'calls: while d.grants < max_grants {
        let batch = reserve(t)?;
        if batch.is_empty() {
            return Err(format!("reserve at {t} us granted nothing"));
        }
        for g in batch {
            if g >= end_us || d.grants >= max_grants {
                break 'calls;
            }
            d.grants += 1;
            d.first.get_or_insert(g);
            d.last = Some(g);
            if record {
                d.times.push(g);
            }
            t = g;
        }
    }
    Ok(d)
}

const TIME_CALL: &str = "redis.call('TIME')";
const SIM_CLOCK: &str = "{ARGV[#ARGV - 1], ARGV[#ARGV]}";

/// The store's create and reserve scripts with the server's clock replaced
/// by the last two ARGV (seconds, microseconds); None if they no longer
/// read TIME where this expects.
fn sim_store_scripts() -> Option<(String, String)> {
    let prelude = include_str!("../src/store/redis/lua/prelude.lua");
    let create = include_str!("../src/store/redis/lua/create.lua");
    let reserve = include_str!("../src/store/redis/lua/reserve.lua");
    if !prelude.contains(TIME_CALL) || !create.contains(TIME_CALL) || reserve.contains(TIME_CALL) {
        return None;
    }
    let p = prelude.replace(TIME_CALL, SIM_CLOCK);
    Some((
        format!("{p}{}", create.replace(TIME_CALL, SIM_CLOCK)),
        format!("{p}{reserve}"),
    ))
}

struct Base {
    rate: u64,
    exact: u64,
    float: Result<(Driven<f64>, u64, Option<u64>), String>,
    store: Result<(Driven<i64>, u64, Option<u64>, u64), String>,
}

fn float_one(
    con: &mut redis::Connection,
    rate: u64,
) -> Result<(Driven<f64>, u64, Option<u64>), String> {
    let script = redis::Script::new(include_str!("redis_gcra_float.lua"));
    let key = format!("bench:float:{}:{rate}", std::process::id());
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query(con)
        .map_err(rerr("DEL"))?;
    let end = (T0_MS + SPAN_MS) as f64;
    let via = drive_float(
        |now| {
            let (ok, at): (i64, String) = script
                .key(&key)
                .arg(format!("{now}"))
                .arg(1000)
                .arg(rate)
                .arg(1)
                .invoke(con)
                .map_err(rerr("EVALSHA"))?;
            let at = at.parse::<f64>().map_err(|e| format!("{at:?}: {e}"))?;
            Ok((ok == 1, at))
        },
        end,
        THROUGH_REDIS,
        true,
    )?;
    let mut replica = FloatGcra::new(1000.0, rate as f64, 1.0);
    let check = drive_float(|now| Ok(replica.call(now)), end, via.grants, true)?;
    let mismatch = via
        .times
        .iter()
        .zip(&check.times)
        .position(|(a, b)| a.to_bits() != b.to_bits())
        .map(|i| i as u64)
        .or((via.grants != check.grants).then_some(via.grants.min(check.grants)));
    let mut replica = FloatGcra::new(1000.0, rate as f64, 1.0);
    let full = drive_float(|now| Ok(replica.call(now)), end, u64::MAX, false)?;
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query(con)
        .map_err(rerr("DEL"))?;
    Ok((full, via.grants, mismatch))
}

fn store_one(
    con: &mut redis::Connection,
    scripts: &(redis::Script, redis::Script),
    rate: u64,
) -> Result<(Driven<i64>, u64, Option<u64>, u64), String> {
    let (create, reserve) = scripts;
    let base = format!("bench:sim:{}:{rate}", std::process::id());
    let keys = [base.clone(), format!("{base}:w"), format!("{base}:e")];
    let _: i64 = redis::cmd("DEL")
        .arg(&keys[..])
        .query(con)
        .map_err(rerr("DEL"))?;
    let t0_us = T0_MS * 1000;
    let p_us = 1_000_000i64;
    let made: redis::Value = create
        .key(&keys[0])
        .key(&keys[1])
        .key(&keys[2])
        .arg("bench")
        .arg(1) // ONE
        .arg(rate)
        .arg(p_us)
        .arg(1) // running
        .arg(1) // run
        .arg(t0_us / 1_000_000)
        .arg(t0_us % 1_000_000)
        .invoke(con)
        .map_err(rerr("create.lua"))?;
    if made != redis::Value::Array(vec![redis::Value::Int(0)]) {
        return Err(format!("create.lua answered {made:?}"));
    }
    let end_us = SPAN_MS * 1000;
    let mut calls = 0u64;
    let via = drive_store(
        |t| {
            let at = t0_us + t;
            let r: Vec<i64> = reserve
                .key(&keys[0])
                .key(&keys[1])
                .key(&keys[2])
                .arg(1) // units
                .arg(-1) // max_wait: any
                .arg(STORE_BATCH)
                .arg(STORE_HORIZON_US)
                .arg(at / 1_000_000)
                .arg(at % 1_000_000)
                .invoke(con)
                .map_err(rerr("reserve.lua"))?;
            calls += 1;
            // {0, wait, run, gen, a, b, the waits of the rest of the batch}
            match r[..] {
                [0, wait, _, _, _, _, ref more @ ..] => Ok(std::iter::once(wait)
                    .chain(more.iter().copied())
                    .map(|w| t + w)
                    .collect()),
                _ => Err(format!("reserve.lua answered {r:?}")),
            }
        },
        end_us,
        THROUGH_REDIS,
        true,
    )?;
    let replica = || IntGcra {
        n: rate as i64,
        p: p_us,
        tf: 0,
        tr: 0,
        last: 0,
    };
    let mut r = replica();
    let check = drive_store(|t| Ok(vec![r.reserve(t)]), end_us, via.grants, true)?;
    let mismatch = via
        .times
        .iter()
        .zip(&check.times)
        .position(|(a, b)| a != b)
        .map(|i| i as u64)
        .or((via.grants != check.grants).then_some(via.grants.min(check.grants)));
    let mut r = replica();
    let full = drive_store(|t| Ok(vec![r.reserve(t)]), end_us, u64::MAX, false)?;
    let _: i64 = redis::cmd("DEL")
        .arg(&keys[..])
        .query(con)
        .map_err(rerr("DEL"))?;
    Ok((full, via.grants, mismatch, calls))
}

fn section_baseline(url: &str) -> Result<Vec<Base>, String> {
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .map_err(rerr("connection"))?;
    let scripts =
        sim_store_scripts().map(|(c, r)| (redis::Script::new(&c), redis::Script::new(&r)));
    let mut out = Vec::new();
    for rate in BASE_RATES {
        let exact = (SPAN_MS as u64 * rate).div_ceil(1000);
        let float = float_one(&mut con, rate);
        let store = match &scripts {
            Some(s) => store_one(&mut con, s, rate),
            None => Err(format!(
                "skipped: the store's scripts no longer read the clock as `{TIME_CALL}` in prelude.lua and create.lua"
            )),
        };
        eprintln!(
            "redis: baseline {rate}/s: float {:?}, store {:?}, exact {exact}",
            float.as_ref().map(|f| f.0.grants),
            store.as_ref().map(|s| s.0.grants)
        );
        out.push(Base {
            rate,
            exact,
            float,
            store,
        });
    }
    Ok(out)
}

fn print_baseline(b: &Result<Vec<Base>, String>) -> Option<(i128, i128)> {
    println!(
        "### 5. Baseline: the widely copied float-millisecond GCRA in Lua, one hour of virtual time"
    );
    println!();
    println!(
        "`benches/redis_gcra_float.lua`: TAT stored as float ms, emission interval = 1000 ms / rate, burst 1 (a tank of one, as ONE), `now` passed as ARGV (float ms from 2025-01-01T00:00Z, where `TIME`-based timestamps stand). A client loop asks again at once after each grant and, when refused, at the time it was told; grants are counted while their time is within one hour of the first call. The store: its own `prelude.lua` + `reserve.lua` (ONE, rate per 1 s), with `redis.call('TIME')` replaced by two ARGV, driven the same way (`reserve(units 1, max_wait -1, batch 16, horizon 1 s)`: each unit of the batch taken at its grant time, then a new call at the last one's). Each script runs through Redis (EVALSHA) for the first {} grants; a replica in Rust (f64 for the float script; integers, one unit per call, for the store) that gave the same grant times, bit for bit, runs the whole hour. Exact: units due in [0, 1 h) at the rate, ceil(3,600 s x rate). Drift: the last grant's time minus its exact time, k / rate after the first.",
        thousands(THROUGH_REDIS as i128)
    );
    println!();
    let rows = match b {
        Ok(r) => r,
        Err(e) => {
            println!("**Failed:** {e}");
            println!();
            return None;
        }
    };
    println!(
        "| rate/s | exact in 1 h | float-ms GCRA | diff | drift of its last grant, ms | store's reserve.lua | diff | replica = Redis over |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut worst = (0i128, 0i128);
    for r in rows {
        let exact = r.exact as i128;
        let checked = |via: u64, mismatch: Option<u64>| match mismatch {
            None => format!("{} grants", thousands(via as i128)),
            Some(i) => format!("**differs at grant {i}**"),
        };
        let (f_n, f_d, f_drift, f_chk) = match &r.float {
            Ok((d, via, mm)) => {
                let diff = d.grants as i128 - exact;
                if diff.abs() > worst.0.abs() {
                    worst.0 = diff;
                }
                let k = d.grants.saturating_sub(1) as f64;
                let drift = match (d.first, d.last) {
                    (Some(f), Some(l)) => format!("{:+.3}", (l - f) - k * 1000.0 / r.rate as f64),
                    _ => "?".into(),
                };
                (
                    thousands(d.grants as i128),
                    signed(diff),
                    drift,
                    checked(*via, *mm),
                )
            }
            Err(e) => (format!("failed: {e}"), "-".into(), "-".into(), "-".into()),
        };
        let (s_n, s_d, s_chk) = match &r.store {
            Ok((d, via, mm, calls)) => {
                let diff = d.grants as i128 - exact;
                if diff.abs() > worst.1.abs() {
                    worst.1 = diff;
                }
                (
                    thousands(d.grants as i128),
                    signed(diff),
                    format!(
                        "{} in {} calls",
                        checked(*via, *mm),
                        thousands(*calls as i128)
                    ),
                )
            }
            Err(e) => (e.clone(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {f_n} | {f_d} | {f_drift} | {s_n} | {s_d} | float: {f_chk}; store: {s_chk} |",
            thousands(r.rate as i128),
            thousands(exact),
        );
    }
    println!();
    Some(worst)
}

// ---------------------------------------------------------------- main

fn main() {
    let code = run();
    std::process::exit(code);
}

/// The sections to run: the numbers given as arguments
/// (`cargo bench --bench redis -- 1 4`), or all.
fn sections() -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for a in std::env::args().skip(1) {
        // `cargo bench` appends `--bench` to harness = false benches.
        if a == "--bench" {
            continue;
        }
        match a.parse::<u32>() {
            Ok(n @ 1..=5) => out.push(n),
            _ => {
                return Err(format!(
                    "unknown argument {a:?}: give the sections to run, 1 to 5 (default all)"
                ));
            }
        }
    }
    if out.is_empty() {
        out = vec![1, 2, 3, 4, 5];
    }
    Ok(out)
}

fn run() -> i32 {
    let secs = env_f64("MPT_BENCH_SECONDS", 2.0);
    let reps = env_usize("MPT_BENCH_REPS", 30);
    let samples = env_usize("MPT_BENCH_SAMPLES", 10_000);
    let want = match sections() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let on = |n: u32| want.contains(&n);
    let head = context(
        "redis: the Redis store against one local redis-server",
        &format!(
            "cargo bench --bench redis{}   (MPT_BENCH_SECONDS={secs} MPT_BENCH_REPS={reps} MPT_BENCH_SAMPLES={samples})",
            if want.len() == 5 {
                String::new()
            } else {
                format!(
                    " -- {}",
                    want.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            }
        ),
    );
    print!("{head}");
    print!("{}", host());
    let server = match Server::start() {
        Ok(s) => s,
        Err(e) => {
            println!("\n**Cannot start redis-server:** {e}\n");
            return 1;
        }
    };
    let url = server.url();
    println!(
        "- server: `{REDIS_SERVER} --port {} --bind 127.0.0.1 --save '' --appendonly no`, started by this bench, on the same host as every client",
        server.port
    );
    println!();
    let board = Board::new();

    let tp = on(1).then(|| section_throughput(&server, secs, board));
    let over = on(2).then(|| section_overhead(&url, samples));
    let acc = on(3).then(|| {
        let mut acc = Vec::new();
        for hardcap in [Hardcap::One, Hardcap::Limit] {
            for rate in RATES {
                for procs in [1, 4] {
                    let a = accuracy(&url, hardcap, rate, procs, secs, board);
                    eprintln!(
                        "redis: accuracy {hardcap:?} {rate}/s x{procs}: {:?}",
                        a.as_ref().map(|a| a.grants as i128 - a.expected as i128)
                    );
                    acc.push(a);
                }
            }
        }
        acc
    });
    let kills = on(4).then(|| section_kill(&url, reps, board));
    let base = on(5).then(|| section_baseline(&url));
    drop(server);

    let mut goals = Vec::new();
    if let Some(tp) = &tp {
        print_throughput(tp, secs);
        goals.push(match tp.rows.iter().find(|r| r.procs == 4) {
            Some(TpRow {
                redis: Ok(r),
                evalsha,
                ..
            }) => format!(
                "| >= 100,000 grants/s with 4 processes | {} grants/s; the floor (redis-benchmark, 4 clients, minimal GCRA) {} EVALSHA/s | {} |",
                thousands(r.rate() as i128),
                thousands(evalsha.as_ref().copied().unwrap_or(f64::NAN) as i128),
                yes(r.rate() >= GOAL_GRANTS_4)
            ),
            _ => "| >= 100,000 grants/s with 4 processes | failed | **no** |".into(),
        });
    }
    if let Some(over) = &over {
        goals.push(match print_overhead(over, samples) {
            Some((p50, ping, m)) => format!(
                "| per-grant p50 <= PING p50 + 50 us | `has_fuel` p50 {p50:.1} us (mean {m:.1} us), PING p50 {ping:.1} us ({:+.1} us) | {} |",
                p50 - ping,
                yes(p50 <= ping + GOAL_OVER_PING_US)
            ),
            None => "| per-grant p50 <= PING p50 + 50 us | failed | **no** |".into(),
        });
    }
    if let Some(acc) = &acc {
        goals.push(match print_accuracy(acc, secs) {
            Some(w) => format!(
                "| accuracy within 1 unit of the exact schedule (100 to 10,000/s, ONE and LIMIT, 1 and 4 processes) | worst diff {} (table 3) | {} |",
                signed(w),
                yes(w.abs() <= 1 && acc.iter().all(Result::is_ok))
            ),
            None => "| accuracy within 1 unit of the exact schedule | failed | **no** |".into(),
        });
    }
    if let Some(kills) = &kills {
        goals.push(match print_kill(kills, reps) {
            Some(p) => format!(
                "| kill p99 <= 5 ms (8 waiters in other processes) | each waiter p99 {:.2} ms | {} |",
                p / 1e3,
                yes(p <= GOAL_KILL_P99_US && kills.errors.is_empty())
            ),
            None => "| kill p99 <= 5 ms | failed | **no** |".into(),
        });
    }
    if let Some(base) = &base {
        if let Some((f, s)) = print_baseline(base) {
            goals.push(format!(
                "| (baseline) float-ms GCRA vs the store, one hour | float worst diff {}, store worst diff {} | - |",
                signed(f),
                signed(s)
            ));
        }
    }

    println!("### Goals");
    println!();
    println!("| goal | this run | met? |");
    println!("|---|---|---|");
    for g in &goals {
        println!("{g}");
    }
    println!();
    println!(
        "loadavg at the end: `{}`",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();
    0
}
