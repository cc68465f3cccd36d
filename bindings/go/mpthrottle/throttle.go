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

// A Throttle is a handle on a throttle: maxN units of fuel per period,
// shared by every goroutine of this process and, for a named throttle, by
// every process that opened the name; for a throttle in Redis (Connect), by
// every process connected to it, on any host.
//
// All methods are safe for concurrent use. Close releases the handle; a
// finalizer releases it too if a Throttle becomes unreachable unclosed, but
// relying on it keeps the handle (and for a throttle this process started,
// its monitor thread) alive until the garbage collector runs.
type Throttle struct {
	h    handle
	name string
	// state: bit 62 is set by Close; the low bits count the calls in
	// progress. The handle is freed exactly once, by whichever of Close and
	// the last call in progress finds the count at zero with the bit set,
	// so Close never frees a handle that another goroutine is using (the C
	// library forbids it) and never waits for one.
	state atomic.Int64
	// closing is closed by Close: it ends the waits with a cancellable
	// context in progress (their watcher fires their token).
	closing chan struct{}
}

const closedBit = int64(1) << 62

// New makes a throttle of maxN units of fuel per period, private to this
// process (mpt_throttle_new). Nothing runs until Start.
//
// maxN must be at least 1; per at least 1 ns. Invalid values and options
// return an error matching ErrInvalidArgument.
func New(maxN uint64, per time.Duration, opts ...Option) (*Throttle, error) {
	const op = "New"
	o, err := collect(opts).toC(op)
	if err != nil {
		return nil, err
	}
	res := cNew(maxN, per.Seconds(), o)
	if err := res.err(op); err != nil {
		return nil, err
	}
	return wrap(res.r.throttle, ""), nil
}

// CreateNamed creates the named throttle name, which any process of the same
// user can Open, in any language (mpt_throttle_create_named). If it exists
// with the same configuration it is opened instead; with another
// configuration the error matches ErrMismatch. The name lives until Unlink.
//
// name: 1 to MaxNameLen bytes of UTF-8 without '/'.
func CreateNamed(name string, maxN uint64, per time.Duration, opts ...Option) (*Throttle, error) {
	const op = "CreateNamed"
	o, err := collect(opts).toC(op)
	if err != nil {
		return nil, err
	}
	cname, err := cString(op, name)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cname))
	res := cCreateNamed(cname, maxN, per.Seconds(), o)
	if err := res.err(op); err != nil {
		return nil, err
	}
	return wrap(res.r.throttle, name), nil
}

// Open opens the named throttle name, made by CreateNamed in this or any
// other process, adopting its configuration (mpt_throttle_open). Only the
// options TimerSlack and Spin (how this process waits) and GroupShared
// apply; any other option is an error matching ErrInvalidArgument. An
// unknown name gives ErrNotFound; another user's throttle,
// ErrPermissionDenied (unless shared with this process's group, see
// GroupShared).
func Open(name string, opts ...Option) (*Throttle, error) {
	const op = "Open"
	c := collect(opts)
	if !c.onlyWaitOptions() {
		return nil, newError(op, StatusInvalidArgument,
			"only the options TimerSlack, Spin and GroupShared apply to Open: the throttle's own configuration is adopted")
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
	res := cOpen(cname, o)
	if err := res.err(op); err != nil {
		return nil, err
	}
	return wrap(res.r.throttle, name), nil
}

// Unlink removes the name of a named throttle (mpt_throttle_unlink).
// Processes that have it open keep using it; a later CreateNamed of the
// same name makes a new throttle. An unknown name gives ErrNotFound.
func Unlink(name string) error {
	const op = "Unlink"
	cname, err := cString(op, name)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cname))
	return cUnlink(cname).err(op)
}

// Connect creates the throttle name in the Redis server at url, or joins it
// if it exists there with the same configuration (mpt_throttle_connect):
// processes on any number of hosts, each with its own Throttle, share one
// rate. The server makes every decision, on its own clock. The Throttle is
// like any other: every method works on it; Close releases this process's
// connection and leaves the throttle in Redis until UnlinkURL.
//
// url: redis://[user[:password]@]host[:port][/db] or
// redis+unix:///path/to/socket (messages show it without the password).
// name: 1 to 200 bytes of UTF-8 without '{' or '}'. maxN, per and the
// options as for CreateNamed, with per a whole number of microseconds
// (ErrInvalidArgument otherwise); they are the throttle's configuration
// (TimerSlack and Spin excepted), and joining it with another one gives an
// error matching ErrMismatch. Nothing answering at url, or not as Redis
// within 2 s: ErrUnreachable; credentials refused: ErrPermissionDenied; a
// library built without the Redis store: ErrUnsupported.
//
// Failures close: no unit is granted without the server's decision. A call
// that cannot reach the server retries until its deadline (the context's
// for AwaitFuel; at once for HasFuel), then returns ErrUnreachable.
// Start is refused (ErrWrongState) if any host started the throttle
// already, so every host may call it. The Throttle must not be used in a
// child of fork(): connect again there. The repository README ("Many
// hosts") says more.
func Connect(url, name string, maxN uint64, per time.Duration, opts ...Option) (*Throttle, error) {
	const op = "Connect"
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
	res := cConnect(curl, cname, maxN, per.Seconds(), o)
	if err := res.err(op); err != nil {
		return nil, err
	}
	return wrap(res.r.throttle, name), nil
}

// UnlinkURL removes the throttle name from the Redis server at url
// (mpt_throttle_unlink_url). The processes that use it, on every host,
// find it killed (ErrKilled) and do not make it again; a later Connect
// makes a new one. An unknown name gives ErrNotFound; a server that does
// not answer, ErrUnreachable.
func UnlinkURL(url, name string) error {
	const op = "UnlinkURL"
	curl, err := cText(op, "URL", url)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(curl))
	cname, err := cString(op, name)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cname))
	return cUnlinkURL(curl, cname).err(op)
}

func wrap(h handle, name string) *Throttle {
	t := &Throttle{h: h, name: name, closing: make(chan struct{})}
	runtime.SetFinalizer(t, (*Throttle).finalize)
	return t
}

// Name is the name of a named throttle (CreateNamed, Open) or of a throttle
// in Redis (Connect), "" for one made by New.
func (t *Throttle) Name() string { return t.name }

// acquire registers a call in progress; it fails once Close was called.
func (t *Throttle) acquire(op string) (handle, error) {
	for {
		s := t.state.Load()
		if s&closedBit != 0 {
			return 0, closedError(op)
		}
		if t.state.CompareAndSwap(s, s+1) {
			return t.h, nil
		}
	}
}

// release ends a call in progress; the last one after Close frees.
func (t *Throttle) release() {
	if t.state.Add(-1) == closedBit {
		t.free()
	}
}

// freed counts the handles freed (by Close, the last call in progress after
// Close, or a finalizer), for the tests.
var freed atomic.Int64

func (t *Throttle) free() error {
	h := t.h
	t.h = 0
	freed.Add(1)
	return cFree(h).err("Close")
}

// Close releases this process's handle (mpt_throttle_free). It does not
// stop the throttle: a running throttle goes on rationing fuel for other
// processes. If this process started it, its monitor thread ends here and
// other processes' statistics calls return ErrMonitorOff: Stop first to
// keep the statistics of the whole run.
//
// Close is idempotent and does not block: calls in progress in other
// goroutines finish, and the last of them frees the handle. An AwaitFuel
// with a context that can be cancelled is ended at once, taking nothing,
// with an error matching ErrClosed; one with a context that cannot
// (context.Background()) goes on until it is granted or killed. Every later
// call returns an error matching ErrClosed.
func (t *Throttle) Close() error {
	for {
		s := t.state.Load()
		if s&closedBit != 0 {
			return nil
		}
		if t.state.CompareAndSwap(s, s|closedBit) {
			runtime.SetFinalizer(t, nil)
			close(t.closing)
			if s == 0 {
				return t.free()
			}
			return nil
		}
	}
}

// finalized counts the Throttles released by their finalizer, for the tests.
var finalized atomic.Int64

func (t *Throttle) finalize() {
	// Unreachable: no call can be in progress, so Close frees at once.
	_ = t.Close()
	finalized.Add(1)
}

// Start starts or resumes the throttle (mpt_start): clears the kill flag,
// opens the tank (empty: its first unit is there at once, then one every
// per/maxN; a resume keeps the rate across the pause, so its first unit may
// come later, see mpt_start) and, with a monitor, starts the monitor thread
// in this process. Already running: ErrWrongState.
func (t *Throttle) Start() error {
	const op = "Start"
	h, err := t.acquire(op)
	if err != nil {
		return err
	}
	defer t.release()
	return cStart(h).err(op)
}

// Stop stops (pauses) the throttle (mpt_stop): sets the kill flag, so every
// waiter in every process returns ErrKilled, ends the monitor thread and
// reports the totals. Runtime and totals carry over a later Start. Not
// running: ErrWrongState.
func (t *Throttle) Stop() (Summary, error) {
	const op = "Stop"
	h, err := t.acquire(op)
	if err != nil {
		return Summary{}, err
	}
	defer t.release()
	res := cStop(h)
	if err := res.err(op); err != nil {
		return Summary{}, err
	}
	return res.summary(), nil
}

// AwaitFuel blocks until a unit of fuel is granted (nil), the kill flag is
// set (ErrKilled: finish), or ctx is done. Nothing is taken unless it
// returns nil. Before Start it waits for the start. Waiters are served first
// come, first served, whatever their context, in every process; with
// auto-emit the unit counts as one emission.
//
// Context: a deadline on ctx is the wait's timeout: when no fuel comes by
// then, the error matches both ErrTimeout and context.DeadlineExceeded (the
// library reserves no unit that would come after the deadline; after a
// SetRate that moves the unit reserved past the deadline, the error comes
// at once, before the deadline). A cancellation ends the wait at once: the
// error matches ErrCancelled and wraps ctx.Err() (context.Canceled), and
// nothing was taken: the unit reserved is given back, so the waiters behind
// it move up, in order (HardcapWindow: unless more units wait than it keeps
// grant times for). A unit granted before the cancellation is kept (nil). A ctx
// already done on entry returns its error at once, taking nothing. Close
// ends a wait whose ctx can be cancelled the same way (ErrClosed).
//
// The wait is one call of the C library: mpt_await_fuel_cancellable, with a
// cancellation token that a goroutine fires when ctx is done, if ctx can be
// cancelled (ctx.Done() != nil) and no fuel is there at once.
//
// Each goroutine blocked in AwaitFuel occupies an OS thread, as any
// blocking cgo call does.
func (t *Throttle) AwaitFuel(ctx context.Context) error {
	_, err := t.await("AwaitFuel", ctx, 1)
	return err
}

// AwaitFuelGrant is AwaitFuel that also returns the grant time: the
// CLOCK_MONOTONIC nanosecond (see ClockNow) at which the library decided
// this waiter may go.
func (t *Throttle) AwaitFuelGrant(ctx context.Context) (int64, error) {
	return t.await("AwaitFuel", ctx, 1)
}

// AwaitFuelN is AwaitFuel for n units of fuel granted all at once
// (mpt_await_fuel_n): bandwidth-style throttling, n bytes of a budget of
// maxN bytes per period. Waiters keep their order whatever their n; with
// auto-emit the n units count as one emission. n must be from 1 to what
// the tank can ever hold at the current rate (maxN for HardcapLimit and
// HardcapWindow, 1 for HardcapOne, any for HardcapNone): another n returns
// an error matching ErrInvalidArgument at once.
func (t *Throttle) AwaitFuelN(ctx context.Context, n uint64) error {
	_, err := t.await("AwaitFuelN", ctx, n)
	return err
}

// AwaitFuelNGrant is AwaitFuelN that also returns the grant time, as
// AwaitFuelGrant.
func (t *Throttle) AwaitFuelNGrant(ctx context.Context, n uint64) (int64, error) {
	return t.await("AwaitFuelN", ctx, n)
}

func (t *Throttle) await(op string, ctx context.Context, n uint64) (int64, error) {
	timeout, err := waitTimeout(op, ctx)
	if err != nil {
		return 0, err
	}
	h, err := t.acquire(op)
	if err != nil {
		return 0, err
	}
	defer t.release()
	done := ctx.Done()
	var res result
	why := 0
	if done == nil {
		// Nothing can cancel the wait: no token, no goroutine.
		res = cAwaitFuel(h, n, timeout, 0)
	} else {
		// Fuel there now (a unit due now is never reserved by a queued
		// waiter, so this takes no one's turn): no token, no goroutine.
		res = cAwaitFuel(h, n, 0, 0)
		if res.status == StatusTimeout && timeout != 0 {
			res, why, err = t.awaitCancellable(h, n, timeout, done)
			if err != nil {
				return 0, err
			}
		}
	}
	return awaitResult(op, "Throttle", ctx, res, why)
}

// waitTimeout is the C timeout of a wait with ctx (its deadline, or
// forever), or ctx's error if it is done already.
func waitTimeout(op string, ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, ctxError(op, err, "")
	}
	timeout := forever
	if deadline, ok := ctx.Deadline(); ok {
		timeout = 0
		if rem := time.Until(deadline); rem > 0 {
			timeout = rem.Seconds()
		}
	}
	return timeout, nil
}

// awaitResult turns the result of a wait with ctx into its grant time or
// error; why says what fired its token (see cancellableWait), what names
// the handle's type in the error of a closed one.
func awaitResult(op, what string, ctx context.Context, res result, why int) (int64, error) {
	switch res.status {
	case StatusOK:
		return int64(res.r.i64), nil
	case StatusTimeout:
		return 0, ctxError(op, context.DeadlineExceeded, "")
	case StatusCancelled:
		if why == whyClosed {
			return 0, closedErrorOf(op, what)
		}
		cause := ctx.Err()
		if cause == nil { // cannot happen: only a done ctx fires the token
			cause = context.Canceled
		}
		return 0, ctxError(op, cause, res.message)
	}
	return 0, res.err(op)
}

// awaitCancellable is one mpt_await_fuel_cancellable with a token that a
// watcher goroutine fires when done is closed, or the Throttle is closed.
// why says which fired it (0: neither).
func (t *Throttle) awaitCancellable(h handle, n uint64, timeout float64,
	done <-chan struct{}) (res result, why int, err error) {
	return cancellableWait(done, t.closing, func(c token) result { return cAwaitFuel(h, n, timeout, c) })
}

// cancellableWait runs wait, one blocking C call, with a cancellation
// token that a watcher goroutine fires when done is closed (whyContext) or
// closing is (whyClosed: the handle's Close). why says which fired it (0:
// neither).
func cancellableWait(done, closing <-chan struct{}, wait func(token) result) (res result, why int, err error) {
	tok, err := getToken()
	if err != nil {
		return result{}, 0, err
	}
	tokenWaits.Add(1)
	// stop is the hand-shake: the waiter's send completes only once the
	// watcher is past any fire, so the token is then quiet and can be
	// reset and reused (never freed or reset while something may fire it).
	stop := make(chan struct{})
	go func() {
		select {
		case <-done:
			tok.fire(whyContext)
		case <-closing:
			tok.fire(whyClosed)
		case <-stop:
			return
		}
		<-stop
	}()
	res = wait(tok.c)
	stop <- struct{}{}
	why = tok.why
	putToken(tok)
	return res, why, nil
}

// ctxError is AwaitFuel's error for a context that is done: ErrTimeout and
// context.DeadlineExceeded for a deadline, ErrCancelled and the context's
// error otherwise. message: the library's, if it said one.
func ctxError(op string, cause error, message string) error {
	if cause == context.DeadlineExceeded {
		return &Error{Status: StatusTimeout, Op: op,
			Message: "no fuel before the context's deadline", cause: cause}
	}
	if message == "" {
		message = "the context was cancelled: nothing was taken"
	}
	return &Error{Status: StatusCancelled, Op: op, Message: message, cause: cause}
}

// HasFuel takes a unit of fuel if the tank holds one now, and never blocks
// (mpt_has_fuel): true if it took one; false, nil if the tank is empty or
// the throttle not started (nothing taken). With auto-emit the unit counts
// as one emission. The kill flag set: false, ErrKilled.
func (t *Throttle) HasFuel() (bool, error) { return t.hasFuel("HasFuel", 1) }

// HasFuelN is HasFuel for n units taken all at once, if the tank holds them
// now (mpt_has_fuel_n). n as for AwaitFuelN: another n returns false and an
// error matching ErrInvalidArgument.
func (t *Throttle) HasFuelN(n uint64) (bool, error) { return t.hasFuel("HasFuelN", n) }

func (t *Throttle) hasFuel(op string, n uint64) (bool, error) {
	h, err := t.acquire(op)
	if err != nil {
		return false, err
	}
	defer t.release()
	res := cHasFuel(h, n)
	switch res.status {
	case StatusOK:
		return true, nil
	case StatusNoFuel:
		return false, nil
	}
	return false, res.err(op)
}

// Peek looks at the tank without taking anything (mpt_peek_fuel): level is
// the number of units in it now (math.MaxUint64 for a throttle made with
// AsThrottle(false): fuel is always there), wait how long a waiter arriving
// now would wait for n units (0: they are there), after the waiters already
// queued. n as for AwaitFuelN (ErrInvalidArgument otherwise). Not started:
// ErrNotRunning (no fuel accrues).
func (t *Throttle) Peek(n uint64) (level uint64, wait time.Duration, err error) {
	const op = "Peek"
	h, err := t.acquire(op)
	if err != nil {
		return 0, 0, err
	}
	defer t.release()
	res := cPeekFuel(h, n)
	if err := res.err(op); err != nil {
		return 0, 0, err
	}
	return uint64(res.r.u64), seconds(float64(res.r.f64)), nil
}

// SetRate changes the rate to maxN units of fuel per period, from now on,
// for every process that shares the throttle, running or not
// (mpt_set_rate). Waiters asleep in every process are rescheduled at once,
// in the order they had, and the change lets through no burst that the new
// rate forbids: the tank keeps what the new tank holds (HardcapWindow: the
// grants before the change count in the new window, and waiters reserve
// again under it in their order). A waiter whose new grant falls after its
// context's deadline gives its units back and returns ErrTimeout at once.
// maxN and per as for New (ErrInvalidArgument otherwise, and for a
// HardcapWindow maxN above the grant times it keeps: max(its first maxN,
// 4096)). ErrSystem if another process holds the change lock for
// 200 ms without dying (stopped in a debugger): try again.
//
// The configuration a named throttle was created with, which CreateNamed
// compares, is not changed; Rate reads the rate in force.
func (t *Throttle) SetRate(maxN uint64, per time.Duration) error {
	const op = "SetRate"
	h, err := t.acquire(op)
	if err != nil {
		return err
	}
	defer t.release()
	return cSetRate(h, maxN, per.Seconds()).err(op)
}

// Rate is the rate in force (mpt_get_rate): maxN units of fuel per per, as
// the throttle was made or as the last SetRate from any process set it.
// (The statistics, how fast the workers really went, are Latest, Mean,
// LoHi and HiLo.)
func (t *Throttle) Rate() (maxN uint64, per time.Duration, err error) {
	const op = "Rate"
	h, err := t.acquire(op)
	if err != nil {
		return 0, 0, err
	}
	defer t.release()
	res := cGetRate(h)
	if err := res.err(op); err != nil {
		return 0, 0, err
	}
	return uint64(res.r.u64), seconds(float64(res.r.f64)), nil
}

// Emit counts one emission now (mpt_emit), for a throttle made with
// AutoEmit(false). Not started: ErrNotRunning; stopped or killed:
// ErrKilled; auto-emit on: ErrWrongState. Nothing is counted then.
func (t *Throttle) Emit() error {
	const op = "Emit"
	h, err := t.acquire(op)
	if err != nil {
		return err
	}
	defer t.release()
	return cEmit(h).err(op)
}

// EmitAt counts one emission at timestampNs, a CLOCK_MONOTONIC nanosecond
// (see ClockNow) >= 0 (mpt_emit_at). Errors as Emit, and ErrInvalidArgument
// for a negative timestamp.
func (t *Throttle) EmitAt(timestampNs int64) error {
	const op = "EmitAt"
	h, err := t.acquire(op)
	if err != nil {
		return err
	}
	defer t.release()
	return cEmitAt(h, timestampNs).err(op)
}

// Kill sets the kill flag (mpt_kill): every waiter in every process returns
// ErrKilled at once, and so does every later call that takes fuel, until
// the next Start. The throttle stays running until Stop.
func (t *Throttle) Kill() error {
	const op = "Kill"
	h, err := t.acquire(op)
	if err != nil {
		return err
	}
	defer t.release()
	return cKill(h).err(op)
}

// KillFlagIsSet reports whether the kill flag is set (mp_throttle's
// kill_flag.is_set()).
func (t *Throttle) KillFlagIsSet() (bool, error) {
	const op = "KillFlagIsSet"
	h, err := t.acquire(op)
	if err != nil {
		return false, err
	}
	defer t.release()
	res := cKillFlagIsSet(h)
	return bool(res.r.flag), res.err(op)
}

// IsRunning reports whether the throttle is running (started, not stopped).
func (t *Throttle) IsRunning() (bool, error) {
	const op = "IsRunning"
	h, err := t.acquire(op)
	if err != nil {
		return false, err
	}
	defer t.release()
	res := cIsRunning(h)
	return bool(res.r.flag), res.err(op)
}

// Rate is a statistic: mp_throttle's (time between emissions, emissions per
// second) pair. Both are 0 when there is nothing to measure yet; PerSecond
// is +Inf for an Interval of 0.
type Rate struct {
	Interval  time.Duration
	PerSecond float64
}

// Summary is what Stop reports (mp_throttle's stop() tuple).
type Summary struct {
	// Runtime is the running time of all runs so far, pauses excluded.
	Runtime time.Duration
	// Total counts the emissions so far, by every process.
	Total uint64
	// MeanInterval is the mean time between emissions (0 if none).
	MeanInterval time.Duration
	// MeanPerSecond is the mean number of emissions per second (0 if none).
	MeanPerSecond float64
}

func (t *Throttle) rate(op string, which rateKind) (Rate, error) {
	h, err := t.acquire(op)
	if err != nil {
		return Rate{}, err
	}
	defer t.release()
	res := cRate(h, which)
	if err := res.err(op); err != nil {
		return Rate{}, err
	}
	return res.rate(), nil
}

// Latest is the rate of the last second (mp_throttle's latest()): the
// emissions of this run timestamped in the last second, and one over that.
// Refreshed by the monitor every refresh interval; zero after Stop.
// Without a monitor: ErrMonitorOff.
func (t *Throttle) Latest() (Rate, error) { return t.rate("Latest", rateLatest) }

// Mean is the mean over the whole running time (mp_throttle's mean()).
func (t *Throttle) Mean() (Rate, error) { return t.rate("Mean", rateMean) }

// LoHi is the shortest interval seen between two consecutive emissions, and
// its rate (mp_throttle's lo_hi()); zero until an interval was seen.
func (t *Throttle) LoHi() (Rate, error) { return t.rate("LoHi", rateLoHi) }

// HiLo is the longest interval seen between two consecutive emissions, and
// its rate (mp_throttle's hi_lo()); zero until an interval was seen.
func (t *Throttle) HiLo() (Rate, error) { return t.rate("HiLo", rateHiLo) }

// Summary reports the four figures of Stop as of now, running or not; it
// needs no monitor (mpt_get_summary).
func (t *Throttle) Summary() (Summary, error) {
	const op = "Summary"
	h, err := t.acquire(op)
	if err != nil {
		return Summary{}, err
	}
	defer t.release()
	res := cGetSummary(h)
	if err := res.err(op); err != nil {
		return Summary{}, err
	}
	return res.summary(), nil
}

// ClockNow is the library's clock, CLOCK_MONOTONIC, in nanoseconds: the
// clock of grant times and of EmitAt, shared by every process of the host.
func ClockNow() int64 {
	return int64(cClockNow().r.i64)
}

// Version is the version of the C library actually linked (compare with
// HeaderVersion).
func Version() (major, minor, patch int) {
	v := int64(cVersion().r.i64)
	return int(v >> 40), int(v >> 20 & (1<<20 - 1)), int(v & (1<<20 - 1))
}
