package mpthrottle

/*
#include <stdlib.h>
#include <mp_throttle.h>
*/
import "C"

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"
)

// A Keyed is a handle on a keyed throttle (mpt_keyed_*): one configuration,
// maxN units of fuel per period and the options, and a table of up to
// capacity keys, each with a schedule of its own: per host, per user, per
// API token... A key at its limit never slows another. Like a Throttle, a
// Keyed made by NewKeyed is shared by the goroutines of this process (and
// the children it forks), one made by CreateNamedKeyed by every process
// that opens the name with OpenKeyed, in any language, and one made by
// ConnectKeyed lives in a Redis server and is shared by every process
// connected to it, on any host.
//
// Keys are strings of 0 to KeyMax bytes, any bytes (a Go string may hold
// NUL bytes, and they are part of the key); a []byte key b is string(b). A
// key never seen has a full tank (maxN units for HardcapLimit, 1 for
// HardcapOne), an empty window (HardcapWindow), so its first request goes
// at once; HardcapNone counts a key's units from its first use.
//
// The table. A new key is added to the table by the first call that takes
// fuel for it (AwaitFuel*, HasFuel*). When the table holds capacity keys
// (or the slots a new key may go in are all taken), a key is dropped to
// make room only if it behaves exactly like a key never seen (its tank
// full again; no grant in the last period for HardcapWindow): dropping it
// changes nothing. A key that still holds back fuel is never dropped: if
// none may be, the call for the new key returns an error matching
// ErrNoRoom and takes nothing. The header mp_throttle.h gives the whole
// rule at mpt_keyed_new. A Keyed in Redis (ConnectKeyed) has no table: each
// key is a Redis key that expires once idle, and ErrNoRoom never comes.
//
// All methods are safe for concurrent use. Close and the finalizer work as
// for a Throttle.
type Keyed struct {
	h    handle
	name string
	// state and closing as in Throttle: bit 62 of state is set by Close,
	// the low bits count the calls in progress; closing ends the waits
	// with a cancellable context.
	state   atomic.Int64
	closing chan struct{}
}

// NewKeyed makes a keyed throttle of maxN units of fuel per period for each
// key, with a table of up to capacity keys, private to this process and the
// children it forks after this (mpt_keyed_new). Nothing runs until Start.
// The table is made whole at once: about 1.25 * capacity slots of 192
// bytes, rounded up to a power of two (and 16 bytes per grant time a
// HardcapWindow key keeps).
//
// maxN: 1 to KeyedMaxN (KeyedMaxWindow with HardcapWindow); per at least
// 1 ns; capacity: 1 to KeyedMaxCapacity. The options are those of New, but
// AsThrottle(false), which a keyed throttle refuses; with auto-emit (the
// default) each grant counts one emission of the whole keyed throttle.
// Invalid values and options return an error matching ErrInvalidArgument.
func NewKeyed(maxN uint64, per time.Duration, capacity uint64, opts ...Option) (*Keyed, error) {
	const op = "NewKeyed"
	o, err := collect(opts).toC(op)
	if err != nil {
		return nil, err
	}
	res := cKeyedNew(maxN, per.Seconds(), capacity, o)
	if err := res.err(op); err != nil {
		return nil, err
	}
	return wrapKeyed(res.r.throttle, ""), nil
}

// CreateNamedKeyed creates the named keyed throttle name, which any process
// of the same user can open with OpenKeyed, in any language
// (mpt_keyed_create_named). If it exists with the same configuration
// (capacity included) it is opened instead; with another configuration,
// or if name is a plain throttle's (CreateNamed), the error matches
// ErrMismatch. Named keyed throttles share the names of plain ones: Unlink
// removes one. name, maxN, per, capacity and the options as for CreateNamed
// and NewKeyed.
func CreateNamedKeyed(name string, maxN uint64, per time.Duration, capacity uint64, opts ...Option) (*Keyed, error) {
	const op = "CreateNamedKeyed"
	o, err := collect(opts).toC(op)
	if err != nil {
		return nil, err
	}
	cname, err := cString(op, name)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cname))
	res := cKeyedCreateNamed(cname, maxN, per.Seconds(), capacity, o)
	if err := res.err(op); err != nil {
		return nil, err
	}
	return wrapKeyed(res.r.throttle, name), nil
}

// OpenKeyed opens the named keyed throttle name, adopting its
// configuration (mpt_keyed_open), under the rules of Open: only the
// options TimerSlack, Spin and GroupShared apply; an unknown name gives
// ErrNotFound; a plain throttle's name, ErrMismatch.
func OpenKeyed(name string, opts ...Option) (*Keyed, error) {
	const op = "OpenKeyed"
	c := collect(opts)
	if !c.onlyWaitOptions() {
		return nil, newError(op, StatusInvalidArgument,
			"only the options TimerSlack, Spin and GroupShared apply to OpenKeyed: the throttle's own configuration is adopted")
	}
	o, err := c.toC(op)
	if err != nil {
		return nil, err
	}
	cname, err := cString(op, name)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cname))
	res := cKeyedOpen(cname, o)
	if err := res.err(op); err != nil {
		return nil, err
	}
	return wrapKeyed(res.r.throttle, name), nil
}

// ConnectKeyed creates the keyed throttle name in the Redis server at url,
// or joins it if it exists there with the same configuration
// (mpt_keyed_connect): processes on any number of hosts, each with its own
// Keyed, share each key's schedule, as Connect shares a plain throttle's
// rate. The Keyed is like any other: every method works on it; Close
// releases this process's connection and leaves the keyed throttle in
// Redis until UnlinkURL, which removes either kind.
//
// Each key is a Redis key of the throttle, with an expiry at the instant
// the key is idle again (its tank full, its window empty), so Redis forgets
// idle keys by itself: there is no table, no capacity (Config and Stats
// report a Capacity of 0) and never ErrNoRoom; Stats' Evictions counts the
// keys that went idle. Every reservation is one round trip to the server.
// Units given back (a waiter cancelled or killed) go back only if nothing
// was reserved on the key after them, and never with HardcapWindow.
//
// url, name, per, the options and the errors as for Connect (per a whole
// number of microseconds; a URL or name with a NUL byte, ErrInvalidArgument;
// nothing answering, ErrUnreachable; another configuration, ErrMismatch);
// maxN as for NewKeyed, at most KeyedMaxN. A plain throttle of that name
// (Connect) is ErrMismatch too, and a plain Connect to a keyed name. As for
// Connect, the Keyed must not be used in a child of fork(): connect again
// there.
func ConnectKeyed(url, name string, maxN uint64, per time.Duration, opts ...Option) (*Keyed, error) {
	const op = "ConnectKeyed"
	o, err := collect(opts).toC(op)
	if err != nil {
		return nil, err
	}
	curl, err := cText(op, "URL", url)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(curl))
	cname, err := cString(op, name)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cname))
	res := cKeyedConnect(curl, cname, maxN, per.Seconds(), o)
	if err := res.err(op); err != nil {
		return nil, err
	}
	return wrapKeyed(res.r.throttle, name), nil
}

func wrapKeyed(h handle, name string) *Keyed {
	k := &Keyed{h: h, name: name, closing: make(chan struct{})}
	runtime.SetFinalizer(k, (*Keyed).finalize)
	return k
}

// Name is the name of a named keyed throttle (CreateNamedKeyed, OpenKeyed)
// or of a keyed throttle in Redis (ConnectKeyed), "" for one made by
// NewKeyed.
func (k *Keyed) Name() string { return k.name }

// acquire registers a call in progress; it fails once Close was called.
func (k *Keyed) acquire(op string) (handle, error) {
	for {
		s := k.state.Load()
		if s&closedBit != 0 {
			return 0, closedErrorOf(op, "Keyed")
		}
		if k.state.CompareAndSwap(s, s+1) {
			return k.h, nil
		}
	}
}

// release ends a call in progress; the last one after Close frees.
func (k *Keyed) release() {
	if k.state.Add(-1) == closedBit {
		k.free()
	}
}

// keyedFreed counts the keyed handles freed, for the tests.
var keyedFreed atomic.Int64

func (k *Keyed) free() error {
	h := k.h
	k.h = 0
	keyedFreed.Add(1)
	return cKeyedFree(h).err("Close")
}

// Close releases this process's handle (mpt_keyed_free), as Throttle's
// Close: it does not stop the keyed throttle, is idempotent and does not
// block; an AwaitFuel with a context that can be cancelled ends at once
// with an error matching ErrClosed, taking nothing; every later call
// returns such an error.
func (k *Keyed) Close() error {
	for {
		s := k.state.Load()
		if s&closedBit != 0 {
			return nil
		}
		if k.state.CompareAndSwap(s, s|closedBit) {
			runtime.SetFinalizer(k, nil)
			close(k.closing)
			if s == 0 {
				return k.free()
			}
			return nil
		}
	}
}

func (k *Keyed) finalize() { _ = k.Close() }

// Start starts or resumes the whole keyed throttle (mpt_keyed_start), as
// Throttle's Start. Keys keep their schedules across a Stop and a Start.
// Already running: ErrWrongState.
func (k *Keyed) Start() error {
	const op = "Start"
	h, err := k.acquire(op)
	if err != nil {
		return err
	}
	defer k.release()
	return cKeyedStart(h).err(op)
}

// Stop stops (pauses) the whole keyed throttle (mpt_keyed_stop): every
// waiter on every key, in every process, returns ErrKilled; the totals
// over every key are reported. Not running: ErrWrongState.
func (k *Keyed) Stop() (Summary, error) {
	const op = "Stop"
	h, err := k.acquire(op)
	if err != nil {
		return Summary{}, err
	}
	defer k.release()
	res := cKeyedStop(h)
	if err := res.err(op); err != nil {
		return Summary{}, err
	}
	return res.summary(), nil
}

// Kill sets the kill flag of the whole keyed throttle (mpt_keyed_kill):
// every waiter on every key returns ErrKilled at once, and so does every
// later call that takes fuel, until the next Start.
func (k *Keyed) Kill() error {
	const op = "Kill"
	h, err := k.acquire(op)
	if err != nil {
		return err
	}
	defer k.release()
	return cKeyedKill(h).err(op)
}

// IsRunning reports whether the keyed throttle runs (started, not stopped).
func (k *Keyed) IsRunning() (bool, error) {
	const op = "IsRunning"
	h, err := k.acquire(op)
	if err != nil {
		return false, err
	}
	defer k.release()
	res := cKeyedIsRunning(h)
	return bool(res.r.flag), res.err(op)
}

// KillFlagIsSet reports whether the kill flag of the keyed throttle is set
// (mpt_keyed_kill_flag_is_set): by Kill or Stop, in any process (for a
// Keyed in Redis, on any host, or by UnlinkURL), until the next Start.
func (k *Keyed) KillFlagIsSet() (bool, error) {
	const op = "KillFlagIsSet"
	h, err := k.acquire(op)
	if err != nil {
		return false, err
	}
	defer k.release()
	res := cKeyedKillFlagIsSet(h)
	return bool(res.r.flag), res.err(op)
}

// KeyedConfig is a keyed throttle's configuration, as Config reports it
// (mpt_keyed_get_config).
type KeyedConfig struct {
	// MaxN units of fuel per Per: the rate of each key.
	MaxN uint64
	Per  time.Duration
	// Capacity is the most keys the table holds; 0 for a Keyed in Redis
	// (no bound).
	Capacity uint64
	// Created: this handle made the keyed throttle (NewKeyed, or a
	// CreateNamedKeyed or ConnectKeyed that found nothing there) rather
	// than opened or joined one; the creator usually starts it and owns
	// its removal.
	Created bool
	// The options it was made with (by its creator, for one opened by
	// name or joined in Redis): the values of WithHardcap, AsMonitor,
	// AutoEmit (resolved: its default is true for a keyed throttle),
	// Refresh and GroupShared (false for one not made by name).
	Hardcap     Hardcap
	AsMonitor   bool
	AutoEmit    bool
	Refresh     time.Duration
	GroupShared bool
	// TimerSlack and Spin are this handle's own (how this process waits),
	// as given to the call that made the handle, or their defaults.
	TimerSlack time.Duration
	Spin       time.Duration
}

// Config reports the configuration of the keyed throttle and whether this
// handle made it (mpt_keyed_get_config). It never blocks, and needs no
// round trip for a Keyed in Redis.
func (k *Keyed) Config() (KeyedConfig, error) {
	const op = "Config"
	h, err := k.acquire(op)
	if err != nil {
		return KeyedConfig{}, err
	}
	defer k.release()
	res, c := cKeyedGetConfig(h)
	if err := res.err(op); err != nil {
		return KeyedConfig{}, err
	}
	return c, nil
}

// Rate is the rate of each key, maxN units of fuel per per, as Throttle's
// Rate reports a plain throttle's: Config's MaxN and Per (a keyed
// throttle's rate does not change).
func (k *Keyed) Rate() (maxN uint64, per time.Duration, err error) {
	const op = "Rate"
	h, err := k.acquire(op)
	if err != nil {
		return 0, 0, err
	}
	defer k.release()
	res, c := cKeyedGetConfig(h)
	if err := res.err(op); err != nil {
		return 0, 0, err
	}
	return c.MaxN, c.Per, nil
}

// AwaitFuel blocks until a unit of the fuel of key is granted (nil), the
// kill flag is set (ErrKilled), or ctx is done, exactly as Throttle's
// AwaitFuel does on the key's own schedule
// (mpt_keyed_await_fuel_cancellable): waiters on one key are served first
// come, first served, in every process; a ctx's deadline is the timeout
// (ErrTimeout and context.DeadlineExceeded); a cancellation ends the wait
// at once (ErrCancelled and context.Canceled), and so does Close
// (ErrClosed). A waiter cancelled while it sleeps gives its units back if
// nothing was reserved on its key after them (HardcapLimit, HardcapOne,
// HardcapNone); otherwise, and always with HardcapWindow, they stay taken,
// which can only make the key's schedule stricter.
//
// A key new to the table is added to it; with no room for it the error
// matches ErrNoRoom, at once, and nothing was taken. A key of more than
// KeyMax bytes: ErrInvalidArgument.
func (k *Keyed) AwaitFuel(ctx context.Context, key string) error {
	_, err := k.await("AwaitFuel", ctx, key, 1)
	return err
}

// AwaitFuelGrant is AwaitFuel that also returns the grant time (see
// Throttle's AwaitFuelGrant).
func (k *Keyed) AwaitFuelGrant(ctx context.Context, key string) (int64, error) {
	return k.await("AwaitFuel", ctx, key, 1)
}

// AwaitFuelN is AwaitFuel for n units of key's fuel granted all at once.
// n must be from 1 to what a key's tank holds: maxN (HardcapLimit,
// HardcapWindow), 1 (HardcapOne), any (HardcapNone); another n returns an
// error matching ErrInvalidArgument at once.
func (k *Keyed) AwaitFuelN(ctx context.Context, key string, n uint64) error {
	_, err := k.await("AwaitFuelN", ctx, key, n)
	return err
}

// AwaitFuelNGrant is AwaitFuelN that also returns the grant time.
func (k *Keyed) AwaitFuelNGrant(ctx context.Context, key string, n uint64) (int64, error) {
	return k.await("AwaitFuelN", ctx, key, n)
}

func (k *Keyed) await(op string, ctx context.Context, key string, n uint64) (int64, error) {
	timeout, err := waitTimeout(op, ctx)
	if err != nil {
		return 0, err
	}
	ck, err := cKey(op, key)
	if err != nil {
		return 0, err
	}
	h, err := k.acquire(op)
	if err != nil {
		return 0, err
	}
	defer k.release()
	done := ctx.Done()
	var res result
	why := 0
	if done == nil {
		// Nothing can cancel the wait: no token, no goroutine.
		res = cKeyedAwaitFuel(h, ck, n, timeout, 0)
	} else {
		// Fuel there now: no token, no goroutine (as Throttle's await).
		res = cKeyedAwaitFuel(h, ck, n, 0, 0)
		if res.status == StatusTimeout && timeout != 0 {
			res, why, err = cancellableWait(done, k.closing, func(c token) result {
				return cKeyedAwaitFuel(h, ck, n, timeout, c)
			})
			if err != nil {
				return 0, err
			}
		}
	}
	return awaitResult(op, "Keyed", ctx, res, why)
}

// HasFuel takes a unit of key's fuel if its tank holds one now, and never
// blocks (mpt_keyed_has_fuel): true if it took one; false, nil if the tank
// is empty or the keyed throttle not started. The kill flag set: false,
// ErrKilled; a new key and no room for it: false, ErrNoRoom (nothing
// taken).
func (k *Keyed) HasFuel(key string) (bool, error) { return k.hasFuel("HasFuel", key, 1) }

// HasFuelN is HasFuel for n units taken all at once (n as for AwaitFuelN).
func (k *Keyed) HasFuelN(key string, n uint64) (bool, error) { return k.hasFuel("HasFuelN", key, n) }

func (k *Keyed) hasFuel(op, key string, n uint64) (bool, error) {
	ck, err := cKey(op, key)
	if err != nil {
		return false, err
	}
	h, err := k.acquire(op)
	if err != nil {
		return false, err
	}
	defer k.release()
	res := cKeyedHasFuel(h, ck, n)
	switch res.status {
	case StatusOK:
		return true, nil
	case StatusNoFuel:
		return false, nil
	}
	return false, res.err(op)
}

// Peek looks at key's tank without taking anything and without adding the
// key to the table (mpt_keyed_peek): level is the number of units in it
// now, wait how long a waiter arriving now would wait for n units, after
// the waiters already queued on the key. A key not in the table is a key
// never seen (a full tank). Not started: ErrNotRunning; killed: ErrKilled.
func (k *Keyed) Peek(key string, n uint64) (level uint64, wait time.Duration, err error) {
	const op = "Peek"
	ck, err := cKey(op, key)
	if err != nil {
		return 0, 0, err
	}
	h, err := k.acquire(op)
	if err != nil {
		return 0, 0, err
	}
	defer k.release()
	res := cKeyedPeek(h, ck, n)
	if err := res.err(op); err != nil {
		return 0, 0, err
	}
	return uint64(res.r.u64), seconds(float64(res.r.f64)), nil
}

// Forget drops key from the table, whatever its state
// (mpt_keyed_forget): its next use starts afresh, as a key never seen,
// which may let through what its schedule still held back (eviction never
// does that; Forget is asked for). Waiters asleep on it keep their grant
// times. found reports whether the key was in the table.
func (k *Keyed) Forget(key string) (found bool, err error) {
	const op = "Forget"
	ck, err := cKey(op, key)
	if err != nil {
		return false, err
	}
	h, err := k.acquire(op)
	if err != nil {
		return false, err
	}
	defer k.release()
	res := cKeyedForget(h, ck)
	if err := res.err(op); err != nil {
		return false, err
	}
	return bool(res.r.flag), nil
}

// KeyStats is what KeyStats reports of one key (mpt_key_stats).
type KeyStats struct {
	// InTable: the key is in the table. False if it was never used,
	// forgotten, or dropped once idle; the other fields are 0 then.
	InTable bool
	// Granted counts the units of fuel granted to the key since it was
	// added to the table.
	Granted uint64
	// AddedAt is when the key was added, a CLOCK_MONOTONIC nanosecond (see
	// ClockNow).
	AddedAt int64
}

// KeyedStats is what Stats reports of the whole keyed throttle
// (mpt_keyed_stats).
type KeyedStats struct {
	// LiveKeys counts the keys in the table now.
	LiveKeys uint64
	// Capacity is the most keys the table holds (as made); 0 for a Keyed
	// in Redis (no bound).
	Capacity uint64
	// Evictions counts the idle keys dropped to make room for new ones,
	// ever (in Redis: the keys that expired once idle).
	Evictions uint64
	// Added counts the keys added to the table, ever (a key dropped and
	// used again counts twice).
	Added uint64
	// Summary holds the totals over every key, as Throttle's Summary.
	Summary Summary
}

// KeyStats reports the figures of key (mpt_keyed_key_stats); it never adds
// the key to the table.
func (k *Keyed) KeyStats(key string) (KeyStats, error) {
	const op = "KeyStats"
	ck, err := cKey(op, key)
	if err != nil {
		return KeyStats{}, err
	}
	h, err := k.acquire(op)
	if err != nil {
		return KeyStats{}, err
	}
	defer k.release()
	res := cKeyedKeyStats(h, ck)
	if err := res.err(op); err != nil {
		return KeyStats{}, err
	}
	return KeyStats{InTable: bool(res.r.flag), Granted: uint64(res.r.u64), AddedAt: int64(res.r.i64)}, nil
}

// Stats reports the figures of the whole keyed throttle
// (mpt_keyed_get_stats): the keys in the table, its capacity, the keys
// dropped and added, and the totals over every key. It needs no monitor.
func (k *Keyed) Stats() (KeyedStats, error) {
	const op = "Stats"
	h, err := k.acquire(op)
	if err != nil {
		return KeyedStats{}, err
	}
	defer k.release()
	res, stats := cKeyedGetStats(h)
	if err := res.err(op); err != nil {
		return KeyedStats{}, err
	}
	return stats, nil
}

func (k *Keyed) rate(op string, which rateKind) (Rate, error) {
	h, err := k.acquire(op)
	if err != nil {
		return Rate{}, err
	}
	defer k.release()
	res := cKeyedRate(h, which)
	if err := res.err(op); err != nil {
		return Rate{}, err
	}
	return res.rate(), nil
}

// Latest is the rate of the last second over every key, as Throttle's
// Latest (mpt_keyed_latest). Without a monitor: ErrMonitorOff.
func (k *Keyed) Latest() (Rate, error) { return k.rate("Latest", rateLatest) }

// Mean is the mean over the whole running time, over every key
// (mpt_keyed_mean).
func (k *Keyed) Mean() (Rate, error) { return k.rate("Mean", rateMean) }
