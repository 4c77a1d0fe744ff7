package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
)

// Adversarial review of the fleet mode (issue 14): each test names the
// defect it caught. Rule tests run without etcd; the others use the
// embedded etcd of coordinator_helpers_test.go.

// Defect: a decider whose own configuration of a cluster lacks the fleet's
// writer (its Reload has not happened yet, or was rejected on its host:
// a ${VAR} unset there) moved a writer that every router sees Up and
// writable, on its own evidence ("no longer a node of the cluster").
// Expected: the writer is gone from the cluster only when a majority of
// the views that count no longer name it; the decider's own node list is
// one router's opinion.
func TestReviewStaleDeciderConfigKeepsHealthyWriter(t *testing.T) {
	a, b, c := "a:3306", "b:3306", "c:3306"
	healthy := func(r string) View {
		return view(r, c, nv(a, "up", "0-1-10"), nv(b, "up", "0-1-10"), nv(c, "up", "0-1-10"))
	}
	cur := &Decision{Writer: c, Epoch: 3, GTID: "0-1-5"}
	// The decider still has the old node list [a b]; every router has [a b c].
	if v := decideWriter([]string{a, b}, cur, []View{healthy("r1"), healthy("r2"), healthy("r3")}, nil); v.change {
		t.Fatalf("a decider without %s in its configuration moved the healthy writer to %s (%s)", c, v.next.Writer, v.next.Cause)
	}
	// Once a majority of the routers dropped c from their configuration,
	// it is gone for the fleet.
	dropped := func(r string) View { return view(r, a, nv(a, "up", "0-1-10"), nv(b, "up", "0-1-10")) }
	v := decideWriter([]string{a, b}, cur, []View{dropped("r1"), dropped("r2"), healthy("r3")}, nil)
	if !v.change || v.next.Writer != a || !strings.Contains(v.next.Cause, "no longer a node of the cluster") {
		t.Fatalf("writer dropped by two routers of three: change %v writer %q cause %q stuck %q, want a", v.change, v.next.Writer, v.next.Cause, v.stuck)
	}
	// The decider's configuration has c, but a majority of the routers
	// dropped it (the decider is the one behind): c is gone for the fleet.
	v = decideWriter([]string{a, b, c}, cur, []View{dropped("r1"), dropped("r2"), healthy("r3")}, nil)
	if !v.change || v.next.Writer != a {
		t.Fatalf("writer dropped by two routers of three, still in the decider's list: change %v writer %q stuck %q, want a", v.change, v.next.Writer, v.stuck)
	}
}

// Defect: a candidate that a fresh probe found read-only (in one view)
// could be chosen as the new writer because it was still writable in the
// older views of a majority; the next round then saw the new writer
// read-only and moved (and demoted) it again: two epochs, and writes
// refused by a read-only writer in between. A writer read-only in one
// view is replaced; a candidate read-only in one view must not be chosen.
func TestReviewReadOnlyCandidateNotChosen(t *testing.T) {
	a, b, c := "a:3306", "b:3306", "c:3306"
	cur := &Decision{Writer: a, Epoch: 4, GTID: "0-1-10"}
	views := []View{
		view("r1", a, nv(a, "down", ""), nv(b, "ro", "0-1-10"), nv(c, "up", "0-1-10")),
		view("r2", a, nv(a, "down", ""), nv(b, "up", "0-1-10"), nv(c, "up", "0-1-10")),
		view("r3", a, nv(a, "down", ""), nv(b, "up", "0-1-10"), nv(c, "up", "0-1-10")),
	}
	v := decideWriter([]string{a, b, c}, cur, views, nil)
	if !v.change || v.next.Writer != c {
		t.Fatalf("change %v writer %q (%s), want c: b is read-only for r1", v.change, v.next.Writer, v.next.Cause)
	}
	// The same for a first decision.
	first := []View{
		view("r1", b, nv(a, "ro", ""), nv(b, "up", ""), nv(c, "up", "")),
		view("r2", a, nv(a, "up", ""), nv(b, "up", ""), nv(c, "up", "")),
		view("r3", a, nv(a, "up", ""), nv(b, "up", ""), nv(c, "up", "")),
	}
	if v := decideWriter([]string{a, b, c}, nil, first, nil); !v.change || v.next.Writer != b {
		t.Fatalf("first decision: change %v writer %q (%s), want b: a is read-only for r1", v.change, v.next.Writer, v.next.Cause)
	}
}

// Defect: a prefix that path.Join cleans ("//", "/./") named the views,
// presence and writer keys one way (keys.go, through path.Join) and the
// decider's reads and watch another (the prefix as given): the decider
// never saw a view and no cluster was ever decided. Expected: New cleans
// the prefix, and the fleet decides.
func TestReviewUncleanPrefixStillDecides(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review//unclean/./"
	r := newFakeRouter(t, cl, pfx, "r1", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	if got := r.coord.opts.Prefix; got != "/review/unclean/" {
		t.Errorf("prefix %q, want /review/unclean/", got)
	}
	eventually(t, "a first decision with the prefix /review//unclean/./", func() bool { return r.sink.has(n0, 1) })
}

// Defect: stopping a watch (Router.Close, or a Reload retiring a cluster)
// deleted the router's view with a synchronous etcd request bounded by
// opTimeout (2 s): with etcd hung (a partition), a router with N clusters
// took N × 2 s to close. Expected: stop returns at once; the view is
// removed in the background (or by the lease's end), and Close does not
// wait for it either.
func TestReviewStopDoesNotWaitForEtcd(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review-stop/"
	proxy := newBlackhole(t, te.endpoints[0])
	// A lease longer than the 4 stops' opTimeouts: the session must not
	// end (and make the deletions moot) before they are timed.
	r := newFakeRouter(t, newClient(t, proxy.addr()), pfx, "r1", Options{LeaseTTL: 10 * time.Second}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	names := []string{"c2", "c3", "c4"}
	var stops []func()
	for _, name := range names {
		stops = append(stops, r.coord.Watch(name, testNodes, r.sink))
	}
	eventually(t, "the views of every cluster", func() bool {
		var v View
		for _, name := range append(names, "c") {
			if !getJSON(t, cl, ViewKey(pfx, name, "r1"), &v) {
				return false
			}
		}
		return true
	})
	proxy.setCut(true)
	start := time.Now()
	for _, stop := range stops {
		stop()
	}
	r.stop()
	stopped := time.Since(start)
	err := r.coord.Close()
	closed := time.Since(start)
	t.Logf("4 watches stopped in %v, Close returned after %v (err %v)", stopped.Round(time.Millisecond), closed.Round(time.Millisecond), err)
	if stopped > 1500*time.Millisecond {
		t.Errorf("stopping 4 watches with etcd hung took %v, want well under one opTimeout (%v) each", stopped.Round(time.Millisecond), opTimeout)
	}
	if closed > stopped+opTimeout+time.Second {
		t.Errorf("Close returned %v after the watches stopped, want at most about one opTimeout (%v)", (closed - stopped).Round(time.Millisecond), opTimeout)
	}
	proxy.setCut(false)
}

// Defects of Switchover, on static keys (no coordinator):
//   - it published epoch = the stored decision's + 1, ignoring the epochs
//     the live routers applied (View.Epoch): after the key was rewritten
//     with a lower epoch, every router refused the switchover's decision
//     as older, yet Switchover reported success, and a router restarted
//     later would follow it: two writers;
//   - it accepted a target read-only in one live router's view (a fresh
//     probe): the decider then moved the writer off it at once, demoting
//     it;
//   - it counted, as views of cluster "c1", the views of a cluster named
//     "c1/x" (ViewsPrefix("c1") is a prefix of their keys): a switchover
//     that a majority of c1's views allowed was refused.
func TestReviewSwitchover(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	put := func(key string, v any) {
		t.Helper()
		if _, err := cli.Put(ctx, key, mustJSON(t, v)); err != nil {
			t.Fatal(err)
		}
	}
	nodes := func(bState string, bRO bool) []NodeView {
		return []NodeView{
			{Addr: "a:3306", State: "up", Probed: true},
			{Addr: "b:3306", State: bState, ReadOnly: bRO, Probed: true},
			{Addr: "c:3306", State: "up", Probed: true},
		}
	}
	setup := func(pfx string) {
		for _, r := range []string{"web1", "web2", "web3"} {
			put(RouterKey(pfx, r), RouterInfo{ID: r})
			put(ViewKey(pfx, "c1", r), View{Router: r, Writer: "a:3306", Epoch: 7, Nodes: nodes("up", false)})
		}
		put(WriterKey(pfx, "c1"), Decision{Writer: "a:3306", Epoch: 4, Decider: "hand"})
	}

	t.Run("epoch above the routers'", func(t *testing.T) {
		const pfx = "/review-so-epoch/"
		setup(pfx)
		d, err := Switchover(ctx, cli, pfx, "c1", "b:3306", "ops")
		if err != nil {
			t.Fatal(err)
		}
		if d.Epoch != 8 {
			t.Errorf("switchover published epoch %d; the live routers applied epoch 7 and refuse anything lower: want 8", d.Epoch)
		}
	})
	t.Run("target read-only for one router", func(t *testing.T) {
		const pfx = "/review-so-ro/"
		setup(pfx)
		put(ViewKey(pfx, "c1", "web1"), View{Router: "web1", Writer: "a:3306", Epoch: 7, Nodes: nodes("up", true)})
		_, err := Switchover(ctx, cli, pfx, "c1", "b:3306", "ops")
		if !errors.Is(err, ErrSwitchoverRefused) || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("switchover to a node read-only for web1: err = %v, want refused saying read-only", err)
		}
	})
	t.Run("views of a cluster whose name extends this one's", func(t *testing.T) {
		const pfx = "/review-so-prefix/"
		setup(pfx)
		for _, r := range []string{"web1", "web2", "web3"} {
			put(ViewKey(pfx, "c1/x", r), View{Router: r, Writer: "x:3306", Nodes: []NodeView{{Addr: "x:3306", State: "up", Probed: true}}})
		}
		if _, err := Switchover(ctx, cli, pfx, "c1", "b:3306", "ops"); err != nil {
			t.Errorf("switchover of c1 with a cluster c1/x beside it: %v", err)
		}
	})
}

// Defect: the decider published epoch = top + 1 without checking for
// overflow: after a decision of epoch 2^64-1 (written by hand, or by a
// buggy tool), the next one was epoch 0, which every router refuses as
// older: the fleet's decision and the routers' writers diverged for good
// (a router restarted later follows epoch 0). Expected: the decider
// refuses to publish (stuck, logged) rather than wrap around.
func TestReviewEpochOverflow(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review-overflow/"
	rec := &verdicts{}
	r1 := newFakeRouter(t, cl, pfx, "r1", Options{onVerdict: rec.record}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	r2 := newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, "r2", Options{onVerdict: rec.record}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "a first decision", func() bool { return r1.sink.has(n0, 1) && r2.sink.has(n0, 1) })
	const top = ^uint64(0)
	if _, err := cl.Put(context.Background(), WriterKey(pfx, "c"), mustJSON(t, Decision{Writer: n0, Epoch: top, Decider: "hand", Cause: "test"})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the top epoch applied", func() bool { return r1.sink.has(n0, top) && r2.sink.has(n0, top) })
	aDown := []dbrouter.NodeStats{down(n0), up(n1, "0-1-1"), up(n2, "0-1-1")}
	r1.sink.set(n0, aDown...)
	r2.sink.set(n0, aDown...)
	eventually(t, "a verdict with n0 down for both routers", func() bool {
		_, ok := rec.find(func(views []View) bool {
			return len(views) == 2 && views[0].Nodes[0].State == "down" && views[1].Nodes[0].State == "down"
		})
		return ok
	})
	// Not a wait for a state: a bounded look for a publication that must
	// not happen.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if d, _ := decision(t, cl, pfx); d.Epoch != top {
			t.Fatalf("the decider published %+v after epoch 2^64-1: every router refuses it as older", d)
		}
		time.Sleep(tick)
	}
}

// Defect: a decider whose election key was deleted while its session
// lived (an operator's `etcdctl del`, or a lease that etcd expired before
// the client learnt it) stayed the decider in its own eyes for as long as
// its session lasted: IsDecider true beside the new decider, every
// publication refused (errDeposed), and it no longer stood in the
// election, so when the new decider went, the fleet had none. Expected:
// it ends its term on losing its key, and stands again.
func TestReviewDeciderKeyDeletedStandsAgain(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review-key-deleted/"
	a := newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, "a", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "a elected", a.coord.IsDecider)
	b := newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, "b", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "n0 decided for both", func() bool { return a.sink.has(n0, 1) && b.sink.has(n0, 1) })
	a.coord.mu.Lock()
	term := *a.coord.term
	a.coord.mu.Unlock()
	if _, err := cl.Delete(context.Background(), term.key); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b elected and a no longer the decider", func() bool { return b.coord.IsDecider() && !a.coord.IsDecider() })
	b.stop()
	if err := b.coord.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a elected again", a.coord.IsDecider)
	a.sink.set(n0, down(n0), up(n1, "0-1-1"), up(n2, "0-1-1"))
	eventually(t, "a decides again: n1 at epoch 2", func() bool { return a.sink.has(n1, 2) })
}

// TestReviewNoGoroutineLeak: after Close (with etcd up, and with etcd
// hung behind a cut), no goroutine of the coordinator is left (the etcd
// client's own, such as its lease keepalive loops, stay until the client
// is closed).
func TestReviewNoGoroutineLeak(t *testing.T) {
	// Not parallel: no other test's coordinator runs meanwhile.
	ours := regexp.MustCompile(`dbrouter/fleet\.(\(\*(Coordinator|watch|decider)\)|sessionContext|New\.)`)
	for _, cut := range []bool{false, true} {
		t.Run(fmt.Sprintf("cut=%v", cut), func(t *testing.T) {
			te := startEtcd(t)
			proxy := newBlackhole(t, te.endpoints[0])
			cl := newClient(t, proxy.addr())
			c, err := New(cl, Options{Prefix: "/review-leak/", RouterID: "r1", LeaseTTL: testTTL, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			s1, s2 := &fakeSink{}, &fakeSink{}
			s1.set("", healthy("0-1-1", "0-1-1", "0-1-1")...)
			s2.set("", healthy("0-1-1", "0-1-1", "0-1-1")...)
			stop1 := c.Watch("c", testNodes, s1)
			stop2 := c.Watch("d", testNodes, s2)
			eventually(t, "both clusters decided", func() bool { return s1.has(n0, 1) && s2.has(n0, 1) })
			left := func() []string {
				buf := make([]byte, 4<<20)
				var out []string
				for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
					if ours.MatchString(g) {
						out = append(out, g)
					}
				}
				return out
			}
			if n := len(left()); n < 5 {
				t.Fatalf("%d goroutines of the coordinator found while it runs: the test cannot see them", n)
			}
			if cut {
				proxy.setCut(true)
				defer proxy.setCut(false)
			}
			stop1()
			c.Close()
			stop2() // after Close
			deadline := time.Now().Add(5 * time.Second)
			for len(left()) > 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if l := left(); len(l) > 0 {
				t.Fatalf("%d goroutines of the coordinator after Close:\n%s", len(l), strings.Join(l, "\n\n"))
			}
		})
	}
}

// strictSink is a fakeSink that refuses a decision naming a node it does
// not have, as a router's cluster does (dbrouter's sink.Decide).
type strictSink struct {
	fakeSink
	nodes []string
}

func (s *strictSink) Decide(d dbrouter.WriterDecision) error {
	if d.Writer != "" && !slices.Contains(s.nodes, d.Writer) {
		return fmt.Errorf("writer decision names %q, not a node of the cluster", d.Writer)
	}
	return s.fakeSink.Decide(d)
}

// Defect: a router whose configuration of a cluster lacks the node the
// fleet decided (a configuration rolled out to some routers only: a node
// added, or renamed) had the decision refused by its cluster and kept
// writing to the previous writer, while the rest of the fleet wrote to
// the new one: two writers, e.g. after a switchover or a drain, where the
// old writer is healthy. Expected: the router refuses writes (not sent)
// until the fleet decides a node it has, and says why.
func TestReviewDecisionForUnknownNodeRefusesWrites(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review-unknown-node/"
	c, err := New(cl, Options{Prefix: pfx, RouterID: "old-config", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := &strictSink{nodes: []string{n0, n1}}
	s.set("", unprobed(n0), unprobed(n1)) // no say: the test writes the decisions
	stop := c.Watch("c", s.nodes, s)
	defer stop()
	put := func(d Decision) {
		t.Helper()
		d.Decider, d.Cause = "operator", "test"
		if _, err := cl.Put(context.Background(), WriterKey(pfx, "c"), mustJSON(t, d)); err != nil {
			t.Fatal(err)
		}
	}
	put(Decision{Writer: n0, Epoch: 1})
	eventually(t, "n0 at epoch 1", func() bool { return s.has(n0, 1) })
	put(Decision{Writer: n2, Epoch: 2}) // n2: not in this router's configuration
	eventually(t, "writes refused at epoch 2", func() bool {
		d, ok := s.last()
		return ok && d.Refuse && d.Writer == "" && d.Epoch == 2
	})
	if d, _ := s.last(); !strings.Contains(d.Cause, n2) || !strings.Contains(d.Cause, "not a node") {
		t.Errorf("cause %q: want it to name %s and say it is not a node of the cluster here", d.Cause, n2)
	}
	put(Decision{Writer: n1, Epoch: 3})
	eventually(t, "n1 at epoch 3", func() bool { return s.has(n1, 3) })
}

// Defect: between Watch and the first read of the writer key — the
// coordinator's first session (a lease grant, its keepalive, the presence
// put) and a get — a router that started while etcd was reachable had no
// decision and routed writes by its local rule: if the fleet had moved the
// writer earlier and the old writer was back and writable (no Demote), the
// new process could write there, beside the fleet's writer, for those
// first milliseconds. Expected: a watched cluster refuses writes (not
// sent) until the first read says either the fleet's writer or "no
// decision yet" (then the local rule).
func TestReviewNoLocalWritesBeforeFirstRead(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review-first-read/"
	if _, err := cl.Put(context.Background(), WriterKey(pfx, "c"), mustJSON(t, Decision{Writer: n1, Epoch: 2, Decider: "old", Cause: "test"})); err != nil {
		t.Fatal(err)
	}
	c, err := New(cl, Options{Prefix: pfx, RouterID: "fresh", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := &fakeSink{}
	s.set("", healthy("0-1-1", "0-1-1", "0-1-1")...)
	stop := c.Watch("c", testNodes, s)
	defer stop()
	if d, ok := s.last(); !ok || !(d.Refuse || d.Writer == n1) {
		t.Fatalf("right after Watch: decision %+v (applied %v): the cluster is on its local rule", d, ok)
	}
	eventually(t, "the fleet's writer n1 at epoch 2", func() bool { return s.has(n1, 2) })
	if ds := s.all(); len(ds) != 2 || !ds[0].Refuse || ds[0].Epoch != 0 {
		t.Errorf("decisions applied %+v, want the start-up refusal then n1", ds)
	}

	// No decision yet (cluster d): the refusal, then the local rule, until
	// the fleet's first decision.
	s2 := &fakeSink{}
	s2.set("", healthy("0-1-1", "0-1-1", "0-1-1")...)
	stop2 := c.Watch("d", testNodes, s2)
	defer stop2()
	if d, ok := s2.last(); !ok || !d.Refuse || d.Writer != "" {
		t.Fatalf("right after Watch of a cluster with no decision: %+v (applied %v), want writes refused", d, ok)
	}
	eventually(t, "the first decision of d", func() bool { return s2.has(n0, 1) })
	// The decider (this coordinator) may publish d's first decision, on
	// the view the watch publishes at once, before the watch's first read:
	// the read then finds n0 and the local-rule step is skipped (failed
	// about once in four runs under -race).
	ds := s2.all()
	localRule := len(ds) >= 3 && !ds[1].Refuse && ds[1].Writer == "" && strings.Contains(ds[1].Cause, "no writer decision")
	direct := len(ds) == 2 && ds[1].Writer == n0
	if len(ds) < 2 || !ds[0].Refuse || !localRule && !direct {
		t.Errorf("decisions applied %+v, want the start-up refusal, the local rule (no decision yet, unless the decider was first), then n0", ds)
	}
}

// TestReviewStartWithEtcdDown: a router that starts while etcd is down
// refuses writes (not sent) until its EtcdLost policy applies — about one
// lease, as for a router that lost etcd later — and then does what the
// policy says with no decision read: KeepLastDecision and LocalDecisions
// the local rule, RefuseWrites writes still refused. Once etcd is back, it
// follows the fleet's decision.
func TestReviewStartWithEtcdDown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy EtcdLostPolicy
		refuse bool // writes refused once the policy applies
	}{
		{KeepLastDecision, false},
		{LocalDecisions, false},
		{RefuseWrites, true},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			t.Parallel()
			te := startEtcd(t)
			cl := newClient(t, te.endpoints[0])
			const pfx = "/review-start-down/"
			if _, err := cl.Put(context.Background(), WriterKey(pfx, "c"), mustJSON(t, Decision{Writer: n1, Epoch: 2, Decider: "old", Cause: "test"})); err != nil {
				t.Fatal(err)
			}
			te.crash()
			start := time.Now()
			c, err := New(newClient(t, te.endpoints[0]), Options{Prefix: pfx, RouterID: "fresh", LeaseTTL: testTTL, EtcdLost: tc.policy, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := &fakeSink{}
			s.set("", healthy("0-1-1", "0-1-1", "0-1-1")...)
			stop := c.Watch("c", testNodes, s)
			defer stop()
			if d, ok := s.last(); !ok || !d.Refuse || d.Writer != "" {
				t.Fatalf("right after Watch with etcd down: %+v (applied %v), want writes refused", d, ok)
			}
			eventually(t, "the EtcdLost policy", func() bool {
				d, _ := s.last()
				return strings.Contains(d.Cause, "etcd unreachable")
			})
			applied := time.Since(start)
			t.Logf("policy %s applied %v after New with etcd down (lease %v)", tc.policy, applied.Round(time.Millisecond), testTTL)
			ds := s.all()
			if len(ds) != 2 || !ds[0].Refuse {
				t.Fatalf("decisions applied %+v, want the start-up refusal, then the policy", ds)
			}
			if d := ds[1]; d.Refuse != tc.refuse || d.Writer != "" {
				t.Errorf("policy %s with no decision read: %+v, want refuse=%v and no writer", tc.policy, d, tc.refuse)
			}
			// Writes were refused for about a lease: not less than one
			// (the policy waits that long), not much more.
			if applied < testTTL-100*time.Millisecond || applied > testTTL+5*time.Second {
				t.Errorf("policy applied %v after New, want about one lease (%v)", applied.Round(time.Millisecond), testTTL)
			}
			te.restart()
			eventually(t, "the fleet's writer n1 once etcd is back", func() bool { return s.has(n1, 2) })
		})
	}
}

// Defect: Options.Demote was "bounded by DemoteTimeout" only if the hook
// honoured its context: a hook stuck on a dead old writer without a
// context (a driver call without one, a TCP connect to a blackholed host)
// stopped the decider — no decision for any cluster — and Close waited for
// it. Expected: after DemoteTimeout the decider publishes anyway (the
// cause says the demotion timed out), and Close does not wait for the
// hook.
func TestReviewDemoteHookIgnoringContext(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	const pfx = "/review-demote-stuck/"
	release := make(chan struct{})
	defer close(release)
	demote := func(ctx context.Context, cluster, addr string) error {
		<-release // ignores ctx
		return nil
	}
	var rs []*fakeRouter
	for _, id := range []string{"r1", "r2", "r3"} {
		rs = append(rs, newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, id,
			Options{Demote: demote, DemoteTimeout: 200 * time.Millisecond}, healthy("0-1-5", "0-1-5", "0-1-5")...))
	}
	eventually(t, "n0 decided", func() bool { return rs[0].sink.has(n0, 1) && rs[1].sink.has(n0, 1) && rs[2].sink.has(n0, 1) })
	aDown := []dbrouter.NodeStats{down(n0), up(n1, "0-1-5"), up(n2, "0-1-5")}
	rs[0].sink.set(n0, aDown...)
	rs[1].sink.set(n0, aDown...)
	eventually(t, "every router on n1 although Demote never returns", func() bool {
		return rs[0].sink.has(n1, 2) && rs[1].sink.has(n1, 2) && rs[2].sink.has(n1, 2)
	})
	if d, _ := decision(t, newClient(t, te.endpoints[0]), pfx); !strings.Contains(d.Cause, "not made read-only") {
		t.Errorf("cause %q: want it to say n0 was not made read-only", d.Cause)
	}
	for _, r := range rs {
		r.stop()
		done := make(chan struct{})
		go func() { r.coord.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Close of %s waits for a Demote hook that never returns", r.id)
		}
	}
}

// Defect: a stored decision older than the epochs the live routers
// applied — etcd restored from a backup, or the key rewritten by hand —
// stayed as it was while its writer was healthy: every running router
// refused it (older epoch) and kept its writer, while every router
// started later followed the stored one: two writers, for good.
// Expected: the decider re-publishes, above every live router's epoch,
// the writer the routers at the highest epoch use.
func TestReviewStoredDecisionOlderThanRouters(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review-restored/"
	view := healthy("0-1-1", "0-1-1", "0-1-1")
	r1 := newFakeRouter(t, cl, pfx, "r1", Options{}, view...)
	r2 := newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, "r2", Options{}, view...)
	eventually(t, "n0 at epoch 1", func() bool { return r1.sink.has(n0, 1) && r2.sink.has(n0, 1) })
	put := func(d Decision) {
		t.Helper()
		d.Decider, d.Cause = "operator", "test"
		if _, err := cl.Put(context.Background(), WriterKey(pfx, "c"), mustJSON(t, d)); err != nil {
			t.Fatal(err)
		}
	}
	put(Decision{Writer: n1, Epoch: 5})
	eventually(t, "n1 at epoch 5", func() bool { return r1.sink.has(n1, 5) && r2.sink.has(n1, 5) })
	r1.sink.set(n1, view...) // the writer each router uses now, in its view
	r2.sink.set(n1, view...)
	eventually(t, "views at epoch 5 on n1", func() bool {
		var v1, v2 View
		return getJSON(t, cl, ViewKey(pfx, "c", "r1"), &v1) && v1.Epoch == 5 && v1.Writer == n1 &&
			getJSON(t, cl, ViewKey(pfx, "c", "r2"), &v2) && v2.Epoch == 5 && v2.Writer == n1
	})
	put(Decision{Writer: n0, Epoch: 1}) // the backup's decision
	r3 := newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, "r3", Options{}, view...)
	eventually(t, "the routers' writer re-published above their epoch", func() bool {
		d, _ := decision(t, cl, pfx)
		return d.Writer == n1 && d.Epoch == 6
	})
	eventually(t, "every router on n1 at epoch 6", func() bool {
		return r1.sink.has(n1, 6) && r2.sink.has(n1, 6) && r3.sink.has(n1, 6)
	})
}

// Defect: Drain accepted draining the writer when the only other node Up
// and writable for a majority was read-only in one view; the decider
// (which does not choose a node read-only in any view) then had nowhere
// to move the writer, and the drained node stayed the writer. Expected:
// Drain refuses, as the decider's rule would.
func TestReviewDrainWithReadOnlyCandidate(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const pfx = "/review-drain-ro/"
	put := func(key string, v any) {
		t.Helper()
		if _, err := cli.Put(ctx, key, mustJSON(t, v)); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range []string{"web1", "web2", "web3"} {
		put(RouterKey(pfx, r), RouterInfo{ID: r})
		put(ViewKey(pfx, "c1", r), View{Router: r, Writer: "a:3306", Epoch: 1, Nodes: []NodeView{
			{Addr: "a:3306", State: "up", Probed: true},
			{Addr: "b:3306", State: "up", ReadOnly: i == 0, Probed: true},
			{Addr: "c:3306", State: "down", Probed: true},
		}})
	}
	put(WriterKey(pfx, "c1"), Decision{Writer: "a:3306", Epoch: 1})
	if err := Drain(ctx, cli, pfx, "c1", "a:3306", "ops"); !errors.Is(err, ErrDrainRefused) {
		t.Fatalf("drain of the writer whose only candidate is read-only for web1: err = %v, want ErrDrainRefused", err)
	}
}

// TestReviewTwoCoordinatorsOneClient: two coordinators of one process on
// one etcd client (two routers in one process) are two routers of the
// fleet: one decider between them, and closing one (the decider) leaves
// the other live, elected, and following decisions.
func TestReviewTwoCoordinatorsOneClient(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review-shared-client/"
	a := newFakeRouter(t, cl, pfx, "a", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "a elected", a.coord.IsDecider)
	b := newFakeRouter(t, cl, pfx, "b", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "n0 decided for both", func() bool { return a.sink.has(n0, 1) && b.sink.has(n0, 1) })
	if b.coord.IsDecider() {
		t.Fatal("two deciders on one client")
	}
	a.stop()
	if err := a.coord.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b elected once a closed", b.coord.IsDecider)
	var info RouterInfo
	if !getJSON(t, cl, RouterKey(pfx, "b"), &info) {
		t.Fatal("b's presence went with a's lease")
	}
	b.sink.set("", down(n0), up(n1, "0-1-1"), up(n2, "0-1-1"))
	eventually(t, "b decides alone: n1 at epoch 2", func() bool { return b.sink.has(n1, 2) })
}

// TestReviewPutConfigRace: PutConfig calls racing on one expected
// revision: exactly one stores its configuration, every other gets a
// *ConflictError naming the revision found.
func TestReviewPutConfigRace(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const pfx = "/review-put-race/"
	yaml := func(i int) []byte {
		return []byte(fmt.Sprintf("clusters:\n  c%d:\n    nodes: [\"127.0.0.1:%d\"]\n    user: app\n", i, 3306+i))
	}
	rev0, err := PutConfig(ctx, cli, pfx, yaml(0), 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make([]error, n)
	revs := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { revs[i], errs[i] = PutConfig(ctx, cli, pfx, yaml(i+1), rev0) })
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		var ce *ConflictError
		switch {
		case err == nil && won >= 0:
			t.Fatalf("PutConfig %d and %d both stored on revision %d", won, i, rev0)
		case err == nil:
			won = i
		case !errors.As(err, &ce) || ce.ExpectedRev != rev0 || ce.CurrentRev <= rev0:
			t.Fatalf("PutConfig %d: %v, want a conflict naming a revision after %d", i, err, rev0)
		}
	}
	got, rev, err := GetConfig(ctx, cli, pfx)
	if err != nil || won < 0 || string(got) != string(yaml(won+1)) || rev != revs[won] {
		t.Fatalf("stored %q at %d (err %v); winner %d", got, rev, err, won)
	}
}

// Defect: cluster names are joined into keys with path.Join, which cleans
// them: a cluster named ".." had its writer key at the prefix itself and
// its views outside views/ (the decider never saw them: the cluster
// silently stayed on the local rule, out of the fleet), "../config" read
// the fleet's configuration as its writer decision, and "c/" or "/c"
// shared every key with a cluster "c". Expected: such a name is not
// watched through etcd; its cluster refuses writes (not sent) with a cause
// that names the problem, rather than leaving the fleet silently.
func TestReviewClusterNameThatKeysCannotCarry(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review-names/"
	c, err := New(cl, Options{Prefix: pfx, RouterID: "r1", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, name := range []string{"..", "../config", "c/", "/c", "a//b", "a/./b", "."} {
		s := &fakeSink{}
		s.set("", healthy("0-1-1", "0-1-1", "0-1-1")...)
		stop := c.Watch(name, testNodes, s)
		d, ok := s.last()
		stop()
		if !ok || !d.Refuse || !strings.Contains(d.Cause, "cluster name") {
			t.Errorf("Watch(%q): decision %+v (applied %v), want writes refused with a cause naming the cluster name", name, d, ok)
		}
	}
	// A "/" inside a name is fine.
	s := &fakeSink{}
	s.set("", healthy("0-1-1", "0-1-1", "0-1-1")...)
	stop := c.Watch("eu/customers", testNodes, s)
	defer stop()
	eventually(t, "eu/customers decided", func() bool { return s.has(n0, 1) })
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Defect: two live routers with one RouterID (a configuration copied
// from one app server to the next) share their presence and view keys:
// the fleet counts them as one router whose view flips between theirs,
// and when one goes, its lease takes the shared presence key with it, so
// the other's views stop counting. Nothing said so. Expected: a router
// that finds its presence key held by another live lease logs it (it
// cannot refuse: a restarted router finds its previous run's key until
// that lease expires).
func TestReviewDuplicateRouterIDLogged(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	const pfx = "/review-dup-id/"
	a := newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, "web-1", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "web-1 elected", a.coord.IsDecider)
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, "web-1", Options{Logger: logger}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "a warning about the RouterID in use", func() bool {
		return strings.Contains(buf.String(), "RouterID in use by another live router")
	})
}
