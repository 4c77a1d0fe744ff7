package dbrouter

import (
	"context"
	"fmt"
	"strings"
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

// nodeHealth is what the cluster knows of one node. Guarded by Cluster.mu.
type nodeHealth struct {
	state       NodeState
	readOnly    bool
	pos         gtidSet
	havePos     bool
	flavorKnown bool
	mysql       bool // MySQL rather than MariaDB GTIDs
	consecFail  int
	consecOK    int
	latency     time.Duration
	lastErr     error
	changedAt   time.Time
	caughtUpAt  time.Time // last probe at which it had the writer's position
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
}

// ClusterStats is a snapshot of one cluster's health.
type ClusterStats struct {
	Name   string
	Writer string // "" when no node qualifies
	Nodes  []NodeStats
}

// probeQuery reads what writer selection needs, in one round trip.
const (
	probeMariaDB = "SELECT @@global.read_only, @@global.gtid_current_pos"
	probeMySQL   = "SELECT @@global.read_only, @@global.gtid_executed"
	probeVersion = "SELECT @@version, @@version_comment"
)

// startProbers starts one prober goroutine per node, once, when the cluster
// is first used: a router with many clusters opens no connection to those
// it never uses.
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
		for i := range c.nodes {
			c.wg.Add(1)
			go c.runProber(i)
		}
	})
}

func (c *Cluster) runProber(i int) {
	defer c.wg.Done()
	t := time.NewTicker(c.settings.Health.Interval)
	defer t.Stop()
	for {
		c.probe(i)
		if c.confirming(i) {
			// The probe just failed: confirm or clear the suspicion
			// at once rather than at the next tick, so that calls
			// stuck on a dead node are abandoned sooner.
			select {
			case <-c.stop:
				return
			default:
				continue
			}
		}
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.probeNow[i]:
		}
	}
}

// confirming reports whether node i is Suspect after failed probes, so that
// its prober should probe again without waiting for the next tick.
func (c *Cluster) confirming(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := &c.health[i]
	return h.state == StateSuspect && h.consecFail > 0
}

// requestProbe asks node i's prober to probe now rather than at its next
// tick.
func (c *Cluster) requestProbe(i int) {
	if c.settings.Health.Disabled {
		return
	}
	select {
	case c.probeNow[i] <- struct{}{}:
	default: // one is already pending
	}
}

// probe checks node i once and applies the result.
func (c *Cluster) probe(i int) {
	n := c.nodes[i]
	ctx, cancel := context.WithTimeout(c.ctx, c.settings.Health.Timeout)
	defer cancel()
	c.mu.Lock()
	h := c.health[i]
	c.mu.Unlock()

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
		ro  bool
		pos gtidSet
	)
	if err == nil {
		q := probeMariaDB
		if mysqlFlavor {
			q = probeMySQL
		}
		var row []string
		if row, err = n.probe.query(ctx, q); err == nil {
			switch strings.ToLower(row[0]) {
			case "1", "on", "true":
				ro = true
			}
			pos, err = parseGTIDSet(row[1], mysqlFlavor)
		}
	}
	latency := time.Since(start)
	if c.ctx.Err() != nil {
		return // closing
	}
	c.applyProbe(i, probeResult{err: err, readOnly: ro, pos: pos, mysql: mysqlFlavor, latency: latency})
	if err == nil {
		n.warm(ctx)
	}
}

type probeResult struct {
	err      error
	readOnly bool
	pos      gtidSet
	mysql    bool
	latency  time.Duration
}

// applyProbe runs the state machine for one probe result.
func (c *Cluster) applyProbe(i int, r probeResult) {
	now := time.Now()
	var evs []Event
	closeConns := false
	c.mu.Lock()
	h := &c.health[i]
	h.latency = r.latency
	hc := c.settings.Health
	if refusedAtConnect(r.err) {
		// The server is up but refused the probe a connection (too many
		// connections, access denied): it is not dead, and what it would
		// have said of read_only and its position is unknown. Its state
		// stays as it is; the error shows in Stats.
		h.lastErr = r.err
		c.mu.Unlock()
		return
	}
	if r.err == nil {
		h.consecOK++
		h.consecFail = 0
		h.lastErr = nil
		h.flavorKnown, h.mysql = true, r.mysql
		h.pos, h.havePos = r.pos, true
		if h.readOnly != r.readOnly {
			evs = append(evs, c.event(i, EventReadOnly, onOff(h.readOnly), onOff(r.readOnly), "probe", now))
			h.readOnly = r.readOnly
		}
		switch {
		case h.state == StateSuspect,
			h.state == StateDown && h.consecOK >= hc.RecoverAfter:
			evs = append(evs, c.setState(i, StateUp, fmt.Sprintf("%d good probe(s)", h.consecOK), now))
		}
	} else {
		h.consecFail++
		h.consecOK = 0
		h.lastErr = r.err
		switch {
		case h.state != StateDown && h.consecFail >= hc.FailAfter:
			evs = append(evs, c.setState(i, StateDown, fmt.Sprintf("%d failed probe(s): %v", h.consecFail, r.err), now))
			closeConns = true
		case h.state == StateUp:
			evs = append(evs, c.setState(i, StateSuspect, "probe failed: "+r.err.Error(), now))
		}
	}
	if w := c.writerIdx; w >= 0 && c.health[w].havePos && h.havePos && h.pos.contains(c.health[w].pos) {
		h.caughtUpAt = now
	}
	evs = append(evs, c.rebuild(now)...)
	fb := c.failbackTo
	c.mu.Unlock()
	if closeConns {
		c.nodes[i].closeConns()
	}
	c.emit(evs)
	if fb >= 0 && now.UnixNano() >= c.failbackNotBefore.Load() && c.failingBack.CompareAndSwap(false, true) {
		if c.failback(fb) {
			c.failbackDelay = 0
		} else {
			// Writes would not drain (a long transaction) or the new
			// writer did not catch up: try again later, not at the next
			// probe, so that every attempt's hold on new writes stays rare.
			c.failbackDelay = min(max(2*c.failbackDelay, time.Second), 30*time.Second)
			c.failbackNotBefore.Store(time.Now().Add(c.failbackDelay).UnixNano())
		}
		c.failingBack.Store(false)
	}
}

// failback moves the writer role back to node to, an earlier node that has
// recovered and caught up with the healthy writer, without letting any
// write of this router reach it before it holds every write the old writer
// acknowledged: new writes are held at the fence, writes in flight finish
// (for at most one probe timeout: a longer transaction makes the attempt
// give up), the old writer's position is read, and the new writer must
// reach it (MASTER_GTID_WAIT / WAIT_FOR_EXECUTED_GTID_SET) within one
// second before the switch. New writes so wait at most about one probe
// timeout plus one second. It reports false when it gave up (writes did not
// drain, or the new writer did not catch up): the writer stays, and the
// caller tries again later. A change of health meanwhile is not a failure.
func (c *Cluster) failback(to int) bool {
	hc := c.settings.Health
	drain, cancelDrain := context.WithTimeout(c.ctx, hc.Timeout)
	held := c.fence.hold(drain) // writes in flight (or a long transaction)
	cancelDrain()
	if !held {
		return false
	}
	defer c.fence.unhold()
	ctx, cancel := context.WithTimeout(c.ctx, time.Second)
	defer cancel()

	c.mu.Lock()
	from, mysqlFlavor := c.writerIdx, c.health[to].mysql
	c.mu.Unlock()
	if from < 0 || from == to {
		return true
	}
	q := "SELECT @@global.gtid_current_pos"
	wait := "SELECT MASTER_GTID_WAIT(?, ?)"
	if mysqlFlavor {
		q = "SELECT @@global.gtid_executed"
		wait = "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)"
	}
	var pos string
	if err := c.nodes[from].db().QueryRowContext(ctx, q).Scan(&pos); err != nil {
		return false
	}
	var res int
	if err := c.nodes[to].db().QueryRowContext(ctx, wait, pos, 1).Scan(&res); err != nil || res != 0 {
		return false
	}
	now := time.Now()
	c.mu.Lock()
	if c.writerIdx != from || c.failbackTo != to {
		c.mu.Unlock()
		return true // health changed meanwhile
	}
	c.writerIdx = to
	ev := Event{Cluster: c.name, Node: c.nodes[to].addr, Kind: EventWriter, From: c.nodes[from].addr, To: c.nodes[to].addr,
		Cause: fmt.Sprintf("failback: %s recovered and caught up with %s at %s", c.nodes[to].addr, c.nodes[from].addr, pos), At: now}
	evs := append([]Event{ev}, c.rebuild(now)...)
	c.mu.Unlock()
	c.emit(evs)
	return true
}

// reportCall records the outcome of a call on node i, as the failover loop
// classified it: failures make the node Suspect and probe it at once.
func (c *Cluster) reportCall(i int, class ErrorClass, err error) {
	now := time.Now()
	var evs []Event
	c.mu.Lock()
	h := &c.health[i]
	switch class {
	case 0: // success
		if h.state == StateSuspect && (c.settings.Health.Disabled || h.consecFail == 0) {
			evs = append(evs, c.setState(i, StateUp, "call succeeded", now))
		}
	case ClassReadOnly:
		if !h.readOnly {
			h.readOnly = true
			evs = append(evs, c.event(i, EventReadOnly, "off", "on", "write refused: "+err.Error(), now))
		}
	case ClassNotSent, ClassOutcomeUnknown:
		if h.state == StateUp {
			evs = append(evs, c.setState(i, StateSuspect, "call failed: "+err.Error(), now))
		}
	}
	if len(evs) > 0 {
		evs = append(evs, c.rebuild(now)...)
	}
	c.mu.Unlock()
	c.emit(evs)
	if class != 0 {
		c.requestProbe(i)
	}
}

// setState changes node i's state. c.mu must be held.
func (c *Cluster) setState(i int, to NodeState, cause string, now time.Time) Event {
	h := &c.health[i]
	from := h.state
	h.state = to
	h.changedAt = now
	return c.event(i, EventState, from.String(), to.String(), cause, now)
}

func (c *Cluster) event(i int, kind EventKind, from, to, cause string, now time.Time) Event {
	return Event{Cluster: c.name, Node: c.nodes[i].addr, Kind: kind, From: from, To: to, Cause: cause, At: now}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// emit hands events to the router's dispatcher.
func (c *Cluster) emit(evs []Event) {
	if c.events != nil {
		for _, ev := range evs {
			c.events.send(ev)
		}
	}
}

// Stats returns a snapshot of the cluster's health. It does not start the
// probers.
func (c *Cluster) Stats() ClusterStats {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ClusterStats{Name: c.name, Nodes: make([]NodeStats, len(c.nodes))}
	if c.writerIdx >= 0 {
		s.Writer = c.nodes[c.writerIdx].addr
	}
	for i, n := range c.nodes {
		h := c.health[i]
		ns := NodeStats{
			Addr:                n.addr,
			State:               h.state,
			Role:                RoleReplica,
			ReadOnly:            h.readOnly,
			LastProbeLatency:    h.latency,
			ConsecutiveFailures: h.consecFail,
			GTIDPosition:        h.pos.String(),
			SinceChange:         now.Sub(h.changedAt),
			Lag:                 -1,
		}
		if i == c.writerIdx {
			ns.Role = RoleWriter
			ns.Lag = 0
		} else if !h.caughtUpAt.IsZero() {
			ns.Lag = now.Sub(h.caughtUpAt)
		}
		if h.lastErr != nil {
			ns.LastError = h.lastErr.Error()
		}
		s.Nodes[i] = ns
	}
	return s
}
