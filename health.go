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
	defer c.unlock()
	return c.state.confirming(i)
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
	c.applyProbe(i, probeResult{err: err, readOnly: ro, pos: pos, self: self, mysql: mysqlFlavor, latency: latency})
	if err == nil {
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
