package dbrouter

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// This file is where the writer is picked. clusterState is a cluster's
// state machine: it owns what the cluster knows of its nodes (health,
// read_only, replication positions), the current and last writer and the
// failback target, and decides the writer from them. Its inputs are probe
// results, call outcomes, the end of a fenced switch and, when a
// WriterSource decides, external decisions; its output is a new immutable
// picker (the routing snapshot every call reads lock-free), the events to
// emit and the actions to take (close a node's connections, start a fenced
// switch). It does no I/O, reads no clock and takes no lock: the Cluster
// serialises its inputs under Cluster.mu and carries out its actions (the
// prober in health.go, the call loop in failover.go, the fenced switch in
// fence.go). The rules are those of docs/design.md §4–§6.

// clusterState is the writer-decision state machine of one cluster.
type clusterState struct {
	cluster  string
	addrs    []string
	settings Settings

	health     []nodeHealth // parallel to addrs
	writer     int          // -1: none
	lastWriter int          // the last writer there was, -1 before any
	writerAt   time.Time    // when the writer was set (caughtUp)
	target     int          // node a fenced switch should move the writer to, -1: none

	// The first probe round: until every node has answered (or failed) one
	// probe the writer is not chosen, so that a fresh cluster does not
	// write to a node that turns out to be behind.
	probed int
	ready  bool

	// The first writer is provisional while it is the first choice and
	// some node had no position then (its first probe failed or was
	// refused): that node's first good probe can still show the first
	// writer behind, and the writer is then chosen again (recheckBy).
	provisional bool
	unverified  []bool // nodes whose position the first choice did not see
	recheckBy   int    // node whose first good probe showed the first writer behind, -1: none

	switching bool // a fenced switch was asked for and has not ended

	// Planned moves (Cluster.Switchover, Drain): drained nodes take no
	// calls and never become the writer until undrained; the writer a
	// switchover chose is pinned: no failback moves it while it is healthy.
	// A node is drained while the application (Cluster.Drain) or the
	// WriterSource (NodeDrainer) drained it: each undrains only its own
	// drain (see isDrained).
	drained   []drainOrigin
	pinned    int           // -1: none
	notBefore time.Time     // no failback attempt before then
	delay     time.Duration // after a failed failback attempt

	external bool   // a WriterSource decides the writer
	decided  int    // its decision, -1: none yet (or handed back: local rule)
	refuse   bool   // its decision is that no node is the writer (decided is -1)
	epoch    uint64 // of the last decision applied
	why      string // its cause
}

// drainOrigin says who drained a node: a set of the two origins.
type drainOrigin uint8

const (
	drainLocal  drainOrigin = 1 << iota // Cluster.Drain
	drainSource                         // a WriterSource, through NodeDrainer
)

// isDrained reports whether node i is drained, by either origin.
func (s *clusterState) isDrained(i int) bool { return s.drained[i] != 0 }

// nodeHealth is what the cluster knows of one node.
type nodeHealth struct {
	state       NodeState
	readOnly    bool
	pos         gtidSet
	havePos     bool
	prevPos     gtidSet // the position at the good probe before the last
	havePrevPos bool
	// posAt and prevPosAt are when pos and prevPos were learned (the
	// probe's result applied): see caughtUp.
	posAt, prevPosAt time.Time
	self             string // @@server_id (MariaDB) or @@server_uuid (MySQL), "" unknown
	flavorKnown      bool
	mysql            bool // MySQL rather than MariaDB GTIDs
	probed           bool // at least one probe result
	consecFail       int
	consecOK         int
	latency          time.Duration
	lastErr          error
	changedAt        time.Time
	caughtUpAt       time.Time // last probe at which it had the writer's position
	// The last pooled probe and the last new connection (stall check) that
	// got no answer at all within the probe timeout: from when to when they
	// waited (zero: the last one was answered). Two such waits that overlap
	// make the node Down at once (unanswered).
	probeHung, shakeHung span
	// failHung: every probe failure since the last good probe was a
	// timeout with no answer at all (not a refusal or an error), which
	// alone does not move the writer (keeps).
	failHung bool
}

// span is an interval of time; the zero span is none.
type span struct{ from, to time.Time }

// overlaps reports whether two spans, neither of them none, overlap.
func (a span) overlaps(b span) bool {
	return !a.from.IsZero() && !b.from.IsZero() && a.from.Before(b.to) && b.from.Before(a.to)
}

// probeResult is what one probe of a node found.
type probeResult struct {
	err      error
	readOnly bool
	pos      gtidSet
	self     string
	mysql    bool
	latency  time.Duration
	started  time.Time // when the probe was sent
	noAnswer bool      // it failed because the probe timeout ran out
}

// stateOutput is what a transition of clusterState asks the Cluster to do.
type stateOutput struct {
	picker     *picker // the new routing snapshot (never nil)
	events     []Event
	closeConns []int         // nodes whose connections must be closed
	ready      bool          // the first probe round just ended
	fenced     *fencedSwitch // a switch to carry out behind the fence
	probeNow   []int         // nodes to probe at once
}

// fencedSwitch asks the Cluster to move the writer from one healthy node to
// another behind the fence: hold new writes, let those in flight end, wait
// until the new writer holds the old writer's position, then call
// clusterState.switched.
type fencedSwitch struct {
	from, to int
	// external: a WriterSource decided it. The switch then happens even
	// when the new writer does not reach the old one's position in time:
	// the source has checked positions fleet-wide.
	external bool
	// planned: Cluster.Switchover asked for it; the caller carries it out
	// and learns the outcome.
	planned bool
}

// picker is an immutable snapshot of the routing decision, built by
// clusterState after every change and read lock-free by every call.
type picker struct {
	writer   int          // index of the writer, -1 for none
	writes   []int        // attempt order for writes
	reads    []int        // attempt order for reads, per the read policy
	rotate   bool         // reads rotate (round-robin)
	excluded []*NodeError // nodes no call is sent to, and why
	refused  []*NodeError // under a WriterSource's refusal: why no write is sent to each node
	ready    bool         // the first probe round has ended
	nodes    []nodeView   // each node's state and read_only flag
	// changed is closed when a newer picker replaces this one, for calls
	// that wait for the cluster's health to change (Settings.FailoverWait).
	changed chan struct{}
}

// sameRoute reports whether a call would be routed by q as by p: the same
// writer, the same orders and the same view of every node.
func (p *picker) sameRoute(q *picker) bool {
	return p.writer == q.writer && p.ready == q.ready && slices.Equal(p.writes, q.writes) &&
		slices.Equal(p.reads, q.reads) && slices.Equal(p.nodes, q.nodes)
}

// nodeView is what a call needs to know of a node after an attempt.
type nodeView struct {
	state    NodeState
	readOnly bool
}

// newClusterState returns the state machine of a cluster whose nodes have
// the given addresses, and its first picker. Every node starts Up. With
// probes, no writer is chosen before the first probe round has ended; the
// first picker then offers the first node, for calls that cannot wait.
func newClusterState(cluster string, addrs []string, s Settings, external bool, now time.Time) (*clusterState, *picker) {
	st := &clusterState{
		cluster: cluster, addrs: addrs, settings: s,
		health: make([]nodeHealth, len(addrs)),
		writer: -1, lastWriter: -1, target: -1, decided: -1, recheckBy: -1, pinned: -1,
		drained:  make([]drainOrigin, len(addrs)),
		external: external,
		ready:    s.Health.Disabled,
	}
	for i := range st.health {
		st.health[i].changedAt = now
	}
	if st.ready {
		st.writer, _ = st.chooseWriter()
		if st.writer >= 0 {
			st.lastWriter = st.writer
		}
	}
	return st, st.buildPicker(now)
}

// probeResult applies the result of one probe of node i.
func (s *clusterState) probeResult(i int, r probeResult, now time.Time) stateOutput {
	var out stateOutput
	h := &s.health[i]
	h.latency = r.latency
	if !h.probed {
		h.probed = true
		s.probed++
	}
	hc := s.settings.Health
	switch {
	case refusedAtConnect(r.err):
		// The server is up but refused the probe a connection (too many
		// connections, access denied): it is not dead, and what it would
		// have said of read_only and its position is unknown. Its state
		// stays as it is; the error shows in Stats.
		h.lastErr = r.err
	case r.err == nil:
		h.consecOK++
		h.consecFail = 0
		h.lastErr = nil
		h.probeHung, h.shakeHung = span{}, span{}
		h.flavorKnown, h.mysql, h.self = true, r.mysql, r.self
		if h.havePos {
			h.prevPos, h.havePrevPos, h.prevPosAt = h.pos, true, h.posAt
		}
		h.pos, h.havePos, h.posAt = r.pos, true, now
		if h.readOnly != r.readOnly {
			out.events = append(out.events, s.event(i, EventReadOnly, onOff(h.readOnly), onOff(r.readOnly), "probe", now))
			h.readOnly = r.readOnly
		}
		switch {
		case h.state == StateSuspect,
			h.state == StateDown && h.consecOK >= hc.RecoverAfter:
			out.events = append(out.events, s.setState(i, StateUp, fmt.Sprintf("%d good probe(s)", h.consecOK), now))
		}
	default:
		h.consecFail++
		h.consecOK = 0
		h.lastErr = r.err
		h.probeHung = span{}
		if r.noAnswer && s.onTime(r.started, now) {
			h.probeHung = span{r.started, now}
		}
		h.failHung = r.noAnswer && (h.consecFail == 1 || h.failHung)
		switch {
		case h.state != StateDown && s.unanswered(i):
			out.events = append(out.events, s.setState(i, StateDown, "no answer at all: "+s.unansweredCause(i), now))
			out.closeConns = append(out.closeConns, i)
		case h.state != StateDown && h.consecFail >= hc.FailAfter:
			out.events = append(out.events, s.setState(i, StateDown, fmt.Sprintf("%d failed probe(s): %v", h.consecFail, r.err), now))
			out.closeConns = append(out.closeConns, i)
		case h.state == StateUp:
			out.events = append(out.events, s.setState(i, StateSuspect, "probe failed: "+r.err.Error(), now))
		}
	}
	if w := s.writer; w >= 0 && s.health[w].havePos && h.havePos && h.pos.contains(s.health[w].pos) {
		h.caughtUpAt = now
	}
	if s.provisional && s.unverified[i] && r.err == nil && h.state == StateUp {
		s.unverified[i] = false
		if w := s.writer; w >= 0 && w != i && s.health[w].havePos && s.health[w].pos.lacksForeign(h.pos, s.health[w].self) {
			s.recheckBy = i
		}
	}
	if !s.ready && s.probed == len(s.health) {
		s.ready, out.ready = true, true
		s.unverified = make([]bool, len(s.health))
		for j, hj := range s.health {
			s.unverified[j] = hj.state != StateUp || !hj.havePos
		}
	}
	return s.decide(out, now)
}

// callResult applies the outcome of a call's attempt on node i, as the
// failover loop classified it (class 0: it succeeded). write reports
// whether the call was a write.
func (s *clusterState) callResult(i int, write bool, class ErrorClass, err error, now time.Time) stateOutput {
	var out stateOutput
	h := &s.health[i]
	switch class {
	case 0: // success
		if h.state == StateSuspect && (s.settings.Health.Disabled || h.consecFail == 0) {
			out.events = append(out.events, s.setState(i, StateUp, "call succeeded", now))
		}
		if write && h.readOnly && s.settings.Health.Disabled {
			// Without probes nothing else would ever clear the flag.
			h.readOnly = false
			out.events = append(out.events, s.event(i, EventReadOnly, "on", "off", "write succeeded", now))
		}
	case ClassReadOnly:
		if !h.readOnly {
			h.readOnly = true
			out.events = append(out.events, s.event(i, EventReadOnly, "off", "on", "write refused: "+err.Error(), now))
		}
		out.probeNow = append(out.probeNow, i)
	case ClassNotSent, ClassOutcomeUnknown:
		// A failed call is a reason to probe at once, not proof: the node
		// becomes Suspect (tried after the Up ones, but still the writer
		// if it was, until a probe fails too) and needs RecoverAfter good
		// probes again before a failback may move the writer to it.
		h.consecOK = 0
		if h.state == StateUp {
			out.events = append(out.events, s.setState(i, StateSuspect, "call failed: "+err.Error(), now))
		}
		out.probeNow = append(out.probeNow, i)
	}
	return s.decide(out, now)
}

// handshakeResult applies the outcome of a stall check's new connection to
// node i (Cluster.checkStalled), started at started; noAnswer reports that
// it failed because the probe timeout ran out. A connection that got no
// answer while the last pooled probe, waiting at the same time, got none
// either makes the node Down at once (unanswered); alone, it makes an Up
// node Suspect, as a failed call does, and asks for a probe. Any other
// outcome changes nothing: probes judge.
func (s *clusterState) handshakeResult(i int, started time.Time, err error, noAnswer bool, now time.Time) stateOutput {
	var out stateOutput
	h := &s.health[i]
	switch {
	case err == nil || !noAnswer || !s.onTime(started, now):
		// Answered, refused, or a wait that ended long past its deadline:
		// the client was not running (onTime), which says nothing of
		// the server.
		h.shakeHung = span{}
		return s.decide(out, now)
	}
	h.shakeHung = span{started, now}
	switch {
	case h.state != StateDown && s.unanswered(i):
		h.consecOK = 0
		h.lastErr = err
		out.events = append(out.events, s.setState(i, StateDown, "no answer at all: "+s.unansweredCause(i), now))
		out.closeConns = append(out.closeConns, i)
	case h.state == StateUp:
		h.consecOK = 0
		out.events = append(out.events, s.setState(i, StateSuspect, "new connection got no answer: "+err.Error(), now))
		out.probeNow = append(out.probeNow, i)
	}
	return s.decide(out, now)
}

// onTime reports whether a wait from from to to that ran out of the probe
// timeout ended about when its deadline fell: within half the timeout
// after it. One that ended much later was not timed by the server's
// silence but by the client's own stall (the process starved of CPU,
// throttled by its cgroup, a paused VM or SIGSTOP): the answer may have
// been waiting in the socket when the deadline was found passed. Such a
// wait is no evidence that the node answers nothing (unanswered).
func (s *clusterState) onTime(from, to time.Time) bool {
	t := s.settings.Health.Timeout
	return to.Sub(from) <= t+t/2
}

// unanswered reports whether node i answers nothing at all: its last
// pooled probe and the last new connection a stall check opened both got no
// answer within the probe timeout, and they were waiting at the same time.
// A server slow to run one statement (a long query, a lock wait, a
// saturated CPU) still answers a new connection's handshake or the probe
// on its idle connection; a frozen server (SIGSTOP) or a cut path answers
// neither.
func (s *clusterState) unanswered(i int) bool {
	h := &s.health[i]
	return h.probeHung.overlaps(h.shakeHung)
}

func (s *clusterState) unansweredCause(i int) string {
	h := &s.health[i]
	return fmt.Sprintf("the probe (%v) and a new connection (%v), waiting at the same time, both got nothing within %v",
		h.probeHung.from.Format("15:04:05.000"), h.shakeHung.from.Format("15:04:05.000"), s.settings.Health.Timeout)
}

// switched ends a fenced switch from one node to another. held reports
// whether the fence could be held (writes in flight drained in time);
// caughtUp whether the new writer then reached the old writer's position,
// pos, in time. A failback switches only when both hold; a WriterSource's
// decision needs only the fence (the source has checked positions
// fleet-wide). A failed attempt is tried again later, after a delay that
// doubles up to 30 s, so that each attempt's hold on new writes stays rare.
func (s *clusterState) switched(sw fencedSwitch, held, caughtUp bool, pos string, now time.Time) stateOutput {
	var out stateOutput
	s.switching = false
	// The source's licence to switch without the catch-up holds only while
	// its decision names the node: not once it has handed the decision
	// back or named another node meanwhile.
	external := s.decided >= 0 && s.decided == sw.to
	valid := s.writer == sw.from && (external || s.decided < 0 && s.failbackWanted(sw.to))
	if sw.planned {
		// The fence has held every write of this router since the old
		// writer's writes drained (the Cluster checked that the old
		// writer was still the writer once the fence held), and the
		// target holds the old writer's final position: the move is safe
		// even when the local rule moved the writer off the old writer
		// meanwhile because it failed — a
		// probe that saw it read-only (the ReadOnly hook's doing) moves
		// the writer at once, to the first writable node in order, which
		// no write has reached since. Not when something else moved it (a
		// WriterSource's decision, a provisional first writer found
		// behind).
		moved := s.writer != sw.from && !s.keeps(sw.from)
		if (s.writer == sw.from || moved) && s.decided < 0 && s.eligible(sw.to) && held && caughtUp {
			if s.writer != sw.to {
				out.events = append(out.events, s.setWriter(sw.to, fmt.Sprintf("switchover: %s caught up with %s at %s", s.addrs[sw.to], s.addrs[sw.from], pos), now))
			}
			s.pinned, s.target = sw.to, -1
		}
		return s.decide(out, now)
	}
	switch {
	case !valid:
		// Health or the decision changed meanwhile: decide afresh.
	case held && (caughtUp || external):
		s.delay = 0
		cause := fmt.Sprintf("failback: %s recovered and caught up with %s at %s", s.addrs[sw.to], s.addrs[sw.from], pos)
		if external {
			cause = fmt.Sprintf("decided by the writer source (epoch %d): %s", s.epoch, s.why)
			if !caughtUp {
				cause += fmt.Sprintf("; %s had not reached %s's position %q within 1s", s.addrs[sw.to], s.addrs[sw.from], pos)
			}
		}
		out.events = append(out.events, s.setWriter(sw.to, cause, now))
		s.target = -1
	default:
		// Writes would not drain (a long transaction) or the new writer
		// did not catch up: try again later, not at the next probe.
		s.delay = min(max(2*s.delay, time.Second), 30*time.Second)
		s.notBefore = now.Add(s.delay)
	}
	return s.decide(out, now)
}

// failbackWanted reports whether the local rule still wants the writer
// moved back to node i at the end of a fenced switch to it: i is the
// target, or no node is only because the writer's position moved on since
// i's last probe (the "one probe earlier" qualification of caughtUp churns
// under a steady write load), while i is still Up, writable and recovered.
// The fence has just checked the exact position, which is what counts.
func (s *clusterState) failbackWanted(i int) bool {
	if s.target == i {
		return true
	}
	return s.target < 0 && s.settings.Failback != FailbackNever && !s.settings.Health.Disabled &&
		i < s.writer && s.eligible(i) && s.health[i].consecOK >= s.settings.Health.RecoverAfter
}

// planSwitch asks for a planned move of the writer to node to
// (Cluster.Switchover). It returns the fenced switch for the caller to
// carry out, or nil when there is no writer to move from (the writer is
// then to, at once), or an error saying why the move cannot start.
func (s *clusterState) planSwitch(to int, now time.Time) (stateOutput, *fencedSwitch, error) {
	var out stateOutput
	switch {
	case !s.ready:
		return out, nil, errors.New("the first probe round has not ended")
	case s.decided >= 0:
		return out, nil, errors.New("a WriterSource decides this cluster's writer: switch through it")
	case s.switching:
		return out, nil, errors.New("another switch of the writer is under way; try again")
	case to == s.writer:
		return out, nil, fmt.Errorf("%s is already the writer", s.addrs[to])
	case !s.eligible(to):
		h := s.health[to]
		return out, nil, fmt.Errorf("%s cannot take the writer role: node is %s, read_only %s, drained %v", s.addrs[to], h.state, onOff(h.readOnly), s.isDrained(to))
	}
	if s.writer < 0 {
		out.events = append(out.events, s.setWriter(to, "switchover: there was no writer", now))
		s.pinned = to
		out.picker = s.buildPicker(now)
		return out, nil, nil
	}
	s.switching = true
	return out, &fencedSwitch{from: s.writer, to: to, planned: true}, nil
}

// nextWriter returns the node a switchover with no target moves the writer
// to: the first eligible node after the writer in configured order,
// wrapping around (-1: none).
func (s *clusterState) nextWriter() int {
	n := len(s.health)
	for k := 1; k < n; k++ {
		if i := (s.writer + k + n) % n; s.eligible(i) {
			return i
		}
	}
	return -1
}

// setDrained drains node i (no calls, never the writer) or undrains it,
// for one origin (drainLocal or drainSource): the node stays drained while
// the other origin has it drained. The caller moves the writer off it
// first (Cluster.Drain, through the fence): the writer itself is not
// drained here, as that would move the role at once, without the fence,
// while writes may be in flight on it.
func (s *clusterState) setDrained(i int, on bool, by drainOrigin, now time.Time) stateOutput {
	was, has := s.isDrained(i), s.drained[i]&by != 0
	if has == on || on && i == s.writer {
		return stateOutput{picker: s.buildPicker(now)}
	}
	s.drained[i] ^= by
	if s.isDrained(i) == was {
		return stateOutput{picker: s.buildPicker(now)} // the other origin holds it drained
	}
	cause := "Cluster.Undrain"
	switch {
	case on && by == drainSource:
		cause = "drained by the writer source"
	case on:
		cause = "Cluster.Drain"
	case by == drainSource:
		cause = "undrained by the writer source"
	}
	ev := s.event(i, EventDrained, onOff(!on), onOff(on), cause, now)
	return s.decide(stateOutput{events: []Event{ev}}, now)
}

// decideExternal applies a WriterSource's decision: node i is the writer
// (-1: the source hands the decision back to the local rule or, with
// refuse, says that no node is the writer). The caller has checked the
// epoch and the address.
func (s *clusterState) decideExternal(i int, refuse bool, epoch uint64, why string, now time.Time) stateOutput {
	refuse = refuse && i < 0
	if i != s.decided || refuse != s.refuse {
		// A new decision is a new reason to switch: not delayed by the
		// backoff of earlier attempts (failed failbacks, another node).
		s.delay, s.notBefore = 0, time.Time{}
	}
	s.decided, s.refuse, s.epoch, s.why = i, refuse, epoch, why
	return s.decide(stateOutput{}, now)
}

// decide chooses the writer from what is known, records the change, asks
// for a fenced switch when one is due, and builds the picker.
func (s *clusterState) decide(out stateOutput, now time.Time) stateOutput {
	if s.ready {
		if b := s.recheckBy; b >= 0 {
			s.recheckBy = -1
			if w := s.firstChoice(); w >= 0 && w != s.writer && s.decided < 0 && !s.refuse {
				cause := fmt.Sprintf("first writer %s is behind %s, whose first good probe came after the first round", s.addrs[s.writer], s.addrs[b])
				out.events = append(out.events, s.setWriter(w, cause, now))
			}
		}
		w, target := s.chooseWriter()
		if w != s.writer {
			// (Without probes, ready from the start: no positions, nothing
			// provisional.)
			first := s.lastWriter < 0 && w >= 0 && !out.ready && !s.settings.Health.Disabled
			out.events = append(out.events, s.setWriter(w, s.writerCause(w), now))
			if first && s.decided < 0 {
				// The first writer, chosen after the first round (a
				// WriterSource refused writes until then, and handed
				// back): as provisional as at the round's end, for the
				// nodes that have no position now.
				for j, hj := range s.health {
					s.unverified[j] = hj.state != StateUp || !hj.havePos
				}
			}
			s.provisional = (out.ready || first) && s.decided < 0 && slices.Contains(s.unverified, true)
		}
		s.target = target
		if target >= 0 && !s.switching && !now.Before(s.notBefore) {
			s.switching = true
			out.fenced = &fencedSwitch{from: s.writer, to: target, external: s.decided >= 0}
		}
	}
	out.picker = s.buildPicker(now)
	return out
}

// chooseWriter applies the writer rule. It returns the writer to use now
// and the node, if any, to move the writer to behind the fence.
//
// With a WriterSource's decision, the decided node is the writer: through
// a fenced switch while the current writer is one the local rule would
// keep, else (no writer, or one that is Down, read-only or Suspect after a
// failed probe) at once. A decision that refuses writes leaves no writer.
//
// Otherwise (the local rule, docs/design.md §5) the writer stays while it
// is Up and writable, and while it is Suspect only because a call failed
// or probes timed out: a failed call (a slow read past read_timeout, a KILL
// CONNECTION) or a probe that got no answer within the probe timeout (a
// server slow for a moment) is a reason to probe at once, not to move the
// writer; a probe that failed otherwise (refused, an error) is, and so is
// Down (a server that answers nothing at all: clusterState.unanswered).
// When it fails (such a probe, Down, read-only; without probes, where calls
// alone judge, a failed call), the first
// node in configured order that is Up, writable and has everything the last
// writer was last seen to have takes over (or, if none has, the first Up and
// writable node). A fresh cluster's first writer is the first Up and
// writable node that is not behind another one (see gtidSet.lacksForeign).
// Moving back to an earlier node while the writer is healthy (failback) is
// never done here: it is the target of a fenced switch, once that node has
// had RecoverAfter good probes and holds the position the writer had one
// probe earlier.
func (s *clusterState) chooseWriter() (writer, target int) {
	if s.refuse {
		return -1, -1
	}
	cur := s.writer
	keep := cur >= 0 && s.keeps(cur)
	if d := s.decided; d >= 0 {
		switch {
		case cur == d:
			return cur, -1
		case keep:
			// Healthy by the local rule (Up, or Suspect only because a
			// call failed): it may have writes in flight, so the move
			// goes through the fence.
			return cur, d
		}
		return d, -1
	}
	if keep {
		if s.isDrained(cur) {
			// Drained while the writer (only a WriterSource's decision
			// does that), and the decision handed back since: healthy,
			// with writes in flight, so the role leaves it through the
			// fence, to the first eligible node that has all it had.
			t := s.firstEligible(func(i int) bool { return s.hasAllOf(i, cur) })
			return cur, t
		}
		if s.settings.Failback == FailbackNever || cur == s.pinned {
			return cur, -1
		}
		for i := 0; i < cur; i++ {
			if s.eligible(i) && s.caughtUp(i, cur) {
				return cur, i
			}
		}
		return cur, -1
	}
	if s.lastWriter < 0 {
		if p := s.pinned; p >= 0 && s.eligible(p) && !s.behindAnother(p) {
			return p, -1 // a switchover's choice, kept across a Reload
		}
		return s.firstChoice(), -1
	}
	return s.firstEligible(func(i int) bool { return s.hasAllOf(i, s.lastWriter) }), -1
}

// keeps reports whether node i, as the writer, is healthy by the local
// rule: Up and writable, or Suspect only because a call failed, a stall
// check's new connection got no answer, or probes timed out with no answer
// at all (a slow server, until it is found to answer nothing at all:
// unanswered, or FailAfter probes). A drained writer is healthy too (a
// WriterSource's decision made it the writer): it may have writes in
// flight, so the role leaves it through the fence (see chooseWriter), never
// at once.
func (s *clusterState) keeps(i int) bool {
	h := &s.health[i]
	return !h.readOnly && (h.state == StateUp ||
		h.state == StateSuspect && (h.consecFail == 0 || h.failHung) && !s.settings.Health.Disabled)
}

// firstChoice returns a fresh cluster's first writer: the first Up and
// writable node that is not behind another Up node, or if every one is, the
// first Up and writable node (-1: none).
func (s *clusterState) firstChoice() int {
	return s.firstEligible(func(i int) bool { return !s.behindAnother(i) })
}

// firstEligible returns the first Up and writable node for which prefer
// holds or, if it holds for none, the first Up and writable node (-1:
// none).
func (s *clusterState) firstEligible(prefer func(i int) bool) int {
	first := -1
	for i := range s.health {
		if !s.eligible(i) {
			continue
		}
		if first < 0 {
			first = i
		}
		if prefer(i) {
			return i
		}
	}
	return first
}

// eligible reports whether node i may become the writer: Up and writable.
func (s *clusterState) eligible(i int) bool {
	return s.health[i].state == StateUp && !s.health[i].readOnly && !s.isDrained(i)
}

// hasAllOf reports whether node i's last seen position contains node w's;
// true when w is -1 or i, or when positions are not tracked.
func (s *clusterState) hasAllOf(i, w int) bool {
	if w < 0 || w == i || s.settings.Health.Disabled {
		return true
	}
	hi, hw := &s.health[i], &s.health[w]
	return hi.havePos && hw.havePos && hi.pos.contains(hw.pos)
}

// behindAnother reports whether another Up node holds transactions that
// node i lacks and that did not come from node i: a restarted old writer
// still catching up, for one.
func (s *clusterState) behindAnother(i int) bool {
	hi := &s.health[i]
	if s.settings.Health.Disabled || !hi.havePos {
		return false
	}
	for j := range s.health {
		hj := &s.health[j]
		if j != i && hj.state == StateUp && hj.havePos && hj.mysql == hi.mysql && hi.pos.lacksForeign(hj.pos, hi.self) {
			return true
		}
	}
	return false
}

// caughtUp reports whether node i, earlier in order than the healthy writer
// w, may take the writer role back: it has had RecoverAfter good probes in
// a row and holds the position w had at its probe before the last one (or,
// before w has two, its last), learned while w was the writer. Under a steady write load the writer's
// latest position moves on between two probes, so asking for it would
// never start a failback; the fenced switch then waits for the exact
// position.
func (s *clusterState) caughtUp(i, w int) bool {
	if s.settings.Health.Disabled {
		return false // no positions to compare: the writer stays until it fails
	}
	hi, hw := &s.health[i], &s.health[w]
	if hi.consecOK < s.settings.Health.RecoverAfter || !hi.havePos || !hw.havePos {
		return false
	}
	want, at := hw.pos, hw.posAt
	if hw.havePrevPos {
		want, at = hw.prevPos, hw.prevPosAt
	}
	if at.Before(s.writerAt) {
		// w's position one probe back predates its term: holding it
		// proves nothing of i receiving w's writes. Right after a
		// failover from A to a later C, an earlier B that cannot (a ring
		// A→B→C→A with A gone) would have the fence wait its whole second
		// for writes C took meanwhile (bench/failover -fault kill, 1 s
		// stalls in 2 runs of 17). Wait for a probe of w in its term.
		return false
	}
	return hi.pos.contains(want)
}

// setWriter makes node w the writer (-1: none) and returns the event.
func (s *clusterState) setWriter(w int, cause string, now time.Time) Event {
	from, to := "", ""
	if s.writer >= 0 {
		from = s.addrs[s.writer]
	}
	if w >= 0 {
		to = s.addrs[w]
		s.lastWriter = w
	}
	s.writer = w
	s.writerAt = now
	s.provisional = false
	if w != s.pinned {
		s.pinned = -1
	}
	return Event{Cluster: s.cluster, Node: to, Kind: EventWriter, From: from, To: to, Cause: cause, At: now}
}

// writerCause says why w replaces the current writer.
func (s *clusterState) writerCause(w int) string {
	switch {
	case w < 0 && s.refuse:
		return fmt.Sprintf("the writer source refuses writes (epoch %d): %s", s.epoch, s.why)
	case w < 0:
		return "no node is up and writable"
	case s.decided == w:
		return fmt.Sprintf("decided by the writer source (epoch %d): %s", s.epoch, s.why)
	case s.writer < 0 && s.lastWriter < 0:
		for i := 0; i < w; i++ {
			if s.eligible(i) {
				return fmt.Sprintf("first probe round: %s is behind another node", s.addrs[i])
			}
		}
		return "first up and writable node in order"
	case s.writer < 0:
		return "first up and writable node in order"
	}
	h := s.health[s.writer]
	return fmt.Sprintf("%s is %s, read_only %s", s.addrs[s.writer], h.state, onOff(h.readOnly))
}

// buildPicker builds the routing snapshot. Before the first probe round
// has ended, it offers the decided node or else the first node as writer
// (calls wait for the round, within a bound, before they use it), and none
// while a WriterSource refuses writes.
func (s *clusterState) buildPicker(now time.Time) *picker {
	w := s.writer
	if !s.ready {
		w = max(s.decided, 0)
		if s.refuse {
			w = -1
		}
	}
	n := len(s.health)
	p := &picker{writer: w, ready: s.ready, rotate: s.settings.ReadPolicy == ReadRoundRobin,
		nodes: make([]nodeView, n), changed: make(chan struct{})}
	for i, h := range s.health {
		p.nodes[i] = nodeView{h.state, h.readOnly}
	}
	// The failover, write and read orders each hold a node at most once:
	// one array holds all three.
	orders := make([]int, 3*n)
	p.writes, p.reads = orders[n:n:2*n], orders[2*n:2*n:3*n]
	// Per-call failover: the other writable nodes, Up ones first; without
	// probes a read_only flag is only what a refused write said once: such
	// nodes are tried last, and a write that succeeds on one clears it.
	failover := orders[0:0:n]
	for _, st := range []NodeState{StateUp, StateSuspect} {
		for i, h := range s.health {
			if h.state == st && !h.readOnly && i != w && !s.isDrained(i) {
				failover = append(failover, i)
			}
		}
	}
	if s.settings.Health.Disabled {
		for i, h := range s.health {
			if h.readOnly && i != w && !s.isDrained(i) {
				failover = append(failover, i)
			}
		}
	}
	if w >= 0 {
		p.writes = append(p.writes, w)
	}
	if s.decided < 0 && !s.refuse {
		// Under a WriterSource's decision a router never moves a write
		// on its own.
		p.writes = append(p.writes, failover...)
	}
	if s.refuse {
		err := fmt.Errorf("not tried: the writer source refuses writes (epoch %d): %s", s.epoch, s.why)
		for _, a := range s.addrs {
			p.refused = append(p.refused, &NodeError{Node: a, Class: ClassNotSent, Err: err})
		}
	}
	switch s.settings.ReadPolicy {
	case ReadAnyUp, ReadRoundRobin:
		for i, h := range s.health {
			fresh := s.settings.MaxLag == 0 || i == w ||
				(!h.caughtUpAt.IsZero() && now.Sub(h.caughtUpAt) <= s.settings.MaxLag)
			if h.state == StateUp && fresh && !s.isDrained(i) {
				p.reads = append(p.reads, i)
			}
		}
		if len(p.reads) == 0 && w >= 0 {
			p.reads = append(p.reads, w)
		}
	default: // ReadWriter: the writer, its failover order, then read-only nodes
		// Reads run in read-only sessions and may be retried on any node,
		// a WriterSource's decision or not.
		if w >= 0 {
			p.reads = append(p.reads, w)
		}
		p.reads = append(p.reads, failover...)
		if !s.settings.Health.Disabled {
			for _, st := range []NodeState{StateUp, StateSuspect} {
				for i, h := range s.health {
					if h.state == st && h.readOnly && i != w && !s.isDrained(i) {
						p.reads = append(p.reads, i)
					}
				}
			}
		}
	}
	for i, h := range s.health {
		if i == w {
			continue // tried first by every write, whatever its state
		}
		if h.state == StateDown || h.readOnly && !s.settings.Health.Disabled || s.isDrained(i) {
			err := fmt.Errorf("not tried: node is %s, read_only %s", h.state, onOff(h.readOnly))
			if s.isDrained(i) {
				err = errors.New("not tried: node is drained (Cluster.Drain)")
			}
			if h.lastErr != nil {
				err = fmt.Errorf("%w; last probe: %w", err, h.lastErr)
			}
			p.excluded = append(p.excluded, &NodeError{Node: s.addrs[i], Class: ClassNotSent, Err: err})
		}
	}
	return p
}

// confirming reports whether node i is Suspect after failed probes, so that
// its prober should probe again without waiting for the next tick. Not
// after a probe refused at connect: that changes nothing, so probing again
// at once would loop, hammering a server that says it has too many
// connections.
func (s *clusterState) confirming(i int) bool {
	h := &s.health[i]
	return h.state == StateSuspect && h.consecFail > 0 && !refusedAtConnect(h.lastErr)
}

// setState changes node i's state.
func (s *clusterState) setState(i int, to NodeState, cause string, now time.Time) Event {
	h := &s.health[i]
	from := h.state
	h.state = to
	h.changedAt = now
	return s.event(i, EventState, from.String(), to.String(), cause, now)
}

func (s *clusterState) event(i int, kind EventKind, from, to, cause string, now time.Time) Event {
	return Event{Cluster: s.cluster, Node: s.addrs[i], Kind: kind, From: from, To: to, Cause: cause, At: now}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// stats returns a snapshot of the cluster's health.
func (s *clusterState) stats(now time.Time) ClusterStats {
	cs := ClusterStats{Name: s.cluster, Nodes: make([]NodeStats, len(s.health))}
	if s.writer >= 0 {
		cs.Writer = s.addrs[s.writer]
	}
	for i, h := range s.health {
		ns := NodeStats{
			Addr:                s.addrs[i],
			State:               h.state,
			Role:                RoleReplica,
			ReadOnly:            h.readOnly,
			LastProbeLatency:    h.latency,
			ConsecutiveFailures: h.consecFail,
			GTIDPosition:        h.pos.String(),
			SinceChange:         now.Sub(h.changedAt),
			Lag:                 -1,
			Drained:             s.isDrained(i),
		}
		if i == s.writer {
			ns.Role = RoleWriter
			ns.Lag = 0
		} else if !h.caughtUpAt.IsZero() {
			ns.Lag = now.Sub(h.caughtUpAt)
		}
		if h.lastErr != nil {
			ns.LastError = h.lastErr.Error()
		}
		cs.Nodes[i] = ns
	}
	return cs
}
