package dbrouter

import (
	"errors"
	"log/slog"
	"testing"
	"time"
)

// newFakeClusterOver builds another cluster named "fake" over the same fake
// servers, as a Reload that changed the cluster's settings would: a new
// Cluster with its own state, pools and probers.
func newFakeClusterOver(t *testing.T, servers []*fakeServer, cc Settings) *Cluster {
	t.Helper()
	cfg := &Config{Defaults: cc, Clusters: map[string]ClusterConfig{"fake": {Nodes: []string{"x"}}}}
	log := slog.New(slog.DiscardHandler)
	c := &Cluster{name: "fake", settings: cfg.effective("fake"), log: log, events: newDispatcher(log, nil)}
	for _, s := range servers {
		c.nodes = append(c.nodes, newNodeWithConnector(s.addr, s, c.settings))
	}
	c.initHealth()
	t.Cleanup(func() {
		c.close()
		c.events.close()
	})
	return c
}

// TestReloadKeepsDrainedAndPinned: a cluster that a Reload replaces (here
// built as Reload builds it, over the same servers) keeps the nodes Drain
// took out of service and the writer a Switchover chose, and shows the
// drained node in NodeStats.Drained.
func TestReloadKeepsDrainedAndPinned(t *testing.T) {
	probes := Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}}
	old, srv := newFakeClusterWithProbes(t, 3, probes, nil)
	ctx := testCtx(t)
	if _, err := old.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := old.Switchover(ctx, "c", nil); err != nil {
		t.Fatal(err)
	}
	if err := old.Drain(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	if st := old.Stats(); !st.Nodes[1].Drained || st.Nodes[0].Drained || st.Writer != "c:3306" {
		t.Fatalf("before the reload: %+v", st)
	}

	changed := probes
	changed.Health.Timeout = 700 * time.Millisecond // another setting: a new cluster
	c := newFakeClusterOver(t, srv, changed)
	c.inheritPlanned(old)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Writer != "c:3306" || !st.Nodes[1].Drained || st.Nodes[0].Drained || st.Nodes[2].Drained {
		t.Fatalf("after the reload: writer %s, drained %v %v %v; want writer c:3306 and b drained",
			st.Writer, st.Nodes[0].Drained, st.Nodes[1].Drained, st.Nodes[2].Drained)
	}
	time.Sleep(100 * time.Millisecond) // ten probe intervals: a failback to a would have started
	if w := c.WriterAddr(); w != "c:3306" {
		t.Fatalf("writer %s after the reload: the pin was lost", w)
	}
	if err := c.Undrain("b"); err != nil {
		t.Fatal(err)
	}
	if c.Stats().Nodes[1].Drained {
		t.Fatal("b still drained after Undrain")
	}

	// A pinned writer that is no longer writable is not chosen, and the
	// pin goes: the first writable node takes the role.
	srv[2].set(func(s *fakeServer) { s.readOnly = true })
	c2 := newFakeClusterOver(t, srv, changed)
	c2.inheritPlanned(old)
	if _, err := c2.ExecContext(ctx, "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	if w := c2.WriterAddr(); w != "a:3306" {
		t.Fatalf("writer %s with the pinned node read-only, want a:3306", w)
	}
}

// TestReloadKeepsDrainedOnRouter: Router.Reload of a changed cluster keeps
// a drained node that is still configured drained, and forgets one that is
// no longer configured (without probes, so nothing is dialled).
func TestReloadKeepsDrainedOnRouter(t *testing.T) {
	cfg := &Config{
		Defaults: Settings{User: "app", Health: HealthConfig{Disabled: true}},
		Clusters: map[string]ClusterConfig{"c1": {Nodes: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}}},
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, _ := r.Cluster("c1")
	ctx := testCtx(t)
	for _, n := range []string{"127.0.0.1:2", "127.0.0.1:3"} {
		if err := c.Drain(ctx, n, nil); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Clusters["c1"] = ClusterConfig{Nodes: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:4"}}
	if err := r.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	c2, _ := r.Cluster("c1")
	if c2 == c {
		t.Fatal("the changed cluster was kept")
	}
	got := map[string]bool{}
	for _, n := range c2.Stats().Nodes {
		got[n.Addr] = n.Drained
	}
	want := map[string]bool{"127.0.0.1:1": false, "127.0.0.1:2": true, "127.0.0.1:4": false}
	for a, d := range want {
		if got[a] != d {
			t.Errorf("after Reload: %s drained %v, want %v (all: %v)", a, got[a], d, got)
		}
	}
}

// TestDrainTimeout: Drain waits for the calls in flight on the node to end;
// at DrainTimeout it returns an error matching ErrDrainTimeout and the node
// stays drained; once the calls have ended, Drain returns nil.
func TestDrainTimeout(t *testing.T) {
	c, _ := newFakeClusterWithProbes(t, 3, Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	// A call in flight on b: rows not yet closed hold a connection.
	rows, err := c.nodes[1].pool(poolRead).QueryContext(ctx, "SELECT @@global.gtid_current_pos")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.Drain(ctx, "b", &SwitchoverOptions{DrainTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrDrainTimeout) {
		t.Fatalf("Drain with a call in flight: %v, want ErrDrainTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Drain took %v with a 50ms bound", d)
	}
	t.Logf("error: %v", err)
	if !c.Stats().Nodes[1].Drained {
		t.Fatal("b not drained after ErrDrainTimeout")
	}
	done := make(chan error, 1)
	go func() { done <- c.Drain(ctx, "b", nil) }()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Drain returned %v while a call was in flight", err)
	default:
	}
	rows.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the call ended")
	}
}

// TestSinkSetDrained: a WriterSource drains and undrains nodes through the
// sink (NodeDrainer), but not the writer.
func TestSinkSetDrained(t *testing.T) {
	c, _ := newFakeClusterWithProbes(t, 3, Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}}, nil)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var d NodeDrainer = sink{c}
	if err := d.SetDrained("a:3306", true); err == nil || c.Stats().Nodes[0].Drained {
		t.Errorf("draining the writer: err %v, drained %v", err, c.Stats().Nodes[0].Drained)
	}
	if err := d.SetDrained("z:3306", true); err == nil {
		t.Error("draining an unknown node: no error")
	}
	if err := d.SetDrained("b:3306", true); err != nil || !c.Stats().Nodes[1].Drained {
		t.Fatalf("draining b: err %v", err)
	}
	if err := d.SetDrained("b:3306", false); err != nil || c.Stats().Nodes[1].Drained {
		t.Fatalf("undraining b: err %v", err)
	}
}
