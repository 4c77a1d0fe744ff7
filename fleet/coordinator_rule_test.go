package fleet

import (
	"strings"
	"testing"
)

// Table tests of the decider's rule (decideWriter) and of the positions it
// compares: no etcd, no goroutines.

// nv builds a NodeView: state "up", "ro" (up, read-only), "down",
// "suspect" or "" (not probed).
func nv(addr, state, gtid string) NodeView {
	switch state {
	case "":
		return NodeView{Addr: addr, State: "up"}
	case "ro":
		return NodeView{Addr: addr, State: "up", ReadOnly: true, GTID: gtid, Probed: true}
	}
	return NodeView{Addr: addr, State: state, GTID: gtid, Probed: true}
}

func view(router, writer string, nodes ...NodeView) View {
	return View{Router: router, Writer: writer, Nodes: nodes}
}

func TestDecideWriter(t *testing.T) {
	a, b, c := "a:3306", "b:3306", "c:3306"
	nodes := []string{a, b, c}
	healthy := func(r string) View {
		return view(r, a, nv(a, "up", "0-1-10"), nv(b, "up", "0-1-10"), nv(c, "up", "0-1-10"))
	}
	aDown := func(r string) View {
		return view(r, b, nv(a, "down", ""), nv(b, "up", "0-1-10"), nv(c, "up", "0-1-10"))
	}
	decidedA := &Decision{Writer: a, Epoch: 4, GTID: "0-1-5"}
	tests := []struct {
		name   string
		cur    *Decision
		views  []View
		writer string // "" no change
		demote string
		cause  string // in the cause, or in stuck when no change

		drained map[string]bool
	}{
		{name: "no views: nothing", views: nil},
		{name: "no decision, views not probed yet: nothing",
			views: []View{view("r1", "", nv(a, "", ""), nv(b, "", ""), nv(c, "", ""))}},
		{name: "no decision, a view not probed through: no say",
			views: []View{view("r1", "", nv(a, "", ""), nv(b, "up", ""), nv(c, "up", ""))}},
		{name: "first decision: the local rule's writer of most routers",
			views: []View{
				view("r1", b, nv(a, "up", ""), nv(b, "up", ""), nv(c, "up", "")),
				view("r2", b, nv(a, "up", ""), nv(b, "up", ""), nv(c, "up", "")),
				view("r3", a, nv(a, "up", ""), nv(b, "up", ""), nv(c, "up", "")),
			},
			writer: b, cause: "first decision: b:3306 is up and writable for 3 of 3 routers, and the writer of 2"},
		{name: "first decision: not a writer down for the majority",
			views: []View{
				view("r1", a, nv(a, "up", ""), nv(b, "up", ""), nv(c, "up", "")),
				view("r2", b, nv(a, "down", ""), nv(b, "up", ""), nv(c, "up", "")),
				view("r3", b, nv(a, "down", ""), nv(b, "up", ""), nv(c, "up", "")),
			},
			writer: b},
		{name: "first decision: no node up for a majority",
			views: []View{
				view("r1", a, nv(a, "up", ""), nv(b, "down", "")),
				view("r2", b, nv(a, "down", ""), nv(b, "up", "")),
			},
			cause: "no node is up and writable for a majority (2) of 2 routers"},
		{name: "healthy writer stays", cur: decidedA,
			views: []View{healthy("r1"), healthy("r2"), healthy("r3")}},
		{name: "down for one router of three: stays", cur: decidedA,
			views: []View{aDown("r1"), healthy("r2"), healthy("r3")}},
		{name: "suspect for every router: stays", cur: decidedA,
			views: []View{
				view("r1", a, nv(a, "suspect", ""), nv(b, "up", ""), nv(c, "up", "")),
				view("r2", a, nv(a, "suspect", ""), nv(b, "up", ""), nv(c, "up", "")),
			}},
		{name: "down for two of three: the first node holding its position", cur: decidedA,
			views:  []View{aDown("r1"), aDown("r2"), healthy("r3")},
			writer: b, demote: a, cause: "a:3306 is down for 2 of 3 routers; b:3306 holds its last known position"},
		{name: "down for one of two is no majority", cur: decidedA,
			views: []View{aDown("r1"), healthy("r2")}},
		{name: "a router that has not probed the cluster has no say", cur: decidedA,
			views:  []View{aDown("r1"), view("r2", "", nv(a, "", ""), nv(b, "", ""), nv(c, "", ""))},
			writer: b, demote: a, cause: "down for 1 of 1 routers"},
		{name: "read-only in one view: replaced", cur: decidedA,
			views:  []View{view("r1", a, nv(a, "ro", "0-1-10"), nv(b, "up", "0-1-10"), nv(c, "up", "0-1-10")), healthy("r2"), healthy("r3")},
			writer: b, demote: a, cause: "a:3306 is read-only (router r1)"},
		{name: "candidate by position: b behind, c holds the old writer's last position", cur: decidedA,
			views: []View{
				view("r1", a, nv(a, "down", ""), nv(b, "up", "0-1-8,1-2-3"), nv(c, "up", "0-1-12")),
				view("r2", a, nv(a, "down", ""), nv(b, "up", "0-1-8"), nv(c, "up", "0-1-11")),
				view("r3", a, nv(a, "up", "0-1-12"), nv(b, "up", "0-1-8"), nv(c, "up", "0-1-12")),
			},
			writer: c, demote: a, cause: `c:3306 holds its last known position "0-1-12"`},
		{name: "no candidate holds it: the first up and writable", cur: &Decision{Writer: a, Epoch: 1, GTID: "0-1-99"},
			views:  []View{aDown("r1"), aDown("r2")},
			writer: b, demote: a, cause: "no node up and writable for a majority holds its last known position"},
		{name: "candidates must be up and writable for a majority", cur: decidedA,
			views: []View{
				view("r1", a, nv(a, "down", ""), nv(b, "down", ""), nv(c, "up", "0-1-1")),
				view("r2", a, nv(a, "down", ""), nv(b, "up", "0-1-10"), nv(c, "suspect", "0-1-10")),
				view("r3", a, nv(a, "down", ""), nv(b, "down", ""), nv(c, "up", "0-1-1")),
			},
			writer: c, demote: a},
		{name: "no candidate: the decision stays, stuck", cur: decidedA,
			views: []View{
				view("r1", a, nv(a, "down", ""), nv(b, "down", ""), nv(c, "ro", "")),
				view("r2", a, nv(a, "down", ""), nv(b, "down", ""), nv(c, "ro", "")),
			},
			cause: "but no other node is up and writable"},
		{name: "writer no longer a node of the cluster", cur: &Decision{Writer: "old:3306", Epoch: 2},
			views:  []View{healthy("r1")},
			writer: a, cause: "old:3306 is no longer a node of the cluster"},
		{name: "drained writer: moved off, not demoted", cur: decidedA, drained: map[string]bool{a: true},
			views:  []View{healthy("r1"), healthy("r2")},
			writer: b, cause: "a:3306 is drained (dbrouter drain); b:3306 holds its last known position"},
		{name: "drained nodes are never chosen", cur: decidedA, drained: map[string]bool{a: true, b: true},
			views:  []View{healthy("r1"), healthy("r2")},
			writer: c, cause: "a:3306 is drained"},
		{name: "first decision skips a drained node", drained: map[string]bool{a: true},
			views:  []View{healthy("r1"), healthy("r2")},
			writer: b, cause: "first decision: b:3306"},
		{name: "every other node drained: stuck", cur: decidedA, drained: map[string]bool{a: true, b: true, c: true},
			views: []View{healthy("r1")},
			cause: "a:3306 is drained (dbrouter drain), but no other node is up and writable"},
		{name: "a drained replica changes nothing", cur: decidedA, drained: map[string]bool{b: true},
			views: []View{healthy("r1")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := decideWriter(nodes, tc.cur, tc.views, tc.drained)
			switch {
			case tc.writer == "" && v.change:
				t.Fatalf("decided %s (%s), want no change", v.next.Writer, v.next.Cause)
			case tc.writer != "" && (!v.change || v.next.Writer != tc.writer):
				t.Fatalf("change %v writer %q (stuck %q), want %q", v.change, v.next.Writer, v.stuck, tc.writer)
			}
			if v.demote != tc.demote {
				t.Errorf("demote %q, want %q", v.demote, tc.demote)
			}
			got := v.next.Cause
			if !v.change {
				got = v.stuck
			}
			if !strings.Contains(got, tc.cause) {
				t.Errorf("cause %q, want it to contain %q", got, tc.cause)
			}
		})
	}
}

func TestPositionContains(t *testing.T) {
	const u1, u2 = "3E11FA47-71CA-11E1-9E33-C80AA9429562", "4e11fa47-71ca-11e1-9e33-c80aa9429562"
	tests := []struct {
		a, b string
		want bool
	}{
		{"", "", true},
		{"0-1-5", "", true},
		{"", "0-1-5", false},
		{"0-1-5", "0-1-5", true},
		{"0-2-6", "0-1-5", true}, // the sequence counts, not the server
		{"0-1-4", "0-1-5", false},
		{"0-1-5,1-2-7", "1-2-7", true},
		{"0-1-5", "0-1-5,1-2-7", false},
		{" 0-1-5 ,\n1-2-7", "1-2-7,0-1-5", true},
		{u1 + ":1-10", u1 + ":3-7", true},
		{u1 + ":1-10", strings.ToLower(u1) + ":3-11", false},
		{u1 + ":1-5:6-10", u1 + ":1-10", true}, // adjacent intervals join
		{u1 + ":1-5:7-10", u1 + ":1-10", false},
		{u1 + ":1-10," + u2 + ":1", u2 + ":1," + u1 + ":2", true},
		{u1 + ":1-10", u2 + ":1", false},
		{u1 + ":1-10:tag:1-3", u1 + ":tag:2", true},
		{u1 + ":1-10", u1 + ":tag:2", false},
	}
	for _, tc := range tests {
		pa, err := parsePosition(tc.a)
		if err != nil {
			t.Fatalf("%q: %v", tc.a, err)
		}
		pb, err := parsePosition(tc.b)
		if err != nil {
			t.Fatalf("%q: %v", tc.b, err)
		}
		if got := pa.contains(pb); got != tc.want {
			t.Errorf("%q contains %q = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	for _, bad := range []string{"0-1", "a-b-c", "0-1-2-3", "nouuid:1", u1 + ":5-3", u1 + ":x-y"} {
		if _, err := parsePosition(bad); err == nil {
			t.Errorf("parsePosition(%q) accepted", bad)
		}
	}
	var m position
	for _, s := range []string{"0-1-5,1-2-3", "0-1-9", "1-3-2"} {
		p, _ := parsePosition(s)
		m.merge(p)
	}
	if got := m.String(); got != "0-1-9,1-2-3" {
		t.Errorf("merged %q, want 0-1-9,1-2-3", got)
	}
}
