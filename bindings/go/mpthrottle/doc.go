// Package mpthrottle is the Go binding of mp_throttle, a C library that
// throttles and monitors many workers (goroutines, processes, programs in
// other languages) so that together they start at most maxN pieces of work
// per period, and reports how fast they really went.
//
// A Throttle made by New is shared by the goroutines of this process; one
// made by CreateNamed can be opened with Open by any process of the same
// user, in any language (C, Python, Ruby... through the same library); one
// made by Connect lives in a Redis server and is shared by processes on any
// number of hosts.
//
//	th, err := mpthrottle.New(10, time.Second) // 10 units of fuel per second
//	if err != nil { ... }
//	defer th.Close()
//	th.Start()
//	// in each worker goroutine:
//	for th.AwaitFuel(ctx) == nil {
//		// one piece of work
//	}
//	summary, err := th.Stop() // every waiter returns ErrKilled
//
// Errors are *Error values carrying the library's status code and message;
// compare them with errors.Is and the sentinels (ErrKilled, ErrTimeout,
// ErrNotFound, ...). Expected outcomes are return values: HasFuel returns
// false for an empty tank, not an error.
//
// AwaitFuel takes a context: its deadline is the timeout, and a
// cancellation ends the wait at once, taking nothing (ErrCancelled); the
// waiters behind it move up. Waiters are served first come, first served,
// whatever their context. AwaitFuelN and HasFuelN take n units at once
// (bandwidth-style throttling), Peek looks at the tank without taking, and
// SetRate changes the rate for every process at once.
//
// A Keyed (NewKeyed, CreateNamedKeyed, OpenKeyed) gives each key of a table
// (a host, a user) a schedule of its own under one configuration: its
// methods take the key, a string of up to KeyMax bytes, and a new key with
// no room in the table gets ErrNoRoom, nothing taken. ConnectKeyed puts a
// keyed throttle in Redis, for processes on any number of hosts; there each
// key expires once idle, and no table bounds the keys.
//
// # Building
//
// The module, mp-throttle.dev/mpthrottle, is not published: require it and
// replace it by a checkout of the mp_throttle repository, in go.mod:
//
//	require mp-throttle.dev/mpthrottle v0.0.0
//
//	replace mp-throttle.dev/mpthrottle => /path/to/mp_throttle/bindings/go/mpthrottle
//
// The package takes its C flags from the library's pkg-config file
// (#cgo pkg-config: mp_throttle). Against a library installed by make
// install (its mp_throttle.pc in /usr/local/lib/pkgconfig, which pkg-config
// searches on Debian and Ubuntu) nothing more is needed: go build. Installed
// elsewhere, name the directory of its .pc:
//
//	export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
//
// With the build tag mpt_static the library is linked statically
// (libmp_throttle.a, with the libraries of pkg-config --static; the program
// then needs no libmp_throttle.so at run time): go build -tags mpt_static.
package mpthrottle
