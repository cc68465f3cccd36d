//! The monitor thread: drains the emission lanes of the shared state, keeps
//! the [`stats::Engine`](crate::stats::Engine) and publishes its figures into
//! the shared state, where every process reads them without a lock.
//!
//! It runs in the process that called `start`, one per run, and ends by
//! itself when the run ends (whichever process stops it). It takes no lock
//! that a forked child could need: its only private state is its own.

use crate::clock::monotonic_ns;
use crate::process;
use crate::shm::Mapping;
use crate::shm::layout::{
    LANE_LEN, Lane, MONITOR_IDLE, MONITOR_PANICKED, MONITOR_RUNNING, Phase, Published, Shared,
    pack_entry, unpack_entry,
};
use crate::stats::Engine;
use crate::wait;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Refreshes an unwritten lane entry may stay unwritten before the monitor
/// gives it up (its emitter died between claiming and writing it).
const STUCK_ROUNDS: u32 = 3;

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
    /// Starts the monitor of run `run_id`.
    pub fn spawn(map: Arc<Mapping>, run_id: u32, refresh_ns: u64) -> std::io::Result<Self> {
        let quit = Arc::new(AtomicBool::new(false));
        let quit_flag = Arc::clone(&quit);
        let thread = std::thread::Builder::new()
            .name("mpt-monitor".into())
            .spawn(move || {
                let sh = map.shared();
                // AssertUnwindSafe: the thread's own state is dropped with it,
                // and the shared state holds only atomics, each always valid.
                let body = AssertUnwindSafe(|| run(sh, run_id, refresh_ns, &quit_flag));
                if catch_unwind(body).is_err() {
                    sh.published
                        .status
                        .store(MONITOR_PANICKED, Ordering::SeqCst);
                }
            })?;
        Ok(Self { thread, quit })
    }

    /// Waits for the thread to end (it ends with its run).
    pub fn join(self) {
        let _ = self.thread.join();
    }

    /// Tells the thread to end now, whether or not its run goes on; `wake`
    /// must wake it (bump the shared epoch). Then waits for it.
    pub fn quit(self, wake: impl FnOnce()) {
        self.quit.store(true, Ordering::SeqCst);
        wake();
        self.join();
    }
}

fn run(sh: &Shared, run_id: u32, refresh_ns: u64, quit: &AtomicBool) {
    let c = &sh.control;
    let p = &sh.published;
    let refresh = i64::try_from(refresh_ns).unwrap_or(i64::MAX);
    let mut engine = Engine::new(refresh.saturating_mul(2));
    let known = |v: i64| (v >= 0).then_some(v);
    engine.resume_extremes(
        known(p.lo_ns.load(Ordering::Acquire)),
        known(p.hi_ns.load(Ordering::Acquire)),
    );
    engine.new_run(c.run_start_ns.load(Ordering::Acquire));
    let mut stuck = [(0u64, 0u32); crate::shm::layout::LANES];
    p.status.store(MONITOR_RUNNING, Ordering::SeqCst);
    c.monitor_pid.store(process::id(), Ordering::SeqCst);
    loop {
        let epoch = c.epoch.load(Ordering::SeqCst);
        let running = Phase::unpack(c.run.load(Ordering::SeqCst))
            .is_some_and(|(phase, _, _)| phase == Phase::Running)
            && c.run_id.load(Ordering::SeqCst) == run_id
            && !quit.load(Ordering::SeqCst);
        let lost = drain(sh, &mut engine, &mut stuck);
        let now = monotonic_ns();
        if lost > 0 {
            engine.note_lost(now, lost);
            p.lost.fetch_add(lost, Ordering::Relaxed);
        }
        if !running {
            engine.finish();
            publish(p, 0, &engine);
            break;
        }
        engine.settle(now);
        let latest = engine.latest(now);
        publish(p, latest, &engine);
        p.heartbeat_ns.store(now, Ordering::Release);
        wait::wait_counted(
            &c.waiters,
            &c.epoch,
            epoch,
            Some(now.saturating_add(refresh)),
        );
    }
    if c.monitor_pid.load(Ordering::SeqCst) == process::id() {
        c.monitor_pid.store(0, Ordering::SeqCst);
        p.status.store(MONITOR_IDLE, Ordering::SeqCst);
    }
}

fn publish(p: &Published, latest: u64, engine: &Engine) {
    p.latest.store(latest, Ordering::Release);
    p.lo_ns.store(engine.lo().unwrap_or(-1), Ordering::Release);
    p.hi_ns.store(engine.hi().unwrap_or(-1), Ordering::Release);
}

/// Moves every timestamp the lanes hold into the engine; returns how many
/// emissions were counted without a timestamp to read.
fn drain(sh: &Shared, engine: &mut Engine, stuck: &mut [(u64, u32)]) -> u64 {
    sh.lanes
        .iter()
        .zip(stuck.iter_mut())
        .map(|(lane, stuck)| drain_lane(lane, engine, stuck))
        .fold(0, u64::saturating_add)
}

/// Drains one lane; returns how many timestamps were lost to overruns or to
/// emitters that died mid-write.
fn drain_lane(lane: &Lane, engine: &mut Engine, stuck: &mut (u64, u32)) -> u64 {
    let len = LANE_LEN as u64;
    let head = lane.head.load(Ordering::Acquire) & !CLOSED;
    let mut tail = lane.tail.load(Ordering::Acquire).min(head);
    let mut lost = 0;
    if head - tail > len {
        lost += head - tail - len;
        tail = head - len;
    }
    while tail < head {
        let raw = lane.ring[(tail % len) as usize].load(Ordering::Acquire);
        let (tag, ts) = unpack_entry(raw);
        if tag == tail + 1 {
            engine.add(ts);
        } else if tag > tail + 1 {
            lost += 1; // overwritten by a later lap
        } else if *stuck == (tail, STUCK_ROUNDS) {
            lost += 1; // claimed but never written: its emitter died
        } else {
            *stuck = if stuck.0 == tail {
                (tail, stuck.1 + 1)
            } else {
                (tail, 1)
            };
            break;
        }
        tail += 1;
    }
    lane.tail.store(tail, Ordering::Release);
    lost
}

/// Records one emission at `ts` in the calling thread's lane; false (nothing
/// counted) if the lanes are closed: a stop is reading the totals.
pub fn push(sh: &Shared, ts: i64) -> bool {
    push_to(&sh.lanes[process::lane(sh.lanes.len())], ts)
}

/// Records one emission at `ts` in `lane`, unless it is closed. Deciding and
/// counting are one compare-and-swap, so a stop that closes the lanes and
/// then reads them has every emission counted before, and none after.
fn push_to(lane: &Lane, ts: i64) -> bool {
    let mut raw = lane.head.load(Ordering::Acquire);
    let seq = loop {
        if raw & CLOSED != 0 {
            return false;
        }
        match lane
            .head
            .compare_exchange_weak(raw, raw + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => break raw,
            Err(actual) => raw = actual,
        }
    };
    let entry = pack_entry(seq.wrapping_add(1), ts);
    lane.ring[(seq % LANE_LEN as u64) as usize].store(entry, Ordering::Release);
    true
}

/// Bit 63 of a lane's head: closed.
const CLOSED: u64 = 1 << 63;

/// Closes every lane: from now on [`push`] counts nothing until [`open`].
/// `stop` closes them after setting the kill flag, then reads the totals.
pub fn close(sh: &Shared) {
    for lane in &sh.lanes {
        lane.head.fetch_or(CLOSED, Ordering::SeqCst);
    }
}

/// Opens every lane (`start`, before the run begins).
pub fn open(sh: &Shared) {
    for lane in &sh.lanes {
        lane.head.fetch_and(!CLOSED, Ordering::SeqCst);
    }
}

/// Emissions ever counted, over all lanes.
pub fn total(sh: &Shared) -> u64 {
    sh.lanes
        .iter()
        .map(|l| l.head.load(Ordering::Acquire) & !CLOSED)
        .fold(0, u64::wrapping_add)
}
