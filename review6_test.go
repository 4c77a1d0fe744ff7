package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Adversarial review of the drain work (issue 18): Drain's bound, Reload
// racing Drain/Undrain, a WriterSource naming a drained node.

// TestReview6DrainWriterOpenTxBounded: Drain of the writer while a
// transaction is open on it — here held by the very goroutine that calls
// Drain, with a ctx without deadline — must not hang: the wait for the
// writes in flight behind the fence is bounded by DrainTimeout, as the
// wait for the calls in flight on a drained replica is. The drain is then
// refused: the writer stays, undrained, and the fence is open again.
//
// Defect found: the fence hold of Drain's switchover was bounded by ctx
// only, so Drain(context.Background(), writer, {DrainTimeout: 200ms}) with
// a transaction open never returned, and every new write waited at the
// fence meanwhile.
func TestReview6DrainWriterOpenTxBounded(t *testing.T) {
	c, _ := newFakeClusterWithProbes(t, 3, Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- c.Drain(context.Background(), "a", &SwitchoverOptions{DrainTimeout: 200 * time.Millisecond})
	}()
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		tx.Rollback() // lets the stuck Drain go on
		<-done
		t.Fatal("Drain of the writer with a transaction open and DrainTimeout 200ms did not return within 5s")
	}
	if !errors.Is(err, ErrSwitchoverRefused) {
		t.Fatalf("Drain: %v, want ErrSwitchoverRefused", err)
	}
	t.Logf("Drain: %v", err)
	st := c.Stats()
	if st.Writer != "a:3306" || st.Nodes[0].Drained {
		t.Fatalf("after the refused drain: writer %s, a drained %v; want a, undrained", st.Writer, st.Nodes[0].Drained)
	}
	// The fence is open: a write with a short deadline goes through.
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := c.ExecContext(wctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatalf("write after the refused drain: %v", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// With the transaction ended, the drain goes through.
	if err := c.Drain(ctx, "a", nil); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Writer == "a:3306" || !st.Nodes[0].Drained {
		t.Fatalf("after the drain: writer %s, a drained %v", st.Writer, st.Nodes[0].Drained)
	}
}

// TestReview6DrainAfterReplaceNotLost: a Drain or Undrain that reaches a
// cluster after a Reload has carried its planned moves over to the new
// cluster must not report success while the new cluster — the one every
// call now uses — ignores it: it fails with an error matching ErrClosed
// (get the cluster from the router again), and the new cluster keeps what
// it inherited.
//
// Defect found: inheritPlanned copied the drained nodes once; a Drain on
// the old cluster after that (a Drain of the writer is seconds long: its
// switchover; or one that simply ran before the retire goroutine set the
// retiring flag) returned nil, and the node kept taking calls on the new
// cluster. Likewise Undrain returned nil and the node stayed drained.
func TestReview6DrainAfterReplaceNotLost(t *testing.T) {
	probes := Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}}
	old, srv := newFakeClusterWithProbes(t, 3, probes, nil)
	ctx := testCtx(t)
	if _, err := old.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := old.Drain(ctx, "c", nil); err != nil {
		t.Fatal(err)
	}
	changed := probes
	changed.Health.Timeout = 700 * time.Millisecond
	c := newFakeClusterOver(t, srv, changed)
	c.inheritPlanned(old)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}

	err := old.Drain(ctx, "b", nil)
	if err == nil && !c.Stats().Nodes[1].Drained {
		t.Errorf("Drain on the replaced cluster returned nil, but the cluster in use does not have b drained")
	} else if err != nil && !errors.Is(err, ErrClosed) {
		t.Errorf("Drain on the replaced cluster: %v, want an error matching ErrClosed", err)
	}
	err = old.Undrain("c")
	if err == nil && c.Stats().Nodes[2].Drained {
		t.Errorf("Undrain on the replaced cluster returned nil, but the cluster in use still has c drained")
	} else if err != nil && !errors.Is(err, ErrClosed) {
		t.Errorf("Undrain on the replaced cluster: %v, want an error matching ErrClosed", err)
	}
	if !c.Stats().Nodes[2].Drained {
		t.Error("the new cluster lost the drain it inherited")
	}
}

// TestReview6DrainOrigins: a node drained by the application
// (Cluster.Drain) and by a WriterSource (NodeDrainer, the fleet's drain
// key) stays drained until both have undrained it: the fleet's undrain
// does not put back in service a node the application drained, and the
// application's Undrain does not undo the fleet's drain. A Reload carries
// both over.
//
// Defect found: the cluster kept one flag; the fleet watch, finding the
// node already drained (SetDrained succeeds as a no-op), counted it as
// drained by itself and undrained it when the drain key went, against
// docs/fleet.md ("a node drained locally with Cluster.Drain stays drained
// there").
func TestReview6DrainOrigins(t *testing.T) {
	probes := Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}}
	c, srv := newFakeClusterWithProbes(t, 3, probes, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var d NodeDrainer = sink{c}
	drained := func(c *Cluster) bool { return c.Stats().Nodes[1].Drained }

	// Local first, then the source: the source's undrain leaves it drained.
	if err := c.Drain(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	if err := d.SetDrained("b:3306", true); err != nil {
		t.Fatal(err)
	}
	if err := d.SetDrained("b:3306", false); err != nil {
		t.Fatal(err)
	}
	if !drained(c) {
		t.Fatal("the source's undrain put back in service a node the application drained")
	}
	if err := c.Undrain("b"); err != nil || drained(c) {
		t.Fatalf("Undrain: %v, drained %v", err, drained(c))
	}

	// The source first, then the application: Undrain leaves the source's.
	if err := d.SetDrained("b:3306", true); err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Undrain("b"); err != nil || !drained(c) {
		t.Fatalf("Undrain of a node the source drained too: %v, drained %v; want still drained", err, drained(c))
	}

	// A Reload keeps the source's drain, which the source can then undo.
	changed := probes
	changed.Health.Timeout = 700 * time.Millisecond
	c2 := newFakeClusterOver(t, srv, changed)
	c2.inheritPlanned(c)
	if !drained(c2) {
		t.Fatal("the source's drain was not carried over by the Reload")
	}
	if err := (sink{c2}).SetDrained("b:3306", false); err != nil || drained(c2) {
		t.Fatalf("the source's undrain after the Reload: %v, drained %v", err, drained(c2))
	}
}

// TestReview6SourceDecisionOnDrainedNode: a WriterSource's decision that
// names a node drained on this router is applied — the routers of a fleet
// must write to the same node — and the node still takes no reads; the
// contract (Drain, WriterDecision.Writer) says so.
//
// Finding: Drain's doc said a drained node "never becomes the writer,
// until Undrain", but a decision made it the writer silently. The decision
// must win (refusing it would split the fleet's writes); the docs now say
// so and the router logs a warning.
func TestReview6SourceDecisionOnDrainedNode(t *testing.T) {
	src := &testSource{}
	c, srv := newFakeClusterWithSource(t, 3, Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}, ReadPolicy: ReadAnyUp}, nil, src)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	if err := src.sink.Decide(WriterDecision{Writer: "b:3306", Epoch: 1, Cause: "test"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b to be the writer", func() bool { return c.WriterAddr() == "b:3306" })
	before := srv[1].execs.Load()
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if srv[1].execs.Load() != before+1 {
		t.Error("the write did not go to the decided writer b")
	}
	st := c.Stats()
	if !st.Nodes[1].Drained {
		t.Error("b no longer shows drained")
	}
	before = srv[1].execs.Load()
	for range 6 {
		var s string
		if err := c.QueryRowContext(ctx, "SELECT 1").Scan(&s); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv[1].execs.Load() - before; n != 0 {
		t.Errorf("%d read(s) went to the drained b", n)
	}
}

// TestReview6DrainWaitsForOpenDBCalls: Drain waits for the calls in flight
// on the drained node made through Router.OpenDB and OpenReadDB too (gorm,
// sqlx, bun...): their connections are outside the node's pools.
//
// Defect found: awaitIdle counted only the pools' connections in use, so
// Drain returned nil — "nothing of this router runs on the node" — while a
// read through OpenReadDB still had its rows open there.
func TestReview6DrainWaitsForOpenDBCalls(t *testing.T) {
	c, _, _ := newRoutedFake(t, 3)
	ctx := testCtx(t)
	reads := sql.OpenDB(&clusterConnector{resolve: func() (*Cluster, error) { return c, nil }, read: true})
	defer reads.Close()
	rows, err := reads.QueryContext(ctx, "SELECT node")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var node string
	if !rows.Next() {
		t.Fatal(rows.Err())
	}
	if err := rows.Scan(&node); err != nil {
		t.Fatal(err)
	}
	if node != "a:3306" {
		t.Fatalf("the read went to %s, want the writer a", node)
	}
	// The rows are still open on a: drain it.
	err = c.Drain(ctx, "a", &SwitchoverOptions{DrainTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrDrainTimeout) {
		t.Fatalf("Drain of a with a read's rows open there through OpenReadDB: %v, want ErrDrainTimeout", err)
	}
	if st := c.Stats(); !st.Nodes[0].Drained || st.Writer == "a:3306" {
		t.Fatalf("a drained %v, writer %s", st.Nodes[0].Drained, st.Writer)
	}
	rows.Close()
	if err := c.Drain(ctx, "a", &SwitchoverOptions{DrainTimeout: time.Second}); err != nil {
		t.Fatalf("Drain once the rows are closed: %v", err)
	}
}

// TestReview6DrainUndrainStorm: Drain and Undrain of every node from
// several goroutines at once, under writes: no panic, no deadlock, the
// writer is never a drained node, and once every node is undrained a write
// goes through at once (the fence is not left held).
func TestReview6DrainUndrainStorm(t *testing.T) {
	c, _ := newFakeClusterWithProbes(t, 3, Settings{Health: HealthConfig{Interval: 5 * time.Millisecond}}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	nodes := []string{"a", "b", "c"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Value
	for g := range 4 {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				n := nodes[(g+k)%3]
				if (g+k)%2 == 0 {
					dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
					c.Drain(dctx, n, &SwitchoverOptions{DrainTimeout: 20 * time.Millisecond, CatchUpTimeout: 100 * time.Millisecond})
					cancel()
				} else {
					c.Undrain(n)
				}
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			c.ExecContext(wctx, "INSERT INTO t VALUES (2)")
			cancel()
			st := c.Stats()
			for _, n := range st.Nodes {
				if n.Addr == st.Writer && n.Drained {
					bad.Store("writer " + st.Writer + " drained")
				}
			}
		}
	})
	time.Sleep(time.Second)
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the Drain/Undrain goroutines did not end within 10s of the stop")
	}
	if b := bad.Load(); b != nil {
		t.Errorf("seen: %v", b)
	}
	for _, n := range nodes {
		if err := c.Undrain(n); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := c.ExecContext(wctx, "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatalf("write after the storm: %v (stats %+v)", err, c.Stats())
	}
}

// TestReview6DrainedWriterMovesThroughFence: a writer that is drained (a
// WriterSource's decision named a node drained on this router) still has
// writes in flight: moving the role off it — the source's next decision,
// or the local rule once the source hands the decision back — goes
// through the fence like any move off a healthy writer, so that no write
// of this router lands on the old writer after the new one took writes.
//
// Defect found: keeps() counted a drained writer as one that lost the
// role, so the next decision moved the writer at once, without the fence,
// while a transaction was still open on the old writer.
func TestReview6DrainedWriterMovesThroughFence(t *testing.T) {
	src := &testSource{}
	c, _ := newFakeClusterWithSource(t, 3, Settings{Health: HealthConfig{Interval: 10 * time.Millisecond, Timeout: 2 * time.Second}}, nil, src)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	if err := src.sink.Decide(WriterDecision{Writer: "b:3306", Epoch: 1, Cause: "test"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b to be the writer", func() bool { return c.WriterAddr() == "b:3306" })
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tx.node != "b:3306" {
		t.Fatalf("transaction on %s, want b", tx.node)
	}
	if err := src.sink.Decide(WriterDecision{Writer: "c:3306", Epoch: 2, Cause: "test"}); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if w := c.WriterAddr(); w != "b:3306" {
			t.Fatalf("the writer moved to %s while a transaction was open on the old writer b: no fence", w)
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c to be the writer once the transaction ended", func() bool { return c.WriterAddr() == "c:3306" })

	// The local rule: the source names drained b again, then hands the
	// decision back; the role leaves b through the fence too.
	if err := src.sink.Decide(WriterDecision{Writer: "b:3306", Epoch: 3, Cause: "test"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b to be the writer again", func() bool { return c.WriterAddr() == "b:3306" })
	tx, err = c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.sink.Decide(WriterDecision{Epoch: 4, Cause: "handed back"}); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if w := c.WriterAddr(); w != "b:3306" {
			t.Fatalf("the local rule moved the writer to %s while a transaction was open on the drained writer b: no fence", w)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the local rule to move the writer off the drained b", func() bool {
		w := c.WriterAddr()
		return w != "b:3306" && w != ""
	})
}

// TestReview6SwitchoverAcrossReload: a Switchover that ends after a Reload
// replaced its cluster (and carried over the planned moves it had then)
// does not report success for a move the cluster in use never learnt of:
// its error matches ErrClosed; one that ended before is carried over.
//
// Defect found: Switchover returned nil, while the new cluster's first
// probe round chose the first node in order, so the writer went back to
// the node the operator had just moved it off.
func TestReview6SwitchoverAcrossReload(t *testing.T) {
	probes := Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}}
	old, srv := newFakeClusterWithProbes(t, 3, probes, nil)
	ctx := testCtx(t)
	if _, err := old.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	inHook, release := make(chan struct{}), make(chan struct{})
	hook := func(ctx context.Context, addr string, on bool) error {
		if on {
			close(inHook)
			<-release
		}
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- old.Switchover(ctx, "b", &SwitchoverOptions{ReadOnly: hook}) }()
	<-inHook
	changed := probes
	changed.Health.Timeout = 700 * time.Millisecond
	c := newFakeClusterOver(t, srv, changed)
	c.inheritPlanned(old) // the Reload, while the switch is under way
	close(release)
	err := <-done
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if err == nil && c.WriterAddr() != "b:3306" {
		t.Fatalf("Switchover returned nil, but the cluster in use has writer %s, not b", c.WriterAddr())
	}
	if err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("Switchover across the Reload: %v, want an error matching ErrClosed", err)
	}
	t.Logf("Switchover: %v", err)
}
