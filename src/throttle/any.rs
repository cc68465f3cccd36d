//! A throttle of either store, for the callers that pick the store at run
//! time: the C boundary (`mpt_throttle` is one handle type, whether it was
//! made in shared memory or connected to Redis) and the Rust API.
//!
//! Each call is one `match` on the store, then the store's own
//! monomorphised code: the shared-memory fast path keeps its inlining.

#![forbid(unsafe_code)]

use super::{Summary, Throttle};
use crate::cancel::Cancel;
use crate::config::Config;
use crate::error::Result;
use crate::schedule::Hardcap;
use crate::stats::RatePair;
#[cfg(feature = "redis")]
use crate::store::redis::RedisStore;
use crate::store::shm::ShmStore;

/// A throttle whose state is in shared memory or in Redis.
#[derive(Debug)]
pub enum AnyThrottle {
    /// Shared memory: this host's processes.
    Shm(Throttle<ShmStore>),
    /// Redis: processes on any number of hosts.
    #[cfg(feature = "redis")]
    Redis(Throttle<RedisStore>),
}

impl From<Throttle<ShmStore>> for AnyThrottle {
    fn from(t: Throttle<ShmStore>) -> Self {
        AnyThrottle::Shm(t)
    }
}

#[cfg(feature = "redis")]
impl From<Throttle<RedisStore>> for AnyThrottle {
    fn from(t: Throttle<RedisStore>) -> Self {
        AnyThrottle::Redis(t)
    }
}

/// `$t` bound to the throttle, whichever its store, in `$e`.
macro_rules! each {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            AnyThrottle::Shm($t) => $e,
            #[cfg(feature = "redis")]
            AnyThrottle::Redis($t) => $e,
        }
    };
}

/// Methods that forward to [`Throttle`]'s of the same name and signature.
macro_rules! forward {
    ($($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl AnyThrottle {
            $(
                $(#[$doc])*
                #[inline]
                pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                    each!(self, t => t.$name($($arg),*))
                }
            )*
        }
    };
}

forward! {
    /// See [`Throttle::config`].
    fn config(&self) -> &Config;
    /// See [`Throttle::created`].
    fn created(&self) -> bool;
    /// See [`Throttle::is_running`].
    fn is_running(&self) -> bool;
    /// See [`Throttle::sleepers`].
    fn sleepers(&self) -> u32;
    /// See [`Throttle::kill_flag_is_set`].
    fn kill_flag_is_set(&self) -> bool;
    /// See [`Throttle::kill`].
    fn kill(&self) -> ();
    /// See [`Throttle::start`].
    fn start(&self) -> Result<()>;
    /// See [`Throttle::stop`].
    fn stop(&self) -> Result<Summary>;
    /// See [`Throttle::runtime_ns`].
    fn runtime_ns(&self) -> i64;
    /// See [`Throttle::total_emissions`].
    fn total_emissions(&self) -> u64;
    /// See [`Throttle::summary`].
    fn summary(&self) -> Summary;
    /// See [`Throttle::await_fuel`].
    fn await_fuel(&self, timeout_ns: Option<i64>) -> Result<i64>;
    /// See [`Throttle::await_fuel_n`].
    fn await_fuel_n(&self, n: u64, timeout_ns: Option<i64>) -> Result<i64>;
    /// See [`Throttle::await_fuel_cancellable`].
    fn await_fuel_cancellable(&self, n: u64, timeout_ns: Option<i64>, cancel: Option<&Cancel>) -> Result<i64>;
    /// See [`Throttle::set_rate`].
    fn set_rate(&self, max_n: u64, per_ns: u64) -> Result<()>;
    /// See [`Throttle::rate`].
    fn rate(&self) -> Result<(u64, u64)>;
    /// See [`Throttle::peek`].
    fn peek(&self, n: u64) -> Result<(u64, i64)>;
    /// See [`Throttle::has_fuel`].
    fn has_fuel(&self) -> Result<i64>;
    /// See [`Throttle::has_fuel_n`].
    fn has_fuel_n(&self, n: u64) -> Result<i64>;
    /// See [`Throttle::emit`].
    fn emit(&self, at: Option<i64>) -> Result<()>;
    /// See [`Throttle::latest`].
    fn latest(&self) -> Result<RatePair>;
    /// See [`Throttle::mean`].
    fn mean(&self) -> Result<RatePair>;
    /// See [`Throttle::lo_hi`].
    fn lo_hi(&self) -> Result<RatePair>;
    /// See [`Throttle::hi_lo`].
    fn hi_lo(&self) -> Result<RatePair>;
}

impl AnyThrottle {
    /// The hardcap.
    pub fn hardcap(&self) -> Hardcap {
        self.config().schedule.hardcap()
    }

    /// The shared-memory throttle, if this is one.
    pub fn as_shm(&self) -> Option<&Throttle<ShmStore>> {
        match self {
            AnyThrottle::Shm(t) => Some(t),
            #[cfg(feature = "redis")]
            AnyThrottle::Redis(_) => None,
        }
    }
}
