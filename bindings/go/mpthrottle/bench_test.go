package mpthrottle

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// TestNoAllocations: the calls of a worker's loop allocate nothing on
// success (the C helpers return their results by value), and neither does
// AwaitFuel with a cancellable context when fuel is there at once (no token,
// no goroutine); only a wait that blocks does.
func TestNoAllocations(t *testing.T) {
	th := mustNew(t, 1, time.Hour, AsThrottle(false), AutoEmit(true))
	must(t, th.Start())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for name, f := range map[string]func(){
		"HasFuel":                 func() { _, _ = th.HasFuel() },
		"HasFuelN":                func() { _, _ = th.HasFuelN(3) },
		"AwaitFuel(Background)":   func() { _ = th.AwaitFuel(context.Background()) },
		"AwaitFuel(cancellable)":  func() { _ = th.AwaitFuel(ctx) },
		"AwaitFuelN(cancellable)": func() { _ = th.AwaitFuelN(ctx, 3) },
		"Peek":                    func() { _, _, _ = th.Peek(3) },
		"Rate":                    func() { _, _, _ = th.Rate() },
		"IsRunning":               func() { _, _ = th.IsRunning() },
		"Summary":                 func() { _, _ = th.Summary() },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
}

func BenchmarkHasFuel(b *testing.B) {
	th, err := New(1, time.Hour, AsThrottle(false), AutoEmit(true))
	if err != nil {
		b.Fatal(err)
	}
	defer th.Close()
	if err := th.Start(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ok, err := th.HasFuel(); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkHasFuelParallel(b *testing.B) {
	th, err := New(1, time.Hour, AsThrottle(false), AutoEmit(true))
	if err != nil {
		b.Fatal(err)
	}
	defer th.Close()
	if err := th.Start(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, err := th.HasFuel(); !ok || err != nil {
				b.Error(ok, err)
				return
			}
		}
	})
}

// BenchmarkEmptyTank: HasFuel on an empty tank (false, nil) also stays
// cheap: the binding fetches no message for that expected outcome.
func BenchmarkEmptyTank(b *testing.B) {
	th, err := New(1, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer th.Close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if ok, err := th.HasFuel(); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// TestTokens: a wait that blocks with a cancellable context takes a
// cancellation token from the pool and puts it back, reset if it fired:
// 200 such waits, one in two cancelled, make a handful of tokens, and a
// wait after a cancelled one is not cancelled by its (reused) token. Tokens
// the pool drops are freed.
func TestTokens(t *testing.T) {
	idle := mustNew(t, 1, time.Second) // never started: waits until cancelled
	busy := mustNew(t, 1000, time.Second, WithHardcap(HardcapOne))
	must(t, busy.Start())
	made, waits := tokensMade.Load(), tokenWaits.Load()
	for i := 0; i < 100; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Millisecond, cancel)
		if err := idle.AwaitFuel(ctx); !errors.Is(err, ErrCancelled) {
			t.Fatalf("wait %d: %v, want ErrCancelled", i, err)
		}
		must(t, busy.AwaitFuel(context.Background()))
		// HardcapOne: the next unit is 1 ms away, so this one blocks
		// (unless this goroutine was held up for that long).
		ctx, cancel = context.WithCancel(context.Background())
		if err := busy.AwaitFuel(ctx); err != nil {
			t.Fatalf("wait %d after a cancelled one: %v", i, err)
		}
		cancel()
	}
	n := tokensMade.Load() - made
	if w := tokenWaits.Load() - waits; w < 180 || w > 200 {
		t.Fatalf("%d waits took a token, want 180..200", w)
	}
	t.Logf("200 blocking waits made %d tokens", n)
	most := int64(20)
	if raceEnabled { // the pool drops a quarter of the tokens put back
		most = 100
	}
	if n > most { // 0 if the pool held tokens of an earlier test
		t.Errorf("200 blocking waits made %d tokens, want at most %d (pooled)", n, most)
	}
	// The pool keeps tokens until two collections; then their finalizers
	// free them.
	freedBefore := tokensFreed.Load()
	deadline := time.Now().Add(5 * time.Second)
	for tokensFreed.Load() == freedBefore {
		if time.Now().After(deadline) {
			t.Fatal("no pooled token was freed after garbage collections")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkCancelToken: what a wait that blocks with a cancellable context
// pays for its token: from the pool (getToken/putToken, the binding's way),
// or a new one per wait (mpt_cancel_new, then mpt_cancel_free).
func BenchmarkCancelToken(b *testing.B) {
	b.Run("pool", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			tok, err := getToken()
			if err != nil {
				b.Fatal(err)
			}
			putToken(tok)
		}
	})
	b.Run("new-free", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			res := cCancelNew()
			if res.status != StatusOK || cCancelFree(res.r.throttle) != StatusOK {
				b.Fatal(res.status)
			}
		}
	})
}

// BenchmarkAwaitCancellable: the whole cancellable path of a wait that
// blocks (token, watcher goroutine, mpt_await_fuel_cancellable, hand-shake),
// on a throttle without throttling so that the C call returns at once,
// against the plain C call.
func BenchmarkAwaitCancellable(b *testing.B) {
	th, err := New(1, time.Hour, AsThrottle(false), AutoEmit(true))
	if err != nil {
		b.Fatal(err)
	}
	defer th.Close()
	if err := th.Start(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := th.acquire("bench")
	if err != nil {
		b.Fatal(err)
	}
	defer th.release()
	b.Run("cancellable", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if res, _, err := th.awaitCancellable(h, 1, forever, ctx.Done()); err != nil || res.status != StatusOK {
				b.Fatal(err, res.status)
			}
		}
	})
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if res := cAwaitFuel(h, 1, forever, 0); res.status != StatusOK {
				b.Fatal(res.status)
			}
		}
	})
}
