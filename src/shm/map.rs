//! The memory mapping that holds a [`Shared`] state.

use super::layout::{self, Shared};
use portable_atomic::AtomicU128;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
        let len = size_for(ring_len)?;
        Self::map(len, libc::MAP_SHARED | libc::MAP_ANONYMOUS, None)
    }

    /// Creates the POSIX shared memory object `shm_name` (mode 0600, its
    /// memory reserved at once, so a full `/dev/shm` fails here and not
    /// later) and maps it, zeroed. `Ok(None)` if the name exists already.
    pub fn create_named(shm_name: &CStr, ring_len: u64) -> io::Result<Option<Self>> {
        let len = size_for(ring_len)?;
        // SAFETY: shm_name is a valid NUL-terminated string; the flags and
        // mode are valid constants.
        let fd = unsafe {
            libc::shm_open(
                shm_name.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EEXIST) => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: fd was just returned by shm_open and is owned here alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // shm_open applied the umask: 0600 whatever it is, so that every
        // process of the user can open the throttle.
        // SAFETY: fd is a valid descriptor this process owns.
        if unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) } != 0 {
            let e = io::Error::last_os_error();
            unlink(shm_name)?;
            return Err(e);
        }
        let reserved = i64::try_from(len).map_err(|_| too_big())?;
        // SAFETY: fd is a valid descriptor of a shared memory object that
        // this process created; offset and length are in range.
        let rc = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, reserved) };
        let mapped = if rc != 0 {
            Err(io::Error::from_raw_os_error(rc))
        } else {
            Self::map(len, libc::MAP_SHARED, Some(&fd))
        };
        if mapped.is_err() {
            unlink(shm_name)?;
        }
        mapped.map(Some)
    }

    /// Maps the existing POSIX shared memory object `shm_name`, whatever its
    /// size (at least a [`Shared`]): the caller validates what it holds.
    /// Waits up to `patience_ns` for a creator that has made it but not yet
    /// given it its size.
    pub fn open_named(shm_name: &CStr, patience_ns: i64) -> io::Result<Self> {
        // SAFETY: shm_name is a valid NUL-terminated string; the flags are
        // valid constants (no O_CREAT, so no mode).
        let fd = unsafe { libc::shm_open(shm_name.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by shm_open and is owned here alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let give_up = crate::clock::monotonic_ns().saturating_add(patience_ns);
        loop {
            let size = std::fs::File::from(fd.try_clone()?).metadata()?.len();
            let size = usize::try_from(size).map_err(|_| too_big())?;
            if size >= size_of::<Shared>() {
                return Self::map(size, libc::MAP_SHARED, Some(&fd));
            }
            if size > 0 || crate::clock::monotonic_ns() > give_up {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("it is {size} bytes long, too short to be a throttle"),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn map(len: usize, flags: libc::c_int, fd: Option<&OwnedFd>) -> io::Result<Self> {
        let raw_fd = fd.map_or(-1, |fd| fd.as_raw_fd());
        // SAFETY: a new mapping with no address hint touches no existing
        // memory; `raw_fd` is -1 (anonymous) or a live descriptor of a
        // shared memory object at least `len` bytes long; len > 0.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw_fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        let ring_len = (len - size_of::<Shared>()) / size_of::<AtomicU128>();
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

fn too_big() -> io::Error {
    io::Error::new(io::ErrorKind::OutOfMemory, "throttle state too large")
}

fn size_for(ring_len: u64) -> io::Result<usize> {
    layout::mapping_size(ring_len).ok_or_else(too_big)
}

/// Removes the POSIX shared memory object `shm_name`. Processes that have it
/// mapped keep using it; it is freed when the last one lets go.
pub fn unlink(shm_name: &CStr) -> io::Result<()> {
    // SAFETY: shm_name is a valid NUL-terminated string.
    if unsafe { libc::shm_unlink(shm_name.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
