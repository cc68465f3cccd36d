package mpthrottle

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// TestFuelNArguments: an n the tank can never hold is refused at once by
// every call that takes n; before Start, Peek says ErrNotRunning.
func TestFuelNArguments(t *testing.T) {
	th := mustNew(t, 4, time.Second)
	_, _, err := th.Peek(1)
	wantErr(t, err, ErrNotRunning, "Peek")
	if ok, err := th.HasFuelN(2); ok || err != nil {
		t.Errorf("HasFuelN(2) before Start = %v, %v; want false, nil", ok, err)
	}
	must(t, th.Start())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, n := range []uint64{0, 5} {
		_, _, err := th.Peek(n)
		wantErr(t, err, ErrInvalidArgument, "Peek")
		ok, err := th.HasFuelN(n)
		wantErr(t, err, ErrInvalidArgument, "HasFuelN")
		if ok {
			t.Errorf("HasFuelN(%d) true", n)
		}
		wantErr(t, th.AwaitFuelN(context.Background(), n), ErrInvalidArgument, "AwaitFuelN")
		wantErr(t, th.AwaitFuelN(ctx, n), ErrInvalidArgument, "AwaitFuelN")
	}
	// HardcapOne holds one unit; HardcapNone any number.
	one := mustNew(t, 4, time.Second, WithHardcap(HardcapOne))
	must(t, one.Start())
	_, err = one.HasFuelN(2)
	wantErr(t, err, ErrInvalidArgument, "HasFuelN")
	none := mustNew(t, 4, time.Second, WithHardcap(HardcapNone))
	must(t, none.Start())
	if _, _, err := none.Peek(1000); err != nil {
		t.Errorf("Peek(1000) with HardcapNone: %v", err)
	}
	// Without throttling fuel is always there.
	free := mustNew(t, 1, time.Hour, AsThrottle(false), AutoEmit(true))
	must(t, free.Start())
	if level, wait, err := free.Peek(3); level != math.MaxUint64 || wait != 0 || err != nil {
		t.Errorf("Peek(3) without throttling = %d, %v, %v; want MaxUint64, 0, nil", level, wait, err)
	}
	must(t, free.AwaitFuelN(ctx, 3))
	if s, _ := free.Summary(); s.Total != 1 {
		t.Errorf("total = %d after AwaitFuelN(3), want 1 (n units count one emission)", s.Total)
	}
}

// TestPeekAgreesWithHasFuelN: at 1000/s (a tank of up to 1000 units, one
// more every ms), Peek(n) then HasFuelN(n) for n = 1, 2, 3... until the tank
// runs dry: Peek says wait 0 exactly when its level is at least n, and then
// HasFuelN(n) takes n units (nobody else takes fuel, so it cannot have
// gone); when Peek says to wait, HasFuelN(n) takes nothing, unless that
// wait had passed by the time it returned.
func TestPeekAgreesWithHasFuelN(t *testing.T) {
	th := mustNew(t, 1000, time.Second)
	must(t, th.Start())
	time.Sleep(30 * time.Millisecond)
	took, refused := 0, 0
	for n := uint64(1); refused < 5; n++ {
		before := ClockNow()
		level, wait, err := th.Peek(n)
		must(t, err)
		if (wait == 0) != (level >= n) {
			t.Fatalf("Peek(%d) = level %d, wait %v", n, level, wait)
		}
		ok, err := th.HasFuelN(n)
		must(t, err)
		elapsed := time.Duration(ClockNow() - before)
		switch {
		case wait == 0 && !ok:
			t.Fatalf("Peek(%d) said level %d, wait 0; HasFuelN(%d) took nothing", n, level, n)
		case wait > 0 && ok && elapsed < wait:
			t.Fatalf("Peek(%d) said level %d, wait %v; HasFuelN(%d) took them %v later", n, level, wait, n, elapsed)
		case ok:
			took++
		default:
			refused++
			// Short of n-level units, at 1 ms each.
			wantDuration(t, "Peek wait", wait, time.Duration(n-level-1)*time.Millisecond,
				time.Duration(n-level)*time.Millisecond)
		}
	}
	if took < 5 {
		t.Errorf("HasFuelN succeeded %d times: the tank held at least 30 units", took)
	}
	s, err := th.Stop()
	must(t, err)
	if s.Total != uint64(took) {
		t.Errorf("total %d, want %d (one emission per HasFuelN)", s.Total, took)
	}
}

// TestPeekWaitIsGrant: the wait Peek reports is exactly when the next
// waiter is granted.
func TestPeekWaitIsGrant(t *testing.T) {
	th := mustNew(t, 2, 2*time.Second) // a unit per second
	must(t, th.Start())
	if ok, err := th.HasFuelN(1); !ok || err != nil {
		t.Fatalf("HasFuelN(1) at the start = %v, %v", ok, err)
	}
	p0 := ClockNow()
	level, wait, err := th.Peek(1)
	p1 := ClockNow()
	must(t, err)
	if level != 0 {
		t.Errorf("level %d after taking the only unit", level)
	}
	wantDuration(t, "Peek wait for the next unit", wait, 800*time.Millisecond, time.Second)
	g, err := th.AwaitFuelNGrant(context.Background(), 1)
	must(t, err)
	if g < p0+int64(wait) || g > p1+int64(wait)+1 {
		t.Errorf("granted %v after Peek, which said %v", time.Duration(g-p0), wait)
	}
}

// TestSetRate: Rate reads the rate in force; SetRate checks its arguments;
// a change reschedules sleeping waiters at once: one whose unit the change
// moves past its deadline returns ErrTimeout at once, one without a
// deadline is granted at once by a faster rate.
func TestSetRate(t *testing.T) {
	th := mustNew(t, 1, time.Second)
	if maxN, per, err := th.Rate(); maxN != 1 || per != time.Second || err != nil {
		t.Fatalf("Rate() = %d, %v, %v; want 1, 1s", maxN, per, err)
	}
	wantErr(t, th.SetRate(0, time.Second), ErrInvalidArgument, "SetRate")
	wantErr(t, th.SetRate(1, 0), ErrInvalidArgument, "SetRate")
	// A WINDOW max_n grows to the grant times it keeps (4096 here), no further.
	window := mustNew(t, 3, time.Second, WithHardcap(HardcapWindow))
	must(t, window.SetRate(6, 2*time.Second))
	if maxN, per, err := window.Rate(); maxN != 6 || per != 2*time.Second || err != nil {
		t.Fatalf("WINDOW Rate() = %d, %v, %v; want 6, 2s", maxN, per, err)
	}
	wantErr(t, window.SetRate(4097, time.Second), ErrInvalidArgument, "SetRate")

	must(t, th.Start())
	g0, err := th.AwaitFuelGrant(context.Background())
	must(t, err)
	unbounded := timedAwait(th, context.Background()) // the unit at t0+1s
	queued(t, th, g0+int64(2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	bounded := timedAwait(th, ctx) // the unit at t0+2s
	queued(t, th, g0+int64(3*time.Second))

	// 1 per 10 s: the second unit moves to t0+20s, past the deadline. The
	// waiter gives it back at once (the next arrival would get it), and
	// returns at its deadline, not before: a later change could still have
	// let it through.
	must(t, th.SetRate(1, 10*time.Second))
	time.Sleep(100 * time.Millisecond)
	// The unbounded waiter holds the unit now at t0+10s; the next arrival
	// gets the one at t0+20s that the bounded waiter gave back (not t0+30s).
	if _, wait, err := th.Peek(1); err != nil || wait > 21*time.Second {
		t.Errorf("Peek after the slowdown: wait %v, %v; want under 21 s (the unit given back)", wait, err)
	}
	o := waitOutcome(t, bounded)
	if !errors.Is(o.err, ErrTimeout) || !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("waiter whose unit moved past its deadline: %v, want ErrTimeout", o.err)
	}
	t.Logf("the bounded waiter timed out %v after its deadline", o.at.Sub(deadline))
	wantDuration(t, "time from the deadline to the timeout", o.at.Sub(deadline), 0, slack)
	select {
	case o := <-unbounded:
		t.Fatalf("the waiter without a deadline returned after a slowdown: %v", o.err)
	default:
	}
	if maxN, per, err := th.Rate(); maxN != 1 || per != 10*time.Second || err != nil {
		t.Errorf("Rate() = %d, %v, %v; want 1, 10s", maxN, per, err)
	}

	changed := time.Now()
	changedNs := ClockNow()
	must(t, th.SetRate(100, time.Second))
	o = waitOutcome(t, unbounded)
	must(t, o.err)
	t.Logf("the waiter was granted %v after the speed-up", time.Duration(o.grant-changedNs))
	wantDuration(t, "time to the grant after the speed-up", o.at.Sub(changed), 0, slack)
	if maxN, per, err := th.Rate(); maxN != 100 || per != time.Second || err != nil {
		t.Errorf("Rate() = %d, %v, %v; want 100, 1s", maxN, per, err)
	}
	s, err := th.Stop()
	must(t, err)
	if s.Total != 2 {
		t.Errorf("total = %d, want 2: the timed-out waiter took nothing", s.Total)
	}
}
