package mpthrottle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestLifecycle(t *testing.T) {
	th := mustNew(t, 4, time.Second)
	if th.Name() != "" {
		t.Errorf("Name() = %q for an anonymous throttle", th.Name())
	}
	running, err := th.IsRunning()
	must(t, err)
	if running {
		t.Fatal("running before Start")
	}
	wantErr(t, func() error { _, err := th.Stop(); return err }(), ErrWrongState, "Stop")
	must(t, th.Start())
	wantErr(t, th.Start(), ErrWrongState, "Start")
	if running, err = th.IsRunning(); err != nil || !running {
		t.Fatalf("IsRunning() = %v, %v after Start", running, err)
	}
	if killed, err := th.KillFlagIsSet(); err != nil || killed {
		t.Fatalf("KillFlagIsSet() = %v, %v after Start", killed, err)
	}
	s, err := th.Stop()
	must(t, err)
	if s.Total != 0 {
		t.Errorf("Stop total = %d with no worker", s.Total)
	}
	if running, err = th.IsRunning(); err != nil || running {
		t.Fatalf("IsRunning() = %v, %v after Stop", running, err)
	}
	if killed, err := th.KillFlagIsSet(); err != nil || !killed {
		t.Fatalf("KillFlagIsSet() = %v, %v after Stop", killed, err)
	}
	// Stopped: waiters return ErrKilled at once; a new Start resumes.
	wantErr(t, th.AwaitFuel(context.Background()), ErrKilled, "AwaitFuel")
	must(t, th.Start())
	must(t, th.AwaitFuel(context.Background()))
	s, err = th.Stop()
	must(t, err)
	if s.Total != 1 {
		t.Errorf("total after one grant = %d", s.Total)
	}
	must(t, th.Close())
}

func TestHasFuel(t *testing.T) {
	th := mustNew(t, 1, time.Hour)
	if ok, err := th.HasFuel(); ok || err != nil {
		t.Fatalf("HasFuel() before Start = %v, %v; want false, nil", ok, err)
	}
	must(t, th.Start())
	// The first unit is there at the start instant; the next in an hour.
	if ok, err := th.HasFuel(); !ok || err != nil {
		t.Fatalf("first HasFuel() = %v, %v; want true, nil", ok, err)
	}
	if ok, err := th.HasFuel(); ok || err != nil {
		t.Fatalf("second HasFuel() = %v, %v; want false, nil", ok, err)
	}
	must(t, th.Kill())
	ok, err := th.HasFuel()
	wantErr(t, err, ErrKilled, "HasFuel")
	if ok {
		t.Fatal("HasFuel() true with the kill flag set")
	}
	if killed, err := th.KillFlagIsSet(); err != nil || !killed {
		t.Fatalf("KillFlagIsSet() = %v, %v after Kill", killed, err)
	}
	// Kill leaves the throttle running until Stop.
	if running, err := th.IsRunning(); err != nil || !running {
		t.Fatalf("IsRunning() = %v, %v after Kill", running, err)
	}
	s, err := th.Stop()
	must(t, err)
	if s.Total != 1 {
		t.Errorf("total = %d, want 1 (auto-emit counts the one unit taken)", s.Total)
	}
}

func TestEmit(t *testing.T) {
	th := mustNew(t, 1, time.Hour, AutoEmit(false))
	wantErr(t, th.Emit(), ErrNotRunning, "Emit")
	must(t, th.Start())
	must(t, th.Emit())
	must(t, th.EmitAt(ClockNow()))
	wantErr(t, th.EmitAt(-1), ErrInvalidArgument, "EmitAt")
	if ok, err := th.HasFuel(); !ok || err != nil {
		t.Fatalf("HasFuel() = %v, %v", ok, err)
	}
	s, err := th.Summary()
	must(t, err)
	if s.Total != 2 {
		t.Errorf("total = %d, want 2 (two emits; fuel taken is not counted with AutoEmit(false))", s.Total)
	}
	must(t, th.Kill())
	wantErr(t, th.Emit(), ErrKilled, "Emit")

	auto := mustNew(t, 1, time.Hour)
	must(t, auto.Start())
	e := wantErr(t, auto.Emit(), ErrWrongState, "Emit")
	if !strings.Contains(e.Message, "auto_emit") {
		t.Errorf("message %q does not say auto_emit is on", e.Message)
	}
}

func TestCountingOnly(t *testing.T) {
	// AsThrottle(false): fuel is always there; AutoEmit(true) counts it.
	th := mustNew(t, 1, time.Hour, AsThrottle(false), AutoEmit(true))
	must(t, th.Start())
	for i := 0; i < 100; i++ {
		if ok, err := th.HasFuel(); !ok || err != nil {
			t.Fatalf("HasFuel() #%d = %v, %v without throttling", i, ok, err)
		}
	}
	must(t, th.AwaitFuel(context.Background()))
	s, err := th.Stop()
	must(t, err)
	if s.Total != 101 {
		t.Errorf("total = %d, want 101", s.Total)
	}
}

func TestOptions(t *testing.T) {
	cases := []struct {
		name string
		opts []Option
	}{
		{"Refresh(0)", []Option{Refresh(0)}},
		{"Refresh(-1s)", []Option{Refresh(-time.Second)}},
		{"both off", []Option{AsThrottle(false), AsMonitor(false)}},
		{"bad hardcap", []Option{WithHardcap(Hardcap(9))}},
		{"Spin(2s)", []Option{Spin(2 * time.Second)}},
		{"Spin(-1)", []Option{Spin(-1)}},
		{"TimerSlack(-1)", []Option{TimerSlack(-1)}},
		{"TimerSlack(5s)", []Option{TimerSlack(5 * time.Second)}},
	}
	for _, c := range cases {
		th, err := New(1, time.Second, c.opts...)
		if th != nil {
			th.Close()
		}
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: New error %v, want ErrInvalidArgument", c.name, err)
		}
	}
	for _, h := range []Hardcap{HardcapLimit, HardcapOne, HardcapNone, HardcapWindow} {
		th, err := New(3, time.Second, WithHardcap(h), Refresh(time.Millisecond),
			TimerSlack(0), Spin(50*time.Microsecond), nil)
		if err != nil {
			t.Errorf("New with hardcap %v: %v", h, err)
			continue
		}
		th.Close()
	}
	if got := HardcapWindow.String(); got != "WINDOW" {
		t.Errorf("HardcapWindow.String() = %q", got)
	}
	if _, err := New(0, time.Second); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("New(0, 1s): %v", err)
	}
	if _, err := New(1, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("New(1, 0): %v", err)
	}
	if _, err := New(5_000_000, time.Second, WithHardcap(HardcapWindow)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("New(5e6, WINDOW): %v", err)
	}
}

func TestVersion(t *testing.T) {
	major, minor, patch := Version()
	got := fmt.Sprintf("%d.%d.%d", major, minor, patch)
	t.Logf("library %s, header %s", got, HeaderVersion)
	// The linked library and the header share the major version (the same
	// commit's build gives equal versions; a mid-change header may be newer).
	if !strings.HasPrefix(HeaderVersion, fmt.Sprintf("%d.", major)) || minor >= 1<<20 || patch >= 1<<20 {
		t.Errorf("Version() = %s, header says %s", got, HeaderVersion)
	}
	a := ClockNow()
	time.Sleep(10 * time.Millisecond)
	if d := time.Duration(ClockNow() - a); d < 10*time.Millisecond || d > time.Second {
		t.Errorf("ClockNow advanced %v over a 10 ms sleep", d)
	}
}

// TestRate: 10 per second for 2 s, taken by four goroutines, two waiting
// with context.Background() (no token) and two with a cancellable context
// (a token and a watcher goroutine): 1 + 20 grants, exactly on the schedule.
func TestRate(t *testing.T) {
	const per = 100 * time.Millisecond
	th := mustNew(t, 10, time.Second)
	var mu sync.Mutex
	var grants []int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 4; i++ {
		wctx := context.Background()
		if i%2 == 1 {
			wctx = ctx
		}
		wg.Add(1)
		go func(ctx context.Context) {
			defer wg.Done()
			for {
				g, err := th.AwaitFuelGrant(ctx)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				grants = append(grants, g)
				mu.Unlock()
			}
		}(wctx)
	}
	time.Sleep(50 * time.Millisecond) // the waiters wait for the start
	must(t, th.Start())
	time.Sleep(2 * time.Second)
	s, err := th.Stop()
	must(t, err)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrKilled) {
			t.Errorf("a worker ended with %v, want ErrKilled", err)
		}
	}
	n := len(grants)
	if n < 19 || n > 22 {
		t.Errorf("%d grants in 2 s at 10/s, want 19..22", n)
	}
	if s.Total != uint64(n) {
		t.Errorf("Stop total %d, but the workers took %d units", s.Total, n)
	}
	sort.Slice(grants, func(i, j int) bool { return grants[i] < grants[j] })
	// LIMIT, saturated from the start: unit k falls at t0 + k*100ms. The
	// grant time of unit 0 is when its waiter woke after the start, a little
	// after t0, so units are checked against unit 1's slot.
	for k := 2; k < n; k++ {
		if d := time.Duration(grants[k] - grants[1]); d < time.Duration(k-1)*per {
			t.Errorf("grant %d at t1+%v, before its slot at t1+%v", k, d, time.Duration(k-1)*per)
		}
	}
	wantDuration(t, "runtime", s.Runtime, 2*time.Second, 2500*time.Millisecond)
}

func TestStatistics(t *testing.T) {
	const period = 50 * time.Millisecond // 20 per second
	th := mustNew(t, 20, time.Second, WithHardcap(HardcapOne))
	count := make(chan int)
	go func() {
		n := 0
		for th.AwaitFuel(context.Background()) == nil {
			n++
		}
		count <- n
	}()
	must(t, th.Start())
	time.Sleep(1100 * time.Millisecond)

	latest, err := th.Latest()
	must(t, err)
	if latest.PerSecond < 15 || latest.PerSecond > 22 {
		t.Errorf("Latest() = %+v while running at 20/s", latest)
	}
	mean, err := th.Mean()
	must(t, err)
	if mean.PerSecond < 15 || mean.PerSecond > 25 {
		t.Errorf("Mean() = %+v while running at 20/s", mean)
	}
	lohi, err := th.LoHi()
	must(t, err)
	hilo, err := th.HiLo()
	must(t, err)
	// HardcapOne: grants at least 50 ms apart, emissions at grant times.
	wantDuration(t, "LoHi interval", lohi.Interval, period-time.Microsecond, 2*period)
	wantDuration(t, "HiLo interval", hilo.Interval, lohi.Interval, time.Second)
	for _, r := range []Rate{latest, mean, lohi, hilo} {
		wantNear(t, "PerSecond × Interval", r.PerSecond*r.Interval.Seconds(), 1, 1e-3)
	}

	s, err := th.Stop()
	must(t, err)
	n := <-count
	if s.Total != uint64(n) || n < 18 || n > 25 {
		t.Errorf("Stop total %d, the worker took %d, want 18..25 in 1.1 s at 20/s", s.Total, n)
	}
	wantDuration(t, "runtime", s.Runtime, 1100*time.Millisecond, 1800*time.Millisecond)
	wantNear(t, "mean per second", s.MeanPerSecond, float64(s.Total)/s.Runtime.Seconds(), 1e-3)
	wantNear(t, "mean interval × per second", s.MeanInterval.Seconds()*s.MeanPerSecond, 1, 1e-3)
	again, err := th.Summary()
	must(t, err)
	if again != s {
		t.Errorf("Summary() after Stop = %+v, Stop said %+v", again, s)
	}
	if latest, err := th.Latest(); err != nil || latest != (Rate{}) {
		t.Errorf("Latest() after Stop = %+v, %v; want zero", latest, err)
	}
}

func TestMonitorOff(t *testing.T) {
	th := mustNew(t, 1000, time.Second, AsMonitor(false))
	must(t, th.Start())
	must(t, th.AwaitFuel(context.Background()))
	for name, f := range map[string]func() (Rate, error){
		"Latest": th.Latest, "Mean": th.Mean, "LoHi": th.LoHi, "HiLo": th.HiLo,
	} {
		_, err := f()
		wantErr(t, err, ErrMonitorOff, name)
	}
	s, err := th.Summary()
	must(t, err)
	if s.Total != 1 {
		t.Errorf("Summary() total = %d without a monitor, want 1", s.Total)
	}
}

// TestPauseResume: Stop/Start is pause/resume; the pause is not runtime.
func TestPauseResume(t *testing.T) {
	th := mustNew(t, 1, time.Second, AsThrottle(false))
	must(t, th.Start())
	for i := 0; i < 5; i++ {
		must(t, th.Emit())
	}
	time.Sleep(200 * time.Millisecond)
	_, err := th.Stop()
	must(t, err)
	time.Sleep(600 * time.Millisecond)
	must(t, th.Start())
	time.Sleep(200 * time.Millisecond)
	for i := 0; i < 3; i++ {
		must(t, th.Emit())
	}
	s, err := th.Stop()
	must(t, err)
	if s.Total != 8 {
		t.Errorf("total = %d, want 8", s.Total)
	}
	wantDuration(t, "runtime of two 200 ms runs around a 600 ms pause", s.Runtime,
		400*time.Millisecond, 950*time.Millisecond)
}

func TestNamed(t *testing.T) {
	name := uniqueName(t)
	a, err := CreateNamed(name, 1, time.Hour)
	must(t, err)
	defer a.Close()
	if a.Name() != name {
		t.Errorf("Name() = %q, want %q", a.Name(), name)
	}
	// The same configuration opens it; another is refused.
	b, err := CreateNamed(name, 1, time.Hour)
	must(t, err)
	defer b.Close()
	_, err = CreateNamed(name, 2, time.Hour)
	e := wantErr(t, err, ErrMismatch, "CreateNamed")
	if !strings.Contains(e.Message, name) {
		t.Errorf("mismatch message %q does not name %q", e.Message, name)
	}
	// Open adopts the configuration; only TimerSlack and Spin apply.
	_, err = Open(name, WithHardcap(HardcapOne))
	wantErr(t, err, ErrInvalidArgument, "Open")
	c, err := Open(name, TimerSlack(0), Spin(0))
	must(t, err)
	defer c.Close()

	// One throttle behind three handles: its single unit is taken once.
	must(t, a.Start())
	if running, err := c.IsRunning(); err != nil || !running {
		t.Fatalf("IsRunning() through another handle = %v, %v", running, err)
	}
	took := 0
	for _, th := range []*Throttle{a, b, c} {
		ok, err := th.HasFuel()
		must(t, err)
		if ok {
			took++
		}
	}
	if took != 1 {
		t.Errorf("%d units taken from a throttle of 1 per hour", took)
	}
	s, err := c.Stop()
	must(t, err)
	if s.Total != 1 {
		t.Errorf("total = %d, want 1", s.Total)
	}
	must(t, Unlink(name))
	_, err = Open(name)
	wantErr(t, err, ErrNotFound, "Open")
	wantErr(t, Unlink(name), ErrNotFound, "Unlink")
	// An unlinked name stays usable by those who have it open.
	must(t, b.Start())
	if running, err := a.IsRunning(); !running || err != nil {
		t.Errorf("IsRunning() after Unlink = %v, %v", running, err)
	}
	_, err = a.Stop()
	must(t, err)
}

// GroupShared: mode 0660 of this process's group; part of the
// configuration; its owner opens it, asking or not. (The sharing between
// users is tested as root by tests/owners.rs.)
func TestGroupShared(t *testing.T) {
	name := uniqueName(t)
	a, err := CreateNamed(name, 1, time.Hour, GroupShared(true))
	must(t, err)
	defer a.Close()
	defer Unlink(name)
	fi, err := os.Stat("/dev/shm/mp_throttle." + name)
	must(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		t.Errorf("group-shared object: mode %v, uid %d, gid %d", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	_, err = CreateNamed(name, 1, time.Hour)
	wantErr(t, err, ErrMismatch, "CreateNamed")
	b, err := CreateNamed(name, 1, time.Hour, GroupShared(true))
	must(t, err)
	defer b.Close()
	for _, opts := range [][]Option{nil, {GroupShared(true)}, {GroupShared(false), Spin(0)}} {
		c, err := Open(name, opts...)
		must(t, err)
		must(t, c.Close())
	}
	private := uniqueName(t)
	p, err := CreateNamed(private, 1, time.Hour, GroupShared(false))
	must(t, err)
	defer p.Close()
	defer Unlink(private)
	fi, err = os.Stat("/dev/shm/mp_throttle." + private)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("private object: mode %v", fi.Mode().Perm())
	}
	_, err = CreateNamed(private, 1, time.Hour, GroupShared(true))
	wantErr(t, err, ErrMismatch, "CreateNamed")
}

func TestNamesRefused(t *testing.T) {
	for _, name := range []string{"", "a/b", strings.Repeat("n", MaxNameLen+1), "nul\x00byte"} {
		_, err := CreateNamed(name, 1, time.Second)
		wantErr(t, err, ErrInvalidArgument, "CreateNamed")
		_, err = Open(name)
		wantErr(t, err, ErrInvalidArgument, "Open")
		wantErr(t, Unlink(name), ErrInvalidArgument, "Unlink")
	}
}

func TestCloseIdempotent(t *testing.T) {
	before := freed.Load()
	th, err := New(1, time.Second)
	must(t, err)
	must(t, th.Start())
	must(t, th.Close())
	must(t, th.Close())
	if got := freed.Load() - before; got != 1 {
		t.Fatalf("%d handles freed by Close twice, want 1", got)
	}
	calls := map[string]func() error{
		"Start":         th.Start,
		"Stop":          func() error { _, err := th.Stop(); return err },
		"AwaitFuel":     func() error { return th.AwaitFuel(context.Background()) },
		"AwaitFuelN":    func() error { return th.AwaitFuelN(context.Background(), 1) },
		"HasFuel":       func() error { _, err := th.HasFuel(); return err },
		"HasFuelN":      func() error { _, err := th.HasFuelN(1); return err },
		"Peek":          func() error { _, _, err := th.Peek(1); return err },
		"SetRate":       func() error { return th.SetRate(2, time.Second) },
		"Rate":          func() error { _, _, err := th.Rate(); return err },
		"Emit":          th.Emit,
		"EmitAt":        func() error { return th.EmitAt(0) },
		"Kill":          th.Kill,
		"KillFlagIsSet": func() error { _, err := th.KillFlagIsSet(); return err },
		"IsRunning":     func() error { _, err := th.IsRunning(); return err },
		"Latest":        func() error { _, err := th.Latest(); return err },
		"Mean":          func() error { _, err := th.Mean(); return err },
		"LoHi":          func() error { _, err := th.LoHi(); return err },
		"HiLo":          func() error { _, err := th.HiLo(); return err },
		"Summary":       func() error { _, err := th.Summary(); return err },
	}
	for op, call := range calls {
		err := call()
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
		wantErr(t, err, ErrBadHandle, op)
	}
}

// TestCloseWhileInUse: Close while other goroutines call the throttle frees
// the handle exactly once, after the last call in progress.
func TestCloseWhileInUse(t *testing.T) {
	before := freed.Load()
	th, err := New(1_000_000, time.Second)
	must(t, err)
	must(t, th.Start())
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := th.HasFuel(); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("HasFuel: %v", err)
					}
					return
				}
				if _, err := th.Mean(); err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("Mean: %v", err)
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	must(t, th.Close())
	wg.Wait()
	if got := freed.Load() - before; got != 1 {
		t.Fatalf("%d handles freed, want 1", got)
	}
}

func TestFinalizer(t *testing.T) {
	before := finalized.Load()
	func() {
		th, err := New(1, time.Second)
		must(t, err)
		must(t, th.Start())
	}()
	deadline := time.Now().Add(5 * time.Second)
	for finalized.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the finalizer did not free an unreachable Throttle")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	// A closed Throttle has no finalizer left.
	before = finalized.Load()
	func() {
		th, err := New(1, time.Second)
		must(t, err)
		must(t, th.Close())
	}()
	for i := 0; i < 5; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := finalized.Load() - before; got != 0 {
		t.Errorf("%d finalizers ran for a closed Throttle", got)
	}
}
