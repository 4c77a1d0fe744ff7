package dbrouter

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countProbes makes every server count the probe queries it answers.
func countProbes(srv []*fakeServer) []*atomic.Int64 {
	counts := make([]*atomic.Int64, len(srv))
	for i, s := range srv {
		n := &atomic.Int64{}
		counts[i] = n
		s.set(func(s *fakeServer) {
			s.execFn = func(_ context.Context, q string) error {
				if q == probeMariaDB {
					n.Add(1)
				}
				return nil
			}
		})
	}
	return counts
}

func sumCounts(counts []*atomic.Int64) int64 {
	var n int64
	for _, c := range counts {
		n += c.Load()
	}
	return n
}

// TestIdleClusterProbedAtIdleRate: a cluster no call uses is probed every
// IdleInterval, opens no pool for a warm connection, and the first call
// probes every node at once and brings the rate back to Interval.
func TestIdleClusterProbedAtIdleRate(t *testing.T) {
	set := Settings{Health: HealthConfig{Interval: 20 * time.Millisecond, IdleInterval: 150 * time.Millisecond, Timeout: 100 * time.Millisecond}}
	c, srv := newFakeClusterWithProbes(t, 3, set, nil)
	counts := countProbes(srv)
	if w := c.WriterAddr(); w != "a:3306" {
		t.Fatalf("writer %q", w)
	}
	// No call: twice IdleInterval, then the idle rate.
	time.Sleep(2*150*time.Millisecond + 100*time.Millisecond)
	n0 := sumCounts(counts)
	time.Sleep(600 * time.Millisecond)
	idle := sumCounts(counts) - n0
	// 3 nodes every 150 ms for 600 ms: about 12; every 20 ms it would be 90.
	if idle > 30 {
		t.Errorf("%d probes in 600 ms of an idle cluster, want about 12 (every 150 ms), not 90 (every 20 ms)", idle)
	}
	for i, n := range c.nodes {
		if n.pools[poolWrite].db.Load() != nil {
			t.Errorf("node %d: an idle cluster opened a pool for a warm connection", i)
		}
	}
	// The first call wakes the probes: every node probed at once.
	before := make([]int64, len(counts))
	for i, n := range counts {
		before[i] = n.Load()
	}
	if _, err := c.ExecContext(testCtx(t), "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every node probed after the first call", func() bool {
		for i, n := range counts {
			if n.Load() == before[i] {
				return false
			}
		}
		return true
	})
	// Calls keep coming: the rate is Interval again.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				c.ExecContext(context.Background(), "INSERT INTO t VALUES (1)")
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	n1 := sumCounts(counts)
	time.Sleep(600 * time.Millisecond)
	busy := sumCounts(counts) - n1
	close(stop)
	<-done
	if busy < 45 {
		t.Errorf("%d probes in 600 ms of a cluster in use, want about 90 (every 20 ms)", busy)
	}
	t.Logf("probes in 600 ms: idle %d, in use %d", idle, busy)
}

// TestIdleIntervalOff: an IdleInterval not above Interval keeps every
// node on Interval.
func TestIdleIntervalOff(t *testing.T) {
	set := Settings{Health: HealthConfig{Interval: 20 * time.Millisecond, IdleInterval: 20 * time.Millisecond, Timeout: 100 * time.Millisecond}}
	c, srv := newFakeClusterWithProbes(t, 2, set, nil)
	counts := countProbes(srv)
	c.WriterAddr()
	time.Sleep(200 * time.Millisecond)
	n0 := sumCounts(counts)
	time.Sleep(400 * time.Millisecond)
	if n := sumCounts(counts) - n0; n < 20 {
		t.Errorf("%d probes in 400 ms with idle_interval = interval (20 ms), want about 40", n)
	}
}

// TestIdleClusterSuspectNodeAtInterval: a node that fails a probe is
// probed every Interval, idle cluster or not.
func TestIdleClusterDownNodeAtInterval(t *testing.T) {
	set := Settings{Health: HealthConfig{Interval: 20 * time.Millisecond, IdleInterval: time.Hour, Timeout: 50 * time.Millisecond}}
	c, srv := newFakeClusterWithProbes(t, 2, set, nil)
	c.WriterAddr()
	time.Sleep(50 * time.Millisecond)
	srv[1].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	c.nodes[1].closeConns()
	// The idle cluster's nodes may be due in an hour; a call wakes them.
	c.ExecContext(testCtx(t), "INSERT INTO t VALUES (1)")
	eventually(t, "b down", func() bool { return c.Stats().Nodes[1].State == StateDown })
	srv[1].set(func(s *fakeServer) { s.connectErr = nil })
	// Down: probed every Interval, so it comes back within RecoverAfter
	// intervals, not an hour.
	eventually(t, "b up", func() bool { return c.Stats().Nodes[1].State == StateUp })
}

func TestIdleIntervalConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte("defaults: {user: app}\nclusters:\n  c: {nodes: [\"127.0.0.1:3306\"], health: {idle_interval: 5s}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.effective("c").Health.IdleInterval; got != 5*time.Second {
		t.Errorf("idle_interval %v, want 5s", got)
	}
	if got := (&Config{Clusters: map[string]ClusterConfig{"c": {Nodes: []string{"h:1"}}}}).effective("c").Health.IdleInterval; got != DefaultIdleInterval {
		t.Errorf("default idle_interval %v, want %v", got, DefaultIdleInterval)
	}
	_, err = ParseConfig([]byte("defaults: {user: app}\nclusters:\n  c: {nodes: [\"127.0.0.1:3306\"], health: {idle_interval: -1s}}\n"))
	if err == nil || !strings.Contains(err.Error(), "idle_interval") || !strings.Contains(err.Error(), "-1s") {
		t.Errorf("negative idle_interval: %v, want an error naming the field and the value", err)
	}
}

// TestIdleRateOffWithMaxLag: reads that skip lagging replicas need each
// probe's renewal of which are fresh: such a cluster is probed every
// Interval, idle or not.
func TestIdleRateOffWithMaxLag(t *testing.T) {
	set := Settings{ReadPolicy: ReadRoundRobin, MaxLag: 50 * time.Millisecond,
		Health: HealthConfig{Interval: 20 * time.Millisecond, IdleInterval: time.Hour, Timeout: 100 * time.Millisecond}}
	c, srv := newFakeClusterWithProbes(t, 2, set, nil)
	counts := countProbes(srv)
	c.WriterAddr()
	time.Sleep(100 * time.Millisecond)
	n0 := sumCounts(counts)
	time.Sleep(400 * time.Millisecond)
	if n := sumCounts(counts) - n0; n < 20 {
		t.Errorf("%d probes in 400 ms of an idle cluster with max_lag, want about 40 (every 20 ms)", n)
	}
}

func TestProbeEarly(t *testing.T) {
	for _, tc := range []struct{ iv, want time.Duration }{
		{10 * time.Millisecond, time.Millisecond},
		{250 * time.Millisecond, 25 * time.Millisecond},
		{time.Second, 100 * time.Millisecond},
		{time.Hour, 100 * time.Millisecond},
	} {
		if got := probeEarly(tc.iv); got != tc.want {
			t.Errorf("probeEarly(%v) = %v, want %v", tc.iv, got, tc.want)
		}
	}
}
