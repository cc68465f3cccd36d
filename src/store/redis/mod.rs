//! The Redis store: a throttle whose state lives in Redis, shared by
//! processes on any number of hosts.
//!
//! Every decision (reserve, give back, start, stop, kill, change the rate,
//! peek, count emissions) is one Lua script, which the server runs
//! atomically on its own clock (`TIME`), in integer microseconds since the
//! throttle's origin (see `lua/prelude.lua`). The hosts' clocks never
//! meet: a reply says how long to wait, in server time, and the waiter
//! counts that from the moment the reply arrives, so it is never early in
//! the server's time; the one-way delay of the reply is the only lateness
//! added.
//!
//! Each process keeps, beside its connection, what it last learnt of the
//! throttle (running, killed, the run's number, the rate): every reply
//! updates it, and a thread subscribed to the throttle's channel refreshes
//! it when any host starts, stops, kills or changes the rate, and wakes the
//! process's sleepers at once. The same thread sends this process's
//! emissions every 50 ms.
//!
//! Failures close: a call that cannot reach the server retries with backoff
//! until its caller's deadline, then returns [`Error::Unreachable`]; no unit
//! is ever granted without the server's decision. A throttle that Redis
//! lost (a restart without persistence) is made again by the first process
//! that notices, from the configuration and state it last saw (see
//! `lua/create.lua`).
//!
//! Differences from the shared-memory store, documented in the README:
//! `per` is a whole number of microseconds, `max_n * per_us` stays below
//! 2^52, `WINDOW` keeps at most [`WINDOW_MAX_N`] grants in its window, and
//! units reserved before a change of rate keep their times.

mod keyed;
mod link;

use crate::cancel::Wakeable;
use crate::clock::{Clock, monotonic_ns};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::process;
use crate::schedule::{Follow, Hardcap, Rate, Schedule, Ticket};
use crate::store::{Figures, GivenBack, MonitorStatus, Store};
use crate::wait::Wake;
use link::Link;
use parking_lot::{Condvar, Mutex};
use redis::{Connection, Script, Value};
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64};
use std::time::Duration;

/// Longest throttle name, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Largest `max_n` of a `WINDOW` throttle in Redis (each reservation reads
/// the grant time `max_n` back in a list).
pub const WINDOW_MAX_N: u64 = 65_536;
/// `max_n * per` (in microseconds) stays at most this: the scripts' integers
/// stay exact in Lua's doubles.
pub const MAX_SCALED: u64 = 1 << 52;

/// Backoff between tries while the server cannot be reached.
const BACKOFF_MIN_NS: i64 = 5_000_000;
const BACKOFF_MAX_NS: i64 = 200_000_000;
/// How often this process sends its emissions, and how long the event
/// thread waits for a message.
const FLUSH_NS: u64 = 50_000_000;
/// How long a stop waits for the other processes' last emissions (they
/// send them on hearing of the stop, within a few round trips).
const STOP_SETTLE_NS: i64 = 50_000_000;
/// How long the offset from the shortest round trip is kept over longer
/// ones.
const OFFSET_KEPT_NS: i64 = 10_000_000_000;
/// Emission times kept for the local monitor between drains.
const TIMES_KEPT: usize = 1 << 16;
/// Emission times sent to Redis in one script call.
const TIMES_PER_CALL: usize = 2048;
/// Batches: at most this many units in one reservation, none granted
/// more than `BATCH_HORIZON_US` after the first is; a unit of a batch is
/// handed out no later than `BATCH_GRACE_NS` after its time, or not at all
/// (lost: fewer grants, never more, and none late by more than that).
const BATCH_MAX: u64 = 256;
const BATCH_HORIZON_US: i64 = 2_000;
const BATCH_GRACE_NS: i64 = 1_000_000;
/// Batches only at rates whose units come closer together than this
/// (above 5,000 per second).
const BATCH_BELOW_T_NS: u64 = 200_000;
/// A process asks for its next batch once it holds a quarter of one or
/// less, covering less than this (or four round trips) from now.
const REFILL_BEFORE_NS: i64 = 500_000;
/// The slot of a ticket whose units only this process can give back (a
/// unit of a batch): they go back to its lease.
const LEASED: u128 = u128::MAX;

/// The scripts, each the prelude and one body (`lua/`).
struct Scripts {
    reserve: Script,
    give_back: Script,
    create: Script,
    start: Script,
    stop: Script,
    kill: Script,
    set_rate: Script,
    peek: Script,
    emit: Script,
    state: Script,
    unlink: Script,
    key_reserve: Script,
    key_give_back: Script,
    key_peek: Script,
    key_forget: Script,
    key_stats: Script,
}

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/prelude.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
}

impl Scripts {
    fn new() -> Self {
        Self {
            reserve: script!("reserve.lua"),
            give_back: script!("give_back.lua"),
            create: script!("create.lua"),
            start: script!("start.lua"),
            stop: script!("stop.lua"),
            kill: script!("kill.lua"),
            set_rate: script!("set_rate.lua"),
            peek: script!("peek.lua"),
            emit: script!("emit.lua"),
            state: script!("state.lua"),
            unlink: script!("unlink.lua"),
            key_reserve: script!("key_reserve.lua"),
            key_give_back: script!("key_give_back.lua"),
            key_peek: script!("key_peek.lua"),
            key_forget: script!("key_forget.lua"),
            key_stats: script!("key_stats.lua"),
        }
    }
}

/// The keys of throttle `name`: its state, WINDOW's grant times, its
/// emissions per 100 ms, its emission times not yet settled, a keyed
/// throttle's live keys (see `lua/prelude.lua`). One hash tag: one Redis Cluster slot.
fn keys(name: &str) -> [String; 5] {
    let h = format!("mpt:{{{name}}}");
    [
        h.clone(),
        format!("{h}:w"),
        format!("{h}:e"),
        format!("{h}:t"),
        format!("{h}:ks"),
    ]
}

/// `InvalidArgument` unless `name` can name a throttle in Redis.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidArgument(format!(
            "a Redis throttle's name is 1 to {MAX_NAME_LEN} bytes (got {})",
            name.len()
        )));
    }
    if name.contains(['{', '}']) {
        return Err(Error::InvalidArgument(format!(
            "a Redis throttle's name may not contain '{{' or '}}' (its keys' hash tag is \
             the name): {name:?}"
        )));
    }
    Ok(())
}

/// `InvalidArgument` unless `rate` fits the scripts' integers.
fn check_rate(rate: Rate, hardcap: Hardcap) -> Result<u64> {
    let per_ns = rate.per_ns();
    if per_ns % 1000 != 0 {
        return Err(Error::InvalidArgument(format!(
            "a Redis throttle's period is a whole number of microseconds (got {per_ns} ns)"
        )));
    }
    let per_us = per_ns / 1000;
    if u128::from(rate.max_n()) * u128::from(per_us) > u128::from(MAX_SCALED) {
        return Err(Error::InvalidArgument(format!(
            "a Redis throttle keeps max_n x per (in microseconds) at most 2^52 (got {} x {per_us})",
            rate.max_n()
        )));
    }
    if hardcap == Hardcap::Window && rate.max_n() > WINDOW_MAX_N {
        return Err(Error::InvalidArgument(format!(
            "a WINDOW throttle in Redis has max_n at most {WINDOW_MAX_N} (got {})",
            rate.max_n()
        )));
    }
    Ok(per_us)
}

/// What the configuration says, as the throttle's `cfg` field keeps it:
/// two processes join the same throttle only if theirs are equal.
fn describe(config: &Config) -> String {
    let rate = config.schedule.rate();
    let described = format!(
        "mpt1 {:?} max_n={} per_ns={} as_throttle={} as_monitor={} auto_emit={} refresh_ns={}",
        config.schedule.hardcap(),
        rate.max_n(),
        rate.per_ns(),
        config.as_throttle,
        config.as_monitor,
        config.auto_emit,
        config.refresh_ns
    );
    if config.keys > 0 {
        described + " keyed"
    } else {
        described
    }
}

/// The configuration `describe` wrote, read back (`None`: not written by
/// this library), with the waiting preferences of `waiting`.
fn parse_described(cfg: &str, waiting: &crate::config::Options) -> Option<Config> {
    let mut words = cfg.split(' ');
    if words.next()? != "mpt1" {
        return None;
    }
    let hardcap = match words.next()? {
        "Limit" => Hardcap::Limit,
        "One" => Hardcap::One,
        "None" => Hardcap::None,
        "Window" => Hardcap::Window,
        _ => return None,
    };
    let mut field = |key: &str| -> Option<String> {
        let (k, v) = words.next()?.split_once('=')?;
        (k == key).then(|| v.to_owned())
    };
    let max_n: u64 = field("max_n")?.parse().ok()?;
    let per_ns: u64 = field("per_ns")?.parse().ok()?;
    let as_throttle: bool = field("as_throttle")?.parse().ok()?;
    let as_monitor: bool = field("as_monitor")?.parse().ok()?;
    let auto_emit: bool = field("auto_emit")?.parse().ok()?;
    let refresh_ns: u64 = field("refresh_ns")?.parse().ok()?;
    let keys = match words.next() {
        None => 0,
        Some("keyed") => crate::config::KEYED_NO_TABLE,
        Some(_) => return None,
    };
    Some(Config {
        schedule: Schedule::new(Rate::new(max_n, per_ns)?, hardcap),
        as_throttle,
        as_monitor,
        auto_emit,
        refresh_ns,
        timer_slack_ns: waiting.timer_slack_ns,
        spin_ns: (waiting.spin_s * 1e9).round() as i64,
        group_shared: false,
        keys,
    })
}

/// A throttle that exists in a Redis server, as [`RedisStore::list`] finds
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedUrl {
    /// Its name.
    pub name: String,
    /// Its configuration (`None`: its keys hold what this library did not
    /// write).
    pub config: Option<Config>,
}

/// What this process knows of the throttle, and its sleepers.
struct Shared {
    link: Link,
    scripts: Scripts,
    keys: [String; 5],
    name: String,
    cfg: String,
    hardcap: Hardcap,
    /// The server's `run_id` when this process last saw the throttle: a
    /// throttle gone from a server with another run_id was lost in a
    /// restart (made again); gone from the same server, it was unlinked.
    server: Mutex<String>,

    running: AtomicBool,
    killed: AtomicBool,
    run_id: AtomicU32,
    /// The rate as last seen (max_n, per_ns).
    rate: Mutex<Rate>,
    /// Runtime of finished runs (ns), as the server last said.
    runtime_ns: AtomicU64,
    /// When this process saw the current run start (its clock, ns).
    run_start: Mutex<i64>,

    epoch: AtomicU32,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    sleepers: AtomicU32,

    /// Units reserved in a batch, not yet handed out (see [`Lease`]).
    lease: Mutex<Lease>,
    /// Emissions counted here and not yet sent.
    pending: Mutex<Pending>,
    /// Held while emissions are on their way to Redis (a flush, a stop):
    /// a stop's count comes after every flush that began before it.
    sending: Mutex<()>,
    /// Emissions the server counted, as last seen; and its last second's.
    emitted: AtomicU64,
    latest: AtomicU64,
    /// Whether the emission times go to Redis, for `lo_hi` and `hi_lo`
    /// over every host (`as_monitor`).
    fleet_stats: bool,
    /// The server's clock (ns since the throttle's origin) less this
    /// process's, with the round trip it was read in and when (see
    /// `note_offset`).
    offset_sample: Mutex<(i64, i64, i64)>,
    /// The extremes of every host's intervals, as Redis last said (ns;
    /// -1: not yet two emissions).
    fleet_lo_ns: AtomicI64,
    fleet_hi_ns: AtomicI64,
    /// What the local monitor published.
    local: Mutex<Local>,
    /// Set when the store is dropped: the event thread ends.
    closing: AtomicBool,
}

/// What this process's monitor thread published: its heartbeat, its status
/// and process.
#[derive(Clone, Copy, Default)]
struct Local {
    heartbeat_ns: i64,
    status: MonitorStatus,
    pid: u32,
}

/// Units this process reserved in a batch and has not handed out yet.
///
/// A process whose waiters take units as fast as they come, at a rate above
/// 5,000 per second ([`BATCH_BELOW_T_NS`]), reserves several in one round
/// trip: the first for the waiter that asked, the rest kept here, each with
/// its grant time, for the next waiters of this process, in order. The
/// batch grows (doubling, up to [`BATCH_MAX`]) while they are all taken
/// before the next reservation, and halves when one is lost: a unit not
/// handed out within [`BATCH_GRACE_NS`] of its time is dropped (the server
/// counted it as granted: it goes unused, so the hosts together get fewer
/// grants, never more, and never one later than that).
#[derive(Default)]
struct Lease {
    /// The run the units are of.
    run: u32,
    /// Their grant times, on this process's clock, earliest first.
    units: std::collections::VecDeque<i64>,
    /// Units to ask for in the next reservation.
    batch: u64,
    /// The last reservation's round trip (ns).
    rtt_ns: i64,
}

impl Lease {
    /// Drops the units of another run, and those too late to hand out.
    fn prune(&mut self, run: u32, now: i64) {
        if self.run != run {
            self.units.clear();
            self.run = run;
        }
        let before = self.units.len();
        while self
            .units
            .front()
            .is_some_and(|&g| g < now - BATCH_GRACE_NS)
        {
            self.units.pop_front();
        }
        if self.units.len() < before {
            self.batch = (self.batch / 2).max(1);
        }
    }

    /// Takes in the reply to a reservation of `asked` units of run `run`,
    /// arrived at `arrived`, which gave `came` of them: those whose waits
    /// (us from then) are `kept` are kept here. If every unit asked for
    /// came, the next reservation asks for twice as many.
    fn take_in(&mut self, run: u32, arrived: i64, kept: &[i64], came: usize, asked: u64) {
        self.prune(run, arrived);
        for &w in kept {
            self.keep(grant_at(arrived, w));
        }
        if came as u64 == asked {
            self.batch = (asked * 2).min(BATCH_MAX);
        }
    }

    /// Keeps a unit granted at `grant`, in order.
    fn keep(&mut self, grant: i64) {
        let at = self.units.partition_point(|&g| g <= grant);
        self.units.insert(at, grant);
    }
}

/// When a unit is granted whose wait (us, in server time) a reply that
/// arrived at `arrived` gives: counted from the arrival, never early.
fn grant_at(arrived: i64, wait_us: i64) -> i64 {
    arrived.saturating_add(wait_us.max(0).saturating_mul(1000))
}

/// Emissions counted in this process and not yet sent to Redis.
#[derive(Default)]
struct Pending {
    /// The run they are of.
    run: u32,
    count: u64,
    /// Their times (this process's clock), for the extremes of every
    /// host's intervals; at most `TIMES_KEPT` (the rest are counted only).
    times: Vec<i64>,
    /// Set by this process's stop: emissions are no longer counted (the
    /// grant that would make one is refused, as in shared memory).
    closed: bool,
}

/// A throttle's state in Redis (see the module documentation).
pub struct RedisStore {
    sh: Arc<Shared>,
    events: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.sh.link.shown())
            .field("name", &self.sh.name)
            .finish_non_exhaustive()
    }
}

/// An invocation of `script` with the keys of a throttle (see [`keys`]).
fn with_keys<'a>(script: &'a Script, keys: &[String; 5]) -> redis::ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    for k in keys {
        inv.key(k);
    }
    inv
}

/// A script's reply as integers (a nil or a string that is no number: -1).
fn ints(v: &Value) -> Vec<i64> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => *n,
                Value::BulkString(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(-1),
                _ => -1,
            })
            .collect(),
        Value::Int(n) => vec![*n],
        _ => Vec::new(),
    }
}

fn unexpected(what: &str, reply: &[i64]) -> Error {
    Error::Corrupt(format!(
        "Redis answered {what} with {reply:?}: the throttle's keys hold what this library \
         did not write"
    ))
}

impl RedisStore {
    /// Creates throttle `name` in the Redis at `url`, or joins it if it
    /// exists with the same configuration; the flag says whether this call
    /// created it. Errors: [`Error::InvalidArgument`] (URL, name, a rate
    /// the store cannot keep), [`Error::Unreachable`],
    /// [`Error::PermissionDenied`] (credentials refused),
    /// [`Error::Mismatch`], [`Error::Corrupt`] (the keys hold something
    /// else).
    pub fn connect(url: &str, name: &str, config: &Config) -> Result<(Self, bool)> {
        check_name(name)?;
        Self::join(Link::new(url)?, name, config)
    }

    /// [`connect`](Self::connect) over `link`.
    fn join(link: Link, name: &str, config: &Config) -> Result<(Self, bool)> {
        let rate = config.schedule.rate();
        let hardcap = config.schedule.hardcap();
        check_rate(rate, hardcap)?;
        let sh = Arc::new(Shared {
            link,
            scripts: Scripts::new(),
            keys: keys(name),
            name: name.to_owned(),
            cfg: describe(config),
            hardcap,
            server: Mutex::new(String::new()),
            running: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            run_id: AtomicU32::new(0),
            rate: Mutex::new(rate),
            runtime_ns: AtomicU64::new(0),
            run_start: Mutex::new(0),
            epoch: AtomicU32::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicU32::new(0),
            lease: Mutex::new(Lease {
                batch: 1,
                ..Lease::default()
            }),
            pending: Mutex::new(Pending::default()),
            sending: Mutex::new(()),
            emitted: AtomicU64::new(0),
            latest: AtomicU64::new(0),
            local: Mutex::new(Local::default()),
            closing: AtomicBool::new(false),
            fleet_stats: config.as_monitor,
            offset_sample: Mutex::new((0, i64::MAX, 0)),
            fleet_lo_ns: AtomicI64::new(-1),
            fleet_hi_ns: AtomicI64::new(-1),
        });
        sh.note_server(None)?;
        let created = sh.create(false, 0)?;
        sh.refresh(None)?;
        let events = {
            let sh = Arc::clone(&sh);
            std::thread::Builder::new()
                .name("mpt-redis-events".into())
                .spawn(move || events(&sh))
                .map_err(|e| Error::System(format!("cannot start the Redis event thread: {e}")))?
        };
        Ok((
            Self {
                sh,
                events: Some(events),
            },
            created,
        ))
    }

    /// Joins the existing throttle `name` in the Redis at `url`, adopting
    /// its configuration; the waiting preferences (timer slack, spin) come
    /// from `waiting`. Errors: [`Error::NotFound`], [`Error::Corrupt`] (its
    /// keys hold what this library did not write), and as
    /// [`connect`](Self::connect).
    pub fn open(url: &str, name: &str, waiting: &crate::config::Options) -> Result<(Self, Config)> {
        check_name(name)?;
        crate::config::check_waiting(waiting)?;
        let link = Link::new(url)?;
        let k = keys(name);
        let cfg: Option<String> =
            link.call(None, |c| redis::cmd("HGET").arg(&k[0]).arg("cfg").query(c))?;
        let Some(cfg) = cfg else {
            return Err(Error::NotFound(format!(
                "no throttle named {name:?} in Redis at {}",
                link.shown()
            )));
        };
        let config = parse_described(&cfg, waiting).ok_or_else(|| {
            Error::Corrupt(format!(
                "{:?} in Redis at {} holds {cfg:?}, not a throttle of this library",
                k[0],
                link.shown()
            ))
        })?;
        let (store, _) = Self::join(link, name, &config)?;
        Ok((store, config))
    }

    /// The throttles in the Redis at `url` (its current database), sorted
    /// by name. Errors: as [`connect`](Self::connect).
    pub fn list(url: &str) -> Result<Vec<ListedUrl>> {
        let link = Link::new(url)?;
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = link.call(None, |c| {
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg("mpt:{*}")
                    .arg("TYPE")
                    .arg("hash")
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)
            })?;
            for key in batch {
                // The state's key ends with the tag; its siblings do not.
                let Some(name) = key.strip_prefix("mpt:{").and_then(|k| k.strip_suffix('}')) else {
                    continue;
                };
                let cfg: Option<String> =
                    link.call(None, |c| redis::cmd("HGET").arg(&key).arg("cfg").query(c))?;
                let Some(cfg) = cfg else { continue };
                found.push(ListedUrl {
                    name: name.to_owned(),
                    config: parse_described(&cfg, &crate::config::Options::default()),
                });
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found.dedup_by(|a, b| a.name == b.name);
        Ok(found)
    }

    /// Removes throttle `name` from the Redis at `url`; its users find it
    /// killed. Errors: [`Error::NotFound`], and as [`connect`](Self::connect).
    pub fn unlink(url: &str, name: &str) -> Result<()> {
        check_name(name)?;
        let link = Link::new(url)?;
        let scripts = Scripts::new();
        let k = keys(name);
        let removed: i64 = link.call(None, |c| with_keys(&scripts.unlink, &k).invoke(c))?;
        if removed == 0 {
            return Err(Error::NotFound(format!(
                "no throttle named {name:?} in Redis at {}",
                link.shown()
            )));
        }
        Ok(())
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.sh.closing.store(true, SeqCst);
        if let Some(t) = self.events.take() {
            if process::id() == self.sh.link.owner() {
                let _ = t.join();
            } else {
                // A child of fork(): the event thread is not there, and its
                // id may be another thread's by now; dropping the handle
                // would detach that one.
                std::mem::forget(t);
            }
        }
    }
}

impl Shared {
    /// Runs script `pick` with this throttle's keys and `args`.
    fn run(
        &self,
        deadline: Option<i64>,
        pick: impl Fn(&Scripts) -> &Script,
        args: &[i64],
    ) -> Result<Vec<i64>> {
        let reply: Value = self.link.call(deadline, |c: &mut Connection| {
            let mut inv = with_keys(pick(&self.scripts), &self.keys);
            for a in args {
                inv.arg(*a);
            }
            inv.invoke(c)
        })?;
        Ok(ints(&reply))
    }

    /// Records the server's run_id (`INFO server`); says whether it
    /// changed from the one recorded before.
    fn note_server(&self, deadline: Option<i64>) -> Result<bool> {
        let info: String = self
            .link
            .call(deadline, |c| redis::cmd("INFO").arg("server").query(c))?;
        let id = info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        let mut server = self.server.lock();
        let changed = *server != id;
        *server = id;
        Ok(changed)
    }

    /// Makes the throttle unless it exists (`running`, `run`: the state to
    /// make it in); true if made. `Mismatch` if it exists otherwise.
    fn create(&self, running: bool, run: u32) -> Result<bool> {
        let rate = *self.rate.lock();
        let per_us = check_rate(rate, self.hardcap)?;
        let reply: Value = self.link.call(None, |c| {
            let mut inv = with_keys(&self.scripts.create, &self.keys);
            inv.arg(&self.cfg)
                .arg(self.hardcap as u32)
                .arg(rate.max_n())
                .arg(per_us)
                .arg(u8::from(running))
                .arg(run);
            inv.invoke(c)
        })?;
        match reply {
            Value::Array(items) => match items.as_slice() {
                [Value::Int(0)] => Ok(true),
                [Value::Int(1), Value::BulkString(theirs)] => {
                    let theirs = String::from_utf8_lossy(theirs);
                    if theirs == self.cfg {
                        Ok(false)
                    } else {
                        Err(Error::Mismatch(format!(
                            "throttle {:?} exists in Redis at {} as {theirs}, not as asked \
                             ({}); connect with its configuration, or unlink it",
                            self.name,
                            self.link.shown(),
                            self.cfg
                        )))
                    }
                }
                _ => Err(unexpected("create", &[])),
            },
            _ => Err(unexpected("create", &[])),
        }
    }

    /// The throttle was not found: made again if the server lost it in a
    /// restart (true: try again); else it was unlinked, and counts as
    /// killed here (false).
    fn gone(&self, deadline: Option<i64>) -> Result<bool> {
        if self.note_server(deadline)? {
            let running = self.running.load(SeqCst);
            self.create(running, self.run_id.load(SeqCst))?;
            return Ok(true);
        }
        if !self.killed.swap(true, SeqCst) {
            self.bump();
        }
        Ok(false)
    }

    /// Reads the throttle's state into this process's view; wakes the
    /// sleepers if it changed.
    fn refresh(&self, deadline: Option<i64>) -> Result<()> {
        let sent = monotonic_ns();
        let s = self.run(deadline, |s| &s.state, &[])?;
        let arrived = monotonic_ns();
        if s.first() == Some(&0) {
            self.gone(deadline)?;
            return Ok(());
        }
        let [
            _,
            run,
            running,
            kill,
            n,
            p,
            _gen,
            emitted,
            runtime,
            start,
            now,
            latest,
            lo_us,
            hi_us,
        ] = s[..]
        else {
            return Err(unexpected("state", &s));
        };
        self.note_offset(now.saturating_mul(1000), sent, arrived);
        let ns = |us: i64| if us < 0 { -1 } else { us.saturating_mul(1000) };
        self.fleet_lo_ns.store(ns(lo_us), SeqCst);
        self.fleet_hi_ns.store(ns(hi_us), SeqCst);
        let rate = u64::try_from(p)
            .ok()
            .and_then(|p| p.checked_mul(1000))
            .and_then(|per_ns| Rate::new(u64::try_from(n).ok()?, per_ns))
            .ok_or_else(|| unexpected("state", &s))?;
        *self.rate.lock() = rate;
        self.emitted.store(emitted.max(0) as u64, SeqCst);
        self.latest.store(latest.max(0) as u64, SeqCst);
        self.runtime_ns
            .store((runtime.max(0) as u64).saturating_mul(1000), SeqCst);
        let run = run as u32;
        // Each swapped, whether or not another changed.
        let run_changed = self.run_id.swap(run, SeqCst) != run;
        let running_changed = self.running.swap(running == 1, SeqCst) != (running == 1);
        let kill_changed = self.killed.swap(kill == 1, SeqCst) != (kill == 1);
        let changed = run_changed || running_changed || kill_changed;
        if running == 1 {
            // When the run started, in this process's clock.
            let ago = now.saturating_sub(start).max(0).saturating_mul(1000);
            *self.run_start.lock() = monotonic_ns().saturating_sub(ago);
        }
        if changed {
            self.bump();
        }
        Ok(())
    }

    /// Takes in a reading of the server's clock, `server_ns`, made between
    /// `sent` and `arrived` on this process's: the offset is the server's
    /// clock less the midpoint, within half the round trip. The reading of
    /// the shortest round trip of the last 10 s is kept (a process held up
    /// by the machine makes a long one).
    fn note_offset(&self, server_ns: i64, sent: i64, arrived: i64) {
        let rtt = arrived.saturating_sub(sent);
        let offset = server_ns - (sent + rtt / 2);
        let mut best = self.offset_sample.lock();
        let (_, best_rtt, taken) = *best;
        if rtt <= best_rtt || arrived.saturating_sub(taken) > OFFSET_KEPT_NS {
            *best = (offset, rtt, arrived);
        }
    }

    /// Updates the view from a reply's code, run and generation.
    fn note_reply(&self, code: i64, run: i64) {
        let mut changed = false;
        match code {
            2 => changed |= self.running.swap(false, SeqCst),
            3 => changed |= !self.killed.swap(true, SeqCst),
            _ => {}
        }
        if run >= 0 && self.run_id.swap(run as u32, SeqCst) != run as u32 {
            changed = true;
        }
        if changed {
            self.bump();
        }
    }

    /// Whether reservations may be batched: only at rates whose units
    /// come closer together than [`BATCH_BELOW_T_NS`] (one round trip per
    /// grant could not keep up there). At slower rates a batch would take
    /// a full tank's units that other processes could have used.
    fn batching(&self) -> bool {
        let rate = *self.rate.lock();
        rate.per_ns() / rate.max_n() < BATCH_BELOW_T_NS
    }

    /// How many processes listen to the throttle's events now (each has
    /// one subscription); 0 if that cannot be read.
    fn listeners(&self) -> i64 {
        let channel = format!("{}:events", self.keys[0]);
        self.link
            .call(None, |c| {
                redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&channel)
                    .query::<(String, i64)>(c)
            })
            .map_or(0, |(_, n)| n)
    }

    /// Moves the epoch on and wakes every sleeper of this process.
    fn bump(&self) {
        self.epoch.fetch_add(1, SeqCst);
        let _g = self.sleep_lock.lock();
        self.wake.notify_all();
    }

    /// Sends the emissions counted here (with their times, mapped onto the
    /// server's clock, when every host's intervals are kept); those of a
    /// run that is over are dropped (the stop closed its count).
    /// `settle_all`: the intervals are taken in up to the last emission
    /// (at a stop), not only up to 300 ms ago.
    fn flush_emissions(&self, settle_all: bool) -> Result<()> {
        let _sending = self.sending.lock();
        let (run, count, times) = {
            let mut p = self.pending.lock();
            (
                p.run,
                std::mem::take(&mut p.count),
                std::mem::take(&mut p.times),
            )
        };
        if count == 0 && !settle_all {
            return Ok(());
        }
        let offset = self.offset_sample.lock().0;
        // The times in chunks, so that no script holds the server up for
        // long (each ZADD is about a microsecond there): the count goes
        // with the first, the settling of everything with the last.
        let mut from = 0;
        loop {
            let to = (from + TIMES_PER_CALL).min(times.len());
            let last = to == times.len();
            let counted = if from == 0 { count as i64 } else { 0 };
            let mut args = vec![i64::from(run), counted, i64::from(settle_all && last)];
            args.extend(
                times[from..to]
                    .iter()
                    .map(|&t| t.saturating_add(offset) / 1000),
            );
            if let Err(e) = self.run(None, |s| &s.emit, &args) {
                // Kept for the next try (the count if it was not sent, the
                // times not sent), unless a new run began meanwhile.
                let mut p = self.pending.lock();
                if p.run == run {
                    if from == 0 {
                        p.count += count;
                    }
                    p.times.extend_from_slice(&times[from..]);
                }
                return Err(e);
            }
            if last {
                return Ok(());
            }
            from = to;
        }
    }

    fn flush(&self) -> Result<()> {
        self.flush_emissions(false)
    }

    /// Retries `f` with backoff while the server cannot be reached, until
    /// `latest` on `clock` (then the last error), or until this process's
    /// epoch moves on from `epoch` (then `None`: the caller looks again).
    fn retrying<T>(
        &self,
        latest: i64,
        clock: &dyn Clock,
        mut f: impl FnMut(Option<i64>) -> Result<T>,
    ) -> Result<Option<T>> {
        let epoch = self.epoch.load(SeqCst);
        let mut backoff = BACKOFF_MIN_NS;
        loop {
            let left = latest.saturating_sub(clock.now_ns());
            let deadline = monotonic_ns().saturating_add(left.max(0));
            match f(Some(deadline)) {
                Err(Error::Unreachable(m)) => {
                    let now = clock.now_ns();
                    if now >= latest {
                        return Err(Error::Unreachable(m));
                    }
                    // Too little time left for another try (each gets at
                    // least link::MIN_TIMEOUT_NS): the deadline, then the
                    // status, unless woken first.
                    if latest - now < link::MIN_TIMEOUT_NS {
                        let until = monotonic_ns().saturating_add(latest - now);
                        if self.sleep(epoch, until) == Wake::Changed {
                            return Ok(None);
                        }
                        return Err(Error::Unreachable(m));
                    }
                    let nap = backoff.min(latest - now);
                    backoff = (backoff * 2).min(BACKOFF_MAX_NS);
                    if self.sleep(epoch, monotonic_ns().saturating_add(nap)) == Wake::Changed {
                        return Ok(None);
                    }
                }
                other => return other.map(Some),
            }
        }
    }

    /// Sleeps until the epoch moves on from `epoch` or `deadline`
    /// (monotonic ns).
    fn sleep(&self, epoch: u32, deadline: i64) -> Wake {
        let mut g = self.sleep_lock.lock();
        self.sleepers.fetch_add(1, SeqCst);
        let woke = loop {
            if self.epoch.load(SeqCst) != epoch {
                break Wake::Changed;
            }
            let now = monotonic_ns();
            if now >= deadline {
                break Wake::TimedOut;
            }
            let left = Duration::from_nanos((deadline - now) as u64);
            self.wake.wait_for(&mut g, left);
        };
        self.sleepers.fetch_sub(1, SeqCst);
        woke
    }
}

/// The event thread: listens on the throttle's channel, refreshes the view
/// and wakes the sleepers at every event; sends the emissions every
/// [`FLUSH_NS`]; makes its subscription again after a failure, and then
/// refreshes (events may have been missed).
fn events(sh: &Shared) {
    let channel = format!("{}:events", sh.keys[0]);
    let mut backoff = BACKOFF_MIN_NS;
    while !sh.closing.load(SeqCst) {
        let mut conn = match sh.link.dedicated(Duration::from_nanos(FLUSH_NS)) {
            Ok(c) => c,
            Err(_) => {
                std::thread::sleep(Duration::from_nanos(backoff as u64));
                backoff = (backoff * 2).min(BACKOFF_MAX_NS);
                let _ = sh.flush();
                continue;
            }
        };
        let mut ps = conn.as_pubsub();
        if ps.subscribe(&channel).is_err() {
            continue;
        }
        backoff = BACKOFF_MIN_NS;
        let _ = sh.refresh(None);
        while !sh.closing.load(SeqCst) {
            match ps.get_message() {
                Ok(_) => {
                    let _ = sh.refresh(None);
                }
                Err(e) if e.is_timeout() => {}
                Err(_) => break, // subscribe again
            }
            let _ = sh.flush();
        }
    }
    let _ = sh.flush();
}

impl RedisStore {
    /// Asks for the next batch into `lease` (see [`Lease`]): units granted
    /// within the batch horizon of now, or none; a failure is left to the
    /// next reservation.
    fn refill(&self, lease: &mut Lease, clock: &dyn Clock) {
        let sh = &self.sh;
        let sent = clock.now_ns();
        let deadline = monotonic_ns().saturating_add(link::MIN_TIMEOUT_NS);
        let args = [1, BATCH_HORIZON_US, lease.batch as i64, BATCH_HORIZON_US];
        let Ok(r) = sh.run(Some(deadline), |s| &s.reserve, &args) else {
            return;
        };
        let arrived = clock.now_ns();
        lease.rtt_ns = arrived.saturating_sub(sent);
        if let [0, wait, run, _, _, _, ref more @ ..] = r[..] {
            sh.note_reply(0, run);
            // Every unit goes to the lease, the first too.
            let kept: Vec<i64> = std::iter::once(wait).chain(more.iter().copied()).collect();
            let asked = lease.batch;
            lease.take_in(run as u32, arrived, &kept, kept.len(), asked);
        }
    }
}

impl Wakeable for RedisStore {
    fn wake_sleepers(&self) {
        self.sh.bump();
    }
}

impl Store for RedisStore {
    type Cursor = ();

    const REMOTE: bool = true;

    /// As this process last heard; a "no" is asked of the server again
    /// (another host may have started it a moment ago).
    fn is_running(&self) -> bool {
        let sh = &self.sh;
        if !sh.running.load(SeqCst) {
            let _ = sh.refresh(None);
        }
        sh.running.load(SeqCst)
    }

    fn run_id(&self) -> u32 {
        self.sh.run_id.load(SeqCst)
    }

    /// As this process last heard; a "yes" is asked of the server again
    /// (another host may have started a new run a moment ago).
    fn kill_flag(&self) -> bool {
        let sh = &self.sh;
        if sh.killed.load(SeqCst) {
            let _ = sh.refresh(None);
        }
        sh.killed.load(SeqCst)
    }

    /// Sets the flag here at once, and in Redis (every host hears of it);
    /// if Redis cannot be reached, in this process only.
    fn kill(&self) {
        let sh = &self.sh;
        sh.killed.store(true, SeqCst);
        sh.bump();
        if let Ok(r) = sh.run(None, |s| &s.kill, &[]) {
            if r.first() == Some(&4) {
                let _ = sh.gone(None);
            }
        }
    }

    fn run_over(&self, run_id: u32) -> bool {
        self.sh.killed.load(SeqCst) || self.sh.run_id.load(SeqCst) != run_id
    }

    fn start(&self, now: i64, _as_throttle: bool) -> Result<u32> {
        let sh = &self.sh;
        loop {
            let r = sh.run(None, |s| &s.start, &[])?;
            match r[..] {
                [0, run] => {
                    *sh.run_start.lock() = now;
                    *sh.pending.lock() = Pending {
                        run: run as u32,
                        ..Pending::default()
                    };
                    sh.run_id.store(run as u32, SeqCst);
                    sh.killed.store(false, SeqCst);
                    sh.running.store(true, SeqCst);
                    sh.latest.store(0, SeqCst);
                    sh.bump();
                    return Ok(run as u32);
                }
                [1, _] => {
                    return Err(Error::WrongState(
                        "the throttle is running already (started by this or another host)".into(),
                    ));
                }
                [4] => {
                    if !sh.gone(None)? {
                        return Err(Error::NotFound(format!(
                            "throttle {:?} was unlinked from Redis",
                            sh.name
                        )));
                    }
                }
                _ => return Err(unexpected("start", &r)),
            }
        }
    }

    /// Closes this process's emissions and sends the last of them with the
    /// stop, so that its summary counts every grant made here.
    fn stop(&self, _now: i64) -> Result<()> {
        let sh = &self.sh;
        let _ = sh.flush();
        let sending = sh.sending.lock();
        let (run, count) = {
            let mut p = sh.pending.lock();
            p.closed = true;
            p.times.clear(); // the few since the flush: counted, not timed
            (p.run, std::mem::take(&mut p.count))
        };
        let reopen = || {
            let mut p = sh.pending.lock();
            p.closed = false;
            if p.run == run {
                p.count += count;
            }
        };
        let r = sh.run(None, |s| &s.stop, &[i64::from(run), count as i64]);
        drop(sending);
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                reopen();
                return Err(e);
            }
        };
        match r[..] {
            [0, runtime, emitted] => {
                sh.runtime_ns
                    .store((runtime.max(0) as u64).saturating_mul(1000), SeqCst);
                sh.emitted.store(emitted.max(0) as u64, SeqCst);
                sh.running.store(false, SeqCst);
                sh.killed.store(true, SeqCst);
                sh.latest.store(0, SeqCst);
                sh.bump();
                // Other processes send their last emissions as soon as they
                // hear of the stop: give them the time, so that the totals
                // the caller reads next count them.
                if sh.listeners() > 1 {
                    std::thread::sleep(Duration::from_nanos(STOP_SETTLE_NS as u64));
                }
                // Every host's intervals, up to the last emission.
                if sh.fleet_stats {
                    let _ = sh.flush_emissions(true);
                    let _ = sh.refresh(None);
                }
                Ok(())
            }
            [1] => {
                reopen();
                sh.note_reply(2, -1);
                Err(Error::WrongState("the throttle is not running".into()))
            }
            [4] => {
                reopen();
                sh.gone(None)?;
                Err(Error::WrongState(
                    "the throttle is not running (Redis lost it, and it was made again)".into(),
                ))
            }
            _ => {
                reopen();
                Err(unexpected("stop", &r))
            }
        }
    }

    fn runtime(&self) -> (i64, i64) {
        (
            self.sh.runtime_ns.load(SeqCst) as i64,
            *self.sh.run_start.lock(),
        )
    }

    /// One unit comes from this process's lease when it holds one due by
    /// `latest`; else one round trip reserves it (with a batch after it,
    /// see `Lease`). `n` units at once are always one reservation.
    fn reserve(&self, n: u64, now: i64, latest: i64, clock: &dyn Clock) -> Result<Option<Ticket>> {
        let sh = &self.sh;
        let max_wait = if latest == i64::MAX {
            -1
        } else {
            latest.saturating_sub(now).max(0) / 1000
        };
        // One reservation at a time per process: the others take from its
        // batch. Waited for no longer than the caller may wait (and at
        // least one round trip's worth).
        let patience = latest
            .saturating_sub(now)
            .clamp(link::MIN_TIMEOUT_NS, i64::MAX / 2);
        let Some(mut lease) = sh.lease.try_lock_for(Duration::from_nanos(patience as u64)) else {
            return Ok(None);
        };
        let run = sh.run_id.load(SeqCst);
        if n == 1 {
            lease.prune(run, clock.now_ns());
            match lease.units.front() {
                Some(&grant) if grant <= latest => {
                    lease.units.pop_front();
                    // What is left is a quarter of a batch or less, and
                    // covers little time: the next batch is asked for now,
                    // so that it follows on with no slot lost on the way
                    // (ONE keeps none for a late taker).
                    let cover = lease.units.back().copied().unwrap_or(grant);
                    if sh.batching()
                        && lease.units.len() as u64 <= lease.batch / 4
                        && cover - clock.now_ns() < (4 * lease.rtt_ns).max(REFILL_BEFORE_NS)
                    {
                        self.refill(&mut lease, clock);
                    }
                    return Ok(Some(Ticket::remote(grant, 1, 0, run.into(), LEASED)));
                }
                // The next is due after the deadline: so is any other.
                Some(_) => return Ok(None),
                None => {}
            }
        }
        let batch = if n == 1 && sh.batching() {
            lease.batch
        } else {
            1
        };
        loop {
            let r = sh.retrying(latest, clock, |d| {
                sh.run(
                    d,
                    |s| &s.reserve,
                    &[n as i64, max_wait, batch as i64, BATCH_HORIZON_US],
                )
            })?;
            let Some(r) = r else { return Ok(None) };
            // The reply's arrival: the waits count from here.
            let arrived = clock.now_ns();
            lease.rtt_ns = arrived.saturating_sub(now);
            match r[..] {
                [0, wait, run, generation, a, b, ref more @ ..] => {
                    sh.note_reply(0, run);
                    let run = run as u32;
                    // Due when the server decided: in the tank when the
                    // caller came (a round trip ago), as in shared memory;
                    // else counted from the reply's arrival.
                    let first = if wait <= 0 {
                        now
                    } else {
                        grant_at(arrived, wait)
                    };
                    // The first is this caller's; the rest, the lease's.
                    lease.take_in(run, arrived, more, more.len() + 1, batch);
                    let slot = if more.is_empty() {
                        (u128::from(a as u64) << 64) | u128::from(b as u64)
                    } else {
                        LEASED
                    };
                    return Ok(Some(Ticket::remote(
                        first,
                        n,
                        generation as u32,
                        run.into(),
                        slot,
                    )));
                }
                [1, _, run, _] => {
                    sh.note_reply(1, run);
                    return Ok(None);
                }
                [code @ (2 | 3), _, run, _] => {
                    sh.note_reply(code, run);
                    return Ok(None);
                }
                [4] => {
                    if !sh.gone(None)? {
                        return Ok(None);
                    }
                }
                _ => return Err(unexpected("reserve", &r)),
            }
        }
    }

    fn follow(&self, ticket: &mut Ticket, _deadline: i64, _clock: &dyn Clock) -> Result<Follow> {
        Ok(Follow::At(ticket.grant()))
    }

    fn turn_reached(&self, _ticket: &Ticket) -> bool {
        true
    }

    /// Gives the units back to the server if theirs is still its last
    /// reservation; else a single unit goes to this process's lease, for
    /// its next waiter (its time is kept). Otherwise they stay taken:
    /// [`GivenBack::Stuck`], and the waiter returns at its deadline.
    fn give_back(
        &self,
        ticket: &mut Ticket,
        still: &dyn Fn(i64) -> bool,
        clock: &dyn Clock,
    ) -> GivenBack {
        if !still(ticket.grant()) {
            return GivenBack::NotOurs;
        }
        let sh = &self.sh;
        let (generation, run, slot) = ticket.remote_parts();
        if slot != LEASED {
            let args = [
                run as i64,
                i64::from(generation),
                ticket.units() as i64,
                (slot >> 64) as u64 as i64,
                slot as u64 as i64,
            ];
            if let Ok(r) = sh.run(None, |s| &s.give_back, &args) {
                if r.first() == Some(&1) {
                    sh.bump();
                    return GivenBack::Done;
                }
            }
        }
        if ticket.units() == 1 && run == u64::from(sh.run_id.load(SeqCst)) {
            let mut lease = sh.lease.lock();
            lease.prune(run as u32, clock.now_ns());
            lease.keep(ticket.grant());
            drop(lease);
            sh.bump();
            return GivenBack::Done;
        }
        GivenBack::Stuck
    }

    fn confirm(&self, _ticket: Ticket) {}

    fn capacity(&self) -> Result<Option<u64>> {
        let rate = *self.sh.rate.lock();
        Ok(Schedule::new(rate, self.sh.hardcap).capacity_at(rate))
    }

    fn set_rate(&self, rate: Rate, _clock: &dyn Clock) -> Result<()> {
        let sh = &self.sh;
        let per_us = check_rate(rate, sh.hardcap)?;
        let r = sh.run(None, |s| &s.set_rate, &[rate.max_n() as i64, per_us as i64])?;
        match r.first() {
            Some(0) => {
                *sh.rate.lock() = rate;
                sh.bump();
                Ok(())
            }
            Some(4) => {
                *sh.rate.lock() = rate;
                if sh.gone(None)? {
                    Ok(())
                } else {
                    Err(Error::NotFound(format!(
                        "throttle {:?} was unlinked from Redis",
                        sh.name
                    )))
                }
            }
            _ => Err(unexpected("set_rate", &r)),
        }
    }

    fn rate(&self) -> Result<Rate> {
        self.sh.refresh(None)?;
        Ok(*self.sh.rate.lock())
    }

    fn peek(&self, n: u64, _clock: &dyn Clock) -> Result<(u64, i64)> {
        let sh = &self.sh;
        let r = sh.run(None, |s| &s.peek, &[n as i64])?;
        match r[..] {
            [0, level, wait] => Ok((level.max(0) as u64, wait.max(0).saturating_mul(1000))),
            [2] => {
                sh.note_reply(2, -1);
                Err(Error::NotRunning)
            }
            [3] => {
                sh.note_reply(3, -1);
                Err(Error::Killed)
            }
            [4] => {
                sh.gone(None)?;
                Err(Error::NotRunning)
            }
            _ => Err(unexpected("peek", &r)),
        }
    }

    fn epoch(&self) -> u32 {
        self.sh.epoch.load(SeqCst)
    }

    fn sleep(&self, epoch: u32, deadline: Option<i64>) -> Wake {
        self.sh.sleep(epoch, deadline.unwrap_or(i64::MAX))
    }

    fn sleepers(&self) -> u32 {
        self.sh.sleepers.load(SeqCst)
    }

    fn emit(&self, at: i64) -> bool {
        let sh = &self.sh;
        if !sh.running.load(SeqCst) || sh.killed.load(SeqCst) {
            return false;
        }
        {
            let run = sh.run_id.load(SeqCst);
            let mut p = sh.pending.lock();
            if p.run != run {
                *p = Pending {
                    run,
                    ..Pending::default()
                };
            }
            if p.closed {
                return false;
            }
            p.count += 1;
            if sh.fleet_stats && p.times.len() < TIMES_KEPT {
                p.times.push(at);
            }
        }
        true
    }

    fn total_emissions(&self) -> u64 {
        let sh = &self.sh;
        let _ = sh.flush().and_then(|()| sh.refresh(None));
        sh.emitted.load(SeqCst) + sh.pending.lock().count
    }

    fn figures(&self) -> Figures {
        let sh = &self.sh;
        let fresh = sh.refresh(None).is_ok();
        let l = *sh.local.lock();
        let fleet = |v: &AtomicI64| Some(v.load(SeqCst)).filter(|&ns| ns >= 0);
        Figures {
            latest: sh.latest.load(SeqCst),
            lo_ns: fleet(&sh.fleet_lo_ns),
            hi_ns: fleet(&sh.fleet_hi_ns),
            // Redis answered: its figures are as fresh as can be.
            heartbeat_ns: if fresh {
                monotonic_ns()
            } else {
                l.heartbeat_ns
            },
            status: l.status,
            monitor_pid: l.pid,
        }
    }

    /// Nothing: the emission times go to Redis, whose figures are every
    /// host's (`figures`); this process's monitor thread only beats.
    fn drain(&self, _cursor: &mut (), _add: &mut dyn FnMut(i64)) -> u64 {
        0
    }

    /// Only the heartbeat: the figures are Redis's.
    fn publish(
        &self,
        _latest: u64,
        _lo_ns: Option<i64>,
        _hi_ns: Option<i64>,
        heartbeat_ns: Option<i64>,
    ) {
        if let Some(h) = heartbeat_ns {
            self.sh.local.lock().heartbeat_ns = h;
        }
    }

    fn note_lost(&self, _lost: u64) {}

    fn set_monitor(&self, status: MonitorStatus) {
        let mut l = self.sh.local.lock();
        let me = process::id();
        match status {
            MonitorStatus::Running => {
                l.status = status;
                l.pid = me;
            }
            _ if l.pid == me => l.status = status,
            _ => {}
        }
    }
}
