package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter/fleet"
	"github.com/dbrouter/dbrouter/fleet/internal/etcdtest"
)

// TestDrainCommand: drain stores the node's drain key and waits for the
// fleet (exit 1 naming the routers that have not followed within
// --timeout, exit 0 once every live view shows the node drained); undrain
// deletes the key; an unknown node is refused.
func TestDrainCommand(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const pfx = "/dr/"
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := cli.Put(ctx, key, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	view := func(bDrained bool) fleet.View {
		return fleet.View{Router: "web1", Writer: "a:3306", Nodes: []fleet.NodeView{
			{Addr: "a:3306", State: "up", Probed: true}, {Addr: "b:3306", State: "up", Probed: true, Drained: bDrained}}}
	}
	put(fleet.RouterKey(pfx, "web1"), fleet.RouterInfo{ID: "web1"})
	put(fleet.ViewKey(pfx, "c1", "web1"), view(false))
	put(fleet.WriterKey(pfx, "c1"), fleet.Decision{Writer: "a:3306", Epoch: 2})
	args := func(a ...string) []string {
		return append(a, "--endpoints", srv.Endpoint(), "--prefix", pfx, "--timeout", "500ms")
	}

	r := runCLI(t, args("drain", "c1", "z:3306")...)
	if r.code != exitFail || !strings.Contains(r.stderr, `no live router's view names a node "z:3306"`) {
		t.Errorf("drain of an unknown node: %v", r)
	}
	r = runCLI(t, args("drain", "c1", "b:3306")...)
	if r.code != exitFail || !strings.Contains(r.stderr, "b:3306 is drained in etcd, but timed out after 500ms (--timeout) waiting for the fleet to follow: writer a:3306 (epoch 2); no decider elected (no coordinator is campaigning); not yet drained by web1") {
		t.Errorf("drain that no router follows: %v", r)
	}
	if resp, err := cli.Get(ctx, fleet.DrainKey(pfx, "c1", "b:3306")); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("drain key not stored: %v", err)
	}
	put(fleet.ViewKey(pfx, "c1", "web1"), view(true))
	r = runCLI(t, args("drain", "c1", "b:3306")...)
	if r.code != exitOK || !strings.Contains(r.stdout, "cluster c1: b:3306 drained by every live router; writer a:3306") {
		t.Errorf("drain followed: %v", r)
	}
	r = runCLI(t, args("undrain", "c1", "b:3306")...)
	if r.code != exitOK || !strings.Contains(r.stdout, "b:3306 back in service") {
		t.Errorf("undrain: %v", r)
	}
	r = runCLI(t, args("undrain", "c1", "b:3306")...)
	if r.code != exitOK || !strings.Contains(r.stdout, "b:3306 was not drained") {
		t.Errorf("undrain again: %v", r)
	}
}
