package mpthrottle_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"mp-throttle.dev/mpthrottle"
)

// Four goroutines share 10 units of fuel per second; Stop ends them all.
func Example() {
	// README begin
	th, err := mpthrottle.New(10, time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer th.Close()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for th.AwaitFuel(context.Background()) == nil {
				// ... one piece of work: a request, a job ...
			}
		}()
	}
	th.Start()
	time.Sleep(time.Second)
	s, _ := th.Stop() // sets the kill flag: every AwaitFuel returns ErrKilled
	wg.Wait()
	fmt.Println("work done in 1 s:", s.Total >= 10 && s.Total <= 12)
	// README end

	// Output: work done in 1 s: true
}

// A named throttle is shared by every process that opens it, in any
// language; here the same process opens it twice.
func ExampleOpen() {
	name := fmt.Sprintf("example-%d", os.Getpid())
	owner, err := mpthrottle.CreateNamed(name, 1, time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	defer mpthrottle.Unlink(name)
	defer owner.Close()

	other, err := mpthrottle.Open(name) // e.g. in another process
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()
	if err := owner.Start(); err != nil {
		log.Fatal(err)
	}
	ok, _ := other.HasFuel() // the unit of the start instant
	fmt.Println("first:", ok)
	ok, _ = owner.HasFuel() // the next comes in an hour
	fmt.Println("second:", ok)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = other.AwaitFuel(ctx)
	fmt.Println("timeout:", errors.Is(err, mpthrottle.ErrTimeout))
	// Output:
	// first: true
	// second: false
	// timeout: true
}

func ExampleError() {
	_, err := mpthrottle.New(0, time.Second)
	var e *mpthrottle.Error
	if errors.As(err, &e) {
		fmt.Println(e.Op, e.Status == mpthrottle.StatusInvalidArgument)
	}
	fmt.Println(errors.Is(err, mpthrottle.ErrInvalidArgument))
	// Output:
	// New true
	// true
}

// A keyed throttle: every key (here a host) has a schedule of its own, 2
// units per hour; a key at its limit does not slow another. A table of 1000
// keys is made at once; a new key goes in the place of one that is idle
// again (a full tank), or gets ErrNoRoom.
func ExampleKeyed() {
	k, err := mpthrottle.NewKeyed(2, time.Hour, 1000)
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	if err := k.Start(); err != nil {
		log.Fatal(err)
	}
	for _, host := range []string{"a.example", "a.example", "a.example", "b.example"} {
		ok, err := k.HasFuel(host) // a new key has a full tank: 2 units
		if errors.Is(err, mpthrottle.ErrNoRoom) {
			continue // 1000 keys still hold back fuel: try later
		}
		fmt.Println(host, ok, err)
	}
	s, _ := k.KeyStats("a.example")
	fmt.Println("a.example granted:", s.Granted)
	// Output:
	// a.example true <nil>
	// a.example true <nil>
	// a.example false <nil>
	// b.example true <nil>
	// a.example granted: 2
}
