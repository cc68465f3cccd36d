//! The shared-memory store: a throttle's state in one `MAP_SHARED` mapping,
//! which threads, `fork()`ed children and unrelated processes of one host
//! share.
//!
//! - [`layout`]: the `#[repr(C)]` state, every field an atomic;
//! - [`map`]: the mapping that holds it (anonymous, or a named POSIX
//!   object, checked for its owner);
//! - [`header`]: its validated, sealed header (the configuration);
//! - [`named`]: named objects: create, open, unlink, and their errors;
//! - [`lock`]: the change lock, a mutex in shared memory whose holder may
//!   die (nginx's `ngx_shmtx`), held by changes of rate and give-backs;
//! - [`lanes`]: the emission lanes the monitor drains;
//! - [`keys`]: the key table of a keyed throttle (one schedule per key);
//! - [`ShmStore`]: all of it behind the
//!   [`Store`] interface; the hardcaps'
//!   lock-free arithmetic on these atomics is [`crate::schedule`].

pub mod header;
pub mod keys;
pub mod lanes;
pub mod layout;
pub mod lock;
pub mod map;
pub mod named;

pub use layout::Shared;
pub use map::Mapping;

use self::layout::{MONITOR_IDLE, MONITOR_PANICKED, MONITOR_RUNNING, Phase};
use self::lock::{Held, HeldByLive};
use self::named::Created;
use super::{Figures, GivenBack, MonitorStatus, Store};
use crate::cancel::Wakeable;
use crate::clock::{Clock, monotonic_ns};
use crate::config::{Config, Options};
use crate::error::{Error, Result};
use crate::process;
use crate::schedule::{Follow, Hardcap, Rate, Refused, Reservation, Schedule, State, Ticket};
use crate::wait::{self, NoCancel, Wake};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

/// How long a rate change (and a start) waits for a live holder of the
/// change lock (held for microseconds by a running process).
pub(crate) const CHANGE_PATIENCE_NS: i64 = 200_000_000;
/// How long a waiter that times out waits for the change lock to give its
/// units back.
const GIVE_BACK_PATIENCE_NS: i64 = 2_000_000;

/// The shared-memory store (see the module documentation).
pub struct ShmStore {
    map: Mapping,
    /// The schedule of the throttle's own tank (a keyed throttle's is never
    /// used for fuel: each key has its own, in [`keys`]).
    schedule: Schedule,
    /// A keyed throttle: its table's shape and each key's schedule.
    keyed: Option<(keys::Geometry, Schedule)>,
}

impl std::fmt::Debug for ShmStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmStore")
            .field("schedule", &self.schedule)
            .field("bytes", &self.map.len())
            .finish()
    }
}

impl ShmStore {
    /// A new store of `config` in an anonymous mapping: this process and
    /// the children it forks share it.
    pub fn anonymous(config: &Config) -> Result<Self> {
        let map = Mapping::anonymous(named::tail_words(config)?)
            .map_err(|e| Error::System(format!("cannot map the shared state: {e}")))?;
        Self::init(map, config)
    }

    /// Creates the named store `name` for `config`, or opens the one of
    /// that name if it holds the same configuration (see
    /// [`named::create`]): the store, the configuration it holds, and
    /// whether this call made it.
    pub fn create_named(name: &str, config: &Config) -> Result<(Self, Config, bool)> {
        Ok(match named::create(name, config)? {
            Created::New(map) => (Self::init(map, config)?, *config, true),
            Created::Existing(map, theirs) => (Self::adopt(map, &theirs), theirs, false),
        })
    }

    /// Opens the existing named store `name` (see [`named::open`]): the
    /// store, and its configuration with the waiting preferences of
    /// `waiting`.
    pub fn open(name: &str, waiting: &Options) -> Result<(Self, Config)> {
        let (map, config) = named::open(name, waiting)?;
        Ok((Self::adopt(map, &config), config))
    }

    /// Removes the name (see [`named::unlink`]).
    pub fn unlink(name: &str) -> Result<()> {
        named::unlink(name)
    }

    /// Makes a fresh (zeroed) mapping the state of `config`, and seals it.
    fn init(map: Mapping, config: &Config) -> Result<Self> {
        let sh = map.shared();
        header::write(&sh.header, config, map.len());
        sh.published.lo_ns.store(-1, Relaxed);
        sh.published.hi_ns.store(-1, Relaxed);
        let store = Self::adopt(map, config);
        store.schedule.init(&store.state());
        if let Some(table) = store.table() {
            table
                .init()
                .map_err(|e| Error::System(format!("cannot read /dev/urandom: {e}")))?;
        }
        header::seal(&store.sh().header);
        Ok(store)
    }

    fn adopt(map: Mapping, config: &Config) -> Self {
        let keyed = config.key_geometry().map(|g| (g, config.schedule));
        let schedule = match keyed {
            // Its own tank is a plain LIMIT one that nothing draws on.
            Some(_) => Schedule::new(config.schedule.rate(), crate::schedule::Hardcap::Limit),
            None => config.schedule,
        };
        Self {
            map,
            schedule,
            keyed,
        }
    }

    /// The key table of a keyed throttle.
    #[inline(always)]
    pub fn table(&self) -> Option<keys::Table<'_>> {
        let (geometry, schedule) = self.keyed?;
        Some(keys::Table::new(self.map.ring(), geometry, schedule))
    }

    /// The shared state.
    #[inline(always)]
    pub fn sh(&self) -> &Shared {
        self.map.shared()
    }

    /// The atomics the schedule works on.
    #[inline(always)]
    fn state(&self) -> State<'_> {
        let sh = self.sh();
        State {
            tat: &sh.tat,
            records: &sh.records,
            give_backs: &sh.give_backs,
            head: &sh.head,
            ring: if self.keyed.is_some() {
                &[]
            } else {
                self.map.ring()
            },
            confirmed: &sh.confirmed,
            seeds: &sh.seeds,
        }
    }

    fn phase(&self) -> Result<(Phase, u32, u64)> {
        run_state(self.sh().control.run.load(SeqCst))
    }

    /// Moves the run state from `from` to `to`, recovering from a process
    /// that died halfway through a start or stop.
    fn transition(&self, from: Phase, to: Phase) -> Result<()> {
        let c = &self.sh().control;
        let me = process::id();
        let mine = to.pack(me, process::start_time());
        loop {
            let word = c.run.load(SeqCst);
            let (phase, pid, started) = run_state(word)?;
            if phase == from {
                if c.run.compare_exchange(word, mine, SeqCst, SeqCst).is_ok() {
                    return Ok(());
                }
                continue;
            }
            let busy = matches!(phase, Phase::Starting | Phase::Stopping);
            if busy && pid != me && !process::is_alive(pid, started) {
                // Its maker died mid-way (or is a zombie, or its pid is now
                // another process's): a half-done start never ran; a
                // half-done stop had already set the kill flag.
                let _ = c
                    .run
                    .compare_exchange(word, Phase::Stopped.pack(0, 0), SeqCst, SeqCst);
                continue;
            }
            return Err(Error::WrongState(match phase {
                Phase::Running => "the throttle is already running".into(),
                Phase::Stopped => {
                    "the throttle is not running (never started, or already stopped)".into()
                }
                _ => format!("process {pid} is starting or stopping this throttle right now"),
            }));
        }
    }

    /// Runs `f` holding the change lock: taken over from a dead holder;
    /// [`Error::System`] if a live one keeps it for `patience_ns`.
    fn change_locked<R>(&self, patience_ns: i64, f: impl FnOnce(&Held<'_>) -> R) -> Result<R> {
        match self.sh().change_lock.hold(patience_ns) {
            Ok(held) => Ok(f(&held)),
            Err(HeldByLive { pid }) => Err(Error::System(format!(
                "process {pid} has held the change lock of this throttle for {} ms without \
                 dying (stopped in a debugger?); try again",
                patience_ns / 1_000_000
            ))),
        }
    }

    /// Waits while a change of rate is being made (`WINDOW`: reserving waits
    /// for it), finishing or undoing it if its maker died: true once none
    /// is, false if `deadline` came first. Out of the fast path's way.
    #[cold]
    #[inline(never)]
    fn settle(&self, deadline: i64, clock: &dyn Clock) -> Result<bool> {
        let _no_cancel = NoCancel::hold();
        let sched = &self.schedule;
        let st = self.state();
        loop {
            if !sched.busy(&st) {
                return Ok(true);
            }
            // Had at once: the lock is free or its holder died, so the
            // change was abandoned.
            if let Ok(ok) = self.change_locked(0, |_| sched.recover_window(&st)) {
                if !ok {
                    return Err(corrupt());
                }
                continue;
            }
            if clock.now_ns() >= deadline {
                return Ok(false);
            }
            std::thread::yield_now();
        }
    }
}

impl Wakeable for ShmStore {
    /// Moves the epoch on and wakes every sleeper of the throttle, in every
    /// process (no syscall if none sleeps).
    fn wake_sleepers(&self) {
        self.sh().wake_sleepers();
    }
}

impl Store for ShmStore {
    type Cursor = lanes::Cursor;

    #[inline(always)]
    fn is_running(&self) -> bool {
        matches!(self.phase(), Ok((Phase::Running, _, _)))
    }

    #[inline(always)]
    fn run_id(&self) -> u32 {
        self.sh().control.run_id.load(SeqCst)
    }

    #[inline(always)]
    fn kill_flag(&self) -> bool {
        self.sh().control.kill.load(SeqCst) != 0
    }

    fn kill(&self) {
        self.sh().control.kill.store(1, SeqCst);
        self.wake_sleepers();
    }

    #[inline(always)]
    fn run_over(&self, run_id: u32) -> bool {
        let c = &self.sh().control;
        c.kill.load(SeqCst) != 0 || c.run_id.load(SeqCst) != run_id
    }

    fn start(&self, now: i64, as_throttle: bool) -> Result<u32> {
        self.transition(Phase::Stopped, Phase::Starting)?;
        let sh = self.sh();
        let c = &sh.control;
        let last_stop = (c.ever_started.load(SeqCst) != 0).then(|| c.last_stop_ns.load(SeqCst));
        if as_throttle {
            // Not while a change of rate is being made (WINDOW rewrites the
            // same ring).
            let opened = self.change_locked(CHANGE_PATIENCE_NS, |_| {
                self.schedule.start(&self.state(), now, last_stop);
            });
            if let Err(e) = opened {
                c.run.store(Phase::Stopped.pack(0, 0), SeqCst);
                return Err(e);
            }
        }
        c.ever_started.store(1, SeqCst);
        c.run_start_ns.store(now, SeqCst);
        let run_id = c.run_id.fetch_add(1, SeqCst).wrapping_add(1);
        sh.published.latest.store(0, SeqCst);
        // The monitor thread beats on the real clock, whatever the caller's.
        sh.published.heartbeat_ns.store(monotonic_ns(), SeqCst);
        lanes::open(sh);
        c.kill.store(0, SeqCst);
        c.run.store(
            Phase::Running.pack(process::id(), process::start_time()),
            SeqCst,
        );
        self.wake_sleepers();
        Ok(run_id)
    }

    fn stop(&self, now: i64) -> Result<()> {
        self.transition(Phase::Running, Phase::Stopping)?;
        let sh = self.sh();
        let c = &sh.control;
        c.kill.store(1, SeqCst);
        // From here on nothing is counted: the totals read after are final.
        lanes::close(sh);
        let ran = now.saturating_sub(c.run_start_ns.load(SeqCst)).max(0);
        c.runtime_ns.fetch_add(ran, SeqCst);
        c.last_stop_ns.store(now, SeqCst);
        sh.published.latest.store(0, SeqCst);
        c.run.store(Phase::Stopped.pack(0, 0), SeqCst);
        self.wake_sleepers();
        Ok(())
    }

    fn runtime(&self) -> (i64, i64) {
        let c = &self.sh().control;
        (c.runtime_ns.load(SeqCst), c.run_start_ns.load(SeqCst))
    }

    #[inline(always)]
    fn reserve(&self, n: u64, now: i64, latest: i64, clock: &dyn Clock) -> Result<Option<Ticket>> {
        loop {
            match self.schedule.reserve_n(&self.state(), n, now, latest) {
                (Reservation::Granted(_), ticket) => return Ok(Some(ticket)),
                (Reservation::Later(_), _) => return Ok(None),
                // A change is being made: wait for it, if the caller can.
                (Reservation::Busy, _) => {
                    if !self.settle(latest, clock)? {
                        return Ok(None);
                    }
                }
                // Or a change of rate left the tank too small for n: the
                // throttle tells the two apart (`Throttle::reserve`).
                (Reservation::Corrupt, _) => return Err(corrupt()),
            }
        }
    }

    fn follow(&self, ticket: &mut Ticket, deadline: i64, clock: &dyn Clock) -> Result<Follow> {
        loop {
            match self
                .schedule
                .follow(&self.state(), ticket)
                .ok_or_else(corrupt)?
            {
                Follow::Wait => {
                    if !self.settle(deadline, clock)? {
                        return Ok(Follow::Wait);
                    }
                }
                other => return Ok(other),
            }
        }
    }

    fn turn_reached(&self, ticket: &Ticket) -> bool {
        self.schedule.turn_reached(&self.state(), ticket)
    }

    fn give_back(
        &self,
        ticket: &mut Ticket,
        still: &dyn Fn(i64) -> bool,
        clock: &dyn Clock,
    ) -> GivenBack {
        let sched = &self.schedule;
        let st = self.state();
        let done = self.change_locked(GIVE_BACK_PATIENCE_NS, |_| {
            for _ in 0..8 {
                match sched.follow(&st, ticket) {
                    Some(Follow::At(grant)) if still(grant) => {}
                    // Moved back within the deadline, lost, or corrupt: the
                    // units are not ours to give.
                    _ => return GivenBack::NotOurs,
                }
                if sched.give_back(&st, ticket, &|| clock.now_ns()) {
                    return GivenBack::Done;
                }
            }
            GivenBack::Stuck
        });
        match done {
            Ok(GivenBack::Done) => {
                self.wake_sleepers();
                GivenBack::Done
            }
            Ok(other) => other,
            Err(_) => GivenBack::Stuck,
        }
    }

    #[inline(always)]
    fn confirm(&self, ticket: Ticket) {
        self.schedule.confirm(&self.state(), ticket);
    }

    #[inline(always)]
    fn capacity(&self) -> Result<Option<u64>> {
        self.schedule.capacity(&self.state()).ok_or_else(corrupt)
    }

    fn set_rate(&self, rate: Rate, clock: &dyn Clock) -> Result<()> {
        let sched = &self.schedule;
        let st = self.state();
        // The change takes effect when it is made, not when it was asked for:
        // the time is read holding the lock, just before the commit.
        // A WINDOW change freezes the ring while it rewrites it, and its
        // waiters reserve again after it: changes wait until the ring has
        // been thawed as long as the last one froze it, so that changes in
        // a tight loop, from any number of processes, keep it frozen half
        // the time at most. Before the lock, so that changers in other
        // processes get their turn at it; under it, to be sure.
        let window = sched.hardcap() == Hardcap::Window;
        let lock = &self.sh().change_lock;
        if window {
            lock.pace();
        }
        let done = self.change_locked(CHANGE_PATIENCE_NS, |held| {
            if window {
                lock.pace();
            }
            let began = monotonic_ns();
            let done = sched.set_rate(&st, rate, &|| clock.now_ns());
            if window {
                lock.paced(held, began);
            }
            done
        })?;
        // Waiters follow the change at once (and those of a change that
        // failed halfway see that the head is no longer frozen).
        self.wake_sleepers();
        match done {
            Ok(()) => Ok(()),
            Err(Refused::RingTooSmall(len)) => Err(Error::InvalidArgument(format!(
                "a WINDOW throttle keeps {len} grant times, so its max_n can grow to {len} \
                 at most (got {}); a larger max_n needs a new throttle",
                rate.max_n()
            ))),
            Err(Refused::Corrupt) => Err(corrupt()),
        }
    }

    fn rate(&self) -> Result<Rate> {
        self.schedule
            .current_rate(&self.state())
            .ok_or_else(corrupt)
    }

    fn peek(&self, n: u64, clock: &dyn Clock) -> Result<(u64, i64)> {
        let sched = &self.schedule;
        let mut quiet = 0;
        loop {
            let t = clock.now_ns();
            if let Some(found) = sched.peek(&self.state(), n, t) {
                return Ok(found);
            }
            // None: corrupt, or a change is being made (WINDOW).
            if !sched.busy(&self.state()) {
                quiet += 1;
                if quiet > 1 {
                    return Err(corrupt());
                }
            } else if !self.settle(t.saturating_add(CHANGE_PATIENCE_NS), clock)? {
                return Err(Error::System(
                    "a change of rate has taken too long (its process stopped?); try again".into(),
                ));
            }
        }
    }

    #[inline(always)]
    fn epoch(&self) -> u32 {
        self.sh().control.epoch.load(SeqCst)
    }

    fn sleep(&self, epoch: u32, deadline: Option<i64>) -> Wake {
        let c = &self.sh().control;
        wait::wait_counted(&c.waiters, &c.epoch, epoch, deadline)
    }

    fn sleepers(&self) -> u32 {
        self.sh().control.waiters.load(SeqCst)
    }

    #[inline(always)]
    fn emit(&self, at: i64) -> bool {
        lanes::push(self.sh(), at)
    }

    fn total_emissions(&self) -> u64 {
        lanes::total(self.sh())
    }

    fn figures(&self) -> Figures {
        let sh = self.sh();
        let p = &sh.published;
        let known = |v: i64| (v >= 0).then_some(v);
        Figures {
            latest: p.latest.load(Acquire),
            lo_ns: known(p.lo_ns.load(Acquire)),
            hi_ns: known(p.hi_ns.load(Acquire)),
            heartbeat_ns: p.heartbeat_ns.load(SeqCst),
            status: match p.status.load(SeqCst) {
                MONITOR_RUNNING => MonitorStatus::Running,
                MONITOR_PANICKED => MonitorStatus::Panicked,
                _ => MonitorStatus::Idle,
            },
            monitor_pid: sh.control.monitor_pid.load(SeqCst),
        }
    }

    fn drain(&self, cursor: &mut lanes::Cursor, add: &mut dyn FnMut(i64)) -> u64 {
        lanes::drain(self.sh(), cursor, add)
    }

    fn publish(
        &self,
        latest: u64,
        lo_ns: Option<i64>,
        hi_ns: Option<i64>,
        heartbeat_ns: Option<i64>,
    ) {
        let p = &self.sh().published;
        p.latest.store(latest, Release);
        p.lo_ns.store(lo_ns.unwrap_or(-1), Release);
        p.hi_ns.store(hi_ns.unwrap_or(-1), Release);
        if let Some(t) = heartbeat_ns {
            p.heartbeat_ns.store(t, Release);
        }
    }

    fn note_lost(&self, lost: u64) {
        self.sh().published.lost.fetch_add(lost, Relaxed);
    }

    fn set_monitor(&self, status: MonitorStatus) {
        let sh = self.sh();
        let (p, c) = (&sh.published, &sh.control);
        match status {
            MonitorStatus::Running => {
                p.status.store(MONITOR_RUNNING, SeqCst);
                c.monitor_pid.store(process::id(), SeqCst);
            }
            MonitorStatus::Idle => {
                if c.monitor_pid.load(SeqCst) == process::id() {
                    c.monitor_pid.store(0, SeqCst);
                    p.status.store(MONITOR_IDLE, SeqCst);
                }
            }
            MonitorStatus::Panicked => p.status.store(MONITOR_PANICKED, SeqCst),
        }
    }
}

/// The `(phase, pid, start time)` of a run word, or `Corrupt`.
fn run_state(word: u128) -> Result<(Phase, u32, u64)> {
    Phase::unpack(word).ok_or_else(|| Error::Corrupt("the shared run state is corrupt".into()))
}

fn corrupt() -> Error {
    Error::Corrupt("the shared schedule state is corrupt".into())
}

impl super::KeyedStore for ShmStore {
    #[inline(always)]
    fn key_reserve(
        &self,
        key: &[u8],
        n: u64,
        now: i64,
        latest: i64,
        clock: &dyn Clock,
    ) -> Result<Option<super::KeyGrant>> {
        let (table, key) = self.key(key)?;
        match table.reserve(&key, n, now, latest, CHANGE_PATIENCE_NS, clock) {
            Ok(keys::Reserved::Granted { slot, ticket, .. }) => Ok(Some(super::KeyGrant {
                grant: ticket.grant,
                token: super::KeyToken::Slot(slot, ticket),
            })),
            Ok(keys::Reserved::Later(_)) => Ok(None),
            Err(refusal) => Err(refused(refusal)),
        }
    }

    fn key_give_back(&self, _key: &[u8], n: u64, grant: &super::KeyGrant) {
        if let (Some(table), super::KeyToken::Slot(slot, ticket)) = (self.table(), grant.token) {
            table.give_back(slot, n, &ticket);
        }
    }

    fn key_peek(&self, key: &[u8], n: u64, clock: &dyn Clock) -> Result<(u64, i64)> {
        let (table, key) = self.key(key)?;
        table.peek(&key, n, clock.now_ns()).map_err(refused)
    }

    fn key_forget(&self, key: &[u8]) -> Result<bool> {
        let (table, key) = self.key(key)?;
        table.forget(&key, CHANGE_PATIENCE_NS).map_err(refused)
    }

    fn key_figures(&self, key: &[u8]) -> Result<Option<super::KeyFigures>> {
        let (table, key) = self.key(key)?;
        Ok(table.figures(&key))
    }

    fn table_figures(&self) -> Result<super::TableFigures> {
        let table = self.table().ok_or_else(not_keyed)?;
        Ok(super::TableFigures {
            live: table.live(),
            capacity: table.geometry().capacity,
            evictions: table.evictions(),
            added: table.added(),
        })
    }
}

impl ShmStore {
    /// The key table and `key` hashed for it.
    #[inline(always)]
    fn key(&self, key: &[u8]) -> Result<(keys::Table<'_>, keys::Key)> {
        let table = self.table().ok_or_else(not_keyed)?;
        let key = table.key(key).ok_or_else(|| keys::too_long(key.len()))?;
        Ok((table, key))
    }
}

fn not_keyed() -> Error {
    Error::WrongState("not a keyed throttle".into())
}

/// The error for a refused key reservation.
fn refused(refusal: keys::Refusal) -> Error {
    match refusal {
        keys::Refusal::NoRoom(m) => Error::NoRoom(m),
        keys::Refusal::Locked(held) => Error::System(format!(
            "process {} has held the key table's lock of this throttle for {} ms without \
             dying (stopped in a debugger?); try again",
            held.pid,
            CHANGE_PATIENCE_NS / 1_000_000
        )),
        keys::Refusal::Corrupt(what) => Error::Corrupt(format!(
            "the shared state is corrupt: {what} holds values no correct process writes"
        )),
    }
}
