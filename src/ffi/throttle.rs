//! `mpt_throttle`: making, running and freeing a throttle, taking fuel,
//! emitting and the kill flag.

use super::handle::{Handle, Tagged, borrow, free, into_c};
use super::options::{MPT_OPTIONS_VERSION, MptOptions, MptOptionsV1, options_or_default};
use super::{Failure, MptStatus, guard, non_null, text, write, write_opt};
use crate::clock::monotonic_ns;
use crate::config::{self, Config};
use crate::throttle::any::AnyThrottle;
use crate::throttle::{Summary, Throttle};
use std::ffi::c_char;

/// Wait without a timeout: the `timeout_s` of `mpt_await_fuel`.
pub const MPT_FOREVER: f64 = -1.0;

/// Longest throttle name, in bytes.
pub const MPT_MAX_NAME_LEN: usize = 200;
const _: () = assert!(MPT_MAX_NAME_LEN == crate::store::shm::named::MAX_NAME_LEN);

/// What `mpt_stop` reports: mp_throttle's `stop()` tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MptSummary {
    /// Running time of all runs so far, in seconds (pauses excluded).
    pub runtime_s: f64,
    /// Emissions counted so far, by every process.
    pub total: u64,
    /// Mean seconds between emissions (0 if none).
    pub mean_seconds_between: f64,
    /// Mean emissions per second (0 if none).
    pub mean_per_second: f64,
}

impl From<Summary> for MptSummary {
    fn from(s: Summary) -> Self {
        Self {
            runtime_s: s.runtime_s,
            total: s.total,
            mean_seconds_between: s.mean_seconds_between,
            mean_per_second: s.mean_per_second,
        }
    }
}

/// A throttle handle: opaque to C.
pub struct MptThrottle(Tagged<AnyThrottle>);

impl Handle for MptThrottle {
    type Inner = AnyThrottle;
    const MAGIC: u64 = 0x6d70_745f_7468_726f; // "mpt_thro"
    const C_TYPE: &'static str = "mpt_throttle";

    fn wrap(tagged: Tagged<AnyThrottle>) -> Self {
        Self(tagged)
    }

    fn tagged(&self) -> &Tagged<AnyThrottle> {
        &self.0
    }

    fn tagged_mut(&mut self) -> &mut Tagged<AnyThrottle> {
        &mut self.0
    }
}

/// The throttle behind a handle, or `NULL_POINTER` / `BAD_HANDLE`.
///
/// # Safety
/// As [`borrow`].
pub(super) unsafe fn handle<'a>(p: *const MptThrottle) -> Result<&'a AnyThrottle, Failure> {
    // SAFETY: the caller's contract.
    unsafe { borrow(p, "throttle") }
}

/// Makes a throttle of `max_n` units of fuel per `per_s` seconds, and its
/// shared state. Nothing runs until `mpt_start`.
///
/// The shared state lives in a `MAP_SHARED` anonymous mapping: a handle made
/// before `fork()` works in every child.
///
/// - `max_n`: at least 1, at most 2^40 (at most 4194304 with
///   `MPT_HARDCAP_WINDOW`).
/// - `per_s`: finite, at least 1e-9 (1 ns; rounded to whole ns), at most
///   2^62 ns (about 146 years).
/// - `options`: NULL for the defaults, or options filled by
///   `mpt_options_init` (borrowed for the call).
/// - `out_throttle`: not NULL; receives the new handle on success, which the
///   caller owns and frees with `mpt_throttle_free` (once per process).
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_INVALID_ARGUMENT` (max_n 0, per not a finite positive number,
/// a bad option value, as_throttle and as_monitor both 0); `MPT_STATUS_SYSTEM` (no
/// memory for the mapping); `MPT_STATUS_UNSUPPORTED` (no 128-bit atomics).
///
/// Thread safety: safe. Fork safety: safe in a child (the child owns the new
/// throttle). Blocking: never. Since: 0.1.0.
///
/// # Safety
/// `options` must be NULL or valid for reading one `mpt_options`;
/// `out_throttle` NULL or valid for writing one pointer.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_throttle_new(
    max_n: u64,
    per_s: f64,
    options: *const MptOptions,
    out_throttle: *mut *mut MptThrottle,
) -> MptStatus {
    guard(|| {
        non_null(out_throttle, "out_throttle")?;
        // SAFETY: NULL or valid, per the contract.
        let options = unsafe { options_or_default(options)? };
        let throttle = Throttle::new(Config::new(max_n, per_s, &options)?)?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_throttle, into_c(AnyThrottle::from(throttle))) };
        Ok(())
    })
}

/// Creates a named throttle of `max_n` units per `per_s` seconds, which any
/// process of the same user can open with `mpt_throttle_open`, whatever
/// language it is written in and whether or not it is related to this one.
/// If a throttle of that name exists with the same configuration, opens it
/// instead: of several processes that create the same name at once, one
/// creates it and the others open it, fully initialised.
///
/// The throttle is a POSIX shared memory object (`/dev/shm/mp_throttle.<name>`,
/// mode 0600; 0660 with `options.group_shared`) whose memory is reserved at
/// creation. It lives until `mpt_throttle_unlink` removes the name and the
/// last process lets go.
///
/// An existing object is used only under the rules of `mpt_throttle_open`:
/// one of another user (root included: no exception) is refused with
/// `MPT_STATUS_PERMISSION_DENIED` unless it is group-shared and
/// `options.group_shared` is 1, and is never mapped otherwise (`/dev/shm`
/// is writable by every user: anyone may make the name first).
///
/// - `name`: not NULL; 1 to 200 bytes of UTF-8 without '/' (borrowed).
/// - `max_n`, `per_s`, `options`: as for `mpt_throttle_new`;
///   `options.group_shared` is part of the configuration (a throttle of the
///   name made with the other value is `MPT_STATUS_MISMATCH`).
/// - `out_throttle`: not NULL; receives a handle this process owns and
///   frees with `mpt_throttle_free`.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_INVALID_ARGUMENT` (a bad name, number or option);
/// `MPT_STATUS_MISMATCH` (the name exists with another configuration);
/// `MPT_STATUS_PERMISSION_DENIED` (the name belongs to another user, and
/// is not one this call may share, see `mpt_throttle_open`; the message
/// names the owner);
/// `MPT_STATUS_CORRUPT` / `MPT_STATUS_UNSUPPORTED` (the name holds something
/// else, see `mpt_throttle_open`); `MPT_STATUS_SYSTEM` (/dev/shm full, a
/// memory or file limit).
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: up to 2 s
/// while another process is still creating the same name. Since: 0.1.0.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string; `options` NULL or valid;
/// `out_throttle` NULL or valid for writing one pointer.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_throttle_create_named(
    name: *const c_char,
    max_n: u64,
    per_s: f64,
    options: *const MptOptions,
    out_throttle: *mut *mut MptThrottle,
) -> MptStatus {
    guard(|| {
        non_null(out_throttle, "out_throttle")?;
        // SAFETY: NULL or a NUL-terminated string, per the contract.
        let name = unsafe { text(name, "name")? };
        // SAFETY: NULL or valid, per the contract.
        let options = unsafe { options_or_default(options)? };
        let throttle = Throttle::create_named(name, Config::new(max_n, per_s, &options)?)?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_throttle, into_c(AnyThrottle::from(throttle))) };
        Ok(())
    })
}

/// Opens the named throttle `name`, adopting its configuration.
///
/// Whose it is, is checked first, with `fstat` on the opened object (not
/// on the path), before anything is mapped: it must belong to the caller's
/// effective uid (root included: root opening another user's throttle is
/// refused the same way) and be a regular file. Another user's throttle is
/// used only if all of these hold: the caller asks for it
/// (`options.group_shared` 1), its header says it was made group-shared
/// (`mpt_throttle_create_named` with `group_shared` 1; a chmod does not
/// make one), its mode gives its group read and write and others nothing
/// (0660), and its group is the caller's effective group or one of its
/// supplementary groups. Sharing between users is never an accident of the
/// mode: a throttle planted by another user under the name is refused, so
/// that user can never truncate it under this process (a SIGBUS).
///
/// Everything read from the shared object is checked before use: its magic
/// word, layout version, size and every value the library will use. A
/// foreign, truncated, corrupt or newer-version object gets a status, never
/// a crash or a hang.
///
/// - `name`: not NULL; as for `mpt_throttle_create_named`.
/// - `options`: may be NULL; only its `timer_slack_ns` and `spin_s` (how
///   this process waits) and `group_shared` (accept another user's
///   group-shared throttle, see above) are used; the throttle's own
///   settings are adopted.
/// - `out_throttle`: not NULL; receives a handle this process owns.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_INVALID_ARGUMENT`; `MPT_STATUS_NOT_FOUND`;
/// `MPT_STATUS_MISMATCH` (a keyed throttle has that name: open it with
/// `mpt_keyed_open`);
/// `MPT_STATUS_PERMISSION_DENIED` (another user's, not shared as above; the
/// message names the owner: uid, and user name when known);
/// `MPT_STATUS_CORRUPT` (not a throttle, not a regular file, truncated,
/// damaged, or never finished by a creator that died);
/// `MPT_STATUS_UNSUPPORTED` (made by another layout version);
/// `MPT_STATUS_SYSTEM` (a memory or file limit, or the name is taken by
/// something the system cannot open as shared memory, e.g. a directory).
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: up to 2 s
/// while another process is still creating it. Since: 0.1.0.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string; `options` NULL or valid;
/// `out_throttle` NULL or valid for writing one pointer.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_throttle_open(
    name: *const c_char,
    options: *const MptOptions,
    out_throttle: *mut *mut MptThrottle,
) -> MptStatus {
    guard(|| {
        non_null(out_throttle, "out_throttle")?;
        // SAFETY: NULL or a NUL-terminated string, per the contract.
        let name = unsafe { text(name, "name")? };
        // SAFETY: NULL or valid, per the contract.
        let options = unsafe { options_or_default(options)? };
        let throttle = Throttle::open(name, &options)?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_throttle, into_c(AnyThrottle::from(throttle))) };
        Ok(())
    })
}

/// Removes the name of a named throttle. Processes that have it open keep
/// using it; its memory is freed when the last one lets go. A later
/// `mpt_throttle_create_named` of the same name makes a new throttle.
///
/// Only the owner removes a name: the object is opened and its owner
/// checked with `fstat` first; another user's is refused (root included,
/// and a group-shared throttle's group members too). The race that
/// remains: the name is removed by name after the check, so if in between
/// the owner removes it and another user makes a new object of that name,
/// that one is removed. Only a caller the system lets remove other users'
/// files in `/dev/shm` (root, `CAP_FOWNER`) can be led to do so; for any
/// other the system refuses.
///
/// - `name`: not NULL; as for `mpt_throttle_create_named`.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_INVALID_ARGUMENT`; `MPT_STATUS_NOT_FOUND`;
/// `MPT_STATUS_PERMISSION_DENIED` (another user's; the message names the
/// owner); `MPT_STATUS_SYSTEM` (the system refused for another reason,
/// e.g. the name is taken by a directory).
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.1.0.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_throttle_unlink(name: *const c_char) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or a NUL-terminated string, per the contract.
        Ok(Throttle::unlink(unsafe { text(name, "name")? })?)
    })
}

/// Creates throttle `name` in the Redis server at `url`, or joins it if it
/// exists there with the same configuration: processes on any number of
/// hosts, each with its own handle, share one rate. The handle is an
/// `mpt_throttle` like any other, and every `mpt_` call works on it.
///
/// Every decision is made by the server, atomically (one Lua script per
/// call), on the server's clock: the hosts' clocks do not matter. A waiter
/// reserves its place in one round trip and sleeps to it here; the reply
/// says how long to wait in server time, counted from its arrival, so a
/// grant is never early in the server's time and is late by the reply's
/// one-way delay. Kill, stop, start and rate changes reach every host at
/// once (pub/sub), and are also checked at every reservation. Statistics
/// count the emissions of every host (sent every 50 ms).
///
/// What differs from a throttle in shared memory: `per_s` is a whole number
/// of microseconds, and `max_n` times `per_s` in microseconds is at most
/// 2^52; `MPT_HARDCAP_WINDOW` takes `max_n` up to 65536; units reserved
/// before a change of rate keep their times (later ones follow the new
/// rate); `mpt_lo_hi` and `mpt_hi_lo` (every host's intervals) are 300 ms
/// behind while it runs; the handle must not be used in a child of
/// `fork()` (connect again there). The README ("Many hosts") says more.
///
/// Failures close: no unit is granted without the server's decision. A
/// call that cannot reach the server tries again, with backoff, until its
/// deadline (a wait's timeout; `mpt_has_fuel` at once), then returns
/// `MPT_STATUS_UNREACHABLE`; a wait without a timeout keeps trying, and
/// can still be killed (from this process) or cancelled. When the server
/// comes back, calls work again. A server restarted empty: the first
/// process that notices makes the throttle again from its configuration,
/// running if it was; its schedule starts afresh, so no more than a full
/// tank (`LIMIT`: max_n, `ONE`: 1) or a full window goes at once.
///
/// - `url`: not NULL; `redis://[user[:password]@]host[:port][/db]`,
///   `rediss://...` (TLS: a library built with the Cargo feature `tls`), or
///   `redis+unix:///path/to/socket`. Messages show it without the password.
/// - `name`: not NULL; 1 to 200 bytes of UTF-8 without `{` or `}`. Its keys
///   are `mpt:{name}` and `mpt:{name}:w`, `mpt:{name}:e` (one hash tag:
///   one Redis Cluster slot), its channel `mpt:{name}:events`.
/// - `max_n`, `per_s`, `options`: as for `mpt_throttle_new` (and the limits
///   above); they are part of the configuration (a join with others is
///   `MPT_STATUS_MISMATCH`), except `timer_slack_ns` and `spin_s`.
/// - `out_throttle`: not NULL; receives a handle this process owns and
///   frees with `mpt_throttle_free`.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_INVALID_ARGUMENT` (a bad URL, name, number or option);
/// `MPT_STATUS_UNREACHABLE` (nothing answers at the URL, it does not
/// answer in 2 s, or what answers is not Redis; the message says which);
/// `MPT_STATUS_PERMISSION_DENIED` (the server refused the credentials);
/// `MPT_STATUS_MISMATCH` (it exists with another configuration);
/// `MPT_STATUS_CORRUPT` (its keys hold what this library does not write);
/// `MPT_STATUS_SYSTEM` (no thread for the events); `MPT_STATUS_UNSUPPORTED`
/// (a library built without the Redis store, or a `rediss://` URL and a
/// library built without TLS).
///
/// Thread safety: safe. Fork safety: connect in the process that uses the
/// handle. Blocking: up to 2 s per step while the server does not answer.
/// Since: 0.2.0.
///
/// # Safety
/// `url` and `name` must be NULL or NUL-terminated strings; `options` NULL
/// or valid; `out_throttle` NULL or valid for writing one pointer.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_throttle_connect(
    url: *const c_char,
    name: *const c_char,
    max_n: u64,
    per_s: f64,
    options: *const MptOptions,
    out_throttle: *mut *mut MptThrottle,
) -> MptStatus {
    guard(|| {
        non_null(out_throttle, "out_throttle")?;
        // SAFETY: NULL or a NUL-terminated string, per the contract.
        let url = unsafe { text(url, "url")? };
        // SAFETY: as above.
        let name = unsafe { text(name, "name")? };
        // SAFETY: NULL or valid, per the contract.
        let options = unsafe { options_or_default(options)? };
        let config = Config::new(max_n, per_s, &options)?;
        let throttle = connect(url, name, config)?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_throttle, into_c(throttle)) };
        Ok(())
    })
}

#[cfg(feature = "redis")]
fn connect(url: &str, name: &str, config: Config) -> crate::error::Result<AnyThrottle> {
    Ok(Throttle::connect(url, name, config)?.into())
}

#[cfg(not(feature = "redis"))]
fn connect(_url: &str, _name: &str, _config: Config) -> crate::error::Result<AnyThrottle> {
    Err(unsupported_redis())
}

#[cfg(not(feature = "redis"))]
pub(super) fn unsupported_redis() -> crate::error::Error {
    crate::error::Error::Unsupported(
        "this library was built without the Redis store (cargo feature `redis`)".into(),
    )
}

/// Removes throttle `name` from the Redis server at `url`. The processes
/// that use it find it killed (`MPT_STATUS_KILLED`) and do not make it
/// again; a later `mpt_throttle_connect` makes a new one.
///
/// - `url`, `name`: not NULL; as for `mpt_throttle_connect`.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_INVALID_ARGUMENT`; `MPT_STATUS_NOT_FOUND`;
/// `MPT_STATUS_UNREACHABLE`; `MPT_STATUS_PERMISSION_DENIED`;
/// `MPT_STATUS_UNSUPPORTED` (built without the Redis store).
///
/// Thread safety: safe. Fork safety: safe. Blocking: one round trip (up to
/// 2 s). Since: 0.2.0.
///
/// # Safety
/// `url` and `name` must be NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_throttle_unlink_url(
    url: *const c_char,
    name: *const c_char,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or a NUL-terminated string, per the contract.
        let url = unsafe { text(url, "url")? };
        // SAFETY: as above.
        let name = unsafe { text(name, "name")? };
        #[cfg(feature = "redis")]
        return Ok(Throttle::unlink_url(url, name)?);
        #[cfg(not(feature = "redis"))]
        {
            let _ = (url, name);
            Err(unsupported_redis().into())
        }
    })
}

/// The configuration of a throttle, as `mpt_options`: what it was made with
/// (for a throttle opened by name: its creator's options, group_shared
/// included), and this handle's own waiting preferences (timer_slack_ns,
/// spin_s). auto_emit is resolved (0 or 1, never `MPT_AUTO_EMIT_DEFAULT`).
/// The rate in force is `mpt_get_rate`'s.
///
/// - `out_options`: not NULL. Its `version` on entry says how much is
///   written: `MPT_OPTIONS_VERSION` (2; e.g. set by `mpt_options_init`)
///   gets every field, with version 2; anything else gets only the 40 bytes
///   of version 1, with version 1 (a program built against an older
///   header, whose struct is that long, did not set it). Written on
///   success only.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_options` NULL or valid
/// for reading its `version` and writing that version's struct (40 bytes
/// unless `version` is 2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_get_options(
    throttle: *const MptThrottle,
    out_options: *mut MptOptions,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let c = unsafe { handle(throttle)? }.config();
        non_null(out_options, "out_options")?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write_options(out_options, c) };
        Ok(())
    })
}

/// Whether this handle made the throttle's shared state
/// (`mpt_throttle_new`, or an `mpt_throttle_create_named` that created the
/// name) or found it made (an `mpt_throttle_create_named` that opened an
/// existing throttle of that name, `mpt_throttle_open`): a creator usually
/// owns the name's removal.
///
/// - `out_created`: not NULL.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child (a child's copy of
/// the handle answers as the parent's). Blocking: never. Since: 0.2.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_created` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_throttle_created(
    throttle: *const MptThrottle,
    out_created: *mut bool,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let created = unsafe { handle(throttle)? }.created();
        non_null(out_created, "out_created")?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_created, created) };
        Ok(())
    })
}

/// Releases this process's handle. NULL is a no-op.
///
/// The shared state lives on while any other process (a forked child) still
/// uses it. Freeing does not stop the throttle: a running throttle keeps
/// rationing fuel for the other processes. If this process runs its monitor
/// thread (it called `mpt_start`), that thread ends here, and the other
/// processes' statistics calls then return `MPT_STATUS_MONITOR_OFF`: stop the
/// throttle first to keep the statistics of the whole run.
///
/// - `throttle`: NULL, or a handle from `mpt_throttle_new`; invalid after
///   the call. Free each handle exactly once per process (a forked child
///   that wants to release its copy frees it in the child too).
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_BAD_HANDLE` (caught best-effort for
/// a handle already freed).
///
/// Thread safety: not with any other call on the same handle; the caller
/// must ensure no other thread uses it. Fork safety: safe in a child.
/// Blocking: never. Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle that no other thread uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_throttle_free(throttle: *mut MptThrottle) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or a live handle that no other thread uses (the
        // contract).
        unsafe { free(throttle, "throttle") }
    })
}

/// Starts (or resumes) the throttle: clears the kill flag, opens the tank
/// and, with as_monitor, starts the monitor thread in the calling process.
///
/// The tank starts empty: its first unit is there at once, then one every
/// T. A resume (a start after `mpt_stop`) is no way around the rate: the
/// bounded hardcaps keep every promise across the pause (LIMIT counts the
/// grants before the stop in its bucket, ONE waits T after the last grant,
/// WINDOW keeps its window), so a unit may come later than at once; NONE
/// carries its backlog over. Units reserved by waiters that the stop told
/// "killed" are given back.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`; `MPT_STATUS_WRONG_STATE` (already running, or
/// another process is starting or stopping it); `MPT_STATUS_SYSTEM` (no
/// thread could be started, or another process has held the change lock
/// for 200 ms without dying, e.g. stopped in a debugger; the throttle stays
/// stopped); `MPT_STATUS_CORRUPT` (the shared run state holds a value no
/// process of this library writes; nothing is changed).
///
/// Thread safety: safe; of concurrent starts one succeeds.
/// Fork safety: safe in a child; the monitor then runs in the child.
/// Blocking: never. Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_start(throttle: *const MptThrottle) -> MptStatus {
    // SAFETY: NULL or live, per the contract.
    guard(|| Ok(unsafe { handle(throttle)? }.start()?))
}

/// Stops (pauses) the throttle: sets the kill flag, wakes every waiter in
/// every process (each returns `MPT_STATUS_KILLED`), ends the monitor thread
/// and reports the totals. Runtime and totals carry over a later
/// `mpt_start`: stop/start is pause/resume, as in mp_throttle.
///
/// - `out_summary`: may be NULL; receives runtime, total emissions, mean
///   time between emissions and mean emissions per second.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER` (throttle);
/// `MPT_STATUS_BAD_HANDLE`; `MPT_STATUS_WRONG_STATE` (not running: never
/// started, or stopped already); `MPT_STATUS_CORRUPT` (the shared run state
/// holds a value no process of this library writes; nothing is changed).
///
/// Thread safety: safe; of concurrent stops one succeeds.
/// Fork safety: safe in a child: the monitor thread, in the process that
/// started the run, ends by itself within one refresh interval.
/// Blocking: joins this process's monitor thread (about a millisecond).
/// Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_summary` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_stop(
    throttle: *const MptThrottle,
    out_summary: *mut MptSummary,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let summary = unsafe { handle(throttle)? }.stop()?;
        // SAFETY: NULL or valid, per the contract.
        unsafe { write_opt(out_summary, summary.into()) };
        Ok(())
    })
}

/// Blocks until a unit of fuel is granted, the timeout passes, or the kill
/// flag is set.
///
/// Waiters are served first come, first served: each reserves its unit on
/// arrival and sleeps to its grant time. Before `mpt_start` (and while
/// stopped without the kill flag) it waits for the start. With auto_emit,
/// the unit counts as one emission at its grant time.
///
/// - `timeout_s`: seconds to wait at most, finite and >= 0 (0: do not
///   sleep), or `MPT_FOREVER`. A waiter whose unit would come only after its
///   timeout reserves nothing and returns `MPT_STATUS_TIMEOUT` when the
///   timeout passes (earlier `MPT_STATUS_KILLED` if stopped or killed).
///   `MPT_STATUS_TIMEOUT` comes at the deadline, never before: a sleeping
///   waiter whose grant a rate change moves past its deadline gives its
///   unit back at once (the waiters behind it move up) and waits on, as a
///   new arrival, in case a later change lets it through.
/// - `out_grant_ns`: may be NULL; receives the grant time, in
///   `CLOCK_MONOTONIC` nanoseconds (see `mpt_clock_now`): the instant the
///   library decided this waiter may go. It returns at or just after it.
///
/// Returns: `MPT_STATUS_OK` (a unit was taken); `MPT_STATUS_TIMEOUT`;
/// `MPT_STATUS_KILLED` (nothing taken: finish); `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`; `MPT_STATUS_INVALID_ARGUMENT` (NaN, infinite,
/// or negative timeout other than `MPT_FOREVER`); `MPT_STATUS_CORRUPT`.
///
/// Thread safety: safe from any number of threads and processes.
/// Fork safety: safe in a child. Blocking: yes, on a futex shared between
/// processes with an absolute deadline; woken at once by `mpt_kill`,
/// `mpt_stop` and `mpt_start` from any process. Not a cancellation point:
/// a thread cancelled with `pthread_cancel` meanwhile waits on until the
/// call returns (end one wait with `mpt_await_fuel_cancellable` and
/// `mpt_cancel_fire`, every wait with `mpt_kill`). Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_grant_ns` NULL or valid.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_await_fuel(
    throttle: *const MptThrottle,
    timeout_s: f64,
    out_grant_ns: *mut i64,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let throttle = unsafe { handle(throttle)? };
        let timeout = config::timeout_ns(timeout_s)?;
        let grant = throttle.await_fuel(timeout)?;
        // SAFETY: NULL or valid, per the contract.
        unsafe { write_opt(out_grant_ns, grant) };
        Ok(())
    })
}

/// Takes a unit of fuel if the tank holds one now; never blocks. With
/// auto_emit, the unit counts as one emission.
///
/// - `out_grant_ns`: may be NULL; receives the grant time (now), in
///   `CLOCK_MONOTONIC` nanoseconds.
///
/// Returns: `MPT_STATUS_OK` (a unit was taken); `MPT_STATUS_NO_FUEL` (the
/// tank is empty, or not started: nothing taken); `MPT_STATUS_KILLED`;
/// `MPT_STATUS_NULL_POINTER`; `MPT_STATUS_BAD_HANDLE`; `MPT_STATUS_CORRUPT`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never; no
/// system call. Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_grant_ns` NULL or valid.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_has_fuel(
    throttle: *const MptThrottle,
    out_grant_ns: *mut i64,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let grant = unsafe { handle(throttle)? }.has_fuel()?;
        // SAFETY: NULL or valid, per the contract.
        unsafe { write_opt(out_grant_ns, grant) };
        Ok(())
    })
}

/// As `mpt_await_fuel`, for `n` units of fuel granted all at once
/// (bandwidth-style throttling: `n` bytes of a budget of max_n bytes per
/// `per`). Waiters keep their order whatever their `n`. With auto_emit, the
/// `n` units count as one emission.
///
/// A sleeping waiter follows every `mpt_set_rate` at once, keeping its
/// place however many changes it sleeps through; if a change moves its
/// grant past its timeout, it gives its units back (every waiter behind it
/// moves up) and waits on as a new arrival until its timeout: a waiter that
/// times out or is killed takes nothing.
///
/// - `n`: at least 1, at most what the tank can ever hold at the current
///   rate: max_n for `MPT_HARDCAP_LIMIT` and `MPT_HARDCAP_WINDOW`, 1 for
///   `MPT_HARDCAP_ONE`, any for `MPT_HARDCAP_NONE`.
/// - `timeout_s`, `out_grant_ns`: as for `mpt_await_fuel`.
///
/// Returns: as `mpt_await_fuel`; `MPT_STATUS_INVALID_ARGUMENT` also for an
/// `n` of 0 or more than the tank holds (it could never be granted), and
/// when a rate change leaves the tank too small for `n` while the waiter
/// sleeps (it gives its units back: nothing is taken).
///
/// Thread safety, fork safety, blocking: as `mpt_await_fuel`. Since: 0.2.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_grant_ns` NULL or valid.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_await_fuel_n(
    throttle: *const MptThrottle,
    n: u64,
    timeout_s: f64,
    out_grant_ns: *mut i64,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let throttle = unsafe { handle(throttle)? };
        let timeout = config::timeout_ns(timeout_s)?;
        let grant = throttle.await_fuel_n(n, timeout)?;
        // SAFETY: NULL or valid, per the contract.
        unsafe { write_opt(out_grant_ns, grant) };
        Ok(())
    })
}

/// As `mpt_has_fuel`, for `n` units taken all at once if the tank holds
/// them now; never blocks.
///
/// Returns: as `mpt_has_fuel`; `MPT_STATUS_INVALID_ARGUMENT` for `n` as in
/// `mpt_await_fuel_n`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_grant_ns` NULL or valid.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_has_fuel_n(
    throttle: *const MptThrottle,
    n: u64,
    out_grant_ns: *mut i64,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let grant = unsafe { handle(throttle)? }.has_fuel_n(n)?;
        // SAFETY: NULL or valid, per the contract.
        unsafe { write_opt(out_grant_ns, grant) };
        Ok(())
    })
}

/// Looks at the tank without taking anything: how many units it holds now,
/// and how long until `n` units would be granted to a waiter arriving now
/// (waiters already queued come first).
///
/// - `n`: as for `mpt_await_fuel_n`.
/// - `out_level`: may be NULL; units in the tank now (`UINT64_MAX` without
///   as_throttle: fuel is always there).
/// - `out_wait_s`: may be NULL; seconds until `n` units (0: now).
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_KILLED` (the kill flag is set: no
/// fuel is handed out); `MPT_STATUS_NOT_RUNNING` (not started: no fuel
/// accrues); `MPT_STATUS_NULL_POINTER`; `MPT_STATUS_BAD_HANDLE`;
/// `MPT_STATUS_INVALID_ARGUMENT` (`n`); `MPT_STATUS_SYSTEM` (a change of
/// rate by another process has been under way for 200 ms, e.g. that
/// process is stopped in a debugger: try again); `MPT_STATUS_CORRUPT`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never; no
/// system call. Since: 0.2.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; each out pointer NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_peek_fuel(
    throttle: *const MptThrottle,
    n: u64,
    out_level: *mut u64,
    out_wait_s: *mut f64,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let (level, wait_ns) = unsafe { handle(throttle)? }.peek(n)?;
        // SAFETY: NULL or valid, per the contract (both).
        unsafe { write_opt(out_level, level) };
        // SAFETY: as above.
        unsafe { write_opt(out_wait_s, wait_ns as f64 / 1e9) };
        Ok(())
    })
}

/// Changes the rate of a throttle to `max_n` units per `per_s` seconds,
/// from now on, for every process that shares it, running or not.
///
/// Sleeping waiters, in every process, are rescheduled at once at the new
/// rate, in the order they had, and the change never lets through a burst
/// that the new rate forbids. Changes may come as often as they like, from
/// one process or several: no waiter loses its place, and the grants in
/// any stretch of time are at least what the slowest rate in force during
/// it allows, less one.
/// - `MPT_HARDCAP_LIMIT`, `_ONE`, `_NONE`: the queue is respaced at the new
///   rate (each unit keeps its place counted in periods: a unit carried
///   through changes is granted at most 1 ns, and one grid step of
///   `1/per_ns` of a period per change, after the exact time, never
///   before); fuel in the tank is kept up to what the new tank holds.
/// - `MPT_HARDCAP_WINDOW`: the grants made before the change count in the
///   new window; units reserved for after it are taken back, and their
///   waiters reserve again under the new rate in their old order (one whose
///   place before it is empty, because that waiter timed out or died, waits
///   up to 2 ms for it). `max_n` may grow to the number of grant times the
///   throttle keeps, `max(max_n as made, MPT_WINDOW_MIN_RING)`. If more
///   units wait than it keeps, those it no longer holds count as granted at
///   the change: the first grants after it may then be up to one new period
///   late, never early.
///
/// A waiter whose new grant falls after its timeout gives its units back
/// and waits on until its timeout (see `mpt_await_fuel`); one waiting for
/// more units than the new tank holds returns
/// `MPT_STATUS_INVALID_ARGUMENT`, having taken nothing.
/// The configuration a named throttle was created with (what
/// `mpt_throttle_create_named` compares) is not changed; `mpt_get_rate`
/// reads the rate in force.
///
/// - `max_n`, `per_s`: as for `mpt_throttle_new`.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`; `MPT_STATUS_INVALID_ARGUMENT` (also a `WINDOW`
/// `max_n` beyond the grant times it keeps); `MPT_STATUS_SYSTEM` (another
/// process held the change lock for 200 ms without dying, e.g. stopped in
/// a debugger: try again); `MPT_STATUS_CORRUPT`.
///
/// Thread safety: safe from any thread and process. Fork safety: safe in a
/// child. Blocking: for microseconds, on a lock that a dead holder cannot
/// keep. Since: 0.2.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_set_rate(
    throttle: *const MptThrottle,
    max_n: u64,
    per_s: f64,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let throttle = unsafe { handle(throttle)? };
        let per_ns = config::seconds_to_ns("per", per_s)?;
        throttle.set_rate(max_n, per_ns)?;
        Ok(())
    })
}

/// The rate in force: the one the throttle was made with, or the last
/// `mpt_set_rate` from any process.
///
/// - `out_max_n`, `out_per_s`: may be NULL.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`; `MPT_STATUS_CORRUPT`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; each out pointer NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_get_rate(
    throttle: *const MptThrottle,
    out_max_n: *mut u64,
    out_per_s: *mut f64,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let (max_n, per_ns) = unsafe { handle(throttle)? }.rate()?;
        // SAFETY: NULL or valid, per the contract (both).
        unsafe { write_opt(out_max_n, max_n) };
        // SAFETY: as above.
        unsafe { write_opt(out_per_s, per_ns as f64 / 1e9) };
        Ok(())
    })
}

/// Counts one emission now. For throttles made with auto_emit 0.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_WRONG_STATE` (auto_emit is on);
/// `MPT_STATUS_NOT_RUNNING` (not started: nothing counted);
/// `MPT_STATUS_KILLED` (stopped or killed: nothing counted);
/// `MPT_STATUS_NULL_POINTER`; `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never; no
/// system call. Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_emit(throttle: *const MptThrottle) -> MptStatus {
    // SAFETY: NULL or live, per the contract.
    guard(|| Ok(unsafe { handle(throttle)? }.emit(None)?))
}

/// Counts one emission at the caller's timestamp (mp_throttle's
/// `emit(timestamp)`). For throttles made with auto_emit 0.
///
/// - `timestamp_ns`: `CLOCK_MONOTONIC` nanoseconds (see `mpt_clock_now`),
///   >= 0.
///
/// Returns: as `mpt_emit`, and `MPT_STATUS_INVALID_ARGUMENT` for a negative
/// timestamp.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_emit_at(throttle: *const MptThrottle, timestamp_ns: i64) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let throttle = unsafe { handle(throttle)? };
        if timestamp_ns < 0 {
            return Err(Failure::invalid(format!(
                "timestamp_ns must be CLOCK_MONOTONIC nanoseconds >= 0 (got {timestamp_ns})"
            )));
        }
        Ok(throttle.emit(Some(timestamp_ns))?)
    })
}

/// Sets the kill flag: every waiter in every process returns
/// `MPT_STATUS_KILLED` at once, and so does every later call that takes
/// fuel, until the next `mpt_start`. The throttle stays running (its runtime
/// counts) until `mpt_stop`.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child (a child can stop the
/// whole group). Blocking: never; one system call only if someone sleeps.
/// Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_kill(throttle: *const MptThrottle) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        unsafe { handle(throttle)? }.kill();
        Ok(())
    })
}

/// Whether the kill flag is set (mp_throttle's `kill_flag.is_set()`).
///
/// - `out_is_set`: not NULL; receives true or false.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_is_set` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_kill_flag_is_set(
    throttle: *const MptThrottle,
    out_is_set: *mut bool,
) -> MptStatus {
    guard(|| {
        non_null(out_is_set, "out_is_set")?;
        // SAFETY: NULL or live, per the contract.
        let set = unsafe { handle(throttle)? }.kill_flag_is_set();
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_is_set, set) };
        Ok(())
    })
}

/// Whether the throttle is running (started and not stopped).
///
/// - `out_is_running`: not NULL; receives true or false.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.1.0.
///
/// # Safety
/// `throttle` must be NULL or a live handle; `out_is_running` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_is_running(
    throttle: *const MptThrottle,
    out_is_running: *mut bool,
) -> MptStatus {
    guard(|| {
        non_null(out_is_running, "out_is_running")?;
        // SAFETY: NULL or live, per the contract.
        let running = unsafe { handle(throttle)? }.is_running();
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_is_running, running) };
        Ok(())
    })
}

/// The current time of the library's clock, `CLOCK_MONOTONIC`, in
/// nanoseconds: the clock of grant times and of `mpt_emit_at`.
///
/// - `out_ns`: not NULL; receives the time.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.1.0.
///
/// # Safety
/// `out_ns` must be NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_clock_now(out_ns: *mut i64) -> MptStatus {
    guard(|| {
        non_null(out_ns, "out_ns")?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_ns, monotonic_ns()) };
        Ok(())
    })
}

// The ABI of the structs C sees; tests/c checks the same sizes with
// _Static_assert.
const _: () = assert!(size_of::<MptSummary>() == 32 && align_of::<MptSummary>() == 8);

/// Writes `c` as `mpt_options` into `out`, in the version `out` asks for
/// (see `mpt_get_options`).
///
/// # Safety
/// `out` must be non-NULL and valid for reading its `version` and writing
/// that version's struct (40 bytes unless `version` is 2).
pub(super) unsafe fn write_options(out: *mut MptOptions, c: &Config) {
    let options = MptOptions {
        version: MPT_OPTIONS_VERSION,
        as_throttle: c.as_throttle.into(),
        as_monitor: c.as_monitor.into(),
        auto_emit: c.auto_emit.into(),
        hardcap: c.schedule.hardcap() as u32,
        timer_slack_ns: u32::try_from(c.timer_slack_ns).unwrap_or(u32::MAX),
        refresh_s: c.refresh_ns as f64 / 1e9,
        spin_s: c.spin_ns as f64 / 1e9,
        group_shared: c.group_shared.into(),
    };
    // SAFETY: the version field is readable per the contract. A volatile
    // read: a program built against an older header may not have set it
    // (any value but 2 means version 1).
    let asked = unsafe { std::ptr::read_volatile(out.cast::<u32>()) };
    if asked == MPT_OPTIONS_VERSION {
        // SAFETY: a version-2 struct per the contract.
        unsafe { write(out, options) };
    } else {
        // SAFETY: valid for the 40 bytes of version 1 per the contract.
        unsafe { write(out.cast(), MptOptionsV1::from(options)) };
    }
}
