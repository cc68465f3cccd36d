//! The throttle: a shared state in a `MAP_SHARED` mapping, plus what one
//! process keeps privately about it (its configuration copy, its clock, its
//! monitor thread).
//!
//! Fork model: a `Throttle` made before `fork()` works in every child. The
//! child touches only the shared mapping and atomics; the private monitor
//! slot (a `parking_lot` mutex that the parent's thread may have held at the
//! instant of the fork) is used only by the process that made the handle.

use crate::cancel::Cancel;
use crate::clock::{Clock, Monotonic, monotonic_ns};
use crate::config::{self, Config, Options};
use crate::error::{Error, Result};
use crate::monitor::{self, MonitorThread};
use crate::process;
use crate::schedule::{Follow, Rate, Refused, Reservation, State, TURN_PATIENCE_NS, Ticket};
use crate::shm::layout::{MONITOR_PANICKED, Phase, Shared};
use crate::shm::{Mapping, header, layout, map};
use crate::stats::RatePair;
use crate::wait::{self, TimerSlack, Wake};
use parking_lot::Mutex;
use portable_atomic::AtomicU128;
use std::ffi::{CStr, CString};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};

/// What `stop` reports, as mp_throttle's `stop()` tuple.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Running time of all runs so far, in seconds.
    pub runtime_s: f64,
    /// Emissions counted so far.
    pub total: u64,
    /// Mean seconds between emissions (0 if none).
    pub mean_seconds_between: f64,
    /// Mean emissions per second (0 if none).
    pub mean_per_second: f64,
}

/// One process's handle on a throttle.
pub struct Throttle {
    map: Arc<Mapping>,
    config: Config,
    clock: Arc<dyn Clock>,
    /// The process that made this handle: the only one that touches `monitor`.
    owner: u32,
    /// Whether this handle made the shared state (new, or a create_named
    /// that created it) rather than opened an existing one.
    created: bool,
    monitor: Mutex<Option<MonitorThread>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Throttle {
    /// A new throttle on `CLOCK_MONOTONIC`; nothing runs until [`start`](Self::start).
    pub fn new(config: Config) -> Result<Self> {
        Self::with_clock(config, Arc::new(Monotonic))
    }

    /// A new throttle reading time from `clock`. Only [`Monotonic`] can
    /// sleep correctly; a manual clock suits tests of the non-blocking calls.
    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        check_atomics()?;
        let map = Mapping::anonymous(config.schedule.ring_len())
            .map_err(|e| Error::System(format!("cannot map the shared state: {e}")))?;
        Ok(Self::init(map, config, clock))
    }

    /// Creates the throttle `name`, which any process of the same user can
    /// open by that name; or, if a throttle of that name exists with the
    /// same configuration, opens it. Two processes that create the same name
    /// at once end up with one throttle, initialised before either uses it.
    /// Errors: [`Error::Mismatch`] (exists, configured otherwise),
    /// [`Error::PermissionDenied`], [`Error::System`] (no room).
    pub fn create_named(name: &str, config: Config) -> Result<Self> {
        check_atomics()?;
        let shm = shm_name(name)?;
        // The name may be unlinked between our failed create and our open:
        // then create again (a few times at most: something is racing us).
        for _ in 0..8 {
            match Mapping::create_named(&shm, config.schedule.ring_len()) {
                Ok(Some(map)) => return Ok(Self::init(map, config, Arc::new(Monotonic))),
                Ok(None) => {}
                Err(e) => return Err(os_error(name, "create", &e)),
            }
            match Self::open_shm(name, &shm, &config.waiting()) {
                Ok(existing) if header::same_throttle(&existing.config, &config) => {
                    return Ok(existing);
                }
                Ok(existing) => {
                    let theirs = existing.config.schedule;
                    return Err(Error::Mismatch(format!(
                        "throttle {name:?} exists as {} per {} ns ({:?}) with other options than \
                         asked; open it to adopt its configuration, or unlink it",
                        theirs.rate().max_n(),
                        theirs.rate().per_ns(),
                        theirs.hardcap()
                    )));
                }
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::System(format!(
            "throttle {name:?} keeps being created and removed by other processes"
        )))
    }

    /// Opens the existing throttle `name`, adopting its configuration; the
    /// waiting preferences (timer slack, spin) come from `waiting`.
    /// Errors: [`Error::NotFound`], [`Error::PermissionDenied`],
    /// [`Error::Corrupt`] (foreign, truncated or damaged),
    /// [`Error::Unsupported`] (made by another layout version).
    pub fn open(name: &str, waiting: &Options) -> Result<Self> {
        config::check_waiting(waiting)?;
        check_atomics()?;
        Self::open_shm(name, &shm_name(name)?, waiting)
    }

    /// Removes the name. Processes that have the throttle open keep using
    /// it; it is freed when the last one lets go. Errors: [`Error::NotFound`],
    /// [`Error::PermissionDenied`].
    pub fn unlink(name: &str) -> Result<()> {
        map::unlink(&shm_name(name)?).map_err(|e| os_error(name, "unlink", &e))
    }

    fn open_shm(name: &str, shm: &CStr, waiting: &Options) -> Result<Self> {
        let map =
            Mapping::open_named(shm, OPEN_PATIENCE_NS).map_err(|e| os_error(name, "open", &e))?;
        let give_up = monotonic_ns().saturating_add(OPEN_PATIENCE_NS);
        while !header::sealed(&map.shared().header)? {
            if monotonic_ns() > give_up {
                return Err(Error::Corrupt(format!(
                    "throttle {name:?} was never finished: the process creating it may have \
                     died; unlink the name and create it again"
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let config =
            header::read(map.shared(), map.len(), waiting).map_err(|e| with_name(name, e))?;
        Ok(Self::adopt(map, config, Arc::new(Monotonic)))
    }

    /// Makes a fresh (zeroed) mapping a throttle of `config`, and seals it.
    fn init(map: Mapping, config: Config, clock: Arc<dyn Clock>) -> Self {
        let sh = map.shared();
        header::write(&sh.header, &config, map.len());
        sh.published.lo_ns.store(-1, Relaxed);
        sh.published.hi_ns.store(-1, Relaxed);
        let mut throttle = Self::adopt(map, config, clock);
        throttle.created = true;
        config.schedule.init(&throttle.state());
        header::seal(&throttle.sh().header);
        throttle
    }

    /// This process's handle on a mapping that holds a throttle of `config`
    /// (`process::id` installs the fork hook on first use).
    fn adopt(map: Mapping, config: Config, clock: Arc<dyn Clock>) -> Self {
        Self {
            map: Arc::new(map),
            config,
            clock,
            owner: process::id(),
            created: false,
            monitor: Mutex::new(None),
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether this handle made the shared state ([`new`](Self::new), or a
    /// [`create_named`](Self::create_named) that created the name) rather
    /// than opened one that existed.
    pub fn created(&self) -> bool {
        self.created
    }

    fn sh(&self) -> &Shared {
        self.map.shared()
    }

    fn state(&self) -> State<'_> {
        let sh = self.sh();
        State {
            tat: &sh.tat,
            records: &sh.records,
            head: &sh.head,
            ring: self.map.ring(),
            confirmed: &sh.confirmed,
        }
    }

    fn phase(&self) -> Result<(Phase, u32, u64)> {
        run_state(self.sh().control.run.load(SeqCst))
    }

    /// Whether run `run_id` is over for its waiters: killed, or another run
    /// began.
    fn run_over(&self, run_id: u32) -> bool {
        let c = &self.sh().control;
        c.kill.load(SeqCst) != 0 || c.run_id.load(SeqCst) != run_id
    }

    /// Whether the throttle is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        matches!(self.phase(), Ok((Phase::Running, _, _)))
    }

    /// Whether the kill flag is set.
    pub fn kill_flag_is_set(&self) -> bool {
        self.sh().control.kill.load(SeqCst) != 0
    }

    /// Sets the kill flag: every waiter, in every process, returns
    /// [`Error::Killed`] at once, and so does every later call that takes
    /// fuel, until the next `start`.
    pub fn kill(&self) {
        self.sh().control.kill.store(1, SeqCst);
        self.wake_all();
    }

    /// Tells every sleeper that something changed (no syscall if none sleeps).
    fn wake_all(&self) {
        wake_sleepers(self.sh());
    }

    /// Sleeps until `deadline` or until the epoch moves on from `epoch`.
    fn sleep(&self, epoch: u32, deadline: Option<i64>) -> Wake {
        let c = &self.sh().control;
        wait::wait_counted(&c.waiters, &c.epoch, epoch, deadline)
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

    /// The private monitor slot, locked, in the process that made this
    /// handle; `None` in a forked child, which must never touch it (the
    /// parent's thread may have held it at the fork). Held across a whole
    /// start or stop, so threads that start and stop one handle at once
    /// never join each other's monitors.
    fn monitor_slot(&self) -> Option<parking_lot::MutexGuard<'_, Option<MonitorThread>>> {
        (process::id() == self.owner).then(|| self.monitor.lock())
    }

    /// Starts (or resumes) the throttle: clears the kill flag, opens the tank,
    /// and, with `as_monitor`, starts the monitor thread in this process.
    pub fn start(&self) -> Result<()> {
        let mut slot = self.monitor_slot();
        self.transition(Phase::Stopped, Phase::Starting)?;
        let sh = self.sh();
        let c = &sh.control;
        let now = self.clock.now_ns();
        let last_stop = (c.ever_started.load(SeqCst) != 0).then(|| c.last_stop_ns.load(SeqCst));
        if self.config.as_throttle {
            // Not while a change of rate is being made (WINDOW rewrites the
            // same ring).
            let sched = &self.config.schedule;
            let opened = self.change_locked(CHANGE_PATIENCE_NS, || {
                sched.start(&self.state(), now, last_stop);
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
        // The monitor thread beats on the real clock, whatever this one is.
        sh.published.heartbeat_ns.store(monotonic_ns(), SeqCst);
        monitor::open(sh);
        c.kill.store(0, SeqCst);
        c.run.store(
            Phase::Running.pack(process::id(), process::start_time()),
            SeqCst,
        );
        self.wake_all();
        if self.config.as_monitor {
            match MonitorThread::spawn(Arc::clone(&self.map), run_id, self.config.refresh_ns) {
                // A forked child's monitor (no slot) ends with its run.
                Ok(thread) => {
                    if let Some(old) = slot.as_mut().and_then(|s| s.replace(thread)) {
                        old.join(); // a finished run's monitor
                    }
                }
                Err(e) => {
                    self.finish_stop(slot.as_deref_mut());
                    return Err(Error::System(format!(
                        "cannot start the monitor thread: {e}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Stops (pauses) the throttle: sets the kill flag, wakes every waiter,
    /// ends the monitor thread and reports the totals so far. Runtime and
    /// totals carry over a later `start`.
    pub fn stop(&self) -> Result<Summary> {
        let mut slot = self.monitor_slot();
        self.transition(Phase::Running, Phase::Stopping)?;
        self.finish_stop(slot.as_deref_mut());
        Ok(self.summary())
    }

    /// The rest of a stop, once this thread owns the transition.
    fn finish_stop(&self, slot: Option<&mut Option<MonitorThread>>) {
        let sh = self.sh();
        let c = &sh.control;
        c.kill.store(1, SeqCst);
        // From here on nothing is counted: the totals read below are final.
        monitor::close(sh);
        let now = self.clock.now_ns();
        let ran = now.saturating_sub(c.run_start_ns.load(SeqCst)).max(0);
        c.runtime_ns.fetch_add(ran, SeqCst);
        c.last_stop_ns.store(now, SeqCst);
        sh.published.latest.store(0, SeqCst);
        c.run.store(Phase::Stopped.pack(0, 0), SeqCst);
        self.wake_all();
        if let Some(thread) = slot.and_then(Option::take) {
            thread.join();
        }
    }

    /// Running time of all runs so far, including the current one, in ns.
    pub fn runtime_ns(&self) -> i64 {
        let c = &self.sh().control;
        let done = c.runtime_ns.load(SeqCst);
        if self.is_running() {
            let current = self
                .clock
                .now_ns()
                .saturating_sub(c.run_start_ns.load(SeqCst));
            done.saturating_add(current.max(0))
        } else {
            done
        }
    }

    /// Emissions counted so far, by every process.
    pub fn total_emissions(&self) -> u64 {
        monitor::total(self.sh())
    }

    /// The four figures `stop` returns, as of now.
    pub fn summary(&self) -> Summary {
        let runtime = self.runtime_ns();
        let total = self.total_emissions();
        let mean = RatePair::mean(total, runtime);
        Summary {
            runtime_s: runtime as f64 / 1e9,
            total,
            mean_seconds_between: mean.seconds_between,
            mean_per_second: mean.per_second,
        }
    }

    /// Blocks until a unit of fuel is granted, and returns its grant time
    /// (`CLOCK_MONOTONIC` ns). `timeout_ns`: `None` waits forever, `Some(0)`
    /// does not wait. Errors: [`Error::Timeout`], [`Error::Killed`].
    pub fn await_fuel(&self, timeout_ns: Option<i64>) -> Result<i64> {
        self.await_fuel_n(1, timeout_ns)
    }

    /// Blocks until `n` units of fuel are granted, all at once, and returns
    /// their grant time. With auto_emit, that counts one emission (one
    /// piece of work, however many units it took).
    ///
    /// The waiter reserves its units first, then sleeps to their grant time,
    /// so waiters are served in the order they arrive. Before `start` it
    /// waits for `start`. A waiter that would be granted only after its
    /// timeout reserves nothing and returns `Timeout` at the timeout, unless
    /// the throttle is stopped or killed first. A sleeping waiter follows
    /// every rate change at once; if one moves its grant past its timeout,
    /// it gives its units back (every waiter behind it moves up) and
    /// returns `Timeout`. Errors also: [`Error::InvalidArgument`] (`n` is 0
    /// or more than the tank can ever hold).
    pub fn await_fuel_n(&self, n: u64, timeout_ns: Option<i64>) -> Result<i64> {
        self.await_fuel_cancellable(n, timeout_ns, None)
    }

    /// As [`await_fuel_n`](Self::await_fuel_n), ended early by `cancel`
    /// ([`Error::Cancelled`]): the units it reserved are given back, so it
    /// takes nothing and those behind it move up, in order (with `WINDOW`
    /// they reserve again, one place up; its units stay taken only if the
    /// ring no longer holds them). Errors also: [`Error::WrongState`] for a
    /// token made by another process.
    pub fn await_fuel_cancellable(
        &self,
        n: u64,
        timeout_ns: Option<i64>,
        cancel: Option<&Cancel>,
    ) -> Result<i64> {
        self.check_units(n)?;
        let c = &self.sh().control;
        let now = self.clock.now_ns();
        // The common case first: the fuel is in the tank now.
        let free = cancel.is_none_or(|token| token.is_usable_here() && !token.is_fired());
        if free && c.kill.load(SeqCst) == 0 && self.is_running() {
            let run_id = c.run_id.load(SeqCst);
            if let Some(ticket) = self.reserve(n, now, now)? {
                return self.granted(ticket, run_id, now);
            }
        }
        self.await_queued(n, now, timeout_ns, cancel)
    }

    /// The rest of [`await_fuel_cancellable`](Self::await_fuel_cancellable)
    /// for a caller that arrived at `now` and found no fuel in the tank:
    /// queue (reserve ahead) and sleep, or wait for a start.
    fn await_queued(
        &self,
        n: u64,
        mut now: i64,
        timeout_ns: Option<i64>,
        cancel: Option<&Cancel>,
    ) -> Result<i64> {
        let _registered = match cancel {
            Some(token) if !token.is_usable_here() => {
                return Err(Error::WrongState(
                    "this mpt_cancel was made by another process (before a fork): make one \
                     in this process"
                        .into(),
                ));
            }
            Some(token) => Some(token.register(&self.map)),
            None => None,
        };
        let cancelled = || cancel.is_some_and(Cancel::is_fired);
        let c = &self.sh().control;
        let arrived = now;
        let deadline = timeout_ns.map(|t| now.saturating_add(t.max(0)));
        loop {
            let epoch = c.epoch.load(SeqCst);
            if c.kill.load(SeqCst) != 0 {
                return Err(Error::Killed);
            }
            if cancelled() {
                return Err(Error::Cancelled);
            }
            let run_id = c.run_id.load(SeqCst);
            let reserved = if !self.is_running() {
                None
            } else {
                self.reserve(n, now, deadline.unwrap_or(i64::MAX))?
            };
            let Some(mut ticket) = reserved else {
                if self.sleep(epoch, deadline) == Wake::TimedOut {
                    return Err(Error::Timeout);
                }
                now = self.clock.now_ns();
                continue;
            };
            if ticket.grant() <= now {
                return self.granted(ticket, run_id, arrived); // in the tank
            }
            match self.sleep_until(&mut ticket, run_id, deadline, &cancelled)? {
                Slept::Granted => return self.granted(ticket, run_id, arrived),
                // Its units were lost to changes it slept through: queue
                // again, in its old place if it still has one, and only
                // if the tank can still hold them.
                Slept::Lost => {
                    self.await_turn(&ticket, run_id, deadline, &cancelled);
                    self.check_units(n)?;
                    now = self.clock.now_ns();
                }
            }
        }
    }

    /// Waits (at most [`TURN_PATIENCE_NS`]) until the waiters that were
    /// before the holder of `ticket`, whose units a change made void, have
    /// reserved again, so that it keeps its place; ends early when it
    /// would return anyway (run over, deadline, cancelled).
    fn await_turn(
        &self,
        ticket: &Ticket,
        run_id: u32,
        deadline: Option<i64>,
        cancelled: &dyn Fn() -> bool,
    ) {
        let sched = &self.config.schedule;
        let st = self.state();
        let give_up = monotonic_ns().saturating_add(TURN_PATIENCE_NS);
        while !sched.turn_reached(&st, ticket)
            && monotonic_ns() < give_up
            && !self.run_over(run_id)
            && !cancelled()
            && deadline.is_none_or(|d| self.clock.now_ns() < d)
        {
            std::thread::yield_now();
        }
    }

    /// Waits while a change of rate is being made (`WINDOW`: reserving waits
    /// for it), finishing or undoing it if its maker died: true once none
    /// is, false if `deadline` came first. Out of the fast path's way.
    #[cold]
    #[inline(never)]
    fn settle(&self, deadline: i64) -> Result<bool> {
        let sched = &self.config.schedule;
        let st = self.state();
        loop {
            if !sched.busy(&st) {
                return Ok(true);
            }
            // Had at once: the lock is free or its holder died, so the
            // change was abandoned.
            if let Ok(ok) = self.change_locked(0, || sched.recover_window(&st)) {
                if !ok {
                    return Err(corrupt());
                }
                continue;
            }
            if self.clock.now_ns() >= deadline {
                return Ok(false);
            }
            std::thread::yield_now();
        }
    }

    /// `InvalidArgument` unless `n` units could ever be granted at once.
    #[inline(always)]
    fn check_units(&self, n: u64) -> Result<()> {
        if n == 0 {
            return Err(Error::InvalidArgument(
                "n is 0: take at least one unit of fuel".into(),
            ));
        }
        if n == 1 || !self.config.as_throttle {
            return Ok(()); // every tank holds one unit
        }
        match self.config.schedule.capacity(&self.state()) {
            None => Err(corrupt()),
            Some(Some(cap)) if n > cap => Err(Error::InvalidArgument(format!(
                "{n} units can never be granted at once: the tank holds at most {cap} \
                 ({:?} hardcap at the current rate)",
                self.config.schedule.hardcap()
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Sleeps until the units of `ticket` are due, with the configured timer
    /// slack, spinning on the clock for the configured tail (without one:
    /// the last [`AUTO_TAIL_NS`] of a sleep of [`AUTO_TAIL_AFTER_NS`] or
    /// more), and for any wait shorter than [`MIN_SLEEP_NS`]. Follows every
    /// change of the schedule at once. `Killed` if the run ends first;
    /// `Timeout` (units given back) if a change moves them past `deadline`.
    fn sleep_until(
        &self,
        ticket: &mut Ticket,
        run_id: u32,
        deadline: Option<i64>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Slept> {
        let c = &self.sh().control;
        // Tightened at the first real sleep only: a spin needs no syscall.
        let mut slack = None;
        let mut tail = None;
        // The ticket as last checked against the tank (it changes only when
        // a change is followed).
        let mut checked = None;
        loop {
            let epoch = c.epoch.load(SeqCst);
            if self.run_over(run_id) {
                return Err(Error::Killed);
            }
            // The time first, then the changes: a change committed after we
            // looked takes effect after our grant time had come.
            let now = self.clock.now_ns();
            let grant = match self.follow(ticket)? {
                Follow::At(grant) => grant,
                Follow::Lost => return Ok(Slept::Lost),
                Follow::Wait => {
                    if !self.settle(deadline.unwrap_or(i64::MAX))? {
                        return Err(Error::Timeout);
                    }
                    continue;
                }
            };
            if ticket.units() > 1 && checked != Some(*ticket) {
                checked = Some(*ticket);
                // A rate change may have left a tank too small for them all.
                if let Some(Some(cap)) = self.config.schedule.capacity(&self.state()) {
                    if ticket.units() > cap {
                        self.give_back(ticket, |_| true);
                        return Err(Error::InvalidArgument(format!(
                            "the rate changed while this waiter slept: the tank now holds at \
                             most {cap}, fewer than the {} units asked for; nothing was taken",
                            ticket.units()
                        )));
                    }
                }
            }
            if deadline.is_some_and(|d| grant > d) {
                self.give_back(ticket, |grant| deadline.is_some_and(|d| grant > d));
                return Err(Error::Timeout);
            }
            if cancelled() {
                self.give_back(ticket, |_| true);
                return Err(Error::Cancelled);
            }
            if now >= grant {
                return Ok(Slept::Granted);
            }
            let tail = *tail.get_or_insert(match self.config.spin_ns {
                0 if grant - now >= AUTO_TAIL_AFTER_NS => AUTO_TAIL_NS,
                spin => spin,
            });
            let wake_at = grant.saturating_sub(tail);
            if now >= wake_at || grant - now < MIN_SLEEP_NS {
                std::hint::spin_loop();
            } else {
                slack.get_or_insert_with(|| TimerSlack::tighten(self.config.timer_slack_ns));
                self.sleep(epoch, Some(wake_at));
            }
        }
    }

    fn follow(&self, ticket: &mut Ticket) -> Result<Follow> {
        if !self.config.as_throttle {
            return Ok(Follow::At(ticket.grant()));
        }
        self.config
            .schedule
            .follow(&self.state(), ticket)
            .ok_or_else(corrupt)
    }

    /// Gives back the units of a waiter (whose grant a change moved past its
    /// deadline, or whose wait was cancelled) if `still` holds for their
    /// grant time once followed, so every waiter behind it moves up. If the
    /// change lock
    /// cannot be had within [`GIVE_BACK_PATIENCE_NS`] (other changes keep it
    /// busy, or its holder is stopped) the units stay taken: the waiter
    /// returns at its deadline rather than late.
    fn give_back(&self, ticket: &mut Ticket, still: impl Fn(i64) -> bool) {
        if !self.config.as_throttle {
            return;
        }
        let sched = &self.config.schedule;
        let st = self.state();
        let done = self.change_locked(GIVE_BACK_PATIENCE_NS, || {
            for _ in 0..8 {
                match sched.follow(&st, ticket) {
                    Some(Follow::At(grant)) if still(grant) => {}
                    // Moved back within the deadline, lost, or corrupt: the
                    // units are not ours to give.
                    _ => return false,
                }
                if sched.give_back(&st, ticket, &|| self.clock.now_ns()) {
                    return true;
                }
            }
            false
        });
        if done.unwrap_or(false) {
            self.wake_all();
        }
    }

    /// Runs `f` holding the change lock: taken over from a dead holder;
    /// [`Error::System`] if a live one keeps it for `patience_ns`.
    fn change_locked<R>(&self, patience_ns: i64, f: impl FnOnce() -> R) -> Result<R> {
        let lock = &self.sh().change_lock;
        let me = Phase::Running.pack(process::id(), process::start_time());
        let give_up = monotonic_ns().saturating_add(patience_ns);
        loop {
            match lock.compare_exchange(0, me, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(held) => {
                    // No holder wrote a word that is not a holder's: scribbled,
                    // so as free as a dead holder's.
                    let holder = Phase::unpack(held).filter(|(p, _, _)| *p == Phase::Running);
                    let alive = holder.is_some_and(|(_, pid, started)| {
                        held == me || process::is_alive(pid, started)
                    });
                    if !alive {
                        let _ = lock.compare_exchange(held, 0, SeqCst, SeqCst);
                        continue;
                    }
                    let pid = holder.map_or(0, |(_, pid, _)| pid);
                    if monotonic_ns() > give_up {
                        return Err(Error::System(format!(
                            "process {pid} has held the change lock of this throttle for {} ms \
                             without dying (stopped in a debugger?); try again",
                            patience_ns / 1_000_000
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            }
        }
        struct Unlock<'a>(&'a AtomicU128, u128);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                let _ = self.0.compare_exchange(self.1, 0, SeqCst, SeqCst);
            }
        }
        let _unlock = Unlock(lock, me);
        Ok(f())
    }

    /// Changes the rate to `max_n` units per `per_ns`, from now on, for
    /// every process that shares the throttle, running or not. Sleeping
    /// waiters are rescheduled at once, in their order, at the new rate,
    /// and the change lets no burst through that the new rate forbids:
    /// `LIMIT`, `ONE`, `NONE` respace the queue and keep the tank's fuel up
    /// to what the new tank holds; `WINDOW` counts the grants made before
    /// the change in the new window, and its waiters reserve again (see
    /// `schedule::window`). Errors: [`Error::InvalidArgument`] (also a
    /// `WINDOW` `max_n` beyond the grant times it keeps),
    /// [`Error::System`] (another process has held the change lock for
    /// [`CHANGE_PATIENCE_NS`] without dying: stopped in a debugger?).
    pub fn set_rate(&self, max_n: u64, per_ns: u64) -> Result<()> {
        let rate = Rate::new(max_n, per_ns).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "max_n must be 1 to {} and per 1 ns to {} s (got {max_n} per {per_ns} ns)",
                crate::schedule::MAX_N,
                crate::schedule::MAX_PER_NS / 1_000_000_000
            ))
        })?;
        let sched = &self.config.schedule;
        let st = self.state();
        // The change takes effect when it is made, not when it was asked for:
        // the time is read holding the lock, just before the commit.
        let done = self.change_locked(CHANGE_PATIENCE_NS, || {
            sched.set_rate(&st, rate, &|| self.clock.now_ns())
        })?;
        // Waiters follow the change at once (and those of a change that
        // failed halfway see that the head is no longer frozen).
        self.wake_all();
        match done {
            Ok(()) => Ok(()),
            Err(Refused::RingTooSmall(len)) => Err(Error::InvalidArgument(format!(
                "a WINDOW throttle keeps {len} grant times, so its max_n can grow to {len} \
                 at most (got {max_n}); a larger max_n needs a new throttle"
            ))),
            Err(Refused::Corrupt) => Err(corrupt()),
        }
    }

    /// The rate in force: `(max_n, per_ns)`.
    pub fn rate(&self) -> Result<(u64, u64)> {
        let rate = self
            .config
            .schedule
            .current_rate(&self.state())
            .ok_or_else(corrupt)?;
        Ok((rate.max_n(), rate.per_ns()))
    }

    /// Looks without taking: `(units in the tank now, ns until n units would
    /// be there)`. Waiters already queued come first: their units are not
    /// in the tank. Without `as_throttle` the tank is bottomless (`u64::MAX`,
    /// 0). Errors: [`Error::Killed`], [`Error::NotRunning`] (no fuel accrues),
    /// [`Error::InvalidArgument`] (as for [`await_fuel_n`](Self::await_fuel_n)).
    pub fn peek(&self, n: u64) -> Result<(u64, i64)> {
        self.check_units(n)?;
        if self.kill_flag_is_set() {
            return Err(Error::Killed);
        }
        if !self.config.as_throttle {
            return Ok((u64::MAX, 0));
        }
        if !self.is_running() {
            return Err(Error::NotRunning);
        }
        let sched = &self.config.schedule;
        let mut quiet = 0;
        loop {
            let now = self.clock.now_ns();
            if let Some(found) = sched.peek(&self.state(), n, now) {
                return Ok(found);
            }
            // None: corrupt, or a change is being made (WINDOW).
            if !sched.busy(&self.state()) {
                quiet += 1;
                if quiet > 1 {
                    return Err(corrupt());
                }
            } else if !self.settle(now.saturating_add(CHANGE_PATIENCE_NS))? {
                return Err(Error::System(
                    "a change of rate has taken too long (its process stopped?); try again".into(),
                ));
            }
        }
    }

    /// Reserves `n` units at `now` due no later than `latest`: the ticket,
    /// or `None`. Without `as_throttle` fuel is always there.
    #[inline(always)]
    fn reserve(&self, n: u64, now: i64, latest: i64) -> Result<Option<Ticket>> {
        if !self.config.as_throttle {
            return Ok(Some(Ticket::now(now)));
        }
        loop {
            match self
                .config
                .schedule
                .reserve_n(&self.state(), n, now, latest)
            {
                (Reservation::Granted(_), ticket) => return Ok(Some(ticket)),
                (Reservation::Later(_), _) => return Ok(None),
                // A change is being made: wait for it, if the caller can.
                (Reservation::Busy, _) => {
                    if !self.settle(latest)? {
                        return Ok(None);
                    }
                }
                (Reservation::Corrupt, _) => return Err(self.corrupt_or_too_many(n)),
            }
        }
    }

    /// What a reservation found corrupt means: a change of rate left the
    /// tank too small for `n` (`InvalidArgument`), or the state is corrupt.
    #[cold]
    #[inline(never)]
    fn corrupt_or_too_many(&self, n: u64) -> Error {
        self.check_units(n).err().unwrap_or_else(corrupt)
    }

    /// Hands out reserved units, unless their run ended meanwhile.
    /// The grant time reported is never before `arrived`, when the caller
    /// called: a give-back or a faster rate can move a queued unit to a time
    /// its waiter had not yet arrived at (it goes at once).
    #[inline(always)]
    fn granted(&self, ticket: Ticket, run_id: u32, arrived: i64) -> Result<i64> {
        if self.run_over(run_id) {
            return Err(Error::Killed);
        }
        if self.config.as_throttle {
            self.config.schedule.confirm(&self.state(), ticket);
        }
        let grant = ticket.grant().max(arrived);
        // Refused once a stop closed the lanes: it did not count this grant.
        if self.config.auto_emit && !monitor::push(self.sh(), grant) {
            return Err(Error::Killed);
        }
        Ok(grant)
    }

    /// Takes a unit of fuel if the tank holds one now; never blocks.
    /// Errors: [`Error::NoFuel`] (empty, or not running), [`Error::Killed`].
    pub fn has_fuel(&self) -> Result<i64> {
        self.has_fuel_n(1)
    }

    /// Takes `n` units at once if the tank holds them now; never blocks.
    /// Errors: as [`has_fuel`](Self::has_fuel), and
    /// [`Error::InvalidArgument`] as for [`await_fuel_n`](Self::await_fuel_n).
    pub fn has_fuel_n(&self, n: u64) -> Result<i64> {
        self.check_units(n)?;
        let c = &self.sh().control;
        if c.kill.load(SeqCst) != 0 {
            return Err(Error::Killed);
        }
        if !self.is_running() {
            return Err(Error::NoFuel);
        }
        let run_id = c.run_id.load(SeqCst);
        let now = self.clock.now_ns();
        let ticket = self.reserve(n, now, now)?.ok_or(Error::NoFuel)?;
        self.granted(ticket, run_id, now)
    }

    /// Counts one emission at `at` (`CLOCK_MONOTONIC` ns; `None` = now).
    /// Only for throttles with `auto_emit` off.
    pub fn emit(&self, at: Option<i64>) -> Result<()> {
        if self.config.auto_emit {
            return Err(Error::WrongState(
                "auto_emit is on, so taking fuel already counts an emission; \
                 make the throttle with auto_emit off to emit yourself"
                    .into(),
            ));
        }
        if self.kill_flag_is_set() {
            return Err(Error::Killed);
        }
        if !self.is_running() {
            return Err(Error::NotRunning);
        }
        let at = at.unwrap_or_else(|| self.clock.now_ns());
        if !monitor::push(self.sh(), at) {
            return Err(Error::Killed); // a stop closed the lanes meanwhile
        }
        Ok(())
    }

    fn published(&self) -> Result<&layout::Published> {
        if !self.config.as_monitor {
            return Err(Error::MonitorOff(
                "monitor not running: the throttle was made with as_monitor off".into(),
            ));
        }
        let sh = self.sh();
        let p = &sh.published;
        if p.status.load(SeqCst) == MONITOR_PANICKED {
            return Err(Error::MonitorOff(
                "the monitor thread failed; the statistics stopped at that moment".into(),
            ));
        }
        let refresh = i64::try_from(self.config.refresh_ns).unwrap_or(i64::MAX);
        let quiet_limit = refresh
            .saturating_mul(monitor::QUIET_REFRESHES)
            .max(monitor::MIN_QUIET_NS);
        // The heartbeat is on the real clock, whatever this handle's is.
        let quiet = monotonic_ns().saturating_sub(p.heartbeat_ns.load(SeqCst));
        if self.is_running() && quiet > quiet_limit {
            let pid = sh.control.monitor_pid.load(SeqCst);
            return Err(Error::MonitorOff(format!(
                "the monitor thread (in process {pid}, the one that called start) has not \
                 refreshed the statistics for {} ms: that process may have died",
                quiet / 1_000_000
            )));
        }
        Ok(p)
    }

    /// Emissions of the last second: (seconds between, per second).
    pub fn latest(&self) -> Result<RatePair> {
        let count = self.published()?.latest.load(Acquire);
        Ok(RatePair::from_rate(count as f64))
    }

    /// Mean over the whole running time: (seconds between, per second).
    pub fn mean(&self) -> Result<RatePair> {
        self.published()?;
        Ok(RatePair::mean(self.total_emissions(), self.runtime_ns()))
    }

    /// The shortest interval between emissions seen, and its rate.
    pub fn lo_hi(&self) -> Result<RatePair> {
        let lo = self.published()?.lo_ns.load(Acquire);
        Ok(RatePair::from_interval((lo >= 0).then_some(lo)))
    }

    /// The longest interval between emissions seen, and its rate.
    pub fn hi_lo(&self) -> Result<RatePair> {
        let hi = self.published()?.hi_ns.load(Acquire);
        Ok(RatePair::from_interval((hi >= 0).then_some(hi)))
    }
}

impl Drop for Throttle {
    /// Releases this process's handle. The throttle itself goes on for the
    /// other processes; a monitor thread this process runs for it ends now
    /// (readers elsewhere then see its figures go stale: MONITOR_OFF).
    fn drop(&mut self) {
        let thread = self.monitor.get_mut().take();
        if process::id() == self.owner {
            if let Some(thread) = thread {
                thread.quit(|| self.wake_all());
            }
        } else {
            // A forked child's copy of the parent's thread handle: that thread
            // does not exist here; dropping the handle would detach a stale id.
            std::mem::forget(thread);
        }
    }
}

/// A waiter spins rather than sleeps for less than this: a futex sleep wakes
/// 10 to 50 us late on these machines (MEASURED.md), later than the grant
/// it would wait for, and costs about as much CPU as the spin.
const MIN_SLEEP_NS: i64 = 20_000;

/// Without a configured spin, a sleep of at least this long ends with a spin
/// of [`AUTO_TAIL_NS`]: a vCPU idle that long wakes 60 to 90 us late
/// (MEASURED.md), and the tail costs at most 3% of the waiting time.
const AUTO_TAIL_AFTER_NS: i64 = 2_000_000;
/// See [`AUTO_TAIL_AFTER_NS`].
const AUTO_TAIL_NS: i64 = 60_000;

/// How long a rate change waits for a live holder of the change lock (held
/// for microseconds by a running process).
pub(crate) const CHANGE_PATIENCE_NS: i64 = 200_000_000;
/// How long a waiter that times out waits for the change lock to give its
/// units back.
const GIVE_BACK_PATIENCE_NS: i64 = 2_000_000;

/// How a sleep towards reserved units ended.
enum Slept {
    /// They are due: go.
    Granted,
    /// Lost to changes slept through: reserve again.
    Lost,
}

/// How long an opener waits for a creator that is still making the throttle.
const OPEN_PATIENCE_NS: i64 = 2_000_000_000;

/// Longest throttle name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

fn check_atomics() -> Result<()> {
    if AtomicU128::is_lock_free() {
        Ok(())
    } else {
        Err(Error::Unsupported(
            "this CPU has no lock-free 128-bit compare-and-swap".into(),
        ))
    }
}

/// Tells every sleeper of a throttle, in every process, that something
/// changed: each re-checks what it waits for (no syscall if none sleeps).
pub(crate) fn wake_sleepers(sh: &Shared) {
    let c = &sh.control;
    c.epoch.fetch_add(1, SeqCst);
    if c.waiters.load(SeqCst) > 0 {
        wait::wake_all(&c.epoch);
    }
}

/// The POSIX shared memory name of throttle `name`: `/mp_throttle.<name>`.
fn shm_name(name: &str) -> Result<CString> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.contains('/')
        && name != "."
        && name != "..";
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "a throttle name is 1 to {MAX_NAME_LEN} bytes without '/' (got {name:?})"
        )));
    }
    CString::new(format!("/mp_throttle.{name}"))
        .map_err(|_| Error::InvalidArgument("a throttle name has no NUL byte".into()))
}

/// The error for a failed `what` (create, open, unlink) of throttle `name`.
fn os_error(name: &str, what: &str, e: &std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NotFound(format!("no throttle is named {name:?}")),
        Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied(format!(
            "cannot {what} throttle {name:?}: it belongs to another user (mode 0600)"
        )),
        Some(libc::ENOSPC | libc::ENOMEM | libc::EFBIG | libc::EMFILE | libc::ENFILE) => {
            Error::System(format!(
                "cannot {what} throttle {name:?}: {e} (/dev/shm full, or a memory or file \
                 limit reached)"
            ))
        }
        _ if e.kind() == std::io::ErrorKind::InvalidData => {
            Error::Corrupt(format!("throttle {name:?} is corrupt or foreign: {e}"))
        }
        _ => Error::System(format!("cannot {what} throttle {name:?}: {e}")),
    }
}

fn with_name(name: &str, e: Error) -> Error {
    match e {
        Error::Corrupt(m) => Error::Corrupt(format!("throttle {name:?}: {m}")),
        Error::Unsupported(m) => Error::Unsupported(format!("throttle {name:?}: {m}")),
        other => other,
    }
}

/// The `(phase, pid, start time)` of a run word, or `Corrupt`.
fn run_state(word: u128) -> Result<(Phase, u32, u64)> {
    Phase::unpack(word).ok_or_else(|| Error::Corrupt("the shared run state is corrupt".into()))
}

fn corrupt() -> Error {
    Error::Corrupt("the shared schedule state is corrupt".into())
}
