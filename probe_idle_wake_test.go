package dbrouter

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleWakeWithCallInFlight: the first call on an idle cluster probes
// every node at once (docs/health.md, "Idle clusters") even when it lands
// on a node where an older call still runs (a long query: the node's
// stall watch is armed already, so the new call does not arm it).
func TestIdleWakeWithCallInFlight(t *testing.T) {
	const idle = time.Second
	set := Settings{Health: HealthConfig{Interval: 20 * time.Millisecond, IdleInterval: idle, Timeout: 100 * time.Millisecond}}
	c, srv := newFakeClusterWithProbes(t, 3, set, nil)
	counts := make([]*atomic.Int64, len(srv))
	release := make(chan struct{})
	for i, s := range srv {
		n := &atomic.Int64{}
		counts[i] = n
		s.set(func(s *fakeServer) {
			s.execFn = func(ctx context.Context, q string) error {
				switch q {
				case probeMariaDB:
					n.Add(1)
				case "SELECT long":
					select {
					case <-release:
					case <-ctx.Done():
					}
				}
				return nil
			}
		})
	}
	if w := c.WriterAddr(); w != "a:3306" {
		t.Fatalf("writer %q", w)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.ExecContext(context.Background(), "SELECT long") // on the writer, a
	}()
	defer func() { close(release); <-done }()
	// No new call for twice idle, then one idle for b and c to be on it.
	time.Sleep(3*idle + 200*time.Millisecond)
	b, cc := counts[1].Load(), counts[2].Load()
	if _, err := c.ExecContext(testCtx(t), "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if counts[1].Load() == b || counts[2].Load() == cc {
		t.Errorf("150 ms after the first call on an idle cluster, b probed %d and c %d times: want every node probed at once (idle rate %v)",
			counts[1].Load()-b, counts[2].Load()-cc, idle)
	}
}

// TestIdleRateNotWhileWritesFindNoWriter: while no node is writable
// (every node read-only: a switchover between the demotion and the
// promotion), writes are refused without an attempt on any node. They are
// calls all the same: the cluster is in use, its nodes are probed every
// Interval, and the node made writable is found within a few Intervals,
// not after up to IdleInterval.
func TestIdleRateNotWhileWritesFindNoWriter(t *testing.T) {
	const idle = time.Second
	set := Settings{Health: HealthConfig{Interval: 20 * time.Millisecond, IdleInterval: idle, Timeout: 100 * time.Millisecond}}
	c, srv := newFakeClusterWithProbes(t, 2, set, nil)
	counts := countProbes(srv)
	if w := c.WriterAddr(); w != "a:3306" {
		t.Fatalf("writer %q", w)
	}
	srv[0].set(func(s *fakeServer) { s.readOnly = true })
	srv[1].set(func(s *fakeServer) { s.readOnly = true })
	eventually(t, "no writer", func() bool { return c.WriterAddr() == "" })
	// Writes keep coming, every 20 ms, for longer than twice idle: each
	// is refused at once (no writer, no failover_wait).
	stop := make(chan struct{})
	done := make(chan struct{})
	var refused atomic.Int64
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if _, err := c.ExecContext(context.Background(), "INSERT INTO t VALUES (1)"); err != nil {
					refused.Add(1)
				}
			}
		}
	}()
	defer func() { close(stop); <-done }()
	time.Sleep(2*idle + 500*time.Millisecond)
	n0 := counts[1].Load()
	time.Sleep(500 * time.Millisecond)
	if n := counts[1].Load() - n0; n < 10 {
		t.Errorf("b probed %d times in 500 ms while %d writes found no writer: want about 25 (every 20 ms), not the idle rate (every %v)", n, refused.Load(), idle)
	}
}

// TestIdleRateNotWhileACallWaitsForANode: one write waits (failover_wait)
// for a writable node, and no other call comes: the cluster is in use
// while it waits, so its nodes are probed every Interval and the write
// gets the node made writable within a few Intervals.
func TestIdleRateNotWhileACallWaitsForANode(t *testing.T) {
	const idle = time.Second
	set := Settings{FailoverWait: 10 * time.Second,
		Health: HealthConfig{Interval: 20 * time.Millisecond, IdleInterval: idle, Timeout: 100 * time.Millisecond}}
	c, srv := newFakeClusterWithProbes(t, 2, set, nil)
	counts := countProbes(srv)
	if w := c.WriterAddr(); w != "a:3306" {
		t.Fatalf("writer %q", w)
	}
	srv[0].set(func(s *fakeServer) { s.readOnly = true })
	srv[1].set(func(s *fakeServer) { s.readOnly = true })
	eventually(t, "no writer", func() bool { return c.WriterAddr() == "" })
	errc := make(chan error, 1)
	go func() {
		_, err := c.ExecContext(context.Background(), "INSERT INTO t VALUES (1)")
		errc <- err
	}()
	time.Sleep(2*idle + 500*time.Millisecond)
	n0 := counts[1].Load()
	time.Sleep(500 * time.Millisecond)
	if n := counts[1].Load() - n0; n < 10 {
		t.Errorf("b probed %d times in 500 ms while a write waited for a node: want about 25 (every 20 ms), not the idle rate (every %v)", n, idle)
	}
	srv[1].set(func(s *fakeServer) { s.readOnly = false })
	start := time.Now()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("the waiting write took %v after b became writable", took)
	}
}
