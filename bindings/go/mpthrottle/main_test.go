package mpthrottle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// workerEnv, when set to a throttle name, makes the test binary a worker
// process of the tests in process_test.go instead of running the tests;
// workerModeEnv says what it does (see runWorker).
const (
	workerEnv     = "MPT_GO_TEST_WORKER"
	workerModeEnv = "MPT_GO_TEST_WORKER_MODE"
)

func TestMain(m *testing.M) {
	if name := os.Getenv(workerEnv); name != "" {
		os.Exit(runWorker(name, os.Getenv(workerModeEnv)))
	}
	if name := os.Getenv(keyedWorkerEnv); name != "" {
		os.Exit(runKeyedWorker(name))
	}
	if where := os.Getenv(redisKeyedWorkerEnv); where != "" {
		os.Exit(runRedisKeyedWorker(where))
	}
	os.Exit(m.Run())
}

var nameSeq atomic.Int64

// uniqueName is a throttle name of this test process, unlinked when the
// test ends (if it still exists).
func uniqueName(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("mpt-go-test-%d-%d", os.Getpid(), nameSeq.Add(1))
	t.Cleanup(func() {
		if err := Unlink(name); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("Unlink(%q): %v", name, err)
		}
	})
	return name
}

// mustNew is New that fails the test on error and closes the throttle at
// the end.
func mustNew(t *testing.T, maxN uint64, per time.Duration, opts ...Option) *Throttle {
	t.Helper()
	th, err := New(maxN, per, opts...)
	if err != nil {
		t.Fatalf("New(%d, %v): %v", maxN, per, err)
	}
	t.Cleanup(func() { _ = th.Close() })
	return th
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr checks that err matches sentinel and is an *Error of that status
// with a message and the operation op.
func wantErr(t *testing.T, err error, sentinel *Error, op string) *Error {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got error %v, want one matching %v", op, err, sentinel)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: error %v (%T) is not an *Error", op, err, err)
	}
	if e.Status != sentinel.Status || e.Op != op || e.Message == "" {
		t.Fatalf("%s: got %#v, want status %d, op %q and a message", op, e, sentinel.Status, op)
	}
	return e
}

// wantDuration fails unless lo <= d <= hi.
func wantDuration(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Errorf("%s = %v, want %v..%v", what, d, lo, hi)
	}
}

func wantNear(t *testing.T, what string, got, want, relTol float64) {
	t.Helper()
	if math.Abs(got-want) > relTol*math.Abs(want) {
		t.Errorf("%s = %v, want %v (±%g%%)", what, got, want, relTol*100)
	}
}

// runWorker is a worker process: it opens the named throttle and says
// "ready". Then, by mode:
//
//   - "" or "n=N": it takes N units at a time (default 1) until the
//     throttle is stopped and prints "took K G1 G2 ...": K grants, at
//     those grant times (ClockNow ns);
//   - "once": it waits for one unit and prints "granted G MAXN PER_NS":
//     the grant time and the rate in force then.
//
// Every wait has a cancellable context with a deadline (30 s: a worker
// whose parent died ends by itself), so this is the binding's
// mpt_await_fuel_cancellable path.
func runWorker(name, mode string) int {
	th, err := Open(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	defer th.Close()
	fmt.Println("ready")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if mode == "once" {
		g, err := th.AwaitFuelGrant(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			return 1
		}
		maxN, per, err := th.Rate()
		if err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			return 1
		}
		fmt.Printf("granted %d %d %d\n", g, maxN, per.Nanoseconds())
		return 0
	}
	n := uint64(1)
	if mode != "" {
		if _, err := fmt.Sscanf(mode, "n=%d", &n); err != nil {
			fmt.Fprintln(os.Stderr, "worker: bad mode", mode)
			return 1
		}
	}
	var grants []string
	for {
		g, err := th.AwaitFuelNGrant(ctx, n)
		if err == nil {
			grants = append(grants, strconv.FormatInt(g, 10))
			continue
		}
		if errors.Is(err, ErrKilled) {
			break
		}
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	fmt.Println("took", len(grants), strings.Join(grants, " "))
	return 0
}
