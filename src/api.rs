//! The Rust API: a safe, small face of the throttle for Rust programs,
//! re-exported at the crate root (`mp_throttle::Throttle`, ...).
//!
//! It speaks [`Duration`](std::time::Duration) rather than nanoseconds, and
//! its handle, [`Throttle`](crate::api::Throttle), is cheap to clone and
//! shared by threads, `fork()`ed children (a handle made before the fork
//! works in every child) and, by name, unrelated processes. Every call
//! delegates to the core [`crate::throttle::Throttle`]; see the README for
//! the guarantees (exact schedule, first come first served, kill flag).
//!
//! From mp_throttle (Python): `Throttle(max_n, per)` is
//! [`Throttle::new`](crate::api::Throttle::new), its keyword options are an
//! [`Options`](crate::api::Options), `await_fuel()` returning `False` is an
//! `Err`, and `stop()` returns a [`Summary`](crate::api::Summary).
//! From `governor`: `check()` is
//! [`has_fuel`](crate::api::Throttle::has_fuel), `until_ready().await` is
//! `Throttle::until_ready` (with the feature `tokio`),
//! but a throttle must be [`start`](crate::api::Throttle::start)ed first
//! (fuel accrues from the start instant) and can be stopped, which ends
//! every wait with [`Error::Killed`](crate::api::Error::Killed).
//!
//! ```
//! use mp_throttle::Throttle;
//! use std::time::Duration;
//!
//! let throttle = Throttle::new(100, Duration::from_secs(1))?; // 100 per second
//! throttle.start()?;
//! for _ in 0..3 {
//!     throttle.await_fuel(None)?; // blocks until the next unit is due
//! }
//! let summary = throttle.stop()?;
//! assert_eq!(summary.total, 3);
//! # Ok::<(), mp_throttle::Error>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use crate::cancel::Cancel;
use crate::clock::monotonic_ns;
use crate::config::{self, Config};
use crate::stats::RatePair;
use crate::throttle::Throttle as Core;
use crate::throttle::any::AnyThrottle;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::error::Error;
pub use crate::schedule::Hardcap;
pub use crate::store::shm::named::Listed;

/// A throttle in a Redis server, as [`Throttle::list_url`] finds it.
#[cfg(feature = "redis")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InRedis {
    /// Its name.
    pub name: String,
    /// What it was made with: `(max_n, per, hardcap)` (`None`: its keys
    /// hold what this library did not write).
    pub made: Option<(u64, Duration, Hardcap)>,
}

/// The options of a throttle (mp_throttle's keyword arguments), set by
/// chaining; [`Options::default`] is mp_throttle's defaults.
///
/// ```
/// use mp_throttle::{Hardcap, Options, Throttle};
/// use std::time::Duration;
///
/// let options = Options::new()
///     .hardcap(Hardcap::Window) // never more than 10 in any 1 s window
///     .monitor(false);          // no statistics thread
/// let throttle = Throttle::with_options(10, Duration::from_secs(1), &options)?;
/// # Ok::<(), mp_throttle::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Options(config::Options);

impl Options {
    /// mp_throttle's defaults: rationing and monitor on, auto emit on,
    /// [`Hardcap::Limit`], a refresh every 10 ms, no spin, not group-shared.
    pub fn new() -> Self {
        Self::default()
    }

    /// How much fuel the tank may hold (default [`Hardcap::Limit`]).
    pub fn hardcap(mut self, hardcap: Hardcap) -> Self {
        self.0.hardcap = hardcap;
        self
    }

    /// Keep statistics in a monitor thread (default on; mp_throttle's
    /// `as_monitor`). Off: [`Throttle::latest`] and the others are
    /// [`Error::MonitorOff`]; [`Throttle::stop`] still counts.
    pub fn monitor(mut self, on: bool) -> Self {
        self.0.as_monitor = on;
        self
    }

    /// Ration fuel (default on; mp_throttle's `as_throttle`). Off: fuel is
    /// always there and the throttle only counts.
    pub fn ration(mut self, on: bool) -> Self {
        self.0.as_throttle = on;
        self
    }

    /// Count an emission for each grant (default: on exactly when rationing
    /// is). Off: call [`Throttle::emit`] when a piece of work is done.
    pub fn auto_emit(mut self, on: bool) -> Self {
        self.0.auto_emit = Some(on);
        self
    }

    /// How often the monitor refreshes the statistics (mp_throttle's
    /// `rf_rate`, default 10 ms; at least 1 µs).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.0.refresh_s = every.as_secs_f64();
        self
    }

    /// Spin on the clock for this long before each grant time rather than
    /// sleep to it: precise to the microsecond, at the cost of a busy CPU
    /// (default zero: spin only the last 60 µs of waits of 2 ms or more; at
    /// most 1 s). A preference of this process: [`Throttle::open_with`]
    /// takes it too.
    pub fn spin(mut self, spin: Duration) -> Self {
        self.0.spin_s = spin.as_secs_f64();
        self
    }

    /// Named throttles: share with the creator's group rather than keep to
    /// one user (default off). At creation the object is made mode 0660; at
    /// [`Throttle::open_with`] it accepts another user's group-shared
    /// throttle of one of this process's groups.
    pub fn group_shared(mut self, on: bool) -> Self {
        self.0.group_shared = on;
        self
    }

    fn config(&self, max_n: u64, per: Duration) -> Result<Config, Error> {
        Config::new(max_n, per.as_secs_f64(), &self.0)
    }
}

/// The time a unit of fuel was granted at (its place in the schedule, or
/// when its waiter arrived if the unit was already in the tank).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    ns: i64,
}

impl Grant {
    /// The grant time in `CLOCK_MONOTONIC` nanoseconds: the same clock in
    /// every process of the machine (C's `grant_ns`).
    pub fn monotonic_ns(&self) -> i64 {
        self.ns
    }

    /// The grant time as an [`Instant`] of this process (reading both
    /// clocks now: exact to within the few nanoseconds between the reads).
    ///
    /// ```
    /// # let throttle = mp_throttle::Throttle::new(1, std::time::Duration::from_secs(1))?;
    /// # throttle.start()?;
    /// let grant = throttle.await_fuel(None)?;
    /// assert!(grant.instant().elapsed() < std::time::Duration::from_secs(1));
    /// # Ok::<(), mp_throttle::Error>(())
    /// ```
    pub fn instant(&self) -> Instant {
        from_monotonic(self.ns)
    }
}

/// A statistic as mp_throttle reports it: time between emissions, and
/// emissions per second (both 0 when there is nothing to report).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    /// Seconds between emissions.
    pub seconds_between: f64,
    /// Emissions per second (infinite for an interval of 0 ns).
    pub per_second: f64,
}

impl From<RatePair> for Rate {
    fn from(r: RatePair) -> Self {
        Self {
            seconds_between: r.seconds_between,
            per_second: r.per_second,
        }
    }
}

/// What [`Throttle::stop`] reports (mp_throttle's `stop()` tuple).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Running time of all runs so far.
    pub runtime: Duration,
    /// Emissions counted so far, by every process.
    pub total: u64,
    /// The mean over the running time.
    pub mean: Rate,
}

impl From<crate::throttle::Summary> for Summary {
    fn from(s: crate::throttle::Summary) -> Self {
        Self {
            runtime: Duration::from_secs_f64(s.runtime_s.max(0.0)),
            total: s.total,
            mean: Rate {
                seconds_between: s.mean_seconds_between,
                per_second: s.mean_per_second,
            },
        }
    }
}

/// What [`Throttle::peek`] sees, taking nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peek {
    /// Units in the tank now (`u64::MAX` without rationing).
    pub available: u64,
    /// How long until the units asked about would be there (zero if they
    /// are); waiters already queued come first.
    pub wait: Duration,
}

/// Ends one waiter's wait from another thread (a Go context, a task being
/// cancelled): [`Throttle::await_fuel_cancellable`] returns
/// [`Error::Cancelled`] and takes nothing; units it had reserved go to the
/// waiters behind it. Clones share the token. Usable only in the process
/// that made it.
///
/// ```
/// use mp_throttle::{CancelToken, Error, Throttle};
/// use std::time::Duration;
///
/// let throttle = Throttle::new(1, Duration::from_secs(3600))?;
/// throttle.start()?;
/// throttle.await_fuel(None)?; // the first unit; the next is an hour away
/// let token = CancelToken::new();
/// std::thread::scope(|s| {
///     let waiter = s.spawn(|| throttle.await_fuel_cancellable(None, &token));
///     std::thread::sleep(Duration::from_millis(50));
///     token.cancel();
///     assert_eq!(waiter.join().unwrap(), Err(Error::Cancelled));
/// });
/// # Ok::<(), mp_throttle::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<Cancel>);

impl CancelToken {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends every wait using this token, now and until [`reset`](Self::reset).
    pub fn cancel(&self) {
        self.0.fire();
    }

    /// Whether [`cancel`](Self::cancel) was called since the last reset.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_fired()
    }

    /// Makes the token usable for new waits.
    pub fn reset(&self) {
        self.0.reset();
    }
}

/// A throttle: at most `max_n` grants of fuel per `per`, shared by every
/// thread, `fork()`ed child and (named) process that has it, with the
/// statistics of how fast they went.
///
/// Every method takes `&self` and may be called from any number of threads
/// at once. Clones are handles on the same throttle; this process lets go of
/// it when the last clone is dropped (its monitor thread, if it runs one,
/// ends then).
///
/// ```
/// use mp_throttle::Throttle;
/// use std::time::Duration;
///
/// let throttle = Throttle::new(20, Duration::from_secs(1))?;
/// throttle.start()?;
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| while throttle.await_fuel(None).is_ok() {});
///     }
///     std::thread::sleep(Duration::from_millis(200));
///     let summary = throttle.stop().unwrap(); // ends the workers' waits
///     // At 0, 50, 100, ... ms: never more than the schedule allows.
///     assert!(summary.total as f64 <= summary.runtime.as_secs_f64() * 20.0 + 1.0);
/// });
/// # Ok::<(), mp_throttle::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Throttle {
    inner: Arc<AnyThrottle>,
}

impl Throttle {
    /// A throttle of `max_n` units of fuel per `per`, with mp_throttle's
    /// default options; nothing runs until [`start`](Self::start).
    /// Errors: [`Error::InvalidArgument`] (`max_n` 0 or above 2^40, `per`
    /// zero or above 2^62 ns).
    pub fn new(max_n: u64, per: Duration) -> Result<Self, Error> {
        Self::with_options(max_n, per, &Options::default())
    }

    /// As [`new`](Self::new), with `options`.
    pub fn with_options(max_n: u64, per: Duration, options: &Options) -> Result<Self, Error> {
        Ok(Self::wrap(Core::new(options.config(max_n, per)?)?))
    }

    /// Creates the throttle `name` (a `/dev/shm` object, so without `/`),
    /// which any process of the same user can [`open`](Self::open); or
    /// opens it, if it exists with the same configuration. Errors:
    /// [`Error::Mismatch`] (exists, configured otherwise),
    /// [`Error::PermissionDenied`] (another user's), [`Error::System`].
    ///
    /// ```
    /// use mp_throttle::{Options, Throttle};
    /// use std::time::Duration;
    ///
    /// let name = format!("mpt-doc-{}", std::process::id());
    /// let maker = Throttle::create_named(&name, 5, Duration::from_secs(1), &Options::new())?;
    /// let other = Throttle::open(&name)?; // in any process of this user
    /// assert_eq!(other.rate()?, (5, Duration::from_secs(1)));
    /// Throttle::unlink(&name)?; // the name goes; open handles keep working
    /// # Ok::<(), mp_throttle::Error>(())
    /// ```
    pub fn create_named(
        name: &str,
        max_n: u64,
        per: Duration,
        options: &Options,
    ) -> Result<Self, Error> {
        Ok(Self::wrap(Core::create_named(
            name,
            options.config(max_n, per)?,
        )?))
    }

    /// Opens the existing throttle `name`, adopting its configuration.
    /// Errors: [`Error::NotFound`], [`Error::PermissionDenied`],
    /// [`Error::Corrupt`], [`Error::Unsupported`] (made by another version).
    pub fn open(name: &str) -> Result<Self, Error> {
        Self::open_with(name, &Options::default())
    }

    /// As [`open`](Self::open), with this process's preferences from
    /// `options`: [`spin`](Options::spin) and
    /// [`group_shared`](Options::group_shared) (the rest is the throttle's).
    pub fn open_with(name: &str, options: &Options) -> Result<Self, Error> {
        Ok(Self::wrap(Core::open(name, &options.0)?))
    }

    /// The named throttles of this machine, every user's, sorted by name:
    /// each name, and its owner (see [`Listed`]). Errors: [`Error::System`].
    pub fn list_named() -> Result<Vec<Listed>, Error> {
        crate::store::shm::named::list()
    }

    /// Removes the name `name` (this user's only). Processes that have the
    /// throttle open keep using it. Errors: [`Error::NotFound`],
    /// [`Error::PermissionDenied`].
    pub fn unlink(name: &str) -> Result<(), Error> {
        Core::unlink(name)
    }

    /// Creates the throttle `name` in the Redis at `url`
    /// (`redis://[user[:password]@]host[:port][/db]`), or joins it if it
    /// exists there with the same configuration: processes on any number
    /// of hosts share one rate. Every call works as on a throttle in shared
    /// memory; the README ("Many hosts") says what differs. Errors:
    /// [`Error::InvalidArgument`] (URL, name, a rate the Redis store cannot
    /// keep), [`Error::Unreachable`], [`Error::PermissionDenied`]
    /// (credentials refused), [`Error::Mismatch`] (exists, configured
    /// otherwise).
    #[cfg(feature = "redis")]
    pub fn connect(
        url: &str,
        name: &str,
        max_n: u64,
        per: Duration,
        options: &Options,
    ) -> Result<Self, Error> {
        Ok(Self::wrap(Core::connect(
            url,
            name,
            options.config(max_n, per)?,
        )?))
    }

    /// Joins the existing throttle `name` in the Redis at `url`, adopting
    /// its configuration; this process's preferences come from `options`
    /// ([`spin`](Options::spin)). Errors: [`Error::NotFound`],
    /// [`Error::Corrupt`] (its keys hold something else), and as
    /// [`connect`](Self::connect).
    #[cfg(feature = "redis")]
    pub fn open_url(url: &str, name: &str, options: &Options) -> Result<Self, Error> {
        Ok(Self::wrap(Core::open_url(url, name, &options.0)?))
    }

    /// The throttles in the Redis at `url` (its database), sorted by name.
    /// Errors: as [`connect`](Self::connect).
    #[cfg(feature = "redis")]
    pub fn list_url(url: &str) -> Result<Vec<InRedis>, Error> {
        Ok(crate::store::redis::RedisStore::list(url)?
            .into_iter()
            .map(|l| InRedis {
                made: l.config.map(|c| {
                    let rate = c.schedule.rate();
                    (
                        rate.max_n(),
                        Duration::from_nanos(rate.per_ns()),
                        c.schedule.hardcap(),
                    )
                }),
                name: l.name,
            })
            .collect())
    }

    /// Removes throttle `name` from the Redis at `url`; the processes that
    /// use it find it killed. Errors: [`Error::NotFound`], and as
    /// [`connect`](Self::connect).
    #[cfg(feature = "redis")]
    pub fn unlink_url(url: &str, name: &str) -> Result<(), Error> {
        Core::unlink_url(url, name)
    }

    fn wrap(core: impl Into<AnyThrottle>) -> Self {
        Self {
            inner: Arc::new(core.into()),
        }
    }

    /// Whether this handle made the throttle (rather than opened one).
    pub fn created(&self) -> bool {
        self.inner.created()
    }

    /// Starts (or resumes) the throttle for every process: clears the kill
    /// flag, and the first unit is in the tank at once. With the monitor on,
    /// this process runs the monitor thread until [`stop`](Self::stop).
    /// Errors: [`Error::WrongState`] (already running), [`Error::System`].
    pub fn start(&self) -> Result<(), Error> {
        self.inner.start()
    }

    /// Stops (pauses) the throttle: sets the kill flag, so every wait in
    /// every process ends with [`Error::Killed`], and reports the totals so
    /// far (runtime and totals carry over a later start). Errors:
    /// [`Error::WrongState`] (not running).
    pub fn stop(&self) -> Result<Summary, Error> {
        Ok(self.inner.stop()?.into())
    }

    /// Sets the kill flag without stopping: every wait ends with
    /// [`Error::Killed`], as does every later one until the next start.
    pub fn kill(&self) {
        self.inner.kill();
    }

    /// Whether the kill flag is set (mp_throttle's `kill_flag.is_set()`).
    pub fn is_killed(&self) -> bool {
        self.inner.kill_flag_is_set()
    }

    /// Whether the throttle is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.inner.is_running()
    }

    /// Its hardcap (an opened throttle's is the one it was made with).
    pub fn hardcap(&self) -> Hardcap {
        self.inner.config().schedule.hardcap()
    }

    /// Whether taking fuel counts an emission (`auto_emit`): then the
    /// emissions of [`summary`](Self::summary) are the grants.
    pub fn counts_grants(&self) -> bool {
        self.inner.config().auto_emit
    }

    /// Whether a monitor thread keeps [`latest`](Self::latest) and the
    /// extremes (`as_monitor`).
    pub fn has_monitor(&self) -> bool {
        self.inner.config().as_monitor
    }

    /// How many threads sleep in a wait on this throttle now, in every
    /// process: the waiters that sleep towards their grant or wait for a
    /// start, and the monitor thread between its refreshes, if one runs
    /// (a waiter that spins for the last microseconds is not counted).
    pub fn sleepers(&self) -> u32 {
        self.inner.sleepers()
    }

    /// The figures [`stop`](Self::stop) would report, as of now.
    pub fn summary(&self) -> Summary {
        self.inner.summary().into()
    }

    /// Blocks until a unit of fuel is granted; `timeout` `None` waits
    /// forever, zero does not wait. Waiters are served in the order they
    /// came; before [`start`](Self::start) it waits for the start.
    /// Errors: [`Error::Timeout`] (nothing taken), [`Error::Killed`].
    ///
    /// ```
    /// # let throttle = mp_throttle::Throttle::new(1, std::time::Duration::from_secs(60))?;
    /// # throttle.start()?;
    /// use mp_throttle::Error;
    /// use std::time::Duration;
    ///
    /// throttle.await_fuel(None)?; // 1 per minute: the first is there at the start
    /// let next = throttle.await_fuel(Some(Duration::from_millis(10)));
    /// assert_eq!(next, Err(Error::Timeout));
    /// # Ok::<(), mp_throttle::Error>(())
    /// ```
    pub fn await_fuel(&self, timeout: Option<Duration>) -> Result<Grant, Error> {
        self.await_fuel_n(1, timeout)
    }

    /// Blocks until `n` units are granted at once (a weighted request: bytes
    /// of a chunk, ...). With auto emit, that counts one emission. Errors
    /// also: [`Error::InvalidArgument`] (`n` is 0 or more than the tank can
    /// ever hold).
    pub fn await_fuel_n(&self, n: u64, timeout: Option<Duration>) -> Result<Grant, Error> {
        grant(self.inner.await_fuel_n(n, timeout.map(nanos)))
    }

    /// As [`await_fuel`](Self::await_fuel), ended early by `token`
    /// ([`Error::Cancelled`], nothing taken). Errors also:
    /// [`Error::WrongState`] (a token made by another process).
    pub fn await_fuel_cancellable(
        &self,
        timeout: Option<Duration>,
        token: &CancelToken,
    ) -> Result<Grant, Error> {
        self.await_fuel_n_cancellable(1, timeout, token)
    }

    /// As [`await_fuel_n`](Self::await_fuel_n), ended early by `token`.
    pub fn await_fuel_n_cancellable(
        &self,
        n: u64,
        timeout: Option<Duration>,
        token: &CancelToken,
    ) -> Result<Grant, Error> {
        grant(
            self.inner
                .await_fuel_cancellable(n, timeout.map(nanos), Some(&token.0)),
        )
    }

    /// Takes a unit if the tank holds one now; never blocks (governor's
    /// `check()`). Errors: [`Error::NoFuel`] (empty, or not running),
    /// [`Error::Killed`].
    ///
    /// ```
    /// # let throttle = mp_throttle::Throttle::new(1, std::time::Duration::from_secs(60))?;
    /// use mp_throttle::Error;
    ///
    /// assert_eq!(throttle.has_fuel(), Err(Error::NoFuel)); // not started
    /// throttle.start()?;
    /// assert!(throttle.has_fuel().is_ok());
    /// assert_eq!(throttle.has_fuel(), Err(Error::NoFuel)); // the next is a minute away
    /// # Ok::<(), mp_throttle::Error>(())
    /// ```
    pub fn has_fuel(&self) -> Result<Grant, Error> {
        grant(self.inner.has_fuel())
    }

    /// Takes `n` units at once if the tank holds them now; never blocks.
    pub fn has_fuel_n(&self, n: u64) -> Result<Grant, Error> {
        grant(self.inner.has_fuel_n(n))
    }

    /// Counts one emission now: only for throttles made with
    /// [`auto_emit`](Options::auto_emit) off ([`Error::WrongState`]
    /// otherwise). Errors also: [`Error::NotRunning`], [`Error::Killed`].
    ///
    /// ```
    /// use mp_throttle::{Options, Throttle};
    /// use std::time::Duration;
    ///
    /// let counter = Options::new().ration(false); // count only
    /// let throttle = Throttle::with_options(1, Duration::from_secs(1), &counter)?;
    /// throttle.start()?;
    /// throttle.emit()?;
    /// throttle.emit()?;
    /// assert_eq!(throttle.stop()?.total, 2);
    /// # Ok::<(), mp_throttle::Error>(())
    /// ```
    pub fn emit(&self) -> Result<(), Error> {
        self.inner.emit(None)
    }

    /// Counts one emission at `at` (when the piece of work happened).
    pub fn emit_at(&self, at: Instant) -> Result<(), Error> {
        self.inner.emit(Some(to_monotonic(at)))
    }

    /// Changes the rate to `max_n` units per `per`, from now on, for every
    /// process, running or not; sleeping waiters follow at once, in order.
    /// Errors: [`Error::InvalidArgument`], [`Error::System`].
    ///
    /// ```
    /// # let throttle = mp_throttle::Throttle::new(1, std::time::Duration::from_secs(1))?;
    /// use std::time::Duration;
    ///
    /// throttle.set_rate(1024, Duration::from_millis(500))?;
    /// assert_eq!(throttle.rate()?, (1024, Duration::from_millis(500)));
    /// # Ok::<(), mp_throttle::Error>(())
    /// ```
    pub fn set_rate(&self, max_n: u64, per: Duration) -> Result<(), Error> {
        let per_ns = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX);
        self.inner.set_rate(max_n, per_ns)
    }

    /// The rate in force: `(max_n, per)`.
    pub fn rate(&self) -> Result<(u64, Duration), Error> {
        let (max_n, per_ns) = self.inner.rate()?;
        Ok((max_n, Duration::from_nanos(per_ns)))
    }

    /// Looks at the tank for `n` units without taking any. Errors:
    /// [`Error::NotRunning`], [`Error::Killed`], [`Error::InvalidArgument`].
    ///
    /// ```
    /// # let throttle = mp_throttle::Throttle::new(2, std::time::Duration::from_secs(2))?;
    /// use std::time::Duration;
    ///
    /// throttle.start()?; // 2 per 2 s: one at once, one a second later
    /// let peek = throttle.peek(2)?;
    /// assert_eq!(peek.available, 1);
    /// assert!(peek.wait > Duration::from_millis(900) && peek.wait <= Duration::from_secs(1));
    /// # Ok::<(), mp_throttle::Error>(())
    /// ```
    pub fn peek(&self, n: u64) -> Result<Peek, Error> {
        let (available, wait_ns) = self.inner.peek(n)?;
        Ok(Peek {
            available,
            wait: Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(0)),
        })
    }

    /// Emissions of the last second. Errors: [`Error::MonitorOff`] (made
    /// without the monitor, or its process died).
    pub fn latest(&self) -> Result<Rate, Error> {
        Ok(self.inner.latest()?.into())
    }

    /// The mean over the whole running time.
    pub fn mean(&self) -> Result<Rate, Error> {
        Ok(self.inner.mean()?.into())
    }

    /// The shortest interval seen between two emissions (zeros until one
    /// was): the fastest the workers went.
    pub fn lo_hi(&self) -> Result<Rate, Error> {
        Ok(self.inner.lo_hi()?.into())
    }

    /// The longest interval seen between two emissions: the slowest.
    pub fn hi_lo(&self) -> Result<Rate, Error> {
        Ok(self.inner.hi_lo()?.into())
    }
}

#[cfg(feature = "tokio")]
impl Throttle {
    /// Waits, without blocking the runtime, until a unit of fuel is granted
    /// (governor's `until_ready`; feature `tokio`). Must be polled inside a
    /// Tokio runtime: when the tank is empty, the wait runs on Tokio's
    /// blocking pool (one thread per pending call). Dropping the future
    /// (`tokio::time::timeout`, `select!`, an aborted task) cancels the
    /// wait: its reserved units go to the waiters behind it (units granted
    /// just as it is dropped stay taken). Errors: [`Error::Killed`].
    ///
    /// ```
    /// # let throttle = mp_throttle::Throttle::new(100, std::time::Duration::from_secs(1))?;
    /// # throttle.start()?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// runtime.block_on(async {
    ///     for _ in 0..3 {
    ///         throttle.until_ready().await?; // at 0, 10 and 20 ms
    ///     }
    ///     Ok::<(), mp_throttle::Error>(())
    /// })?;
    /// # Ok::<(), mp_throttle::Error>(())
    /// ```
    pub async fn until_ready(&self) -> Result<Grant, Error> {
        self.until_n_ready(1).await
    }

    /// As [`until_ready`](Self::until_ready), for `n` units at once. Errors
    /// also: [`Error::InvalidArgument`].
    pub async fn until_n_ready(&self, n: u64) -> Result<Grant, Error> {
        match self.inner.has_fuel_n(n) {
            Err(Error::NoFuel) => {}
            done => return grant(done),
        }
        let token = CancelToken::new();
        // Fires if this future is dropped before the wait ends.
        let _on_drop = FireOnDrop(token.clone());
        let inner = Arc::clone(&self.inner);
        let waiting = tokio::task::spawn_blocking(move || {
            inner.await_fuel_cancellable(n, None, Some(&token.0))
        });
        match waiting.await {
            Ok(done) => grant(done),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Error::Cancelled), // the runtime is shutting down
        }
    }
}

/// Cancels its token when dropped (an abandoned `until_ready`).
#[cfg(feature = "tokio")]
struct FireOnDrop(CancelToken);

#[cfg(feature = "tokio")]
impl Drop for FireOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn grant(core: crate::error::Result<i64>) -> Result<Grant, Error> {
    Ok(Grant { ns: core? })
}

/// A timeout in nanoseconds, saturated.
fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// `CLOCK_MONOTONIC` ns as an [`Instant`].
fn from_monotonic(ns: i64) -> Instant {
    let (now, now_ns) = (Instant::now(), monotonic_ns());
    let ago = now_ns.saturating_sub(ns);
    let shift = Duration::from_nanos(ago.unsigned_abs());
    if ago >= 0 {
        now.checked_sub(shift).unwrap_or(now)
    } else {
        now.checked_add(shift).unwrap_or(now)
    }
}

/// An [`Instant`] as `CLOCK_MONOTONIC` ns.
fn to_monotonic(at: Instant) -> i64 {
    let (now, now_ns) = (Instant::now(), monotonic_ns());
    match now.checked_duration_since(at) {
        Some(ago) => now_ns.saturating_sub(nanos(ago)),
        None => now_ns.saturating_add(nanos(at - now)),
    }
}
