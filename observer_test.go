package dbrouter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu      sync.Mutex
	calls   []CallInfo
	events  []Event
	probes  []ProbeInfo
	reruns  []string
	waits   []time.Duration
	dropped int
	reloads []error
}

func (r *recorder) CallDone(_ context.Context, c CallInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}
func (r *recorder) Event(ev Event) { r.mu.Lock(); r.events = append(r.events, ev); r.mu.Unlock() }
func (r *recorder) ProbeDone(p ProbeInfo) {
	r.mu.Lock()
	r.probes = append(r.probes, p)
	r.mu.Unlock()
}
func (r *recorder) TxRerun(_, reason string) {
	r.mu.Lock()
	r.reruns = append(r.reruns, reason)
	r.mu.Unlock()
}
func (r *recorder) FenceWaited(_ string, d time.Duration) {
	r.mu.Lock()
	r.waits = append(r.waits, d)
	r.mu.Unlock()
}
func (r *recorder) EventDropped(Event) { r.mu.Lock(); r.dropped++; r.mu.Unlock() }
func (r *recorder) ReloadDone(err error) {
	r.mu.Lock()
	r.reloads = append(r.reloads, err)
	r.mu.Unlock()
}

func (r *recorder) lastCall(t *testing.T) CallInfo {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) == 0 {
		t.Fatal("no CallDone")
	}
	return r.calls[len(r.calls)-1]
}

// newObservedCluster is newFakeCluster with an Observer.
func newObservedCluster(t *testing.T, n int) (*Cluster, []*fakeServer, *recorder) {
	t.Helper()
	c, srvs := newFakeCluster(t, n, Settings{})
	rec := &recorder{}
	c.observer = rec
	c.fence.waited = func(d time.Duration) { rec.FenceWaited(c.name, d) }
	return c, srvs, rec
}

// TestObserverCallOutcomes checks what CallDone reports for each outcome
// class: the node, the failed attempts and the outcome.
func TestObserverCallOutcomes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		breakA    func(s *fakeServer)
		breakAll  bool
		want      Outcome
		wantNode  string
		wantTried int
	}{
		{name: "ok", breakA: func(*fakeServer) {}, want: OutcomeOK, wantNode: "a:3306"},
		{name: "not sent on a, retried on b", breakA: func(s *fakeServer) { s.connectErr = errDialRefused },
			want: OutcomeOK, wantNode: "b:3306", wantTried: 1},
		{name: "outcome unknown", breakA: func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn },
			want: OutcomeUnknown, wantNode: "a:3306"},
		{name: "server error", breakA: func(s *fakeServer) { s.execErr = &mysql.MySQLError{Number: 1062, Message: "dup"} },
			want: OutcomeServerError, wantNode: "a:3306"},
		{name: "no node", breakA: func(s *fakeServer) { s.connectErr = errDialRefused }, breakAll: true,
			want: OutcomeNoNode, wantTried: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, srvs, rec := newObservedCluster(t, 2)
			for i, s := range srvs {
				if i == 0 || tc.breakAll {
					s.set(tc.breakA)
				}
			}
			_, err := c.ExecContext(context.Background(), "INSERT x")
			got := rec.lastCall(t)
			if got.Outcome != tc.want || got.Node != tc.wantNode || len(got.Attempts) != tc.wantTried {
				t.Fatalf("CallDone = outcome %q node %q attempts %v; want %q %q %d (err %v)",
					got.Outcome, got.Node, got.Attempts, tc.want, tc.wantNode, tc.wantTried, err)
			}
			if got.Outcome != OutcomeOf(err) || got.Err != err || got.Cluster != "fake" || got.Op != OpExec || got.Duration <= 0 {
				t.Errorf("CallDone = %+v for err %v", got, err)
			}
		})
	}
}

// TestObserverEventsAndPools checks that a writer change reaches Event
// once, and that Stats reports the pools a call opened.
func TestObserverEventsAndPools(t *testing.T) {
	t.Parallel()
	c, srvs, rec := newObservedCluster(t, 2)
	srvs[0].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	if _, err := c.ExecContext(context.Background(), "INSERT x"); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	var writers []Event
	for _, ev := range rec.events {
		if ev.Kind == EventWriter {
			writers = append(writers, ev)
		}
	}
	rec.mu.Unlock()
	if len(writers) != 1 || writers[0].To != "b:3306" {
		t.Errorf("writer events %v, want one to b:3306", writers)
	}
	st := c.Stats()
	if p := st.Nodes[1].Pools; len(p) != 1 || p[0].Pool != "write" || p[0].OpenConnections < 1 {
		t.Errorf("node b pools %+v, want the write pool with a connection", p)
	}
}

// TestObserverTxRerun checks that a transaction re-run after a deadlock is
// reported with its reason, and only for runs that follow.
func TestObserverTxRerun(t *testing.T) {
	t.Parallel()
	c, srvs, rec := newObservedCluster(t, 2)
	var n int
	srvs[0].set(func(s *fakeServer) {
		s.execFn = func(context.Context, string) error {
			if n++; n == 1 {
				return &mysql.MySQLError{Number: 1213, Message: "deadlock"}
			}
			return nil
		}
	})
	err := c.RunInTx(context.Background(), nil, func(ctx context.Context, tx *Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE x")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reruns) != 1 || rec.reruns[0] != TxRerunDeadlock {
		t.Errorf("reruns %v, want [%s]", rec.reruns, TxRerunDeadlock)
	}
}

// TestObserverFenceWait checks that a write held at the fence reports its
// wait.
func TestObserverFenceWait(t *testing.T) {
	t.Parallel()
	c, _, rec := newObservedCluster(t, 2)
	if !c.fence.hold(context.Background()) {
		t.Fatal("hold failed")
	}
	done := make(chan error)
	go func() {
		_, err := c.ExecContext(context.Background(), "INSERT x")
		done <- err
	}()
	for c.inflight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // from enter to the fence: a few instructions
	c.fence.unhold()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.waits) != 1 || rec.waits[0] <= 0 {
		t.Errorf("fence waits %v, want one", rec.waits)
	}
}

// TestObserverDroppedAndReload checks EventDropped and ReloadDone through
// a Router.
func TestObserverDroppedAndReload(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	block := make(chan struct{})
	c := &Cluster{name: "fake", log: slog.New(slog.DiscardHandler), observer: rec,
		events: newDispatcher(slog.New(slog.DiscardHandler), func(Event) { <-block })}
	for range eventBuffer + 10 {
		c.mu.Lock()
		c.emit([]Event{{Kind: EventState}})
		c.unlock()
	}
	close(block)
	c.events.close()
	if rec.dropped < 9 || len(rec.events) != eventBuffer+10 {
		t.Errorf("dropped %d, events %d; want at least 9 dropped, every event reported", rec.dropped, len(rec.events))
	}

	cfg := &Config{Defaults: Settings{User: "u"}, Clusters: map[string]ClusterConfig{"c": {Nodes: []string{"127.0.0.1:1"}}}, Observer: rec}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	bad := cfg.Clone()
	bad.Clusters["c"] = ClusterConfig{}
	if r.Reload(bad) == nil {
		t.Fatal("Reload of a cluster without nodes succeeded")
	}
	if len(rec.reloads) != 2 || rec.reloads[0] != nil || rec.reloads[1] == nil {
		t.Errorf("reloads %v, want [nil, error]", rec.reloads)
	}
}

// TestOutcomeOf checks the outcome class of each kind of error.
func TestOutcomeOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want Outcome
	}{
		{nil, OutcomeOK},
		{&NoNodeError{Cluster: "c", Attempts: []*NodeError{{Node: "a", Class: ClassOutcomeUnknown}}}, OutcomeNoNode},
		{fmt.Errorf("wrapped: %w", &OutcomeUnknownError{}), OutcomeUnknown},
		{&notSentError{err: context.Canceled}, OutcomeNotSent},
		{errors.New("duplicate key"), OutcomeServerError},
	} {
		if got := OutcomeOf(tc.err); got != tc.want {
			t.Errorf("OutcomeOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestJoinObservers checks that joined Observers each get every
// measurement, and that nil ones are left out.
func TestJoinObservers(t *testing.T) {
	t.Parallel()
	if JoinObservers(nil, nil) != nil {
		t.Error("JoinObservers(nil, nil) is not nil")
	}
	a, b := &recorder{}, &recorder{}
	if JoinObservers(nil, a) != Observer(a) {
		t.Error("JoinObservers(nil, a) is not a")
	}
	j := JoinObservers(a, nil, b)
	j.CallDone(context.Background(), CallInfo{Cluster: "c"})
	j.Event(Event{})
	j.ProbeDone(ProbeInfo{})
	j.TxRerun("c", TxRerunDeadlock)
	j.FenceWaited("c", time.Millisecond)
	j.EventDropped(Event{})
	j.ReloadDone(nil)
	for _, r := range []*recorder{a, b} {
		if len(r.calls) != 1 || len(r.events) != 1 || len(r.probes) != 1 || len(r.reruns) != 1 ||
			len(r.waits) != 1 || r.dropped != 1 || len(r.reloads) != 1 {
			t.Errorf("recorder got %+v", r)
		}
	}
}
