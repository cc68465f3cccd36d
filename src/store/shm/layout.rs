//! The `#[repr(C)]` layout of the shared state.
//!
//! Every field is an atomic, so no process ever holds a `&` to memory that
//! another process may write non-atomically, and zeroed memory (what `mmap`
//! hands out) is a valid value of every type here. Words written by every
//! grant sit on cache lines of their own. Values read from here may have been
//! written by a buggy, dead or hostile process: users validate them first.
//!
//! Bump [`LAYOUT_VERSION`] on any change.

#![forbid(unsafe_code)]

use portable_atomic::AtomicU128;
use std::ops::Deref;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

/// First word of every mapping: "MPTHRTL\0" read little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"MPTHRTL\0");
/// Version of this layout.
pub const LAYOUT_VERSION: u32 = 6;
/// Emission lanes; a thread emits into one lane, so emitters rarely share one.
pub const LANES: usize = 16;
/// Emission timestamps one lane holds until the monitor reads them.
pub const LANE_LEN: usize = 4096;

/// A value alone on its cache line.
#[repr(C, align(64))]
#[derive(Default)]
pub struct Line<T>(pub T);

impl<T> Deref for Line<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Configuration, written once by the creator before the state is shared.
#[repr(C)]
#[derive(Default)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: AtomicU32,
    /// The hardcap (`schedule::Hardcap` as u32).
    pub hardcap: AtomicU32,
    /// Size of the whole mapping in bytes.
    pub size: AtomicU64,
    /// Units of fuel per period.
    pub max_n: AtomicU64,
    /// The period in nanoseconds.
    pub per_ns: AtomicU64,
    /// Monitor refresh interval in nanoseconds.
    pub refresh_ns: AtomicU64,
    /// `FLAG_*` bits.
    pub flags: AtomicU32,
    /// A keyed throttle: the most keys its table holds (0: a plain
    /// throttle). Layout 5.
    pub keys: AtomicU32,
    /// The 16-byte words that follow [`Shared`]: the `WINDOW` ring of a
    /// plain throttle (0 for other hardcaps), or a keyed throttle's table.
    pub ring_len: AtomicU64,
}

/// [`Header::flags`]: fuel is rationed (off: always available).
pub const FLAG_THROTTLE: u32 = 1;
/// [`Header::flags`]: a monitor keeps statistics.
pub const FLAG_MONITOR: u32 = 2;
/// [`Header::flags`]: taking fuel counts an emission.
pub const FLAG_AUTO_EMIT: u32 = 4;
/// [`Header::flags`]: a named throttle made to be shared with its group
/// (created with mode 0660): the only kind of throttle of another user that
/// an opener asking for group sharing accepts (`map::open_named`). Bit 8:
/// the low byte says how the throttle counts, the next who may use it. A
/// library of the same layout version that predates it refuses such a
/// throttle as corrupt (unknown flag) rather than misreading it.
/// `pub(crate)`: not part of the C API (cbindgen exports `pub` constants).
pub(crate) const FLAG_GROUP_SHARED: u32 = 0x100;

/// Where a throttle is in its life. Stored in [`Control::run`] with the pid
/// of the process making a transition, so survivors can tell a dead one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Phase {
    /// Not started, or stopped.
    Stopped = 0,
    /// Fuel accrues.
    Running = 1,
    /// A process is starting it.
    Starting = 2,
    /// A process is stopping it.
    Stopping = 3,
}

impl Phase {
    /// `(phase, pid, start time)` from a [`Control::run`] word; `None` if
    /// corrupt.
    pub fn unpack(word: u128) -> Option<(Phase, u32, u64)> {
        let phase = match word as u32 {
            0 => Phase::Stopped,
            1 => Phase::Running,
            2 => Phase::Starting,
            3 => Phase::Stopping,
            _ => return None,
        };
        Some((phase, (word >> 32) as u32, (word >> 64) as u64))
    }

    /// A [`Control::run`] word: the phase, and the pid and start time (in
    /// clock ticks since boot, `/proc/<pid>/stat` field 22) of the process
    /// making the transition, which together survive pid reuse.
    pub fn pack(self, pid: u32, start_time: u64) -> u128 {
        (u128::from(start_time) << 64) | (u128::from(pid) << 32) | self as u128
    }
}

/// Lifecycle and wake-ups.
#[repr(C)]
#[derive(Default)]
pub struct Control {
    /// The futex word every sleeper waits on: bumped by every start, stop and
    /// kill, so each wakes all sleepers.
    pub epoch: AtomicU32,
    /// The kill flag (0 or 1).
    pub kill: AtomicU32,
    /// Threads sleeping on [`Control::epoch`]; wakers skip the syscall at 0.
    pub waiters: AtomicU32,
    /// Bumped by every start: a reservation made in an earlier run is void.
    pub run_id: AtomicU32,
    /// [`Phase`], pid and process start time, see [`Phase::pack`].
    pub run: AtomicU128,
    /// 1 once the throttle has run.
    pub ever_started: AtomicU32,
    /// Pid of the process whose thread is the monitor of this run (0: none).
    pub monitor_pid: AtomicU32,
    /// When the current run started.
    pub run_start_ns: AtomicI64,
    /// Running time of the finished runs.
    pub runtime_ns: AtomicI64,
    /// When the last run stopped.
    pub last_stop_ns: AtomicI64,
}

/// The lock of changes of rate and give-backs, and the pace of `WINDOW`
/// changes ([`super::lock`] takes and paces it).
#[repr(C)]
#[derive(Default)]
pub struct ChangeLock {
    /// The pid and start time of the holder (see [`super::lock`]), 0 =
    /// free. A dead holder's lock is taken over.
    pub holder: AtomicU128,
    /// `WINDOW`: when the last change of rate thawed the ring (monotonic
    /// clock, ns).
    pub thawed_ns: AtomicI64,
    /// `WINDOW`: how long the ring stayed frozen for that change, ns.
    pub frozen_ns: AtomicI64,
}

/// Statistics the monitor publishes; each is one atomic word, so a reader
/// never needs a lock and never sees half a value.
#[repr(C)]
#[derive(Default)]
pub struct Published {
    /// Emissions in the last second.
    pub latest: AtomicU64,
    /// Shortest interval between emissions seen, ns; -1 = none yet.
    pub lo_ns: AtomicI64,
    /// Longest interval between emissions seen, ns; -1 = none yet.
    pub hi_ns: AtomicI64,
    /// Emission timestamps the monitor could not read (lane overrun).
    pub lost: AtomicU64,
    /// [`MONITOR_IDLE`], [`MONITOR_RUNNING`], [`MONITOR_PANICKED`].
    pub status: AtomicU32,
    /// When the monitor last published (set by `start` too): a reader of a
    /// running throttle whose monitor went quiet knows its figures are stale.
    pub heartbeat_ns: AtomicI64,
}

/// [`Published::status`]: no monitor thread runs.
pub const MONITOR_IDLE: u32 = 0;
/// [`Published::status`]: a monitor thread runs.
pub const MONITOR_RUNNING: u32 = 1;
/// [`Published::status`]: the monitor thread panicked; statistics are stale.
pub const MONITOR_PANICKED: u32 = 2;

/// A ring entry (the `WINDOW` ring, the emission lanes): a sequence number
/// in the high half, a time in nanoseconds in the low half, so that one
/// atomic 128-bit access reads or writes both.
pub fn pack_entry(tag: u64, t: i64) -> u128 {
    (u128::from(tag) << 64) | u128::from(t as u64)
}

/// The `(sequence number, time)` of a ring entry, see [`pack_entry`].
pub fn unpack_entry(raw: u128) -> (u64, i64) {
    ((raw >> 64) as u64, raw as u64 as i64)
}

/// One emission lane: a ring of `(sequence + 1, timestamp)` entries that
/// emitters fill and the monitor drains.
#[repr(C)]
pub struct Lane {
    /// Emissions ever pushed into this lane (the exact count), and in bit
    /// 63 whether the lane is closed (see `lanes::close`).
    pub head: Line<AtomicU64>,
    /// Entries the monitor has read.
    pub tail: Line<AtomicU64>,
    /// The timestamps.
    pub ring: [AtomicU128; LANE_LEN],
}

/// Change records of the schedule (`crate::schedule`): slot `g % RECORDS`
/// holds generation g's rate and what changed from g - 1.
pub(crate) const RECORDS: usize = 32;

/// The change records, field by field. A tag says which generation a slot
/// holds and what kind of change it records (0 = none); it is written last
/// and read before and after the fields, so a reader never takes a record
/// being rewritten for a complete one.
#[repr(C)]
#[derive(Default)]
pub struct Records {
    /// Generation (bits 0..24) and kind (bits 24..26) of each record.
    pub tags: [AtomicU64; RECORDS],
    /// The rate in force from each record on: units per period.
    pub max_n: [AtomicU64; RECORDS],
    /// The rate in force from each record on: the period in nanoseconds.
    pub per_ns: [AtomicU64; RECORDS],
    /// GCRA: the scaled time of the record's frame at `t_c`, when the frame
    /// began (see `schedule::gcra`), in two halves: low 64 bits.
    pub base_lo: [AtomicU64; RECORDS],
    /// See [`Records::base_lo`]: high 64 bits.
    pub base_hi: [AtomicU64; RECORDS],
    /// Changes made up to and including this record (0: the first rate).
    pub serial: [AtomicU64; RECORDS],
    /// Give-backs made up to and including this record (see [`GiveBacks`]).
    pub give_backs: [AtomicU64; RECORDS],
    /// GCRA: whole periods dropped from the frames' scaled time up to and
    /// including this record (see `schedule::gcra`), low 64 bits.
    pub shift_lo: [AtomicU64; RECORDS],
    /// See [`Records::shift_lo`]: high 64 bits.
    pub shift_hi: [AtomicU64; RECORDS],
    /// A new rate: when it took effect (GCRA: when the record's frame
    /// began, which a give-back copies from the record before it).
    pub t_c: [AtomicI64; RECORDS],
    /// Units given back: the scaled slot of the last of them. A `WINDOW`
    /// rate: the head's sequence number when it froze, and where the ring
    /// was cut (64 bits each).
    pub x_c: [AtomicU128; RECORDS],
    /// Units given back: how many. A `WINDOW` rate: the old period in ns.
    pub units: [AtomicU128; RECORDS],
}

/// Give-backs of the GCRA schedule kept apart from the change records, so
/// that rate changes, however many, never overwrite one: a waiter asleep
/// through them still finds every give-back it must follow (up to
/// `GIVE_BACKS` of them).
pub(crate) const GIVE_BACKS: usize = 32;

/// The last `GIVE_BACKS` (32) give-backs, entry `i % GIVE_BACKS` holding
/// give-back number `i` (counted from 1). The tag (the number) is written
/// last and read before and after the fields, as a record's.
#[repr(C)]
#[derive(Default)]
pub struct GiveBacks {
    /// The number of the give-back each entry holds (0: none).
    pub tags: [AtomicU64; GIVE_BACKS],
    /// The scaled slot of the last unit given back, in the frame of
    /// `per_ns`.
    pub slot: [AtomicU128; GIVE_BACKS],
    /// The period (ns) of the frame `slot` is in.
    pub per_ns: [AtomicU64; GIVE_BACKS],
    /// The periods dropped up to that frame (`Records::shift_lo`).
    pub shift: [AtomicU128; GIVE_BACKS],
    /// Units given back.
    pub units: [AtomicU64; GIVE_BACKS],
}

/// `WINDOW`: what the last start of a run says of the ring entries before
/// its first unit, so that a start writes no entry (see
/// `schedule/window.rs`, "A start"). Entry `s` with `1 <= head - s <= len`
/// counts as granted at `max(t_start - floor((head - s) * per_ns / max_n),
/// min(cap, its time))`. `max_n` 0: no seeds (every entry as written).
#[repr(C)]
#[derive(Default)]
pub struct Seeds {
    /// The head when the run started: its first unit's sequence number.
    pub head: AtomicU64,
    /// The head the start froze: `head`, or another while the start gives
    /// reservations cut short back (it renumbers the ring; whoever finds
    /// the head still frozen there finishes the start).
    pub from: AtomicU64,
    /// When the run started.
    pub t_start: AtomicI64,
    /// Entries' own times count up to this (the stop before the run; no
    /// time at a first start).
    pub cap: AtomicI64,
    /// The rate at the start: units, 0 for none (written last).
    pub max_n: AtomicU64,
    /// The rate at the start: the period in nanoseconds.
    pub per_ns: AtomicU64,
}

/// The whole shared state. The `WINDOW` ring, if any, follows it.
#[repr(C)]
pub struct Shared {
    /// Configuration.
    pub header: Line<Header>,
    /// Lifecycle.
    pub control: Line<Control>,
    /// Statistics.
    pub published: Line<Published>,
    /// The generation of the rate in force (every hardcap) and, for GCRA,
    /// the theoretical arrival time (see [`crate::schedule`]).
    pub tat: Line<AtomicU128>,
    /// Change records of the rate (every hardcap) and of units given back.
    pub records: Line<Records>,
    /// GCRA: the last give-backs, for waiters that slept through them.
    pub give_backs: Line<GiveBacks>,
    /// Held while a process changes the rate or gives units back.
    pub change_lock: Line<ChangeLock>,
    /// `WINDOW` sequence number of the next grant and time of the last
    /// ([`pack_entry`]); a time near `i64::MAX` while a change of rate
    /// freezes it.
    pub head: Line<AtomicU128>,
    /// `WINDOW` highest sequence number confirmed (see `Schedule::confirm`).
    pub confirmed: Line<AtomicU64>,
    /// `WINDOW` seeds of the run (see [`Seeds`]).
    pub seeds: Line<Seeds>,
    /// Emission lanes.
    pub lanes: [Lane; LANES],
}

impl Shared {
    /// Tells every sleeper of the throttle, in every process, that something
    /// changed: each re-checks what it waits for (no syscall if none
    /// sleeps).
    pub fn wake_sleepers(&self) {
        let c = &self.control;
        c.epoch.fetch_add(1, SeqCst);
        if c.waiters.load(SeqCst) > 0 {
            crate::wait::wake_all(&c.epoch);
        }
    }
}

/// Bytes of a mapping with a `WINDOW` ring of `ring_len` entries.
pub fn mapping_size(ring_len: u64) -> Option<usize> {
    let ring = usize::try_from(ring_len)
        .ok()?
        .checked_mul(size_of::<AtomicU128>())?;
    size_of::<Shared>().checked_add(ring)
}

const _: () = assert!(size_of::<Header>() == 64);
const _: () = assert!(size_of::<Shared>() % 64 == 0);
const _: () = assert!(align_of::<Shared>() == 64);
