package mpthrottle

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// slack is what a noisy 2-core machine may add to a wake-up.
const slack = 200 * time.Millisecond

// awaitAsync runs AwaitFuel in a goroutine; the channel gets its error.
func awaitAsync(th *Throttle, ctx context.Context) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- th.AwaitFuel(ctx) }()
	return ch
}

// within waits for the waiter's error: it must come by limit after now.
func within(t *testing.T, ch <-chan error, limit time.Duration) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	select {
	case err := <-ch:
		return err, time.Since(start)
	case <-time.After(limit + 5*time.Second):
		t.Fatalf("the waiter did not return within %v", limit+5*time.Second)
		return nil, 0
	}
}

// stillWaiting fails if the waiter has returned.
func stillWaiting(t *testing.T, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("the waiter returned early: %v", err)
	default:
	}
}

// cancelLatency is the longest a cancellation may take to end a wait: the
// token wakes the waiter at once (a futex wake), so this is scheduling on a
// noisy machine.
const cancelLatency = 20 * time.Millisecond

// timedAwait runs AwaitFuelGrant in a goroutine; the channel gets its
// outcome and the instant it returned.
type outcome struct {
	grant int64
	err   error
	at    time.Time
}

func timedAwait(th *Throttle, ctx context.Context) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		g, err := th.AwaitFuelGrant(ctx)
		ch <- outcome{g, err, time.Now()}
	}()
	return ch
}

func waitOutcome(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not return within 10 s")
		return outcome{}
	}
}

// wantCancelled checks a cancelled wait's error: ErrCancelled and
// context.Canceled, an *Error of AwaitFuel, and not a timeout.
func wantCancelled(t *testing.T, err error) {
	t.Helper()
	e := wantErr(t, err, ErrCancelled, "AwaitFuel")
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled wait: %v (%q), want ErrCancelled and context.Canceled only", err, e.Message)
	}
}

// TestCancelEndsWait: a cancellation ends a wait on a throttle that never
// started at once, with or without a deadline; nothing is taken.
func TestCancelEndsWait(t *testing.T) {
	th := mustNew(t, 1, time.Second)
	for _, withDeadline := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		if withDeadline { // a far deadline: the timeout of the C call
			ctx, cancel = context.WithTimeout(context.Background(), time.Hour)
		}
		ch := timedAwait(th, ctx)
		time.Sleep(150 * time.Millisecond)
		select {
		case o := <-ch:
			t.Fatalf("the waiter returned before the cancellation: %v", o.err)
		default:
		}
		cancelled := time.Now()
		cancel()
		o := waitOutcome(t, ch)
		wantCancelled(t, o.err)
		latency := o.at.Sub(cancelled)
		t.Logf("deadline %v: the wait ended %v after the cancellation", withDeadline, latency)
		wantDuration(t, "cancellation latency", latency, 0, cancelLatency)
	}
	must(t, th.Start())
	// Nothing was taken: the unit of the start instant is still there.
	if ok, err := th.HasFuel(); !ok || err != nil {
		t.Errorf("HasFuel() = %v, %v after cancelled waits", ok, err)
	}
}

// TestCancelMovesQueueUp: 1 unit per second, three waiters queued for the
// units at t0+1s, +2s, +3s. Cancelling the first ends its wait at once,
// and gives its unit back: the second gets the unit at t0+1s, the third
// the one at t0+2s. Waits with context.Background() and with cancellable
// contexts share one queue.
func TestCancelMovesQueueUp(t *testing.T) {
	th := mustNew(t, 1, time.Second)
	must(t, th.Start())
	g0, err := th.AwaitFuelGrant(context.Background()) // unit 0
	must(t, err)
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	ctxC, cancelC := context.WithCancel(context.Background())
	defer cancelC()
	a := timedAwait(th, ctxA)
	queued(t, th, g0+int64(2*time.Second)) // a has reserved the unit at t0+1s
	b := timedAwait(th, context.Background())
	queued(t, th, g0+int64(3*time.Second))
	c := timedAwait(th, ctxC)
	queued(t, th, g0+int64(4*time.Second))

	cancelled := time.Now()
	cancelA()
	oa := waitOutcome(t, a)
	wantCancelled(t, oa.err)
	latency := oa.at.Sub(cancelled)
	t.Logf("the first waiter ended %v after the cancellation, %v after t0",
		latency, time.Duration(ClockNow()-g0))
	wantDuration(t, "cancellation latency", latency, 0, cancelLatency)

	ob, oc := waitOutcome(t, b), waitOutcome(t, c)
	must(t, ob.err)
	must(t, oc.err)
	t.Logf("grants after t0: second waiter %v, third %v",
		time.Duration(ob.grant-g0), time.Duration(oc.grant-g0))
	// Unit 0 went at the start instant (g0 may be a little after it): the
	// unit of t0+1s is at most 1 s after g0.
	wantDuration(t, "second waiter's grant after t0", time.Duration(ob.grant-g0),
		900*time.Millisecond, time.Second+50*time.Millisecond)
	wantDuration(t, "third waiter's grant after the second's", time.Duration(oc.grant-ob.grant),
		time.Second-time.Microsecond, time.Second+50*time.Millisecond)
	s, err := th.Stop()
	must(t, err)
	if s.Total != 3 {
		t.Errorf("total = %d, want 3: the cancelled waiter took nothing", s.Total)
	}
}

// queued waits until a waiter arriving now would get its unit at `at`
// (ClockNow ns) or later, give or take 100 ms: the waiters started have
// reserved their units.
func queued(t *testing.T, th *Throttle, at int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, wait, err := th.Peek(1)
		must(t, err)
		now := ClockNow()
		if now+int64(wait) >= at-int64(100*time.Millisecond) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the waiters did not queue: a newcomer would get a unit in %v, %v before the one expected",
				wait, time.Duration(at-now)-wait)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFairMixedContexts: at 10/s for 3 s, two waiters with
// context.Background() and two with cancellable contexts (never
// cancelled) share one first-come, first-served queue: each gets about a
// quarter of the 31 units (waiting in slices, as the binding did before
// 0.2.0, the cancellable ones got next to nothing).
func TestFairMixedContexts(t *testing.T) {
	th := mustNew(t, 10, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	counts := make([]int, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range counts {
		wctx := context.Background()
		if i >= 2 {
			wctx = ctx
		}
		wg.Add(1)
		go func(i int, ctx context.Context) {
			defer wg.Done()
			for {
				if errs[i] = th.AwaitFuel(ctx); errs[i] != nil {
					return
				}
				counts[i]++
			}
		}(i, wctx)
	}
	time.Sleep(50 * time.Millisecond) // the waiters wait for the start
	must(t, th.Start())
	time.Sleep(3 * time.Second)
	s, err := th.Stop()
	must(t, err)
	wg.Wait()
	t.Logf("units taken: Background %d, %d; cancellable %d, %d", counts[0], counts[1], counts[2], counts[3])
	total := 0
	for i, n := range counts {
		if !errors.Is(errs[i], ErrKilled) {
			t.Errorf("waiter %d ended with %v, want ErrKilled", i, errs[i])
		}
		if n < 5 || n > 11 {
			t.Errorf("waiter %d took %d of the units, want 5..11 (about 31/4)", i, n)
		}
		total += n
	}
	if total < 29 || total > 32 || s.Total != uint64(total) {
		t.Errorf("%d units taken (Stop counted %d) in 3 s at 10/s, want 29..32", total, s.Total)
	}
}

// TestCanceledOnEntry: a context already done takes nothing, even when fuel
// is there.
func TestCanceledOnEntry(t *testing.T) {
	th := mustNew(t, 1, time.Hour)
	must(t, th.Start())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := th.AwaitFuel(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("AwaitFuel(cancelled ctx) = %v", err)
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if err := th.AwaitFuel(ctx); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AwaitFuel(expired ctx) = %v", err)
	}
	if ok, err := th.HasFuel(); !ok || err != nil {
		t.Fatalf("HasFuel() = %v, %v: a done context took the unit", ok, err)
	}
}

// deadlineOnly is a context with a deadline but no Done channel: AwaitFuel
// waits for it in one C call.
type deadlineOnly struct {
	context.Context
	deadline time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.deadline, true }

func TestDeadlineIsTimeout(t *testing.T) {
	th := mustNew(t, 1, time.Second) // never started
	const timeout = 300 * time.Millisecond
	ctxs := map[string]func() (context.Context, context.CancelFunc){
		"WithTimeout": func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), timeout)
		},
		"deadline without Done": func() (context.Context, context.CancelFunc) {
			return deadlineOnly{context.Background(), time.Now().Add(timeout)}, func() {}
		},
	}
	for name, mk := range ctxs {
		ctx, cancel := mk()
		start := time.Now()
		err := th.AwaitFuel(ctx)
		elapsed := time.Since(start)
		cancel()
		var e *Error
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) ||
			!errors.As(err, &e) || e.Status != StatusTimeout || e.Op != "AwaitFuel" {
			t.Errorf("%s: %v, want an *Error matching ErrTimeout and context.DeadlineExceeded", name, err)
		}
		wantDuration(t, name+": time to the deadline", elapsed, timeout-time.Millisecond, timeout+slack)
	}
}

// TestDeadlineTakesNothing: a unit due after the deadline is not reserved;
// one due before it is granted at its slot.
func TestDeadlineTakesNothing(t *testing.T) {
	th := mustNew(t, 5, time.Second, WithHardcap(HardcapOne)) // one unit every 200 ms
	must(t, th.Start())
	g0, err := th.AwaitFuelGrant(context.Background())
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err = th.AwaitFuel(ctx)
	cancel()
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("unit due in 200 ms, deadline in 100 ms: %v", err)
	}
	// The grant at its slot.
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	g1, err := th.AwaitFuelGrant(ctx)
	cancel()
	must(t, err)
	wantDuration(t, "time between the grants", time.Duration(g1-g0), 200*time.Millisecond, 200*time.Millisecond+slack)
	s, err := th.Stop()
	must(t, err)
	if s.Total != 2 {
		t.Errorf("total = %d, want 2: the timed-out wait took nothing", s.Total)
	}
}

// TestKillWakesWaiters: Kill ends both kinds of wait at once.
func TestKillWakesWaiters(t *testing.T) {
	th := mustNew(t, 1, time.Second) // never started
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chs := []<-chan error{awaitAsync(th, context.Background()), awaitAsync(th, ctx)}
	time.Sleep(100 * time.Millisecond)
	for _, ch := range chs {
		stillWaiting(t, ch)
	}
	must(t, th.Kill())
	for _, ch := range chs {
		err, latency := within(t, ch, slack)
		wantErr(t, err, ErrKilled, "AwaitFuel")
		wantDuration(t, "wake-up after Kill", latency, 0, slack)
	}
}

// TestCloseDuringWait: Close does not wait for a waiter; one with a
// cancellable context returns ErrClosed at once, and the handle is freed
// after it.
func TestCloseDuringWait(t *testing.T) {
	before := freed.Load()
	th, err := New(1, time.Second) // never started
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := timedAwait(th, ctx)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	must(t, th.Close())
	wantDuration(t, "Close", time.Since(start), 0, slack)
	o := waitOutcome(t, ch)
	wantDuration(t, "end of the wait after Close", o.at.Sub(start), 0, cancelLatency)
	if !errors.Is(o.err, ErrClosed) || !errors.Is(o.err, ErrBadHandle) || errors.Is(o.err, context.Canceled) {
		t.Fatalf("waiter after Close: %v, want ErrClosed", o.err)
	}
	if got := freed.Load() - before; got != 1 {
		t.Fatalf("%d handles freed, want 1", got)
	}
}

// TestCloseDuringUnboundedWait: a waiter without a timeout (one C call)
// keeps the handle alive past Close; it gets its unit when another handle
// starts the throttle, and then the handle is freed.
func TestCloseDuringUnboundedWait(t *testing.T) {
	name := uniqueName(t)
	before := freed.Load()
	a, err := CreateNamed(name, 1, time.Second)
	must(t, err)
	b, err := Open(name)
	must(t, err)
	defer b.Close()
	ch := awaitAsync(a, context.Background())
	time.Sleep(100 * time.Millisecond)
	must(t, a.Close())
	stillWaiting(t, ch)
	if got := freed.Load() - before; got != 0 {
		t.Fatalf("Close freed a handle in use (%d freed)", got)
	}
	must(t, b.Start())
	err, _ = within(t, ch, slack)
	must(t, err)
	if got := freed.Load() - before; got != 1 {
		t.Fatalf("%d handles freed after the wait, want 1", got)
	}
	_, err = b.Stop()
	must(t, err)
}
