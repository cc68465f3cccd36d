//! The library's version, to compare with the header's `MPT_VERSION_*`.

use super::{MptStatus, guard, non_null, write};
use std::ffi::c_char;

fn part(s: &str) -> u32 {
    s.parse().unwrap_or(0)
}

/// The version of the library actually linked (compare with the header's
/// `MPT_VERSION_MAJOR` / `_MINOR` / `_PATCH`; `MPT_ABI_VERSION` is the
/// SONAME's number).
///
/// - `out_major`, `out_minor`, `out_patch`: not NULL.
///
/// Returns: `MPT_STATUS_OK`; `MPT_STATUS_NULL_POINTER`.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.1.0.
///
/// # Safety
/// Each pointer must be NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mpt_version(
    out_major: *mut u32,
    out_minor: *mut u32,
    out_patch: *mut u32,
) -> MptStatus {
    guard(|| {
        non_null(out_major, "out_major")?;
        non_null(out_minor, "out_minor")?;
        non_null(out_patch, "out_patch")?;
        // SAFETY: checked non-NULL; valid per the contract (all three).
        unsafe { write(out_major, part(env!("CARGO_PKG_VERSION_MAJOR"))) };
        // SAFETY: as above.
        unsafe { write(out_minor, part(env!("CARGO_PKG_VERSION_MINOR"))) };
        // SAFETY: as above.
        unsafe { write(out_patch, part(env!("CARGO_PKG_VERSION_PATCH"))) };
        Ok(())
    })
}

/// The version of the library actually linked, as a static, NUL-terminated
/// string "MAJOR.MINOR.PATCH": the header's `MPT_VERSION_STRING` when the
/// library and the header agree (as zstd's `ZSTD_versionString()`). The
/// numbers are those of `mpt_version`.
///
/// Returns: the string, never NULL; not an `mpt_status` (like
/// `mpt_strerror`, it cannot fail). It lives as long as the library: do not
/// free or modify it.
///
/// Thread safety: safe. Fork safety: safe in a child. Blocking: never.
/// Since: 0.2.0.
#[unsafe(no_mangle)]
pub extern "C" fn mpt_version_string() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
