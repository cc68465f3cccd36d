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
//! - [`shm`]: the `#[repr(C)]` state shared between processes and its mapping.
//! - [`wait`]: sleeping on a futex word shared between processes.
//! - [`stats`] and [`monitor`]: the statistics and the thread that keeps them.
//! - [`config`], [`error`], [`process`]: validated options, the core error
//!   type, and the fork-aware process identity.
//! - [`throttle`]: the throttle itself, tying the above together, and
//!   [`cancel`]: ending one waiter's wait from another thread.
//! - [`ffi`]: the C boundary (pointer checks, status codes, panic guard).

pub mod cancel;
pub mod clock;
pub mod config;
pub mod error;
pub mod ffi;
pub mod monitor;
pub mod process;
pub mod schedule;
pub mod shm;
pub mod stats;
pub mod throttle;
pub mod wait;
