//! `mpt_options`: how a throttle is made (`mpt_options_init`, and the
//! options C gives `mpt_throttle_new`, `mpt_throttle_create_named` and
//! `mpt_throttle_open`), in its two versions.

use super::{Failure, MptStatus, guard, non_null, write};
use crate::config::{self, Options};
use crate::schedule::Hardcap;

/// The `version` of `mpt_options` of this header: 2 (48 bytes, with
/// `group_shared`). The library also accepts version 1 (the 40 bytes before
/// `group_shared`, which is then off), so that programs built against an
/// older header keep working.
pub const MPT_OPTIONS_VERSION: u32 = 2;

/// `mpt_options.auto_emit`: on exactly when `as_throttle` is on (as in
/// mp_throttle).
pub const MPT_AUTO_EMIT_DEFAULT: i32 = -1;

/// Longest spin before a grant time accepted, in seconds.
pub const MPT_MAX_SPIN_S: f64 = 1.0;
const _: () = assert!(MPT_MAX_SPIN_S == config::MAX_SPIN_S);

/// A `MPT_HARDCAP_WINDOW` throttle keeps the times of its last
/// `max(max_n, MPT_WINDOW_MIN_RING)` grants (`max_n` as made), so
/// `mpt_set_rate` may raise its `max_n` to that many, no further.
pub const MPT_WINDOW_MIN_RING: u64 = 4096;
const _: () = assert!(MPT_WINDOW_MIN_RING == crate::schedule::RING_MIN);

/// Tank capacity: what the schedule guarantees (docs/design.md, "Hardcaps").
/// Let T = per / max_n; the tank starts empty at start, its first unit is
/// there at the start instant, then one every T.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MptHardcap {
    /// Default, as mp_throttle's 'limit': a token bucket of capacity max_n
    /// and rate max_n/per.
    Limit = 0,
    /// As mp_throttle's 'one': the tank holds at most 1; grants at least T
    /// apart, never more than max_n in any window of length per.
    One = 1,
    /// As mp_throttle's other values: unbounded; grants by time t never
    /// exceed 1 + floor((t - t0)/T) over running time, slow phases are
    /// caught up.
    None = 2,
    /// Exact sliding window: never more than max_n grants in any half-open
    /// window of length per, and no grant waits when the window allows it.
    /// max_n is at most 4194304 (it keeps the last max(max_n,
    /// MPT_WINDOW_MIN_RING) grant times, 16 bytes each).
    Window = 3,
}

/// The C name of each hardcap (an exhaustive match: a hardcap the core adds
/// fails to compile here until C has a name for it).
const fn c_hardcap(h: Hardcap) -> MptHardcap {
    match h {
        Hardcap::Limit => MptHardcap::Limit,
        Hardcap::One => MptHardcap::One,
        Hardcap::None => MptHardcap::None,
        Hardcap::Window => MptHardcap::Window,
    }
}

// ... and with the value the core gives it, which `mpt_options.hardcap`
// carries.
const _: () = {
    let all = [Hardcap::Limit, Hardcap::One, Hardcap::None, Hardcap::Window];
    let mut i = 0;
    while i < all.len() {
        assert!(c_hardcap(all[i]) as u32 == all[i] as u32);
        i += 1;
    }
};

/// Options of `mpt_throttle_new`: mp_throttle's keyword arguments.
/// Fill with `mpt_options_init`, then change fields. Version 2 (48 bytes);
/// version 1 is the same struct without `group_shared` (40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MptOptions {
    /// `MPT_OPTIONS_VERSION`, set by `mpt_options_init`.
    pub version: u32,
    /// 1 (default): ration fuel. 0: fuel is always available, counting only.
    pub as_throttle: u32,
    /// 1 (default): a monitor thread keeps statistics. 0: the statistics
    /// calls return `MPT_STATUS_MONITOR_OFF`.
    pub as_monitor: u32,
    /// 1: each unit of fuel taken counts an emission. 0: workers call
    /// `mpt_emit` themselves. `MPT_AUTO_EMIT_DEFAULT` (default): as
    /// `as_throttle`.
    pub auto_emit: i32,
    /// An `mpt_hardcap` value (default `MPT_HARDCAP_LIMIT`).
    pub hardcap: u32,
    /// Timer slack, in ns, of a thread while `mpt_await_fuel` sleeps towards
    /// its grant time; the thread's own slack is restored afterwards.
    /// Default 1 (the tightest: wake-ups about 50 us earlier than with the
    /// kernel's default of 50 us). 0: leave the thread's slack alone. The
    /// kernel may wake a sleeping waiter up to this late: a large value makes
    /// waits (timeouts included) overrun by as much.
    pub timer_slack_ns: u32,
    /// Seconds between monitor refreshes (mp_throttle's rf_rate; default
    /// 0.01; finite and at least 1e-6).
    pub refresh_s: f64,
    /// The precise mode: seconds before its grant time at which a waiter
    /// stops sleeping and spins on the clock, trading CPU for timing (e.g.
    /// 0.00005; see BENCHMARKS.md for what it costs). From 0 to 1.
    /// Default 0: a waiter spins only the last 60 us of a wait of 2 ms or
    /// more (an idle CPU wakes that late; at most 3% of the waiting time),
    /// and any wait under 20 us, for which sleeping would wake too late.
    pub spin_s: f64,
    /// Named throttles only (options version 2; off in version 1): 1 shares
    /// the throttle with a group, 0 (default) keeps it to one user.
    /// `mpt_throttle_create_named`: creates the object group-accessible
    /// (mode 0660, the creator's effective group) and records it in the
    /// throttle's header; it is part of the configuration, so creating a
    /// name that exists with the other value is `MPT_STATUS_MISMATCH`.
    /// `mpt_throttle_open` (and a create_named that finds the name made):
    /// accepts another user's throttle if it was made group-shared, its
    /// mode gives its group read and write and others nothing, and its
    /// group is one of the caller's (effective or supplementary). Without
    /// it, only a throttle of the caller's effective uid is ever used. Every
    /// member of the group can then damage or truncate the throttle (a
    /// truncated throttle makes its users die of SIGBUS): share only with a
    /// group you trust. No effect on `mpt_throttle_new`.
    pub group_shared: u32,
}

/// Version 1 of `mpt_options` (40 bytes): what a program built against an
/// older header passes, and all that may be read or written there.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct MptOptionsV1 {
    version: u32,
    as_throttle: u32,
    as_monitor: u32,
    auto_emit: i32,
    hardcap: u32,
    timer_slack_ns: u32,
    refresh_s: f64,
    spin_s: f64,
}

impl From<MptOptionsV1> for MptOptions {
    fn from(o: MptOptionsV1) -> Self {
        Self {
            version: o.version,
            as_throttle: o.as_throttle,
            as_monitor: o.as_monitor,
            auto_emit: o.auto_emit,
            hardcap: o.hardcap,
            timer_slack_ns: o.timer_slack_ns,
            refresh_s: o.refresh_s,
            spin_s: o.spin_s,
            group_shared: 0,
        }
    }
}

impl From<MptOptions> for MptOptionsV1 {
    fn from(o: MptOptions) -> Self {
        Self {
            version: 1,
            as_throttle: o.as_throttle,
            as_monitor: o.as_monitor,
            auto_emit: o.auto_emit,
            hardcap: o.hardcap,
            timer_slack_ns: o.timer_slack_ns,
            refresh_s: o.refresh_s,
            spin_s: o.spin_s,
        }
    }
}

/// The error for an `mpt_options` version this library does not know.
fn unknown_version(what: &str, version: u32) -> Failure {
    Failure::invalid(format!(
        "{what} is {version}; this library knows 1 and {MPT_OPTIONS_VERSION}: fill the options \
         with mpt_options_init"
    ))
}

impl Default for MptOptions {
    fn default() -> Self {
        let o = Options::default();
        Self {
            version: MPT_OPTIONS_VERSION,
            as_throttle: u32::from(o.as_throttle),
            as_monitor: u32::from(o.as_monitor),
            auto_emit: MPT_AUTO_EMIT_DEFAULT,
            hardcap: o.hardcap as u32,
            timer_slack_ns: o.timer_slack_ns as u32,
            refresh_s: o.refresh_s,
            spin_s: o.spin_s,
            group_shared: u32::from(o.group_shared),
        }
    }
}

impl TryFrom<&MptOptions> for Options {
    type Error = Failure;

    /// Version 2, or version 1 (whose `group_shared` is ignored: off).
    fn try_from(o: &MptOptions) -> Result<Self, Failure> {
        if o.version != 1 && o.version != MPT_OPTIONS_VERSION {
            return Err(unknown_version("options.version", o.version));
        }
        let flag = |v: u32, name: &str| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Failure::invalid(format!(
                "options.{name} must be 0 or 1 (got {v})"
            ))),
        };
        let auto_emit = match o.auto_emit {
            MPT_AUTO_EMIT_DEFAULT => None,
            0 => Some(false),
            1 => Some(true),
            v => {
                return Err(Failure::invalid(format!(
                    "options.auto_emit must be 0, 1 or MPT_AUTO_EMIT_DEFAULT (got {v})"
                )));
            }
        };
        let hardcap = Hardcap::try_from(o.hardcap).map_err(|v| {
            Failure::invalid(format!(
                "options.hardcap must be an mpt_hardcap value 0..3 (got {v})"
            ))
        })?;
        Ok(Options {
            as_throttle: flag(o.as_throttle, "as_throttle")?,
            as_monitor: flag(o.as_monitor, "as_monitor")?,
            auto_emit,
            hardcap,
            refresh_s: o.refresh_s,
            timer_slack_ns: u64::from(o.timer_slack_ns),
            spin_s: o.spin_s,
            group_shared: o.version >= 2 && flag(o.group_shared, "group_shared")?,
        })
    }
}

/// Fills `out_options` with the defaults of mp_throttle: as_throttle 1,
/// as_monitor 1, auto_emit `MPT_AUTO_EMIT_DEFAULT`, hardcap
/// `MPT_HARDCAP_LIMIT`, refresh_s 0.01; and timer_slack_ns 1, spin_s 0,
/// group_shared 0.
///
/// - `out_options`: not NULL; written on success: the 48 bytes of version
///   2, or only the 40 bytes of version 1 if `version` is 1 (a program
///   built against an older header, whose struct is that long).
/// - `version`: pass `MPT_OPTIONS_VERSION` (2), or 1.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_INVALID_ARGUMENT` for a version this library does not know.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.1.0.
///
/// # Safety
/// `out_options` must be NULL or valid for writing one `mpt_options` of
/// the version asked (40 bytes for version 1).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_options_init(out_options: *mut MptOptions, version: u32) -> MptStatus {
    guard(|| {
        non_null(out_options, "out_options")?;
        match version {
            // SAFETY: checked non-NULL; valid for the 40 bytes of version 1
            // per the caller's contract.
            1 => unsafe {
                write(
                    out_options.cast(),
                    MptOptionsV1::from(MptOptions::default()),
                )
            },
            // SAFETY: checked non-NULL; valid per the caller's contract.
            MPT_OPTIONS_VERSION => unsafe { write(out_options, MptOptions::default()) },
            _ => return Err(unknown_version("options version", version)),
        }
        Ok(())
    })
}

/// The options behind a C pointer: NULL gives the defaults. Reads the
/// version first, then only as many bytes as that version has (40 for
/// version 1), never a byte more.
///
/// # Safety
/// `options` must be NULL or valid for reading one `mpt_options` of the
/// version its `version` field says.
pub(super) unsafe fn options_or_default(options: *const MptOptions) -> Result<Options, Failure> {
    if options.is_null() {
        return Ok(Options::default());
    }
    // SAFETY: non-NULL, aligned and readable per the contract; `version`
    // is the first field of every version.
    let version = unsafe { options.cast::<u32>().read() };
    let full = match version {
        // SAFETY: a version-1 struct: 40 readable bytes, per the contract.
        1 => MptOptions::from(unsafe { options.cast::<MptOptionsV1>().read() }),
        // SAFETY: a version-2 struct: all of it readable, per the contract.
        MPT_OPTIONS_VERSION => unsafe { options.read() },
        v => return Err(unknown_version("options.version", v)),
    };
    Options::try_from(&full)
}

// The ABI of the structs C sees; tests/c checks the same sizes with
// _Static_assert.
const _: () = assert!(size_of::<MptOptions>() == 48 && align_of::<MptOptions>() == 8);
// Version 1 is the first 40 bytes of version 2, field for field.
const _: () = assert!(size_of::<MptOptionsV1>() == 40 && align_of::<MptOptionsV1>() == 8);
const _: () = assert!(std::mem::offset_of!(MptOptions, spin_s) == 32);
const _: () = assert!(std::mem::offset_of!(MptOptionsV1, spin_s) == 32);
const _: () = assert!(std::mem::offset_of!(MptOptions, group_shared) == 40);
