package mpthrottle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// keyedWorkerEnv, when set to a keyed throttle's name, makes the test binary
// a worker process of TestKeyedNamed instead of running the tests (see
// TestMain and runKeyedWorker).
const keyedWorkerEnv = "MPT_GO_TEST_KEYED_WORKER"

// runKeyedWorker is a worker process: it opens the named keyed throttle
// (2 units per hour for each key, running), finds the key "a" empty (the
// parent took its units), takes both units of the key "b\x00b" at once
// and prints "took G" (the grant time).
func runKeyedWorker(name string) int {
	k, err := OpenKeyed(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyed worker:", err)
		return 1
	}
	defer k.Close()
	if ok, err := k.HasFuel("a"); ok || err != nil {
		fmt.Fprintln(os.Stderr, "keyed worker: HasFuel(a) =", ok, err, "want false, nil")
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := k.AwaitFuelNGrant(ctx, "b\x00b", 2)
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyed worker:", err)
		return 1
	}
	fmt.Println("took", g)
	return 0
}

// mustNewKeyed is NewKeyed that fails the test on error and closes the
// keyed throttle at the end.
func mustNewKeyed(t *testing.T, maxN uint64, per time.Duration, capacity uint64, opts ...Option) *Keyed {
	t.Helper()
	k, err := NewKeyed(maxN, per, capacity, opts...)
	if err != nil {
		t.Fatalf("NewKeyed(%d, %v, %d): %v", maxN, per, capacity, err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

// wantHas checks HasFuel(key)'s answer.
func wantHas(t *testing.T, k *Keyed, key string, want bool) {
	t.Helper()
	ok, err := k.HasFuel(key)
	if ok != want || err != nil {
		t.Fatalf("HasFuel(%q) = %v, %v, want %v, nil", key, ok, err, want)
	}
}

func keyStats(t *testing.T, k *Keyed, key string) KeyStats {
	t.Helper()
	s, err := k.KeyStats(key)
	must(t, err)
	return s
}

func keyedStats(t *testing.T, k *Keyed) KeyedStats {
	t.Helper()
	s, err := k.Stats()
	must(t, err)
	return s
}

// TestKeyedNewKeyFullTank: a key never seen has a full tank (3 units at
// once, LIMIT), a fourth unit is refused, and another new key has its own
// full tank; Peek neither takes nor adds. Before Start nothing is granted.
func TestKeyedNewKeyFullTank(t *testing.T) {
	k := mustNewKeyed(t, 3, time.Hour, 16)
	wantHas(t, k, "a", false) // not started: no fuel, nothing added
	_, _, err := k.Peek("a", 1)
	wantErr(t, err, ErrNotRunning, "Peek")
	if s := keyedStats(t, k); s.LiveKeys != 0 || s.Added != 0 || s.Capacity != 16 {
		t.Fatalf("before Start: %+v, want no key and capacity 16", s)
	}
	must(t, k.Start())
	if running, err := k.IsRunning(); !running || err != nil {
		t.Fatalf("IsRunning() = %v, %v", running, err)
	}
	level, wait, err := k.Peek("a", 3)
	must(t, err)
	if level != 3 || wait != 0 {
		t.Errorf("Peek(a, 3) of a new key = %d, %v, want a full tank: 3, 0", level, wait)
	}
	if s := keyStats(t, k, "a"); s.InTable {
		t.Errorf("Peek added the key: %+v", s)
	}
	before := ClockNow()
	if ok, err := k.HasFuelN("a", 3); !ok || err != nil {
		t.Fatalf("HasFuelN(a, 3) of a new key = %v, %v, want its full tank", ok, err)
	}
	wantHas(t, k, "a", false)
	_, err = k.HasFuelN("a", 4)
	wantErr(t, err, ErrInvalidArgument, "HasFuelN")
	level, wait, err = k.Peek("a", 1)
	must(t, err)
	if level != 0 || wait < 19*time.Minute || wait > 20*time.Minute {
		t.Errorf("Peek(a, 1) after its 3 units = %d, %v, want 0 and 20 min (3 per hour)", level, wait)
	}

	// Another new key: its own full tank, at once, also through AwaitFuelN.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	must(t, k.AwaitFuelN(ctx, "b", 3))
	wantDuration(t, "AwaitFuelN(b, 3) of a new key", time.Since(start), 0, slack)
	g, err := k.AwaitFuelGrant(ctx, "c")
	must(t, err)
	after := ClockNow()
	if g < before || g > after {
		t.Errorf("grant time %d not within [%d, %d]", g, before, after)
	}

	if s := keyStats(t, k, "never"); s != (KeyStats{}) {
		t.Errorf("KeyStats of a key never used = %+v, want zeros", s)
	}
	ka := keyStats(t, k, "a")
	if !ka.InTable || ka.Granted != 3 || ka.AddedAt < before || ka.AddedAt > after {
		t.Errorf("KeyStats(a) = %+v, want in the table, 3 granted, added in [%d, %d]", ka, before, after)
	}
	kc := keyStats(t, k, "c")
	if !kc.InTable || kc.Granted != 1 {
		t.Errorf("KeyStats(c) = %+v, want in the table, 1 granted", kc)
	}
	s := keyedStats(t, k)
	// Auto-emit: each grant (of 1 or 3 units) is one emission.
	if s.LiveKeys != 3 || s.Added != 3 || s.Evictions != 0 || s.Capacity != 16 || s.Summary.Total != 3 {
		t.Errorf("Stats() = %+v, want 3 live keys, 3 added, none evicted, 3 emissions", s)
	}
	sum, err := k.Stop()
	must(t, err)
	if sum.Total != 3 {
		t.Errorf("Stop total = %d, want 3", sum.Total)
	}
}

// TestKeyedKeyAtLimitDoesNotSlowAnother: a key at its limit, with a waiter
// asleep on it for an hour, does not slow new keys (granted at once); and
// at 10 per second for each key, three goroutines hammering one key and one
// goroutine on another key each get their key's own rate: about 20 units
// in 1 s (10 in the full tank, then one every 100 ms), the busy key no
// more than the other.
func TestKeyedKeyAtLimitDoesNotSlowAnother(t *testing.T) {
	k := mustNewKeyed(t, 1, time.Hour, 64)
	must(t, k.Start())
	wantHas(t, k, "busy", true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sleeper := make(chan error, 1)
	go func() { sleeper <- k.AwaitFuel(ctx, "busy") }()
	queuedKey(t, k, "busy", ClockNow()+int64(time.Hour)) // the sleeper has reserved the next unit
	deadline, cancelDeadline := context.WithTimeout(context.Background(), 100*time.Millisecond)
	start := time.Now()
	err := k.AwaitFuel(deadline, "busy")
	cancelDeadline()
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AwaitFuel(busy) with a deadline of 100 ms: %v, want ErrTimeout", err)
	}
	wantDuration(t, "timeout of the busy key", time.Since(start), 100*time.Millisecond-time.Millisecond,
		100*time.Millisecond+slack)
	start = time.Now()
	for i := 0; i < 20; i++ {
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := k.AwaitFuel(wctx, fmt.Sprintf("free-%d", i))
		wcancel()
		must(t, err)
	}
	wantDuration(t, "20 new keys while one waits for an hour", time.Since(start), 0, slack)
	select {
	case err := <-sleeper:
		t.Fatalf("the sleeper on the busy key returned: %v", err)
	default:
	}
	cancel()
	wantCancelled(t, (<-sleeper))

	// Rates: 10 per second per key.
	r := mustNewKeyed(t, 10, time.Second, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[string]int{}
	for _, key := range []string{"hot", "hot", "hot", "cold"} {
		wg.Add(1)
		go func(key string) {
			defer wg.Done()
			for {
				if err := r.AwaitFuel(context.Background(), key); err != nil {
					if !errors.Is(err, ErrKilled) {
						t.Errorf("AwaitFuel(%s): %v", key, err)
					}
					return
				}
				mu.Lock()
				counts[key]++
				mu.Unlock()
			}
		}(key)
	}
	time.Sleep(50 * time.Millisecond) // the waiters wait for the start
	must(t, r.Start())
	time.Sleep(time.Second)
	s, err := r.Stop()
	must(t, err)
	wg.Wait()
	t.Logf("in 1 s: hot (3 goroutines) %d units, cold (1 goroutine) %d", counts["hot"], counts["cold"])
	for key, n := range counts {
		if n < 15 || n > 22 {
			t.Errorf("key %s took %d units in 1 s at 10/s with a full tank of 10, want 15..22", key, n)
		}
	}
	if counts["hot"] > counts["cold"]+2 {
		t.Errorf("three goroutines on one key took %d units, one on another %d: the keys do not share a rate",
			counts["hot"], counts["cold"])
	}
	if s.Total != uint64(counts["hot"]+counts["cold"]) {
		t.Errorf("Stop total %d, the goroutines took %d", s.Total, counts["hot"]+counts["cold"])
	}
}

// queuedKey waits until a waiter arriving now on key would get its unit at
// `at` (ClockNow ns) or later, give or take 100 ms.
func queuedKey(t *testing.T, k *Keyed, key string, at int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, wait, err := k.Peek(key, 1)
		must(t, err)
		now := ClockNow()
		if now+int64(wait) >= at-int64(100*time.Millisecond) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the waiter on %q did not queue: a newcomer would wait %v", key, wait)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestKeyedNoRoom: a table of 2 keys whose tanks are not full again (1 unit
// per hour, taken) has no room for a third key: ErrNoRoom at once, from
// HasFuel and AwaitFuel, and nothing taken or added; Forget makes room.
// With 1 unit per 500 ms, a key whose tank is full again is dropped for a
// new one (an eviction).
func TestKeyedNoRoom(t *testing.T) {
	k := mustNewKeyed(t, 1, time.Hour, 2)
	must(t, k.Start())
	wantHas(t, k, "a", true)
	wantHas(t, k, "b", true)
	ok, err := k.HasFuel("c")
	e := wantErr(t, err, ErrNoRoom, "HasFuel")
	if ok {
		t.Errorf("HasFuel(c) with no room = true")
	}
	t.Logf("no room: %v", e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = k.AwaitFuelGrant(ctx, "c")
	wantErr(t, err, ErrNoRoom, "AwaitFuel")
	wantDuration(t, "AwaitFuel's ErrNoRoom", time.Since(start), 0, slack)
	_, err = k.HasFuelN("c", 1)
	wantErr(t, err, ErrNoRoom, "HasFuelN")
	if errors.Is(err, ErrNoFuel) || errors.Is(err, ErrTimeout) {
		t.Errorf("ErrNoRoom matches another sentinel: %v", err)
	}
	// Nothing taken, nothing added; Peek still sees the new key's full tank.
	if s := keyStats(t, k, "c"); s.InTable {
		t.Errorf("KeyStats(c) after ErrNoRoom: %+v", s)
	}
	if level, _, err := k.Peek("c", 1); level != 1 || err != nil {
		t.Errorf("Peek(c) = %d, %v, want 1 (a key never seen)", level, err)
	}
	s := keyedStats(t, k)
	if s.LiveKeys != 2 || s.Added != 2 || s.Evictions != 0 || s.Summary.Total != 2 {
		t.Errorf("Stats() after ErrNoRoom = %+v, want 2 keys, 2 added, 2 grants", s)
	}
	// Forget makes room; the forgotten key starts afresh (a full tank).
	if found, err := k.Forget("a"); !found || err != nil {
		t.Fatalf("Forget(a) = %v, %v", found, err)
	}
	if found, err := k.Forget("a"); found || err != nil {
		t.Fatalf("Forget(a) again = %v, %v, want false, nil", found, err)
	}
	wantHas(t, k, "c", true)
	_, err = k.HasFuel("a")
	wantErr(t, err, ErrNoRoom, "HasFuel")
	if s := keyedStats(t, k); s.LiveKeys != 2 || s.Added != 3 || s.Evictions != 0 || s.Summary.Total != 3 {
		t.Errorf("Stats() after Forget = %+v, want 2 keys, 3 added, 3 grants", s)
	}

	// Eviction: the only key's tank is full again 500 ms after its unit.
	ev := mustNewKeyed(t, 1, 500*time.Millisecond, 1)
	must(t, ev.Start())
	wantHas(t, ev, "x", true)
	_, err = ev.HasFuel("y")
	wantErr(t, err, ErrNoRoom, "HasFuel")
	time.Sleep(600 * time.Millisecond)
	wantHas(t, ev, "y", true)
	if s := keyStats(t, ev, "x"); s.InTable {
		t.Errorf("the idle key x is still in the table: %+v", s)
	}
	if s := keyedStats(t, ev); s.LiveKeys != 1 || s.Added != 2 || s.Evictions != 1 {
		t.Errorf("Stats() after the eviction = %+v, want 1 key, 2 added, 1 eviction", s)
	}
}

// TestKeyedKeys: keys of 0 and KeyMax bytes work; KeyMax+1 is refused by
// every call that takes a key, adding nothing; NUL bytes are part of a key
// ("a\x00b", "a\x00c", "a" and "a\x00" are four keys).
func TestKeyedKeys(t *testing.T) {
	if KeyMax != 128 {
		t.Fatalf("KeyMax = %d, want 128 (MPT_KEY_MAX)", KeyMax)
	}
	k := mustNewKeyed(t, 1, time.Hour, 32)
	must(t, k.Start())
	max := strings.Repeat("\x00\xffk", KeyMax/3) + "zz" // 128 bytes, not UTF-8
	if len(max) != KeyMax {
		t.Fatalf("test key of %d bytes", len(max))
	}
	for _, key := range []string{"", max, max[:KeyMax-1], "a\x00b", "a\x00c", "a", "a\x00", "\x00"} {
		wantHas(t, k, key, true)
		wantHas(t, k, key, false)
		if s := keyStats(t, k, key); !s.InTable || s.Granted != 1 {
			t.Errorf("KeyStats(%q) = %+v, want in the table, 1 granted", key, s)
		}
	}
	if s := keyedStats(t, k); s.LiveKeys != 8 {
		t.Errorf("%d keys in the table, want 8 distinct keys", s.LiveKeys)
	}

	long := max + "!"
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	calls := map[string]func() error{
		"HasFuel":    func() error { _, err := k.HasFuel(long); return err },
		"HasFuelN":   func() error { _, err := k.HasFuelN(long, 1); return err },
		"AwaitFuel":  func() error { return k.AwaitFuel(ctx, long) },
		"AwaitFuelN": func() error { return k.AwaitFuelN(context.Background(), long, 1) },
		"Peek":       func() error { _, _, err := k.Peek(long, 1); return err },
		"Forget":     func() error { _, err := k.Forget(long); return err },
		"KeyStats":   func() error { _, err := k.KeyStats(long); return err },
	}
	for op, call := range calls {
		e := wantErr(t, call(), ErrInvalidArgument, op)
		if !strings.Contains(e.Message, "128") || !strings.Contains(e.Message, "129") {
			t.Errorf("%s: message %q names neither the limit nor the length", op, e.Message)
		}
	}
	if s := keyedStats(t, k); s.LiveKeys != 8 || s.Summary.Total != 8 {
		t.Errorf("Stats() after the refusals = %+v, want 8 keys and 8 grants", s)
	}
}

// TestKeyedCancel: a waiter asleep on a key ends at once when its context
// is cancelled, taking nothing: the unit it had reserved goes to the next
// waiter at its time. A context already done takes nothing either.
func TestKeyedCancel(t *testing.T) {
	k := mustNewKeyed(t, 1, time.Second, 4)
	must(t, k.Start())
	g0, err := k.AwaitFuelGrant(context.Background(), "k") // unit 0; the next at g0+1s
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan outcome, 1)
	go func() {
		g, err := k.AwaitFuelGrant(ctx, "k")
		ch <- outcome{g, err, time.Now()}
	}()
	queuedKey(t, k, "k", g0+int64(2*time.Second)) // it has reserved the unit at g0+1s
	cancelled := time.Now()
	cancel()
	o := waitOutcome(t, ch)
	wantCancelled(t, o.err)
	wantDuration(t, "cancellation latency", o.at.Sub(cancelled), 0, slack)
	if s := keyStats(t, k, "k"); s.Granted != 1 {
		t.Errorf("KeyStats(k) after the cancellation = %+v, want 1 granted", s)
	}
	// The unit at g0+1s is free again.
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	g1, err := k.AwaitFuelGrant(wctx, "k")
	must(t, err)
	// (Had the cancelled waiter kept its unit, this one would come at g0+2s.)
	wantDuration(t, "the next waiter's grant after g0", time.Duration(g1-g0),
		900*time.Millisecond, time.Second+slack)

	// Done on entry: nothing taken, even from a full tank.
	done, doneCancel := context.WithCancel(context.Background())
	doneCancel()
	err = k.AwaitFuel(done, "fresh")
	wantCancelled(t, err)
	if s := keyStats(t, k, "fresh"); s.InTable {
		t.Errorf("a done context added the key: %+v", s)
	}
	wantHas(t, k, "fresh", true)
	if s, err := k.Stop(); err != nil || s.Total != 3 {
		t.Errorf("Stop() = %+v, %v, want 3 grants", s, err)
	}
}

// TestKeyedKillWakesWaiters: Kill ends the waits on every key (with and
// without a cancellable context) at once, and refuses fuel afterwards.
func TestKeyedKillWakesWaiters(t *testing.T) {
	k := mustNewKeyed(t, 1, time.Hour, 4)
	must(t, k.Start())
	wantHas(t, k, "k", true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chs := make([]chan error, 2)
	for i, c := range []context.Context{context.Background(), ctx} {
		chs[i] = make(chan error, 1)
		go func(ch chan error, c context.Context) { ch <- k.AwaitFuel(c, "k") }(chs[i], c)
	}
	time.Sleep(100 * time.Millisecond)
	for _, ch := range chs {
		stillWaiting(t, ch)
	}
	must(t, k.Kill())
	for _, ch := range chs {
		err, latency := within(t, ch, slack)
		wantErr(t, err, ErrKilled, "AwaitFuel")
		wantDuration(t, "wake-up after Kill", latency, 0, slack)
	}
	ok, err := k.HasFuel("other")
	wantErr(t, err, ErrKilled, "HasFuel")
	if ok {
		t.Error("HasFuel after Kill = true")
	}
	s, err := k.Stop()
	must(t, err)
	if s.Total != 1 {
		t.Errorf("Stop total %d, want 1", s.Total)
	}
	// A new run clears the kill flag; keys keep their schedules.
	must(t, k.Start())
	wantHas(t, k, "k", false)
	wantHas(t, k, "other", true)
}

// TestKeyedCloseDuringWait: Close ends a wait with a cancellable context at
// once (ErrClosed), frees the handle once, and every later call returns
// ErrClosed.
func TestKeyedCloseDuringWait(t *testing.T) {
	before := keyedFreed.Load()
	k, err := NewKeyed(1, time.Second, 4) // never started
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan error, 1)
	go func() { ch <- k.AwaitFuel(ctx, "k") }()
	time.Sleep(100 * time.Millisecond)
	stillWaiting(t, ch)
	must(t, k.Close())
	err, latency := within(t, ch, slack)
	wantDuration(t, "end of the wait after Close", latency, 0, slack)
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrBadHandle) || errors.Is(err, context.Canceled) {
		t.Fatalf("waiter after Close: %v, want ErrClosed", err)
	}
	must(t, k.Close())
	if got := keyedFreed.Load() - before; got != 1 {
		t.Fatalf("%d keyed handles freed, want 1", got)
	}
	calls := map[string]func() error{
		"Start":      k.Start,
		"Stop":       func() error { _, err := k.Stop(); return err },
		"Kill":       k.Kill,
		"IsRunning":  func() error { _, err := k.IsRunning(); return err },
		"AwaitFuel":  func() error { return k.AwaitFuel(context.Background(), "k") },
		"AwaitFuelN": func() error { return k.AwaitFuelN(context.Background(), "k", 1) },
		"HasFuel":    func() error { _, err := k.HasFuel("k"); return err },
		"Peek":       func() error { _, _, err := k.Peek("k", 1); return err },
		"Forget":     func() error { _, err := k.Forget("k"); return err },
		"KeyStats":   func() error { _, err := k.KeyStats("k"); return err },
		"Stats":      func() error { _, err := k.Stats(); return err },
		"Latest":     func() error { _, err := k.Latest(); return err },
		"Mean":       func() error { _, err := k.Mean(); return err },
		"Config":     func() error { _, err := k.Config(); return err },
		"Rate":       func() error { _, _, err := k.Rate(); return err },
		"KillFlagIsSet": func() error {
			set, err := k.KillFlagIsSet()
			if set {
				t.Errorf("KillFlagIsSet() after Close = true")
			}
			return err
		},
	}
	for op, call := range calls {
		err := call()
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
		wantErr(t, err, ErrBadHandle, op)
	}
}

// TestKeyedNamed: a named keyed throttle is shared by handles of this
// process and by another process (the test binary as a worker): the keys'
// schedules are one. A plain throttle's name cannot be opened or created
// as a keyed one, nor the other way round; Unlink removes the name.
func TestKeyedNamed(t *testing.T) {
	name := uniqueName(t)
	_, err := OpenKeyed(name)
	wantErr(t, err, ErrNotFound, "OpenKeyed")
	owner, err := CreateNamedKeyed(name, 2, time.Hour, 8)
	must(t, err)
	defer owner.Close()
	if owner.Name() != name {
		t.Errorf("Name() = %q", owner.Name())
	}
	same, err := CreateNamedKeyed(name, 2, time.Hour, 8) // the same configuration: opened
	must(t, err)
	must(t, same.Close())
	_, err = CreateNamedKeyed(name, 2, time.Hour, 9)
	wantErr(t, err, ErrMismatch, "CreateNamedKeyed")
	_, err = CreateNamed(name, 2, time.Hour)
	wantErr(t, err, ErrMismatch, "CreateNamed")
	_, err = Open(name)
	wantErr(t, err, ErrMismatch, "Open")
	_, err = OpenKeyed(name, WithHardcap(HardcapOne))
	wantErr(t, err, ErrInvalidArgument, "OpenKeyed")

	other, err := OpenKeyed(name)
	must(t, err)
	defer other.Close()
	must(t, owner.Start())
	if running, err := other.IsRunning(); !running || err != nil {
		t.Fatalf("the other handle: IsRunning() = %v, %v", running, err)
	}
	if ok, err := other.HasFuelN("a", 2); !ok || err != nil {
		t.Fatalf("HasFuelN(a, 2) = %v, %v", ok, err)
	}
	wantHas(t, owner, "a", false) // one schedule per key, whichever handle
	if s := keyStats(t, owner, "a"); s.Granted != 2 {
		t.Errorf("KeyStats(a) through the owner = %+v, want 2 granted", s)
	}

	// Another process opens it by name.
	w := startKeyedWorker(t, name)
	l := w.line(t, 20*time.Second)
	var g int64
	if _, err := fmt.Sscanf(l, "took %d", &g); err != nil {
		t.Fatalf("keyed worker said %q, want \"took G\"", l)
	}
	must(t, w.cmd.Wait())
	if s := keyStats(t, owner, "b\x00b"); !s.InTable || s.Granted != 2 {
		t.Errorf("KeyStats(b\\x00b) after the worker = %+v, want 2 granted", s)
	}
	wantHas(t, owner, "b\x00b", false)
	wantHas(t, owner, "b", true) // another key than b\x00b
	if s := keyedStats(t, owner); s.LiveKeys != 3 || s.Summary.Total != 3 {
		t.Errorf("Stats() = %+v, want 3 keys and 3 grants (one by the worker)", s)
	}

	// A plain throttle's name.
	plainName := uniqueName(t)
	plain, err := CreateNamed(plainName, 2, time.Hour)
	must(t, err)
	defer plain.Close()
	_, err = OpenKeyed(plainName)
	wantErr(t, err, ErrMismatch, "OpenKeyed")
	_, err = CreateNamedKeyed(plainName, 2, time.Hour, 8)
	wantErr(t, err, ErrMismatch, "CreateNamedKeyed")

	// Unlink removes a keyed name; the handles keep working.
	must(t, Unlink(name))
	_, err = OpenKeyed(name)
	wantErr(t, err, ErrNotFound, "OpenKeyed")
	wantHas(t, other, "c", true)
	if _, err := owner.Stop(); err != nil {
		t.Fatal(err)
	}
}

func startKeyedWorker(t *testing.T, name string) *worker {
	t.Helper()
	t.Setenv(keyedWorkerEnv, name)
	return startWorker(t, "", "")
}

// TestKeyedErrors: bad arguments and wrong states.
func TestKeyedErrors(t *testing.T) {
	for _, c := range []struct {
		maxN, capacity uint64
		per            time.Duration
		opts           []Option
	}{
		{0, 4, time.Second, nil},
		{KeyedMaxN + 1, 4, time.Second, nil},
		{KeyedMaxWindow + 1, 4, time.Second, []Option{WithHardcap(HardcapWindow)}},
		{1, 0, time.Second, nil},
		{1, KeyedMaxCapacity + 1, time.Second, nil},
		{1, 4, 0, nil},
		{1, 4, time.Second, []Option{AsThrottle(false)}},
	} {
		_, err := NewKeyed(c.maxN, c.per, c.capacity, c.opts...)
		wantErr(t, err, ErrInvalidArgument, "NewKeyed")
	}
	for _, name := range []string{"", "a/b", "nul\x00byte"} {
		_, err := CreateNamedKeyed(name, 1, time.Second, 4)
		wantErr(t, err, ErrInvalidArgument, "CreateNamedKeyed")
		_, err = OpenKeyed(name)
		wantErr(t, err, ErrInvalidArgument, "OpenKeyed")
	}
	k := mustNewKeyed(t, KeyedMaxWindow, time.Second, 1, WithHardcap(HardcapWindow))
	_, err := k.Stop()
	wantErr(t, err, ErrWrongState, "Stop")
	must(t, k.Start())
	wantErr(t, k.Start(), ErrWrongState, "Start")
	err = k.AwaitFuelN(context.Background(), "k", 0)
	wantErr(t, err, ErrInvalidArgument, "AwaitFuelN")
	_, _, err = k.Peek("k", KeyedMaxWindow+1)
	wantErr(t, err, ErrInvalidArgument, "Peek")
	if ok, err := k.HasFuelN("k", KeyedMaxWindow); !ok || err != nil {
		t.Errorf("HasFuelN(k, %d) of a new WINDOW key = %v, %v", KeyedMaxWindow, ok, err)
	}
	quiet := mustNewKeyed(t, 1, time.Second, 1, AsMonitor(false))
	must(t, quiet.Start())
	_, err = quiet.Latest()
	wantErr(t, err, ErrMonitorOff, "Latest")
	_, err = quiet.Mean()
	wantErr(t, err, ErrMonitorOff, "Mean")
	if _, err := k.Mean(); err != nil {
		t.Errorf("Mean() with a monitor: %v", err)
	}
}

// TestKeyedNoAllocations: as TestNoAllocations, the calls of a worker's
// loop on a keyed throttle allocate nothing on success (the key crosses by
// value).
func TestKeyedNoAllocations(t *testing.T) {
	k := mustNewKeyed(t, KeyedMaxN, time.Millisecond, 4)
	must(t, k.Start())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	key := strings.Repeat("k", KeyMax)
	for name, f := range map[string]func(){
		"HasFuel":                 func() { _, _ = k.HasFuel(key) },
		"HasFuelN":                func() { _, _ = k.HasFuelN(key, 3) },
		"AwaitFuel(Background)":   func() { _ = k.AwaitFuel(context.Background(), key) },
		"AwaitFuel(cancellable)":  func() { _ = k.AwaitFuel(ctx, key) },
		"AwaitFuelN(cancellable)": func() { _ = k.AwaitFuelN(ctx, key, 3) },
		"Peek":                    func() { _, _, _ = k.Peek(key, 3) },
		"KeyStats":                func() { _, _ = k.KeyStats(key) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
	if s := keyStats(t, k, key); s.Granted < 5*1001 {
		t.Errorf("KeyStats = %+v: the calls were not granted", s)
	}
}

// TestKeyedConfig: Config reports every option NewKeyed was given, the rate,
// the capacity and Created, before and after a run; the defaults (AutoEmit
// resolved to true); Rate says the same as Config. A named keyed
// throttle's creator, a CreateNamedKeyed that opens it and an OpenKeyed all
// report the creator's configuration with their own TimerSlack and Spin,
// and only the creator is Created.
func TestKeyedConfig(t *testing.T) {
	k := mustNewKeyed(t, 5, 2*time.Second, 16, WithHardcap(HardcapWindow), AsMonitor(false), AutoEmit(false),
		Refresh(30*time.Millisecond), TimerSlack(3*time.Microsecond), Spin(50*time.Microsecond))
	want := KeyedConfig{MaxN: 5, Per: 2 * time.Second, Capacity: 16, Created: true, Hardcap: HardcapWindow,
		AsMonitor: false, AutoEmit: false, Refresh: 30 * time.Millisecond, TimerSlack: 3 * time.Microsecond,
		Spin: 50 * time.Microsecond}
	wantConfig(t, "NewKeyed with every option", k, want)
	if maxN, per, err := k.Rate(); maxN != 5 || per != 2*time.Second || err != nil {
		t.Errorf("Rate() = %d, %v, %v; want 5, 2s, nil", maxN, per, err)
	}
	must(t, k.Start())
	if ok, err := k.HasFuelN("k", 5); !ok || err != nil {
		t.Fatalf("HasFuelN(k, 5) = %v, %v", ok, err)
	}
	_, err := k.Stop()
	must(t, err)
	wantConfig(t, "after a run", k, want)

	d := mustNewKeyed(t, 1, 250*time.Millisecond, 1)
	wantConfig(t, "NewKeyed with the defaults", d, KeyedConfig{MaxN: 1, Per: 250 * time.Millisecond,
		Capacity: 1, Created: true, Hardcap: HardcapLimit, AsMonitor: true, AutoEmit: true,
		Refresh: 10 * time.Millisecond, TimerSlack: 1})

	name := uniqueName(t)
	made := []Option{WithHardcap(HardcapOne), GroupShared(true), TimerSlack(2 * time.Microsecond)}
	owner, err := CreateNamedKeyed(name, 4, 500*time.Millisecond, 8, made...)
	must(t, err)
	defer owner.Close()
	want = KeyedConfig{MaxN: 4, Per: 500 * time.Millisecond, Capacity: 8, Created: true, Hardcap: HardcapOne,
		AsMonitor: true, AutoEmit: true, Refresh: 10 * time.Millisecond, GroupShared: true,
		TimerSlack: 2 * time.Microsecond}
	wantConfig(t, "the creator", owner, want)
	same, err := CreateNamedKeyed(name, 4, 500*time.Millisecond, 8, append(made, Spin(20*time.Microsecond))...)
	must(t, err)
	defer same.Close()
	want.Created, want.Spin = false, 20*time.Microsecond
	wantConfig(t, "a CreateNamedKeyed that opened it", same, want)
	opened, err := OpenKeyed(name, GroupShared(true), TimerSlack(4*time.Microsecond), Spin(10*time.Microsecond))
	must(t, err)
	defer opened.Close()
	want.TimerSlack, want.Spin = 4*time.Microsecond, 10*time.Microsecond
	wantConfig(t, "OpenKeyed", opened, want)
	if maxN, per, err := opened.Rate(); maxN != 4 || per != 500*time.Millisecond || err != nil {
		t.Errorf("OpenKeyed's Rate() = %d, %v, %v; want 4, 500ms, nil", maxN, per, err)
	}
}

func wantConfig(t *testing.T, what string, k *Keyed, want KeyedConfig) {
	t.Helper()
	if c, err := k.Config(); c != want || err != nil {
		t.Errorf("%s: Config() =\n  %+v, %v; want\n  %+v", what, c, err, want)
	}
}

// TestKeyedKillFlag: the kill flag is clear before and after Start, set by
// Kill through one handle for both handles of a named keyed throttle (each
// with its own mapping), still set after Stop, and cleared for both by the
// next Start. (TestRedisKeyed checks the flag across processes.)
func TestKeyedKillFlag(t *testing.T) {
	name := uniqueName(t)
	owner, err := CreateNamedKeyed(name, 1, time.Hour, 4)
	must(t, err)
	defer owner.Close()
	other, err := OpenKeyed(name)
	must(t, err)
	defer other.Close()
	wantKillFlag := func(when string, want bool) {
		t.Helper()
		for i, k := range []*Keyed{owner, other} {
			if set, err := k.KillFlagIsSet(); set != want || err != nil {
				t.Errorf("%s: handle %d: KillFlagIsSet() = %v, %v; want %v, nil", when, i, set, err, want)
			}
		}
	}
	wantKillFlag("before Start", false)
	must(t, owner.Start())
	wantKillFlag("after Start", false)
	wantHas(t, other, "k", true)
	must(t, other.Kill())
	wantKillFlag("after Kill", true)
	_, err = owner.HasFuel("new")
	wantErr(t, err, ErrKilled, "HasFuel")
	_, err = owner.Stop()
	must(t, err)
	wantKillFlag("after Stop", true)
	must(t, owner.Start())
	wantKillFlag("after the next Start", false)
	wantHas(t, owner, "new", true)
}
