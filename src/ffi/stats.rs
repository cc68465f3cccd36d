//! Statistics: mp_throttle's `latest()`, `mean()`, `lo_hi()`, `hi_lo()`,
//! readable from every process that shares the throttle, at any time,
//! without a lock.

use super::throttle::{MptSummary, MptThrottle, handle};
use super::{MptStatus, guard, non_null, write};
use crate::error::Result;
use crate::stats::RatePair;
use crate::throttle::any::AnyThrottle;

/// A statistic: mp_throttle's `(time between emissions, emissions per
/// second)` pair. Both are 0 when there is nothing to measure yet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MptRate {
    /// Seconds between emissions.
    pub seconds_between: f64,
    /// Emissions per second (`INFINITY` for an interval of 0 ns).
    pub per_second: f64,
}

impl From<RatePair> for MptRate {
    fn from(p: RatePair) -> Self {
        Self {
            seconds_between: p.seconds_between,
            per_second: p.per_second,
        }
    }
}

/// The shared body of the four statistics calls.
///
/// # Safety
/// As each caller's: `throttle` NULL or live, `out_rate` NULL or valid.
unsafe fn read_rate(
    throttle: *const MptThrottle,
    out_rate: *mut MptRate,
    statistic: fn(&AnyThrottle) -> Result<RatePair>,
) -> MptStatus {
    guard(|| {
        non_null(out_rate, "out_rate")?;
        // SAFETY: NULL or live, per the caller's contract.
        let pair = statistic(unsafe { handle(throttle)? })?;
        // SAFETY: checked non-NULL; valid per the caller's contract.
        unsafe { write(out_rate, pair.into()) };
        Ok(())
    })
}

/// The emissions of the last second (mp_throttle's `latest()`): how many
/// emissions of this run carry a timestamp in the last second (or later: a
/// timestamp of `mpt_emit_at` in the future counts until it is a second
/// old, as in mp_throttle), and one over that. Refreshed by the monitor
/// every refresh interval; 0 after `mpt_stop`.
///
/// - `out_rate`: not NULL; receives the pair.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_MONITOR_OFF` (as_monitor 0, or the
/// monitor thread failed); `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child (reads the same figures
/// as every other process). Blocking: never; takes no lock. Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_rate` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_latest(
    throttle: *const MptThrottle,
    out_rate: *mut MptRate,
) -> MptStatus {
    // SAFETY: the caller's contract is this function's.
    unsafe { read_rate(throttle, out_rate, AnyThrottle::latest) }
}

/// The mean over the whole running time (mp_throttle's `mean()`): total
/// emissions over runtime, exact at the moment of the call.
///
/// Returns, thread and fork safety, blocking: as `mpt_latest`.
/// Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_rate` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_mean(
    throttle: *const MptThrottle,
    out_rate: *mut MptRate,
) -> MptStatus {
    // SAFETY: the caller's contract is this function's.
    unsafe { read_rate(throttle, out_rate, AnyThrottle::mean) }
}

/// The shortest interval seen between two emissions that follow each other
/// in time, and its rate (mp_throttle's `lo_hi()`). Intervals that span a
/// pause are not counted. Both 0 until an interval has been seen.
///
/// Returns, thread and fork safety, blocking: as `mpt_latest`.
/// Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_rate` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_lo_hi(
    throttle: *const MptThrottle,
    out_rate: *mut MptRate,
) -> MptStatus {
    // SAFETY: the caller's contract is this function's.
    unsafe { read_rate(throttle, out_rate, AnyThrottle::lo_hi) }
}

/// The longest interval seen between two emissions that follow each other
/// in time, and its rate (mp_throttle's `hi_lo()`). Intervals that span a
/// pause are not counted. Both 0 until an interval has been seen.
///
/// Returns, thread and fork safety, blocking: as `mpt_latest`.
/// Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_rate` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_hi_lo(
    throttle: *const MptThrottle,
    out_rate: *mut MptRate,
) -> MptStatus {
    // SAFETY: the caller's contract is this function's.
    unsafe { read_rate(throttle, out_rate, AnyThrottle::hi_lo) }
}

/// The four figures `mpt_stop` reports, as of now, whether running or not
/// (needs no monitor: the counts are exact at the moment of the call).
///
/// - `out_summary`: not NULL; receives the figures.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_summary` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_get_summary(
    throttle: *const MptThrottle,
    out_summary: *mut MptSummary,
) -> MptStatus {
    guard(|| {
        non_null(out_summary, "out_summary")?;
        // SAFETY: NULL or live, per the contract.
        let summary = unsafe { handle(throttle)? }.summary();
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_summary, summary.into()) };
        Ok(())
    })
}

const _: () = assert!(size_of::<MptRate>() == 16 && align_of::<MptRate>() == 8);
