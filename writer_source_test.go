package dbrouter

import (
	"errors"
	"strings"
	"sync"
	"testing"
)

// testSource is a WriterSource that hands its sink to the test.
type testSource struct {
	mu      sync.Mutex
	sink    WriterSink
	cluster string
	nodes   []string
	stopped bool
}

func (s *testSource) Watch(cluster string, nodes []string, sink WriterSink) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sink, s.cluster, s.nodes = sink, cluster, nodes
	return func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
	}
}

// TestWriterSourceDecides drives a cluster over fake servers with a
// WriterSource: the decided node becomes the writer through the fenced
// switch, writes then never fail over on their own, bad decisions are
// refused, and handing back restores the local rule.
func TestWriterSourceDecides(t *testing.T) {
	src := &testSource{}
	c, srv := newFakeClusterWithSource(t, 3, Settings{}, nil, src)
	ctx := testCtx(t)
	if src.sink == nil || src.cluster != "fake" || len(src.nodes) != 3 {
		t.Fatalf("Watch was not called with the cluster: %q %v", src.cluster, src.nodes)
	}
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if w := c.WriterAddr(); w != "a:3306" {
		t.Fatalf("writer before any decision = %s, want a (local rule)", w)
	}

	if err := src.sink.Decide(WriterDecision{Writer: "c:3306", Epoch: 7, Cause: "test"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the writer to move to c", func() bool { return c.WriterAddr() == "c:3306" })
	before := srv[2].execs.Load()
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if srv[2].execs.Load() != before+1 {
		t.Error("the write did not go to the decided writer c")
	}

	// c refuses connections: the write is not moved to a or b.
	srv[2].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	a, b := srv[0].execs.Load(), srv[1].execs.Load()
	_, err := c.ExecContext(ctx, "INSERT INTO t VALUES (3)")
	if !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrNoNode) {
		t.Fatalf("write with the decided writer down: err = %v, want not sent, no writer", err)
	}
	if srv[0].execs.Load() != a || srv[1].execs.Load() != b {
		t.Fatal("a write failed over on its own while a WriterSource decides")
	}

	// Bad decisions are refused and change nothing.
	if err := src.sink.Decide(WriterDecision{Writer: "z:3306", Epoch: 8}); err == nil || !strings.Contains(err.Error(), `"z:3306"`) {
		t.Errorf("unknown node: err = %v, want one naming it", err)
	}
	if err := src.sink.Decide(WriterDecision{Writer: "a:3306", Epoch: 6}); err == nil || !strings.Contains(err.Error(), "epoch 6") {
		t.Errorf("stale epoch: err = %v, want one naming it", err)
	}
	if w := c.WriterAddr(); w != "c:3306" {
		t.Errorf("writer after refused decisions = %s, want c", w)
	}

	// A decision for a while c is unreachable takes effect once c is down
	// for this router, or through the fence; either way a becomes the writer.
	srv[2].set(func(s *fakeServer) { s.connectErr = nil })
	if err := src.sink.Decide(WriterDecision{Writer: "a:3306", Epoch: 9}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the writer to move to a", func() bool { return c.WriterAddr() == "a:3306" })

	// Handing back: the local rule, with per-call failover again.
	if err := src.sink.Decide(WriterDecision{Epoch: 10}); err != nil {
		t.Fatal(err)
	}
	srv[0].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (4)"); err != nil {
		t.Fatalf("write after handing back, a down: %v (want it served by b)", err)
	}

	c.close()
	src.mu.Lock()
	defer src.mu.Unlock()
	if !src.stopped {
		t.Error("closing the cluster did not stop the source's watch")
	}
}

// TestWriterSourceDecideDuringClose checks that a decision racing with
// Close neither panics nor starts a switch on a closed cluster.
func TestWriterSourceDecideDuringClose(t *testing.T) {
	src := &testSource{}
	c, _ := newFakeClusterWithSource(t, 2, Settings{}, nil, src)
	if _, err := c.ExecContext(testCtx(t), "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for e := range uint64(50) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src.sink.Decide(WriterDecision{Writer: []string{"a:3306", "b:3306"}[e%2], Epoch: e})
		}()
	}
	c.close()
	wg.Wait()
}

// TestWriterSourceRefuses: a decision that refuses writes makes every write
// fail at once as not sent and with no node, each node listed, while reads
// still run; a refusal naming a writer is itself refused; the next decision
// with a writer ends it.
func TestWriterSourceRefuses(t *testing.T) {
	src := &testSource{}
	c, srv := newFakeClusterWithSource(t, 2, Settings{}, nil, src)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := src.sink.Decide(WriterDecision{Writer: "a:3306", Epoch: 1, Refuse: true}); err == nil {
		t.Fatal("a refusal naming a writer was accepted")
	}
	if err := src.sink.Decide(WriterDecision{Epoch: 1, Refuse: true, Cause: "etcd lost"}); err != nil {
		t.Fatal(err)
	}
	before := srv[0].execs.Load() + srv[1].execs.Load()
	_, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)")
	var nn *NoNodeError
	if !errors.Is(err, ErrNoNode) || !errors.Is(err, ErrNotSent) || !errors.As(err, &nn) || len(nn.Attempts) != 2 ||
		!strings.Contains(err.Error(), "refuses writes") || !strings.Contains(err.Error(), "etcd lost") {
		t.Fatalf("write while refused: err = %v, want a NoNodeError, not sent, listing both nodes as refused", err)
	}
	if n := srv[0].execs.Load() + srv[1].execs.Load(); n != before {
		t.Fatalf("a write reached a server while writes are refused (%d → %d)", before, n)
	}
	if w := c.WriterAddr(); w != "" {
		t.Errorf("writer while refused = %q, want none", w)
	}
	rows, err := c.QueryContext(ctx, "SELECT 1")
	if err != nil {
		t.Fatalf("read while writes are refused: %v", err)
	}
	rows.Close()
	if err := src.sink.Decide(WriterDecision{Writer: "b:3306", Epoch: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatalf("write after a decision ended the refusal: %v", err)
	}
}
