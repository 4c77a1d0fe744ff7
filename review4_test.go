package dbrouter

// Adversarial review of the planned switchover, Drain and failover_wait
// (issue 18, 61e104a..6743e5a). Each TestReview4 test names a defect and
// states the expected behaviour; each failed on 6743e5a.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// Defect: failover_wait busy-loops. waitForNode waits for the picker it
// tried to be replaced, but the failed attempts themselves report to the
// state machine (reportCall), which publishes a new picker and closes the
// old one's channel every time, even when nothing changed. So the wait
// ends at once, the call tries again, reports again, and so on: a hot loop
// of dials and c.mu locks for the whole failover_wait, per waiting call.
// Expected: a call waits for a change that its own reports did not cause
// (a handful of attempts, not thousands).
func TestReview4FailoverWaitDoesNotSpinOnItsOwnReports(t *testing.T) {
	c, srv := newFakeCluster(t, 2, Settings{FailoverWait: 300 * time.Millisecond})
	var dials atomic.Int64
	for _, s := range srv {
		s.set(func(s *fakeServer) {
			s.connectFn = func(context.Context) error { dials.Add(1); return errDialRefused }
		})
	}
	start := time.Now()
	_, err := c.ExecContext(testCtx(t), "INSERT INTO t VALUES (1)")
	if !errors.Is(err, ErrNoNode) || !errors.Is(err, ErrNotSent) {
		t.Fatalf("err = %v, want a not-sent ErrNoNode", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("returned after %v, want it to wait failover_wait", d)
	}
	if n := dials.Load(); n > 20 {
		t.Errorf("%d dials during one call's failover_wait: the wait spins on its own reports", n)
	}
}

// Defect: a call waiting in failover_wait is not woken by Close: the last
// picker is never replaced, so the call waits out failover_wait and then
// fails with ErrNoNode, not ErrClosed. Expected: it ends at once with an
// error matching ErrClosed and ErrNotSent.
func TestReview4FailoverWaitEndsAtClose(t *testing.T) {
	c, srv := newFakeClusterWithProbes(t, 1, Settings{FailoverWait: 5 * time.Second, Health: HealthConfig{Interval: 10 * time.Millisecond}}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	srv[0].set(func(s *fakeServer) { s.readOnly = true })
	eventually(t, "no writer", func() bool { return c.WriterAddr() == "" })
	done := make(chan error, 1)
	go func() {
		_, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)")
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	c.close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotSent) {
			t.Errorf("err = %v after %v, want ErrClosed and ErrNotSent", err, time.Since(start))
		}
	case <-time.After(time.Second):
		t.Error("a call waiting for a node outlived Close by a second")
		<-done
	}
}
