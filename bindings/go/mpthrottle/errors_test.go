package mpthrottle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestErrorMessages(t *testing.T) {
	_, err := New(0, time.Second)
	e := wantErr(t, err, ErrInvalidArgument, "New")
	if !strings.Contains(e.Message, "max_n") {
		t.Errorf("message %q does not name max_n", e.Message)
	}
	if got, want := err.Error(), "mpthrottle: New: "+e.Message+" (status 7)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if errors.Is(err, ErrTimeout) || errors.Is(err, ErrKilled) {
		t.Errorf("%v matches another status's sentinel", err)
	}

	_, err = New(1, time.Second, Refresh(0))
	e = wantErr(t, err, ErrInvalidArgument, "New")
	if !strings.Contains(e.Message, "refresh") {
		t.Errorf("message %q does not name the refresh interval", e.Message)
	}

	name := fmt.Sprintf("mpt-go-test-%d-never-made", os.Getpid())
	_, err = Open(name)
	e = wantErr(t, err, ErrNotFound, "Open")
	if !strings.Contains(e.Message, name) {
		t.Errorf("message %q does not name %q", e.Message, name)
	}

	// Sentinels are *Error values and print as the status's description.
	for s, sentinel := range map[Status]*Error{
		StatusTimeout: ErrTimeout, StatusKilled: ErrKilled, StatusNoFuel: ErrNoFuel,
		StatusNotRunning: ErrNotRunning, StatusNullPointer: ErrNullPointer,
		StatusBadHandle: ErrBadHandle, StatusInvalidArgument: ErrInvalidArgument,
		StatusWrongState: ErrWrongState, StatusMonitorOff: ErrMonitorOff, StatusSystem: ErrSystem,
		StatusUnsupported: ErrUnsupported, StatusCorrupt: ErrCorrupt, StatusPanic: ErrPanic,
		StatusNotFound: ErrNotFound, StatusPermissionDenied: ErrPermissionDenied,
		StatusMismatch: ErrMismatch, StatusCancelled: ErrCancelled,
		StatusUnreachable: ErrUnreachable, StatusNoRoom: ErrNoRoom,
	} {
		if sentinel.Status != s || sentinel.Message != s.String() || s.String() == "unknown status" {
			t.Errorf("sentinel of status %d: %#v (%q)", s, sentinel, s.String())
		}
	}
	if got := Status(999).String(); got != "unknown status" {
		t.Errorf("Status(999).String() = %q", got)
	}
}

// TestConcurrentErrorMessages: the library keeps the last error message per
// OS thread, and goroutines move between threads between cgo calls. Many
// goroutines failing at once, each with its own message (the name or the
// value it passed), must each get their own message.
func TestConcurrentErrorMessages(t *testing.T) {
	const goroutines, rounds = 32, 500
	prev := runtime.GOMAXPROCS(0)
	if prev < 4 {
		runtime.GOMAXPROCS(4) // more threads than cores: more migration
		defer runtime.GOMAXPROCS(prev)
	}
	pid := os.Getpid()
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				var err error
				var sentinel *Error
				var token string
				switch (g + i) % 3 {
				case 0: // a system call (shm_open) that fails
					token = fmt.Sprintf("mpt-go-test-%d-missing-%d-%d", pid, g, i)
					_, err, sentinel = func() (*Throttle, error, *Error) {
						th, err := Open(token)
						return th, err, ErrNotFound
					}()
				case 1: // refused by the name check
					token = fmt.Sprintf("bad/%d/%d", g, i)
					err, sentinel = Unlink(token), ErrInvalidArgument
				default: // refused by the options check
					h := 4 + g*rounds + i
					token = fmt.Sprintf("(got %d)", h)
					_, err = New(1, time.Second, WithHardcap(Hardcap(h)))
					sentinel = ErrInvalidArgument
				}
				var e *Error
				if !errors.As(err, &e) || e.Status != sentinel.Status || !strings.Contains(e.Message, token) {
					mu.Lock()
					bad++
					if bad <= 5 {
						t.Errorf("goroutine %d round %d: got %v, want status %d and a message with %q",
							g, i, err, sentinel.Status, token)
					}
					mu.Unlock()
				}
				if i%8 == 0 {
					runtime.Gosched()
				}
			}
		}(g)
	}
	wg.Wait()
	if bad > 0 {
		t.Errorf("%d of %d errors had a wrong status or another call's message", bad, goroutines*rounds)
	}
}

func TestContextErrorsMatch(t *testing.T) {
	th := mustNew(t, 1, time.Second) // never started: waiters wait
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err := th.AwaitFuel(ctx)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v, want ErrTimeout and context.DeadlineExceeded", err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrKilled) {
		t.Errorf("deadline error %v matches context.Canceled or ErrKilled", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	err = th.AwaitFuel(ctx)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrCancelled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("cancel: %v, want context.Canceled and ErrCancelled, not ErrTimeout", err)
	}
	// A cancellation during the wait: the library's status and message.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	err = th.AwaitFuelN(ctx, 1)
	e := wantErr(t, err, ErrCancelled, "AwaitFuelN")
	if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled during the wait: %v, want context.Canceled", err)
	}
	if !strings.Contains(e.Message, "cancelled") {
		t.Errorf("message %q does not say the wait was cancelled", e.Message)
	}
}
