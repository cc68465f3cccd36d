//! Objects handed to C by pointer (`mpt_throttle`, `mpt_cancel`): one way
//! to make, borrow and free each of them.
//!
//! Each is boxed with a magic word of its own type before it, checked at
//! every use, so that a pointer of the wrong type, or one already freed, is
//! `MPT_STATUS_BAD_HANDLE` (usually: a freed box may be reused) rather
//! than undefined behaviour in the common mistakes.

use super::{Failure, FfiResult, MptStatus, non_null};

/// What a handle holds: a magic word, then the object. `repr(C)`: the
/// magic word comes first whatever the object, so reading it through a
/// pointer to a handle of another type stays inside that handle.
#[repr(C)]
pub struct Tagged<T> {
    magic: u64,
    inner: T,
}

/// A type C holds by pointer. Its values wrap a [`Tagged`] of
/// [`Handle::Inner`] (a newtype: a `repr(C)` or transparent struct would
/// not be opaque to cbindgen).
pub trait Handle: Sized + 'static {
    /// The object behind the handle.
    type Inner;
    /// The magic word of a live handle of this type.
    const MAGIC: u64;
    /// Its C type, for messages.
    const C_TYPE: &'static str;
    /// Wraps a tagged object.
    fn wrap(tagged: Tagged<Self::Inner>) -> Self;
    /// The tagged object.
    fn tagged(&self) -> &Tagged<Self::Inner>;
    /// The tagged object, to clear its magic word.
    fn tagged_mut(&mut self) -> &mut Tagged<Self::Inner>;
}

/// A new handle for `inner`, owned by C until [`free`].
pub fn into_c<H: Handle>(inner: H::Inner) -> *mut H {
    Box::into_raw(Box::new(H::wrap(Tagged {
        magic: H::MAGIC,
        inner,
    })))
}

/// The object behind handle `p` (argument `what`), borrowed for one
/// boundary call; `NULL_POINTER` or `BAD_HANDLE`.
///
/// # Safety
/// `p` must be NULL or a pointer from [`into_c`] of the same type that C
/// does not free during the call (a freed one is usually caught by the
/// magic word, but not always).
pub unsafe fn borrow<'a, H: Handle>(
    p: *const H,
    what: &'static str,
) -> Result<&'a H::Inner, Failure> {
    non_null(p, what)?;
    // SAFETY: non-NULL and, per the contract, a live handle of this type;
    // the borrow lasts for one boundary call, during which C must not free
    // it.
    let tagged = unsafe { &*p }.tagged();
    if tagged.magic != H::MAGIC {
        return Err(Failure::new(
            MptStatus::BadHandle,
            format!("{what} is not a live {} (freed, or never one)", H::C_TYPE),
        ));
    }
    Ok(&tagged.inner)
}

/// Frees handle `p` (argument `what`); NULL is allowed (nothing happens).
/// The magic word is cleared first, so that a second free of the same
/// pointer is usually caught.
///
/// # Safety
/// `p` must be NULL or a pointer from [`into_c`] of the same type that no
/// other thread uses during or after the call.
pub unsafe fn free<H: Handle>(p: *mut H, what: &'static str) -> FfiResult {
    if p.is_null() {
        return Ok(());
    }
    // SAFETY: non-NULL, live per the contract.
    unsafe { borrow(p, what)? };
    // SAFETY: made by Box::into_raw in into_c and used by nothing else (the
    // contract): owned from here on.
    let mut owned = unsafe { Box::from_raw(p) };
    owned.tagged_mut().magic = 0;
    drop(owned);
    Ok(())
}
