package mpthrottle

import (
	"errors"
	"strconv"
)

// Status is a status code of the C library (mpt_status). Its values are
// stable: the library never renumbers or reuses them.
type Status int32

// String is the library's description of the code (mpt_strerror).
func (s Status) String() string { return statusText(s) }

// Error is what every failing call returns (directly, or wrapped where
// noted): the C library's status code, the operation, and the message the
// library recorded for that very call.
//
// Compare errors with errors.Is and the sentinel values below, which match
// any *Error of the same Status:
//
//	if errors.Is(err, mpthrottle.ErrKilled) { return } // the throttle was stopped: finish
//
// or take the code with errors.As.
type Error struct {
	// Status is the C library's status code.
	Status Status
	// Op is the method or function that failed, e.g. "Start" or "Open".
	Op string
	// Message says in words what was wrong: the library's message for the
	// call that failed (mpt_last_error_message), or the status's
	// description when it recorded none.
	Message string

	cause error // what Unwrap returns: the context's error, ErrClosed, or nil
}

func newError(op string, status Status, message string) *Error {
	if message == "" {
		message = status.String()
	}
	return &Error{Status: status, Op: op, Message: message}
}

// Error formats the error as "mpthrottle: Op: Message (status N)".
func (e *Error) Error() string {
	s := "mpthrottle: "
	if e.Op != "" {
		s += e.Op + ": "
	}
	return s + e.Message + " (status " + strconv.Itoa(int(e.Status)) + ")"
}

// Is reports whether target is one of the sentinel errors below with the
// same Status; so errors.Is(err, ErrTimeout) holds for every timeout,
// whatever its operation and message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status && t.Op == "" && t.cause == nil
}

// Unwrap returns the cause of the error, if any: context.DeadlineExceeded
// for an AwaitFuel whose context's deadline passed, the context's error
// (context.Canceled) for one whose context was cancelled, ErrClosed for a
// call on a closed Throttle.
func (e *Error) Unwrap() error { return e.cause }

func sentinel(s Status) *Error { return &Error{Status: s, Message: s.String()} }

// Sentinel errors, one per failure status: errors.Is(err, ErrX) holds for
// every *Error whose Status is that of ErrX.
var (
	// ErrTimeout: AwaitFuel got no fuel before the context's deadline (the
	// error also matches context.DeadlineExceeded). Nothing was taken.
	ErrTimeout = sentinel(StatusTimeout)
	// ErrKilled: the kill flag is set (Kill or Stop, in any process); the
	// worker should finish. Nothing was taken.
	ErrKilled = sentinel(StatusKilled)
	// ErrNoFuel is the status of an empty tank. HasFuel reports it as
	// false, not as an error; it is here for completeness.
	ErrNoFuel = sentinel(StatusNoFuel)
	// ErrNotRunning: Emit or EmitAt on a throttle never started; nothing
	// was counted.
	ErrNotRunning = sentinel(StatusNotRunning)
	// ErrNullPointer: a required pointer was NULL (a bug in this package if
	// it ever happens).
	ErrNullPointer = sentinel(StatusNullPointer)
	// ErrBadHandle: the handle is not live. Calls on a closed Throttle
	// return an error that matches both ErrBadHandle and ErrClosed.
	ErrBadHandle = sentinel(StatusBadHandle)
	// ErrInvalidArgument: an argument or option is out of range or
	// contradicts another.
	ErrInvalidArgument = sentinel(StatusInvalidArgument)
	// ErrWrongState: the call does not fit the throttle's state (Start
	// while running, Stop while stopped, Emit with auto-emit on...).
	ErrWrongState = sentinel(StatusWrongState)
	// ErrMonitorOff: statistics asked of a throttle without a monitor
	// (AsMonitor(false), or the process running the monitor is gone).
	ErrMonitorOff = sentinel(StatusMonitorOff)
	// ErrSystem: the operating system refused a resource.
	ErrSystem = sentinel(StatusSystem)
	// ErrUnsupported: this machine lacks something the library needs, a
	// named throttle was made by another layout version, or (Connect,
	// UnlinkURL) the library was built without the Redis store.
	ErrUnsupported = sentinel(StatusUnsupported)
	// ErrCorrupt: the shared state holds values no correct process writes.
	ErrCorrupt = sentinel(StatusCorrupt)
	// ErrPanic: a bug in the C library (a panic caught at its boundary).
	ErrPanic = sentinel(StatusPanic)
	// ErrNotFound: Open, Unlink or UnlinkURL of a name that does not exist.
	ErrNotFound = sentinel(StatusNotFound)
	// ErrPermissionDenied: the named throttle belongs to another user; for
	// Connect and UnlinkURL, the Redis server refused the credentials.
	ErrPermissionDenied = sentinel(StatusPermissionDenied)
	// ErrMismatch: CreateNamed or Connect of a name that exists with
	// another configuration (Open adopts it).
	ErrMismatch = sentinel(StatusMismatch)
	// ErrCancelled: AwaitFuel's context was cancelled (the error also
	// wraps the context's error, context.Canceled). Nothing was taken.
	ErrCancelled = sentinel(StatusCancelled)
	// ErrUnreachable: the store that holds the throttle could not be
	// reached (the Redis server of Connect, or it did not answer as Redis;
	// never a throttle in shared memory). Nothing was taken.
	ErrUnreachable = sentinel(StatusUnreachable)
	// ErrNoRoom: a Keyed call for a key new to the table, which has no room
	// for it: the table holds its capacity of keys (or the slots the key
	// may go in are taken) and every key there still holds back fuel, so
	// none may be dropped (see NewKeyed). Nothing was taken; the call may
	// succeed later, once a key's tank is full again, or after Forget.
	ErrNoRoom = sentinel(StatusNoRoom)
)

// ErrClosed is the cause of the error every method of a Throttle or a
// Keyed returns after Close: errors.Is(err, ErrClosed) (and ErrBadHandle)
// holds for it.
var ErrClosed = errors.New("mpthrottle: the Throttle is closed")

func closedError(op string) error { return closedErrorOf(op, "Throttle") }

// closedErrorOf is closedError for a handle of another type ("Keyed").
func closedErrorOf(op, what string) error {
	return &Error{Status: StatusBadHandle, Op: op, Message: "the " + what + " is closed", cause: ErrClosed}
}
