//! The identity of the calling process, kept right across `fork()` without a
//! system call per use, and a liveness check for other processes.

use once_cell::sync::OnceCell;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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

/// Installs the fork hook, on the first [`id`] (when the first throttle is
/// made, long before any fork that matters).
fn init() {
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

/// `(state, start time)` of process `pid` from `/proc/<pid>/stat`: the
/// state letter (field 3) and the start time in clock ticks since boot
/// (field 22). `None` if there is no such process.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

static START_TIME: AtomicU64 = AtomicU64::new(0);
static START_TIME_PID: AtomicU32 = AtomicU32::new(0);

/// The calling process's start time (clock ticks since boot), which with its
/// pid names it uniquely; 0 if `/proc` cannot tell.
pub fn start_time() -> u64 {
    let me = id();
    if START_TIME_PID.load(Ordering::Acquire) != me {
        let start = stat(me).map_or(0, |(_, start)| start);
        START_TIME.store(start, Ordering::Release);
        START_TIME_PID.store(me, Ordering::Release);
    }
    START_TIME.load(Ordering::Acquire)
}

/// Whether the process `pid` that started at `start_time` (0: unknown) is
/// still running: not gone, not a zombie, and not another process that got
/// the same pid since.
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    if pid == 0 {
        return false;
    }
    match stat(pid) {
        Some((state, _)) if state == 'Z' || state == 'X' || state == 'x' => false,
        Some((_, start)) => start_time == 0 || start == start_time,
        None => {
            let Ok(pid) = libc::pid_t::try_from(pid) else {
                return false;
            };
            // No /proc: signal 0 only checks for the process.
            // SAFETY: signal 0 sends nothing.
            let rc = unsafe { libc::kill(pid, 0) };
            rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
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
