//! The throttle: the waiting policy over a [`Store`](crate::store::Store). The store holds the
//! state that processes share; the throttle keeps what one process keeps
//! privately: its configuration copy, its clock, when to spin and when to
//! sleep, cancellation, and its monitor thread.
//!
//! Fork model: a `Throttle` made before `fork()` works in every child. The
//! child touches only the store; the private monitor slot (a `parking_lot`
//! mutex that the parent's thread may have held at the instant of the fork)
//! is used only by the process that made the handle.

use crate::cancel::Cancel;
use crate::clock::{Clock, Monotonic, monotonic_ns};
use crate::config::{self, Config, Options};
use crate::error::{Error, Result};
use crate::monitor::{self, MonitorThread};
use crate::process;
use crate::schedule::{Follow, Rate, TURN_PATIENCE_NS, Ticket};
use crate::stats::RatePair;
#[cfg(feature = "redis")]
use crate::store::redis::RedisStore;
use crate::store::shm::ShmStore;
use crate::store::{Figures, GivenBack, MonitorStatus, Store};
use crate::wait::{NoCancel, TimerSlack, Wake};
use parking_lot::Mutex;
use portable_atomic::AtomicU128;
use std::sync::Arc;

pub mod any;

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

/// One process's handle on a throttle whose state is in store `S` (by
/// default the shared-memory store).
pub struct Throttle<S: Store = ShmStore> {
    store: Arc<S>,
    config: Config,
    clock: Arc<dyn Clock>,
    /// The process that made this handle: the only one that touches `monitor`.
    owner: u32,
    /// Whether this handle made the shared state (new, or a create_named
    /// that created it) rather than opened an existing one.
    created: bool,
    monitor: Mutex<Option<MonitorThread>>,
}

impl<S: Store> std::fmt::Debug for Throttle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Throttle<ShmStore> {
    /// A new throttle on `CLOCK_MONOTONIC`; nothing runs until [`start`](Self::start).
    pub fn new(config: Config) -> Result<Self> {
        Self::with_clock(config, Arc::new(Monotonic))
    }

    /// A new throttle reading time from `clock`. Only [`Monotonic`] can
    /// sleep correctly; a manual clock suits tests of the non-blocking calls.
    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        check_atomics()?;
        let store = ShmStore::anonymous(&config)?;
        Ok(Self::with_store(store, config, clock, true))
    }

    /// Creates the throttle `name`, which any process of the same user can
    /// open by that name (and of the creator's group, if
    /// `config.group_shared`); or, if a throttle of that name exists with
    /// the same configuration, opens it, under the rules of
    /// [`open`](Self::open) (group sharing, asked or not, is part of the
    /// configuration compared). Two processes that create the same name at
    /// once end up with one throttle, initialised before either uses it.
    /// Errors: [`Error::Mismatch`] (exists, configured otherwise),
    /// [`Error::PermissionDenied`] (exists, another user's),
    /// [`Error::System`] (no room).
    pub fn create_named(name: &str, config: Config) -> Result<Self> {
        let _no_cancel = NoCancel::hold();
        check_atomics()?;
        let (store, config, created) = ShmStore::create_named(name, &config)?;
        Ok(Self::with_store(
            store,
            config,
            Arc::new(Monotonic),
            created,
        ))
    }

    /// Opens the existing throttle `name`, adopting its configuration; the
    /// waiting preferences (timer slack, spin) come from `waiting`.
    ///
    /// Only a throttle of this process's effective uid is opened (root
    /// included), as `fstat` of the opened object says, before it is
    /// mapped; it must be a regular file. Another user's throttle is opened
    /// only if all of these hold: `waiting.group_shared` (the caller asks
    /// for group sharing), its header says it was made group-shared, its
    /// mode gives its group read and write and others nothing, and its
    /// group is this process's effective group or one of its supplementary
    /// groups. Errors: [`Error::NotFound`], [`Error::PermissionDenied`]
    /// (another user's, naming the owner), [`Error::Corrupt`] (foreign,
    /// truncated, damaged, not a regular file), [`Error::Unsupported`]
    /// (made by another layout version).
    pub fn open(name: &str, waiting: &Options) -> Result<Self> {
        let _no_cancel = NoCancel::hold();
        config::check_waiting(waiting)?;
        check_atomics()?;
        let (store, config) = ShmStore::open(name, waiting)?;
        if config.keys > 0 {
            return Err(Error::Mismatch(format!(
                "{name:?} is a keyed throttle: open it as one (mpt_keyed_open)"
            )));
        }
        Ok(Self::with_store(store, config, Arc::new(Monotonic), false))
    }

    /// Removes the name, if the object under it belongs to this process's
    /// effective uid (root included: another user's is refused), as `fstat`
    /// of the opened object says. Processes that have the throttle open
    /// keep using it; it is freed when the last one lets go. The race that
    /// remains is [`crate::store::shm::map::unlink_own`]'s. Errors: [`Error::NotFound`],
    /// [`Error::PermissionDenied`].
    pub fn unlink(name: &str) -> Result<()> {
        let _no_cancel = NoCancel::hold();
        ShmStore::unlink(name)
    }

    /// The shared-memory store (for tests that look at the raw state).
    pub fn shm(&self) -> &ShmStore {
        &self.store
    }
}

#[cfg(feature = "redis")]
impl Throttle<RedisStore> {
    /// Creates throttle `name` in the Redis at `url`, or joins it if it
    /// exists there with the same configuration: processes on any number
    /// of hosts share it (see [`crate::store::redis`]). Errors:
    /// [`Error::InvalidArgument`] (URL, name, a rate the Redis store cannot
    /// keep), [`Error::Unreachable`], [`Error::PermissionDenied`]
    /// (credentials refused), [`Error::Mismatch`], [`Error::Corrupt`].
    pub fn connect(url: &str, name: &str, config: Config) -> Result<Self> {
        let _no_cancel = NoCancel::hold();
        let (store, created) = RedisStore::connect(url, name, &config)?;
        Ok(Self::with_store(
            store,
            config,
            Arc::new(Monotonic),
            created,
        ))
    }

    /// Joins the existing throttle `name` in the Redis at `url`, adopting
    /// its configuration (the waiting preferences come from `waiting`).
    /// Errors: [`Error::NotFound`], [`Error::Corrupt`], and as
    /// [`connect`](Self::connect).
    pub fn open_url(url: &str, name: &str, waiting: &Options) -> Result<Self> {
        let _no_cancel = NoCancel::hold();
        let (store, config) = RedisStore::open(url, name, waiting)?;
        if config.keys > 0 {
            return Err(Error::Mismatch(format!(
                "{name:?} is a keyed throttle: open it as one (mpt_keyed_connect)"
            )));
        }
        Ok(Self::with_store(store, config, Arc::new(Monotonic), false))
    }

    /// Removes throttle `name` from the Redis at `url`; the processes that
    /// use it find it killed. Errors: [`Error::NotFound`], and as
    /// [`connect`](Self::connect).
    pub fn unlink_url(url: &str, name: &str) -> Result<()> {
        let _no_cancel = NoCancel::hold();
        RedisStore::unlink(url, name)
    }
}

impl<S: Store> Throttle<S> {
    /// This process's handle on `store`, which holds a throttle of
    /// `config`; `created`: whether this process made it
    /// (`process::id` installs the fork hook on first use).
    pub fn with_store(store: S, config: Config, clock: Arc<dyn Clock>, created: bool) -> Self {
        Self {
            store: Arc::new(store),
            config,
            clock,
            owner: process::id(),
            created,
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

    /// Whether the throttle is running (started and not stopped).
    #[inline(always)]
    pub fn is_running(&self) -> bool {
        self.store.is_running()
    }

    /// How many threads sleep in a wait on this throttle now, in every
    /// process (see [`Store::sleepers`]).
    pub fn sleepers(&self) -> u32 {
        self.store.sleepers()
    }

    /// Whether the kill flag is set.
    #[inline(always)]
    pub fn kill_flag_is_set(&self) -> bool {
        self.store.kill_flag()
    }

    /// Sets the kill flag: every waiter, in every process, returns
    /// [`Error::Killed`] at once, and so does every later call that takes
    /// fuel, until the next `start`.
    pub fn kill(&self) {
        self.store.kill();
    }

    /// Tells every sleeper that something changed.
    fn wake_all(&self) {
        self.store.wake_sleepers();
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
        let _no_cancel = NoCancel::hold();
        let mut slot = self.monitor_slot();
        let run_id = self
            .store
            .start(self.clock.now_ns(), self.config.as_throttle)?;
        if self.config.as_monitor {
            let store = Arc::clone(&self.store);
            match MonitorThread::spawn(store, run_id, self.config.refresh_ns) {
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
        let _no_cancel = NoCancel::hold();
        let mut slot = self.monitor_slot();
        self.store.stop(self.clock.now_ns())?;
        if let Some(thread) = slot.as_deref_mut().and_then(Option::take) {
            thread.join();
        }
        Ok(self.summary())
    }

    /// Ends the run this thread has just started, whose monitor could not
    /// be started.
    fn finish_stop(&self, slot: Option<&mut Option<MonitorThread>>) {
        let _ = self.store.stop(self.clock.now_ns());
        if let Some(thread) = slot.and_then(Option::take) {
            thread.join();
        }
    }

    /// Running time of all runs so far, including the current one, in ns.
    pub fn runtime_ns(&self) -> i64 {
        let (done, run_start) = self.store.runtime();
        if self.is_running() {
            let current = self.clock.now_ns().saturating_sub(run_start);
            done.saturating_add(current.max(0))
        } else {
            done
        }
    }

    /// Emissions counted so far, by every process.
    pub fn total_emissions(&self) -> u64 {
        self.store.total_emissions()
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
    /// it gives its units back at once (every waiter behind it moves up) and
    /// waits on as a new arrival: `Timeout` comes at the deadline, never
    /// before. Errors also: [`Error::InvalidArgument`] (`n` is 0 or more
    /// than the tank can ever hold). Holds the thread's cancellation off
    /// while it waits (see [`NoCancel`]).
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
        let now = self.clock.now_ns();
        // The common case first: the fuel is in the tank now (a remote
        // store reserves once, below, whether it is or not).
        let free = cancel.is_none_or(|token| token.is_usable_here() && !token.is_fired());
        if !S::REMOTE && free && !self.store.kill_flag() && self.is_running() {
            let run_id = self.store.run_id();
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
        // Naps, /proc reads and the change lock's waits below are
        // cancellation points: none may unwind the caller's thread.
        let _no_cancel = NoCancel::hold();
        let _registered = cancel.map(|t| t.register(&self.store)).transpose()?;
        let cancelled = || cancel.is_some_and(Cancel::is_fired);
        let arrived = now;
        let deadline = timeout_ns.map(|t| now.saturating_add(t.max(0)));
        loop {
            let epoch = self.store.epoch();
            if self.store.kill_flag() {
                return Err(Error::Killed);
            }
            if cancelled() {
                return Err(Error::Cancelled);
            }
            let run_id = self.store.run_id();
            let reserved = if !self.is_running() {
                None
            } else {
                self.reserve(n, now, deadline.unwrap_or(i64::MAX))?
            };
            let Some(mut ticket) = reserved else {
                if self.store.sleep(epoch, deadline) == Wake::TimedOut {
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
                Slept::GaveBack => now = self.clock.now_ns(),
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
        let give_up = monotonic_ns().saturating_add(TURN_PATIENCE_NS);
        while !self.store.turn_reached(ticket)
            && monotonic_ns() < give_up
            && !self.store.run_over(run_id)
            && !cancelled()
            && deadline.is_none_or(|d| self.clock.now_ns() < d)
        {
            std::thread::yield_now();
        }
    }

    /// `InvalidArgument` unless `n` units could ever be granted at once.
    #[inline(always)]
    fn check_units(&self, n: u64) -> Result<()> {
        check_some(n)?;
        if n == 1 || !self.config.as_throttle {
            return Ok(()); // every tank holds one unit
        }
        match self.store.capacity()? {
            Some(cap) if n > cap => Err(Error::InvalidArgument(format!(
                "{n} units can never be granted at once: the tank holds at most {cap} \
                 ({:?} hardcap at the current rate)",
                self.config.schedule.hardcap()
            ))),
            _ => Ok(()),
        }
    }

    /// Sleeps until the units of `ticket` are due ([`nap`](Self::nap) by
    /// nap). Follows every
    /// change of the schedule at once. `Killed` if the run ends first;
    /// `Timeout` (units given back) if a change moves them past `deadline`.
    fn sleep_until(
        &self,
        ticket: &mut Ticket,
        run_id: u32,
        deadline: Option<i64>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Slept> {
        let mut pacing = Pacing::default();
        // The ticket as last checked against the tank (it changes only when
        // a change is followed).
        let mut checked = None;
        loop {
            let epoch = self.store.epoch();
            if self.store.run_over(run_id) {
                return Err(Error::Killed);
            }
            // The time first, then the changes: a change committed after we
            // looked takes effect after our grant time had come.
            let now = self.clock.now_ns();
            let grant = match self.follow(ticket, deadline)? {
                Follow::At(grant) => grant,
                Follow::Lost => return Ok(Slept::Lost),
                // A change was being made until the deadline.
                Follow::Wait => return Err(Error::Timeout),
            };
            if ticket.units() > 1 && checked != Some(*ticket) {
                checked = Some(*ticket);
                // A rate change may have left a tank too small for them all.
                if let Ok(Some(cap)) = self.store.capacity() {
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
            if let Some(d) = deadline.filter(|&d| grant > d) {
                match self.give_back(ticket, |grant| grant > d) {
                    GivenBack::Done => return Ok(Slept::GaveBack),
                    GivenBack::NotOurs => continue, // follow it again
                    // They stay taken; a later change may still bring them
                    // back in time: wait (at most) for the deadline.
                    GivenBack::Stuck if self.clock.now_ns() >= d => return Err(Error::Timeout),
                    GivenBack::Stuck => {
                        self.store.sleep(epoch, Some(d));
                        continue;
                    }
                }
            }
            if cancelled() {
                self.give_back(ticket, |_| true);
                return Err(Error::Cancelled);
            }
            if now >= grant {
                return Ok(Slept::Granted);
            }
            self.nap(&mut pacing, epoch, now, grant);
        }
    }

    /// One step of a waiter towards its `grant` (not yet come at `now`):
    /// sleeps until the epoch moves on from `epoch` or the grant is near
    /// (then spins), with the configured timer slack, spinning on the clock
    /// for the configured tail (without one: the last [`AUTO_TAIL_NS`] of a
    /// sleep of [`AUTO_TAIL_AFTER_NS`] or more), and for any wait shorter
    /// than [`MIN_SLEEP_NS`].
    pub(crate) fn nap(&self, pacing: &mut Pacing, epoch: u32, now: i64, grant: i64) {
        let tail = *pacing.tail.get_or_insert(match self.config.spin_ns {
            0 if grant - now >= AUTO_TAIL_AFTER_NS => AUTO_TAIL_NS,
            spin => spin,
        });
        let wake_at = grant.saturating_sub(tail);
        if now >= wake_at || grant - now < MIN_SLEEP_NS {
            std::hint::spin_loop();
        } else {
            pacing
                .slack
                .get_or_insert_with(|| TimerSlack::tighten(self.config.timer_slack_ns));
            self.store.sleep(epoch, Some(wake_at));
        }
    }

    /// The store.
    pub(crate) fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The clock.
    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Follows the changes of rate made since `ticket` was made or last
    /// followed ([`Follow::Wait`]: one was being made until `deadline`).
    fn follow(&self, ticket: &mut Ticket, deadline: Option<i64>) -> Result<Follow> {
        if !self.config.as_throttle {
            return Ok(Follow::At(ticket.grant()));
        }
        self.store
            .follow(ticket, deadline.unwrap_or(i64::MAX), &*self.clock)
    }

    /// Gives back the units of a waiter (whose grant a change moved past its
    /// deadline, or whose wait was cancelled) if `still` holds for their
    /// grant time once followed, so every waiter behind it moves up. If the
    /// store cannot take them now (its change lock stays busy: other
    /// changes keep it, or its holder is stopped) the units stay taken: the
    /// waiter returns at its deadline rather than late.
    fn give_back(&self, ticket: &mut Ticket, still: impl Fn(i64) -> bool) -> GivenBack {
        if !self.config.as_throttle {
            return GivenBack::Done;
        }
        self.store.give_back(ticket, &still, &*self.clock)
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
    /// `CHANGE_PATIENCE_NS` (200 ms) without dying: stopped in a debugger?).
    pub fn set_rate(&self, max_n: u64, per_ns: u64) -> Result<()> {
        let rate = Rate::new(max_n, per_ns).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "max_n must be 1 to {} and per 1 ns to {} s (got {max_n} per {per_ns} ns)",
                crate::schedule::MAX_N,
                crate::schedule::MAX_PER_NS / 1_000_000_000
            ))
        })?;
        let _no_cancel = NoCancel::hold();
        self.store.set_rate(rate, &*self.clock)
    }

    /// The rate in force: `(max_n, per_ns)`.
    pub fn rate(&self) -> Result<(u64, u64)> {
        let rate = self.store.rate()?;
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
        self.store.peek(n, &*self.clock)
    }

    /// Reserves `n` units at `now` due no later than `latest`: the ticket,
    /// or `None`. Without `as_throttle` fuel is always there.
    #[inline(always)]
    fn reserve(&self, n: u64, now: i64, latest: i64) -> Result<Option<Ticket>> {
        if !self.config.as_throttle {
            return Ok(Some(Ticket::now(now)));
        }
        self.store
            .reserve(n, now, latest, &*self.clock)
            .map_err(|e| self.corrupt_or_too_many(n, e))
    }

    /// What a reservation found corrupt means: a change of rate left the
    /// tank too small for `n` (`InvalidArgument`), or the state is corrupt.
    #[cold]
    #[inline(never)]
    fn corrupt_or_too_many(&self, n: u64, e: Error) -> Error {
        match e {
            Error::Corrupt(_) => self.check_units(n).err().unwrap_or(e),
            other => other,
        }
    }

    /// Hands out reserved units, unless their run ended meanwhile.
    /// The grant time reported is never before `arrived`, when the caller
    /// called: a give-back or a faster rate can move a queued unit to a time
    /// its waiter had not yet arrived at (it goes at once).
    #[inline(always)]
    fn granted(&self, ticket: Ticket, run_id: u32, arrived: i64) -> Result<i64> {
        if self.store.run_over(run_id) {
            return Err(Error::Killed);
        }
        if self.config.as_throttle {
            self.store.confirm(ticket);
        }
        let grant = ticket.grant().max(arrived);
        // Refused once a stop closed the emissions: it did not count this grant.
        if self.config.auto_emit && !self.store.emit(grant) {
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
        if self.store.kill_flag() {
            return Err(Error::Killed);
        }
        if !self.is_running() {
            return Err(Error::NoFuel);
        }
        let run_id = self.store.run_id();
        let now = self.clock.now_ns();
        let Some(ticket) = self.reserve(n, now, now)? else {
            return Err(self.none_now());
        };
        self.granted(ticket, run_id, now)
    }

    /// Why a reservation of fuel there now found none: the empty tank, or a
    /// kill the store learnt of meanwhile (a remote store: with its reply).
    pub(crate) fn none_now(&self) -> Error {
        if self.store.kill_flag() {
            Error::Killed
        } else {
            Error::NoFuel
        }
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
        if !self.store.emit(at) {
            return Err(Error::Killed); // a stop closed the emissions meanwhile
        }
        Ok(())
    }

    /// The monitor's figures, unless they are not kept (`as_monitor` off)
    /// or have gone stale (its thread failed, or its process went quiet).
    fn published(&self) -> Result<Figures> {
        if !self.config.as_monitor {
            return Err(Error::MonitorOff(
                "monitor not running: the throttle was made with as_monitor off".into(),
            ));
        }
        let figures = self.store.figures();
        if figures.status == MonitorStatus::Panicked {
            return Err(Error::MonitorOff(
                "the monitor thread failed; the statistics stopped at that moment".into(),
            ));
        }
        let refresh = i64::try_from(self.config.refresh_ns).unwrap_or(i64::MAX);
        let quiet_limit = refresh
            .saturating_mul(monitor::QUIET_REFRESHES)
            .max(monitor::MIN_QUIET_NS);
        // The heartbeat is on the real clock, whatever this handle's is.
        let quiet = monotonic_ns().saturating_sub(figures.heartbeat_ns);
        if self.is_running() && quiet > quiet_limit {
            return Err(Error::MonitorOff(format!(
                "the monitor thread (in process {}, the one that called start) has not \
                 refreshed the statistics for {} ms: that process may have died",
                figures.monitor_pid,
                quiet / 1_000_000
            )));
        }
        Ok(figures)
    }

    /// Emissions of the last second: (seconds between, per second).
    pub fn latest(&self) -> Result<RatePair> {
        Ok(RatePair::from_rate(self.published()?.latest as f64))
    }

    /// Mean over the whole running time: (seconds between, per second).
    pub fn mean(&self) -> Result<RatePair> {
        self.published()?;
        Ok(RatePair::mean(self.total_emissions(), self.runtime_ns()))
    }

    /// The shortest interval between emissions seen, and its rate.
    pub fn lo_hi(&self) -> Result<RatePair> {
        Ok(RatePair::from_interval(self.published()?.lo_ns))
    }

    /// The longest interval between emissions seen, and its rate.
    pub fn hi_lo(&self) -> Result<RatePair> {
        Ok(RatePair::from_interval(self.published()?.hi_ns))
    }
}

impl<S: Store> Drop for Throttle<S> {
    /// Releases this process's handle. The throttle itself goes on for the
    /// other processes; a monitor thread this process runs for it ends now
    /// (readers elsewhere then see its figures go stale: MONITOR_OFF).
    fn drop(&mut self) {
        let _no_cancel = NoCancel::hold();
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

/// How one waiter paces itself towards its grant ([`Throttle::nap`]):
/// the timer slack is tightened at its first real sleep only (a spin needs
/// no syscall) and restored when this is dropped; the spinning tail is
/// chosen once.
#[derive(Default)]
pub(crate) struct Pacing {
    slack: Option<TimerSlack>,
    tail: Option<i64>,
}

/// A waiter spins rather than sleeps for less than this: a futex sleep wakes
/// 10 to 50 us late on the 2-core VMs this is tested on, later than the grant
/// it would wait for, and costs about as much CPU as the spin.
const MIN_SLEEP_NS: i64 = 20_000;

/// Without a configured spin, a sleep of at least this long ends with a spin
/// of [`AUTO_TAIL_NS`]: a vCPU idle that long wakes 60 to 90 us late
/// (measured on the same VMs), and the tail costs at most 3% of the waiting time.
const AUTO_TAIL_AFTER_NS: i64 = 2_000_000;
/// See [`AUTO_TAIL_AFTER_NS`].
const AUTO_TAIL_NS: i64 = 60_000;

/// How a sleep towards reserved units ended.
enum Slept {
    /// They are due: go.
    Granted,
    /// Lost to changes slept through: reserve again.
    Lost,
    /// A change moved them past the deadline, and they were given back:
    /// wait on as a new arrival, in case a later change lets one through.
    GaveBack,
}

/// `InvalidArgument` for 0 units: every call takes at least one.
pub(crate) fn check_some(n: u64) -> Result<()> {
    if n == 0 {
        return Err(Error::InvalidArgument(
            "n is 0: take at least one unit of fuel".into(),
        ));
    }
    Ok(())
}

fn check_atomics() -> Result<()> {
    if AtomicU128::is_lock_free() {
        Ok(())
    } else {
        Err(Error::Unsupported(
            "this CPU has no lock-free 128-bit compare-and-swap".into(),
        ))
    }
}
