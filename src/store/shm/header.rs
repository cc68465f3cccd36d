//! A configuration written into the shared header, and read back from one
//! that another process wrote: validated field by field, since that process
//! may have been buggy, hostile, or of another version.

#![forbid(unsafe_code)]

use super::layout::{
    FLAG_AUTO_EMIT, FLAG_GROUP_SHARED, FLAG_MONITOR, FLAG_THROTTLE, Header, LAYOUT_VERSION, MAGIC,
    Phase, Shared, mapping_size,
};
use crate::config::{Config, MAX_WINDOW, MIN_REFRESH_S, Options};
use crate::error::{Error, Result};
use crate::schedule::{Hardcap, Rate, Schedule};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// Writes `config` into a fresh header of a `size`-byte mapping. The magic
/// word goes last ([`seal`]), once the whole state is ready.
pub fn write(h: &Header, config: &Config, size: usize) {
    let rate = config.schedule.rate();
    h.layout_version.store(LAYOUT_VERSION, Relaxed);
    h.hardcap.store(config.schedule.hardcap() as u32, Relaxed);
    h.size.store(size as u64, Relaxed);
    h.max_n.store(rate.max_n(), Relaxed);
    h.per_ns.store(rate.per_ns(), Relaxed);
    h.refresh_ns.store(config.refresh_ns, Relaxed);
    let flags = [
        (config.as_throttle, FLAG_THROTTLE),
        (config.as_monitor, FLAG_MONITOR),
        (config.auto_emit, FLAG_AUTO_EMIT),
        (config.group_shared, FLAG_GROUP_SHARED),
    ];
    h.flags.store(
        flags.iter().filter(|f| f.0).fold(0, |a, f| a | f.1),
        Relaxed,
    );
    h.keys.store(config.keys as u32, Relaxed);
    h.ring_len.store(config.tail_words().unwrap_or(0), Relaxed);
}

/// Publishes the state: other processes may use it from here on.
pub fn seal(h: &Header) {
    h.magic.store(MAGIC, Release);
}

/// Whether the creator has sealed the state yet (`Err`: it never will be:
/// the first word is not ours).
pub fn sealed(h: &Header) -> Result<bool> {
    match h.magic.load(Acquire) {
        MAGIC => Ok(true),
        0 => Ok(false),
        _ => Err(corrupt(
            "it is not an mp_throttle object (wrong magic word)",
        )),
    }
}

/// Reads and validates the configuration of a sealed state of `size` bytes;
/// the waiting preferences (timer slack, spin) come from `waiting`, since
/// they belong to each process, not to the throttle.
pub fn read(sh: &Shared, size: usize, waiting: &Options) -> Result<Config> {
    let h = &sh.header;
    let version = h.layout_version.load(Acquire);
    if version != LAYOUT_VERSION {
        return Err(Error::Unsupported(format!(
            "it was made by a{} version of mp_throttle (shared layout {version}; this library \
             reads layout {LAYOUT_VERSION})",
            if version > LAYOUT_VERSION {
                " newer"
            } else {
                "n older"
            }
        )));
    }
    let stated = h.size.load(Acquire);
    if stated != size as u64 {
        return Err(corrupt(&format!(
            "its header says {stated} bytes but it is {size}"
        )));
    }
    let hardcap = Hardcap::try_from(h.hardcap.load(Acquire))
        .map_err(|v| corrupt(&format!("unknown hardcap {v}")))?;
    let (max_n, per_ns) = (h.max_n.load(Acquire), h.per_ns.load(Acquire));
    let rate = Rate::new(max_n, per_ns)
        .ok_or_else(|| corrupt(&format!("impossible rate: {max_n} per {per_ns} ns")))?;
    if hardcap == Hardcap::Window && max_n > MAX_WINDOW {
        return Err(corrupt(&format!(
            "WINDOW with max_n {max_n} > {MAX_WINDOW}"
        )));
    }
    let schedule = Schedule::new(rate, hardcap);
    let flags = h.flags.load(Acquire);
    if flags & !(FLAG_THROTTLE | FLAG_MONITOR | FLAG_AUTO_EMIT | FLAG_GROUP_SHARED) != 0
        || flags & (FLAG_THROTTLE | FLAG_MONITOR) == 0
    {
        return Err(corrupt(&format!("impossible flags {flags:#x}")));
    }
    let refresh_ns = h.refresh_ns.load(Acquire);
    if refresh_ns < (MIN_REFRESH_S * 1e9) as u64 || refresh_ns > crate::schedule::MAX_PER_NS {
        return Err(corrupt(&format!(
            "impossible refresh interval {refresh_ns} ns"
        )));
    }
    if Phase::unpack(sh.control.run.load(Acquire)).is_none() {
        return Err(corrupt("its run state is not one this library writes"));
    }
    let options = Options {
        as_throttle: flags & FLAG_THROTTLE != 0,
        as_monitor: flags & FLAG_MONITOR != 0,
        auto_emit: Some(flags & FLAG_AUTO_EMIT != 0),
        hardcap,
        refresh_s: refresh_ns as f64 / 1e9,
        // What the header says, not what the opener accepts.
        group_shared: flags & FLAG_GROUP_SHARED != 0,
        ..*waiting
    };
    let keys = u64::from(h.keys.load(Acquire));
    let mut config = if keys == 0 {
        Config::new(max_n, per_ns as f64 / 1e9, &options)
    } else {
        Config::keyed(max_n, per_ns as f64 / 1e9, keys, &options)
    }
    .map_err(|e| corrupt(&format!("impossible configuration: {e}")))?;
    // Rebuilt from the exact integers, not through the f64 seconds.
    config.schedule = schedule;
    config.refresh_ns = refresh_ns;
    let tail = h.ring_len.load(Acquire);
    if Some(tail) != config.tail_words() || mapping_size(tail) != Some(size) {
        return Err(corrupt(&format!(
            "{} of {tail} words does not fit its size",
            if keys == 0 { "ring" } else { "key table" }
        )));
    }
    Ok(config)
}

/// Whether two configurations describe the same throttle (the waiting
/// preferences of each process aside; group sharing is part of the
/// throttle).
pub fn same_throttle(a: &Config, b: &Config) -> bool {
    a.schedule == b.schedule
        && a.as_throttle == b.as_throttle
        && a.as_monitor == b.as_monitor
        && a.auto_emit == b.auto_emit
        && a.refresh_ns == b.refresh_ns
        && a.group_shared == b.group_shared
        && a.keys == b.keys
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("the shared state is corrupt or foreign: {what}"))
}
