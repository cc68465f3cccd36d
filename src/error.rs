//! The core's error type. The C boundary maps each variant to a status code.

#![forbid(unsafe_code)]

use std::fmt;

/// Why a call did not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// `await_fuel`: no fuel came before the timeout.
    Timeout,
    /// The kill flag is set (by `kill` or `stop`): finish.
    Killed,
    /// `has_fuel`: the tank is empty (or the throttle is not running).
    NoFuel,
    /// `emit` while the throttle is not running.
    NotRunning,
    /// An argument is out of range or contradicts another.
    InvalidArgument(String),
    /// The call does not fit the throttle's state (e.g. start while running).
    WrongState(String),
    /// Statistics asked of a throttle without a working monitor.
    MonitorOff(String),
    /// The operating system refused (mmap, thread creation, ...).
    System(String),
    /// This machine lacks something the library needs.
    Unsupported(String),
    /// The shared state holds values no correct process writes.
    Corrupt(String),
    /// No throttle has that name.
    NotFound(String),
    /// The throttle of that name belongs to another user.
    PermissionDenied(String),
    /// A throttle of that name exists with another configuration.
    Mismatch(String),
    /// The wait's cancellation token fired: nothing was taken.
    Cancelled,
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
            Error::Cancelled => f.write_str("the wait was cancelled by its mpt_cancel"),
            Error::InvalidArgument(m)
            | Error::WrongState(m)
            | Error::MonitorOff(m)
            | Error::System(m)
            | Error::Unsupported(m)
            | Error::Corrupt(m)
            | Error::NotFound(m)
            | Error::PermissionDenied(m)
            | Error::Mismatch(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// The core's result type.
pub type Result<T> = std::result::Result<T, Error>;
