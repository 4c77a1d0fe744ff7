package dbrouter

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSwitchoverMovesAndPins: a switchover moves the writer through the
// fence, the new writer stays (no failback) until the next switchover, and
// "" means the next node.
func TestSwitchoverMovesAndPins(t *testing.T) {
	var mu sync.Mutex
	var causes []string
	c, srv := newFakeClusterWithProbes(t, 3, Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}}, func(ev Event) {
		if ev.Kind == EventWriter {
			mu.Lock()
			causes = append(causes, ev.Cause)
			mu.Unlock()
		}
	})
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Switchover(ctx, "b", nil); err != nil { // "b" is "b:3306"
		t.Fatal(err)
	}
	if w := c.WriterAddr(); w != "b:3306" {
		t.Fatalf("writer after Switchover(b) = %s", w)
	}
	before := srv[1].execs.Load()
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil || srv[1].execs.Load() != before+1 {
		t.Fatalf("write after the switchover: err %v, not on b", err)
	}
	time.Sleep(100 * time.Millisecond) // ten probe intervals: a failback to a would have started
	if w := c.WriterAddr(); w != "b:3306" {
		t.Fatalf("writer %s: a failback undid the switchover", w)
	}
	if err := c.Switchover(ctx, "", nil); err != nil {
		t.Fatal(err)
	}
	if w := c.WriterAddr(); w != "c:3306" {
		t.Fatalf("writer after Switchover(\"\") from b = %s, want c (the next one)", w)
	}
	if err := c.Switchover(ctx, "a:3306", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the writer events", func() bool { mu.Lock(); defer mu.Unlock(); return len(causes) >= 4 })
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasPrefix(causes[3], "switchover: a:3306 caught up with c:3306") {
		t.Errorf("writer events %q", causes)
	}
}

// TestSwitchoverRefused: a target that cannot take the role, or does not
// catch up in time, or writes that do not drain, leave the writer where it
// was, with an error matching ErrSwitchoverRefused that says why.
func TestSwitchoverRefused(t *testing.T) {
	c, srv := newFakeClusterWithProbes(t, 3, Settings{}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	srv[2].set(func(s *fakeServer) { s.readOnly = true })
	eventually(t, "c read-only", func() bool { return c.Stats().Nodes[2].ReadOnly })
	srv[1].set(func(s *fakeServer) { s.lagging = true })

	cases := []struct {
		to, want string
		ctx      func() (context.Context, context.CancelFunc)
	}{
		{"z:3306", "not a node of the cluster", nil},
		{"a:3306", "already the writer", nil},
		{"c:3306", "read_only on", nil},
		{"b:3306", "did not reach", nil},
	}
	for _, tc := range cases {
		err := c.Switchover(ctx, tc.to, &SwitchoverOptions{CatchUpTimeout: 50 * time.Millisecond})
		if !errors.Is(err, ErrSwitchoverRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Switchover(%s): err = %v, want ErrSwitchoverRefused saying %q", tc.to, err, tc.want)
		}
		if w := c.WriterAddr(); w != "a:3306" {
			t.Fatalf("Switchover(%s) refused, but the writer moved to %s", tc.to, w)
		}
	}

	// An open transaction keeps writes from draining: a switchover whose
	// context ends first is refused, and writes go on on a.
	srv[1].set(func(s *fakeServer) { s.lagging = false })
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = c.Switchover(sctx, "b:3306", nil)
	cancel()
	if !errors.Is(err, ErrSwitchoverRefused) || !strings.Contains(err.Error(), "did not end in time") {
		t.Fatalf("switchover with an open transaction: err = %v", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	// With the transaction ending meanwhile, the same switchover succeeds.
	go func() {
		time.Sleep(30 * time.Millisecond)
		tx.Commit()
	}()
	if err := c.Switchover(ctx, "b:3306", nil); err != nil {
		t.Fatal(err)
	}
	if w := c.WriterAddr(); w != "b:3306" {
		t.Fatalf("writer %s", w)
	}
}

// TestSwitchoverReadOnlyHook: the hook makes the old writer read-only after
// the catch-up and is undone when the final catch-up fails.
func TestSwitchoverReadOnlyHook(t *testing.T) {
	c, srv := newFakeClusterWithProbes(t, 2, Settings{}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var calls []string
	hook := func(_ context.Context, addr string, on bool) error {
		calls = append(calls, addr+"="+onOff(on))
		return nil
	}
	if err := c.Switchover(ctx, "b:3306", &SwitchoverOptions{ReadOnly: hook}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(calls, []string{"a:3306=on"}) {
		t.Errorf("hook calls %v, want [a:3306=on]", calls)
	}
	// The final catch-up fails (the target lags after the flip): undone.
	calls = nil
	lagAfterFlip := func(ctx context.Context, addr string, on bool) error {
		calls = append(calls, addr+"="+onOff(on))
		srv[0].set(func(s *fakeServer) { s.lagging = on })
		return nil
	}
	err := c.Switchover(ctx, "a:3306", &SwitchoverOptions{ReadOnly: lagAfterFlip, CatchUpTimeout: 20 * time.Millisecond})
	if !errors.Is(err, ErrSwitchoverRefused) || !slices.Equal(calls, []string{"b:3306=on", "b:3306=off"}) {
		t.Errorf("err %v, hook calls %v; want refused and [b=on b=off]", err, calls)
	}
	if w := c.WriterAddr(); w != "b:3306" {
		t.Errorf("writer %s after a refused switchover, want b", w)
	}
}

// TestDrain: a drained node takes no call and is never the writer; draining
// the writer moves the role first; Undrain puts it back.
func TestDrain(t *testing.T) {
	c, srv := newFakeClusterWithProbes(t, 3, Settings{ReadPolicy: ReadAnyUp}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(ctx, "a:3306", nil); err != nil {
		t.Fatal(err)
	}
	if w := c.WriterAddr(); w != "b:3306" {
		t.Fatalf("writer after draining a = %s, want b", w)
	}
	a := srv[0].execs.Load()
	for range 5 {
		if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
			t.Fatal(err)
		}
		rows, err := c.QueryContext(ctx, "SELECT 1")
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	if srv[0].execs.Load() != a {
		t.Error("a drained node received calls")
	}
	// b fails: the writer goes to c, never to the drained a.
	srv[1].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	eventually(t, "writer c", func() bool { return c.WriterAddr() == "c:3306" })
	if err := c.Drain(ctx, "c:3306", nil); !errors.Is(err, ErrSwitchoverRefused) {
		t.Errorf("draining the last writable node: err = %v, want refused", err)
	}
	if err := c.Undrain("a:3306"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "failback to the undrained a", func() bool { return c.WriterAddr() == "a:3306" })
	if err := c.Drain(ctx, "nope:1", nil); err == nil || !strings.Contains(err.Error(), `"nope:1"`) {
		t.Errorf("drain of an unknown node: %v", err)
	}
}
