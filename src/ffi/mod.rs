//! The C boundary: the only place with `#[unsafe(no_mangle)]`.
//!
//! Every export has the same body: `guard(|| { check and convert arguments;
//! call one core function; write out-params })`. [`guard`] turns errors into
//! status codes and thread-local messages, and catches panics, so nothing
//! unwinds into C.

pub mod cancel;
pub mod handle;
pub mod keyed;
pub mod options;
pub mod stats;
pub mod throttle;
pub mod version;

use crate::error::Error;
use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Status codes. Every `mpt_` function returns one; `MPT_STATUS_OK` is 0.
/// Values are stable: never renumbered or reused.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MptStatus {
    /// Success.
    Ok = 0,
    /// `mpt_await_fuel`: no fuel came before the timeout.
    Timeout = 1,
    /// The kill flag is set (by `mpt_kill` or `mpt_stop`): the worker should
    /// finish.
    Killed = 2,
    /// `mpt_has_fuel`: the tank is empty or the throttle is not running;
    /// nothing was taken.
    NoFuel = 3,
    /// `mpt_emit`: the throttle is not running; nothing was counted.
    NotRunning = 4,
    /// A required pointer argument was NULL.
    NullPointer = 5,
    /// The handle is not a live one of the type the call takes
    /// (`mpt_throttle`, `mpt_keyed`, `mpt_cancel`): freed, or not one at all.
    BadHandle = 6,
    /// An argument is out of range, not a number, or contradicts another.
    InvalidArgument = 7,
    /// The call does not fit the throttle's state (start while running,
    /// stop while stopped, emit with auto_emit on, ...).
    WrongState = 8,
    /// Statistics asked of a throttle made with `as_monitor` off, or whose
    /// monitor thread failed.
    MonitorOff = 9,
    /// The operating system refused a resource (memory, a thread).
    System = 10,
    /// This machine lacks something the library needs.
    Unsupported = 11,
    /// The shared state holds values no correct process writes.
    Corrupt = 12,
    /// A bug in the library: a panic was caught at the boundary.
    Panic = 13,
    /// `mpt_throttle_open` / `mpt_throttle_unlink`: no throttle has that
    /// name.
    NotFound = 14,
    /// The named throttle belongs to another user: `mpt_throttle_open`,
    /// `mpt_throttle_create_named` and `mpt_throttle_unlink` use only the
    /// caller's own (root included), checked on the opened object; another
    /// user's only if both sides asked for group sharing (see
    /// `mpt_throttle_open`). The message names the owner.
    PermissionDenied = 15,
    /// `mpt_throttle_create_named`: a throttle of that name exists with
    /// another configuration (open it with `mpt_throttle_open` to adopt it).
    Mismatch = 16,
    /// `mpt_await_fuel_cancellable`: the wait's `mpt_cancel` fired (what it
    /// had reserved was given back, see that function).
    Cancelled = 17,
    /// The store that holds the throttle's state could not be reached (a
    /// store on another machine). Never returned by a throttle in shared
    /// memory, which is every throttle this version makes; listed so that
    /// programs can handle it before such stores come.
    Unreachable = 18,
    /// `mpt_keyed_*`: the key is new and the keyed throttle's table has no
    /// room for it: it holds its capacity of keys, or the slots the key may
    /// go in are taken, and every key there still holds back fuel (see
    /// `mpt_keyed_new`). Nothing was taken.
    NoRoom = 19,
}

impl MptStatus {
    /// Every status, in order of value.
    pub const ALL: [MptStatus; 20] = [
        MptStatus::Ok,
        MptStatus::Timeout,
        MptStatus::Killed,
        MptStatus::NoFuel,
        MptStatus::NotRunning,
        MptStatus::NullPointer,
        MptStatus::BadHandle,
        MptStatus::InvalidArgument,
        MptStatus::WrongState,
        MptStatus::MonitorOff,
        MptStatus::System,
        MptStatus::Unsupported,
        MptStatus::Corrupt,
        MptStatus::Panic,
        MptStatus::NotFound,
        MptStatus::PermissionDenied,
        MptStatus::Mismatch,
        MptStatus::Cancelled,
        MptStatus::Unreachable,
        MptStatus::NoRoom,
    ];

    /// A NUL-terminated description.
    fn describe(self) -> &'static str {
        match self {
            MptStatus::Ok => "ok\0",
            MptStatus::Timeout => "timed out: no fuel came before the timeout\0",
            MptStatus::Killed => {
                "killed: the kill flag is set (the throttle was stopped or killed)\0"
            }
            MptStatus::NoFuel => "no fuel: the tank is empty or the throttle is not running\0",
            MptStatus::NotRunning => "not running: the throttle was never started or is stopped\0",
            MptStatus::NullPointer => "a required pointer argument is NULL\0",
            MptStatus::BadHandle => "not a live handle of its type (freed, or never one)\0",
            MptStatus::InvalidArgument => "invalid argument\0",
            MptStatus::WrongState => "the call does not fit the throttle's current state\0",
            MptStatus::MonitorOff => {
                "monitor not running (as_monitor is off, or the monitor failed)\0"
            }
            MptStatus::System => "the operating system refused a resource\0",
            MptStatus::Unsupported => "not supported on this machine\0",
            MptStatus::Corrupt => "the shared state is corrupt\0",
            MptStatus::Panic => "internal error (a bug in mp_throttle): a panic was caught\0",
            MptStatus::NotFound => "no throttle has that name\0",
            MptStatus::PermissionDenied => {
                "permission denied: the throttle belongs to another user\0"
            }
            MptStatus::Mismatch => "a throttle of that name exists with another configuration\0",
            MptStatus::Cancelled => "cancelled: the wait's mpt_cancel fired\0",
            MptStatus::Unreachable => "the store that holds the throttle could not be reached\0",
            MptStatus::NoRoom => "no room: the keyed throttle's table has no room for a new key\0",
        }
    }
}

/// A failure at the boundary: the status to return and the message to keep.
#[derive(Debug)]
pub struct Failure {
    status: MptStatus,
    message: Cow<'static, str>,
}

impl Failure {
    /// A failure with a message.
    pub fn new(status: MptStatus, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// `MPT_STATUS_INVALID_ARGUMENT` with a message.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(MptStatus::InvalidArgument, message)
    }
}

impl MptStatus {
    /// The status the C boundary returns for a core error.
    pub fn of(e: &Error) -> MptStatus {
        match e {
            Error::Timeout => MptStatus::Timeout,
            Error::Killed => MptStatus::Killed,
            Error::NoFuel => MptStatus::NoFuel,
            Error::NotRunning => MptStatus::NotRunning,
            Error::InvalidArgument(_) => MptStatus::InvalidArgument,
            Error::WrongState(_) => MptStatus::WrongState,
            Error::MonitorOff(_) => MptStatus::MonitorOff,
            Error::System(_) => MptStatus::System,
            Error::Unsupported(_) => MptStatus::Unsupported,
            Error::Corrupt(_) => MptStatus::Corrupt,
            Error::NotFound(_) => MptStatus::NotFound,
            Error::PermissionDenied(_) => MptStatus::PermissionDenied,
            Error::Mismatch(_) => MptStatus::Mismatch,
            Error::Cancelled => MptStatus::Cancelled,
            Error::Unreachable(_) => MptStatus::Unreachable,
            Error::NoRoom(_) => MptStatus::NoRoom,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = MptStatus::of(&e);
        match e {
            // Outcomes of the hot calls: a static message, no allocation.
            Error::Timeout
            | Error::Killed
            | Error::NoFuel
            | Error::NotRunning
            | Error::Cancelled => {
                let text = status.describe();
                Failure::new(status, &text[..text.len() - 1])
            }
            other => Failure::new(status, other.to_string()),
        }
    }
}

/// What a boundary body returns.
pub type FfiResult = Result<(), Failure>;

thread_local! {
    static LAST_ERROR: RefCell<Cow<'static, str>> = const { RefCell::new(Cow::Borrowed("")) };
}

fn set_last_error(message: Cow<'static, str>) {
    LAST_ERROR.with(|m| *m.borrow_mut() = message);
}

/// Runs a boundary body: maps its error to a status and keeps the message;
/// catches a panic and reports `MPT_STATUS_PANIC` with the panic's text.
pub fn guard(body: impl FnOnce() -> FfiResult) -> MptStatus {
    // AssertUnwindSafe: a body only reads its arguments and calls the core,
    // whose shared state is atomics (always valid) and whose private state
    // (a mutex-held thread handle) stays consistent if a panic unwinds.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => MptStatus::Ok,
        Ok(Err(failure)) => {
            set_last_error(failure.message);
            failure.status
        }
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(Cow::Owned(format!(
                "internal error (a bug in mp_throttle): {text}"
            )));
            MptStatus::Panic
        }
    }
}

/// `Err(NULL_POINTER)` naming `what` if `p` is NULL.
pub fn non_null<T>(p: *const T, what: &'static str) -> FfiResult {
    if p.is_null() {
        Err(Failure::new(
            MptStatus::NullPointer,
            format!("{what} is NULL"),
        ))
    } else {
        Ok(())
    }
}

/// A NUL-terminated UTF-8 string argument, borrowed for the call.
///
/// # Safety
/// `p` must be NULL or point at a NUL-terminated string that stays valid and
/// unchanged for the call.
pub unsafe fn text<'a>(p: *const c_char, what: &'static str) -> Result<&'a str, Failure> {
    non_null(p, what)?;
    // SAFETY: non-NULL and NUL-terminated, per this function's contract.
    let bytes = unsafe { std::ffi::CStr::from_ptr(p) };
    bytes
        .to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))
}

/// Writes `value` through an out-pointer already checked by [`non_null`].
///
/// # Safety
/// `p` must be non-NULL, aligned and valid for a write of `T` (the caller's
/// documented obligation for every out-parameter).
pub unsafe fn write<T>(p: *mut T, value: T) {
    // SAFETY: guaranteed by this function's contract.
    unsafe { p.write(value) }
}

/// Writes `value` through an optional out-pointer (NULL: nothing).
///
/// # Safety
/// `p` must be NULL, or aligned and valid for a write of `T`.
pub unsafe fn write_opt<T>(p: *mut T, value: T) {
    if !p.is_null() {
        // SAFETY: non-NULL, and valid per this function's contract.
        unsafe { p.write(value) }
    }
}

/// A static, NUL-terminated English description of a status code; never
/// NULL. Unknown codes give "unknown status".
///
/// Thread safety: safe from any thread. Fork safety: safe in a child.
/// Blocking: never. Since: 0.1.0.
#[unsafe(no_mangle)]
pub extern "C" fn mpt_strerror(status: i32) -> *const c_char {
    let text = MptStatus::ALL
        .iter()
        .find(|s| **s as i32 == status)
        .map_or("unknown status\0", |s| s.describe());
    text.as_ptr().cast()
}

/// Copies the message of the calling thread's most recent failure into
/// `buf`.
///
/// Every `mpt_` function that returns a status other than `MPT_STATUS_OK`
/// records a message for its thread; success does not clear it. The message
/// says in words what was wrong (which argument, which state); the status
/// code alone is always enough to act on.
///
/// - `buf`: may be NULL only if `len` is 0; receives at most `len - 1` bytes
///   and a NUL (the message is cut if it is longer).
/// - `out_len`: may be NULL; receives the message's full length in bytes,
///   without the NUL (compare with `len` to detect a cut).
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER` if `buf` is NULL and
/// `len` > 0.
///
/// Thread safety: reads the calling thread's message only (Go callers: lock
/// the OS thread around the failing call and this one).
/// Fork safety: safe in a child. Blocking: never. Since: 0.1.0.
///
/// # Safety
/// `buf` must be valid for `len` bytes of writes; `out_len` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> MptStatus {
    guard(|| {
        if len > 0 {
            non_null(buf, "buf")?;
        }
        LAST_ERROR.with(|m| {
            let m = m.borrow();
            let bytes = m.as_bytes();
            if len > 0 {
                let n = bytes.len().min(len - 1);
                // SAFETY: buf is valid for len > n bytes (the caller's
                // contract), and bytes/buf cannot overlap: bytes is ours.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n) };
                // SAFETY: n < len, so buf + n is inside the caller's buffer.
                let end = unsafe { buf.add(n) };
                // SAFETY: `end` is in the caller's buffer, valid for writes.
                unsafe { end.write(0) };
            }
            // SAFETY: out_len is NULL or valid (the caller's contract).
            unsafe { write_opt(out_len, bytes.len()) };
        });
        Ok(())
    })
}
