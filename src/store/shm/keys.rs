//! The key table of a keyed throttle: a fixed number of key slots, made
//! with the mapping (after [`super::Shared`], where a plain throttle's
//! `WINDOW` ring goes), shared by every process that maps it.
//!
//! Every field is an `AtomicU128` word, so the table is a slice of words
//! and needs no `unsafe` to read:
//!
//! - the table's header ([`HEADER_WORDS`] words): the hash key, the count
//!   of live keys with the slot an insertion or eviction is working on (one
//!   word, see `Work`), counters, and the holder of the table lock;
//! - then each slot: [`SLOT_WORDS`] words (its state, the key's schedule
//!   word, its counters, the key's bytes), then its `WINDOW` ring.
//!
//! Finding a key takes no lock: SipHash-1-3 of the key, under the
//! throttle's own random hash key, points at a slot; the key is in one of
//! the [`PROBE`] slots from there on, before the first slot never used.
//! A slot's state word holds the key's length, its full hash and its
//! incarnation; a reader compares the bytes, then checks that the state
//! word has not changed, so a slot reused meanwhile is never taken for the
//! key it held.
//!
//! Adding and dropping keys take the table lock (a holder word naming a
//! pid and its start time, taken over from a dead holder, as the change
//! lock: [`super::lock::hold`]), so two processes never add one key twice.
//! Each step a holder takes is recorded first in the `Work` word, so the
//! next holder finishes or undoes the work of one killed halfway.
//!
//! The eviction rule (see `docs/design.md`, "Keyed throttles"): a key is
//! dropped only when [`Schedule::key_idle`] says it behaves exactly like a
//! key never used, and only when its room is needed: the table holds its
//! capacity of live keys, or the new key's [`PROBE`] slots are all taken.

#![forbid(unsafe_code)]

use super::lock::{self, Held, HeldByLive};
use crate::clock::Clock;
use crate::schedule::Schedule;
use crate::schedule::key::{KeyReservation, KeyState, KeyTicket, incarnation};
use crate::store::KeyFigures;
use portable_atomic::AtomicU128;
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

/// The longest key, in bytes.
pub const KEY_MAX: usize = 128;
/// The refusal of a key longer than [`KEY_MAX`] bytes.
pub fn too_long(len: usize) -> crate::error::Error {
    crate::error::Error::InvalidArgument(format!("a key is at most {KEY_MAX} bytes (got {len})"))
}

/// Slots a key may be in, from the one its hash points at.
pub const PROBE: u64 = 32;
/// Most keys a keyed throttle holds (its table has up to twice as many
/// slots of at least 192 bytes).
pub const MAX_KEYS: u64 = 1 << 26;
/// Words of the table's header.
pub const HEADER_WORDS: usize = 8;
/// Words of a slot before its ring.
pub const SLOT_WORDS: usize = 4 + KEY_MAX / 16;

// The header's words.
const SEED: usize = 0;
const WORK: usize = 1;
const EVICTIONS: usize = 2;
const INSERTED: usize = 3;
const LOCK: usize = 4;

// A slot's words.
const META: usize = 0;
const SCHEDULE: usize = 1;
const GRANTED: usize = 2;
const FIRST_USE: usize = 3;
const KEY: usize = 4;

/// Slot states (the low two bits of its state word).
const NEVER: u128 = 0;
const LIVE: u128 = 1;
const FREE: u128 = 2;
const CLAIMING: u128 = 3;

/// A slot's state word: state, the key's length, incarnation, full hash.
fn meta(state: u128, len: usize, inc: u32, hash: u64) -> u128 {
    state | ((len as u128) << 8) | (u128::from(inc) << 32) | (u128::from(hash) << 64)
}

fn meta_inc(m: u128) -> u32 {
    (m >> 32) as u32
}

/// The work word: the live keys (low 64 bits) and what the lock's holder
/// is doing (high 64 bits: a slot + 1 and what to it, 0 for nothing).
struct Work;

impl Work {
    const ADDING: u64 = 1 << 62;
    const COUNTED: u64 = 1 << 61;
    const DROPPING: u64 = 1 << 60;
    const SLOT: u64 = (1 << 60) - 1;

    fn pack(live: u64, doing: u64) -> u128 {
        (u128::from(doing) << 64) | u128::from(live)
    }

    fn unpack(w: u128) -> (u64, u64) {
        (w as u64, (w >> 64) as u64)
    }
}

/// The shape of a table: fixed at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The most live keys.
    pub capacity: u64,
    /// Slots: a power of two, at least 1.25 times `capacity`.
    pub slots: u64,
    /// Entries of each slot's `WINDOW` ring (0 for the other hardcaps).
    pub ring_len: u64,
}

impl Geometry {
    /// The table of `capacity` keys (1 to [`MAX_KEYS`]) for `schedule`.
    pub fn new(capacity: u64, schedule: &Schedule) -> Self {
        let mut slots = capacity.next_power_of_two().max(2);
        if slots < capacity + capacity / 4 {
            slots *= 2;
        }
        Self {
            capacity,
            slots,
            ring_len: schedule.key_ring_len(),
        }
    }

    /// Words of one slot with its ring (a multiple of 4: 64 bytes).
    fn stride(&self) -> usize {
        SLOT_WORDS + self.ring_len as usize
    }

    /// Words of the whole table; `None` if beyond the address space.
    pub fn words(&self) -> Option<u64> {
        (self.stride() as u64)
            .checked_mul(self.slots)?
            .checked_add(HEADER_WORDS as u64)
    }
}

/// A key, ready to look up: its length, hash and bytes as stored.
pub struct Key {
    len: usize,
    hash: u64,
    words: [u128; KEY_MAX / 16],
}

/// What a reservation on a key came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// Reserved, in slot `slot` (of incarnation `inc`).
    Granted {
        /// The slot.
        slot: usize,
        /// The key's incarnation.
        inc: u32,
        /// The units, and when they are granted.
        ticket: KeyTicket,
    },
    /// Nothing reserved: the earliest grant would be at this time.
    Later(i64),
}

/// Why a key could not be reserved on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The key is new and the table has no room for it.
    NoRoom(String),
    /// A live process has held the table lock too long.
    Locked(HeldByLive),
    /// The table holds values no correct process writes.
    Corrupt(&'static str),
}

/// The table, over the words that follow the shared state.
#[derive(Clone, Copy)]
pub struct Table<'a> {
    words: &'a [AtomicU128],
    geometry: Geometry,
    schedule: Schedule,
}

impl<'a> Table<'a> {
    /// The table of `geometry` in `words` (exactly [`Geometry::words`]).
    pub fn new(words: &'a [AtomicU128], geometry: Geometry, schedule: Schedule) -> Self {
        debug_assert_eq!(Some(words.len() as u64), geometry.words());
        Self {
            words,
            geometry,
            schedule,
        }
    }

    /// Puts a fresh (zeroed) table in order: its random hash key. Call
    /// before the table is shared.
    pub fn init(&self) -> std::io::Result<()> {
        let mut seed = [0u8; 16];
        getrandom(&mut seed)?;
        self.words[SEED].store(u128::from_le_bytes(seed), Relaxed);
        Ok(())
    }

    /// `key` hashed under this table's hash key, ready to look up; `None`
    /// if longer than [`KEY_MAX`].
    #[inline(always)]
    pub fn key(&self, key: &[u8]) -> Option<Key> {
        if key.len() > KEY_MAX {
            return None;
        }
        let seed = self.words[SEED].load(Relaxed);
        let mut h = SipHasher13::new_with_keys(seed as u64, (seed >> 64) as u64);
        h.write(key);
        let mut words = [0u128; KEY_MAX / 16];
        for (w, chunk) in words.iter_mut().zip(key.chunks(16)) {
            let mut b = [0u8; 16];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u128::from_le_bytes(b);
        }
        Some(Key {
            len: key.len(),
            hash: h.finish(),
            words,
        })
    }

    /// The slot a hash points at (for tests that choose colliding keys).
    pub fn home(&self, key: &Key) -> usize {
        (key.hash & (self.geometry.slots - 1)) as usize
    }

    /// The shape of the table.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn slot(&self, i: usize) -> &'a [AtomicU128] {
        let stride = self.geometry.stride();
        let start = HEADER_WORDS + i * stride;
        &self.words[start..start + stride]
    }

    fn state(&self, i: usize) -> KeyState<'a> {
        let slot = self.slot(i);
        KeyState {
            word: &slot[SCHEDULE],
            ring: &slot[SLOT_WORDS..],
        }
    }

    /// The slots a key may be in, from its home on.
    fn window(&self, key: &Key) -> impl Iterator<Item = usize> {
        let mask = self.geometry.slots - 1;
        let home = key.hash & mask;
        (0..PROBE.min(self.geometry.slots)).map(move |i| ((home + i) & mask) as usize)
    }

    /// Whether slot `i` in state `m` holds `key`.
    #[inline(always)]
    fn holds(&self, i: usize, m: u128, key: &Key) -> bool {
        if m & 3 != LIVE || m != meta(LIVE, key.len, meta_inc(m), key.hash) {
            return false;
        }
        let slot = self.slot(i);
        let n = key.len.div_ceil(16);
        (0..n).all(|j| slot[KEY + j].load(Acquire) == key.words[j]) && slot[META].load(Acquire) == m
    }

    /// The slot and incarnation of `key`, if live; takes no lock.
    #[inline(always)]
    pub fn find(&self, key: &Key) -> Option<(usize, u32)> {
        for i in self.window(key) {
            let m = self.slot(i)[META].load(Acquire);
            if m & 3 == NEVER {
                return None;
            }
            if self.holds(i, m, key) {
                return Some((i, meta_inc(m)));
            }
        }
        None
    }

    /// Reserves `n` units of `key` at `now`, granted no later than
    /// `latest`, adding the key if it is new (a new key's first units are
    /// always there: its tank is full).
    ///
    /// `now` may be old (the caller was held up since it read `clock`): a
    /// key added meanwhile is full only as of when it was added, so the
    /// caller's time is taken on to that; and a call for fuel there now
    /// (`latest == now`) that finds none looks at `clock` once more.
    #[inline(always)]
    pub fn reserve(
        &self,
        key: &Key,
        n: u64,
        now: i64,
        latest: i64,
        patience_ns: i64,
        clock: &dyn Clock,
    ) -> Result<Reserved, Refusal> {
        let (mut now, mut latest) = (now, latest);
        let mut looked_again = false;
        loop {
            let (slot, inc) = match self.find(key) {
                Some(found) => found,
                None => {
                    let (slot, inc, at) = self.add(key, clock, patience_ns)?;
                    if at > now {
                        latest = if latest == now { at } else { latest.max(at) };
                        now = at;
                    }
                    (slot, inc)
                }
            };
            match self
                .schedule
                .key_reserve(&self.state(slot), inc, n, now, latest)
            {
                KeyReservation::Granted(ticket) => {
                    self.slot(slot)[GRANTED].fetch_add(u128::from(n), Relaxed);
                    return Ok(Reserved::Granted { slot, inc, ticket });
                }
                KeyReservation::Later(_) if latest == now && !looked_again => {
                    looked_again = true;
                    let fresh = clock.now_ns();
                    if fresh > now {
                        (now, latest) = (fresh, fresh);
                    }
                }
                KeyReservation::Later(at) => return Ok(Reserved::Later(at)),
                KeyReservation::Moved => continue, // evicted or forgotten meanwhile
                KeyReservation::Corrupt => return Err(Refusal::Corrupt("a key's schedule")),
            }
        }
    }

    /// Gives back units reserved on slot `slot` if nothing was reserved on
    /// its key after them (see [`Schedule::key_give_back`]).
    pub fn give_back(&self, slot: usize, n: u64, ticket: &KeyTicket) -> bool {
        let done = self.schedule.key_give_back(&self.state(slot), ticket);
        if done {
            self.slot(slot)[GRANTED].fetch_sub(u128::from(n), Relaxed);
        }
        done
    }

    /// `(units there now, ns until n are)` for `key`; a key not in the
    /// table is one never used.
    pub fn peek(&self, key: &Key, n: u64, now: i64) -> Result<(u64, i64), Refusal> {
        if let Some((slot, inc)) = self.find(key) {
            if let Some(seen) = self.schedule.key_peek(&self.state(slot), inc, n, now) {
                return Ok(seen);
            }
            if self.find(key) == Some((slot, inc)) {
                return Err(Refusal::Corrupt("a key's schedule"));
            }
        }
        // As a key never used: a fresh state of its own.
        let word = AtomicU128::new(0);
        let ring: Vec<AtomicU128> = (0..self.geometry.ring_len)
            .map(|_| AtomicU128::new(0))
            .collect();
        let fresh = KeyState {
            word: &word,
            ring: &ring,
        };
        self.schedule.key_init(&fresh, 1, now);
        Ok(self.schedule.key_peek(&fresh, 1, n, now).unwrap_or((0, 0)))
    }

    /// The figures of `key`, if it is in the table.
    pub fn figures(&self, key: &Key) -> Option<KeyFigures> {
        let (slot, _) = self.find(key)?;
        let s = self.slot(slot);
        let inc = meta_inc(s[META].load(Acquire));
        let figures = KeyFigures {
            granted: s[GRANTED].load(Relaxed) as u64,
            since_ns: s[FIRST_USE].load(Relaxed) as u64 as i64,
        };
        (meta_inc(s[META].load(Acquire)) == inc).then_some(figures)
    }

    /// Live keys now.
    pub fn live(&self) -> u64 {
        Work::unpack(self.words[WORK].load(Acquire)).0
    }

    /// Keys dropped to make room, ever.
    pub fn evictions(&self) -> u64 {
        self.words[EVICTIONS].load(Relaxed) as u64
    }

    /// Keys added, ever.
    pub fn added(&self) -> u64 {
        self.words[INSERTED].load(Relaxed) as u64
    }

    /// Drops `key` whatever its state (its next use starts afresh, as a
    /// key never used): true if it was in the table.
    pub fn forget(&self, key: &Key, patience_ns: i64) -> Result<bool, Refusal> {
        let held = self.lock(patience_ns)?;
        Ok(match self.find(key) {
            Some((slot, inc)) => self.drop_key(&held, slot, inc, None),
            None => false,
        })
    }

    /// Takes the table lock, and finishes or undoes what a holder killed
    /// halfway left.
    fn lock(&self, patience_ns: i64) -> Result<Held<'a>, Refusal> {
        let held = lock::hold(&self.words[LOCK], patience_ns).map_err(Refusal::Locked)?;
        self.recover(&held);
        Ok(held)
    }

    fn recover(&self, _held: &Held<'_>) {
        let (mut live, doing) = Work::unpack(self.words[WORK].load(SeqCst));
        if doing == 0 {
            return;
        }
        let i = (doing & Work::SLOT).wrapping_sub(1);
        if i >= self.geometry.slots {
            self.words[WORK].store(Work::pack(live, 0), SeqCst);
            return;
        }
        let slot = self.slot(i as usize);
        let m = slot[META].load(SeqCst);
        if doing & Work::ADDING != 0 && m & 3 != LIVE {
            // Killed before the key was published: the slot stays free.
            slot[META].store(meta(FREE, 0, meta_inc(m), 0), SeqCst);
            if doing & Work::COUNTED != 0 {
                live = live.saturating_sub(1);
            }
        }
        if doing & Work::DROPPING != 0 {
            let dropped = m & 3 == FREE
                || (m & 3 == LIVE && incarnation(slot[SCHEDULE].load(SeqCst)) != meta_inc(m));
            if dropped {
                let inc = incarnation(slot[SCHEDULE].load(SeqCst));
                slot[META].store(meta(FREE, 0, inc, 0), SeqCst);
                live = live.saturating_sub(1);
            }
        }
        self.words[WORK].store(Work::pack(live, 0), SeqCst);
    }

    /// Drops the key of incarnation `inc` in `slot` (the lock held): if
    /// `idle_at` is given, only if it is idle then. True if dropped.
    fn drop_key(&self, _held: &Held<'_>, i: usize, inc: u32, idle_at: Option<i64>) -> bool {
        let slot = self.slot(i);
        let (live, _) = Work::unpack(self.words[WORK].load(SeqCst));
        self.words[WORK].store(Work::pack(live, (i as u64 + 1) | Work::DROPPING), SeqCst);
        let next = inc.wrapping_add(1).max(1);
        let dropped = loop {
            let w = slot[SCHEDULE].load(SeqCst);
            if incarnation(w) != inc || idle_at.is_some_and(|now| !self.schedule.key_idle(w, now)) {
                break false;
            }
            let gone = u128::from(next) << 96;
            if slot[SCHEDULE]
                .compare_exchange(w, gone, SeqCst, SeqCst)
                .is_ok()
            {
                break true;
            }
        };
        if dropped {
            slot[META].store(meta(FREE, 0, next, 0), SeqCst);
            self.words[WORK].store(Work::pack(live.saturating_sub(1), 0), SeqCst);
        } else {
            self.words[WORK].store(Work::pack(live, 0), SeqCst);
        }
        dropped
    }

    /// Adds `key` (not found without the lock): its slot and incarnation.
    #[cold]
    /// Adds `key` (not found without the lock): its slot, its incarnation
    /// and the time (on `clock`, read under the lock) it was added as of.
    /// Whether a key is idle is judged at that time too: the caller's own
    /// reading may be old.
    fn add(
        &self,
        key: &Key,
        clock: &dyn Clock,
        patience_ns: i64,
    ) -> Result<(usize, u32, i64), Refusal> {
        let held = self.lock(patience_ns)?;
        let now = clock.now_ns();
        if let Some((slot, inc)) = self.find(key) {
            return Ok((slot, inc, now)); // added by another process meanwhile
        }
        // The first free slot of the key's window (before any never used),
        // and the first key there that may be dropped.
        let mut free = None;
        let mut idle = None;
        for i in self.window(key) {
            let m = self.slot(i)[META].load(SeqCst);
            match m & 3 {
                NEVER => {
                    free = free.or(Some(i));
                    break;
                }
                FREE | CLAIMING => free = free.or(Some(i)),
                _ if idle.is_none() => {
                    let w = self.slot(i)[SCHEDULE].load(SeqCst);
                    if incarnation(w) == meta_inc(m) && self.schedule.key_idle(w, now) {
                        idle = Some((i, meta_inc(m)));
                    }
                }
                _ => {}
            }
        }
        let full = self.live() >= self.geometry.capacity;
        let target = match (free, idle) {
            (Some(i), _) if !full => i,
            (_, Some((i, inc))) if self.drop_key(&held, i, inc, Some(now)) => {
                self.words[EVICTIONS].fetch_add(1, Relaxed);
                i
            }
            (Some(i), _) if self.evict_elsewhere(&held, key, now) => i,
            _ => return Err(Refusal::NoRoom(self.no_room(full))),
        };
        Ok((target, self.claim(&held, target, key, now), now))
    }

    fn no_room(&self, full: bool) -> String {
        let g = self.geometry;
        if full {
            format!(
                "the key table holds its capacity of {} keys, and each of them still holds \
                 back fuel (none is idle, so none may be dropped); nothing was taken",
                g.capacity
            )
        } else {
            format!(
                "the {} slots this key may go in (of {}) hold keys that still hold back fuel; \
                 nothing was taken (a larger capacity spreads keys wider)",
                PROBE.min(g.slots),
                g.slots
            )
        }
    }

    /// The table holds its capacity: drops the first idle key anywhere
    /// (from the new key's window on), to make room.
    fn evict_elsewhere(&self, held: &Held<'_>, key: &Key, now: i64) -> bool {
        let start = self.home(key);
        let slots = self.geometry.slots as usize;
        for k in 0..slots {
            let i = (start + k) & (slots - 1);
            let m = self.slot(i)[META].load(SeqCst);
            if m & 3 == LIVE && self.drop_key(held, i, meta_inc(m), Some(now)) {
                self.words[EVICTIONS].fetch_add(1, Relaxed);
                return true;
            }
        }
        false
    }

    /// Makes free slot `i` hold `key`, never used (the lock held): the new
    /// incarnation.
    fn claim(&self, _held: &Held<'_>, i: usize, key: &Key, now: i64) -> u32 {
        let slot = self.slot(i);
        let (live, _) = Work::unpack(self.words[WORK].load(SeqCst));
        let doing = (i as u64 + 1) | Work::ADDING;
        self.words[WORK].store(Work::pack(live, doing), SeqCst);
        let old = slot[META].load(SeqCst);
        let inc = meta_inc(old)
            .max(incarnation(slot[SCHEDULE].load(SeqCst)))
            .wrapping_add(1)
            .max(1);
        slot[META].store(meta(CLAIMING, 0, inc, 0), SeqCst);
        for (j, w) in key.words.iter().enumerate() {
            slot[KEY + j].store(*w, Relaxed);
        }
        slot[GRANTED].store(0, Relaxed);
        slot[FIRST_USE].store(u128::from(now as u64), Relaxed);
        self.schedule.key_init(&self.state(i), inc, now);
        self.words[WORK].store(Work::pack(live + 1, doing | Work::COUNTED), SeqCst);
        slot[META].store(meta(LIVE, key.len, inc, key.hash), Release);
        self.words[WORK].store(Work::pack(live + 1, 0), SeqCst);
        self.words[INSERTED].fetch_add(1, Relaxed);
        inc
    }
}

/// Fills `buf` from the kernel's random source.
fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

impl std::fmt::Debug for Table<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("geometry", &self.geometry)
            .field("live", &self.live())
            .finish()
    }
}

// Slots and their rings start on cache lines (4 words of 16 bytes).
const _: () = assert!(SLOT_WORDS % 4 == 0 && HEADER_WORDS % 4 == 0);
