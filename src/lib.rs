//! mp_throttle: throttle and monitor many workers — threads, `fork()`ed
//! children and unrelated processes — so that together they start at most
//! `max_n` pieces of work per `per` seconds, and report how fast they went.
//!
//! The crate is a C library first (`include/mp_throttle.h`, generated from
//! [`ffi`]); the Rust modules below are its pure core, usable from Rust tests
//! and benchmarks:
//!
//! - [`schedule`]: the exact integer arithmetic of the four hardcaps.
//! - [`clock`]: `CLOCK_MONOTONIC` and a manual clock for tests.
//! - [`store`]: the store interface, where a throttle's shared state lives,
//!   and [`store::shm`], the shared-memory store: the `#[repr(C)]` state
//!   that processes share, its mapping, named objects, the change lock.
//! - [`wait`]: sleeping on a futex word shared between processes.
//! - [`stats`] and [`monitor`]: the statistics and the thread that keeps them.
//! - [`config`], [`error`], [`process`]: validated options, the core error
//!   type, and the fork-aware process identity.
//! - [`throttle`]: the waiting policy over a store (clock, spin and sleep,
//!   the monitor thread); [`keyed`]: keyed throttles, one schedule per key;
//!   and
//!   [`cancel`]: ending one waiter's wait from another thread.
//! - [`ffi`]: the C boundary (pointer checks, status codes, panic guard).
//!
//! C sees [`ffi`] alone: cbindgen reads no other module (`cbindgen:ignore`
//! below), so every constant of the header is defined there, once.
//!
//! Rust programs use [`api`], re-exported here: [`Throttle`] with
//! `Duration`s, [`Options`], [`Error`], and with the `tokio` feature
//! `until_ready().await`.

/// cbindgen:ignore
pub mod api;
/// cbindgen:ignore
pub mod cancel;
/// cbindgen:ignore
pub mod clock;
/// cbindgen:ignore
pub mod config;
/// cbindgen:ignore
pub mod error;
pub mod ffi;
/// cbindgen:ignore
pub mod keyed;
/// cbindgen:ignore
pub mod monitor;
/// cbindgen:ignore
pub mod process;
/// cbindgen:ignore
pub mod schedule;
/// cbindgen:ignore
pub mod stats;
/// cbindgen:ignore
pub mod store;
/// cbindgen:ignore
pub mod throttle;
/// cbindgen:ignore
pub mod wait;

#[cfg(feature = "redis")]
pub use api::InRedis;
pub use api::{CancelToken, Error, Grant, Hardcap, Listed, Options, Peek, Rate, Summary, Throttle};
