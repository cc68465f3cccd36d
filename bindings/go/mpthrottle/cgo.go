package mpthrottle

/*
// The flags come from the library's pkg-config file, mp_throttle.pc (`make
// install` puts it in $PREFIX/lib/pkgconfig; PKG_CONFIG_PATH names another
// place): -I of the header, -L of the library and -lmp_throttle.
//
// Static (-tags mpt_static): --static adds the libraries the Rust staticlib
// needs (Libs.private). The linker would take libmp_throttle.so for
// -lmp_throttle when both are installed, so the archive is named first
// (-l: searches the -L directories of pkg-config too); --as-needed then
// drops the .so that pkg-config's -lmp_throttle names, which no symbol
// needs any more: the program does not depend on libmp_throttle.so.
#cgo !mpt_static pkg-config: mp_throttle
#cgo mpt_static pkg-config: --static mp_throttle
#cgo mpt_static LDFLAGS: -l:libmp_throttle.a -Wl,--as-needed

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <mp_throttle.h>

// The binding uses the calls of 0.2.0 (weighted fuel, rate changes,
// cancellation tokens): say so, rather than fail on a missing declaration.
// Connect and UnlinkURL also need mpt_throttle_connect and
// mpt_throttle_unlink_url (the Redis store, 0.2.0), and Keyed the
// mpt_keyed_* calls and MPT_STATUS_NO_ROOM (keyed throttles, 0.2.0).
#if !defined(MPT_VERSION_MAJOR) || (MPT_VERSION_MAJOR == 0 && MPT_VERSION_MINOR < 2)
#error "mpthrottle needs mp_throttle.h 0.2.0 or later (mpt_await_fuel_cancellable)"
#endif

// What every helper below returns: the status, the failure's message and the
// call's out-parameters. Returned by value, so Go passes no pointer into C
// for the common calls (nothing escapes to the heap on the fast path).
typedef struct gompt_res {
	int32_t status;
	// On a failure: the calling thread's mpt_last_error_message, copied with
	// malloc (Go frees it); NULL on success, for the expected outcomes
	// TIMEOUT and NO_FUEL, or if no memory.
	char *msg;
	uintptr_t throttle; // a handle, or a cancellation token
	int64_t i64;
	uint64_t u64;
	double f64;
	bool flag;
	mpt_rate rate;
	mpt_summary summary;
} gompt_res;

// The handle crosses from Go as an integer: Go keeps the C pointer as a
// uintptr (it is C memory, never moved or collected), so cgo's pointer
// check, which would box the pointer to an incomplete type on each call,
// is not needed.
#define H(h) ((const mpt_throttle *)(uintptr_t)(h))
// A cancellation token crosses the same way.
#define CT(c) ((const mpt_cancel *)(uintptr_t)(c))

// Records status in r and, on a failure, copies the thread-local message.
// It runs inside the same C call as the mpt_ function that failed, hence on
// the same OS thread: a goroutine that moves between threads between two
// cgo calls can never read another call's message.
static void gompt_set(gompt_res *r, int32_t status) {
	size_t len = 0;
	char *buf;

	r->status = status;
	r->msg = NULL;
	if (status == MPT_STATUS_OK || status == MPT_STATUS_TIMEOUT || status == MPT_STATUS_NO_FUEL) {
		return;
	}
	if (mpt_last_error_message(NULL, 0, &len) != MPT_STATUS_OK) {
		return;
	}
	buf = malloc(len + 1);
	if (buf == NULL) {
		return;
	}
	if (mpt_last_error_message(buf, len + 1, NULL) != MPT_STATUS_OK) {
		free(buf);
		return;
	}
	r->msg = buf;
}

static gompt_res gompt_options_init(mpt_options *o, uint32_t version) {
	gompt_res r = {0};
	gompt_set(&r, mpt_options_init(o, version));
	return r;
}

static gompt_res gompt_new(uint64_t max_n, double per_s, mpt_options o) {
	gompt_res r = {0};
	mpt_throttle *t = NULL;
	gompt_set(&r, mpt_throttle_new(max_n, per_s, &o, &t));
	r.throttle = (uintptr_t)t;
	return r;
}

static gompt_res gompt_create_named(const char *name, uint64_t max_n, double per_s, mpt_options o) {
	gompt_res r = {0};
	mpt_throttle *t = NULL;
	gompt_set(&r, mpt_throttle_create_named(name, max_n, per_s, &o, &t));
	r.throttle = (uintptr_t)t;
	return r;
}

static gompt_res gompt_open(const char *name, mpt_options o) {
	gompt_res r = {0};
	mpt_throttle *t = NULL;
	gompt_set(&r, mpt_throttle_open(name, &o, &t));
	r.throttle = (uintptr_t)t;
	return r;
}

static gompt_res gompt_unlink(const char *name) {
	gompt_res r = {0};
	gompt_set(&r, mpt_throttle_unlink(name));
	return r;
}

static gompt_res gompt_connect(const char *url, const char *name, uint64_t max_n, double per_s,
                               mpt_options o) {
	gompt_res r = {0};
	mpt_throttle *t = NULL;
	gompt_set(&r, mpt_throttle_connect(url, name, max_n, per_s, &o, &t));
	r.throttle = (uintptr_t)t;
	return r;
}

static gompt_res gompt_unlink_url(const char *url, const char *name) {
	gompt_res r = {0};
	gompt_set(&r, mpt_throttle_unlink_url(url, name));
	return r;
}

static gompt_res gompt_free(uintptr_t t) {
	gompt_res r = {0};
	gompt_set(&r, mpt_throttle_free((mpt_throttle *)t));
	return r;
}

static gompt_res gompt_start(uintptr_t t) {
	gompt_res r = {0};
	gompt_set(&r, mpt_start(H(t)));
	return r;
}

static gompt_res gompt_stop(uintptr_t t) {
	gompt_res r = {0};
	gompt_set(&r, mpt_stop(H(t), &r.summary));
	return r;
}

// cancel: a token, or 0 for a wait that nothing but the kill flag and the
// timeout ends (mpt_await_fuel_n).
static gompt_res gompt_await_fuel(uintptr_t t, uint64_t n, double timeout_s, uintptr_t cancel) {
	gompt_res r = {0};
	gompt_set(&r, mpt_await_fuel_cancellable(H(t), n, timeout_s, CT(cancel), &r.i64));
	return r;
}

static gompt_res gompt_has_fuel(uintptr_t t, uint64_t n) {
	gompt_res r = {0};
	gompt_set(&r, mpt_has_fuel_n(H(t), n, &r.i64));
	return r;
}

static gompt_res gompt_peek_fuel(uintptr_t t, uint64_t n) {
	gompt_res r = {0};
	gompt_set(&r, mpt_peek_fuel(H(t), n, &r.u64, &r.f64));
	return r;
}

static gompt_res gompt_set_rate(uintptr_t t, uint64_t max_n, double per_s) {
	gompt_res r = {0};
	gompt_set(&r, mpt_set_rate(H(t), max_n, per_s));
	return r;
}

static gompt_res gompt_get_rate(uintptr_t t) {
	gompt_res r = {0};
	gompt_set(&r, mpt_get_rate(H(t), &r.u64, &r.f64));
	return r;
}

static gompt_res gompt_cancel_new(void) {
	gompt_res r = {0};
	mpt_cancel *c = NULL;
	gompt_set(&r, mpt_cancel_new(&c));
	r.throttle = (uintptr_t)c;
	return r;
}

// The token calls return nothing but a status, which can only say that
// the token is not live (a bug of this package): no message is fetched.
static int32_t gompt_cancel_free(uintptr_t c) { return mpt_cancel_free((mpt_cancel *)c); }
static int32_t gompt_cancel_fire(uintptr_t c) { return mpt_cancel_fire(CT(c)); }
static int32_t gompt_cancel_reset(uintptr_t c) { return mpt_cancel_reset(CT(c)); }

static gompt_res gompt_emit(uintptr_t t) {
	gompt_res r = {0};
	gompt_set(&r, mpt_emit(H(t)));
	return r;
}

static gompt_res gompt_emit_at(uintptr_t t, int64_t timestamp_ns) {
	gompt_res r = {0};
	gompt_set(&r, mpt_emit_at(H(t), timestamp_ns));
	return r;
}

static gompt_res gompt_kill(uintptr_t t) {
	gompt_res r = {0};
	gompt_set(&r, mpt_kill(H(t)));
	return r;
}

static gompt_res gompt_kill_flag_is_set(uintptr_t t) {
	gompt_res r = {0};
	gompt_set(&r, mpt_kill_flag_is_set(H(t), &r.flag));
	return r;
}

static gompt_res gompt_is_running(uintptr_t t) {
	gompt_res r = {0};
	gompt_set(&r, mpt_is_running(H(t), &r.flag));
	return r;
}

enum { GOMPT_LATEST, GOMPT_MEAN, GOMPT_LO_HI, GOMPT_HI_LO };

static gompt_res gompt_rate(uintptr_t t, int which) {
	gompt_res r = {0};
	int32_t status;
	switch (which) {
	case GOMPT_LATEST: status = mpt_latest(H(t), &r.rate); break;
	case GOMPT_MEAN:   status = mpt_mean(H(t), &r.rate); break;
	case GOMPT_LO_HI:  status = mpt_lo_hi(H(t), &r.rate); break;
	default:           status = mpt_hi_lo(H(t), &r.rate); break;
	}
	gompt_set(&r, status);
	return r;
}

static gompt_res gompt_get_summary(uintptr_t t) {
	gompt_res r = {0};
	gompt_set(&r, mpt_get_summary(H(t), &r.summary));
	return r;
}

static gompt_res gompt_clock_now(void) {
	gompt_res r = {0};
	gompt_set(&r, mpt_clock_now(&r.i64));
	return r;
}

static gompt_res gompt_version(void) {
	gompt_res r = {0};
	uint32_t major = 0, minor = 0, patch = 0;
	gompt_set(&r, mpt_version(&major, &minor, &patch));
	r.i64 = ((int64_t)major << 40) | ((int64_t)minor << 20) | (int64_t)patch;
	return r;
}

// Keyed throttles (mpt_keyed_*). A keyed handle crosses as an integer too.
#define KH(h) ((const mpt_keyed *)(uintptr_t)(h))

// A key crosses by value, in a struct that holds the longest one
// (MPT_KEY_MAX bytes; Go refuses a longer key before the call): Go passes
// no pointer into C, any byte (NUL included) goes through, and the C
// function reads the copy, which lives until it returns.
typedef struct gompt_key {
	size_t len;
	unsigned char bytes[MPT_KEY_MAX];
} gompt_key;

static gompt_res gompt_keyed_new(uint64_t max_n, double per_s, uint64_t capacity, mpt_options o) {
	gompt_res r = {0};
	mpt_keyed *k = NULL;
	gompt_set(&r, mpt_keyed_new(max_n, per_s, capacity, &o, &k));
	r.throttle = (uintptr_t)k;
	return r;
}

static gompt_res gompt_keyed_create_named(const char *name, uint64_t max_n, double per_s,
                                          uint64_t capacity, mpt_options o) {
	gompt_res r = {0};
	mpt_keyed *k = NULL;
	gompt_set(&r, mpt_keyed_create_named(name, max_n, per_s, capacity, &o, &k));
	r.throttle = (uintptr_t)k;
	return r;
}

static gompt_res gompt_keyed_open(const char *name, mpt_options o) {
	gompt_res r = {0};
	mpt_keyed *k = NULL;
	gompt_set(&r, mpt_keyed_open(name, &o, &k));
	r.throttle = (uintptr_t)k;
	return r;
}

static gompt_res gompt_keyed_connect(const char *url, const char *name, uint64_t max_n,
                                     double per_s, mpt_options o) {
	gompt_res r = {0};
	mpt_keyed *k = NULL;
	gompt_set(&r, mpt_keyed_connect(url, name, max_n, per_s, &o, &k));
	r.throttle = (uintptr_t)k;
	return r;
}

static gompt_res gompt_keyed_free(uintptr_t k) {
	gompt_res r = {0};
	gompt_set(&r, mpt_keyed_free((mpt_keyed *)k));
	return r;
}

static gompt_res gompt_keyed_start(uintptr_t k) {
	gompt_res r = {0};
	gompt_set(&r, mpt_keyed_start(KH(k)));
	return r;
}

static gompt_res gompt_keyed_stop(uintptr_t k) {
	gompt_res r = {0};
	gompt_set(&r, mpt_keyed_stop(KH(k), &r.summary));
	return r;
}

static gompt_res gompt_keyed_kill(uintptr_t k) {
	gompt_res r = {0};
	gompt_set(&r, mpt_keyed_kill(KH(k)));
	return r;
}

static gompt_res gompt_keyed_is_running(uintptr_t k) {
	gompt_res r = {0};
	gompt_set(&r, mpt_keyed_is_running(KH(k), &r.flag));
	return r;
}

static gompt_res gompt_keyed_kill_flag_is_set(uintptr_t k) {
	gompt_res r = {0};
	gompt_set(&r, mpt_keyed_kill_flag_is_set(KH(k), &r.flag));
	return r;
}

// What mpt_keyed_get_config reports, in one struct without pointers that
// Go passes by address (Go memory, written on success).
typedef struct gompt_keyed_config {
	mpt_options options;
	uint64_t max_n;
	double per_s;
	uint64_t capacity;
	bool created;
} gompt_keyed_config;

static gompt_res gompt_keyed_get_config(uintptr_t k, gompt_keyed_config *out) {
	gompt_res r = {0};
	// The version says how much mpt_get_options writes: every field.
	out->options.version = MPT_OPTIONS_VERSION;
	gompt_set(&r, mpt_keyed_get_config(KH(k), &out->options, &out->max_n, &out->per_s,
	                                   &out->capacity, &out->created));
	return r;
}

// cancel: a token, or 0 (mpt_keyed_await_fuel).
static gompt_res gompt_keyed_await_fuel(uintptr_t k, gompt_key key, uint64_t n, double timeout_s,
                                        uintptr_t cancel) {
	gompt_res r = {0};
	gompt_set(&r, mpt_keyed_await_fuel_cancellable(KH(k), key.bytes, key.len, n, timeout_s,
	                                               CT(cancel), &r.i64));
	return r;
}

static gompt_res gompt_keyed_has_fuel(uintptr_t k, gompt_key key, uint64_t n) {
	gompt_res r = {0};
	gompt_set(&r, mpt_keyed_has_fuel(KH(k), key.bytes, key.len, n, &r.i64));
	return r;
}

static gompt_res gompt_keyed_peek(uintptr_t k, gompt_key key, uint64_t n) {
	gompt_res r = {0};
	gompt_set(&r, mpt_keyed_peek(KH(k), key.bytes, key.len, n, &r.u64, &r.f64));
	return r;
}

static gompt_res gompt_keyed_forget(uintptr_t k, gompt_key key) {
	gompt_res r = {0};
	gompt_set(&r, mpt_keyed_forget(KH(k), key.bytes, key.len, &r.flag));
	return r;
}

// The key's figures: flag (in_table), u64 (granted), i64 (since_ns).
static gompt_res gompt_keyed_key_stats(uintptr_t k, gompt_key key) {
	gompt_res r = {0};
	mpt_key_stats s = {0};
	gompt_set(&r, mpt_keyed_key_stats(KH(k), key.bytes, key.len, &s));
	r.flag = s.in_table != 0;
	r.u64 = s.granted;
	r.i64 = s.since_ns;
	return r;
}

// out: Go memory (a struct without pointers), written on success.
static gompt_res gompt_keyed_get_stats(uintptr_t k, mpt_keyed_stats *out) {
	gompt_res r = {0};
	gompt_set(&r, mpt_keyed_get_stats(KH(k), out));
	return r;
}

static gompt_res gompt_keyed_rate(uintptr_t k, int which) {
	gompt_res r = {0};
	gompt_set(&r, which == GOMPT_LATEST ? mpt_keyed_latest(KH(k), &r.rate) : mpt_keyed_mean(KH(k), &r.rate));
	return r;
}
*/
import "C"

import (
	"math"
	"strconv"
	"time"
	"unsafe"
)

// handle is an mpt_throttle pointer, kept as an integer (see H in the C
// helpers): C memory that the Go collector neither moves nor frees.
type handle = C.uintptr_t

// result is a C call's outcome, converted to Go: the status, the message
// recorded by that very call, and the out-parameters.
type result struct {
	status  Status
	message string
	r       C.gompt_res
}

func convert(r C.gompt_res) result {
	res := result{status: Status(r.status), r: r}
	if r.msg != nil {
		res.message = C.GoString(r.msg)
		C.free(unsafe.Pointer(r.msg))
	}
	return res
}

// err turns a failed result into an *Error of operation op; nil on success.
func (res result) err(op string) error {
	if res.status == StatusOK {
		return nil
	}
	return newError(op, res.status, res.message)
}

func (res result) rate() Rate {
	return Rate{
		Interval:  seconds(float64(res.r.rate.seconds_between)),
		PerSecond: float64(res.r.rate.per_second),
	}
}

func (res result) summary() Summary {
	s := res.r.summary
	return Summary{
		Runtime:       seconds(float64(s.runtime_s)),
		Total:         uint64(s.total),
		MeanInterval:  seconds(float64(s.mean_seconds_between)),
		MeanPerSecond: float64(s.mean_per_second),
	}
}

// seconds converts the library's seconds to a Duration, rounded to the
// nanosecond and clamped to the Duration range.
func seconds(s float64) time.Duration {
	ns := math.Round(s * 1e9)
	switch {
	case math.IsNaN(ns):
		return 0
	case ns >= math.MaxInt64:
		return math.MaxInt64
	case ns <= math.MinInt64:
		return math.MinInt64
	}
	return time.Duration(ns)
}

// cString copies a Go string to C. A string with a NUL byte cannot be a
// throttle name: it would be cut short in C, so it is refused here.
func cString(op, s string) (*C.char, error) { return cText(op, "name", s) }

// cText is cString for any string argument, what naming it in the error
// ("name", "URL").
func cText(op, what, s string) (*C.char, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return nil, newError(op, StatusInvalidArgument, "the "+what+" contains a NUL byte")
		}
	}
	return C.CString(s), nil
}

// Call wrappers: each is one cgo call to a helper above.

func cOptionsInit(o *C.mpt_options, version uint32) result {
	return convert(C.gompt_options_init(o, C.uint32_t(version)))
}

func cNew(maxN uint64, perS float64, o C.mpt_options) result {
	return convert(C.gompt_new(C.uint64_t(maxN), C.double(perS), o))
}

func cCreateNamed(name *C.char, maxN uint64, perS float64, o C.mpt_options) result {
	return convert(C.gompt_create_named(name, C.uint64_t(maxN), C.double(perS), o))
}

func cConnect(url, name *C.char, maxN uint64, perS float64, o C.mpt_options) result {
	return convert(C.gompt_connect(url, name, C.uint64_t(maxN), C.double(perS), o))
}

func cUnlinkURL(url, name *C.char) result { return convert(C.gompt_unlink_url(url, name)) }

func cOpen(name *C.char, o C.mpt_options) result { return convert(C.gompt_open(name, o)) }
func cUnlink(name *C.char) result                { return convert(C.gompt_unlink(name)) }
func cFree(h handle) result                      { return convert(C.gompt_free(h)) }
func cStart(h handle) result                     { return convert(C.gompt_start(h)) }
func cStop(h handle) result                      { return convert(C.gompt_stop(h)) }
func cEmit(h handle) result                      { return convert(C.gompt_emit(h)) }
func cKill(h handle) result                      { return convert(C.gompt_kill(h)) }
func cKillFlagIsSet(h handle) result             { return convert(C.gompt_kill_flag_is_set(h)) }
func cIsRunning(h handle) result                 { return convert(C.gompt_is_running(h)) }
func cGetSummary(h handle) result                { return convert(C.gompt_get_summary(h)) }

func cAwaitFuel(h handle, n uint64, timeoutS float64, cancel token) result {
	return convert(C.gompt_await_fuel(h, C.uint64_t(n), C.double(timeoutS), cancel))
}

func cHasFuel(h handle, n uint64) result  { return convert(C.gompt_has_fuel(h, C.uint64_t(n))) }
func cPeekFuel(h handle, n uint64) result { return convert(C.gompt_peek_fuel(h, C.uint64_t(n))) }
func cGetRate(h handle) result            { return convert(C.gompt_get_rate(h)) }
func cSetRate(h handle, maxN uint64, perS float64) result {
	return convert(C.gompt_set_rate(h, C.uint64_t(maxN), C.double(perS)))
}

// token is an mpt_cancel pointer, kept as an integer like handle; 0 is none.
type token = C.uintptr_t

func cCancelNew() result          { return convert(C.gompt_cancel_new()) }
func cCancelFree(c token) Status  { return Status(C.gompt_cancel_free(c)) }
func cCancelFire(c token) Status  { return Status(C.gompt_cancel_fire(c)) }
func cCancelReset(c token) Status { return Status(C.gompt_cancel_reset(c)) }

func cEmitAt(h handle, ns int64) result {
	return convert(C.gompt_emit_at(h, C.int64_t(ns)))
}

type rateKind C.int

const (
	rateLatest rateKind = C.GOMPT_LATEST
	rateMean   rateKind = C.GOMPT_MEAN
	rateLoHi   rateKind = C.GOMPT_LO_HI
	rateHiLo   rateKind = C.GOMPT_HI_LO
)

func cRate(h handle, which rateKind) result {
	return convert(C.gompt_rate(h, C.int(which)))
}

// Keyed throttles.

// keyArg is a key as the C helpers take it, by value (see gompt_key).
type keyArg = C.gompt_key

// cKey copies key into a keyArg. A key longer than KeyMax is refused here,
// with the library's words, since the struct cannot hold it.
func cKey(op, key string) (keyArg, error) {
	var k keyArg
	if len(key) > KeyMax {
		return k, newError(op, StatusInvalidArgument,
			"a key is at most "+strconv.Itoa(KeyMax)+" bytes (got "+strconv.Itoa(len(key))+")")
	}
	k.len = C.size_t(len(key))
	copy((*[KeyMax]byte)(unsafe.Pointer(&k.bytes[0]))[:], key)
	return k, nil
}

func cKeyedNew(maxN uint64, perS float64, capacity uint64, o C.mpt_options) result {
	return convert(C.gompt_keyed_new(C.uint64_t(maxN), C.double(perS), C.uint64_t(capacity), o))
}

func cKeyedCreateNamed(name *C.char, maxN uint64, perS float64, capacity uint64, o C.mpt_options) result {
	return convert(C.gompt_keyed_create_named(name, C.uint64_t(maxN), C.double(perS), C.uint64_t(capacity), o))
}

func cKeyedConnect(url, name *C.char, maxN uint64, perS float64, o C.mpt_options) result {
	return convert(C.gompt_keyed_connect(url, name, C.uint64_t(maxN), C.double(perS), o))
}

func cKeyedOpen(name *C.char, o C.mpt_options) result { return convert(C.gompt_keyed_open(name, o)) }
func cKeyedFree(h handle) result                      { return convert(C.gompt_keyed_free(h)) }
func cKeyedStart(h handle) result                     { return convert(C.gompt_keyed_start(h)) }
func cKeyedStop(h handle) result                      { return convert(C.gompt_keyed_stop(h)) }
func cKeyedKill(h handle) result                      { return convert(C.gompt_keyed_kill(h)) }
func cKeyedIsRunning(h handle) result                 { return convert(C.gompt_keyed_is_running(h)) }
func cKeyedKillFlagIsSet(h handle) result             { return convert(C.gompt_keyed_kill_flag_is_set(h)) }

func cKeyedGetConfig(h handle) (result, KeyedConfig) {
	var c C.gompt_keyed_config
	res := convert(C.gompt_keyed_get_config(h, &c))
	o := c.options
	return res, KeyedConfig{
		MaxN:        uint64(c.max_n),
		Per:         seconds(float64(c.per_s)),
		Capacity:    uint64(c.capacity),
		Created:     bool(c.created),
		Hardcap:     Hardcap(o.hardcap),
		AsMonitor:   o.as_monitor != 0,
		AutoEmit:    o.auto_emit != 0,
		Refresh:     seconds(float64(o.refresh_s)),
		TimerSlack:  time.Duration(o.timer_slack_ns),
		Spin:        seconds(float64(o.spin_s)),
		GroupShared: o.group_shared != 0,
	}
}

func cKeyedAwaitFuel(h handle, key keyArg, n uint64, timeoutS float64, cancel token) result {
	return convert(C.gompt_keyed_await_fuel(h, key, C.uint64_t(n), C.double(timeoutS), cancel))
}

func cKeyedHasFuel(h handle, key keyArg, n uint64) result {
	return convert(C.gompt_keyed_has_fuel(h, key, C.uint64_t(n)))
}

func cKeyedPeek(h handle, key keyArg, n uint64) result {
	return convert(C.gompt_keyed_peek(h, key, C.uint64_t(n)))
}

func cKeyedForget(h handle, key keyArg) result   { return convert(C.gompt_keyed_forget(h, key)) }
func cKeyedKeyStats(h handle, key keyArg) result { return convert(C.gompt_keyed_key_stats(h, key)) }

func cKeyedGetStats(h handle) (result, KeyedStats) {
	var s C.mpt_keyed_stats
	res := convert(C.gompt_keyed_get_stats(h, &s))
	res.r.summary = s.summary
	return res, KeyedStats{
		LiveKeys:  uint64(s.live_keys),
		Capacity:  uint64(s.capacity),
		Evictions: uint64(s.evictions),
		Added:     uint64(s.added),
		Summary:   res.summary(),
	}
}

func cKeyedRate(h handle, which rateKind) result {
	return convert(C.gompt_keyed_rate(h, C.int(which)))
}

func cClockNow() result { return convert(C.gompt_clock_now()) }
func cVersion() result  { return convert(C.gompt_version()) }

// forever is MPT_FOREVER, the timeout of a wait without one.
const forever = float64(C.MPT_FOREVER)

// statusText is mpt_strerror.
func statusText(s Status) string { return C.GoString(C.mpt_strerror(C.int32_t(s))) }

// Status values, from the header.
const (
	StatusOK               Status = C.MPT_STATUS_OK
	StatusTimeout          Status = C.MPT_STATUS_TIMEOUT
	StatusKilled           Status = C.MPT_STATUS_KILLED
	StatusNoFuel           Status = C.MPT_STATUS_NO_FUEL
	StatusNotRunning       Status = C.MPT_STATUS_NOT_RUNNING
	StatusNullPointer      Status = C.MPT_STATUS_NULL_POINTER
	StatusBadHandle        Status = C.MPT_STATUS_BAD_HANDLE
	StatusInvalidArgument  Status = C.MPT_STATUS_INVALID_ARGUMENT
	StatusWrongState       Status = C.MPT_STATUS_WRONG_STATE
	StatusMonitorOff       Status = C.MPT_STATUS_MONITOR_OFF
	StatusSystem           Status = C.MPT_STATUS_SYSTEM
	StatusUnsupported      Status = C.MPT_STATUS_UNSUPPORTED
	StatusCorrupt          Status = C.MPT_STATUS_CORRUPT
	StatusPanic            Status = C.MPT_STATUS_PANIC
	StatusNotFound         Status = C.MPT_STATUS_NOT_FOUND
	StatusPermissionDenied Status = C.MPT_STATUS_PERMISSION_DENIED
	StatusMismatch         Status = C.MPT_STATUS_MISMATCH
	StatusCancelled        Status = C.MPT_STATUS_CANCELLED
	StatusUnreachable      Status = C.MPT_STATUS_UNREACHABLE
	StatusNoRoom           Status = C.MPT_STATUS_NO_ROOM
)

// Hardcap values, from the header.
const (
	HardcapLimit  Hardcap = C.MPT_HARDCAP_LIMIT
	HardcapOne    Hardcap = C.MPT_HARDCAP_ONE
	HardcapNone   Hardcap = C.MPT_HARDCAP_NONE
	HardcapWindow Hardcap = C.MPT_HARDCAP_WINDOW
)

// HeaderVersion is the version of the mp_throttle.h this package was
// compiled against (MPT_VERSION_STRING); Version reports the library
// actually linked.
const HeaderVersion = C.MPT_VERSION_STRING

// MaxNameLen is the longest throttle name, in bytes.
const MaxNameLen = C.MPT_MAX_NAME_LEN

// Limits of keyed throttles (NewKeyed), from the header.
const (
	// KeyMax is the longest key, in bytes (MPT_KEY_MAX).
	KeyMax = C.MPT_KEY_MAX
	// KeyedMaxCapacity is the most keys a keyed throttle holds.
	KeyedMaxCapacity = C.MPT_KEYED_MAX_CAPACITY
	// KeyedMaxN is the largest maxN of a keyed throttle.
	KeyedMaxN = C.MPT_KEYED_MAX_N
	// KeyedMaxWindow is the largest maxN of a keyed throttle with
	// HardcapWindow.
	KeyedMaxWindow = C.MPT_KEYED_MAX_WINDOW
)

// toC fills a C options struct from o, starting from the library's defaults:
// version 1 of mpt_options (what a library before group sharing knows)
// unless GroupShared(true) asks for version 2's group_shared.
func (o *config) toC(op string) (C.mpt_options, error) {
	var c C.mpt_options
	shared := o.groupShared != nil && *o.groupShared
	version := uint32(1)
	if shared {
		version = C.MPT_OPTIONS_VERSION
	}
	if err := cOptionsInit(&c, version).err(op); err != nil {
		return c, err
	}
	if shared {
		c.group_shared = 1
	}
	if o.asThrottle != nil {
		c.as_throttle = boolU32(*o.asThrottle)
	}
	if o.asMonitor != nil {
		c.as_monitor = boolU32(*o.asMonitor)
	}
	if o.autoEmit != nil {
		c.auto_emit = C.int32_t(boolU32(*o.autoEmit))
	}
	if o.hardcap != nil {
		c.hardcap = C.uint32_t(*o.hardcap)
	}
	if o.refresh != nil {
		c.refresh_s = C.double(o.refresh.Seconds())
	}
	if o.timerSlack != nil {
		d := *o.timerSlack
		if d < 0 || d > math.MaxUint32 {
			return c, newError(op, StatusInvalidArgument,
				"TimerSlack must be from 0 to 4294967295 ns, got "+d.String())
		}
		c.timer_slack_ns = C.uint32_t(d)
	}
	if o.spin != nil {
		c.spin_s = C.double(o.spin.Seconds())
	}
	return c, nil
}

func boolU32(b bool) C.uint32_t {
	if b {
		return 1
	}
	return 0
}
