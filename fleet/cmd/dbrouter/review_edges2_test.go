package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/dbrouter/dbrouter/fleet"
	"github.com/dbrouter/dbrouter/fleet/internal/etcdtest"
)

// unprintableRune is a rune that must not reach an operator's terminal
// from a value read from etcd: a control character other than the line
// ends the command writes itself (a terminal escape, a carriage return
// that overwrites the line), a bidi control, a line or paragraph
// separator.
func unprintableRune(out string) (rune, bool) {
	for _, r := range out {
		if r != '\n' && (unicode.IsControl(r) || unicode.In(r, unicode.Bidi_Control, unicode.Zl, unicode.Zp)) {
			return r, true
		}
	}
	return 0, false
}

// Defect: dbrouter status printed the new lines under a cluster's table
// (a router that refuses writes, or cannot read the writer decision) with
// the router's ID as its key spells it and the refusal's cause with only
// its whitespace folded: a terminal escape, a carriage return or a bidi
// override in a value that any client with write access to the prefix can
// store (the cause quotes the decision's writer and decider when they name
// a node the router lacks) went to the operator's terminal as is; so did
// the cluster's name in its heading. dbrouter drain's timeout message
// likewise (the routers not following, the writer, the decider).
// Expected: such characters are shown escaped.
func TestReviewEdges2HostileValuesInStatusAndDrain(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const pfx = "/hostile/"
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := cli.Put(ctx, key, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	const (
		evilID      = "web\x1b[2J\r2"
		evilCluster = "c\x1b]0;owned\x07"
	)
	nodes := []fleet.NodeView{{Addr: "a:3306", State: "up", Probed: true}, {Addr: "b:3306", State: "up", Probed: true}, {Addr: "c:3306", State: "up", Probed: true}}
	for _, id := range []string{"web1", evilID} {
		put(fleet.RouterKey(pfx, id), fleet.RouterInfo{ID: id})
	}
	for _, cluster := range []string{"c1", evilCluster} {
		put(fleet.ViewKey(pfx, cluster, "web1"), fleet.View{Router: "web1", At: testNow, Nodes: nodes, Writer: "a:3306", Epoch: 2,
			ReadError: "etcdserver: \x1b[31mred\u202eevil"})
		put(fleet.ViewKey(pfx, cluster, evilID), fleet.View{Router: evilID, At: testNow, Nodes: nodes,
			Refused: "fleet decision of x\x1b[1A\x1b[2K names z\u2028:3306, not a node of the cluster"})
		put(fleet.WriterKey(pfx, cluster), fleet.Decision{Writer: "a:3306", Epoch: 2, Decider: "web\x1b[5m1"})
	}
	if _, err := cli.Put(ctx, fleet.ElectionKey(pfx)+"/694d9b1a2c3d4e5f", "dec\x1b[8mider"); err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, append([]string{"status", "--cluster", "c1"}, etcdArgs(srv, pfx)...)...)
	if r.code != exitOK || !strings.Contains(r.stdout, "refuses writes") || !strings.Contains(r.stdout, "cannot read the writer decision") {
		t.Fatalf("status: %v", r)
	}
	if c, bad := unprintableRune(r.stdout); bad {
		t.Errorf("status prints %q as is:\n%s", c, r.stdout)
	}
	r = runCLI(t, append([]string{"status"}, etcdArgs(srv, pfx)...)...)
	if c, bad := unprintableRune(r.stdout); r.code != exitOK || bad {
		t.Errorf("status of every cluster prints %q as is:\n%s", c, r)
	}

	r = runCLI(t, "drain", "c1", "b:3306", "--endpoints", srv.Endpoint(), "--prefix", pfx, "--timeout", "500ms")
	if r.code != exitFail || !strings.Contains(r.stderr, "timed out") {
		t.Fatalf("drain: %v", r)
	}
	if c, bad := unprintableRune(r.stderr); bad {
		t.Errorf("drain prints %q as is:\n%s", c, r.stderr)
	}
}

// Defect: dbrouter status and dbrouter drain read a writer key with
// json.Unmarshal alone: a value without an epoch — no decision for the
// routers and the decider since TestReviewEdgesUnreadableWriterKey (they
// keep the writer they use, or refuse writes) — was shown as one: "{}" as
// "epoch 0, writer handed back to each router's local rule", a value
// naming b:3306 as "writer b:3306, epoch 0" with b marked (writer); and
// drain's timeout message said "no writer decision published (each router
// on its local rule)" of a value that is not JSON. Expected: each says the
// writer decision is unreadable, and why.
func TestReviewEdges2ToolsShowValueWithoutEpochAsUnreadable(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const pfx = "/noepoch/"
	put := func(key, v string) {
		t.Helper()
		if _, err := cli.Put(ctx, key, v); err != nil {
			t.Fatal(err)
		}
	}
	nodes := []fleet.NodeView{{Addr: "a:3306", State: "up", Probed: true}, {Addr: "b:3306", State: "up", Probed: true}, {Addr: "c:3306", State: "up", Probed: true}}
	b, _ := json.Marshal(fleet.View{Router: "web1", At: testNow, Nodes: nodes, Writer: "a:3306", Epoch: 3})
	put(fleet.RouterKey(pfx, "web1"), `{"id":"web1"}`)
	for cluster, value := range map[string]string{"c1": `{}`, "c2": `{"writer":"b:3306","cause":"by hand"}`, "c3": `{not json`} {
		put(fleet.ViewKey(pfx, cluster, "web1"), string(b))
		put(fleet.WriterKey(pfx, cluster), value)
	}
	r := runCLI(t, append([]string{"status"}, etcdArgs(srv, pfx)...)...)
	for _, cluster := range []string{"c1", "c2", "c3"} {
		if !strings.Contains(r.stdout, "cluster "+cluster+": writer decision unreadable: ") {
			t.Errorf("status does not say that %s's writer decision is unreadable:\n%s", cluster, r)
		}
	}
	if strings.Contains(r.stdout, "b:3306 (writer)") || strings.Contains(r.stdout, "handed back") {
		t.Errorf("status shows a value without an epoch as a decision:\n%s", r)
	}

	r = runCLI(t, "drain", "c3", "b:3306", "--endpoints", srv.Endpoint(), "--prefix", pfx, "--timeout", "500ms")
	if r.code != exitFail || strings.Contains(r.stderr, "no writer decision published") || !strings.Contains(r.stderr, "writer decision unreadable") {
		t.Errorf("drain with a writer key that is not JSON: %v", r)
	}
}

// oneLine shows escaped what shows as nothing or as a blank on a terminal
// — zero-width characters, a byte-order mark, variation selectors, the
// braille blank — as fleet.New refuses them in router IDs; before, only
// control characters, bidi controls and separators were (noted by
// review-typed: a cluster name "\u200b" printed as an empty name).
func TestOneLineEscapesInvisible(t *testing.T) {
	for in, want := range map[string]string{
		"web\u200b1":  `web\u200b1`,
		"\ufeffweb":   `\ufeffweb`,
		"a\u2800b":    `a\u2800b`,
		"x\ufe0fy":    `x\ufe0fy`,
		"esc\x1b[31m": `esc\x1b[31m`,
		"ok name é":   "ok name é",
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
