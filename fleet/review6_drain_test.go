package fleet

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Adversarial review of the fleet-wide drain (issue 18) with a real
// dbrouter.Router as the coordinator's WriterSource user. Health probes are
// off and the nodes are unused loopback ports: nothing is dialled, and the
// decider has no say (no router has probed), so only the drain keys act.

var review6Nodes = []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}

// review6Config is the router's configuration; timeout tells two versions
// apart (a Reload with another one replaces the cluster).
func review6Config(coord *Coordinator, timeout time.Duration) *dbrouter.Config {
	return &dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Health: dbrouter.HealthConfig{Disabled: true}, ConnectTimeout: timeout},
		Clusters: map[string]dbrouter.ClusterConfig{"c1": {Nodes: review6Nodes}},
		// The coordinator decides nothing here (no view counts), but it
		// applies the drain keys.
		WriterSource: coord,
	}
}

// review6Router opens a router whose clusters are watched by a coordinator
// on cli, closed when the test ends.
func review6Router(t *testing.T, cli *clientv3.Client, pfx string) (*dbrouter.Router, *Coordinator) {
	t.Helper()
	coord, err := New(cli, Options{Prefix: pfx, RouterID: "r1", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	coord.viewPoll = 20 * time.Millisecond
	r, err := dbrouter.Open(review6Config(coord, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		coord.Close()
	})
	return r, coord
}

// drainedOn reports whether the router's cluster c1 has node drained.
func drainedOn(r *dbrouter.Router, node string) bool {
	c, err := r.Cluster("c1")
	if err != nil {
		return false
	}
	for _, n := range c.Stats().Nodes {
		if n.Addr == node {
			return n.Drained
		}
	}
	return false
}

// TestReview6FleetUndrainKeepsLocalDrain: a node the application drained
// with Cluster.Drain stays drained when the fleet drains it too and then
// undrains it (docs/fleet.md: "only the routers that drained it through
// the key undrain it; a node drained locally with Cluster.Drain stays
// drained there").
//
// Defect found: the watch's SetDrained on the locally drained node
// succeeded (a no-op), the watch counted the node as drained by itself, and
// undrained it when the key was deleted.
func TestReview6FleetUndrainKeepsLocalDrain(t *testing.T) {
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pfx = "/r6local/"
	r, _ := review6Router(t, cli, pfx)
	c, err := r.Cluster("c1")
	if err != nil {
		t.Fatal(err)
	}
	local, other := review6Nodes[1], review6Nodes[2]
	if err := c.Drain(ctx, local, nil); err != nil {
		t.Fatal(err)
	}
	// Both keys in one transaction: one watch event, one sync.
	if _, err := cli.Txn(ctx).Then(
		clientv3.OpPut(DrainKey(pfx, "c1", local), `{"by":"ops"}`),
		clientv3.OpPut(DrainKey(pfx, "c1", other), `{"by":"ops"}`),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fleet's drain of "+other+" applied", func() bool { return drainedOn(r, other) })
	if _, err := cli.Txn(ctx).Then(
		clientv3.OpDelete(DrainKey(pfx, "c1", local)),
		clientv3.OpDelete(DrainKey(pfx, "c1", other)),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fleet's undrain of "+other+" applied", func() bool { return !drainedOn(r, other) })
	if !drainedOn(r, local) {
		t.Fatalf("%s, drained by the application, was undrained by the fleet's undrain", local)
	}
	if err := c.Undrain(local); err != nil || drainedOn(r, local) {
		t.Fatalf("the application's Undrain: %v, drained %v", err, drainedOn(r, local))
	}
}

// TestReview6FleetUndrainAfterReloadWhileCut: a router cut from etcd while
// a node's drain key is deleted, and whose cluster a Reload replaces
// meanwhile (the new cluster inherits the fleet's drain), undrains the
// node once it reaches etcd again.
//
// Defect found: the new cluster's watch remembered no drain of its own
// (its map of nodes it drained starts empty), found no key, and never
// undrained the node: drained on that router for good.
func TestReview6FleetUndrainAfterReloadWhileCut(t *testing.T) {
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	proxy := newBlackhole(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pfx = "/r6reload/"
	r, coord := review6Router(t, newClient(t, proxy.addr()), pfx)
	node := review6Nodes[2]
	if _, err := cli.Put(ctx, DrainKey(pfx, "c1", node), `{"by":"ops"}`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fleet's drain applied", func() bool { return drainedOn(r, node) })

	proxy.setCut(true)
	if _, err := cli.Delete(ctx, DrainKey(pfx, "c1", node)); err != nil {
		t.Fatal(err)
	}
	old, _ := r.Cluster("c1")
	if err := r.Reload(review6Config(coord, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if c, _ := r.Cluster("c1"); c == old {
		t.Fatal("the Reload kept the cluster")
	}
	if !drainedOn(r, node) {
		t.Fatal("the Reload did not carry the fleet's drain over")
	}
	proxy.setCut(false)
	deadline := time.Now().Add(10 * time.Second)
	for drainedOn(r, node) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still drained 10s after the router reached etcd again, its drain key deleted", node)
		}
		time.Sleep(tick)
	}
}

// TestReview6DrainNamesArePathSafe: the cluster and node of Drain,
// Undrain, WaitDrained and Switchover are key segments: a name that
// path.Join would resolve elsewhere ("..", a "/" in a node) is refused
// with a clear error and touches no key.
//
// Defect found: DrainKey joins the names with path.Join, so
// `dbrouter undrain .. config` deleted the fleet's configuration
// (<prefix>config) and `dbrouter undrain c1 ../../writers/c1` the
// cluster's writer decision, each reported as "was not drained" or
// "back in service".
func TestReview6DrainNamesArePathSafe(t *testing.T) {
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pfx = "/r6path/"
	keep := []string{ConfigKey(pfx), WriterKey(pfx, "c1")}
	for _, k := range keep {
		if _, err := cli.Put(ctx, k, `{"writer":"n0:3306","epoch":1}`); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ cluster, node string }{
		{"..", "config"},
		{"c1", "../../writers/c1"},
		{"c1/../..", "config"},
		{"", "n0:3306"},
		{"c1", ""},
		{"c1", "."},
	} {
		was, err := Undrain(ctx, cli, pfx, tc.cluster, tc.node)
		if err == nil {
			t.Errorf("Undrain(%q, %q): no error (was %v)", tc.cluster, tc.node, was)
		}
		if err := Drain(ctx, cli, pfx, tc.cluster, tc.node, "test"); err == nil {
			t.Errorf("Drain(%q, %q): no error", tc.cluster, tc.node)
		}
		if _, err := Switchover(ctx, cli, pfx, tc.cluster, tc.node, "test"); err == nil {
			t.Errorf("Switchover(%q, %q): no error", tc.cluster, tc.node)
		}
		wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		if _, err := WaitDrained(wctx, cli, pfx, tc.cluster, tc.node); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitDrained(%q, %q): %v, want an error naming the bad name", tc.cluster, tc.node, err)
		}
		wcancel()
	}
	for _, k := range keep {
		resp, err := cli.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			t.Errorf("%s was deleted", k)
		}
	}
}

// TestReview6DrainedWriterGoesToTheMostAdvanced: when the drained writer's
// role moves and no candidate holds its last known position (the usual
// case under load: views are snapshots), the decider picks the candidate
// that lacks the fewest of its transactions, not the first in order: a
// drained writer is healthy and still taking writes, and the routers give
// the new writer only one second to catch up before they switch anyway.
//
// Defect found: b, 990 transactions behind, was chosen over c, 10 behind,
// because it comes first in order.
func TestReview6DrainedWriterGoesToTheMostAdvanced(t *testing.T) {
	a, b, c := "a:3306", "b:3306", "c:3306"
	nodes := []string{a, b, c}
	v := func(r string) View {
		return view(r, a, nv(a, "up", "0-1-1000"), nv(b, "up", "0-1-10"), nv(c, "up", "0-1-990"))
	}
	cur := &Decision{Writer: a, Epoch: 3, GTID: "0-1-900"}
	got := decideWriter(nodes, cur, []View{v("r1"), v("r2"), v("r3")}, map[string]bool{a: true})
	if !got.change || got.next.Writer != c || got.demote != "" {
		t.Fatalf("verdict %+v; want the writer moved to c (10 behind, not b 990 behind), no demote", got)
	}
	t.Logf("cause: %s", got.next.Cause)
	// MySQL positions: likewise.
	u := "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	v = func(r string) View {
		return view(r, a, nv(a, "up", u+":1-1000"), nv(b, "up", u+":1-10"), nv(c, "up", u+":1-990"))
	}
	got = decideWriter(nodes, &Decision{Writer: a, Epoch: 3}, []View{v("r1"), v("r2"), v("r3")}, map[string]bool{a: true})
	if got.next.Writer != c {
		t.Fatalf("MySQL positions: verdict %+v; want c", got)
	}
	// A tie goes to the first in order.
	v = func(r string) View {
		return view(r, a, nv(a, "up", "0-1-1000"), nv(b, "up", "0-1-990"), nv(c, "up", "0-1-990"))
	}
	if got = decideWriter(nodes, cur, []View{v("r1")}, map[string]bool{a: true}); got.next.Writer != b {
		t.Fatalf("tie: verdict %+v; want b", got)
	}
}
