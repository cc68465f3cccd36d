//! The emission lanes: every emitter (any thread of any process) counts
//! an emission with one compare-and-swap in its thread's lane, and the
//! monitor drains the lanes' timestamps into its statistics. A stop closes
//! the lanes, so the totals it reads are final.

use super::layout::{LANE_LEN, LANES, Lane, Shared, pack_entry, unpack_entry};
use crate::process;
use std::sync::atomic::Ordering;

/// Refreshes an unwritten lane entry may stay unwritten before the monitor
/// gives it up (its emitter died between claiming and writing it).
const STUCK_ROUNDS: u32 = 3;

/// Where the monitor is in the lanes: for each lane, the entry it found
/// claimed but unwritten, and for how many refreshes in a row.
#[derive(Debug)]
pub struct Cursor([(u64, u32); LANES]);

impl Default for Cursor {
    fn default() -> Self {
        Self([(0, 0); LANES])
    }
}

/// Moves every timestamp the lanes hold into `add`; returns how many
/// emissions were counted without a timestamp to read.
pub fn drain(sh: &Shared, cursor: &mut Cursor, add: &mut dyn FnMut(i64)) -> u64 {
    sh.lanes
        .iter()
        .zip(cursor.0.iter_mut())
        .map(|(lane, stuck)| drain_lane(lane, add, stuck))
        .fold(0, u64::saturating_add)
}

/// Drains one lane; returns how many timestamps were lost to overruns or to
/// emitters that died mid-write.
fn drain_lane(lane: &Lane, add: &mut dyn FnMut(i64), stuck: &mut (u64, u32)) -> u64 {
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
            add(ts);
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
