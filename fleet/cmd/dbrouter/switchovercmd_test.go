package main

import (
	"context"
	"encoding/json"
	"github.com/dbrouter/dbrouter/fleet/internal/etcdtest"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter/fleet"
)

// TestSwitchoverCommand: the command publishes the next epoch naming the
// node, and exits 1 saying why when the fleet refuses.
func TestSwitchoverCommand(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const pfx = "/sw/"
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := cli.Put(ctx, key, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	r := runCLI(t, append([]string{"switchover", "c1", "b:3306"}, etcdArgs(srv, pfx)...)...)
	if r.code != exitFail || !strings.Contains(r.stderr, "has not decided") {
		t.Errorf("switchover without a decision: exit %d, stderr %q", r.code, r.stderr)
	}
	put(fleet.RouterKey(pfx, "web1"), fleet.RouterInfo{ID: "web1"})
	put(fleet.ViewKey(pfx, "c1", "web1"), fleet.View{Router: "web1", Writer: "a:3306", Nodes: []fleet.NodeView{
		{Addr: "a:3306", State: "up", Probed: true}, {Addr: "b:3306", State: "up", Probed: true}}})
	put(fleet.WriterKey(pfx, "c1"), fleet.Decision{Writer: "a:3306", Epoch: 2})
	r = runCLI(t, append([]string{"switchover", "c1", "b:3306"}, etcdArgs(srv, pfx)...)...)
	if r.code != exitOK || !strings.Contains(r.stdout, "cluster c1: writer b:3306 from epoch 3") {
		t.Errorf("switchover: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
