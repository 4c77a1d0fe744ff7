package dbrouter

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// fence lets a failback move the writer role without any write of this
// router reaching the old writer after the switch: every write passes the
// fence for as long as it may still write (a statement until it returns,
// the rows of a statement until they are closed, a transaction until it
// ends), and a failback holds the fence, which makes new writes wait and
// waits for the writes already past it to end.
//
// Both sides honour a context: a write waits for a held fence only until
// its context is done, and hold gives up when its context is done.
type fence struct {
	inside atomic.Int64 // writes past the fence
	held   atomic.Bool  // a failback holds the fence

	mu      sync.Mutex
	release chan struct{} // closed when the holder releases; guarded by mu
}

// enter passes the fence, waiting while it is held, until ctx is done. It
// returns ctx's error, and nothing has entered, when ctx ends first.
func (f *fence) enter(ctx context.Context) error {
	for {
		f.inside.Add(1)
		if !f.held.Load() {
			return nil
		}
		// A failback holds the fence: step back out and wait for it.
		f.inside.Add(-1)
		f.mu.Lock()
		ch := f.release
		f.mu.Unlock()
		if ch == nil {
			continue // released between the two loads
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// leave ends a write that entered.
func (f *fence) leave() { f.inside.Add(-1) }

// hold makes new writes wait and waits until the writes past the fence
// have ended. It reports false, with the fence released, when ctx ends
// first. The caller must call unhold after a true result.
func (f *fence) hold(ctx context.Context) bool {
	f.mu.Lock()
	f.release = make(chan struct{})
	f.mu.Unlock()
	f.held.Store(true)
	// enter adds itself before it checks held, and hold sets held before it
	// checks inside, so a write either sees the fence held or is counted.
	for f.inside.Load() > 0 {
		select {
		case <-ctx.Done():
			f.unhold()
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

// unhold releases a held fence and lets waiting writes in.
func (f *fence) unhold() {
	f.held.Store(false)
	f.mu.Lock()
	if f.release != nil {
		close(f.release)
		f.release = nil
	}
	f.mu.Unlock()
}
