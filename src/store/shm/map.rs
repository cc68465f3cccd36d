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

    /// Creates the POSIX shared memory object `shm_name` (mode 0600, or
    /// 0660 if `group_shared`: the creator's effective group may use it too;
    /// its memory reserved at once, so a full `/dev/shm` fails here and not
    /// later) and maps it, zeroed. `Ok(None)` if the name exists already.
    pub fn create_named(
        shm_name: &CStr,
        ring_len: u64,
        group_shared: bool,
    ) -> io::Result<Option<Self>> {
        let len = size_for(ring_len)?;
        let mode: libc::mode_t = if group_shared { 0o660 } else { 0o600 };
        // SAFETY: shm_name is a valid NUL-terminated string; the flags and
        // mode are valid constants.
        let fd = unsafe {
            libc::shm_open(
                shm_name.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                mode,
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
        // shm_open applied the umask: the exact mode whatever it is, so that
        // every process of the user (and of the group, if shared) can open
        // the throttle.
        // SAFETY: fd is a valid descriptor this process owns.
        if unsafe { libc::fchmod(fd.as_raw_fd(), mode) } != 0 {
            return Err(removed(shm_name, io::Error::last_os_error()));
        }
        let reserved = i64::try_from(len).map_err(|_| removed(shm_name, too_big()))?;
        // SAFETY: fd is a valid descriptor of a shared memory object that
        // this process created; offset and length are in range.
        let rc = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, reserved) };
        let mapped = if rc != 0 {
            Err(io::Error::from_raw_os_error(rc))
        } else {
            Self::map(len, libc::MAP_SHARED, Some(&fd))
        };
        mapped.map(Some).map_err(|e| removed(shm_name, e))
    }

    /// Maps the existing POSIX shared memory object `shm_name`, whatever its
    /// size (at least a [`Shared`]): the caller validates what it holds.
    /// Waits up to `patience_ns` for a creator that has made it but not yet
    /// given it its size.
    ///
    /// The object must belong to this process's effective uid (root
    /// included: no exception), checked with `fstat` on the descriptor
    /// before anything is mapped, and be a regular file. Another user's
    /// object is accepted only if `accept_group` (the caller asks for group
    /// sharing), its mode gives its group read and write and others nothing,
    /// and its group is one of this process's (effective or supplementary);
    /// it is then [`Ownership::Group`], and the caller must still check that
    /// its header says it was made group-shared. A refusal is an
    /// [`io::ErrorKind::PermissionDenied`] error naming the owner; a
    /// non-regular file, [`io::ErrorKind::InvalidData`].
    pub fn open_named(
        shm_name: &CStr,
        patience_ns: i64,
        accept_group: bool,
    ) -> io::Result<(Self, Ownership)> {
        let fd = open_existing(shm_name, libc::O_RDWR)?;
        let st = fstat(&fd)?;
        let ownership = check_owner(&st, accept_group)?;
        regular(&st)?;
        let give_up = crate::clock::monotonic_ns().saturating_add(patience_ns);
        let mut size = st.st_size;
        loop {
            let bytes = usize::try_from(size).map_err(|_| too_big())?;
            if bytes >= size_of::<Shared>() {
                return Ok((Self::map(bytes, libc::MAP_SHARED, Some(&fd))?, ownership));
            }
            if bytes > 0 || crate::clock::monotonic_ns() > give_up {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("it is {bytes} bytes long, too short to be a throttle"),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            size = fstat(&fd)?.st_size;
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
/// mapped keep using it; it is freed when the last one lets go. No owner
/// check: for an object this process has just created.
pub fn unlink(shm_name: &CStr) -> io::Result<()> {
    // SAFETY: shm_name is a valid NUL-terminated string.
    if unsafe { libc::shm_unlink(shm_name.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes the POSIX shared memory object `shm_name` if it belongs to this
/// process's effective uid (root included), as `fstat` of the opened object
/// says; another user's is refused with an
/// [`io::ErrorKind::PermissionDenied`] error naming the owner.
///
/// The race that remains: the name is removed by name, after the check. If
/// in between its owner removes it and another user makes a new object of
/// that name, that one is removed. Only a caller the kernel lets remove
/// other users' objects (root, `CAP_FOWNER`: `/dev/shm` is sticky) can be
/// led to do so.
pub fn unlink_own(shm_name: &CStr) -> io::Result<()> {
    let fd = open_existing(shm_name, libc::O_RDONLY)?;
    let st = fstat(&fd)?;
    if st.st_uid != euid() {
        return Err(another_user(&st, "; only its owner may unlink it"));
    }
    drop(fd);
    unlink(shm_name)
}

/// Whose an opened named object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// This process's effective uid's.
    Own,
    /// Another user's, whose mode and group let this process in: usable
    /// only if its header says it was made group-shared.
    Group {
        /// The owner.
        uid: u32,
        /// Its group, one of this process's.
        gid: u32,
    },
}

/// `shm_name` removed after a failed creation, and `e` (the failure, never
/// the removal's own error: another process may have removed the name
/// meanwhile).
fn removed(shm_name: &CStr, e: io::Error) -> io::Error {
    let _ = unlink(shm_name);
    e
}

/// Opens the existing object `shm_name` with `access` (`O_RDWR` or
/// `O_RDONLY`): never follows a symbolic link (shm_open's `O_NOFOLLOW`) and
/// never blocks (a FIFO planted under the name). A refusal by the kernel
/// (mode 0600 or 0660 of another user) names the owner, from the path,
/// since there is no descriptor to ask.
fn open_existing(shm_name: &CStr, access: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: shm_name is a valid NUL-terminated string; the flags are
    // valid constants (no O_CREAT, so no mode).
    let fd = unsafe {
        libc::shm_open(
            shm_name.as_ptr(),
            access | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match (e.raw_os_error(), lstat_object(shm_name)) {
            (Some(libc::EACCES | libc::EPERM), Some(st)) if st.st_uid != euid() => {
                another_user(&st, "")
            }
            _ => e,
        });
    }
    // SAFETY: fd was just returned by shm_open and is owned here alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The `stat` of an open descriptor.
fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value (plain integers).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is a live descriptor; st is valid for writing one stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The `lstat` of the file behind `shm_name` in `/dev/shm`, for messages
/// only (no decision rests on a path).
fn lstat_object(shm_name: &CStr) -> Option<libc::stat> {
    let name = shm_name.to_bytes();
    let name = name.strip_prefix(b"/").unwrap_or(name);
    let mut path = b"/dev/shm/".to_vec();
    path.extend_from_slice(name);
    let path = std::ffi::CString::new(path).ok()?;
    // SAFETY: an all-zero stat is a valid value (plain integers).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated; st is valid for writing one stat.
    (unsafe { libc::lstat(path.as_ptr(), &mut st) } == 0).then_some(st)
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether this process may use the object `st` describes (see
/// [`Mapping::open_named`]).
fn check_owner(st: &libc::stat, accept_group: bool) -> io::Result<Ownership> {
    if st.st_uid == euid() {
        return Ok(Ownership::Own);
    }
    if !accept_group {
        return Err(another_user(
            st,
            "; another user's throttle is used only if it was made group-shared and the \
             caller asks for group sharing too (options.group_shared)",
        ));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o060 != 0o060 || mode & 0o007 != 0 {
        return Err(another_user(
            st,
            "; a group-shared throttle gives its group read and write, and others nothing \
             (0660)",
        ));
    }
    if !in_my_groups(st.st_gid)? {
        return Err(another_user(
            st,
            &format!(
                "; its group, {}, is not one of this process's groups",
                describe_group(st.st_gid)
            ),
        ));
    }
    Ok(Ownership::Group {
        uid: st.st_uid,
        gid: st.st_gid,
    })
}

/// Refuses anything but a regular file (a FIFO, a directory, a device
/// planted under the name).
fn regular(st: &libc::stat) -> io::Result<()> {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => return Ok(()),
        libc::S_IFIFO => "a FIFO",
        libc::S_IFDIR => "a directory",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        libc::S_IFLNK => "a symbolic link",
        _ => "not a regular file",
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("it is {kind}, not a shared memory object"),
    ))
}

/// Whether `gid` is this process's effective group or one of its
/// supplementary groups.
fn in_my_groups(gid: u32) -> io::Result<bool> {
    // SAFETY: getegid has no preconditions and cannot fail.
    if unsafe { libc::getegid() } == gid {
        return Ok(true);
    }
    loop {
        // SAFETY: size 0 asks for the count only; the pointer is not read.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut groups = vec![0 as libc::gid_t; n as usize];
        // SAFETY: groups has room for n entries.
        let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
        if got >= 0 {
            return Ok(groups[..got as usize].contains(&gid));
        }
        // EINVAL: the groups changed between the two calls; ask again.
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(io::Error::last_os_error());
        }
    }
}

/// The refusal of an object of another user: names the owner (uid and user
/// name) and this process's effective uid, then `why`.
fn another_user(st: &libc::stat, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "it belongs to another user, {}, not to this process's effective uid {}; its mode \
             is {:04o}{why}",
            describe_user(st.st_uid),
            euid(),
            st.st_mode & 0o7777
        ),
    )
}

/// `uid N (name)`, or `uid N` if the user database has no name for it.
pub fn describe_user(uid: u32) -> String {
    let name = lookup_name(|buf, len| {
        // SAFETY: all-zero is a valid passwd (integers and null pointers).
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: pw and found are valid for writing; buf is valid for len
        // bytes, where getpwuid_r puts pw's strings.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf, len, &mut found) };
        (
            rc,
            if found.is_null() {
                None
            } else {
                Some(pw.pw_name)
            },
        )
    });
    match name {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

/// `gid N (name)`, or `gid N` if the group database has no name for it.
pub fn describe_group(gid: u32) -> String {
    let name = lookup_name(|buf, len| {
        // SAFETY: all-zero is a valid group (integers and null pointers).
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: gr and found are valid for writing; buf is valid for len
        // bytes, where getgrgid_r puts gr's strings.
        let rc = unsafe { libc::getgrgid_r(gid, &mut gr, buf, len, &mut found) };
        (
            rc,
            if found.is_null() {
                None
            } else {
                Some(gr.gr_name)
            },
        )
    });
    match name {
        Some(name) => format!("gid {gid} ({name})"),
        None => format!("gid {gid}"),
    }
}

/// A name from a `get*_r` lookup: `call(buf, len)` returns its status and,
/// if an entry was found, its name (a pointer into `buf`). Grows the buffer
/// on `ERANGE`, up to 1 MiB.
fn lookup_name(
    call: impl Fn(*mut libc::c_char, usize) -> (libc::c_int, Option<*mut libc::c_char>),
) -> Option<String> {
    let mut len = 1024;
    while len <= 1 << 20 {
        let mut buf = vec![0 as libc::c_char; len];
        match call(buf.as_mut_ptr(), len) {
            (libc::ERANGE, _) => len *= 4,
            (0, Some(name)) if !name.is_null() => {
                // SAFETY: on success the name is a NUL-terminated string
                // inside buf, which is still alive here.
                let name = unsafe { CStr::from_ptr(name) };
                return Some(name.to_string_lossy().into_owned());
            }
            _ => return None,
        }
    }
    None
}
