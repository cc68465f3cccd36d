package mpthrottle

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// A cancelToken is an mpt_cancel of this process. A wait with a context
// that can be cancelled takes one from tokens, gives it to
// mpt_await_fuel_cancellable, and has a watcher goroutine fire it when the
// context is done (or the Throttle closed); then it puts it back.
//
// A token is put back only once its wait has returned and its watcher has
// finished (see awaitCancellable), so nothing can fire a token in the pool
// or one serving the next wait; one that fired is reset first. A token the
// pool drops is freed by its finalizer: nothing uses it any more then.
type cancelToken struct {
	c token
	// why says what fired the token: 0 nothing (it is clean), whyContext
	// or whyClosed. Written by the watcher before its hand-shake with the
	// waiter (see awaitCancellable), read by the waiter after it.
	why int
}

const (
	whyContext = 1 + iota
	whyClosed
)

// tokens pools cancellation tokens. BenchmarkCancelToken measures it
// against a new token for each wait (mpt_cancel_new, then mpt_cancel_free):
// the pool saves both cgo calls and the library's allocation.
var tokens sync.Pool

// tokensMade and tokensFreed count the tokens made and freed by
// finalizers, tokenWaits the waits that took a token, for the tests.
var tokensMade, tokensFreed, tokenWaits atomic.Int64

func getToken() (*cancelToken, error) {
	if tok, ok := tokens.Get().(*cancelToken); ok {
		return tok, nil
	}
	res := cCancelNew()
	if err := res.err("AwaitFuel"); err != nil {
		return nil, err
	}
	tok := &cancelToken{c: res.r.throttle}
	tokensMade.Add(1)
	runtime.SetFinalizer(tok, (*cancelToken).free)
	return tok, nil
}

// putToken returns tok to the pool, reset if it fired. The caller
// guarantees that no wait and no watcher uses it any more.
func putToken(tok *cancelToken) {
	if tok.why != 0 {
		if cCancelReset(tok.c) != StatusOK {
			return // not a live token (cannot happen): keep it out of the pool
		}
		tok.why = 0
	}
	tokens.Put(tok)
}

func (tok *cancelToken) fire(why int) {
	tok.why = why
	_ = cCancelFire(tok.c) // only fails for a token that is not live
}

// free releases the C token when the pool has dropped tok: unreachable, it
// serves no wait.
func (tok *cancelToken) free() {
	_ = cCancelFree(tok.c)
	tok.c = 0
	tokensFreed.Add(1)
}
