package mpthrottle

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// worker is a separate process running runWorker (the test binary itself,
// started with workerEnv set).
type worker struct {
	cmd   *exec.Cmd
	lines chan string
}

func startWorker(t *testing.T, name, mode string) *worker {
	t.Helper()
	exe, err := os.Executable()
	must(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), workerEnv+"="+name, workerModeEnv+"="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	w := &worker{cmd: cmd, lines: make(chan string, 4)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // not waited for: the test failed
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return w
}

func (w *worker) line(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-w.lines:
		if !ok {
			t.Fatalf("worker %d ended without output", w.cmd.Process.Pid)
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("worker %d said nothing for %v", w.cmd.Process.Pid, timeout)
	}
	return ""
}

// runWorkers starts `workers` worker processes taking n units at a time
// from the named throttle th (mode "n=N"), starts th once all are waiting,
// stops it after d and returns every grant time, sorted, and the summary.
func runWorkers(t *testing.T, th *Throttle, workers int, n uint64, d time.Duration) ([]int64, Summary) {
	t.Helper()
	ws := make([]*worker, workers)
	for i := range ws {
		ws[i] = startWorker(t, th.Name(), fmt.Sprintf("n=%d", n))
	}
	for _, w := range ws { // each has opened the throttle and waits for the start
		if l := w.line(t, 20*time.Second); l != "ready" {
			t.Fatalf("worker said %q, want ready", l)
		}
	}
	time.Sleep(100 * time.Millisecond) // into AwaitFuel
	must(t, th.Start())
	time.Sleep(d)
	s, err := th.Stop()
	must(t, err)

	var grants []int64
	for _, w := range ws {
		var k int
		l := w.line(t, 10*time.Second)
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "took" {
			t.Fatalf("worker said %q, want \"took K G1 G2...\"", l)
		}
		if _, err := fmt.Sscan(f[1], &k); err != nil || len(f) != 2+k {
			t.Fatalf("worker said %q, want \"took K\" and K grant times", l)
		}
		for _, g := range f[2:] {
			v, err := strconv.ParseInt(g, 10, 64)
			must(t, err)
			grants = append(grants, v)
		}
		if err := w.cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v", w.cmd.Process.Pid, err)
		}
		t.Logf("worker %d took %d grants of %d units", w.cmd.Process.Pid, k, n)
	}
	sort.Slice(grants, func(i, j int) bool { return grants[i] < grants[j] })
	return grants, s
}

// TestProcessesShareNamedThrottle: three separate processes open a named
// throttle of 10 per second that this process creates and runs for 2 s;
// together they take 1 + 20 units, and the summary counts exactly those.
func TestProcessesShareNamedThrottle(t *testing.T) {
	th, err := CreateNamed(uniqueName(t), 10, time.Second)
	must(t, err)
	defer th.Close()
	grants, s := runWorkers(t, th, 3, 1, 2*time.Second)
	if total := len(grants); total < 19 || total > 22 {
		t.Errorf("3 workers took %d units in 2 s at 10/s, want 19..22", total)
	}
	if s.Total != uint64(len(grants)) {
		t.Errorf("Stop total %d, but the workers took %d units", s.Total, len(grants))
	}
}

// TestProcessesWeightedFuel: three processes take 100 units at a time from
// a named throttle of 1000 per second (LIMIT, the tank empty at the start):
// grant k needs units up to 100k+99, due at 100k+99 ms, so 2 s hold 20
// grants, 100 ms apart across the processes; each counts one emission.
func TestProcessesWeightedFuel(t *testing.T) {
	th, err := CreateNamed(uniqueName(t), 1000, time.Second)
	must(t, err)
	defer th.Close()
	grants, s := runWorkers(t, th, 3, 100, 2*time.Second)
	if total := len(grants); total < 19 || total > 21 {
		t.Errorf("3 workers took %d grants of 100 units in 2 s at 1000/s, want 19..21", total)
	}
	if s.Total != uint64(len(grants)) {
		t.Errorf("Stop total %d, but the workers took %d grants (one emission each)", s.Total, len(grants))
	}
	for k := 1; k < len(grants); k++ {
		if d := time.Duration(grants[k] - grants[k-1]); d < 100*time.Millisecond-time.Microsecond {
			t.Errorf("grants %d and %d of 100 units are %v apart, want at least 100 ms", k-1, k, d)
		}
	}
}

// TestProcessesSetRate: a worker process sleeps towards a unit due in 10 s;
// SetRate(100, 1s) in this process reschedules it at once: it is granted
// within 1 s, and reads the new rate.
func TestProcessesSetRate(t *testing.T) {
	th, err := CreateNamed(uniqueName(t), 1, 10*time.Second)
	must(t, err)
	defer th.Close()
	must(t, th.Start())
	g0, err := th.AwaitFuelGrant(context.Background()) // unit 0; the next in 10 s
	must(t, err)
	w := startWorker(t, th.Name(), "once")
	if l := w.line(t, 20*time.Second); l != "ready" {
		t.Fatalf("worker said %q, want ready", l)
	}
	queued(t, th, g0+int64(20*time.Second)) // the worker has reserved the unit at t0+10s

	changed := ClockNow()
	must(t, th.SetRate(100, time.Second))
	l := w.line(t, 10*time.Second)
	returned := time.Duration(ClockNow() - changed)
	var g, maxN, perNs int64
	if _, err := fmt.Sscanf(l, "granted %d %d %d", &g, &maxN, &perNs); err != nil {
		t.Fatalf("worker said %q, want \"granted G MAXN PER\"", l)
	}
	must(t, w.cmd.Wait())
	t.Logf("the worker was granted %v after SetRate, and said so %v after it",
		time.Duration(g-changed), returned)
	wantDuration(t, "grant after SetRate", time.Duration(g-changed), 0, time.Second)
	wantDuration(t, "worker's answer after SetRate", returned, 0, time.Second)
	if maxN != 100 || time.Duration(perNs) != time.Second {
		t.Errorf("the worker read the rate %d per %v, want 100 per 1s", maxN, time.Duration(perNs))
	}
	s, err := th.Stop()
	must(t, err)
	if s.Total != 2 {
		t.Errorf("total = %d, want 2", s.Total)
	}
}
