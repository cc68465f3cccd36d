//! The identity of the calling process, kept right across `fork()` without a
//! system call per use, and a liveness check for other processes.

use once_cell::sync::OnceCell;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

static PID: AtomicU32 = AtomicU32::new(0);
static FORKS: AtomicU32 = AtomicU32::new(0);
static HOOKED: OnceCell<()> = OnceCell::new();

extern "C" fn after_fork_in_child() {
    // SAFETY: getpid has no preconditions and is async-signal-safe, as a
    // pthread_atfork child handler requires.
    let pid = unsafe { libc::getpid() };
    PID.store(pid as u32, Ordering::Relaxed);
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Installs the fork hook; called when a throttle is made, long before any
/// fork that matters.
pub fn init() {
    HOOKED.get_or_init(|| {
        // SAFETY: getpid has no preconditions.
        PID.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
        // SAFETY: the handler is a plain extern "C" fn that stays valid for
        // the life of the process (the library is never unloaded while a
        // throttle exists; an unloaded library's handler is glibc's problem
        // only if fork runs after dlclose, which the docs forbid).
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
}

/// The calling process's pid (correct in a forked child).
pub fn id() -> u32 {
    init();
    PID.load(Ordering::Relaxed)
}

/// Forks this process has seen (as the child), to re-derive per-thread
/// caches after `fork()`.
pub fn fork_count() -> u32 {
    FORKS.load(Ordering::Relaxed)
}

/// Whether a process with this pid exists (it may be a zombie).
pub fn is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for the process; it sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

static NEXT_LANE: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static LANE: Cell<Option<(u32, usize)>> = const { Cell::new(None) };
}

/// The emission lane of the calling thread, out of `lanes`: threads (and
/// processes) spread over the lanes so that emitters rarely share one.
pub fn lane(lanes: usize) -> usize {
    let forks = fork_count();
    LANE.with(|cell| match cell.get() {
        Some((f, lane)) if f == forks => lane,
        _ => {
            let seed = NEXT_LANE.fetch_add(1, Ordering::Relaxed) as usize;
            let lane = seed.wrapping_add(id() as usize * 7) % lanes.max(1);
            cell.set(Some((forks, lane)));
            lane
        }
    })
}
