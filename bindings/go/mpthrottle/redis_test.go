package mpthrottle

import (
	"bufio"
	"bytes"
	"context"
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

// redisKeyedWorkerEnv, when set to "URL NAME", makes the test binary a
// worker process of TestRedisKeyed instead of running the tests (see
// TestMain and runRedisKeyedWorker): another host, as far as the keyed
// throttle in Redis can tell.
const redisKeyedWorkerEnv = "MPT_GO_TEST_REDIS_KEYED_WORKER"

// runRedisKeyedWorker joins the keyed throttle NAME in the Redis at URL
// (3 units per hour for each key, running, its key "a" emptied by the
// parent) and prints, a line each:
//
//   - "joined CREATED MAXN PER_NS CAPACITY TIMERSLACK_NS": what Config says;
//   - "took": it found "a" empty and took the full tank of 3 of "w\x00";
//   - "killed T SET": its wait for a unit of "a" (reserved, 20 minutes
//     away) ended with ErrKilled at ClockNow T, and KillFlagIsSet said SET.
//
// Its wait has no deadline (a deadline before the unit would end it at
// once, reserving nothing), but a worker whose parent died ends by itself:
// its context is cancelled after 60 s.
func runRedisKeyedWorker(where string) int {
	fail := func(what ...any) int {
		fmt.Fprintln(os.Stderr, append([]any{"redis keyed worker:"}, what...)...)
		return 1
	}
	url, name, ok := strings.Cut(where, " ")
	if !ok {
		return fail("bad", redisKeyedWorkerEnv, where)
	}
	k, err := ConnectKeyed(url, name, 3, time.Hour, WithHardcap(HardcapLimit), Refresh(20*time.Millisecond),
		TimerSlack(9*time.Microsecond))
	if err != nil {
		return fail(err)
	}
	defer k.Close()
	c, err := k.Config()
	if err != nil {
		return fail(err)
	}
	fmt.Printf("joined %v %d %d %d %d\n", c.Created, c.MaxN, c.Per.Nanoseconds(), c.Capacity,
		c.TimerSlack.Nanoseconds())
	if ok, err := k.HasFuel("a"); ok || err != nil {
		return fail("HasFuel(a) =", ok, err, "want false, nil: the parent took its tank")
	}
	if ok, err := k.HasFuelN("w\x00", 3); !ok || err != nil {
		return fail("HasFuelN(w\\x00, 3) =", ok, err, "want true, nil: a new key's full tank")
	}
	fmt.Println("took")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(60*time.Second, cancel)
	err = k.AwaitFuel(ctx, "a")
	at := ClockNow()
	if !errors.Is(err, ErrKilled) {
		return fail("AwaitFuel(a) =", err, "want ErrKilled")
	}
	set, err := k.KillFlagIsSet()
	if err != nil {
		return fail(err)
	}
	fmt.Println("killed", at, set)
	return 0
}

// TestRedisKeyed: a keyed throttle in Redis (ConnectKeyed), 3 units per
// hour for each key, LIMIT, joined by a second handle of this process and
// by another process (the test binary as a worker): one start for all;
// each key's full tank of 3 is taken once between them, and a key's units
// taken by one are gone for the others; a key at its limit does not slow
// new keys; the configuration read back by each (the creator's, with each
// handle's own timer slack; capacity 0); Kill from one handle ends a wait
// in the other process and sets the flag everywhere; mismatches of
// configuration and of kind (plain and keyed names); bad arguments; an
// unreachable server; UnlinkURL of a keyed name.
func TestRedisKeyed(t *testing.T) {
	url := startRedis(t)
	name := fmt.Sprintf("mpt-go-keyed-%d", os.Getpid())
	opts := []Option{WithHardcap(HardcapLimit), Refresh(20 * time.Millisecond)}

	a, err := ConnectKeyed(url, name, 3, time.Hour, append(opts, TimerSlack(5*time.Microsecond))...)
	must(t, err)
	defer a.Close()
	if a.Name() != name {
		t.Errorf("Name() = %q, want %q", a.Name(), name)
	}
	b, err := ConnectKeyed(url, name, 3, time.Hour, append(opts, TimerSlack(7*time.Microsecond))...)
	must(t, err)
	defer b.Close()

	// The configuration: the creator's, with each handle's own timer slack.
	want := KeyedConfig{MaxN: 3, Per: time.Hour, Capacity: 0, Created: true, Hardcap: HardcapLimit,
		AsMonitor: true, AutoEmit: true, Refresh: 20 * time.Millisecond, TimerSlack: 5 * time.Microsecond}
	if c, err := a.Config(); c != want || err != nil {
		t.Errorf("the creator's Config() =\n  %+v, %v; want\n  %+v", c, err, want)
	}
	want.Created, want.TimerSlack = false, 7*time.Microsecond
	if c, err := b.Config(); c != want || err != nil {
		t.Errorf("the joiner's Config() =\n  %+v, %v; want\n  %+v", c, err, want)
	}
	if maxN, per, err := b.Rate(); maxN != 3 || per != time.Hour || err != nil {
		t.Errorf("Rate() = %d, %v, %v; want 3, 1h0m0s, nil", maxN, per, err)
	}
	if s := keyedStats(t, a); s.Capacity != 0 {
		t.Errorf("Stats().Capacity = %d, want 0 (no bound in Redis)", s.Capacity)
	}
	for _, k := range []*Keyed{a, b} {
		if set, err := k.KillFlagIsSet(); set || err != nil {
			t.Errorf("KillFlagIsSet() before Start = %v, %v; want false, nil", set, err)
		}
	}

	// Not started: no fuel, through either handle. One start for both.
	wantHas(t, a, "a", false)
	wantHas(t, b, "a", false)
	must(t, a.Start())
	if running, err := b.IsRunning(); !running || err != nil {
		t.Fatalf("IsRunning() through the other handle = %v, %v; want true, nil", running, err)
	}
	wantErr(t, b.Start(), ErrWrongState, "Start")

	// The full tank of 3 of the key "a", taken once between the handles;
	// the next unit is 20 minutes away, for both.
	if ok, err := a.HasFuelN("a", 2); !ok || err != nil {
		t.Fatalf("HasFuelN(a, 2) of a new key = %v, %v; want true, nil", ok, err)
	}
	wantHas(t, b, "a", true)
	wantHas(t, a, "a", false)
	wantHas(t, b, "a", false)
	if level, wait, err := b.Peek("a", 1); level != 0 || wait < 19*time.Minute || wait > 20*time.Minute ||
		err != nil {
		t.Errorf("Peek(a, 1) after its 3 units = %d, %v, %v; want 0, 20 min, nil", level, wait, err)
	}
	if s := keyStats(t, b, "a"); !s.InTable || s.Granted != 3 {
		t.Errorf("KeyStats(a) through the other handle = %+v, want in Redis, 3 granted", s)
	}

	// A key at its limit does not slow others: its own wait with a deadline
	// ends at once (its unit comes after the deadline), while 10 new keys
	// get their units at once, through either handle.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	start := time.Now()
	err = a.AwaitFuel(ctx, "a")
	cancel()
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("AwaitFuel(a) with a deadline of 100 ms: %v, want ErrTimeout", err)
	}
	wantDuration(t, "AwaitFuel(a) at its limit, 100 ms deadline", time.Since(start), 0, 100*time.Millisecond+slack)
	start = time.Now()
	for i := 0; i < 10; i++ {
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := []*Keyed{a, b}[i%2].AwaitFuel(wctx, fmt.Sprintf("free-%d", i))
		wcancel()
		must(t, err)
	}
	wantDuration(t, "10 new keys while a is at its limit", time.Since(start), 0, slack)

	// Another process joins: the same configuration (its own timer slack),
	// "a" empty for it too; it takes the full tank of "w\x00".
	t.Setenv(redisKeyedWorkerEnv, url+" "+name)
	w := startWorker(t, "", "")
	joined := fmt.Sprintf("joined false 3 %d 0 9000", time.Hour.Nanoseconds())
	if l := w.line(t, 20*time.Second); l != joined {
		t.Fatalf("worker said %q, want %q", l, joined)
	}
	if l := w.line(t, 20*time.Second); l != "took" {
		t.Fatalf("worker said %q, want \"took\"", l)
	}
	wantHas(t, a, "w\x00", false) // its tank, taken by the worker
	wantHas(t, a, "w", true)      // another key

	// Kill from a: the worker's wait on "a" (it reserved the unit in 20
	// minutes: a newcomer would wait 40) and a wait through b end with
	// ErrKilled, and the flag is set for every handle.
	queuedKey(t, a, "a", ClockNow()+int64(30*time.Minute))
	waiter := make(chan error, 1)
	go func() { waiter <- b.AwaitFuel(context.Background(), "a") }()
	queuedKey(t, a, "a", ClockNow()+int64(50*time.Minute))
	stillWaiting(t, waiter)
	killedAt := ClockNow()
	must(t, a.Kill())
	l := w.line(t, 10*time.Second)
	var at int64
	var set bool
	if _, err := fmt.Sscanf(l, "killed %d %t", &at, &set); err != nil {
		t.Fatalf("worker said %q, want \"killed T SET\"", l)
	}
	must(t, w.cmd.Wait())
	wantDuration(t, "the worker's wake-up after Kill", time.Duration(at-killedAt), 0, time.Second)
	if !set {
		t.Errorf("the worker's KillFlagIsSet() after its wait was killed = false")
	}
	err, latency := within(t, waiter, time.Second)
	wantErr(t, err, ErrKilled, "AwaitFuel")
	wantDuration(t, "the other handle's wake-up after Kill", latency, 0, time.Second)
	for _, k := range []*Keyed{a, b} {
		if set, err := k.KillFlagIsSet(); !set || err != nil {
			t.Errorf("KillFlagIsSet() after Kill = %v, %v; want true, nil", set, err)
		}
	}
	ok, err := b.HasFuel("fresh")
	wantErr(t, err, ErrKilled, "HasFuel")
	if ok {
		t.Errorf("HasFuel(fresh) after Kill = true")
	}
	// A new run clears the flag, for every handle; keys keep their
	// schedules.
	_, err = a.Stop()
	must(t, err)
	must(t, a.Start())
	waitKillFlag(t, b, false)
	wantHas(t, b, "a", false)
	wantHas(t, b, "fresh", true)

	// Mismatches: another configuration; a plain connect to the keyed name,
	// and a keyed connect to a plain name.
	_, err = ConnectKeyed(url, name, 4, time.Hour, opts...)
	e := wantErr(t, err, ErrMismatch, "ConnectKeyed")
	if !strings.Contains(e.Message, "max_n=3") {
		t.Errorf("mismatch message %q does not say max_n=3", e.Message)
	}
	_, err = Connect(url, name, 3, time.Hour, opts...)
	wantErr(t, err, ErrMismatch, "Connect")
	plainName := name + "-plain"
	plain, err := Connect(url, plainName, 3, time.Hour, opts...)
	must(t, err)
	defer plain.Close()
	_, err = ConnectKeyed(url, plainName, 3, time.Hour, opts...)
	wantErr(t, err, ErrMismatch, "ConnectKeyed")
	must(t, UnlinkURL(url, plainName))

	// Bad arguments: a period that is not a whole number of microseconds,
	// a max_n over KeyedMaxN, a name with '{', NUL bytes, the options.
	for _, c := range []struct {
		name string
		maxN uint64
		per  time.Duration
		opts []Option
	}{
		{name + "-us", 3, 1500 * time.Nanosecond, nil},
		{name + "-max", KeyedMaxN + 1, time.Second, nil},
		{name + "-{x}", 3, time.Second, nil},
		{name + "\x00", 3, time.Second, nil},
		{name + "-off", 3, time.Second, []Option{AsThrottle(false)}},
	} {
		_, err = ConnectKeyed(url, c.name, c.maxN, c.per, c.opts...)
		wantErr(t, err, ErrInvalidArgument, "ConnectKeyed")
	}
	_, err = ConnectKeyed(url+"\x00", name, 3, time.Hour)
	if e := wantErr(t, err, ErrInvalidArgument, "ConnectKeyed"); !strings.Contains(e.Message, "URL") {
		t.Errorf("message %q does not name the URL", e.Message)
	}
	// Nothing listens on a free port: unreachable, at once.
	port := freePort(t)
	t0 := time.Now()
	_, err = ConnectKeyed(fmt.Sprintf("redis://127.0.0.1:%d/0", port), name, 3, time.Hour, opts...)
	e = wantErr(t, err, ErrUnreachable, "ConnectKeyed")
	if took := time.Since(t0); took >= time.Second {
		t.Errorf("ConnectKeyed to a port with nothing on it took %v, want under 1 s", took)
	}
	if !strings.Contains(e.Message, strconv.Itoa(port)) {
		t.Errorf("unreachable message %q does not name port %d", e.Message, port)
	}

	// UnlinkURL removes a keyed name: its users find it killed (told by
	// the server's event: until then a reservation finds no fuel); a new
	// ConnectKeyed makes it anew (created, not running).
	must(t, UnlinkURL(url, name))
	waitKillFlag(t, a, true)
	waitKillFlag(t, b, true)
	_, err = a.HasFuel("another")
	wantErr(t, err, ErrKilled, "HasFuel")
	wantErr(t, UnlinkURL(url, name), ErrNotFound, "UnlinkURL")
	c, err := ConnectKeyed(url, name, 2, time.Second)
	must(t, err)
	defer c.Close()
	if cfg, err := c.Config(); !cfg.Created || cfg.MaxN != 2 || cfg.Per != time.Second || err != nil {
		t.Errorf("Config() of the keyed throttle made again = %+v, %v; want created, 2 per 1s", cfg, err)
	}
	if running, err := c.IsRunning(); running || err != nil {
		t.Errorf("IsRunning() of the keyed throttle made again = %v, %v; want false, nil", running, err)
	}
	must(t, UnlinkURL(url, name))
}

// waitKillFlag waits (at most 3 s) until k's kill flag is want: a flag set
// or cleared through another handle reaches this one through the server.
func waitKillFlag(t *testing.T, k *Keyed, want bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		set, err := k.KillFlagIsSet()
		must(t, err)
		if set == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("KillFlagIsSet() = %v for 3 s, want %v", set, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
