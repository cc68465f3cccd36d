//! `mpt_cancel`: ending one waiter's wait from another thread.

use super::handle::{Handle, Tagged, borrow, free, into_c};
use super::throttle::{MptThrottle, handle};
use super::{Failure, MptStatus, guard, non_null, write, write_opt};
use crate::cancel::Cancel;
use crate::config;

/// A cancellation token (opaque): see `mpt_cancel_new`.
pub struct MptCancel(Tagged<Cancel>);

impl Handle for MptCancel {
    type Inner = Cancel;
    const MAGIC: u64 = 0x6d70_745f_6361_6e63; // "mpt_canc"
    const C_TYPE: &'static str = "mpt_cancel";

    fn wrap(tagged: Tagged<Cancel>) -> Self {
        Self(tagged)
    }

    fn tagged(&self) -> &Tagged<Cancel> {
        &self.0
    }

    fn tagged_mut(&mut self) -> &mut Tagged<Cancel> {
        &mut self.0
    }
}

/// The token behind a handle, or `NULL_POINTER` / `BAD_HANDLE`.
///
/// # Safety
/// As [`borrow`].
pub(super) unsafe fn token<'a>(p: *const MptCancel) -> Result<&'a Cancel, Failure> {
    // SAFETY: the caller's contract.
    unsafe { borrow(p, "cancel") }
}

/// Makes a cancellation token: `mpt_cancel_fire` on it ends every
/// `mpt_await_fuel_cancellable` given it, at once, from any thread of this
/// process, and only those (the kill flag ends every wait of a throttle).
/// It is how a Go context, a Ruby `Thread#kill` or a Python task
/// cancellation ends one wait without disturbing the order of the others.
///
/// - `out_cancel`: not NULL; receives the token, released with
///   `mpt_cancel_free`.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`.
///
/// Thread safety: the token may be fired, reset and waited with from any
/// thread at once. Fork safety: a token belongs to the process that made
/// it; a forked child gets `MPT_STATUS_WRONG_STATE` from a wait given its
/// parent's token. Blocking: never. Since: 0.2.0.
///
/// # Safety
/// `out_cancel` must be NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_cancel_new(out_cancel: *mut *mut MptCancel) -> MptStatus {
    guard(|| {
        non_null(out_cancel, "out_cancel")?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_cancel, into_c(Cancel::new())) };
        Ok(())
    })
}

/// Releases a token. NULL is allowed (nothing happens).
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: no wait may be using the token, and no other thread may
/// use it during or after this call. Blocking: never. Since: 0.2.0.
///
/// # Safety
/// `cancel` must be NULL or a live token that nothing else uses any more.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_cancel_free(cancel: *mut MptCancel) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or a live token that nothing else uses any more (the
        // contract).
        unsafe { free(cancel, "cancel") }
    })
}

/// Fires the token: every `mpt_await_fuel_cancellable` given it returns
/// `MPT_STATUS_CANCELLED` at once, having taken nothing: units it had
/// reserved are given back, so the waiters behind it move up, in order.
/// (`MPT_HARDCAP_WINDOW`: the waiters behind it reserve again, one place
/// up.) Two exceptions keep a reserved unit taken (none is handed to anyone
/// else): a change lock held for over 2 ms by another process (stopped in
/// a debugger), and with `MPT_HARDCAP_WINDOW` a unit so far back in the
/// queue that the window no longer holds it (more units wait than
/// `max(max_n, MPT_WINDOW_MIN_RING)`). Every later wait given the token returns
/// `MPT_STATUS_CANCELLED` too, until `mpt_cancel_reset`.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe from any thread of the process that made it.
/// Blocking: never (one futex wake per throttle waited on). Since: 0.2.0.
///
/// # Safety
/// `cancel` must be NULL or a live token.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_cancel_fire(cancel: *const MptCancel) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        unsafe { token(cancel)? }.fire();
        Ok(())
    })
}

/// Makes a fired token usable again for new waits.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Blocking: never. Since: 0.2.0.
///
/// # Safety
/// `cancel` must be NULL or a live token.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_cancel_reset(cancel: *const MptCancel) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        unsafe { token(cancel)? }.reset();
        Ok(())
    })
}

/// As `mpt_await_fuel_n`, and `mpt_cancel_fire(cancel)` from any thread
/// ends it at once with `MPT_STATUS_CANCELLED`, having taken nothing.
///
/// - `cancel`: a live token of this process (NULL: as `mpt_await_fuel_n`).
///   One token may serve any number of waits at once.
///
/// Returns: as `mpt_await_fuel_n`; `MPT_STATUS_CANCELLED` (the token fired,
/// before or during the wait); `MPT_STATUS_BAD_HANDLE` also for a token
/// that is not one; `MPT_STATUS_WRONG_STATE` for a token made by another
/// process.
///
/// Thread safety, fork safety, blocking: as `mpt_await_fuel`, and woken at
/// once by `mpt_cancel_fire`. Since: 0.2.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle, `cancel` NULL or a live token
/// (not freed during the call), `out_grant_ns` NULL or valid.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_await_fuel_cancellable(
    throttle: *const MptThrottle,
    n: u64,
    timeout_s: f64,
    cancel: *const MptCancel,
    out_grant_ns: *mut i64,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let throttle = unsafe { handle(throttle)? };
        let cancel = if cancel.is_null() {
            None
        } else {
            // SAFETY: live, per the contract.
            Some(unsafe { token(cancel)? })
        };
        let timeout = config::timeout_ns(timeout_s)?;
        let grant = throttle.await_fuel_cancellable(n, timeout, cancel)?;
        // SAFETY: NULL or valid, per the contract.
        unsafe { write_opt(out_grant_ns, grant) };
        Ok(())
    })
}
