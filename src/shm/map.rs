//! The memory mapping that holds a [`Shared`] state.

use super::layout::{self, Shared};
use portable_atomic::AtomicU128;
use std::io;
use std::ptr::NonNull;

/// A `MAP_SHARED` mapping holding a [`Shared`] followed by `ring_len`
/// `WINDOW` entries. Unmapped on drop; the memory lives on while any other
/// process (a forked child) still maps it.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    ring_len: usize,
}

// SAFETY: the mapping is only ever accessed through atomics (the invariant of
// `layout`), so sharing it between threads is as safe as sharing atomics.
unsafe impl Send for Mapping {}
// SAFETY: as for Send: `&Mapping` only hands out `&` to atomics.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// A fresh, zeroed anonymous shared mapping: inherited by `fork()`.
    pub fn anonymous(ring_len: u64) -> io::Result<Self> {
        let too_big = || io::Error::new(io::ErrorKind::OutOfMemory, "throttle state too large");
        let len = layout::mapping_size(ring_len).ok_or_else(too_big)?;
        let ring_len = usize::try_from(ring_len).map_err(|_| too_big())?;
        // SAFETY: a fresh anonymous mapping with no address hint touches no
        // existing memory; the arguments are valid constants and a length > 0.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self { ptr, len, ring_len })
    }

    /// The shared state.
    pub fn shared(&self) -> &Shared {
        // SAFETY: `ptr` is page-aligned (>= align_of::<Shared>() = 64) and
        // the mapping is at least size_of::<Shared>() bytes (mapping_size);
        // zeroed memory is a valid Shared and every field is an atomic, so
        // writes by other processes are never data races; the memory stays
        // mapped for as long as `self` lives, which bounds the borrow.
        unsafe { self.ptr.cast::<Shared>().as_ref() }
    }

    /// The `WINDOW` ring (empty for the other hardcaps).
    pub fn ring(&self) -> &[AtomicU128] {
        // SAFETY: mapping_size() made the mapping size_of::<Shared>() bytes
        // plus the ring, so the offset stays inside it.
        let start = unsafe { self.ptr.as_ptr().add(size_of::<Shared>()) };
        // SAFETY: the ring starts right after Shared, whose size is a
        // multiple of 64, so it is aligned for AtomicU128; mapping_size
        // reserved ring_len entries there; zeroed memory is a valid
        // AtomicU128; the borrow is bounded by `self`, as in `shared`.
        unsafe { std::slice::from_raw_parts(start.cast::<AtomicU128>(), self.ring_len) }
    }

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping holds at least a [`Shared`].
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned, and no borrow of
        // the memory outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
