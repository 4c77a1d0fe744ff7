package dbrouter

import (
	"sync/atomic"
	"time"
)

// idleWatch tells a cluster that calls use from one that only its probes
// keep alive, so that the Up nodes of the second are probed every
// Health.IdleInterval instead of every Health.Interval (docs/health.md,
// "Idle clusters"). It costs a call nothing: the stall watch already
// counts every attempt on a node (stallDog.started), and the scheduler
// compares those counts when it requeues a probe.
type idleWatch struct {
	calls  atomic.Uint64 // the attempts counted when last looked at
	active atomic.Int64  // UnixNano when a new attempt was last seen; 0: never
	slowed atomic.Bool   // a node was requeued at the idle rate
	// unrouted counts the calls that found no node to try (no writable
	// node, a WriterSource refusing writes): no stall watch counts them,
	// and they are calls all the same (noteUnrouted).
	unrouted atomic.Uint64
	// waiting counts the calls waiting for a node (failover_wait): the
	// cluster is in use while one waits, whether or not new ones start.
	waiting atomic.Int64
}

// probeInterval returns how long after its probe started node i's next
// probe is due: Health.Interval, or Health.IdleInterval when the node is
// Up, the cluster is idle (inUse) and its reads do not depend on lag
// (max_lag).
func (c *Cluster) probeInterval(i int, now time.Time) time.Duration {
	h := c.settings.Health
	if h.IdleInterval <= h.Interval || c.inUse(now) {
		return h.Interval
	}
	if c.settings.MaxLag > 0 && c.settings.ReadPolicy != ReadWriter {
		// Reads skip replicas by their lag, which each probe renews
		// (the picker a probe publishes holds which replicas are fresh):
		// probing less often would keep a lagging replica in the reads.
		return h.Interval
	}
	if p := c.pick.Load(); p == nil || !p.ready || p.nodes[i].state != StateUp {
		return h.Interval
	}
	c.idle.slowed.Store(true)
	return h.IdleInterval
}

// inUse reports whether a call has started on the cluster in the last two
// Health.IdleIntervals, or one waits for a node (always, when the idle
// rate is off). Each look compares the attempts the nodes' stall watches
// counted, and the calls that found no node to try, with the last look's;
// looks come at least every IdleInterval, with each probe.
func (c *Cluster) inUse(now time.Time) bool {
	h := c.settings.Health
	if h.IdleInterval <= h.Interval || c.dogs == nil {
		return true
	}
	w := &c.idle
	calls := w.unrouted.Load()
	for j := range c.dogs {
		calls += c.dogs[j].started.Load()
	}
	t := now.UnixNano()
	if w.calls.Load() != calls || w.waiting.Load() > 0 {
		w.calls.Store(calls)
		w.active.Store(t)
		return true
	}
	a := w.active.Load()
	return a != 0 && time.Duration(t-a) < 2*h.IdleInterval
}

// wakeProbes runs when a call starts (watchStall; one atomic load unless
// the cluster is idle): if the cluster's probes run at the idle rate,
// every node is probed at once, and at Health.Interval from then on
// (probeInterval sees the call).
func (c *Cluster) wakeProbes() {
	if !c.idle.slowed.Load() || !c.idle.slowed.CompareAndSwap(true, false) {
		return
	}
	if slots := c.slots.Load(); slots != nil {
		for _, sl := range *slots {
			c.sched.now(sl)
		}
	}
}

// noteUnrouted counts a call that found no node to try: it uses the
// cluster as much as one that tried a node (the write a switchover waits
// for must see the new writer at Health.Interval, not at the idle rate).
func (c *Cluster) noteUnrouted() {
	c.idle.unrouted.Add(1)
	c.wakeProbes()
}
