package main

import (
	"context"
	"encoding/json"
	"flag"
	"github.com/dbrouter/dbrouter/fleet/internal/etcdtest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter/fleet"
)

var update = flag.Bool("update", false, "rewrite the golden files of the status tests")

// putFleetState writes what a fleet's coordinators would: live routers,
// their views, a decider and a writer decision; only cust-1 has a
// decision, web3 sees cust-1's first node up (cut from the others, say),
// and web4's view of cust-2 outlived its presence key.
func putFleetState(t *testing.T, srv *etcdtest.Server, prefix string) {
	t.Helper()
	cli := srv.Client()
	ctx := context.Background()
	put := func(key string, v any) {
		t.Helper()
		val, ok := v.(string)
		if !ok {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			val = string(b)
		}
		if _, err := cli.Put(ctx, key, val); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile("testdata/fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	put(fleet.ConfigKey(prefix), string(data))
	for i, id := range []string{"web1", "web2", "web3"} {
		put(fleet.RouterKey(prefix, id), fleet.RouterInfo{ID: id, Host: "app" + id[3:], PID: 4242 + i,
			Started: testNow.Add(-time.Duration(10+i) * time.Minute)})
	}
	put(fleet.ElectionKey(prefix)+"/694d9a3b2c1e0f07", "web1")
	put(fleet.ElectionKey(prefix)+"/694d9a3b2c1e0f09", "web2") // a later candidate: not the leader
	put(fleet.WriterKey(prefix, "cust-1"), fleet.Decision{Writer: "127.0.0.1:33062", Epoch: 4, GTID: "0-2-120",
		Cause: "127.0.0.1:33061 down for 2 of 3 live routers", Decider: "web1", At: testNow.Add(-90 * time.Second)})
	down := fleet.NodeView{Addr: "127.0.0.1:33061", State: "down", GTID: "0-1-118",
		Error: "dial tcp 127.0.0.1:33061: connect: connection refused"}
	up2 := fleet.NodeView{Addr: "127.0.0.1:33062", State: "up", GTID: "0-2-120"}
	put(fleet.ViewKey(prefix, "cust-1", "web1"), fleet.View{Router: "web1", At: testNow.Add(-2 * time.Second),
		Nodes: []fleet.NodeView{down, up2}})
	put(fleet.ViewKey(prefix, "cust-1", "web2"), fleet.View{Router: "web2", At: testNow.Add(-1 * time.Second),
		Nodes: []fleet.NodeView{down, up2}})
	put(fleet.ViewKey(prefix, "cust-1", "web3"), fleet.View{Router: "web3", At: testNow.Add(-3 * time.Second),
		Nodes: []fleet.NodeView{{Addr: "127.0.0.1:33061", State: "up", ReadOnly: true, GTID: "0-1-118"}, up2}})
	put(fleet.ViewKey(prefix, "cust-2", "web1"), fleet.View{Router: "web1", At: testNow.Add(-2 * time.Second),
		Nodes: []fleet.NodeView{{Addr: "127.0.0.1:33063", State: "up", GTID: "0-3-7"},
			{Addr: "127.0.0.1:33064", State: "suspect", GTID: "0-3-7", Error: "read tcp: i/o timeout\n(probe 2 of 2)"}}})
	put(fleet.ViewKey(prefix, "cust-2", "web4"), fleet.View{Router: "web4", At: testNow.Add(-75 * time.Second),
		Nodes: []fleet.NodeView{{Addr: "127.0.0.1:33063", State: "up", Drained: true}}})
}

// revisions masks etcd revisions, which depend on how many writes the
// setup made.
var revisions = regexp.MustCompile(`revision \d+`)

func TestStatus(t *testing.T) {
	srv := etcdtest.Start(t)
	putFleetState(t, srv, "/st/")
	for _, tc := range []struct{ name, golden string }{
		{"", "testdata/status.golden"},
		{"cust-2", "testdata/status-cust-2.golden"},
	} {
		t.Run("cluster="+tc.name, func(t *testing.T) {
			args := append([]string{"status"}, etcdArgs(srv, "/st/")...)
			if tc.name != "" {
				args = append(args, "--cluster", tc.name)
			}
			r := runCLI(t, args...)
			if r.code != exitOK || r.stderr != "" {
				t.Fatalf("%v", r)
			}
			got := revisions.ReplaceAllString(strings.ReplaceAll(r.stdout, srv.Endpoint(), "ETCD"), "revision N")
			if *update {
				if err := os.WriteFile(tc.golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(tc.golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("status differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", tc.golden, got, want)
			}
		})
	}

	r := runCLI(t, append([]string{"status", "--cluster", "cust-9"}, etcdArgs(srv, "/st/")...)...)
	if r.code != exitFail || !strings.Contains(r.stderr, `no cluster "cust-9" in etcd under /st/ (known: cust-1, cust-2)`) {
		t.Fatalf("status of an unknown cluster: %v", r)
	}
	r = runCLI(t, append([]string{"status"}, etcdArgs(srv, "/empty/")...)...)
	if r.code != exitOK || !strings.Contains(r.stdout, "configuration: none stored\ndecider: none elected\nrouters: 0 live\n\nno cluster") {
		t.Fatalf("status of an empty prefix: %v", r)
	}
}
