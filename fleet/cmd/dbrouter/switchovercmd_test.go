package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter/fleet"
	"github.com/dbrouter/dbrouter/fleet/internal/etcdtest"
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

// TestSwitchoverCommandWithConfig: with -config, the command first makes
// the old writer read-only with the file's credentials; when it cannot
// (the node refuses connections), it exits 1 saying so, publishes nothing,
// and prints no password. The help says what is skipped without -config.
func TestSwitchoverCommandWithConfig(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const pfx = "/swc/"
	a, b := etcdtest.FreeLoopbackAddr(t), etcdtest.FreeLoopbackAddr(t) // nothing listens
	put := func(key string, v any) {
		t.Helper()
		bs, _ := json.Marshal(v)
		if _, err := cli.Put(ctx, key, string(bs)); err != nil {
			t.Fatal(err)
		}
	}
	put(fleet.RouterKey(pfx, "web1"), fleet.RouterInfo{ID: "web1"})
	put(fleet.ViewKey(pfx, "c1", "web1"), fleet.View{Router: "web1", Writer: a, Nodes: []fleet.NodeView{
		{Addr: a, State: "up", Probed: true}, {Addr: b, State: "up", Probed: true}}})
	put(fleet.WriterKey(pfx, "c1"), fleet.Decision{Writer: a, Epoch: 2})
	const pw = "Sw1tch-0ver-pw"
	file := filepath.Join(t.TempDir(), "fleet.yaml")
	yaml := "defaults:\n  user: admin\n  password: " + pw + "\n  connect_timeout: 1s\nclusters:\n  c1:\n    nodes: [" + a + ", " + b + "]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, append([]string{"switchover", "c1", b, "-config", file}, etcdArgs(srv, pfx)...)...)
	if r.code != exitFail || !strings.Contains(r.stderr, "making the writer "+a+" read-only") || !strings.Contains(r.stderr, "fleet switchover refused") {
		t.Errorf("switchover -config, old writer unreachable: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, pw) {
		t.Errorf("a password in the output: %q %q", r.stdout, r.stderr)
	}
	resp, err := cli.Get(ctx, fleet.WriterKey(pfx, "c1"))
	if err != nil {
		t.Fatal(err)
	}
	var d fleet.Decision
	if err := json.Unmarshal(resp.Kvs[0].Value, &d); err != nil || d.Writer != a || d.Epoch != 2 {
		t.Errorf("decision after a refused switchover: %+v (%v)", d, err)
	}

	r = runCLI(t, append([]string{"switchover", "c9", b, "-config", file}, etcdArgs(srv, pfx)...)...)
	if r.code != exitFail || !strings.Contains(r.stderr, `no cluster "c9" in `+file) {
		t.Errorf("switchover -config, cluster not in the file: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, "switchover", "-h")
	if out := r.stdout + r.stderr; !strings.Contains(out, "without it, neither is done") {
		t.Errorf("switchover -h does not say what is skipped without -config: %q", out)
	}
}
