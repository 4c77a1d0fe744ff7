package dbrouter

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestProbeSchedulerBoundedAndFair probes 150 clusters × 3 nodes on one
// scheduler while 60 nodes hang on every probe until its timeout: the
// scheduler runs at most maxProbeWorkers+1 goroutines, and every other
// node keeps being probed (its cluster's first round ends, its node stays
// Up) while the hanging ones go Down.
func TestProbeSchedulerBoundedAndFair(t *testing.T) {
	sched := newProbeScheduler()
	t.Cleanup(sched.close) // after the clusters' own cleanups: registered first
	set := Settings{Health: HealthConfig{Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, FailAfter: 2, RecoverAfter: 3}}
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	var clusters []*Cluster
	hung := map[*Cluster]bool{}
	before := runtime.NumGoroutine()
	for k := range 150 {
		c, servers := newFakeClusterWithProbes(t, 3, set, nil)
		c.sched = sched
		if k%5 == 0 { // 30 clusters with two hanging nodes each
			servers[1].set(func(s *fakeServer) { s.connectFn = hang })
			servers[2].set(func(s *fakeServer) { s.connectFn = hang })
			hung[c] = true
		}
		clusters = append(clusters, c)
	}
	for _, c := range clusters {
		c.startProbers()
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range clusters {
		select {
		case <-c.ready:
		case <-time.After(time.Until(deadline)):
			t.Fatalf("cluster's first probe round did not end: %+v", c.Stats())
		}
	}
	if g := sched.goroutines(); g > maxProbeWorkers+1 {
		t.Errorf("scheduler runs %d goroutines, want at most %d", g, maxProbeWorkers+1)
	}
	// Let the hanging nodes go Down, then check every node.
	for time.Now().Before(deadline) {
		done := true
		for c := range hung {
			for _, n := range c.Stats().Nodes[1:] {
				done = done && n.State == StateDown
			}
		}
		if done {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range clusters {
		for i, n := range c.Stats().Nodes {
			want := StateUp
			if hung[c] && i > 0 {
				want = StateDown
			}
			if n.State != want {
				t.Errorf("%s node %d: %s, want %s (last error %q)", c.name, i, n.State, want, n.LastError)
			}
		}
	}
	t.Logf("goroutines: %d before, %d with 450 nodes probed (scheduler %d)", before, runtime.NumGoroutine(), sched.goroutines())
}
