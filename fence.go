package dbrouter

import (
	"context"
	"fmt"
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

	// holder is locked from hold to unhold: one holder at a time. A switch
	// publishes its outcome (and so may let the next switch start) just
	// before it releases the fence; the next hold waits for that release
	// rather than share the fence and have it opened under its feet.
	holder sync.Mutex

	mu      sync.Mutex
	release chan struct{} // closed when the holder releases; guarded by mu

	// waited, when set, is told how long a write waited at a held fence
	// (Observer.FenceWaited).
	waited func(time.Duration)
}

// enter passes the fence, waiting while it is held, until ctx is done. It
// returns ctx's error, and nothing has entered, when ctx ends first.
func (f *fence) enter(ctx context.Context) error {
	var start time.Time // when the write began to wait, if it did
	for {
		f.inside.Add(1)
		if !f.held.Load() {
			if !start.IsZero() && f.waited != nil {
				f.waited(time.Since(start))
			}
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
		if start.IsZero() {
			start = time.Now()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if f.waited != nil {
				f.waited(time.Since(start))
			}
			return ctx.Err()
		}
	}
}

// leave ends a write that entered.
func (f *fence) leave() { f.inside.Add(-1) }

// hold makes new writes wait and waits until the writes past the fence
// have ended. It reports false, with the fence released, when ctx ends
// first. The caller must call unhold after a true result. A second hold
// waits until the first is released.
func (f *fence) hold(ctx context.Context) bool {
	f.holder.Lock()
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
	f.holder.Unlock()
}

// switchWriter carries out a fenced switch that the state machine asked
// for: it moves the writer role from sw.from to sw.to, a healthy writer to
// another node (a failback, or a WriterSource's decision), without letting
// any write of this router reach the new writer before it holds every
// write the old writer acknowledged. New writes are held at the fence,
// writes in flight finish (for at most one probe timeout: a longer
// transaction makes the attempt give up), the old writer's position is
// read, and the new writer must reach it (MASTER_GTID_WAIT /
// WAIT_FOR_EXECUTED_GTID_SET) within one second. The outcome goes to the
// state machine, whose new picker is published before the fence opens
// again. New writes so wait at most about one probe timeout plus one
// second.
func (c *Cluster) switchWriter(sw fencedSwitch) {
	drain, cancelDrain := context.WithTimeout(c.ctx, c.settings.Health.Timeout)
	held := c.fence.hold(drain) // writes in flight (or a long transaction)
	cancelDrain()
	caughtUp, pos := false, ""
	if held {
		caughtUp, pos = c.catchUp(sw.from, sw.to)
	}
	now := time.Now()
	c.mu.Lock()
	out := c.state.switched(sw, held, caughtUp, pos, now)
	c.publish(out)
	c.unlock()
	if held {
		c.fence.unhold()
	}
	c.carryOut(out)
}

// catchUp reads node from's position and waits, for at most one second,
// until node to holds it. It reports whether it did, and the position.
func (c *Cluster) catchUp(from, to int) (bool, string) {
	ok, pos, _ := c.catchUpWithin(c.ctx, from, to, time.Second)
	return ok, pos
}

// catchUpWithin reads node from's position and waits, for at most d and
// within ctx, until node to holds it (MASTER_GTID_WAIT on MariaDB,
// WAIT_FOR_EXECUTED_GTID_SET on MySQL). It reports whether it did, the
// position, and the error that kept it from knowing.
func (c *Cluster) catchUpWithin(ctx context.Context, from, to int, d time.Duration) (bool, string, error) {
	ctx, cancel := context.WithTimeout(ctx, d+time.Second)
	defer cancel()
	c.mu.Lock()
	mysqlFlavor := c.state.health[to].mysql
	c.unlock()
	q := "SELECT @@global.gtid_current_pos"
	wait := "SELECT MASTER_GTID_WAIT(?, ?)"
	if mysqlFlavor {
		q = "SELECT @@global.gtid_executed"
		wait = "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)"
	}
	var pos string
	if err := c.nodes[from].db().QueryRowContext(ctx, q).Scan(&pos); err != nil {
		return false, "", fmt.Errorf("reading %s's position: %w", c.nodes[from].addr, err)
	}
	var res int
	if err := c.nodes[to].db().QueryRowContext(ctx, wait, pos, d.Seconds()).Scan(&res); err != nil {
		return false, pos, fmt.Errorf("waiting for %s to reach %s: %w", c.nodes[to].addr, pos, err)
	}
	return res == 0, pos, nil
}
