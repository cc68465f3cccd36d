//! The core's error type. The C boundary maps each variant to a status code.

#![forbid(unsafe_code)]

use std::fmt;

/// Why a call did not do what was asked. The variants with a `String` carry
/// the library's explanation, which [`Display`](fmt::Display) prints. The C
/// boundary maps each variant to a status code; Rust programs get it from
/// [`crate::api`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No fuel came before the timeout.
    Timeout,
    /// The kill flag is set (by `kill` or `stop`, in any process): finish.
    /// Cleared by the next `start`.
    Killed,
    /// `has_fuel`: the tank is empty now (or the throttle is not running).
    NoFuel,
    /// `emit` or `peek` while the throttle is not running.
    NotRunning,
    /// An argument is out of range or contradicts another.
    InvalidArgument(String),
    /// The call does not fit the throttle's state (start while running, emit
    /// with auto emit on, a token made before a `fork()`, ...).
    WrongState(String),
    /// Statistics asked of a throttle without a working monitor.
    MonitorOff(String),
    /// The operating system refused (memory mapping, thread creation, ...).
    System(String),
    /// This machine lacks something the library needs.
    Unsupported(String),
    /// The shared state holds values no correct process writes.
    Corrupt(String),
    /// No named throttle has that name.
    NotFound(String),
    /// The named throttle belongs to another user.
    PermissionDenied(String),
    /// A named throttle of that name exists with another configuration.
    Mismatch(String),
    /// The wait's cancellation token fired: nothing was taken.
    Cancelled,
    /// The store that holds the throttle's state could not be reached (a
    /// store on another machine; the shared-memory store never returns
    /// it). Nothing was taken or changed, as far as this process knows.
    Unreachable(String),
    /// A keyed throttle: the key is new and its table has no room for it
    /// (every key it could replace still holds back fuel). Nothing was
    /// taken.
    NoRoom(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout => f.write_str("no fuel came before the timeout"),
            Error::Killed => {
                f.write_str("the kill flag is set: the throttle was stopped or killed")
            }
            Error::NoFuel => f.write_str("the tank is empty, or the throttle is not running"),
            Error::NotRunning => f.write_str("the throttle is not running: nothing was counted"),
            Error::Cancelled => f.write_str("the wait was cancelled by its cancellation token"),
            Error::InvalidArgument(m)
            | Error::WrongState(m)
            | Error::MonitorOff(m)
            | Error::System(m)
            | Error::Unsupported(m)
            | Error::Corrupt(m)
            | Error::NotFound(m)
            | Error::PermissionDenied(m)
            | Error::Mismatch(m)
            | Error::Unreachable(m)
            | Error::NoRoom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// The core's result type.
pub type Result<T> = std::result::Result<T, Error>;
