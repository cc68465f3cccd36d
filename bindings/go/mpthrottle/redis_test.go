package mpthrottle

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Redis store (Connect, UnlinkURL) against a real redis-server, started
// by the test on a free loopback port with no persistence and killed when
// it ends. Without redis-server the test is skipped (a line "SKIPPED: ..."
// for the suite's summary), unless CI is set: then it fails.

// freePort is a loopback port that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.1:0: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// redisAnswers reports whether a Redis server answers PING on port.
func redisAnswers(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 500*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// startRedis starts a redis-server on a free loopback port, waits until it
// answers PING, and kills it when the test ends. It returns the server's
// URL.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found (CI is set, so this is a failure): %v", err)
		}
		fmt.Println("SKIPPED: redis-server not found: the Go binding's Redis store was not tested")
		t.Skip("redis-server not found (Debian package redis-server)")
	}
	// Another program may take the free port before the server binds it:
	// then the server exits, and another port is tried.
	for try := 1; ; try++ {
		port := freePort(t)
		var out bytes.Buffer
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(exited)
		}()
		kill := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		gone := func() bool {
			select {
			case <-exited:
				return true
			default:
				return false
			}
		}
		answered := false
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !gone(); {
			if answered = redisAnswers(port); answered {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		switch {
		case answered:
			t.Cleanup(kill)
		case !gone():
			kill()
			t.Fatalf("redis-server did not answer PING on port %d within 10 s: %s", port, out.String())
		case try < 3:
			t.Logf("redis-server on port %d exited at once (%s): another port", port,
				strings.TrimSpace(out.String()))
			continue
		default:
			t.Fatalf("redis-server on port %d exited: %s", port, out.String())
		}
		return fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	}
}

// Two handles connected to one throttle in Redis (5 per second, LIMIT):
// one start for both, one tank of 5 for both, one count; a mismatch, an
// unreachable server and UnlinkURL.
func TestRedisConnect(t *testing.T) {
	url := startRedis(t)
	name := fmt.Sprintf("mpt-go-test-%d", os.Getpid())

	a, err := Connect(url, name, 5, time.Second, WithHardcap(HardcapLimit))
	must(t, err)
	defer a.Close()
	if a.Name() != name {
		t.Errorf("Name() = %q, want %q", a.Name(), name)
	}
	b, err := Connect(url, name, 5, time.Second, WithHardcap(HardcapLimit))
	must(t, err)
	defer b.Close()

	// Not started: no fuel, through either handle.
	for _, th := range []*Throttle{a, b} {
		if ok, err := th.HasFuel(); ok || err != nil {
			t.Fatalf("HasFuel() before Start = %v, %v; want false, nil", ok, err)
		}
	}

	// One start: b sees it, and may not start it again.
	must(t, a.Start())
	if running, err := b.IsRunning(); !running || err != nil {
		t.Fatalf("IsRunning() through the other handle = %v, %v; want true, nil", running, err)
	}
	wantErr(t, b.Start(), ErrWrongState, "Start")

	// The tank fills up to its 5 (one unit every 200 ms; it may start
	// full), and no more.
	waitFull(t, b, 5)
	time.Sleep(300 * time.Millisecond)
	if level, wait, err := a.Peek(1); level != 5 || wait != 0 || err != nil {
		t.Fatalf("Peek(1) 300 ms after the tank was full = %d, %v, %v; want 5, 0, nil", level, wait, err)
	}
	// The full tank of 5, taken through both handles; the 6th is refused
	// (the next unit is due 200 ms later).
	for i, th := range []*Throttle{a, b, a, b, b} {
		if ok, err := th.HasFuel(); !ok || err != nil {
			t.Fatalf("unit %d of a full tank of 5: HasFuel() = %v, %v; want true, nil", i+1, ok, err)
		}
	}
	if ok, err := a.HasFuel(); ok || err != nil {
		t.Fatalf("a 6th unit at once: HasFuel() = %v, %v; want false, nil", ok, err)
	}

	// Another configuration is refused, and the message says which.
	_, err = Connect(url, name, 6, time.Second, WithHardcap(HardcapLimit))
	e := wantErr(t, err, ErrMismatch, "Connect")
	if !strings.Contains(e.Message, "max_n=5") {
		t.Errorf("mismatch message %q does not say max_n=5", e.Message)
	}
	// A period that is not a whole number of microseconds, a NUL in the URL.
	_, err = Connect(url, name+"-us", 5, 1500*time.Nanosecond)
	wantErr(t, err, ErrInvalidArgument, "Connect")
	_, err = Connect(url+"\x00", name, 5, time.Second)
	if e := wantErr(t, err, ErrInvalidArgument, "Connect"); !strings.Contains(e.Message, "URL") {
		t.Errorf("message %q does not name the URL", e.Message)
	}

	// Nothing listens on a free port: unreachable, at once.
	port := freePort(t)
	nowhere := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	t0 := time.Now()
	_, err = Connect(nowhere, name, 5, time.Second)
	took := time.Since(t0)
	e = wantErr(t, err, ErrUnreachable, "Connect")
	if took >= time.Second {
		t.Errorf("Connect to a port with nothing on it took %v, want under 1 s", took)
	}
	if !strings.Contains(e.Message, strconv.Itoa(port)) {
		t.Errorf("unreachable message %q does not name port %d", e.Message, port)
	}
	wantErr(t, UnlinkURL(nowhere, name), ErrUnreachable, "UnlinkURL")

	// The count is the server's: b's units reach it within 50 ms (each
	// process sends its emissions every 50 ms).
	deadline := time.Now().Add(2 * time.Second)
	for {
		s, err := a.Summary()
		must(t, err)
		if s.Total == 5 {
			break
		}
		if s.Total > 5 || time.Now().After(deadline) {
			t.Fatalf("Summary().Total = %d, want the 5 units of both handles", s.Total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s, err := a.Stop()
	must(t, err)
	if s.Total != 5 {
		t.Errorf("Stop(): total = %d, want 5", s.Total)
	}
	if ok, err := b.HasFuel(); ok || !errors.Is(err, ErrKilled) {
		t.Errorf("HasFuel() through the other handle after Stop = %v, %v; want false, ErrKilled", ok, err)
	}

	// UnlinkURL removes it; a second finds nothing.
	must(t, UnlinkURL(url, name))
	wantErr(t, UnlinkURL(url, name), ErrNotFound, "UnlinkURL")
	// A new Connect, with another configuration, makes a new throttle: not
	// running, its count at 0.
	c, err := Connect(url, name, 2, time.Second)
	must(t, err)
	defer c.Close()
	if running, err := c.IsRunning(); running || err != nil {
		t.Errorf("IsRunning() of the throttle made again = %v, %v; want false, nil", running, err)
	}
	must(t, c.Start())
	if ok, err := c.HasFuel(); !ok || err != nil {
		t.Errorf("the new throttle's unit at the start: HasFuel() = %v, %v; want true, nil", ok, err)
	}
	s, err = c.Stop()
	must(t, err)
	if s.Total != 1 {
		t.Errorf("the new throttle's Stop(): total = %d, want 1", s.Total)
	}
	must(t, UnlinkURL(url, name))
}

// waitFull waits (at most 3 s) until th's tank holds n units, as Peek says.
func waitFull(t *testing.T, th *Throttle, n uint64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		level, _, err := th.Peek(1)
		must(t, err)
		if level == n {
			return
		}
		if level > n || time.Now().After(deadline) {
			t.Fatalf("Peek(1): the tank holds %d units, want it to fill up to %d", level, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
