//! Options as mp_throttle knows them, validated into a [`Config`](crate::config::Config).

#![forbid(unsafe_code)]

use crate::error::{Error, Result};
use crate::schedule::key::{KEYED_MAX_N, KEYED_MAX_WINDOW};
use crate::schedule::{Hardcap, MAX_N, MAX_PER_NS, Rate, Schedule};
use crate::store::shm::keys::{Geometry, MAX_KEYS};

/// Largest `max_n` of a `WINDOW` throttle: its ring holds `max_n` grant
/// times of 16 bytes (64 MiB at this size).
pub const MAX_WINDOW: u64 = 1 << 22;

/// [`Config::keys`] of a keyed throttle whose store keeps no table (Redis).
pub const KEYED_NO_TABLE: u64 = u64::MAX;

/// Shortest monitor refresh interval accepted, in seconds.
pub const MIN_REFRESH_S: f64 = 1e-6;

/// Longest spin before a grant time accepted, in seconds.
pub const MAX_SPIN_S: f64 = 1.0;

/// The options of mp_throttle's `Throttle`, before validation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Ration fuel (default). Off: fuel is always available, counting only.
    pub as_throttle: bool,
    /// Keep statistics in a monitor thread (default).
    pub as_monitor: bool,
    /// Count an emission for each unit of fuel taken. `None` (default):
    /// on exactly when `as_throttle` is on, as in mp_throttle.
    pub auto_emit: Option<bool>,
    /// Tank capacity (default `Limit`).
    pub hardcap: Hardcap,
    /// Seconds between monitor refreshes (mp_throttle's `rf_rate`, 0.01).
    pub refresh_s: f64,
    /// Timer slack, in ns, of a thread while it sleeps towards its grant
    /// time (default 1: the tightest); 0 leaves the thread's slack alone.
    pub timer_slack_ns: u64,
    /// Seconds before its grant time at which a waiter stops sleeping and
    /// spins on the clock: the precise mode. Default 0: spin only the last
    /// 60 us of waits of 2 ms or more, and waits under 20 us.
    pub spin_s: f64,
    /// Named throttles: share with a group rather than keep to one user
    /// (default off). At creation, the object is made group-accessible
    /// (mode 0660, the creator's effective group) and the header records
    /// it; the throttle's configuration then includes it, so a creation
    /// that differs in it is a mismatch. At open, it is the acceptance of
    /// another user's throttle: one that was made group-shared, has mode
    /// 0660 and a group of this process (see `Throttle::open`). Without it,
    /// only a throttle of this process's effective uid is ever opened.
    pub group_shared: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            as_throttle: true,
            as_monitor: true,
            auto_emit: None,
            hardcap: Hardcap::Limit,
            refresh_s: 0.01,
            timer_slack_ns: 1,
            spin_s: 0.0,
            group_shared: false,
        }
    }
}

/// A validated configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Rate and hardcap.
    pub schedule: Schedule,
    /// See [`Options::as_throttle`].
    pub as_throttle: bool,
    /// See [`Options::as_monitor`].
    pub as_monitor: bool,
    /// See [`Options::auto_emit`], resolved.
    pub auto_emit: bool,
    /// Monitor refresh interval in nanoseconds.
    pub refresh_ns: u64,
    /// See [`Options::timer_slack_ns`].
    pub timer_slack_ns: u64,
    /// See [`Options::spin_s`], in nanoseconds.
    pub spin_ns: i64,
    /// See [`Options::group_shared`].
    pub group_shared: bool,
    /// A keyed throttle (one schedule per key): the most keys it holds
    /// ([`KEYED_NO_TABLE`]: no bound, the store forgets idle keys by
    /// itself); 0 for a plain throttle.
    pub keys: u64,
}

impl Config {
    /// Validates `max_n` units per `per_s` seconds with `options`.
    pub fn new(max_n: u64, per_s: f64, options: &Options) -> Result<Self> {
        if max_n == 0 {
            return Err(invalid("max_n must be at least 1"));
        }
        let per_ns = seconds_to_ns("per", per_s)?;
        let rate = Rate::new(max_n, per_ns).ok_or_else(|| {
            invalid(&format!(
                "max_n must be at most {} and per at most {} s",
                MAX_N,
                MAX_PER_NS / 1_000_000_000
            ))
        })?;
        if options.hardcap == Hardcap::Window && max_n > MAX_WINDOW {
            return Err(invalid(&format!(
                "the WINDOW hardcap keeps max_n grant times: max_n must be at most {MAX_WINDOW} \
                 (scale both max_n and per down, or use LIMIT)"
            )));
        }
        if !options.as_throttle && !options.as_monitor {
            return Err(invalid(
                "as_throttle and as_monitor are both off: such a throttle would do nothing",
            ));
        }
        if !(options.refresh_s.is_finite() && options.refresh_s >= MIN_REFRESH_S) {
            return Err(invalid(&format!(
                "refresh interval must be a finite number of seconds of at least {MIN_REFRESH_S} \
                 (got {})",
                options.refresh_s
            )));
        }
        let refresh_ns = seconds_to_ns("refresh interval", options.refresh_s)?;
        check_waiting(options)?;
        Ok(Self {
            schedule: Schedule::new(rate, options.hardcap),
            as_throttle: options.as_throttle,
            as_monitor: options.as_monitor,
            auto_emit: options.auto_emit.unwrap_or(options.as_throttle),
            refresh_ns,
            timer_slack_ns: options.timer_slack_ns,
            spin_ns: (options.spin_s * 1e9).round() as i64,
            group_shared: options.group_shared,
            keys: 0,
        })
    }

    /// Validates a keyed throttle of `capacity` keys, each with a schedule
    /// of `max_n` units per `per_s` seconds, with `options`.
    pub fn keyed(max_n: u64, per_s: f64, capacity: u64, options: &Options) -> Result<Self> {
        let mut config = Self::new(max_n, per_s, options)?;
        if !(1..=MAX_KEYS).contains(&capacity) {
            return Err(invalid(&format!(
                "a keyed throttle holds 1 to {MAX_KEYS} keys (got a capacity of {capacity})"
            )));
        }
        if max_n > KEYED_MAX_N {
            return Err(invalid(&format!(
                "a keyed throttle's max_n must be at most {KEYED_MAX_N} (got {max_n})"
            )));
        }
        if options.hardcap == Hardcap::Window && max_n > KEYED_MAX_WINDOW {
            return Err(invalid(&format!(
                "a keyed WINDOW throttle keeps max_n grant times per key: max_n must be at \
                 most {KEYED_MAX_WINDOW} (got {max_n})"
            )));
        }
        if !options.as_throttle {
            return Err(invalid(
                "a keyed throttle rations fuel per key: as_throttle must be on",
            ));
        }
        config.keys = capacity;
        if config.tail_words().is_none() {
            return Err(invalid(&format!(
                "a table of {capacity} keys does not fit in memory"
            )));
        }
        Ok(config)
    }

    /// Validates a keyed throttle whose store keeps no table of its own
    /// (Redis: each key is a Redis key that expires once idle).
    pub fn keyed_remote(max_n: u64, per_s: f64, options: &Options) -> Result<Self> {
        let mut config = Self::keyed(max_n, per_s, 1, options)?;
        config.keys = KEYED_NO_TABLE;
        Ok(config)
    }

    /// The key table's shape, for a keyed throttle in shared memory.
    pub fn key_geometry(&self) -> Option<Geometry> {
        (self.keys > 0 && self.keys <= MAX_KEYS).then(|| Geometry::new(self.keys, &self.schedule))
    }

    /// The 16-byte words that follow the shared state: a keyed throttle's
    /// table, or a plain `WINDOW` throttle's ring. `None`: too many.
    pub fn tail_words(&self) -> Option<u64> {
        match self.key_geometry() {
            Some(g) => g.words(),
            None => Some(self.schedule.ring_len()),
        }
    }
}

impl Config {
    /// The options that belong to each process rather than to the throttle:
    /// how it waits, and (for an open) whether it accepts another user's
    /// group-shared throttle.
    pub fn waiting(&self) -> Options {
        Options {
            timer_slack_ns: self.timer_slack_ns,
            spin_s: self.spin_ns as f64 / 1e9,
            group_shared: self.group_shared,
            ..Options::default()
        }
    }
}

/// Checks the options that say how this process waits (with group_shared,
/// the only ones an opener of a named throttle gives).
pub fn check_waiting(options: &Options) -> Result<()> {
    if !(options.spin_s.is_finite() && (0.0..=MAX_SPIN_S).contains(&options.spin_s)) {
        return Err(invalid(&format!(
            "spin_s must be a finite number of seconds from 0 to {MAX_SPIN_S} (got {:?})",
            options.spin_s
        )));
    }
    Ok(())
}

/// A positive, finite number of seconds in whole nanoseconds (at least 1).
pub fn seconds_to_ns(what: &str, seconds: f64) -> Result<u64> {
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(invalid(&format!(
            "{what} must be a finite number of seconds > 0 (got {seconds:?})"
        )));
    }
    if seconds * 1e9 < 1.0 {
        return Err(invalid(&format!(
            "{what} must be at least 1 ns (got {seconds:?} s)"
        )));
    }
    let ns = (seconds * 1e9).round();
    if ns > MAX_PER_NS as f64 {
        return Err(invalid(&format!("{what} is too long (got {seconds:?} s)")));
    }
    Ok(ns as u64)
}

/// The value of a timeout that means "wait forever".
pub const FOREVER: f64 = -1.0;

/// A timeout in seconds as nanoseconds; `None` = forever ([`FOREVER`]).
/// 0 means "do not wait"; very long timeouts saturate.
pub fn timeout_ns(seconds: f64) -> Result<Option<i64>> {
    if seconds == FOREVER {
        return Ok(None);
    }
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(invalid(&format!(
            "timeout must be a finite number of seconds >= 0, or MPT_FOREVER (-1) (got {seconds:?})"
        )));
    }
    let ns = (seconds * 1e9).round();
    Ok(Some(if ns >= i64::MAX as f64 {
        i64::MAX
    } else {
        ns as i64
    }))
}

fn invalid(msg: &str) -> Error {
    Error::InvalidArgument(msg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_mp_throttle() {
        let c = Config::new(4, 1.0, &Options::default()).unwrap();
        assert!(c.as_throttle && c.as_monitor && c.auto_emit);
        assert_eq!(c.refresh_ns, 10_000_000);
        assert_eq!(c.schedule.hardcap(), Hardcap::Limit);
        let off = Options {
            as_throttle: false,
            ..Options::default()
        };
        assert!(!Config::new(4, 1.0, &off).unwrap().auto_emit);
    }

    #[test]
    fn rejects_bad_numbers() {
        let o = Options::default();
        for per in [
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-12,
            0.6e-9,
        ] {
            assert!(
                matches!(Config::new(4, per, &o), Err(Error::InvalidArgument(_))),
                "{per}"
            );
        }
        assert!(matches!(
            Config::new(0, 1.0, &o),
            Err(Error::InvalidArgument(_))
        ));
        for r in [0.0, -0.01, f64::NAN, f64::INFINITY, 1e-9] {
            let o = Options {
                refresh_s: r,
                ..Options::default()
            };
            assert!(
                matches!(Config::new(4, 1.0, &o), Err(Error::InvalidArgument(_))),
                "{r}"
            );
        }
        let o = Options {
            hardcap: Hardcap::Window,
            ..Options::default()
        };
        assert!(Config::new(MAX_WINDOW + 1, 1.0, &o).is_err());
        assert!(Config::new(MAX_WINDOW, 1.0, &o).is_ok());
        let o = Options {
            as_throttle: false,
            as_monitor: false,
            ..Options::default()
        };
        assert!(Config::new(4, 1.0, &o).is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout_ns(FOREVER), Ok(None));
        assert_eq!(timeout_ns(0.0), Ok(Some(0)));
        assert_eq!(timeout_ns(1.5), Ok(Some(1_500_000_000)));
        assert_eq!(timeout_ns(1e300), Ok(Some(i64::MAX)));
        for t in [-0.5, -2.0, f64::NAN, f64::INFINITY] {
            assert!(timeout_ns(t).is_err(), "{t}");
        }
    }
}
