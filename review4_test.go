package dbrouter

// Adversarial review of the planned switchover, Drain and failover_wait
// (issue 18, 61e104a..6743e5a). Each TestReview4 test names a defect and
// states the expected behaviour; each failed on 6743e5a and is fixed on
// i18-review, but two guards of the fixes, which passed on 6743e5a:
// TestReview4FailoverBeforeHoldRefusesSwitch and
// TestReview4DrainBeforeFirstRound. TestReview4DrainSwitchesOnlyOffTheDrainedNode
// checks the mechanism of its fix (the race itself has no blocking point
// a test could hold open).

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
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

// Defect: the ReadOnly hook is not undone when the switch is refused after
// it ran. plannedSwitch undoes it only when the last catch-up fails; when
// the state machine then refuses the move (the target drained, Down or
// read-only meanwhile: "the cluster's health changed during the switch"),
// the old writer stays read-only while it is still the writer, and the
// cluster is left without a writable writer. SwitchoverOptions.ReadOnly
// promises to undo "if the switch then fails". Expected: [a=on a=off], and
// the writer stays a.
func TestReview4ReadOnlyHookUndoneWhenSwitchRefusedAfterIt(t *testing.T) {
	c, _ := newFakeClusterWithProbes(t, 3, Settings{}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls []string
	hook := func(_ context.Context, addr string, on bool) error {
		mu.Lock()
		calls = append(calls, addr+"="+onOff(on))
		mu.Unlock()
		if on {
			// The target is taken out of service meanwhile.
			if err := c.Drain(ctx, "b:3306", nil); err != nil {
				t.Errorf("drain b: %v", err)
			}
		}
		return nil
	}
	err := c.Switchover(ctx, "b:3306", &SwitchoverOptions{ReadOnly: hook})
	if !errors.Is(err, ErrSwitchoverRefused) {
		t.Errorf("switchover to a target drained during the switch: err = %v, want refused", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(calls, []string{"a:3306=on", "a:3306=off"}) {
		t.Errorf("hook calls %v, want [a:3306=on a:3306=off]: the writer a was left read-only", calls)
	}
	if w := c.WriterAddr(); w != "a:3306" {
		t.Errorf("writer %s, want a", w)
	}
}

// Defect: a hook that fails is not undone. An error from the hook does not
// say that read_only was not set (SET GLOBAL read_only=1 applied, then the
// connection broke or ctx ended before the answer); the switch is refused
// and the writer stays on a node that may now be read-only. Expected: the
// hook is called with false (harmless when nothing was set), and the error
// is refused.
func TestReview4FailedReadOnlyHookUndone(t *testing.T) {
	c, _ := newFakeClusterWithProbes(t, 2, Settings{}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var calls []string
	hook := func(_ context.Context, addr string, on bool) error {
		calls = append(calls, addr+"="+onOff(on))
		if on {
			return errors.New("invalid connection") // applied or not: unknown
		}
		return nil
	}
	err := c.Switchover(ctx, "b:3306", &SwitchoverOptions{ReadOnly: hook})
	if !errors.Is(err, ErrSwitchoverRefused) {
		t.Errorf("err = %v, want refused", err)
	}
	if !slices.Equal(calls, []string{"a:3306=on", "a:3306=off"}) {
		t.Errorf("hook calls %v, want [a:3306=on a:3306=off]", calls)
	}
}

// Defect: the read-only hook races the probes. Once the hook has made the
// old writer read-only, a probe of it that lands before the switch ends
// moves the writer at once by the failover rule (to the first writable
// node in order, b, whatever the switchover's target, and whether or not
// that node holds the old writer's last writes: firstEligible falls back to
// the first node), and switched then refuses the planned move because
// s.writer is no longer the old writer: the switchover to c returns
// ErrSwitchoverRefused ("health changed") while the writer did move — to b
// — and the held writes are released there. With the default 250 ms probe
// interval the window (the last catch-up) is hit by a few switchovers in a
// hundred. Expected: the fence held every write of this router and c
// reached a's final position, so the switch to c happens.
func TestReview4ProbeSeeingHookDoesNotDefeatSwitchover(t *testing.T) {
	c, srv := newFakeClusterWithProbes(t, 3, Settings{Health: HealthConfig{Interval: 5 * time.Millisecond}}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	hook := func(_ context.Context, addr string, on bool) error {
		srv[0].set(func(s *fakeServer) { s.readOnly = on })
		if on {
			// A probe of a sees it before the switch ends.
			eventually(t, "a probe to see a read-only", func() bool { return c.Stats().Nodes[0].ReadOnly })
		}
		return nil
	}
	if err := c.Switchover(ctx, "c:3306", &SwitchoverOptions{ReadOnly: hook}); err != nil {
		t.Errorf("switchover to c: %v", err)
	}
	if w := c.WriterAddr(); w != "c:3306" {
		t.Errorf("writer %s after a switchover to c", w)
	}
}

// Defect: a panic in the ReadOnly hook (or anywhere between hold and
// unhold) leaves the fence held and the switch "under way" forever: every
// later write waits at the fence until its own deadline, and every later
// Switchover, Drain of the writer and failback is refused. A caller that
// recovers panics (net/http does, for an admin endpoint) keeps a router
// that can no longer write. Expected: the panic reaches the caller, the
// fence is released and the switch ends, refused, with the writer where it
// was.
func TestReview4HookPanicReleasesFence(t *testing.T) {
	c, _ := newFakeClusterWithProbes(t, 2, Settings{}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the hook's panic did not reach the caller")
			}
		}()
		c.Switchover(ctx, "b:3306", &SwitchoverOptions{ReadOnly: func(context.Context, string, bool) error {
			panic("hook bug")
		}})
	}()
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := c.ExecContext(wctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Errorf("write after a panicking hook: %v (the fence stayed held)", err)
	}
	if err := c.Switchover(ctx, "b:3306", nil); err != nil {
		t.Errorf("switchover after a panicking hook: %v", err)
	}
}

// Defect: Switchover, Drain and Undrain work on a cluster that Router.Reload
// retired (or Close closed). A *Cluster kept by an admin tool across a
// reload drains a node of the dead cluster — nil error, while the live
// cluster keeps sending calls to the node under maintenance — and a
// switchover on a retired cluster whose transactions still run holds its
// fence, runs the ReadOnly hook against the real old writer (the live
// cluster then finds its writer read-only and fails over without a fence).
// Every other call on such a cluster fails with ErrClosed and ErrNotSent.
// Expected: the same for these, and the hook not called.
func TestReview4SwitchoverOnRetiredCluster(t *testing.T) {
	c, _ := newFakeClusterWithProbes(t, 2, Settings{}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	c.retiring.Store(true) // Router.Reload replaced it; a transaction still runs
	hooked := false
	err := c.Switchover(ctx, "b:3306", &SwitchoverOptions{ReadOnly: func(context.Context, string, bool) error {
		hooked = true
		return nil
	}})
	if !errors.Is(err, ErrClosed) || hooked {
		t.Errorf("switchover on a retired cluster: err = %v, hook called %v; want ErrClosed and no hook", err, hooked)
	}
	if err := c.Drain(ctx, "b:3306", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("drain on a retired cluster: err = %v, want ErrClosed", err)
	}
	if err := c.Undrain("b:3306"); !errors.Is(err, ErrClosed) {
		t.Errorf("undrain on a retired cluster: err = %v, want ErrClosed", err)
	}
}

// Defect: Drain checks whether the node is the writer on the published
// picker, outside c.mu, and drains it later under c.mu: a switch (a
// Switchover, a failback) that makes the node the writer in between lets
// setDrained drain the writer, and the state machine then moves the writer
// role off it at once, without the fence: writes in flight on the old
// writer and new writes on a node that may not hold them, together. The
// state machine's setDrained moves a drained writer at once. Expected:
// draining the writer never moves the role outside a fenced switch (Drain
// re-checks under c.mu; the state refuses to drain its writer).
func TestReview4DrainNeverMovesWriterUnfenced(t *testing.T) {
	m := newMachine(t, 2, Settings{})
	m.round("0-1-5", "0-1-5")
	m.wantWriter(0)
	m.record(m.s.setDrained(0, true, drainLocal, m.now))
	if m.s.writer != 0 {
		t.Errorf("setDrained(writer): writer moved to %d at once, without the fence (events %v)", m.s.writer, m.writerEvents())
	}

	// The same race at the cluster level: Switchover flips a and b while
	// Drain/Undrain of b run; every writer event must be a switchover's.
	var mu sync.Mutex
	var bad []string
	c, _ := newFakeClusterWithProbes(t, 2, Settings{Health: HealthConfig{Interval: time.Hour}}, func(ev Event) {
		if ev.Kind == EventWriter && ev.From != "" && !strings.HasPrefix(ev.Cause, "switchover:") {
			mu.Lock()
			bad = append(bad, ev.From+"→"+ev.To+": "+ev.Cause)
			mu.Unlock()
		}
	})
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	stop := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	wg.Go(func() {
		for time.Now().Before(stop) {
			c.Switchover(ctx, "", nil)
		}
	})
	wg.Go(func() {
		for time.Now().Before(stop) {
			c.Drain(ctx, "b:3306", nil)
			c.Undrain("b:3306")
		}
	})
	wg.Wait()
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("%d unfenced writer moves, first: %s", len(bad), bad[0])
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

// Defect (found by reading; the window has no blocking point, so no test
// reproduces it on 6743e5a): Drain picks the next writer while node i is
// the writer, releases c.mu, and then calls Switchover, which moves the
// writer off whatever node is the writer by then. A failover in between
// (i failed, b took over) makes Drain switch b→next with the ReadOnly hook
// flipping b, a node the caller never meant, or fail with "b is already
// the writer" though i no longer is. Expected: the switch Drain asks for
// moves the writer only off i; once another node is the writer, Drain just
// drains i.
func TestReview4DrainSwitchesOnlyOffTheDrainedNode(t *testing.T) {
	c, _ := newFakeClusterWithProbes(t, 3, Settings{}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	hooked := false
	opts := &SwitchoverOptions{ReadOnly: func(context.Context, string, bool) error { hooked = true; return nil }}
	// Drain(b) decided to move the writer off b, but a is the writer.
	if err := c.switchover(ctx, "c:3306", 1, opts); err != errNotFrom || hooked {
		t.Errorf("switch off b while a is the writer: err %v, hook called %v; want errNotFrom and no hook", err, hooked)
	}
	if w := c.WriterAddr(); w != "a:3306" {
		t.Errorf("writer %s, want a", w)
	}
}

// Defect: a switchover does not check that its target is writable now. The
// state's read_only flags are as old as the last probe, and the ReadOnly
// hook of the switchover before this one made its old writer read-only
// well within a probe interval: Switchover(b) then Switchover(a) at once
// (A→B and back, or a Drain then a Switchover back without making the node
// writable first) moves the writer to a read-only node, after making the
// old writer read-only too. The released writes are refused there and move
// by the read-only rule to the next writable node in order, which no
// catch-up checked, or fail with ErrNoNode. Expected: refused, saying the
// target is read-only; the writer stays b, not flipped.
func TestReview4SwitchoverChecksTargetWritableNow(t *testing.T) {
	c, srv := newFakeClusterWithProbes(t, 3, Settings{Health: HealthConfig{Interval: time.Hour}}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var calls []string
	hook := func(_ context.Context, addr string, on bool) error {
		calls = append(calls, addr+"="+onOff(on))
		srv[slices.Index(c.Nodes(), addr)].set(func(s *fakeServer) { s.readOnly = on })
		return nil
	}
	if err := c.Switchover(ctx, "b:3306", &SwitchoverOptions{ReadOnly: hook}); err != nil {
		t.Fatal(err)
	}
	// Back at once: a is read-only (the hook), no probe has seen it yet.
	err := c.Switchover(ctx, "a:3306", &SwitchoverOptions{ReadOnly: hook})
	if !errors.Is(err, ErrSwitchoverRefused) || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("switchover to a read-only a: err = %v, want refused, saying a is read-only", err)
	}
	if w := c.WriterAddr(); w != "b:3306" {
		t.Errorf("writer %s, want b", w)
	}
	if slices.Contains(calls, "b:3306=on") && !slices.Contains(calls, "b:3306=off") {
		t.Errorf("hook calls %v: b was left read-only", calls)
	}
}

// Guard for the fix of TestReview4ProbeSeeingHookDoesNotDefeatSwitchover:
// a planned switch may complete after the writer moved off the old writer
// only when it moved while the fence held every write. When it moved
// before (a failover during the first catch-up, outside the fence), writes
// already went to the new writer, and the target only caught up with the
// old one. Expected: refused, the writer stays where the failover put it.
func TestReview4FailoverBeforeHoldRefusesSwitch(t *testing.T) {
	c, srv := newFakeClusterWithProbes(t, 3, Settings{Health: HealthConfig{Interval: 5 * time.Millisecond}}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	srv[2].set(func(s *fakeServer) {
		s.execFn = func(_ context.Context, q string) error {
			if q != "SELECT MASTER_GTID_WAIT(?, ?)" {
				return nil
			}
			once.Do(func() {
				// The first catch-up: a goes read-only, the writer fails
				// over to b, and a write lands there.
				srv[0].set(func(s *fakeServer) { s.readOnly = true })
				eventually(t, "failover to b", func() bool { return c.Stats().Writer == "b:3306" })
				if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
					t.Errorf("write on b: %v", err)
				}
			})
			return nil
		}
	})
	err := c.Switchover(ctx, "c:3306", nil)
	if !errors.Is(err, ErrSwitchoverRefused) {
		t.Errorf("switchover after a failover outside the fence: err = %v, want refused", err)
	}
	if w := c.WriterAddr(); w != "b:3306" {
		t.Errorf("writer %s, want b (c never caught up with b)", w)
	}
}

// Guard for the Drain fixes: before the first probe round has ended (the
// picker offers node 0), draining node 0 is refused for that reason.
func TestReview4DrainBeforeFirstRound(t *testing.T) {
	c, srv := newFakeClusterWithProbes(t, 2, Settings{}, nil)
	srv[1].set(func(s *fakeServer) {
		s.connectFn = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	})
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Millisecond)
	defer cancel()
	if err := c.Drain(ctx, "a:3306", nil); !errors.Is(err, ErrSwitchoverRefused) || !strings.Contains(err.Error(), "first probe round") {
		t.Errorf("drain of node 0 before the first round: %v", err)
	}
}
