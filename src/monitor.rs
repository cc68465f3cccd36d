//! The monitor thread: drains the emissions the store holds, keeps the
//! [`stats::Engine`](crate::stats::Engine) and publishes its figures into
//! the store, where every process reads them without a lock.
//!
//! It runs in the process that called `start`, one per run, and ends by
//! itself when the run ends (whichever process stops it). It takes no lock
//! that a forked child could need: its only private state is its own.

use crate::clock::monotonic_ns;
use crate::stats::Engine;
use crate::store::{MonitorStatus, Store};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// How long a running throttle's monitor may stay quiet before readers call
/// its figures stale: this many refresh intervals, and at least
/// [`MIN_QUIET_NS`].
pub(crate) const QUIET_REFRESHES: i64 = 20;
/// See [`QUIET_REFRESHES`].
pub(crate) const MIN_QUIET_NS: i64 = 250_000_000;

/// A running monitor thread, as the process that started it holds it.
#[derive(Debug)]
pub struct MonitorThread {
    thread: JoinHandle<()>,
    quit: Arc<AtomicBool>,
}

impl MonitorThread {
    /// Starts the monitor of run `run_id` of `store`.
    pub fn spawn<S: Store>(store: Arc<S>, run_id: u32, refresh_ns: u64) -> std::io::Result<Self> {
        let quit = Arc::new(AtomicBool::new(false));
        let quit_flag = Arc::clone(&quit);
        let thread = std::thread::Builder::new()
            .name("mpt-monitor".into())
            .spawn(move || {
                // AssertUnwindSafe: the thread's own state is dropped with it,
                // and the store's state holds only values each always valid.
                let body = AssertUnwindSafe(|| run(&*store, run_id, refresh_ns, &quit_flag));
                if catch_unwind(body).is_err() {
                    store.set_monitor(MonitorStatus::Panicked);
                }
            })?;
        Ok(Self { thread, quit })
    }

    /// Waits for the thread to end (it ends with its run).
    pub fn join(self) {
        let _ = self.thread.join();
    }

    /// Tells the thread to end now, whether or not its run goes on; `wake`
    /// must wake it (move the store's epoch on). Then waits for it.
    pub fn quit(self, wake: impl FnOnce()) {
        self.quit.store(true, Ordering::SeqCst);
        wake();
        self.join();
    }
}

fn run<S: Store>(store: &S, run_id: u32, refresh_ns: u64, quit: &AtomicBool) {
    let refresh = i64::try_from(refresh_ns).unwrap_or(i64::MAX);
    let mut engine = Engine::new(refresh.saturating_mul(2));
    let before = store.figures();
    engine.resume_extremes(before.lo_ns, before.hi_ns);
    let (_, run_start) = store.runtime();
    engine.new_run(run_start);
    let mut cursor = S::Cursor::default();
    store.set_monitor(MonitorStatus::Running);
    loop {
        let epoch = store.epoch();
        let running =
            store.is_running() && store.run_id() == run_id && !quit.load(Ordering::SeqCst);
        let lost = store.drain(&mut cursor, &mut |ts| engine.add(ts));
        let now = monotonic_ns();
        if lost > 0 {
            engine.note_lost(now, lost);
            store.note_lost(lost);
        }
        if !running {
            engine.finish();
            store.publish(0, engine.lo(), engine.hi(), None);
            break;
        }
        engine.settle(now);
        let latest = engine.latest(now);
        store.publish(latest, engine.lo(), engine.hi(), Some(now));
        store.sleep(epoch, Some(now.saturating_add(refresh)));
    }
    store.set_monitor(MonitorStatus::Idle);
}
