package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter/fleet"
	"github.com/dbrouter/dbrouter/fleet/internal/etcdtest"
)

// Defect: dbrouter drain, when the fleet had not followed within
// --timeout, printed "writer none decided, not yet drained by -" whenever
// WaitDrained had read nothing (etcd gone after the drain key was stored,
// or the timeout spent by the drain itself): as if the fleet had no writer
// and every router had followed. A writer decision that still named the
// node, every router following, printed "writer b:3306, not yet drained
// by -". Expected: it says that it timed out waiting for the fleet, and
// what it knows — the writer (or that the decision still names the node),
// who decided it, the decider, the routers that have not followed — or
// that they are unknown.
func TestReviewEdgesDrainTimeoutMessage(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const pfx = "/dr-edges/"
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := cli.Put(ctx, key, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	view := func(bDrained bool) fleet.View {
		return fleet.View{Router: "web1", Writer: "b:3306", Nodes: []fleet.NodeView{
			{Addr: "a:3306", State: "up", Probed: true}, {Addr: "b:3306", State: "up", Probed: true, Drained: bDrained},
			{Addr: "c:3306", State: "up", Probed: true}}}
	}
	put(fleet.RouterKey(pfx, "web1"), fleet.RouterInfo{ID: "web1"})
	put(fleet.ViewKey(pfx, "c1", "web1"), view(true))
	put(fleet.WriterKey(pfx, "c1"), fleet.Decision{Writer: "b:3306", Epoch: 2, Decider: "web1"})
	// The elected decider: the election key with the lowest create
	// revision, its value the decider's RouterID.
	if _, err := cli.Put(ctx, fleet.ElectionKey(pfx)+"/694d9b1a2c3d4e5f", "web1"); err != nil {
		t.Fatal(err)
	}
	args := func(a ...string) []string {
		return append(a, "--endpoints", srv.Endpoint(), "--prefix", pfx, "--timeout", "500ms")
	}

	// Every router shows the node drained, but the decision still names it.
	r := runCLI(t, args("drain", "c1", "b:3306")...)
	want := "cluster c1: b:3306 is drained in etcd, but timed out after 500ms (--timeout) waiting for the fleet to follow: " +
		"the writer decision still names b:3306 (epoch 2, published by web1); decider web1; every live router shows b:3306 drained"
	if r.code != exitFail || !strings.Contains(r.stderr, want) {
		t.Errorf("drain that the decider does not follow: %v\nwant %q", r, want)
	}

	// etcd goes once the drain key is stored: nothing is known.
	var out, errOut bytes.Buffer
	e := &env{stdout: &out, stderr: &errOut, now: func() time.Time { return testNow }, afterDrain: srv.Stop}
	code := e.run(args("drain", "c1", "a:3306"))
	r = result{code, out.String(), errOut.String()}
	want = "cluster c1: a:3306 is drained in etcd, but timed out after 500ms (--timeout) waiting for the fleet to follow: " +
		"etcd could not be read meanwhile: writer unknown, decider unknown, routers unknown"
	if r.code != exitFail || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "by -") {
		t.Errorf("drain with etcd gone after the key was stored: %v\nwant %q", r, want)
	}
}

// Defect: a router whose coordinator refused a cluster's writes because
// it could not read the writer key (permission denied, a value that is no
// decision) showed nothing of it in dbrouter status. Expected: status
// lists, under the cluster's table, each router that refuses writes and
// why, or that cannot read the writer decision.
func TestReviewEdgesStatusShowsRefusals(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const pfx = "/st-edges/"
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := cli.Put(ctx, key, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	nodes := []fleet.NodeView{{Addr: "a:3306", State: "up", Probed: true}}
	for _, id := range []string{"web1", "web2", "web3"} {
		put(fleet.RouterKey(pfx, id), fleet.RouterInfo{ID: id})
	}
	put(fleet.ViewKey(pfx, "c1", "web1"), fleet.View{Router: "web1", At: testNow, Nodes: nodes, Writer: "a:3306", Epoch: 2})
	put(fleet.ViewKey(pfx, "c1", "web2"), fleet.View{Router: "web2", At: testNow, Nodes: nodes,
		Refused:   "fleet: the writer decision has not been read from etcd yet: writes refused until it is; reading /st-edges/writers/c1: etcdserver: permission denied",
		ReadError: "etcdserver: permission denied"})
	put(fleet.ViewKey(pfx, "c1", "web3"), fleet.View{Router: "web3", At: testNow, Nodes: nodes, Writer: "a:3306",
		ReadError: "etcdserver: request timed out"})
	r := runCLI(t, append([]string{"status"}, etcdArgs(srv, pfx)...)...)
	for _, want := range []string{
		"  web2 refuses writes: fleet: the writer decision has not been read from etcd yet: writes refused until it is; reading /st-edges/writers/c1: etcdserver: permission denied\n",
		"  web3 cannot read the writer decision: etcdserver: request timed out\n",
	} {
		if r.code != exitOK || !strings.Contains(r.stdout, want) {
			t.Errorf("status: %v\nwant %q", r, want)
		}
	}
	if strings.Contains(r.stdout, "web1 refuses") || strings.Contains(r.stdout, "web1 cannot") {
		t.Errorf("status lists web1, which neither refuses writes nor fails to read: %v", r)
	}
}
