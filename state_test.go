package dbrouter

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Table tests of the writer-decision state machine (state.go): no I/O, no
// goroutines, time passed in. Each test feeds probe results, call outcomes
// and switch outcomes and checks the writer, the picker and the actions.

var errProbe = errors.New("probe: connection refused")

// machine wraps a clusterState for tests: nodes a, b, c, ... with server
// ids 1, 2, 3, ...
type machine struct {
	t   *testing.T
	s   *clusterState
	now time.Time
	out stateOutput   // of the last input
	sw  *fencedSwitch // asked for and not finished yet
	evs []Event       // every event so far
}

func newMachine(t *testing.T, n int, set Settings) *machine {
	t.Helper()
	if set.Health.FailAfter == 0 {
		set.Health.FailAfter = DefaultFailAfter
	}
	if set.Health.RecoverAfter == 0 {
		set.Health.RecoverAfter = DefaultRecoverAfter
	}
	if set.Failback == "" {
		set.Failback = FailbackAuto
	}
	if set.ReadPolicy == "" {
		set.ReadPolicy = ReadWriter
	}
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = string(rune('a'+i)) + ":3306"
	}
	m := &machine{t: t, now: time.Unix(1_700_000_000, 0)}
	m.s, m.out.picker = newClusterState("c", addrs, set, false, m.now)
	return m
}

func (m *machine) record(out stateOutput) stateOutput {
	m.t.Helper()
	if out.picker == nil {
		m.t.Fatal("a transition returned no picker")
	}
	m.out = out
	if out.fenced != nil {
		if m.sw != nil {
			m.t.Fatalf("a second fenced switch %+v asked for while %+v runs", *out.fenced, *m.sw)
		}
		m.sw = out.fenced
	}
	m.evs = append(m.evs, out.events...)
	return out
}

// ok feeds a good probe of node i at position pos (MariaDB).
func (m *machine) ok(i int, pos string) stateOutput {
	m.t.Helper()
	return m.okRO(i, pos, false)
}

func (m *machine) okRO(i int, pos string, ro bool) stateOutput {
	m.t.Helper()
	g, err := parseGTIDSet(pos, false)
	if err != nil {
		m.t.Fatal(err)
	}
	m.now = m.now.Add(time.Millisecond)
	return m.record(m.s.probeResult(i, probeResult{readOnly: ro, pos: g, self: string(rune('1' + i))}, m.now))
}

// fail feeds a failed probe of node i.
func (m *machine) fail(i int) stateOutput {
	m.t.Helper()
	m.now = m.now.Add(time.Millisecond)
	return m.record(m.s.probeResult(i, probeResult{err: errProbe}, m.now))
}

// call feeds a write's outcome on node i.
func (m *machine) call(i int, class ErrorClass) stateOutput {
	m.t.Helper()
	m.now = m.now.Add(time.Millisecond)
	var err error
	if class != 0 {
		err = errors.New("call failed: " + class.String())
	}
	return m.record(m.s.callResult(i, true, class, err, m.now))
}

// round feeds one good probe of every node, at the given positions.
func (m *machine) round(pos ...string) {
	m.t.Helper()
	for i, p := range pos {
		m.ok(i, p)
	}
}

// down takes node i Down with FailAfter failed probes.
func (m *machine) down(i int) {
	m.t.Helper()
	for range m.s.settings.Health.FailAfter {
		m.fail(i)
	}
}

func (m *machine) wantWriter(w int) {
	m.t.Helper()
	if m.s.writer != w || m.out.picker.writer != w {
		m.t.Fatalf("writer = %d (picker %d), want %d; events: %v", m.s.writer, m.out.picker.writer, w, m.evs)
	}
}

// writerEvents returns the writer changes so far as "from>to".
func (m *machine) writerEvents() []string {
	var out []string
	for _, ev := range m.evs {
		if ev.Kind == EventWriter {
			out = append(out, ev.From+">"+ev.To)
		}
	}
	return out
}

// finishSwitch completes the fenced switch asked for by the last input.
func (m *machine) finishSwitch(held, caughtUp bool) {
	m.t.Helper()
	sw := m.sw
	if sw == nil {
		m.t.Fatalf("no fenced switch was asked for (writer %d, target %d)", m.s.writer, m.s.target)
	}
	m.sw = nil
	m.now = m.now.Add(time.Millisecond)
	m.record(m.s.switched(*sw, held, caughtUp, "pos", m.now))
}

// TestStateFirstRound: with probes, the writer is chosen once every node
// has been probed once; until then the picker says not ready and offers
// the first node.
func TestStateFirstRound(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	if m.out.picker.ready || m.s.writer != -1 || m.out.picker.writer != 0 {
		t.Fatalf("fresh: ready %v, writer %d, picker writer %d; want not ready, -1, 0", m.out.picker.ready, m.s.writer, m.out.picker.writer)
	}
	m.ok(0, "0-1-5")
	m.ok(1, "0-1-5")
	if m.out.picker.ready || m.out.ready {
		t.Fatal("ready before the third node was probed")
	}
	m.fail(2) // a failed probe counts: the round must end
	if !m.out.ready || !m.out.picker.ready {
		t.Fatal("not ready after every node was probed once")
	}
	m.wantWriter(0)
	if evs := m.writerEvents(); len(evs) != 1 {
		t.Errorf("writer events %v, want one (none to a)", evs)
	}

	// Without probes the first node is the writer at once.
	d := newMachine(t, 3, Settings{Health: HealthConfig{Disabled: true}})
	if !d.out.picker.ready {
		t.Fatal("health disabled: not ready at once")
	}
	d.wantWriter(0)
}

// TestStateDefectBFreshClusterSkipsNodeBehind is defect (b): a fresh
// cluster must not make a restarted old writer that is still catching up
// its writer, while it must not be fooled by probes taken at different
// moments of a steady write load.
func TestStateDefectBFreshClusterSkipsNodeBehind(t *testing.T) {
	// a (server 1) was killed and restarted without replication; b
	// (server 2) took 4,990 writes meanwhile, c replicated them.
	m := newMachine(t, 3, Settings{})
	m.round("1-1-3000,2-2-10", "1-1-3000,2-2-5000", "1-1-3000,2-2-5000")
	m.wantWriter(1)
	if ev := m.evs[len(m.evs)-1]; !strings.Contains(ev.Cause, "a:3306 is behind") {
		t.Errorf("cause %q does not say a is behind", ev.Cause)
	}
	// It stays on b while a does not catch up, however many good probes.
	for range 10 {
		m.round("1-1-3000,2-2-10", "1-1-3000,2-2-5000", "1-1-3000,2-2-5000")
	}
	m.wantWriter(1)

	// Steady state, a writing: b and c are probed after a and already hold
	// more of a's own writes. a is not behind: what it lacks is its own.
	m = newMachine(t, 3, Settings{})
	m.round("1-1-100,2-2-7", "1-1-105,2-2-7", "1-1-104,2-2-7")
	m.wantWriter(0)

	// One domain for all servers: the server id of the last GTID tells.
	m = newMachine(t, 2, Settings{})
	m.round("0-1-3000", "0-2-5000")
	m.wantWriter(1)
	m = newMachine(t, 2, Settings{})
	m.round("0-1-100", "0-1-105")
	m.wantWriter(0)

	// MySQL: a lacks transactions of b's uuid.
	const ua, ub = "3e11fa47-71ca-11e1-9e33-c80aa9429562", "4e11fa47-71ca-11e1-9e33-c80aa9429562"
	m = newMachine(t, 2, Settings{})
	for i, pos := range []string{ua + ":1-100," + ub + ":1-5", ua + ":1-100," + ub + ":1-50"} {
		g, err := parseGTIDSet(pos, true)
		if err != nil {
			t.Fatal(err)
		}
		m.record(m.s.probeResult(i, probeResult{pos: g, mysql: true, self: []string{ua, ub}[i]}, m.now))
	}
	m.wantWriter(1)
}

// TestStateDefectAFailbackRecordsLastWriter is defect (a): after A→B and a
// failback to A, A's next failure must choose the node that has all of A's
// writes, not compare against B.
func TestStateDefectAFailbackRecordsLastWriter(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	m.round("0-1-100", "0-1-100", "0-1-100")
	m.wantWriter(0)
	m.down(0)
	m.wantWriter(1)
	for range 3 {
		m.round("0-1-100", "0-1-100", "0-1-100")
	}
	m.finishSwitch(true, true)
	m.wantWriter(0)
	if m.s.lastWriter != 0 {
		t.Fatalf("lastWriter = %d after the failback to a, want 0", m.s.lastWriter)
	}
	// a takes writes; c replicates them, b falls behind.
	m.round("0-1-200", "0-1-150", "0-1-200")
	m.down(0)
	m.wantWriter(2)
}

// TestStateDefectCDisabledReadOnlyClears is defect (c): without probes, a
// read_only flag learned from a refused write must not outlive a planned
// switchover back.
func TestStateDefectCDisabledReadOnlyClears(t *testing.T) {
	m := newMachine(t, 2, Settings{Health: HealthConfig{Disabled: true}})
	m.wantWriter(0)
	m.call(0, ClassReadOnly) // switchover a→b
	m.wantWriter(1)
	m.call(1, ClassReadOnly) // switchover back b→a: both flagged now
	m.wantWriter(-1)
	if got := m.out.picker.writes; !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("write order %v with every node flagged read-only, want [0 1] (flags are stale without probes)", got)
	}
	m.call(0, 0) // the write succeeds on a
	m.wantWriter(0)
	if m.s.health[0].readOnly {
		t.Error("a write that succeeded did not clear a's read_only flag")
	}
	// A successful read says nothing about read_only.
	m.call(1, ClassReadOnly)
	m.record(m.s.callResult(1, false, 0, nil, m.now))
	if !m.s.health[1].readOnly {
		t.Error("a read cleared b's read_only flag")
	}
}

// TestStateDefectDOneFailedCallDoesNotFlap is defect (d): one failed call
// (a slow read past read_timeout, a KILL CONNECTION) makes the writer
// Suspect and asks for a probe, but does not move the writer unless the
// probe fails too; and a call failure restarts the recover_after count of a
// recovering node.
func TestStateDefectDOneFailedCallDoesNotFlap(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	m.round("0-1-1", "0-1-1", "0-1-1")
	for _, class := range []ErrorClass{ClassOutcomeUnknown, ClassNotSent} {
		out := m.call(0, class)
		m.wantWriter(0)
		if !slices.Equal(out.probeNow, []int{0}) {
			t.Errorf("%v: probeNow = %v, want [0]", class, out.probeNow)
		}
		if m.s.health[0].state != StateSuspect {
			t.Errorf("%v: a is %v, want suspect", class, m.s.health[0].state)
		}
		// The write order still starts with a; b and c follow for the
		// call's own failover.
		if got := m.out.picker.writes; !slices.Equal(got, []int{0, 1, 2}) {
			t.Errorf("%v: write order %v, want [0 1 2]", class, got)
		}
		m.ok(0, "0-1-1")
		m.wantWriter(0)
	}
	if evs := m.writerEvents(); len(evs) != 1 {
		t.Fatalf("writer events %v, want only the first choice", evs)
	}
	// A failed probe confirms the suspicion: the writer moves.
	m.call(0, ClassNotSent)
	m.wantWriter(0)
	m.fail(0)
	m.wantWriter(1)
	// b is probed as the writer (a failback needs a position of b's
	// learned in its term: TestStateNoFailbackBeforeWritersTerm).
	m.ok(1, "0-1-1")
	m.ok(1, "0-1-1")

	// A recovering a needs recover_after good probes in a row, with no
	// failed call in between, before the failback.
	m.ok(0, "0-1-1")
	m.ok(0, "0-1-1")
	m.call(0, ClassOutcomeUnknown)
	m.ok(0, "0-1-1")
	m.ok(0, "0-1-1")
	if m.sw != nil {
		t.Fatal("failback asked for after 2 good probes since a failed call")
	}
	m.ok(0, "0-1-1")
	if m.sw == nil || m.sw.to != 0 || m.sw.from != 1 {
		t.Fatalf("no failback b→a after 3 good probes: %+v", m.sw)
	}
}

// TestStateDefectEFailbackUnderMovingWrites is defect (e): a node that
// keeps up with a writer under load, one probe behind its latest position,
// qualifies for the fenced failback, which then waits for the exact
// position.
func TestStateDefectEFailbackUnderMovingWrites(t *testing.T) {
	m := newMachine(t, 2, Settings{})
	m.round("0-1-100", "0-1-100")
	m.down(0)
	m.wantWriter(1)
	for k := 1; k <= 6 && m.sw == nil; k++ {
		// b moves 100 transactions per probe; a holds what b had one
		// probe earlier.
		m.ok(1, "0-2-"+strconv.Itoa(100+100*k))
		m.ok(0, "0-2-"+strconv.Itoa(100*k))
	}
	if m.sw == nil {
		t.Fatal("no failback under a moving writer position")
	}
	m.finishSwitch(true, true)
	m.wantWriter(0)

	// A node further behind does not qualify.
	m = newMachine(t, 2, Settings{})
	m.round("0-1-100", "0-1-100")
	m.down(0)
	for k := 1; k <= 6; k++ {
		m.ok(1, "0-2-"+strconv.Itoa(100+100*k))
		m.ok(0, "0-2-"+strconv.Itoa(100*k-100))
		if m.sw != nil {
			t.Fatalf("failback asked for with a two probes behind (k=%d)", k)
		}
	}
}

// TestStateRules covers the rules of the README's and docs/health.md's
// "Health and failover" sections one by one.
func TestStateRules(t *testing.T) {
	t.Run("suspect then down after fail_after failed probes, connections closed", func(t *testing.T) {
		m := newMachine(t, 2, Settings{})
		m.round("0-1-1", "0-1-1")
		m.fail(1)
		if m.s.health[1].state != StateSuspect || !m.s.confirming(1) {
			t.Fatalf("b is %v after one failed probe, want suspect and confirming", m.s.health[1].state)
		}
		out := m.fail(1)
		if m.s.health[1].state != StateDown || !slices.Equal(out.closeConns, []int{1}) {
			t.Fatalf("b is %v, closeConns %v; want down, [1]", m.s.health[1].state, out.closeConns)
		}
		if !slices.Equal(m.out.picker.writes, []int{0}) || len(m.out.picker.excluded) != 1 {
			t.Errorf("writes %v excluded %v: a Down node is not tried and is listed", m.out.picker.writes, m.out.picker.excluded)
		}
	})
	t.Run("suspect to up on one good probe, down to up on recover_after", func(t *testing.T) {
		m := newMachine(t, 2, Settings{})
		m.round("0-1-1", "0-1-1")
		m.fail(1)
		m.ok(1, "0-1-1")
		if m.s.health[1].state != StateUp {
			t.Fatalf("suspect b is %v after one good probe", m.s.health[1].state)
		}
		m.down(1)
		m.ok(1, "0-1-1")
		m.ok(1, "0-1-1")
		if m.s.health[1].state != StateDown {
			t.Fatal("down b came up before recover_after good probes")
		}
		m.ok(1, "0-1-1")
		if m.s.health[1].state != StateUp {
			t.Fatal("down b not up after recover_after good probes")
		}
	})
	t.Run("read-only writer is replaced at once", func(t *testing.T) {
		m := newMachine(t, 2, Settings{})
		m.round("0-1-1", "0-1-1")
		m.okRO(0, "0-1-1", true)
		m.wantWriter(1)
		m = newMachine(t, 2, Settings{})
		m.round("0-1-1", "0-1-1")
		m.call(0, ClassReadOnly)
		m.wantWriter(1)
	})
	t.Run("failed writer goes to the first node holding the last writer's position", func(t *testing.T) {
		m := newMachine(t, 3, Settings{})
		m.round("0-1-100", "0-1-90", "0-1-100")
		m.down(0)
		m.wantWriter(2)
	})
	t.Run("if none holds it, the first up and writable node", func(t *testing.T) {
		m := newMachine(t, 3, Settings{})
		m.round("0-1-100", "0-1-90", "0-1-95")
		m.down(0)
		m.wantWriter(1)
	})
	t.Run("no node up and writable: no writer", func(t *testing.T) {
		m := newMachine(t, 2, Settings{})
		m.round("0-1-1", "0-1-1")
		m.okRO(1, "0-1-1", true)
		m.down(0)
		m.wantWriter(-1)
		if len(m.out.picker.writes) != 0 {
			t.Errorf("writes %v with no writable node", m.out.picker.writes)
		}
	})
	t.Run("failback never", func(t *testing.T) {
		m := newMachine(t, 2, Settings{Failback: FailbackNever})
		m.round("0-1-1", "0-1-1")
		m.down(0)
		for range 5 {
			m.round("0-2-9", "0-2-9")
		}
		if m.sw != nil {
			t.Fatal("failback asked for with failback: never")
		}
		m.wantWriter(1)
	})
	t.Run("failback that gives up backs off 1s, doubling", func(t *testing.T) {
		m := newMachine(t, 2, Settings{})
		m.round("0-1-1", "0-1-1")
		m.down(0)
		for range 3 {
			m.round("0-2-9", "0-2-9")
		}
		m.finishSwitch(false, false)
		m.wantWriter(1)
		first := m.s.notBefore.Sub(m.now)
		m.round("0-2-9", "0-2-9")
		if m.sw != nil {
			t.Fatal("failback retried before its delay")
		}
		m.now = m.now.Add(time.Second)
		m.round("0-2-9", "0-2-9")
		m.finishSwitch(true, false)
		if d := m.s.notBefore.Sub(m.now); first != time.Second || d != 2*time.Second {
			t.Errorf("delays %v then %v, want 1s then 2s", first, d)
		}
		m.now = m.now.Add(2 * time.Second)
		m.round("0-2-9", "0-2-9")
		m.finishSwitch(true, true)
		m.wantWriter(0)
		if m.s.delay != 0 {
			t.Errorf("delay %v after a successful failback, want 0", m.s.delay)
		}
	})
	t.Run("a switch overtaken by a health change does not switch", func(t *testing.T) {
		m := newMachine(t, 3, Settings{})
		m.round("0-1-1", "0-1-1", "0-1-1")
		m.down(0)
		for range 3 {
			m.round("0-2-9", "0-2-9", "0-2-9")
		}
		sw := *m.sw
		m.sw = nil
		m.down(1) // the writer fails meanwhile: c takes over
		m.wantWriter(0)
		m.record(m.s.switched(sw, true, true, "pos", m.now))
		m.wantWriter(0)
	})
	t.Run("probe refused at connect changes nothing", func(t *testing.T) {
		m := newMachine(t, 2, Settings{})
		m.round("0-1-1", "0-1-1")
		refused := &connectError{err: &mysql.MySQLError{Number: errTooManyConnections, Message: "Too many connections"}}
		m.record(m.s.probeResult(0, probeResult{err: refused}, m.now))
		m.record(m.s.probeResult(0, probeResult{err: refused}, m.now))
		m.wantWriter(0)
		if m.s.health[0].state != StateUp || m.s.health[0].lastErr == nil {
			t.Errorf("a is %v (last error %v), want up with the error shown", m.s.health[0].state, m.s.health[0].lastErr)
		}
	})
	t.Run("write order: writer, up writable, suspect writable", func(t *testing.T) {
		m := newMachine(t, 4, Settings{})
		m.round("0-1-1", "0-1-1", "0-1-1", "0-1-1")
		m.fail(1)
		m.okRO(3, "0-1-1", true)
		if got := m.out.picker.writes; !slices.Equal(got, []int{0, 2, 1}) {
			t.Errorf("writes %v, want [0 2 1]", got)
		}
		if got := m.out.picker.reads; !slices.Equal(got, []int{0, 2, 1, 3}) {
			t.Errorf("reads (policy writer) %v, want [0 2 1 3]", got)
		}
	})
	t.Run("read policies any-up and max_lag", func(t *testing.T) {
		m := newMachine(t, 3, Settings{ReadPolicy: ReadAnyUp, MaxLag: time.Second})
		m.round("0-1-5", "0-1-5", "0-1-1")
		m.round("0-1-5", "0-1-5", "0-1-1") // lag is known from the second round
		if got := m.out.picker.reads; !slices.Equal(got, []int{0, 1}) {
			t.Errorf("reads %v, want [0 1] (c never held the writer's position)", got)
		}
		m.fail(0)
		if got := m.out.picker.reads; !slices.Equal(got, []int{1}) {
			t.Errorf("reads %v with a suspect, want [1]", got)
		}
	})
}

// TestStateExternalDecisions covers the seam for a WriterSource: the
// decided node is the writer, through a fenced switch while the current one
// is healthy and at once otherwise; writes never fail over on their own;
// "" hands the choice back to the local rule.
func TestStateExternalDecisions(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	m.s.external = true
	m.round("0-1-1", "0-1-1", "0-1-1")
	m.wantWriter(0) // local rule until the first decision
	m.record(m.s.decideExternal(2, false, 1, "fleet says c", m.now))
	if m.sw == nil || m.sw.to != 2 || !m.sw.external {
		t.Fatalf("decision for c while a is healthy: fenced = %+v, want a fenced switch to c", m.sw)
	}
	m.wantWriter(0)
	m.finishSwitch(true, false) // c did not catch up in time: the source's decision stands
	m.wantWriter(2)
	if got := m.out.picker.writes; !slices.Equal(got, []int{2}) {
		t.Errorf("writes %v under a decision, want [2] only", got)
	}
	// The decided writer stays even when this router sees it Down.
	m.down(2)
	m.wantWriter(2)
	// A new decision while the writer is Down takes effect at once.
	m.record(m.s.decideExternal(1, false, 2, "fleet says b", m.now))
	m.wantWriter(1)
	if m.sw != nil {
		t.Error("fenced switch from a Down writer")
	}
	// Handing back: the local rule (b stays, a may fail back later).
	m.record(m.s.decideExternal(-1, false, 3, "lost", m.now))
	m.wantWriter(1)
	if got := m.out.picker.writes; len(got) < 2 {
		t.Errorf("writes %v after handing back, want per-call failover again", got)
	}
}

// TestStateExternalRefuse covers a WriterSource's decision that no node is
// the writer (WriterDecision.Refuse): no write order, every node listed as
// refused, reads unaffected, probes and failures change nothing, and the
// next decision ends it.
func TestStateExternalRefuse(t *testing.T) {
	refuse := func(m *machine, epoch uint64) {
		m.t.Helper()
		m.record(m.s.decideExternal(-1, true, epoch, "coordinator lost", m.now))
	}
	wantRefusing := func(m *machine) {
		m.t.Helper()
		m.wantWriter(-1)
		p := m.out.picker
		if len(p.writes) != 0 || len(p.refused) != len(m.s.addrs) {
			m.t.Fatalf("writes %v, refused %v: want no write order and every node refused", p.writes, p.refused)
		}
		if !strings.Contains(p.refused[0].Error(), "refuses writes (epoch") {
			m.t.Errorf("refusal %q does not say why", p.refused[0].Error())
		}
	}
	tests := []struct {
		name  string
		steps func(m *machine)
		check func(m *machine)
	}{
		{"a decided writer, then refused", func(m *machine) {
			m.round("0-1-1", "0-1-1", "0-1-1")
			m.record(m.s.decideExternal(0, false, 1, "fleet says a", m.now))
			refuse(m, 1)
		}, func(m *machine) {
			wantRefusing(m)
			if got := m.out.picker.reads; !slices.Equal(got, []int{0, 1, 2}) {
				m.t.Errorf("reads %v while writes are refused, want [0 1 2]", got)
			}
		}},
		{"probes and a failed node bring no writer back", func(m *machine) {
			m.round("0-1-1", "0-1-1", "0-1-1")
			refuse(m, 0)
			m.round("0-1-2", "0-1-2", "0-1-2")
			m.down(0)
			m.round("0-1-3", "0-1-3", "0-1-3")
		}, func(m *machine) {
			wantRefusing(m)
			if m.sw != nil {
				m.t.Errorf("fenced switch %+v asked for while writes are refused", *m.sw)
			}
		}},
		{"before the first probe round: no node offered", func(m *machine) {
			refuse(m, 0)
		}, func(m *machine) {
			if p := m.out.picker; p.writer != -1 || len(p.writes) != 0 || len(p.refused) != 3 {
				m.t.Errorf("picker writer %d writes %v refused %d before the round, want none", p.writer, p.writes, len(p.refused))
			}
		}},
		{"a decision with a writer ends it at once", func(m *machine) {
			m.round("0-1-1", "0-1-1", "0-1-1")
			refuse(m, 1)
			m.record(m.s.decideExternal(1, false, 2, "fleet says b", m.now))
		}, func(m *machine) {
			m.wantWriter(1)
			if m.sw != nil || len(m.out.picker.refused) != 0 || !slices.Equal(m.out.picker.writes, []int{1}) {
				m.t.Errorf("fenced %v refused %v writes %v: want b at once, writes [1] only", m.sw, m.out.picker.refused, m.out.picker.writes)
			}
		}},
		{"handing back ends it: the local rule", func(m *machine) {
			m.round("0-1-1", "0-1-1", "0-1-1")
			refuse(m, 1)
			m.record(m.s.decideExternal(-1, false, 1, "back to local", m.now))
		}, func(m *machine) {
			m.wantWriter(0)
			if got := m.out.picker.writes; !slices.Equal(got, []int{0, 1, 2}) || len(m.out.picker.refused) != 0 {
				m.t.Errorf("writes %v refused %v after handing back, want [0 1 2] and none", got, m.out.picker.refused)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, 3, Settings{})
			m.s.external = true
			tc.steps(m)
			tc.check(m)
			if tc.name == "a decided writer, then refused" {
				last := m.evs[len(m.evs)-1]
				if last.Kind != EventWriter || last.From != "a:3306" || last.To != "" || !strings.Contains(last.Cause, "refuses writes") {
					t.Errorf("last event %+v, want the writer a → none, refused", last)
				}
			}
		})
	}
}

// TestStateFirstWriterProvisional: a node whose position the first choice
// did not see (its first probe failed, or was refused at connect) can still
// show the first writer behind with its first good probe; the writer is
// then chosen again, once. A node that only shows more of the writer's own
// transactions changes nothing.
func TestStateFirstWriterProvisional(t *testing.T) {
	refused := &connectError{err: &mysql.MySQLError{Number: errTooManyConnections, Message: "Too many connections"}}
	for _, first := range []string{"failed", "refused"} {
		t.Run(first, func(t *testing.T) {
			m := newMachine(t, 3, Settings{})
			m.ok(0, "1-1-3000,2-2-10")
			if first == "failed" {
				m.fail(1)
			} else {
				m.record(m.s.probeResult(1, probeResult{err: refused}, m.now))
			}
			m.ok(2, "1-1-3000,2-2-10") // c is stale too
			m.wantWriter(0)
			m.ok(1, "1-1-3000,2-2-5000")
			m.wantWriter(1)
			if ev := m.evs[len(m.evs)-1]; !strings.Contains(ev.Cause, "whose first good probe came after the first round") {
				t.Errorf("cause %q", ev.Cause)
			}
		})
	}
	t.Run("steady state", func(t *testing.T) {
		m := newMachine(t, 2, Settings{})
		m.ok(0, "1-1-100")
		m.fail(1)
		m.ok(1, "1-1-130") // more of a's own writes: not evidence
		m.wantWriter(0)
		m.round("1-1-200", "2-2-1,1-1-150") // later probes never recheck
		m.wantWriter(0)
		if evs := m.writerEvents(); len(evs) != 1 {
			t.Errorf("writer events %v, want the first choice only", evs)
		}
	})
}

// TestStatePlannedSwitchAndDrain: a planned switch moves the writer only
// when the fence held and the target caught up, pins it (no failback while
// it is healthy), and a failover unpins it; a drained node is never the
// writer and takes no call.
func TestStatePlannedSwitchAndDrain(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	m.round("0-1-5", "0-1-5", "0-1-5")
	out, sw, err := m.s.planSwitch(1, m.now)
	if err != nil || sw == nil || !sw.planned || sw.from != 0 || sw.to != 1 {
		t.Fatalf("planSwitch(b) = %+v, %v", sw, err)
	}
	_ = out
	if _, _, err := m.s.planSwitch(2, m.now); err == nil || !strings.Contains(err.Error(), "under way") {
		t.Errorf("a second planned switch while one runs: err = %v", err)
	}
	m.record(m.s.switched(*sw, true, false, "pos", m.now)) // did not catch up
	m.wantWriter(0)
	_, sw, _ = m.s.planSwitch(1, m.now)
	m.record(m.s.switched(*sw, true, true, "pos", m.now))
	m.wantWriter(1)
	for range 5 {
		m.round("0-2-9", "0-2-9", "0-2-9")
	}
	if m.sw != nil {
		t.Fatal("failback asked for away from a pinned writer")
	}
	m.wantWriter(1)
	m.down(1) // the pinned writer fails: the local rule takes over
	m.wantWriter(0)
	if m.s.pinned != -1 {
		t.Errorf("pinned = %d after a failover, want -1", m.s.pinned)
	}

	m.record(m.s.setDrained(2, true, drainLocal, m.now))
	m.down(0)
	m.wantWriter(-1) // b is down, c drained
	if slices.Contains(m.out.picker.writes, 2) || slices.Contains(m.out.picker.reads, 2) {
		t.Errorf("a drained node in the orders: writes %v reads %v", m.out.picker.writes, m.out.picker.reads)
	}
	m.record(m.s.setDrained(2, false, drainLocal, m.now))
	m.wantWriter(2)
	if _, _, err := m.s.planSwitch(2, m.now); err == nil || !strings.Contains(err.Error(), "already the writer") {
		t.Errorf("planSwitch to the writer: err = %v", err)
	}
}

// TestStateUnanswered checks the stall-check rule: a pooled probe and a new
// connection that both got no answer while waiting at the same time take a
// node Down at once; either alone, or two that did not overlap, or one that
// was answered (slow, not dead), does not, and keeps the writer where it is.
func TestStateUnanswered(t *testing.T) {
	timeout := 200 * time.Millisecond
	errTimeout := errors.New("context deadline exceeded")
	// hungProbe feeds a probe of node 0 sent at from that got no answer
	// until to (offsets from base).
	type input struct {
		probe        bool // else a new connection
		from, to     time.Duration
		noAnswer     bool
		wantState    NodeState
		wantDownCall bool // closeConns asked for
		wantWriter   int
	}
	cases := []struct {
		name string
		in   []input
	}{
		{"probe then connection, overlapping", []input{
			{probe: true, from: 0, to: 200 * time.Millisecond, noAnswer: true, wantState: StateSuspect},
			{probe: false, from: 50 * time.Millisecond, to: 250 * time.Millisecond, noAnswer: true, wantState: StateDown, wantDownCall: true, wantWriter: 1},
		}},
		{"connection then probe, overlapping", []input{
			{probe: false, from: 50 * time.Millisecond, to: 250 * time.Millisecond, noAnswer: true, wantState: StateSuspect},
			{probe: true, from: 60 * time.Millisecond, to: 260 * time.Millisecond, noAnswer: true, wantState: StateDown, wantDownCall: true, wantWriter: 1},
		}},
		{"not overlapping", []input{
			{probe: true, from: 0, to: 200 * time.Millisecond, noAnswer: true, wantState: StateSuspect},
			{probe: false, from: 300 * time.Millisecond, to: 500 * time.Millisecond, noAnswer: true, wantState: StateSuspect},
		}},
		{"connection answered (slow statement)", []input{
			{probe: false, from: 50 * time.Millisecond, to: 60 * time.Millisecond, wantState: StateUp},
			{probe: true, from: 0, to: 200 * time.Millisecond, noAnswer: true, wantState: StateSuspect},
		}},
		{"probe refused, not unanswered", []input{
			{probe: false, from: 0, to: 200 * time.Millisecond, noAnswer: true, wantState: StateSuspect},
			{probe: true, from: 10 * time.Millisecond, to: 20 * time.Millisecond, wantState: StateSuspect, wantWriter: 1},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, 3, Settings{Health: HealthConfig{Timeout: timeout, Interval: 250 * time.Millisecond}})
			m.round("1-1-5", "1-1-5", "1-1-5")
			m.wantWriter(0)
			base := m.now.Add(time.Second)
			for _, in := range tc.in {
				m.now = base.Add(in.to)
				var err error
				if in.noAnswer {
					err = errTimeout
				} else if in.probe {
					err = errProbe
				}
				if in.probe {
					m.record(m.s.probeResult(0, probeResult{err: err, started: base.Add(in.from), noAnswer: in.noAnswer}, m.now))
				} else {
					m.record(m.s.handshakeResult(0, base.Add(in.from), err, in.noAnswer, m.now))
				}
				if got := m.s.health[0].state; got != in.wantState {
					t.Fatalf("after %+v: state %s, want %s; events %v", in, got, in.wantState, m.evs)
				}
				if got := slices.Contains(m.out.closeConns, 0); got != in.wantDownCall {
					t.Fatalf("after %+v: closeConns %v, want node 0 closed: %v", in, m.out.closeConns, in.wantDownCall)
				}
				// A probe that timed out, or a new connection with no
				// answer, alone keeps the writer; Down or a refused
				// probe moves it.
				m.wantWriter(in.wantWriter)
			}
		})
	}
}

// A candidate probed after the writer and still lacking its writes is
// behind: the choice passes it over (as TestStateDefectAFailbackRecordsLastWriter).
func TestStateFailoverChoiceBehindAfterWriter(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	m.round("0-1-100", "0-1-100", "0-1-100")
	m.ok(0, "0-1-160")
	m.ok(1, "0-1-150") // probed after a, 10 behind
	m.ok(2, "0-1-160")
	m.down(0)
	m.wantWriter(2)
}

// Right after a failover to a later node, an earlier node is not offered
// the role back until the new writer has been probed in its term: holding
// a position the writer had before it was the writer proves nothing of
// receiving its writes (a ring A→B→C→A with A gone: the fence held writes
// a whole second waiting for B to get C's). Before, the failback to b was
// asked for at b's first good probe after the failover.
func TestStateNoFailbackBeforeWritersTerm(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	m.round("0-1-100", "0-1-100", "0-1-100")
	m.ok(0, "0-1-160")
	m.ok(1, "0-1-150") // probed after a, behind
	m.ok(2, "0-1-160")
	m.down(0)
	m.wantWriter(2)
	m.ok(1, "0-1-160") // b has caught up with what c had before its term
	if m.sw != nil {
		t.Fatalf("failback to b asked for before c was probed as the writer: %+v", *m.sw)
	}
	m.ok(2, "0-1-160,0-3-5") // c as the writer
	m.ok(1, "0-1-160")
	if m.sw != nil {
		t.Fatalf("failback to b asked for with c probed once as the writer: %+v", *m.sw)
	}
	m.ok(2, "0-1-160,0-3-9")
	m.ok(1, "0-1-160,0-3-5") // b holds what c had at its first probe as the writer
	if m.sw == nil || m.sw.to != 1 {
		t.Fatalf("no failback to b once it holds c's writes: %+v", m.sw)
	}
}
