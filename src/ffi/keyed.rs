//! `mpt_keyed`: keyed throttles, one schedule per key (a host, a user), in
//! one throttle that every process shares.

use super::cancel::{MptCancel, token};
use super::handle::{Handle, Tagged, borrow, free, into_c};
use super::options::{MptOptions, options_or_default};
use super::stats::MptRate;
use super::throttle::MptSummary;
use super::{Failure, MptStatus, guard, non_null, text, write, write_opt};
use crate::config::{self, Config};
use crate::error::Result;
use crate::keyed::{AnyKeyed, Keyed};
use crate::stats::RatePair;
use std::ffi::{c_char, c_void};

/// Longest key of a keyed throttle, in bytes.
pub const MPT_KEY_MAX: usize = 128;
const _: () = assert!(MPT_KEY_MAX == crate::keyed::KEY_MAX);

/// Most keys a keyed throttle holds (its `capacity`).
pub const MPT_KEYED_MAX_CAPACITY: u64 = 1 << 26;
const _: () = assert!(MPT_KEYED_MAX_CAPACITY == crate::store::shm::keys::MAX_KEYS);

/// Largest `max_n` of a keyed throttle.
pub const MPT_KEYED_MAX_N: u64 = 1 << 24;
const _: () = assert!(MPT_KEYED_MAX_N == crate::schedule::key::KEYED_MAX_N);

/// Largest `max_n` of a keyed throttle with `MPT_HARDCAP_WINDOW`.
pub const MPT_KEYED_MAX_WINDOW: u64 = 1 << 16;
const _: () = assert!(MPT_KEYED_MAX_WINDOW == crate::schedule::key::KEYED_MAX_WINDOW);

/// What `mpt_keyed_get_stats` reports of the whole keyed throttle.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MptKeyedStats {
    /// Keys in the table now.
    pub live_keys: u64,
    /// The most keys the table holds (as made).
    pub capacity: u64,
    /// Idle keys dropped to make room for new ones, ever.
    pub evictions: u64,
    /// Keys added to the table, ever (a key dropped and used again counts
    /// twice).
    pub added: u64,
    /// As `mpt_get_summary`, over every key.
    pub summary: MptSummary,
}

/// What `mpt_keyed_key_stats` reports of one key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MptKeyStats {
    /// 1 if the key is in the table; 0 if not (never used, forgotten, or
    /// dropped once idle), and then the other fields are 0.
    pub in_table: u32,
    /// Units of fuel taken from the key since it was added to the table:
    /// granted, or reserved by a waiter still asleep, or by one whose wait
    /// a stop, kill or cancel ended when its units could not be given back
    /// (see `mpt_keyed_await_fuel`).
    pub granted: u64,
    /// When it was added, in `CLOCK_MONOTONIC` nanoseconds.
    pub since_ns: i64,
}

/// A keyed throttle handle: opaque to C.
pub struct MptKeyed(Tagged<AnyKeyed>);

impl Handle for MptKeyed {
    type Inner = AnyKeyed;
    const MAGIC: u64 = 0x6d70_745f_6b65_7964; // "mpt_keyd"
    const C_TYPE: &'static str = "mpt_keyed";

    fn wrap(tagged: Tagged<AnyKeyed>) -> Self {
        Self(tagged)
    }

    fn tagged(&self) -> &Tagged<AnyKeyed> {
        &self.0
    }

    fn tagged_mut(&mut self) -> &mut Tagged<AnyKeyed> {
        &mut self.0
    }
}

/// The keyed throttle behind a handle.
///
/// # Safety
/// As [`borrow`].
unsafe fn keyed<'a>(p: *const MptKeyed) -> std::result::Result<&'a AnyKeyed, Failure> {
    // SAFETY: the caller's contract.
    unsafe { borrow(p, "keyed") }
}

/// The bytes of a key C passed.
///
/// # Safety
/// `key` must be NULL (with `key_len` 0) or valid for reading `key_len`
/// bytes for the call.
unsafe fn key_bytes<'a>(
    key: *const c_void,
    key_len: usize,
) -> std::result::Result<&'a [u8], Failure> {
    if key_len == 0 {
        return Ok(&[]);
    }
    non_null(key, "key")?;
    // Before the slice is made: no slice may span more than isize::MAX.
    if key_len > MPT_KEY_MAX {
        return Err(crate::store::shm::keys::too_long(key_len).into());
    }
    // SAFETY: non-NULL and valid for key_len bytes per the contract.
    Ok(unsafe { std::slice::from_raw_parts(key.cast::<u8>(), key_len) })
}

/// Makes a keyed throttle: one configuration, and a table of up to
/// `capacity` keys, each with a schedule of its own of `max_n` units per
/// `per_s` seconds, with every guarantee of its hardcap holding per key.
/// Nothing runs until `mpt_keyed_start`. The state lives in an anonymous
/// `MAP_SHARED` mapping, made whole at once (about `1.25 * capacity`
/// slots, rounded up to a power of two, of 192 bytes each, plus 16 bytes
/// per grant time a `MPT_HARDCAP_WINDOW` key keeps): a handle made before
/// `fork()` works in every child.
///
/// Keys are byte strings of 0 to `MPT_KEY_MAX` bytes (NUL bytes included).
/// A key never seen counts as idle for ever: its tank is full (max_n units
/// for LIMIT, 1 for ONE), its window empty (WINDOW), so the first request
/// of a new key goes at once; NONE counts a key's units from its first use
/// (at most `1 + (t - first use)/T` by time t).
///
/// The eviction rule. A key is dropped from the table only when it behaves
/// exactly like a key never seen: its tank full again (LIMIT, ONE), no
/// grant in the last `per` (WINDOW), its units not ahead of its schedule
/// (NONE: what it banked is dropped, which only lowers what it may take;
/// its guarantee counted from its first use holds across the drop). A key
/// that still holds back fuel (waiters queued, or a tank not yet full) is
/// never dropped. Keys are dropped only to make room for a new key: when
/// the table holds `capacity` keys, or when the 32 slots the new key may go
/// in are all taken. If no key there may be dropped, the call for the new
/// key returns `MPT_STATUS_NO_ROOM` and takes nothing.
///
/// - `max_n`: 1 to `MPT_KEYED_MAX_N` (`MPT_KEYED_MAX_WINDOW` with WINDOW).
/// - `per_s`: as for `mpt_throttle_new`.
/// - `capacity`: 1 to `MPT_KEYED_MAX_CAPACITY` keys.
/// - `options`: NULL or filled by `mpt_options_init`; `as_throttle` must
///   be 1. With auto_emit (the default), each grant counts one emission of
///   the whole keyed throttle.
/// - `out_keyed`: not NULL; receives the handle, freed with
///   `mpt_keyed_free`.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_INVALID_ARGUMENT` (a number or option out of range);
/// `MPT_STATUS_SYSTEM` (no memory); `MPT_STATUS_UNSUPPORTED`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
///
/// # Safety
/// `options` must be NULL or valid; `out_keyed` NULL or valid for writing
/// one pointer.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_new(
    max_n: u64,
    per_s: f64,
    capacity: u64,
    options: *const MptOptions,
    out_keyed: *mut *mut MptKeyed,
) -> MptStatus {
    guard(|| {
        non_null(out_keyed, "out_keyed")?;
        // SAFETY: NULL or valid, per the contract.
        let options = unsafe { options_or_default(options)? };
        let k = Keyed::new(Config::keyed(max_n, per_s, capacity, &options)?)?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_keyed, into_c(AnyKeyed::Shm(k))) };
        Ok(())
    })
}

/// Creates the named keyed throttle `name` (as `mpt_keyed_new`), which any
/// process of the same user opens with `mpt_keyed_open`; or opens it if it
/// exists with the same configuration (capacity included). Named keyed
/// throttles share the namespace of named throttles, and follow the same
/// rules of ownership and group sharing (see `mpt_throttle_create_named`);
/// `mpt_throttle_unlink` removes one.
///
/// Returns: as `mpt_throttle_create_named` (`MPT_STATUS_MISMATCH` also
/// for a plain throttle of that name).
///
/// Thread safety, fork safety, blocking: as `mpt_throttle_create_named`.
/// Since: 0.2.0.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string; `options` NULL or valid;
/// `out_keyed` NULL or valid for writing one pointer.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_create_named(
    name: *const c_char,
    max_n: u64,
    per_s: f64,
    capacity: u64,
    options: *const MptOptions,
    out_keyed: *mut *mut MptKeyed,
) -> MptStatus {
    guard(|| {
        non_null(out_keyed, "out_keyed")?;
        // SAFETY: NULL or a NUL-terminated string, per the contract.
        let name = unsafe { text(name, "name")? };
        // SAFETY: NULL or valid, per the contract.
        let options = unsafe { options_or_default(options)? };
        let config = Config::keyed(max_n, per_s, capacity, &options)?;
        let k = Keyed::create_named(name, config)?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_keyed, into_c(AnyKeyed::Shm(k))) };
        Ok(())
    })
}

/// Opens the named keyed throttle `name`, adopting its configuration,
/// under the rules of `mpt_throttle_open`.
///
/// Returns: as `mpt_throttle_open`; `MPT_STATUS_MISMATCH` for a plain
/// throttle of that name.
///
/// Thread safety, fork safety, blocking: as `mpt_throttle_open`.
/// Since: 0.2.0.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string; `options` NULL or valid;
/// `out_keyed` NULL or valid for writing one pointer.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_open(
    name: *const c_char,
    options: *const MptOptions,
    out_keyed: *mut *mut MptKeyed,
) -> MptStatus {
    guard(|| {
        non_null(out_keyed, "out_keyed")?;
        // SAFETY: NULL or a NUL-terminated string, per the contract.
        let name = unsafe { text(name, "name")? };
        // SAFETY: NULL or valid, per the contract.
        let options = unsafe { options_or_default(options)? };
        let k = Keyed::open(name, &options)?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_keyed, into_c(AnyKeyed::Shm(k))) };
        Ok(())
    })
}

/// Creates keyed throttle `name` in the Redis server at `url`, or joins it
/// if it exists there with the same configuration: processes on any number
/// of hosts share each key's schedule, as `mpt_throttle_connect` shares a
/// plain throttle's (its notes on URLs, clocks, rates and `fork()` hold
/// here too). The handle is an `mpt_keyed` like any other.
///
/// Each key is a Redis key of the throttle's hash tag, with an expiry at
/// the instant the key is idle again (its tank full, its window empty;
/// NONE: not ahead of its schedule), so Redis forgets idle keys by itself:
/// there is no capacity and never `MPT_STATUS_NO_ROOM` (`mpt_keyed_stats`
/// reports a `capacity` of 0, and `evictions` counts the keys that went
/// idle). Every reservation is one round trip (no batches). Units given
/// back (a cancelled or killed waiter) go back only if nothing was reserved
/// on the key after them, and never with WINDOW.
///
/// - `url`, `name`, `max_n`, `per_s`, `options`: as for
///   `mpt_throttle_connect`; `max_n` at most `MPT_KEYED_MAX_N`.
/// - `out_keyed`: not NULL; receives the handle, freed with
///   `mpt_keyed_free`.
///
/// Returns: as `mpt_throttle_connect` (`MPT_STATUS_MISMATCH` also for a
/// plain throttle of that name).
///
/// Thread safety: safe. Fork safety: as `mpt_throttle_connect`. Blocking:
/// as `mpt_throttle_connect`. Since: 0.2.0.
///
/// # Safety
/// `url` and `name` must be NULL or NUL-terminated strings; `options` NULL
/// or valid; `out_keyed` NULL or valid for writing one pointer.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_connect(
    url: *const c_char,
    name: *const c_char,
    max_n: u64,
    per_s: f64,
    options: *const MptOptions,
    out_keyed: *mut *mut MptKeyed,
) -> MptStatus {
    guard(|| {
        non_null(out_keyed, "out_keyed")?;
        // SAFETY: NULL or a NUL-terminated string, per the contract (both).
        let url = unsafe { text(url, "url")? };
        // SAFETY: as above.
        let name = unsafe { text(name, "name")? };
        // SAFETY: NULL or valid, per the contract.
        let options = unsafe { options_or_default(options)? };
        let config = Config::keyed_remote(max_n, per_s, &options)?;
        let k = connect(url, name, config)?;
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_keyed, into_c(k)) };
        Ok(())
    })
}

#[cfg(feature = "redis")]
fn connect(url: &str, name: &str, config: Config) -> Result<AnyKeyed> {
    Ok(AnyKeyed::Redis(Keyed::connect(url, name, config)?))
}

#[cfg(not(feature = "redis"))]
fn connect(_url: &str, _name: &str, _config: Config) -> Result<AnyKeyed> {
    Err(super::throttle::unsupported_redis())
}

/// Frees a keyed throttle handle (as `mpt_throttle_free`).
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: not with any other call on the same handle. Fork safety:
/// safe in a child. Blocking: never. Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle that no other thread uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_free(keyed: *mut MptKeyed) -> MptStatus {
    // SAFETY: NULL or a live handle that no other thread uses (the contract).
    guard(|| unsafe { free(keyed, "keyed") })
}

/// Starts (or resumes) the whole keyed throttle, as `mpt_start`. Keys keep
/// their schedules across a stop and a start.
///
/// Returns: as `mpt_start`.
///
/// Thread safety, fork safety, blocking: as `mpt_start`. Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_start(keyed: *const MptKeyed) -> MptStatus {
    // SAFETY: NULL or live, per the contract.
    guard(|| Ok(unsafe { self::keyed(keyed)? }.start()?))
}

/// Stops (pauses) the whole keyed throttle, as `mpt_stop`: every waiter on
/// every key returns `MPT_STATUS_KILLED`.
///
/// Returns: as `mpt_stop`.
///
/// Thread safety, fork safety, blocking: as `mpt_stop`. Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `out_summary` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_stop(
    keyed: *const MptKeyed,
    out_summary: *mut MptSummary,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let summary = unsafe { self::keyed(keyed)? }.stop()?;
        // SAFETY: NULL or valid, per the contract.
        unsafe { write_opt(out_summary, summary.into()) };
        Ok(())
    })
}

/// Sets the kill flag of the whole keyed throttle, as `mpt_kill`.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_kill(keyed: *const MptKeyed) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        unsafe { self::keyed(keyed)? }.kill();
        Ok(())
    })
}

/// Whether the keyed throttle runs (started, not stopped).
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `out_is_running` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_is_running(
    keyed: *const MptKeyed,
    out_is_running: *mut bool,
) -> MptStatus {
    // SAFETY: the caller's contract is this function's.
    unsafe {
        read_flag(
            keyed,
            out_is_running,
            "out_is_running",
            AnyKeyed::is_running,
        )
    }
}

/// The body of the calls that read one flag.
///
/// # Safety
/// `keyed` NULL or live, `out` NULL or valid.
unsafe fn read_flag(
    keyed: *const MptKeyed,
    out: *mut bool,
    what: &'static str,
    flag: fn(&AnyKeyed) -> bool,
) -> MptStatus {
    guard(|| {
        non_null(out, what)?;
        // SAFETY: NULL or live, per the caller's contract.
        let set = flag(unsafe { self::keyed(keyed)? });
        // SAFETY: checked non-NULL; valid per the caller's contract.
        unsafe { write(out, set) };
        Ok(())
    })
}

/// Whether the kill flag of the keyed throttle is set.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `out_is_set` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_kill_flag_is_set(
    keyed: *const MptKeyed,
    out_is_set: *mut bool,
) -> MptStatus {
    // SAFETY: the caller's contract is this function's.
    unsafe { read_flag(keyed, out_is_set, "out_is_set", AnyKeyed::kill_flag_is_set) }
}

/// The configuration of a keyed throttle: what it was made with (for one
/// opened by name or joined in Redis: its creator's), and this handle's own
/// waiting preferences, as `mpt_get_options` gives a plain throttle's; and
/// whether this handle made it.
///
/// - `out_options`: may be NULL; as for `mpt_get_options`.
/// - `out_max_n`, `out_per_s`: may be NULL; the rate of each key.
/// - `out_capacity`: may be NULL; the most keys (0 in Redis: no bound).
/// - `out_created`: may be NULL; whether this handle made the throttle
///   (`mpt_keyed_new`; a create or connect that made the name) rather than
///   opened or joined one.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `out_options` NULL or as for
/// `mpt_get_options`; every other out pointer NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_get_config(
    keyed: *const MptKeyed,
    out_options: *mut MptOptions,
    out_max_n: *mut u64,
    out_per_s: *mut f64,
    out_capacity: *mut u64,
    out_created: *mut bool,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let k = unsafe { self::keyed(keyed)? };
        let c = k.config();
        if !out_options.is_null() {
            // SAFETY: non-NULL, and as for mpt_get_options per the contract.
            unsafe { super::throttle::write_options(out_options, c) };
        }
        let rate = c.schedule.rate();
        let capacity = if c.key_geometry().is_some() {
            c.keys
        } else {
            0
        };
        // SAFETY: NULL or valid, per the contract (each).
        unsafe { write_opt(out_max_n, rate.max_n()) };
        // SAFETY: as above.
        unsafe { write_opt(out_per_s, rate.per_ns() as f64 / 1e9) };
        // SAFETY: as above.
        unsafe { write_opt(out_capacity, capacity) };
        // SAFETY: as above.
        unsafe { write_opt(out_created, k.created()) };
        Ok(())
    })
}

/// Blocks until `n` units of the fuel of `key` are granted, all at once,
/// the timeout passes, or the kill flag is set: `mpt_await_fuel_n` on the
/// key's own schedule. Waiters on one key are served first come, first
/// served; a key at its limit never slows another. A new key is added to
/// the table (see the eviction rule at `mpt_keyed_new`).
///
/// A waiter stopped, killed or cancelled while it sleeps gives its units
/// back if nothing was reserved on its key after them (LIMIT, ONE, NONE);
/// otherwise, and always with WINDOW, they stay taken, which can only make
/// the key's schedule stricter.
///
/// - `key`, `key_len`: the key, 0 to `MPT_KEY_MAX` bytes, any bytes
///   (borrowed; NULL only with `key_len` 0).
/// - `n`: at least 1, at most what a key's tank holds: max_n (LIMIT,
///   WINDOW), 1 (ONE), any (NONE).
/// - `timeout_s`, `out_grant_ns`: as for `mpt_await_fuel`.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_TIMEOUT`; `MPT_STATUS_KILLED`;
/// `MPT_STATUS_NO_ROOM` (a new key, and no room for it: nothing taken);
/// `MPT_STATUS_NULL_POINTER`; `MPT_STATUS_BAD_HANDLE`;
/// `MPT_STATUS_INVALID_ARGUMENT` (the key is too long, `n`, the timeout);
/// `MPT_STATUS_SYSTEM` (another process has held the key table's lock for
/// 200 ms without dying); `MPT_STATUS_CORRUPT`.
///
/// Thread safety, fork safety, blocking: as `mpt_await_fuel`. Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `key` NULL or valid for
/// `key_len` bytes; `out_grant_ns` NULL or valid.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_await_fuel(
    keyed: *const MptKeyed,
    key: *const c_void,
    key_len: usize,
    n: u64,
    timeout_s: f64,
    out_grant_ns: *mut i64,
) -> MptStatus {
    // SAFETY: the caller's contract is this function's.
    unsafe {
        mpt_keyed_await_fuel_cancellable(
            keyed,
            key,
            key_len,
            n,
            timeout_s,
            std::ptr::null(),
            out_grant_ns,
        )
    }
}

/// As `mpt_keyed_await_fuel`, and `mpt_cancel_fire(cancel)` from any
/// thread ends it at once with `MPT_STATUS_CANCELLED`.
///
/// - `cancel`: a live token of this process, or NULL.
///
/// Returns: as `mpt_keyed_await_fuel`; `MPT_STATUS_CANCELLED`;
/// `MPT_STATUS_WRONG_STATE` (a token made by another process).
///
/// Thread safety, fork safety, blocking: as `mpt_await_fuel_cancellable`.
/// Since: 0.2.0.
///
/// # Safety
/// As `mpt_keyed_await_fuel`; `cancel` NULL or a live token.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_await_fuel_cancellable(
    keyed: *const MptKeyed,
    key: *const c_void,
    key_len: usize,
    n: u64,
    timeout_s: f64,
    cancel: *const MptCancel,
    out_grant_ns: *mut i64,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let k = unsafe { self::keyed(keyed)? };
        // SAFETY: NULL (with 0) or valid for key_len bytes, per the contract.
        let key = unsafe { key_bytes(key, key_len)? };
        let cancel = if cancel.is_null() {
            None
        } else {
            // SAFETY: live, per the contract.
            Some(unsafe { token(cancel)? })
        };
        let timeout = config::timeout_ns(timeout_s)?;
        let grant = k.await_fuel(key, n, timeout, cancel)?;
        // SAFETY: NULL or valid, per the contract.
        unsafe { write_opt(out_grant_ns, grant) };
        Ok(())
    })
}

/// Takes `n` units of the fuel of `key` if its tank holds them now; never
/// blocks (`mpt_has_fuel_n` on the key's schedule).
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NO_FUEL` (empty, or not running:
/// nothing taken); `MPT_STATUS_KILLED`; `MPT_STATUS_NO_ROOM`;
/// `MPT_STATUS_NULL_POINTER`; `MPT_STATUS_BAD_HANDLE`;
/// `MPT_STATUS_INVALID_ARGUMENT` (the key, `n`); `MPT_STATUS_SYSTEM` (as
/// `mpt_keyed_await_fuel`); `MPT_STATUS_CORRUPT`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never (a
/// new key waits for the table lock, held for microseconds). Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `key` NULL or valid for
/// `key_len` bytes; `out_grant_ns` NULL or valid.
#[must_use]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_has_fuel(
    keyed: *const MptKeyed,
    key: *const c_void,
    key_len: usize,
    n: u64,
    out_grant_ns: *mut i64,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let k = unsafe { self::keyed(keyed)? };
        // SAFETY: NULL (with 0) or valid for key_len bytes, per the contract.
        let grant = k.has_fuel(unsafe { key_bytes(key, key_len)? }, n)?;
        // SAFETY: NULL or valid, per the contract.
        unsafe { write_opt(out_grant_ns, grant) };
        Ok(())
    })
}

/// Looks at the tank of `key` without taking (`mpt_peek_fuel` on the key's
/// schedule): a key not in the table is a key never seen (a full tank).
/// Never adds a key.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_KILLED`; `MPT_STATUS_NOT_RUNNING`;
/// `MPT_STATUS_NULL_POINTER`; `MPT_STATUS_BAD_HANDLE`;
/// `MPT_STATUS_INVALID_ARGUMENT` (the key, `n`); `MPT_STATUS_CORRUPT`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `key` NULL or valid for
/// `key_len` bytes; each out pointer NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_peek(
    keyed: *const MptKeyed,
    key: *const c_void,
    key_len: usize,
    n: u64,
    out_level: *mut u64,
    out_wait_s: *mut f64,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let k = unsafe { self::keyed(keyed)? };
        // SAFETY: NULL (with 0) or valid for key_len bytes, per the contract.
        let (level, wait_ns) = k.peek(unsafe { key_bytes(key, key_len)? }, n)?;
        // SAFETY: NULL or valid, per the contract (both).
        unsafe { write_opt(out_level, level) };
        // SAFETY: as above.
        unsafe { write_opt(out_wait_s, wait_ns as f64 / 1e9) };
        Ok(())
    })
}

/// Drops `key` from the table, whatever its state: its next use starts
/// afresh, as a key never seen. This may let through what its schedule
/// still held back (the caller asks for it; eviction never does). Waiters
/// asleep on it keep their grant times.
///
/// - `out_found`: may be NULL; receives whether the key was in the table.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`; `MPT_STATUS_INVALID_ARGUMENT` (the key);
/// `MPT_STATUS_SYSTEM` (as `mpt_keyed_await_fuel`).
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: for
/// microseconds, on the table lock. Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `key` NULL or valid for
/// `key_len` bytes; `out_found` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_forget(
    keyed: *const MptKeyed,
    key: *const c_void,
    key_len: usize,
    out_found: *mut bool,
) -> MptStatus {
    guard(|| {
        // SAFETY: NULL or live, per the contract.
        let k = unsafe { self::keyed(keyed)? };
        // SAFETY: NULL (with 0) or valid for key_len bytes, per the contract.
        let found = k.forget(unsafe { key_bytes(key, key_len)? })?;
        // SAFETY: NULL or valid, per the contract.
        unsafe { write_opt(out_found, found) };
        Ok(())
    })
}

/// The figures of one key: whether it is in the table, the units granted
/// to it since it was added, and when that was.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`; `MPT_STATUS_INVALID_ARGUMENT` (the key).
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `key` NULL or valid for
/// `key_len` bytes; `out_stats` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_key_stats(
    keyed: *const MptKeyed,
    key: *const c_void,
    key_len: usize,
    out_stats: *mut MptKeyStats,
) -> MptStatus {
    guard(|| {
        non_null(out_stats, "out_stats")?;
        // SAFETY: NULL or live, per the contract.
        let k = unsafe { self::keyed(keyed)? };
        // SAFETY: NULL (with 0) or valid for key_len bytes, per the contract.
        let figures = k.key_figures(unsafe { key_bytes(key, key_len)? })?;
        let stats = figures.map_or(MptKeyStats::default(), |f| MptKeyStats {
            in_table: 1,
            granted: f.granted,
            since_ns: f.since_ns,
        });
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_stats, stats) };
        Ok(())
    })
}

/// The figures of the whole keyed throttle: live keys, capacity, keys
/// dropped and added, and the totals of `mpt_get_summary` over every key.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`;
/// `MPT_STATUS_BAD_HANDLE`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `out_stats` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_get_stats(
    keyed: *const MptKeyed,
    out_stats: *mut MptKeyedStats,
) -> MptStatus {
    guard(|| {
        non_null(out_stats, "out_stats")?;
        // SAFETY: NULL or live, per the contract.
        let k = unsafe { self::keyed(keyed)? };
        let t = k.table_figures()?;
        let stats = MptKeyedStats {
            live_keys: t.live,
            capacity: t.capacity,
            evictions: t.evictions,
            added: t.added,
            summary: k.summary().into(),
        };
        // SAFETY: checked non-NULL; valid per the contract.
        unsafe { write(out_stats, stats) };
        Ok(())
    })
}

/// The body of the statistics calls.
///
/// # Safety
/// `keyed` NULL or live, `out_rate` NULL or valid.
unsafe fn read_rate(
    keyed: *const MptKeyed,
    out_rate: *mut MptRate,
    statistic: fn(&AnyKeyed) -> Result<RatePair>,
) -> MptStatus {
    guard(|| {
        non_null(out_rate, "out_rate")?;
        // SAFETY: NULL or live, per the caller's contract.
        let pair = statistic(unsafe { self::keyed(keyed)? })?;
        // SAFETY: checked non-NULL; valid per the caller's contract.
        unsafe { write(out_rate, pair.into()) };
        Ok(())
    })
}

/// The emissions of the last second over every key, as `mpt_latest`.
///
/// Returns: as `mpt_latest`.
///
/// Thread safety, fork safety, blocking: as `mpt_latest`. Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `out_rate` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_latest(
    keyed: *const MptKeyed,
    out_rate: *mut MptRate,
) -> MptStatus {
    // SAFETY: the caller's contract is this function's.
    unsafe { read_rate(keyed, out_rate, AnyKeyed::latest) }
}

/// The mean over the whole running time, over every key, as `mpt_mean`.
///
/// Returns: as `mpt_latest`.
///
/// Thread safety, fork safety, blocking: as `mpt_latest`. Since: 0.2.0.
///
/// # Safety
/// `keyed` must be NULL or a live handle; `out_rate` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_keyed_mean(
    keyed: *const MptKeyed,
    out_rate: *mut MptRate,
) -> MptStatus {
    // SAFETY: the caller's contract is this function's.
    unsafe { read_rate(keyed, out_rate, AnyKeyed::mean) }
}

const _: () = assert!(size_of::<MptKeyedStats>() == 64 && align_of::<MptKeyedStats>() == 8);
const _: () = assert!(size_of::<MptKeyStats>() == 24 && align_of::<MptKeyStats>() == 8);
