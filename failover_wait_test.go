package dbrouter

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestFailoverWait: with failover_wait, a write that finds no node able to
// take it waits for the cluster's health to change instead of failing at
// once; it still ends at its own deadline, as not sent, and without the
// setting it fails at once.
func TestFailoverWait(t *testing.T) {
	set := Settings{FailoverWait: 2 * time.Second, Health: HealthConfig{Interval: 10 * time.Millisecond}}
	c, srv := newFakeClusterWithProbes(t, 2, set, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	// A manual switchover done in two steps: a is made read-only, and b
	// writable only 100 ms later.
	srv[1].set(func(s *fakeServer) { s.readOnly = true })
	eventually(t, "b read-only", func() bool { return c.Stats().Nodes[1].ReadOnly })
	srv[0].set(func(s *fakeServer) { s.readOnly = true })
	eventually(t, "no writer", func() bool { return c.WriterAddr() == "" })
	go func() {
		time.Sleep(100 * time.Millisecond)
		srv[1].set(func(s *fakeServer) { s.readOnly = false })
	}()
	start := time.Now()
	var tr Trace
	if _, err := c.ExecContext(WithTrace(ctx, &tr), "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatalf("write during the gap: %v", err)
	}
	if d := time.Since(start); d < 80*time.Millisecond || tr.Node != "b:3306" {
		t.Errorf("write returned after %v, served by %q; want it to wait for b", d, tr.Node)
	}

	// Its own deadline ends the wait: not sent, with the context's error.
	srv[1].set(func(s *fakeServer) { s.readOnly = true })
	eventually(t, "no writer again", func() bool { return c.WriterAddr() == "" })
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	start = time.Now()
	_, err := c.ExecContext(sctx, "INSERT INTO t VALUES (3)")
	cancel()
	if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("write with a 50 ms deadline: err = %v, want not sent and the deadline", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the deadline did not end the wait: %v", d)
	}

	// Without the setting: at once.
	c2, srv2 := newFakeClusterWithProbes(t, 1, Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}}, nil)
	srv2[0].set(func(s *fakeServer) { s.readOnly = true })
	eventually(t, "no writer", func() bool { return c2.WriterAddr() == "" })
	start = time.Now()
	if _, err := c2.ExecContext(ctx, "INSERT INTO t VALUES (4)"); !errors.Is(err, ErrNoNode) || time.Since(start) > 500*time.Millisecond {
		t.Errorf("without failover_wait: err = %v after %v, want ErrNoNode at once", err, time.Since(start))
	}
}
