package dbrouter

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestGTIDContains(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b  string
		mysql bool
		want  bool
	}{
		{a: "0-1-10,1-2-5", b: "0-1-10", want: true},
		{a: "0-1-10,1-2-5", b: "0-1-10,1-2-6", want: false},
		{a: "1-2-5", b: "0-1-1", want: false}, // a domain a has never seen
		{a: "0-1-10", b: "", want: true},
		{a: "", b: "0-1-1", want: false},
		{a: "0-3-10", b: "0-1-9", want: true}, // same domain, other server: seq_no decides
		{mysql: true, a: "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-10:12-20", b: "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-9", want: true},
		{mysql: true, a: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-10", b: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-11", want: false},
		{mysql: true, a: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-10:12-20", b: "3e11fa47-71ca-11e1-9e33-c80aa9429562:9-13", want: false},
		{mysql: true, a: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-10,\n2174b383-5441-11e8-b90a-c80aa9429562:1-3", b: "2174b383-5441-11e8-b90a-c80aa9429562:3", want: true},
	} {
		a, err := parseGTIDSet(tc.a, tc.mysql)
		if err != nil {
			t.Fatal(err)
		}
		b, err := parseGTIDSet(tc.b, tc.mysql)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.contains(b); got != tc.want {
			t.Errorf("%q contains %q = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	for _, bad := range []string{"0-1", "x-1-2", "0-1-2,"} {
		if _, err := parseGTIDSet(bad, false); err == nil {
			t.Errorf("parseGTIDSet(%q) accepted", bad)
		}
	}
}

func fastProbes() Settings {
	// One rate for every node: these tests are about the state machine;
	// the idle rate has its own (probe_idle_test.go).
	return Settings{Health: HealthConfig{Interval: 10 * time.Millisecond, IdleInterval: 10 * time.Millisecond, Timeout: 100 * time.Millisecond, FailAfter: 2, RecoverAfter: 3}}
}

type eventRecorder struct {
	mu  sync.Mutex
	evs []Event
}

func (r *eventRecorder) add(ev Event) { r.mu.Lock(); r.evs = append(r.evs, ev); r.mu.Unlock() }
func (r *eventRecorder) has(kind EventKind, node, from, to string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.evs {
		if ev.Kind == kind && ev.Node == node && ev.From == from && ev.To == to {
			return true
		}
	}
	return false
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProbeStateMachineAndFailback(t *testing.T) {
	t.Parallel()
	for _, failback := range []FailbackMode{FailbackAuto, FailbackNever} {
		t.Run(string(failback), func(t *testing.T) {
			t.Parallel()
			rec := &eventRecorder{}
			s := fastProbes()
			s.Failback = failback
			c, srv := newFakeClusterWithProbes(t, 3, s, rec.add)
			if c.WriterAddr() != "a:3306" { // starts the probers
				t.Fatalf("writer %q", c.WriterAddr())
			}
			srv[0].set(func(s *fakeServer) { s.connectErr = errDialRefused })
			eventually(t, "a Down", func() bool { return c.Stats().Nodes[0].State == StateDown })
			// Events are delivered asynchronously, after the state change.
			eventually(t, "events up→suspect→down", func() bool {
				return rec.has(EventState, "a:3306", "up", "suspect") && rec.has(EventState, "a:3306", "suspect", "down")
			})
			if c.WriterAddr() != "b:3306" {
				t.Errorf("writer %q, want b:3306", c.WriterAddr())
			}
			// No call is sent to a Down node.
			var tr Trace
			if _, err := c.ExecContext(WithTrace(context.Background(), &tr), "INSERT"); err != nil || tr.Node != "b:3306" || len(tr.Attempts) != 0 {
				t.Errorf("exec: %v, trace %s", err, fmtTrace(tr))
			}
			// b has moved on; a comes back behind it.
			srv[1].set(func(s *fakeServer) { s.gtid = "0-1-1,1-2-7" })
			srv[2].set(func(s *fakeServer) { s.gtid = "0-1-1,1-2-7" })
			srv[0].set(func(s *fakeServer) { s.connectErr = nil })
			eventually(t, "a Up", func() bool { return c.Stats().Nodes[0].State == StateUp })
			time.Sleep(100 * time.Millisecond) // 10 probe intervals
			if c.WriterAddr() != "b:3306" {
				t.Fatalf("writer %q while a is behind, want b:3306", c.WriterAddr())
			}
			srv[0].set(func(s *fakeServer) { s.gtid = "0-1-1,1-2-7" }) // caught up
			if failback == FailbackNever {
				time.Sleep(100 * time.Millisecond)
				if c.WriterAddr() != "b:3306" {
					t.Fatalf("failback never: writer %q, want b:3306", c.WriterAddr())
				}
				return
			}
			eventually(t, "failback to a", func() bool { return c.WriterAddr() == "a:3306" })
			eventually(t, "writer event b→a", func() bool { return rec.has(EventWriter, "a:3306", "b:3306", "a:3306") })
			st := c.Stats()
			if st.Writer != "a:3306" || st.Nodes[0].Role != "writer" || st.Nodes[1].Role != "replica" || st.Nodes[0].GTIDPosition != "0-1-1,1-2-7" {
				t.Errorf("stats: %+v", st)
			}
		})
	}
}

// TestFailoverSkipsStaleNode checks that when the writer fails, a node that
// came back behind it is passed over for one that has caught up.
func TestFailoverSkipsStaleNode(t *testing.T) {
	t.Parallel()
	c, srv := newFakeClusterWithProbes(t, 3, fastProbes(), nil)
	c.WriterAddr()
	srv[0].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	eventually(t, "writer b", func() bool { return c.WriterAddr() == "b:3306" })
	// b takes writes that c replicates; a comes back without them.
	srv[1].set(func(s *fakeServer) { s.gtid = "0-1-1,1-2-7" })
	srv[2].set(func(s *fakeServer) { s.gtid = "0-1-1,1-2-7" })
	srv[0].set(func(s *fakeServer) { s.connectErr = nil })
	eventually(t, "a Up", func() bool { return c.Stats().Nodes[0].State == StateUp })
	eventually(t, "b's and c's positions seen", func() bool {
		st := c.Stats()
		return st.Nodes[1].GTIDPosition == "0-1-1,1-2-7" && st.Nodes[2].GTIDPosition == "0-1-1,1-2-7"
	})
	// b fails: c, caught up, must win over a, which is first but behind.
	srv[1].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	eventually(t, "b not writer", func() bool { return c.WriterAddr() != "b:3306" })
	if w := c.WriterAddr(); w != "c:3306" {
		t.Fatalf("writer %q after b failed, want c:3306 (a is behind b)", w)
	}
}

func TestProbeReadOnlyDemotes(t *testing.T) {
	t.Parallel()
	rec := &eventRecorder{}
	c, srv := newFakeClusterWithProbes(t, 2, fastProbes(), rec.add)
	c.WriterAddr()
	srv[0].set(func(s *fakeServer) { s.readOnly = true })
	eventually(t, "writer b", func() bool { return c.WriterAddr() == "b:3306" })
	eventually(t, "read_only event", func() bool { return rec.has(EventReadOnly, "a:3306", "off", "on") })
}

func TestReadPolicies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy ReadPolicy
		want   map[string]bool
	}{
		{ReadWriter, map[string]bool{"a:3306": true}},
		{ReadAnyUp, map[string]bool{"a:3306": true}},
		{ReadRoundRobin, map[string]bool{"a:3306": true, "b:3306": true, "c:3306": true}},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			t.Parallel()
			s := fastProbes()
			s.ReadPolicy = tc.policy
			c, _ := newFakeClusterWithProbes(t, 3, s, nil)
			got := map[string]bool{}
			for range 30 {
				var node string
				if err := c.QueryRowContext(context.Background(), "SELECT node").Scan(&node); err != nil {
					t.Fatal(err)
				}
				got[node] = true
			}
			if len(got) != len(tc.want) {
				t.Errorf("reads served by %v, want %v", got, tc.want)
			}
			for n := range tc.want {
				if !got[n] {
					t.Errorf("reads served by %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestMaxLagKeepsReadsOffLaggingNodes(t *testing.T) {
	t.Parallel()
	s := fastProbes()
	s.ReadPolicy = ReadRoundRobin
	s.MaxLag = 50 * time.Millisecond
	c, srv := newFakeClusterWithProbes(t, 3, s, nil)
	c.WriterAddr()
	eventually(t, "b and c caught up", func() bool { st := c.Stats(); return st.Nodes[1].Lag >= 0 && st.Nodes[2].Lag >= 0 })
	srv[0].set(func(s *fakeServer) { s.gtid = "0-1-9" }) // the writer moves on; b and c stay at 0-1-1
	eventually(t, "b and c lagging", func() bool {
		st := c.Stats()
		return st.Nodes[1].Lag > 100*time.Millisecond && st.Nodes[2].Lag > 100*time.Millisecond
	})
	time.Sleep(20 * time.Millisecond)
	for range 10 {
		var node string
		if err := c.QueryRowContext(context.Background(), "SELECT node").Scan(&node); err != nil {
			t.Fatal(err)
		}
		if node != "a:3306" {
			t.Fatalf("read served by lagging node %s", node)
		}
	}
}
