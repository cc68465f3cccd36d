//! Keyed throttles: one configuration, any number of keys (hosts, users),
//! each key with a schedule of its own, shared by every process as a plain
//! throttle is.
//!
//! A [`Keyed`](crate::keyed::Keyed) is a plain throttle (run state, kill flag, emissions, the
//! monitor and its statistics, for the whole keyed throttle) whose
//! shared-memory store holds a table of keys ([`crate::store::shm::keys`]);
//! each key's fuel is that key's schedule ([`crate::schedule::key`]). The
//! waiting policy is the plain throttle's: a waiter reserves its units on
//! its key first, then sleeps to their grant time, so waiters on one key
//! are served first come, first served, and a key at its limit never slows
//! another.

use crate::cancel::Cancel;
use crate::config::{self, Config, Options};
use crate::error::{Error, Result};
use crate::stats::RatePair;
#[cfg(feature = "redis")]
use crate::store::redis::RedisStore;
use crate::store::shm::ShmStore;
use crate::store::{KeyFigures, KeyGrant, KeyedStore, TableFigures};
use crate::throttle::{Pacing, Summary, Throttle};
use crate::wait::{NoCancel, Wake};

pub use crate::store::shm::keys::KEY_MAX;
use crate::store::shm::keys::too_long;

/// One process's handle on a keyed throttle whose state is in store `S`
/// (by default shared memory).
#[derive(Debug)]
pub struct Keyed<S: KeyedStore = ShmStore> {
    throttle: Throttle<S>,
}

impl Keyed<ShmStore> {
    /// A new keyed throttle of `config` (made by [`Config::keyed`]) in
    /// anonymous shared memory: this process and its `fork()`ed children
    /// share it.
    pub fn new(config: Config) -> Result<Self> {
        check_keyed(&config)?;
        Ok(Self {
            throttle: Throttle::new(config)?,
        })
    }

    /// Creates the keyed throttle `name`, or opens the one of that name if
    /// it has the same configuration (as [`Throttle::create_named`]).
    pub fn create_named(name: &str, config: Config) -> Result<Self> {
        check_keyed(&config)?;
        Ok(Self {
            throttle: Throttle::create_named(name, config)?,
        })
    }

    /// Opens the existing keyed throttle `name` (as [`Throttle::open`]).
    pub fn open(name: &str, waiting: &Options) -> Result<Self> {
        let _no_cancel = NoCancel::hold();
        config::check_waiting(waiting)?;
        let (store, config) = ShmStore::open(name, waiting)?;
        Self::adopt(name, store, config, "mpt_throttle_open")
    }

    /// With a clock of the caller's (tests drive the non-blocking calls on
    /// a manual clock).
    pub fn with_clock(
        config: Config,
        clock: std::sync::Arc<dyn crate::clock::Clock>,
    ) -> Result<Self> {
        check_keyed(&config)?;
        Ok(Self {
            throttle: Throttle::with_clock(config, clock)?,
        })
    }

    /// The slot `key`'s hash points at, and the number of slots (tests:
    /// keys chosen to collide).
    pub fn home_slot(&self, key: &[u8]) -> Result<(usize, u64)> {
        let table = self
            .throttle
            .store()
            .table()
            .ok_or_else(|| Error::WrongState("not a keyed throttle".into()))?;
        let key = table.key(key).ok_or_else(|| too_long(key.len()))?;
        Ok((table.home(&key), table.geometry().slots))
    }
}

#[cfg(feature = "redis")]
impl Keyed<RedisStore> {
    /// Creates keyed throttle `name` in the Redis at `url` (its
    /// configuration made by [`Config::keyed_remote`]), or joins it if it
    /// exists there with the same configuration: processes on any number of
    /// hosts share each key's schedule. Each key is a Redis key of the
    /// throttle's hash tag, which expires at the instant the key is idle
    /// again. Errors: as [`Throttle::connect`].
    pub fn connect(url: &str, name: &str, config: Config) -> Result<Self> {
        check_keyed(&config)?;
        Ok(Self {
            throttle: Throttle::connect(url, name, config)?,
        })
    }

    /// Joins the existing keyed throttle `name` in the Redis at `url`.
    /// Errors: [`Error::Mismatch`] for a plain throttle, and as
    /// [`Throttle::open_url`].
    pub fn open_url(url: &str, name: &str, waiting: &Options) -> Result<Self> {
        let _no_cancel = NoCancel::hold();
        let (store, config) = RedisStore::open(url, name, waiting)?;
        Self::adopt(name, store, config, "mpt_throttle_connect")
    }
}

impl<S: KeyedStore> Keyed<S> {
    /// This process's handle on the opened `store` of throttle `name`;
    /// `Mismatch` (naming the call `plain` that opens it) if it is a plain
    /// throttle.
    fn adopt(name: &str, store: S, config: Config, plain: &str) -> Result<Self> {
        if config.keys == 0 {
            return Err(Error::Mismatch(format!(
                "{name:?} is a plain throttle, not a keyed one: open it with {plain}"
            )));
        }
        let clock = std::sync::Arc::new(crate::clock::Monotonic);
        Ok(Self {
            throttle: Throttle::with_store(store, config, clock, false),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.throttle.config()
    }

    /// Whether this handle made the shared state.
    pub fn created(&self) -> bool {
        self.throttle.created()
    }

    /// `InvalidArgument` for a key over [`KEY_MAX`] bytes.
    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.len() > KEY_MAX {
            return Err(too_long(key.len()));
        }
        Ok(())
    }

    /// `InvalidArgument` unless `n` units could ever be granted at once.
    fn check_units(&self, n: u64) -> Result<()> {
        crate::throttle::check_some(n)?;
        match self.config().schedule.key_capacity() {
            Some(cap) if n > cap => Err(Error::InvalidArgument(format!(
                "{n} units can never be granted at once: a key's tank holds at most {cap} \
                 ({:?} hardcap)",
                self.config().schedule.hardcap()
            ))),
            _ => Ok(()),
        }
    }

    /// Reserves `n` units of `key` at `now`, granted no later than `latest`.
    #[inline]
    fn reserve(&self, key: &[u8], n: u64, now: i64, latest: i64) -> Result<Option<KeyGrant>> {
        self.throttle
            .store()
            .key_reserve(key, n, now, latest, self.throttle.clock())
    }

    /// Hands out reserved units, unless their run ended meanwhile (then
    /// they are given back if they can be).
    fn granted(
        &self,
        key: &[u8],
        held: &KeyGrant,
        n: u64,
        run_id: u32,
        arrived: i64,
    ) -> Result<i64> {
        let store = self.throttle.store();
        if store.run_over(run_id) {
            store.key_give_back(key, n, held);
            return Err(Error::Killed);
        }
        let grant = held.grant.max(arrived);
        if self.config().auto_emit && !store.emit(grant) {
            return Err(Error::Killed);
        }
        Ok(grant)
    }

    /// Takes `n` units of `key` if its tank holds them now; never blocks.
    /// Errors: [`Error::NoFuel`] (empty, or not running), [`Error::Killed`],
    /// [`Error::NoRoom`] (a new key, no room for it),
    /// [`Error::InvalidArgument`] (`n`, or a key over [`KEY_MAX`] bytes).
    pub fn has_fuel(&self, key: &[u8], n: u64) -> Result<i64> {
        self.check_units(n)?;
        self.check_key(key)?;
        let store = self.throttle.store();
        if store.kill_flag() {
            return Err(Error::Killed);
        }
        if !store.is_running() {
            return Err(Error::NoFuel);
        }
        let run_id = store.run_id();
        let now = self.throttle.clock().now_ns();
        let Some(held) = self.reserve(key, n, now, now)? else {
            return Err(self.throttle.none_now());
        };
        self.granted(key, &held, n, run_id, now)
    }

    /// Blocks until `n` units of `key` are granted, all at once, and returns
    /// their grant time (`CLOCK_MONOTONIC` ns), as
    /// [`Throttle::await_fuel_cancellable`] does for a plain throttle:
    /// waiters on one key are served in the order they arrive; a waiter
    /// that would be granted only after its timeout reserves nothing and
    /// returns [`Error::Timeout`] at its timeout. A waiter cancelled or
    /// killed while it sleeps gives its units back if nothing was reserved
    /// on its key after them (`LIMIT`, `ONE`, `NONE`); otherwise they stay
    /// taken. Errors also: [`Error::NoRoom`], [`Error::InvalidArgument`].
    pub fn await_fuel(
        &self,
        key: &[u8],
        n: u64,
        timeout_ns: Option<i64>,
        cancel: Option<&Cancel>,
    ) -> Result<i64> {
        self.check_units(n)?;
        self.check_key(key)?;
        let store = self.throttle.store();
        let clock = self.throttle.clock();
        let arrived = clock.now_ns();
        let free = cancel.is_none_or(|token| token.is_usable_here() && !token.is_fired());
        if !S::REMOTE && free && !store.kill_flag() && store.is_running() {
            let run_id = store.run_id();
            if let Some(held) = self.reserve(key, n, arrived, arrived)? {
                return self.granted(key, &held, n, run_id, arrived);
            }
        }
        let _no_cancel = NoCancel::hold();
        let _registered = cancel.map(|t| t.register(store)).transpose()?;
        let cancelled = || cancel.is_some_and(Cancel::is_fired);
        let deadline = timeout_ns.map(|t| arrived.saturating_add(t.max(0)));
        let mut now = arrived;
        loop {
            let epoch = store.epoch();
            if store.kill_flag() {
                return Err(Error::Killed);
            }
            if cancelled() {
                return Err(Error::Cancelled);
            }
            let run_id = store.run_id();
            let held = if store.is_running() {
                self.reserve(key, n, now, deadline.unwrap_or(i64::MAX))?
            } else {
                None
            };
            let Some(held) = held else {
                if store.sleep(epoch, deadline) == Wake::TimedOut {
                    return Err(Error::Timeout);
                }
                now = clock.now_ns();
                continue;
            };
            let mut pacing = Pacing::default();
            loop {
                let epoch = store.epoch();
                if store.run_over(run_id) {
                    store.key_give_back(key, n, &held);
                    return Err(Error::Killed);
                }
                if cancelled() {
                    store.key_give_back(key, n, &held);
                    return Err(Error::Cancelled);
                }
                let now = clock.now_ns();
                if now >= held.grant {
                    return self.granted(key, &held, n, run_id, arrived);
                }
                self.throttle.nap(&mut pacing, epoch, now, held.grant);
            }
        }
    }

    /// Looks without taking: `(units in key's tank now, ns until n units
    /// would be there)`; waiters already queued on the key come first. A
    /// key not in the table is one never used (a full tank). Errors:
    /// [`Error::Killed`], [`Error::NotRunning`], [`Error::InvalidArgument`].
    pub fn peek(&self, key: &[u8], n: u64) -> Result<(u64, i64)> {
        self.check_units(n)?;
        self.check_key(key)?;
        let store = self.throttle.store();
        if store.kill_flag() {
            return Err(Error::Killed);
        }
        if !store.is_running() {
            return Err(Error::NotRunning);
        }
        store.key_peek(key, n, self.throttle.clock())
    }

    /// Drops `key` from the table whatever its state: its next use starts
    /// afresh, as a key never used (which may let through what its schedule
    /// still held back: the caller asked for it). Waiters already asleep on
    /// it keep their grant times. True if it was in the table.
    pub fn forget(&self, key: &[u8]) -> Result<bool> {
        self.check_key(key)?;
        let _no_cancel = NoCancel::hold();
        self.throttle.store().key_forget(key)
    }

    /// The figures of `key`: units granted since it was added to the table
    /// and when that was; `None` if it is not in the table (never used, or
    /// dropped: idle).
    pub fn key_figures(&self, key: &[u8]) -> Result<Option<KeyFigures>> {
        self.check_key(key)?;
        self.throttle.store().key_figures(key)
    }

    /// The live keys, the capacity (0: no bound), keys dropped once idle
    /// (to make room, in shared memory) and keys added, ever.
    pub fn table_figures(&self) -> Result<TableFigures> {
        self.throttle.store().table_figures()
    }

    /// Starts (or resumes) the whole keyed throttle (as [`Throttle::start`]).
    /// Keys keep their schedules across a stop and a start.
    pub fn start(&self) -> Result<()> {
        self.throttle.start()
    }

    /// Stops the whole keyed throttle (as [`Throttle::stop`]).
    pub fn stop(&self) -> Result<Summary> {
        self.throttle.stop()
    }

    /// Sets the kill flag of the whole keyed throttle (as [`Throttle::kill`]).
    pub fn kill(&self) {
        self.throttle.kill();
    }

    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.throttle.is_running()
    }

    /// Whether the kill flag is set.
    pub fn kill_flag_is_set(&self) -> bool {
        self.throttle.kill_flag_is_set()
    }

    /// The totals so far, over every key (as [`Throttle::summary`]).
    pub fn summary(&self) -> Summary {
        self.throttle.summary()
    }

    /// Emissions of the last second, over every key.
    pub fn latest(&self) -> Result<RatePair> {
        self.throttle.latest()
    }

    /// The mean over the whole running time, over every key.
    pub fn mean(&self) -> Result<RatePair> {
        self.throttle.mean()
    }

    /// The shortest interval between emissions seen, over every key.
    pub fn lo_hi(&self) -> Result<RatePair> {
        self.throttle.lo_hi()
    }

    /// The longest interval between emissions seen, over every key.
    pub fn hi_lo(&self) -> Result<RatePair> {
        self.throttle.hi_lo()
    }

    /// Counts one emission (a throttle made with auto_emit off).
    pub fn emit(&self, at: Option<i64>) -> Result<()> {
        self.throttle.emit(at)
    }

    /// How many threads sleep in a wait on it now, in every process.
    pub fn sleepers(&self) -> u32 {
        self.throttle.sleepers()
    }
}

fn check_keyed(config: &Config) -> Result<()> {
    if config.keys == 0 {
        return Err(Error::InvalidArgument(
            "a keyed throttle needs a configuration made by Config::keyed".into(),
        ));
    }
    Ok(())
}

/// A keyed throttle of either store, for the C boundary (`mpt_keyed` is one
/// handle type, in shared memory or in Redis): one `match`, then the
/// store's own code.
#[derive(Debug)]
pub enum AnyKeyed {
    /// Shared memory: this host's processes.
    Shm(Keyed<ShmStore>),
    /// Redis: processes on any number of hosts.
    #[cfg(feature = "redis")]
    Redis(Keyed<RedisStore>),
}

/// `$k` bound to the keyed throttle, whichever its store, in `$e`.
macro_rules! each {
    ($self:ident, $k:ident => $e:expr) => {
        match $self {
            AnyKeyed::Shm($k) => $e,
            #[cfg(feature = "redis")]
            AnyKeyed::Redis($k) => $e,
        }
    };
}

impl AnyKeyed {
    /// See [`Keyed::start`].
    pub fn start(&self) -> Result<()> {
        each!(self, k => k.start())
    }
    /// See [`Keyed::stop`].
    pub fn stop(&self) -> Result<Summary> {
        each!(self, k => k.stop())
    }
    /// See [`Keyed::kill`].
    pub fn kill(&self) {
        each!(self, k => k.kill())
    }
    /// See [`Keyed::is_running`].
    pub fn is_running(&self) -> bool {
        each!(self, k => k.is_running())
    }
    /// See [`Keyed::kill_flag_is_set`].
    pub fn kill_flag_is_set(&self) -> bool {
        each!(self, k => k.kill_flag_is_set())
    }
    /// See [`Keyed::config`].
    pub fn config(&self) -> &Config {
        each!(self, k => k.config())
    }
    /// See [`Keyed::created`].
    pub fn created(&self) -> bool {
        each!(self, k => k.created())
    }
    /// See [`Keyed::has_fuel`].
    #[inline]
    pub fn has_fuel(&self, key: &[u8], n: u64) -> Result<i64> {
        each!(self, k => k.has_fuel(key, n))
    }
    /// See [`Keyed::await_fuel`].
    pub fn await_fuel(
        &self,
        key: &[u8],
        n: u64,
        timeout_ns: Option<i64>,
        cancel: Option<&Cancel>,
    ) -> Result<i64> {
        each!(self, k => k.await_fuel(key, n, timeout_ns, cancel))
    }
    /// See [`Keyed::peek`].
    pub fn peek(&self, key: &[u8], n: u64) -> Result<(u64, i64)> {
        each!(self, k => k.peek(key, n))
    }
    /// See [`Keyed::forget`].
    pub fn forget(&self, key: &[u8]) -> Result<bool> {
        each!(self, k => k.forget(key))
    }
    /// See [`Keyed::key_figures`].
    pub fn key_figures(&self, key: &[u8]) -> Result<Option<KeyFigures>> {
        each!(self, k => k.key_figures(key))
    }
    /// See [`Keyed::table_figures`].
    pub fn table_figures(&self) -> Result<TableFigures> {
        each!(self, k => k.table_figures())
    }
    /// See [`Keyed::summary`].
    pub fn summary(&self) -> Summary {
        each!(self, k => k.summary())
    }
    /// See [`Keyed::latest`].
    pub fn latest(&self) -> Result<RatePair> {
        each!(self, k => k.latest())
    }
    /// See [`Keyed::mean`].
    pub fn mean(&self) -> Result<RatePair> {
        each!(self, k => k.mean())
    }
}
