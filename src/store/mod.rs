//! The store interface: where a throttle's shared state lives, seen from
//! the waiting policy ([`crate::throttle`]) as *what* it does, never *how*.
//!
//! A [`Throttle`](crate::throttle::Throttle) holds a store and keeps the
//! rest for itself: the clock, when to spin and when to sleep, cancellation,
//! and the monitor thread. The store keeps the state that every process (or
//! host) shares:
//!
//! - the run state: [`start`](crate::store::Store::start), [`stop`](crate::store::Store::stop),
//!   [`kill`](crate::store::Store::kill), the phase and the run's number;
//! - the fuel: [`reserve`](crate::store::Store::reserve) n units before a deadline (a
//!   ticket whose grant is now or later, or nothing), following the rate
//!   changes a waiter sleeps through ([`follow`](crate::store::Store::follow)), giving
//!   units back, confirming a grant; settling a change of rate that
//!   another process left half made happens inside the store;
//! - the rate: [`set_rate`](crate::store::Store::set_rate), [`rate`](crate::store::Store::rate),
//!   [`peek`](crate::store::Store::peek);
//! - waking: an epoch that every change moves on, sleeping until it moves
//!   or a deadline, waking every sleeper (in every process that shares the
//!   store: the wake may come from outside this process);
//! - emissions in ([`emit`](crate::store::Store::emit)) and figures out
//!   ([`figures`](crate::store::Store::figures)), with the calls the monitor uses to
//!   drain the one and publish the other.
//!
//! Shaped for stores that can fail and live elsewhere: every call that
//! reaches the state returns a [`Result`](crate::error::Result), whose [`Error::Unreachable`]
//! says the store could not be reached (the shared-memory store never
//! returns it); a grant instant is in the caller's clock (the `now` the
//! caller passes in); and sleepers are woken through the store.
//!
//! Dispatch is static: `Throttle<S: Store>`, so the fast path of the
//! shared-memory store ([`shm::ShmStore`](crate::store::shm::ShmStore)) compiles to the same code as
//! if it were written inline. `docs/design.md` ("The store interface")
//! says how a second store plugs in.
//!
//! [`Error::Unreachable`]: crate::error::Error::Unreachable

#[cfg(feature = "redis")]
pub mod redis;
pub mod shm;

use crate::cancel::Wakeable;
use crate::clock::Clock;
use crate::error::Result;
use crate::schedule::{Follow, Rate, Ticket};
use crate::wait::Wake;

/// A throttle's shared state (see the module documentation). Every method
/// takes `&self`: a store is shared by all the threads of a process, and by
/// its monitor thread.
pub trait Store: Wakeable + Send + Sync + Sized + 'static {
    /// The monitor's private place in the emissions it drains.
    type Cursor: Default + Send;

    /// Whether the state is across a network: every reservation is a round
    /// trip, so a waiter reserves once, up to its deadline, rather than
    /// first trying the tank now (the shared-memory store's fast path).
    const REMOTE: bool = false;

    // ---- Run state.

    /// Whether the throttle runs (started and not stopped).
    fn is_running(&self) -> bool;
    /// The number of the current (or last) run; a reservation made in an
    /// earlier run is void.
    fn run_id(&self) -> u32;
    /// Whether the kill flag is set.
    fn kill_flag(&self) -> bool;
    /// Sets the kill flag and wakes every sleeper.
    fn kill(&self);
    /// Whether run `run_id` is over for its waiters: killed, or another run
    /// began.
    fn run_over(&self, run_id: u32) -> bool;
    /// Starts a run at `now`: opens the tank (`as_throttle`) and the
    /// emissions, clears the kill flag, wakes every sleeper. Returns the
    /// new run's number. `WrongState` if it runs, or another process is
    /// starting or stopping it.
    fn start(&self, now: i64, as_throttle: bool) -> Result<u32>;
    /// Ends the current run at `now`: sets the kill flag, closes the
    /// emissions (the totals are final), adds the run's time to the
    /// runtime, wakes every sleeper. `WrongState` unless it runs.
    fn stop(&self, now: i64) -> Result<()>;
    /// Running time of the finished runs, and when the current (or last)
    /// run started.
    fn runtime(&self) -> (i64, i64);

    // ---- Fuel.

    /// Reserves `n` units at `now` that are due no later than `latest`: the
    /// ticket (its grant is now or later), or `None`. A change of rate
    /// being made is waited for, up to `latest` on `clock`.
    fn reserve(&self, n: u64, now: i64, latest: i64, clock: &dyn Clock) -> Result<Option<Ticket>>;
    /// Follows `ticket` through the changes of rate made since it was made
    /// or last followed. [`Follow::Wait`]: a change was being made until
    /// `deadline` on `clock` (the caller times out).
    fn follow(&self, ticket: &mut Ticket, deadline: i64, clock: &dyn Clock) -> Result<Follow>;
    /// Whether the queue has come to the place of a waiter whose units a
    /// change made void ([`Follow::Lost`]).
    fn turn_reached(&self, ticket: &Ticket) -> bool;
    /// Gives back the units of `ticket` if `still` holds for their grant
    /// time once followed, so that every waiter behind moves up (a GCRA
    /// give-back is recorded at `clock`'s time).
    fn give_back(
        &self,
        ticket: &mut Ticket,
        still: &dyn Fn(i64) -> bool,
        clock: &dyn Clock,
    ) -> GivenBack;
    /// Marks the units of `ticket` as granted (the waiter has them).
    fn confirm(&self, ticket: Ticket);
    /// Units the tank holds at most at the rate in force; `None` unbounded.
    fn capacity(&self) -> Result<Option<u64>>;

    // ---- The rate.

    /// Changes the rate, from the instant `clock` gives once the change can
    /// be made; waiters follow it at once.
    fn set_rate(&self, rate: Rate, clock: &dyn Clock) -> Result<()>;
    /// The rate in force.
    fn rate(&self) -> Result<Rate>;
    /// `(units in the tank now, ns until n units would be)`, looking
    /// without taking; queued waiters come first.
    fn peek(&self, n: u64, clock: &dyn Clock) -> Result<(u64, i64)>;

    // ---- Waking.

    /// The wake-up epoch: every change that a sleeper must see moves it on.
    fn epoch(&self) -> u32;
    /// Sleeps until the epoch moves on from `epoch`, or `deadline` (clock
    /// ns) passes.
    fn sleep(&self, epoch: u32, deadline: Option<i64>) -> Wake;
    /// How many threads sleep in [`sleep`](Self::sleep) now, in every
    /// process (a monitor thread between refreshes included); a waiter
    /// that spins towards its grant is not counted.
    fn sleepers(&self) -> u32;

    // ---- Emissions in, figures out.

    /// Counts one emission at `at`; false (nothing counted) once a stop
    /// has closed the emissions of the run.
    fn emit(&self, at: i64) -> bool;
    /// Emissions ever counted.
    fn total_emissions(&self) -> u64;
    /// What the monitor last published.
    fn figures(&self) -> Figures;
    /// The monitor: moves every emission not yet drained into `add`;
    /// returns how many were counted without a time to read.
    fn drain(&self, cursor: &mut Self::Cursor, add: &mut dyn FnMut(i64)) -> u64;
    /// The monitor: publishes its figures, and, with `heartbeat_ns`, that
    /// it was alive then (monotonic clock).
    fn publish(
        &self,
        latest: u64,
        lo_ns: Option<i64>,
        hi_ns: Option<i64>,
        heartbeat_ns: Option<i64>,
    );
    /// The monitor: counts emissions it could not read.
    fn note_lost(&self, lost: u64);
    /// The monitor's state changes, in this process: `Running` records this
    /// process as the monitor's; `Idle` is recorded only if the store still
    /// names this process (a later run's monitor may have taken over).
    fn set_monitor(&self, status: MonitorStatus);
}

/// The figures the monitor publishes, and what readers learn of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Emissions of the last second.
    pub latest: u64,
    /// Shortest interval between emissions, ns, if two were seen.
    pub lo_ns: Option<i64>,
    /// Longest interval between emissions, ns, if two were seen.
    pub hi_ns: Option<i64>,
    /// When the monitor last published (monotonic clock, ns).
    pub heartbeat_ns: i64,
    /// The monitor's state.
    pub status: MonitorStatus,
    /// The process whose thread is the monitor (0: none).
    pub monitor_pid: u32,
}

/// The state of a throttle's monitor thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MonitorStatus {
    /// None runs.
    #[default]
    Idle,
    /// One runs (in the process [`Figures::monitor_pid`] names).
    Running,
    /// It panicked: the figures stopped at that moment.
    Panicked,
}

/// What became of units a waiter gave back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GivenBack {
    /// Given back: the waiters behind moved up.
    Done,
    /// Not: followed, they no longer met the condition (a change brought
    /// them back in time), or were lost or corrupt.
    NotOurs,
    /// Not: the store could not take them now (its change lock stayed
    /// busy); they stay taken.
    Stuck,
}

/// The store of a keyed throttle: each key's own schedule (see
/// [`crate::keyed`]). Keys are at most [`crate::keyed::KEY_MAX`] bytes
/// (the caller checks).
pub trait KeyedStore: Store {
    /// Reserves `n` units of `key` at `now`, granted no later than
    /// `latest`: the grant, or `None` (later than that, or the throttle
    /// does not run). A new key is added (`NoRoom` if there is no room).
    fn key_reserve(
        &self,
        key: &[u8],
        n: u64,
        now: i64,
        latest: i64,
        clock: &dyn Clock,
    ) -> Result<Option<KeyGrant>>;
    /// Gives back the units of `grant` if nothing was reserved on its key
    /// after them.
    fn key_give_back(&self, key: &[u8], n: u64, grant: &KeyGrant);
    /// `(units in key's tank now, ns until n units are)`.
    fn key_peek(&self, key: &[u8], n: u64, clock: &dyn Clock) -> Result<(u64, i64)>;
    /// Drops `key` whatever its state; true if it was there.
    fn key_forget(&self, key: &[u8]) -> Result<bool>;
    /// The figures of `key`, if it is there.
    fn key_figures(&self, key: &[u8]) -> Result<Option<KeyFigures>>;
    /// The figures of the whole table.
    fn table_figures(&self) -> Result<TableFigures>;
}

/// Units reserved on a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyGrant {
    /// When they are granted (the caller's clock, ns).
    pub grant: i64,
    /// What the store needs to give them back.
    pub(crate) token: KeyToken,
}

/// What a store needs to give back units reserved on a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyToken {
    /// The shared-memory table: the slot and the schedule's ticket.
    Slot(usize, crate::schedule::key::KeyTicket),
    /// Redis: the run, and the key's TAT after the units.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Remote(u32, i64, i64),
}

/// One key's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyFigures {
    /// Units granted to the key since it was added.
    pub granted: u64,
    /// When it was added (clock ns).
    pub since_ns: i64,
}

/// A keyed throttle's table, in figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableFigures {
    /// Keys held now.
    pub live: u64,
    /// The most keys held (0: no bound, the store forgets idle keys by
    /// itself).
    pub capacity: u64,
    /// Idle keys dropped (to make room, or once idle), ever.
    pub evictions: u64,
    /// Keys added, ever.
    pub added: u64,
}
