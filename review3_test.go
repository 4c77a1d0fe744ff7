package dbrouter

// Adversarial review of the writer-decision state machine (#13, c1ee75c).
// Each TestReview3 test names a defect and states the expected behaviour;
// each failed on c1ee75c. All are fixed on i13-review but
// TestReview3FirstRoundFailedProbeLetsStaleNodeWrite, a design question
// left to the maintainers.

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Defect: a WriterSource's decision moved the writer at once, without the
// fence, while the current writer was Suspect only because one call failed
// (state.go chooseWriter: `keep && state == StateUp`). Such a writer is
// healthy by the local rule (it keeps the role, writes go to it) and may
// still have writes in flight; docs/design.md §5 takes a decision at once
// only when the writer is Down or read-only. Expected: a fenced switch.
func TestReview3DecisionFencedWhileWriterSuspectFromCall(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	m.s.external = true
	m.round("0-1-1", "0-1-1", "0-1-1")
	m.wantWriter(0)
	m.call(0, ClassOutcomeUnknown) // a slow read past read_timeout, a KILL
	m.wantWriter(0)
	m.record(m.s.decideExternal(2, false, 1, "fleet says c", m.now))
	m.wantWriter(0)
	if m.sw == nil || m.sw.from != 0 || m.sw.to != 2 {
		t.Fatalf("decision for c while a is Suspect from one failed call: fenced = %+v, want a fenced switch a→c", m.sw)
	}
	m.finishSwitch(true, true)
	m.wantWriter(2)
}

// Defect: a fenced switch asked for by a WriterSource's decision kept its
// "switch even if not caught up" licence after the source handed the
// decision back (state.go switched: `caughtUp || sw.external`). When the
// local rule then wants the same node (a failback), the switch happened
// although the new writer had not reached the old writer's position:
// writes of this router could reach a node missing acknowledged writes.
// Expected: once handed back, the switch needs the catch-up like any
// failback.
func TestReview3HandBackDuringSwitchNeedsCatchUp(t *testing.T) {
	m := newMachine(t, 2, Settings{})
	m.s.external = true
	m.round("0-1-100", "0-1-100")
	m.down(0)
	m.wantWriter(1)
	m.ok(1, "0-2-200")
	m.ok(1, "0-2-300")
	for range 3 {
		m.ok(0, "0-1-100") // a is back, behind: no failback
	}
	if m.sw != nil {
		t.Fatalf("failback asked for with a behind: %+v", *m.sw)
	}
	m.record(m.s.decideExternal(0, false, 1, "fleet says a", m.now))
	if m.sw == nil || !m.sw.external || m.sw.to != 0 {
		t.Fatalf("fenced = %+v, want an external switch b→a", m.sw)
	}
	m.ok(0, "0-2-300")                                        // a holds what b had one probe earlier
	m.record(m.s.decideExternal(-1, false, 2, "lost", m.now)) // the source hands back
	m.finishSwitch(true, false)                               // a did not reach b's exact position
	m.wantWriter(1)
}

// Defect: a failback that the fence had completed (writes drained, the
// target reached the writer's exact position) was thrown away when a probe
// during the switch moved the writer's position on, so that the
// "one probe earlier" qualification (caughtUp) no longer held and target
// dropped to -1 (state.go switched: `s.target == sw.to`). Under a steady
// write load — the case defect (e) is about — that makes failbacks fail
// at random and each retry hold new writes again; a discarded attempt also
// gets no backoff. Expected: the writer moves to the caught-up node.
func TestReview3FailbackNotDiscardedByPositionChurn(t *testing.T) {
	m := newMachine(t, 2, Settings{})
	m.round("0-1-100", "0-1-100")
	m.down(0)
	m.wantWriter(1)
	k := 1
	for ; k <= 6 && m.sw == nil; k++ {
		m.ok(1, "0-2-"+itoa(100+100*k))
		m.ok(0, "0-2-"+itoa(100*k))
	}
	if m.sw == nil {
		t.Fatal("no failback under a moving writer position")
	}
	// While the fence is held (up to timeout + 1 s), b is probed again:
	// other routers' writes moved it on; a's next probe has not come yet.
	m.ok(1, "0-2-"+itoa(100+100*k))
	m.finishSwitch(true, true) // the fence saw a reach b's exact position
	m.wantWriter(0)
}

// Defect: under a WriterSource's decision, reads with read_policy writer
// went to the decided writer and the read-only nodes only: the other
// writable nodes were left out of the read order (state.go buildPicker
// derives reads from the decision's single-node write order), so in a
// ring of writable nodes a read never failed over, although reads run in
// read-only sessions and are retried anywhere. And with a read-only
// decided writer the read order named it twice. Expected: the writer
// first, then every other Up/Suspect node, each once.
func TestReview3ReadsFailOverUnderDecision(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	m.s.external = true
	m.round("0-1-1", "0-1-1", "0-1-1")
	m.record(m.s.decideExternal(0, false, 1, "fleet says a", m.now))
	m.wantWriter(0)
	if got := m.out.picker.writes; !slices.Equal(got, []int{0}) {
		t.Fatalf("writes %v under a decision, want [0]", got)
	}
	if got := m.out.picker.reads; !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("reads %v under a decision for a, want [0 1 2] (reads fail over)", got)
	}
	m.okRO(0, "0-1-1", true) // the decided writer is read-only for now
	m.wantWriter(0)
	if got := m.out.picker.reads; !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("reads %v with the decided writer read-only, want [0 1 2], each node once", got)
	}
}

// Defect: before the first probe round ends, the picker offered node 0
// with per-call failover even when a WriterSource had already decided
// another node (state.go buildPicker: `w = 0` and `s.decided < 0 ||
// !s.ready`). Calls use that picker once awaitFirstRound gives up (a
// starved machine, a probe slower than its bound), and Writer()/
// WriterAddr() report it: a write could reach a node the fleet did not
// choose. Expected: the decided node, and no failover.
func TestReview3DecisionBeforeFirstRound(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	m.s.external = true
	m.record(m.s.decideExternal(2, false, 1, "fleet says c", m.now))
	if p := m.out.picker; p.ready || p.writer != 2 || !slices.Equal(p.writes, []int{2}) {
		t.Errorf("before the first round, after a decision for c: ready %v writer %d writes %v, want not ready, 2, [2]", p.ready, p.writer, p.writes)
	}
	m.round("0-1-1", "0-1-1", "0-1-1")
	m.wantWriter(2)
}

// Defect: a node that failed one probe (Suspect, consecFail > 0) and whose
// next probes are refused at connect (1040 Too many connections, 1045)
// stayed "confirming" forever — a refusal changes nothing — so its prober
// re-probed in a tight loop with no pause (health.go runProber), opening
// connection after connection against a server that says it has too many,
// and spinning a core. Expected: after a refusal the prober waits for its
// next tick.
func TestReview3RefusedProbeWhileSuspectDoesNotSpin(t *testing.T) {
	set := Settings{Health: HealthConfig{Interval: 50 * time.Millisecond, Timeout: 100 * time.Millisecond, FailAfter: 3, RecoverAfter: 3}}
	c, srv := newFakeClusterWithProbes(t, 2, set, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int64
	refused := &mysql.MySQLError{Number: errTooManyConnections, Message: "Too many connections"}
	b := srv[1]
	b.set(func(s *fakeServer) {
		s.connectFn = func(context.Context) error { attempts.Add(1); return nil }
		s.execFn = func(_ context.Context, q string) error {
			if q != probeMariaDB {
				return nil
			}
			// This probe fails (a timeout under load); from now on the
			// server refuses new connections.
			b.set(func(s *fakeServer) { s.connectErr, s.execFn = refused, nil })
			return errors.New("i/o timeout")
		}
	})
	eventually(t, "b refused at connect", func() bool {
		st := c.Stats().Nodes[1]
		return st.State == StateSuspect && attempts.Load() > 0
	})
	start := attempts.Load()
	time.Sleep(300 * time.Millisecond)
	if n := attempts.Load() - start; n > 30 {
		t.Errorf("%d connection attempts to b in 300 ms with probes every 50 ms: the prober spins on a refusing server", n)
	}
	b.set(func(s *fakeServer) { s.connectFn, s.connectErr = nil, nil })
}

// Defect: Reload built the clusters it creates with the reloaded
// Config's WriterSource. cfg.Logger and cfg.OnEvent of a Reload are
// ignored (those of Open stay), but WriterSource was not: a Config read
// from YAML (LoadConfig, WatchConfigFile) cannot carry one, so every
// cluster a config-file reload changed silently fell back to the local
// rule, while the rest of the fleet followed the source — two writers.
// Expected: the WriterSource given to Open decides the new clusters too.
func TestReview3ReloadKeepsWriterSource(t *testing.T) {
	src := &countingSource{}
	cfg := &Config{
		Defaults:     Settings{User: "app"},
		Clusters:     map[string]ClusterConfig{"c1": {Nodes: []string{"127.0.0.1:1", "127.0.0.1:2"}}}, // Open does no I/O
		Logger:       slog.New(slog.DiscardHandler),
		WriterSource: src,
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := src.watching(); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("watching %v after Open, want [c1]", got)
	}
	old, err := r.Cluster("c1")
	if err != nil {
		t.Fatal(err)
	}
	yaml, err := ParseConfig([]byte("defaults: {user: app}\nclusters: {c1: {nodes: ['127.0.0.1:1', '127.0.0.1:3']}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(yaml); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the old c1 to be retired", old.closed.Load)
	if got := src.watching(); !slices.Equal(got, []string{"c1"}) {
		t.Errorf("watching %v after a Reload that replaced c1, want [c1]: the new c1 has no WriterSource", got)
	}
}

// countingSource is a WriterSource that tracks the clusters it watches.
type countingSource struct {
	mu    sync.Mutex
	watch map[int]string
	next  int
}

func (s *countingSource) Watch(cluster string, _ []string, _ WriterSink) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watch == nil {
		s.watch = make(map[int]string)
	}
	id := s.next
	s.next++
	s.watch[id] = cluster
	return func() {
		s.mu.Lock()
		delete(s.watch, id)
		s.mu.Unlock()
	}
}

func (s *countingSource) watching() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.watch {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// Defect: events were emitted outside Cluster.mu (cluster.go carryOut),
// after the transition that produced them, so two transitions on two
// goroutines (two probers, a call and a prober) could hand their events
// to the dispatcher in the opposite order of the transitions: OnEvent
// then saw "writer b→c" before "writer a→b" and ended believing the
// wrong writer, although docs/design.md §4 promises events in order.
// Expected: writer events form a chain, each From the previous To.
func TestReview3EventsInTransitionOrder(t *testing.T) {
	var mu sync.Mutex
	var writers []Event
	c, _ := newFakeClusterWithProbes(t, 3, Settings{Health: HealthConfig{Disabled: true}}, func(ev Event) {
		if ev.Kind == EventWriter {
			mu.Lock()
			writers = append(writers, ev)
			mu.Unlock()
		}
	})
	callErr := errors.New("connection refused")
	// Batches small enough for the dispatcher's buffer: a dropped event
	// would break the chain too.
	for range 20 {
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range 60 {
					i := (g + k) % 3
					if k%2 == 0 {
						c.reportCall(i, true, ClassNotSent, callErr) // Suspect: the writer moves
					} else {
						c.reportCall(i, true, 0, nil) // Up again
					}
				}
			}()
		}
		wg.Wait()
		time.Sleep(10 * time.Millisecond)
	}
	c.events.close()
	if n := c.events.dropped.Load(); n > 0 {
		t.Fatalf("%d events dropped: the test needs smaller batches", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for k := 1; k < len(writers); k++ {
		if writers[k].From != writers[k-1].To {
			t.Fatalf("writer event %d: %q→%q after %q→%q: events out of transition order (%d writer events)",
				k, writers[k].From, writers[k].To, writers[k-1].From, writers[k-1].To, len(writers))
		}
	}
	if want := c.Stats().Writer; len(writers) > 0 && writers[len(writers)-1].To != want {
		t.Errorf("last writer event names %q, the writer is %q", writers[len(writers)-1].To, want)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// Defect: two fenced switches could overlap on the fence. switchWriter
// publishes the switch's outcome (which clears `switching`) and only then
// releases the fence; a transition on another goroutine in between (a
// decision, a probe) starts the next switch, whose hold overwrote the
// fence's release channel and set held, and the first switch's unhold then
// cleared held and closed the second's channel (fence.go hold/unhold). The
// second switch then moved the writer with the fence open — writes went to
// the old writer while the new one caught up — and writes waiting on the
// first release channel were never woken: stuck until their deadline.
// The test holds the fence itself for the first switch's last moment.
// Expected: the second hold waits for the first release; the waiting
// write goes through once the fence opens, and a write issued during the
// second switch waits for it and goes to the new writer.
func TestReview3OverlappingSwitchesKeepTheFence(t *testing.T) {
	src := &testSource{}
	c, srv := newFakeClusterWithSource(t, 3, fastProbes(), nil, src)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if w := c.WriterAddr(); w != "a:3306" {
		t.Fatalf("writer %s, want a", w)
	}
	// The first switch, between publishing its picker and releasing the
	// fence.
	if !c.fence.hold(ctx) {
		t.Fatal("could not hold the fence")
	}
	w1 := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := c.ExecContext(wctx, "INSERT INTO t VALUES (2)")
		w1 <- err
	}()
	time.Sleep(20 * time.Millisecond) // w1 waits at the fence
	// The second switch, a→c, whose catch-up takes 500 ms.
	srv[2].set(func(s *fakeServer) {
		s.execFn = func(ctx context.Context, q string) error {
			if q == "SELECT MASTER_GTID_WAIT(?, ?)" {
				select {
				case <-time.After(500 * time.Millisecond):
				case <-ctx.Done():
				}
			}
			return nil
		}
	})
	if err := src.sink.Decide(WriterDecision{Writer: "c:3306", Epoch: 1, Cause: "test"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	c.fence.unhold()                  // the first switch releases the fence
	time.Sleep(50 * time.Millisecond) // the second switch holds the fence, catching up
	var onA atomic.Bool
	srv[0].set(func(s *fakeServer) {
		s.execFn = func(_ context.Context, q string) error {
			if q == "INSERT INTO t VALUES (3)" {
				onA.Store(true)
			}
			return nil
		}
	})
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	if onA.Load() {
		t.Error("a write issued during the switch a→c reached a: the switch ran with the fence open")
	}
	select {
	case err := <-w1:
		if err != nil {
			t.Errorf("write waiting at the fence: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Error("a write waiting at the fence was not let through when the fence opened")
	}
	if w := c.WriterAddr(); w != "c:3306" {
		t.Errorf("writer %s after the switch, want c", w)
	}
}

// Defect: with a WriterSource's decision naming a node this router sees
// Down, the write is sent to it (as documented), but the *NoWriterError
// then lists that node twice: with the error of the attempt, and again as
// "not tried: node is down" (state.go buildPicker: excluded lists every
// Down node, the writer included). Expected: a node that was tried is not
// also reported as not tried.
func TestReview3TriedWriterNotListedAsNotTried(t *testing.T) {
	m := newMachine(t, 2, Settings{})
	m.s.external = true
	m.round("0-1-1", "0-1-1")
	m.record(m.s.decideExternal(0, false, 1, "fleet says a", m.now))
	m.down(0)
	m.wantWriter(0)
	for _, e := range m.out.picker.excluded {
		if e.Node == "a:3306" {
			t.Errorf("the decided writer a, tried first by every write, is listed as excluded: %v", e)
		}
	}
}

// Defect (fixed by making the first writer provisional: see
// TestStateFirstWriterProvisional): the first probe round ends when
// every node has answered or FAILED one probe, and behindAnother only
// compares with Up nodes. A node whose first probe fails once (a timeout
// under load) is Suspect and ignored, so a restarted old writer that is
// still catching up becomes the first writer — the very case fix (b) of
// #13 is for — and, since the writer keeps the role while it is Up and
// writable, it stays the writer for good after the other node's next
// probe shows it behind. Expected: a stale node does not keep (or get) the
// writer role because another node's first probe failed once.
func TestReview3FirstRoundFailedProbeLetsStaleNodeWrite(t *testing.T) {
	m := newMachine(t, 2, Settings{})
	// a (server 1) restarted without replication; b (server 2) took
	// 4,990 writes meanwhile, but its first probe times out.
	m.ok(0, "1-1-3000,2-2-10")
	m.fail(1)
	m.ok(1, "1-1-3000,2-2-5000") // b's confirming probe, an instant later
	for range 5 {
		m.round("1-1-3000,2-2-10", "1-1-3000,2-2-5000")
	}
	m.wantWriter(1)
}

// Defect: without probes (health.disabled) a read_only flag is cleared by
// "a write that succeeds" on the node, but the failover loop counted every
// non-read call as a write: a BeginTx (START TRANSACTION succeeds on a
// read-only server) or a Conn (nothing is even sent) that succeeded on a
// flagged node cleared its flag and made it the writer again, so the next
// writes went to a node still read-only (failover.go attempts:
// reportCall(i, !read, ...)). Expected: only a statement that wrote
// clears the flag.
func TestReview3DisabledBeginOrConnDoesNotClearReadOnly(t *testing.T) {
	for _, op := range []string{"begin", "conn"} {
		t.Run(op, func(t *testing.T) {
			c, _ := newFakeCluster(t, 2, Settings{})
			ctx := testCtx(t)
			refused := &mysql.MySQLError{Number: errReadOnlyMode, Message: "read-only"}
			c.reportCall(0, true, ClassReadOnly, refused)
			c.reportCall(1, true, ClassReadOnly, refused) // both flagged: a is tried first
			switch op {
			case "begin":
				tx, err := c.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				tx.Rollback()
			case "conn":
				conn, err := c.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conn.Close()
			}
			if st := c.Stats(); !st.Nodes[0].ReadOnly || st.Writer != "" {
				t.Errorf("after a %s that wrote nothing on a: a read_only %v, writer %q; want the flag kept, no writer", op, st.Nodes[0].ReadOnly, st.Writer)
			}
			// A write that succeeds does clear it.
			if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			if st := c.Stats(); st.Nodes[0].ReadOnly || st.Writer != "a:3306" {
				t.Errorf("after a write on a: a read_only %v, writer %q; want cleared, a", st.Nodes[0].ReadOnly, st.Writer)
			}
		})
	}
}

// Defect (hot path): every successful call on a node whose picker state is
// not Up was reported to the state machine, which takes Cluster.mu and
// builds and publishes a new picker (slices, an error per excluded node).
// A call's success cannot change a Down node (only probes bring it back),
// yet under a WriterSource's decision naming a node this router sees Down
// — the one-sided partition a source exists for — every write succeeded
// there and paid this, serialised on Cluster.mu (fake driver: 541 → 947
// ns/op, 3 → 9 allocs/op). Expected: no new picker for such a call.
func TestReview3SuccessOnDownNodeIsNotReported(t *testing.T) {
	src := &testSource{}
	// One probe round, then none: only the test changes the health.
	c, _ := newFakeClusterWithSource(t, 2, Settings{Health: HealthConfig{Interval: time.Hour}}, nil, src)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := src.sink.Decide(WriterDecision{Writer: "a:3306", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	// This router's probes of a fail (say its probe user is locked out of
	// one network path); the fleet says a is fine.
	c.applyProbe(0, probeResult{err: errProbe})
	c.applyProbe(0, probeResult{err: errProbe})
	c.applyProbe(0, probeResult{err: errProbe})
	if st := c.Stats().Nodes[0].State; st != StateDown {
		t.Fatalf("a is %v, want down", st)
	}
	before := c.pick.Load()
	for range 10 {
		if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
			t.Fatal(err)
		}
	}
	if c.pick.Load() != before {
		t.Error("successful writes on the decided, locally Down writer rebuilt the picker: each took Cluster.mu and allocated a new one")
	}
}

// Defect: the backoff of failed local failbacks (up to 30 s) also delayed
// a WriterSource's later decision: decide asks for no fenced switch before
// notBefore, and a decision did not reset it (state.go decideExternal).
// After a few failbacks to a lagging node had given up, a decision naming
// another node waited up to 30 s while the rest of the fleet had moved:
// two writers meanwhile. Expected: a new decision is switched to at once.
func TestReview3DecisionNotDelayedByFailbackBackoff(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	m.s.external = true
	m.round("0-1-1", "0-1-1", "0-1-1")
	m.down(0)
	m.wantWriter(1)
	for range 3 {
		m.round("0-2-9", "0-2-9", "0-2-9")
	}
	for range 5 { // a keeps failing to catch up within 1 s
		m.finishSwitch(true, false)
		m.now = m.s.notBefore
		m.ok(0, "0-2-9")
	}
	m.finishSwitch(true, false)
	if d := m.s.notBefore.Sub(m.now); d < 10*time.Second {
		t.Fatalf("backoff %v after 6 failed failbacks, want it grown", d)
	}
	m.record(m.s.decideExternal(2, false, 1, "fleet says c", m.now))
	if m.sw == nil || m.sw.to != 2 {
		t.Fatalf("decision for c: fenced = %+v, want a fenced switch b→c at once, not after the failback backoff", m.sw)
	}
}
