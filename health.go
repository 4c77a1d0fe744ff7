package dbrouter

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// NodeState is a node's health as judged by its probes and by calls.
type NodeState int32

// Node states (docs/design.md §4, "Health states"):
//
//	Up ──probe or call fails──▶ Suspect ──fail_after failed probes──▶ Down
//	 ▲                            │                                     │
//	 └────────one good probe──────┘                                     │
//	 └─────────────────────recover_after good probes────────────────────┘
const (
	// StateUp: the last probe (or, before the first probe, nothing)
	// says the node answers.
	StateUp NodeState = iota
	// StateSuspect: a probe or a call just failed. The node is still tried,
	// after the Up ones, and is probed at once.
	StateSuspect
	// StateDown: FailAfter consecutive probes failed. No call is sent to
	// the node; its connections, idle and in use, are closed.
	StateDown
)

// String returns "up", "suspect" or "down".
func (s NodeState) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateSuspect:
		return "suspect"
	case StateDown:
		return "down"
	}
	return fmt.Sprintf("NodeState(%d)", int32(s))
}

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	// EventState: a node's state changed; From and To are NodeState names.
	EventState EventKind = iota + 1
	// EventReadOnly: a node's read_only flag changed; From and To are "on"
	// or "off".
	EventReadOnly
	// EventWriter: the cluster's writer changed; From and To are node
	// addresses ("" for none) and Node is the new writer.
	EventWriter
	// EventDrained: a node was drained (Cluster.Drain) or undrained; From
	// and To are "on" or "off".
	EventDrained
)

// String names the kind.
func (k EventKind) String() string {
	switch k {
	case EventState:
		return "state"
	case EventReadOnly:
		return "read_only"
	case EventWriter:
		return "writer"
	case EventDrained:
		return "drained"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event reports a change of a node's state or of a cluster's writer. Events
// are delivered in order, one at a time, to Config.OnEvent and to the
// router's logger.
type Event struct {
	Cluster string
	Node    string
	Kind    EventKind
	From    string
	To      string
	Cause   string
	At      time.Time
}

// NodeStats is a snapshot of one node's health.
type NodeStats struct {
	Addr  string
	State NodeState
	// Role is RoleWriter, or RoleReplica for every other node.
	Role     Role
	ReadOnly bool
	// LastProbeLatency is the duration of the last probe, good or bad.
	LastProbeLatency    time.Duration
	ConsecutiveFailures int
	// GTIDPosition is @@gtid_current_pos (MariaDB) or @@gtid_executed
	// (MySQL) at the last good probe.
	GTIDPosition string
	// SinceChange is the time since the node's state last changed.
	SinceChange time.Duration
	// Lag is the time since a probe last found the node holding every
	// transaction of the writer's latest position: zero for the writer, -1
	// when unknown. It grows by about a probe interval between probes.
	Lag       time.Duration
	LastError string
	// Drained reports whether Cluster.Drain took the node out of service
	// (until Cluster.Undrain): no call is sent to it and it never becomes
	// the writer.
	Drained bool
	// Pools holds the statistics of the node's connection pools that the
	// router has opened so far (see PoolStats).
	Pools []PoolStats
}

// ClusterStats is a snapshot of one cluster's health.
type ClusterStats struct {
	Name   string
	Writer string // "" when no node qualifies
	Nodes  []NodeStats
}

// probeQuery reads what writer selection needs, in one round trip: the
// read_only flag, the replication position and the server's own identity,
// which tells its own transactions from those it must have replicated.
const (
	probeMariaDB = "SELECT @@global.read_only, @@global.gtid_current_pos, @@global.server_id"
	probeMySQL   = "SELECT @@global.read_only, @@global.gtid_executed, @@global.server_uuid"
	probeVersion = "SELECT @@version, @@version_comment"
)

// startProbers puts the cluster's nodes in the router's probe scheduler
// (probe_sched.go), once, when the cluster is first used: a router with many
// clusters opens no connection to those it never uses. A cluster built
// outside a router gets a scheduler of its own.
func (c *Cluster) startProbers() {
	if c.settings.Health.Disabled {
		return
	}
	c.probersOnce.Do(func() {
		c.closeMu.Lock()
		defer c.closeMu.Unlock()
		if c.closed.Load() {
			return
		}
		if c.sched == nil {
			c.sched, c.ownSched = newProbeScheduler(), true
		}
		slots := make([]*probeSlot, len(c.nodes))
		for i := range c.nodes {
			slots[i] = &probeSlot{c: c, i: i}
		}
		c.wg.Add(len(slots))
		c.slots.Store(&slots)
		c.sched.add(slots)
	})
}

// stopProbers takes the cluster's nodes out of the scheduler; close then
// waits (c.wg) for the probes running.
func (c *Cluster) stopProbers() {
	if slots := c.slots.Load(); slots != nil {
		c.sched.remove(*slots)
	}
}

// confirming reports whether node i is Suspect after failed probes, so that
// it should be probed again without waiting for its next turn.
func (c *Cluster) confirming(i int) bool {
	c.mu.Lock()
	defer c.unlock()
	return c.state.confirming(i)
}

// requestProbe asks for a probe of node i now rather than at its next
// turn.
func (c *Cluster) requestProbe(i int) {
	if slots := c.slots.Load(); slots != nil {
		c.sched.now((*slots)[i])
	}
}

// probe checks node i once and applies the result.
func (c *Cluster) probe(i int) {
	n := c.nodes[i]
	ctx, cancel := context.WithTimeout(c.ctx, c.settings.Health.Timeout)
	defer cancel()
	c.mu.Lock()
	h := c.state.health[i]
	c.unlock()

	start := time.Now()
	mysqlFlavor := h.mysql
	var err error
	if !h.flavorKnown {
		var row []string
		if row, err = n.probe.query(ctx, probeVersion); err == nil {
			mysqlFlavor = !strings.Contains(strings.ToLower(strings.Join(row, " ")), "mariadb")
		}
	}
	var (
		ro   bool
		pos  gtidSet
		self string
	)
	if err == nil {
		q := probeMariaDB
		if mysqlFlavor {
			q = probeMySQL
		}
		var row []string
		if row, err = n.probe.query(ctx, q); err == nil && len(row) < 3 {
			err = fmt.Errorf("probe %q returned %d columns, want 3", q, len(row))
		}
		if err == nil {
			switch strings.ToLower(row[0]) {
			case "1", "on", "true":
				ro = true
			}
			pos, err = parseGTIDSet(row[1], mysqlFlavor)
			self = row[2]
		}
	}
	latency := time.Since(start)
	if c.ctx.Err() != nil {
		return // closing
	}
	c.observeProbe(i, latency, mysqlFlavor, h.flavorKnown, err)
	// No answer within the timeout: ctx ended, or the probe's socket
	// deadline (the same instant) passed, which may end the wait a moment
	// before ctx's own timer does.
	noAnswer := err != nil && (ctx.Err() != nil || pastDeadline(ctx))
	c.applyProbe(i, probeResult{err: err, readOnly: ro, pos: pos, self: self, mysql: mysqlFlavor, latency: latency,
		started: start, noAnswer: noAnswer})
	if err == nil && c.inUse(time.Now()) {
		// A cluster no call uses keeps no warm connection: its pools
		// stay unopened (probe_idle.go).
		n.warm(ctx)
	}
}

// applyProbe hands one probe result of node i to the state machine and
// carries out what it asks.
func (c *Cluster) applyProbe(i int, r probeResult) {
	now := time.Now()
	c.mu.Lock()
	out := c.state.probeResult(i, r, now)
	c.publish(out)
	c.unlock()
	c.carryOut(out)
}

// emit hands events to the router's dispatcher.
func (c *Cluster) emit(evs []Event) {
	for _, ev := range evs {
		if c.observer != nil {
			c.obsPending = append(c.obsPending, obsItem{ev: ev})
		}
		if c.events != nil && !c.events.send(ev) && c.observer != nil {
			c.obsPending = append(c.obsPending, obsItem{ev: ev, dropped: true})
		}
	}
}

// Stats returns a snapshot of the cluster's health. It does not start the
// probers.
func (c *Cluster) Stats() ClusterStats {
	now := time.Now()
	c.mu.Lock()
	cs := c.state.stats(now)
	c.unlock()
	c.addPoolStats(&cs)
	return cs
}

// stallAfter is how long a call may wait on a node before the node is
// checked at once (checkStalled): a quarter of the probe timeout, 50 ms by
// default. A freeze is then confirmed, and the stuck calls released, about
// stallAfter + Health.Timeout after the freeze whatever the phase of the
// probe cycle (docs/health.md, "Stall checks").
func (c *Cluster) stallAfter() time.Duration {
	return max(c.settings.Health.Timeout/4, time.Millisecond)
}

// stallDog watches the attempts of calls running on one node, for every
// call at once: an attempt only counts itself in and out (two atomic adds,
// no timer and no allocation per call), and one timer per node ticks every
// stallAfter/dogTicks while any attempt runs there (it stops at the first
// tick that finds the node idle). A tick that finds an attempt begun
// dogTicks ticks ago or earlier still running (it has waited at least
// stallAfter, at most stallAfter + one tick) runs checkStalled, and so does
// every tick after while one still runs (checkStalled spaces the checks).
//
// Attempts finish in any order, so the dog compares counts: fewer attempts
// finished than had begun dogTicks ticks ago means one of those still
// runs. A stuck attempt may go unseen while later ones on the same node
// keep finishing, but then the node answers: it is not frozen.
type stallDog struct {
	started, finished atomic.Uint64
	armed             atomic.Bool // the timer runs

	mu    sync.Mutex       // the tick's own state
	t     *time.Timer      // made at the first arming, reused
	marks [dogTicks]uint64 // started at each of the last dogTicks ticks, a ring
	pos   int              // the oldest mark
}

// dogTicks is how many ticks of a stall watch make stallAfter.
const dogTicks = 4

// watchStall counts an attempt on node i in; the caller counts it out
// (stop) when the attempt returns. A nil *stallDog watches nothing.
func (c *Cluster) watchStall(i int) *stallDog {
	if c.settings.Health.Disabled || c.dogs == nil {
		return nil
	}
	d := &c.dogs[i]
	d.started.Add(1)
	if !d.armed.Load() && d.armed.CompareAndSwap(false, true) {
		c.armDog(i)
	}
	// Not only when the dog arms: a call may start on an idle cluster on
	// a node where an older call still runs (its dog armed already).
	c.wakeProbes()
	return d
}

func (d *stallDog) stop() {
	if d != nil {
		d.finished.Add(1)
	}
}

func (c *Cluster) dogTick() time.Duration { return max(c.stallAfter()/dogTicks, time.Millisecond) }

// armDog starts node i's dog ticking; the caller set armed.
func (c *Cluster) armDog(i int) {
	d := &c.dogs[i]
	d.mu.Lock()
	defer d.mu.Unlock()
	// No attempt is old yet: those begun before this arming are once
	// dogTicks ticks have passed.
	f, s := d.finished.Load(), d.started.Load()
	for j := range dogTicks - 1 {
		d.marks[(d.pos+j)%dogTicks] = f
	}
	d.marks[(d.pos+dogTicks-1)%dogTicks] = s
	if d.t == nil {
		d.t = time.AfterFunc(c.dogTick(), func() { c.tickDog(i) })
	} else {
		d.t.Reset(c.dogTick())
	}
}

// tickDog is one tick of node i's dog.
func (c *Cluster) tickDog(i int) {
	d := &c.dogs[i]
	d.mu.Lock()
	f := d.finished.Load()
	stalled := f < d.marks[d.pos]
	s := d.started.Load()
	d.marks[d.pos] = s
	d.pos = (d.pos + 1) % dogTicks
	if s == f || c.closed.Load() {
		// Idle: stop, unless an attempt began meanwhile and found the
		// dog still armed.
		d.armed.Store(false)
		if c.closed.Load() || d.started.Load() == s || !d.armed.CompareAndSwap(false, true) {
			d.mu.Unlock()
			return
		}
	}
	d.t.Reset(c.dogTick())
	d.mu.Unlock()
	if stalled {
		c.checkStalled(i)
	}
}

// checkStalled runs when a call has waited stallAfter on node i: it asks
// for a pooled probe at once and, in parallel, opens a new connection (a
// full handshake, closed at once). A server that answers neither within
// the probe timeout, the two waits overlapping, answers nothing at all:
// it is frozen or the path to it is cut, and it goes Down at once
// (clusterState.unanswered). A server that is only slow to run the call's
// statement (a long query, a lock wait) answers both, and nothing changes.
// However many calls wait, a check starts at most once per stallAfter; at
// most one new connection is open per node at a time (while one is, a
// check asks for a probe only, which then overlaps the connection's wait).
func (c *Cluster) checkStalled(i int) {
	n := c.nodes[i]
	now := time.Now().UnixNano()
	last := n.lastCheck.Load()
	if c.closed.Load() || now-last < int64(c.stallAfter()) || !n.lastCheck.CompareAndSwap(last, now) {
		return
	}
	c.startProbers()
	c.requestProbe(i)
	if !n.checking.CompareAndSwap(false, true) {
		return
	}
	c.closeMu.Lock()
	if c.closed.Load() {
		c.closeMu.Unlock()
		n.checking.Store(false)
		return
	}
	c.wg.Add(1)
	c.closeMu.Unlock()
	go func() {
		defer c.wg.Done()
		defer n.checking.Store(false)
		c.handshake(i)
	}()
}

// handshake opens a new connection to node i, bounded by the probe
// timeout, closes it, and hands the outcome to the state machine.
func (c *Cluster) handshake(i int) {
	ctx, cancel := context.WithTimeout(c.ctx, c.settings.Health.Timeout)
	defer cancel()
	start := time.Now()
	conn, err := c.nodes[i].probe.connector.Connect(ctx)
	if err == nil {
		conn.Close()
	}
	if c.ctx.Err() != nil {
		return // closing
	}
	noAnswer := err != nil && ctx.Err() != nil
	now := time.Now()
	c.mu.Lock()
	out := c.state.handshakeResult(i, start, err, noAnswer, now)
	c.publish(out)
	c.unlock()
	c.carryOut(out)
}
