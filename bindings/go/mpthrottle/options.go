package mpthrottle

import (
	"strconv"
	"time"
)

// Hardcap is the capacity of the tank, and so the guarantee on grant times
// (mpt_hardcap). Let T = per/maxN: the tank starts empty at Start, its first
// unit is there at the start instant, then one every T.
type Hardcap uint32

// String names the hardcap as the C constants do ("LIMIT", "ONE", ...).
func (h Hardcap) String() string {
	switch h {
	case HardcapLimit:
		return "LIMIT"
	case HardcapOne:
		return "ONE"
	case HardcapNone:
		return "NONE"
	case HardcapWindow:
		return "WINDOW"
	}
	return "Hardcap(" + strconv.FormatUint(uint64(h), 10) + ")"
}

// An Option changes one field of the throttle's options (struct
// mpt_options); unset fields keep the library's defaults. New and
// CreateNamed take every option; Open takes only TimerSlack, Spin and
// GroupShared (the rest is the named throttle's own configuration, which
// Open adopts).
type Option func(*config)

type config struct {
	asThrottle, asMonitor, autoEmit, groupShared *bool
	hardcap                                      *Hardcap
	refresh, timerSlack, spin                    *time.Duration
}

// AsThrottle: true (default) rations fuel; false makes fuel always
// available, for counting only (mp_throttle's as_throttle).
func AsThrottle(on bool) Option { return func(c *config) { c.asThrottle = &on } }

// AsMonitor: true (default) runs a monitor thread, in the process that
// calls Start, which keeps the statistics; with false, Latest, Mean, LoHi
// and HiLo return ErrMonitorOff (Summary still works).
func AsMonitor(on bool) Option { return func(c *config) { c.asMonitor = &on } }

// AutoEmit: true counts each unit of fuel taken as one emission; false
// leaves counting to Emit and EmitAt. Default: the value of AsThrottle.
func AutoEmit(on bool) Option { return func(c *config) { c.autoEmit = &on } }

// WithHardcap sets the tank capacity (default HardcapLimit).
func WithHardcap(h Hardcap) Option { return func(c *config) { c.hardcap = &h } }

// Refresh sets the interval between monitor refreshes (mp_throttle's
// rf_rate; default 10 ms; at least 1 µs).
func Refresh(d time.Duration) Option { return func(c *config) { c.refresh = &d } }

// TimerSlack sets this process's timer slack while AwaitFuel sleeps towards
// its grant (default 1 ns, the tightest; 0 leaves the thread's slack alone;
// at most 4294967295 ns). A large slack makes waits overrun by as much.
func TimerSlack(d time.Duration) Option { return func(c *config) { c.timerSlack = &d } }

// Spin sets the precise mode: how long before its grant time a waiter stops
// sleeping and spins on the clock (0 to 1 s; default 0, see mpt_options).
func Spin(d time.Duration) Option { return func(c *config) { c.spin = &d } }

// GroupShared: named throttles only (mpt_options.group_shared). With
// CreateNamed, true shares the throttle with the creator's group (mode
// 0660) rather than keeping it to this user; it is part of the
// configuration (a name made with the other value is ErrMismatch). With
// Open (and a CreateNamed that finds the name made), true also accepts
// another user's throttle made group-shared for one of this process's
// groups; another user's throttle is ErrPermissionDenied otherwise.
// Default false.
func GroupShared(on bool) Option { return func(c *config) { c.groupShared = &on } }

func collect(opts []Option) *config {
	c := &config{}
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	return c
}

// onlyWaitOptions reports whether c sets nothing but TimerSlack, Spin and
// GroupShared.
func (c *config) onlyWaitOptions() bool {
	return c.asThrottle == nil && c.asMonitor == nil && c.autoEmit == nil &&
		c.hardcap == nil && c.refresh == nil
}
