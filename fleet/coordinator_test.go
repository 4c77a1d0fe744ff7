package fleet

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Tests of the Coordinator on an embedded etcd with fake routers (a
// Coordinator and a fake WriterSink whose view the test sets). Tests on
// real rings are in coordinator_ring_test.go.

var (
	n0, n1, n2 = testNodes[0], testNodes[1], testNodes[2]
)

// healthy is a view in which every node is up and writable at pos.
func healthy(pos ...string) []dbrouter.NodeStats {
	return []dbrouter.NodeStats{up(n0, pos[0]), up(n1, pos[1]), up(n2, pos[2])}
}

// verdicts records the decider's verdicts (Options.onVerdict).
type verdicts struct {
	mu  sync.Mutex
	all []recordedVerdict
}

type recordedVerdict struct {
	views []View
	v     verdict
}

func (r *verdicts) record(cluster string, views []View, v verdict) {
	r.mu.Lock()
	r.all = append(r.all, recordedVerdict{views, v})
	r.mu.Unlock()
}

// find returns the first verdict drawn from views for which match holds.
func (r *verdicts) find(match func([]View) bool) (verdict, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rv := range r.all {
		if match(rv.views) {
			return rv.v, true
		}
	}
	return verdict{}, false
}

// TestViewsPublishedAndRemoved: a router publishes its presence and its
// view of a cluster under its lease, republishes the view when it changes,
// removes it when the watch stops, and everything goes with the lease:
// revoked by Close, or expired when the router is cut from etcd.
func TestViewsPublishedAndRemoved(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/views-test/"
	r := newFakeRouter(t, cl, pfx, "r1", Options{}, up(n0, "0-1-7"), up(n1, "0-1-7"), unprobed(n2))
	r.sink.set(n0, up(n0, "0-1-7"), up(n1, "0-1-7"), unprobed(n2))

	var v View
	eventually(t, "r1's view", func() bool { return getJSON(t, cl, ViewKey(pfx, "c", "r1"), &v) && v.Writer == n0 })
	want := []NodeView{
		{Addr: n0, State: "up", GTID: "0-1-7", Probed: true},
		{Addr: n1, State: "up", GTID: "0-1-7", Probed: true},
		{Addr: n2, State: "up"},
	}
	if v.Router != "r1" || !slices.Equal(v.Nodes, want) {
		t.Fatalf("view %+v, want router r1, nodes %+v", v, want)
	}
	var info RouterInfo
	if !getJSON(t, cl, RouterKey(pfx, "r1"), &info) || info.ID != "r1" || info.PID == 0 {
		t.Fatalf("presence %+v", info)
	}

	r.sink.set(n0, up(n0, "0-1-8"), down(n1), unprobed(n2))
	eventually(t, "the view to show n1 down", func() bool {
		return getJSON(t, cl, ViewKey(pfx, "c", "r1"), &v) && v.Nodes[1].State == "down" && v.Nodes[1].Error == "connection refused"
	})

	r.stop()
	// Removed in the background (stop does not wait for etcd).
	eventually(t, "the view removed once its watch stopped", func() bool { return !getJSON(t, cl, ViewKey(pfx, "c", "r1"), &v) })
	if err := r.coord.Close(); err != nil {
		t.Fatal(err)
	}
	if getJSON(t, cl, RouterKey(pfx, "r1"), &info) {
		t.Fatal("the presence outlived Close (lease not revoked)")
	}

	// Lease expiry: a router cut from etcd disappears within about its TTL.
	proxy := newBlackhole(t, te.endpoints[0])
	r2 := newFakeRouter(t, newClient(t, proxy.addr()), pfx, "r2", Options{}, healthy("", "", "")...)
	eventually(t, "r2's view", func() bool { return getJSON(t, cl, ViewKey(pfx, "c", "r2"), &v) })
	proxy.setCut(true)
	cut := time.Now()
	eventually(t, "r2's view and presence to expire", func() bool {
		return !getJSON(t, cl, ViewKey(pfx, "c", "r2"), &v) && !getJSON(t, cl, RouterKey(pfx, "r2"), &info)
	})
	t.Logf("r2's keys expired %v after the cut (lease %v)", time.Since(cut).Round(time.Millisecond), testTTL)
	proxy.setCut(false)
	eventually(t, "r2 back in the fleet after the cut healed", func() bool { return getJSON(t, cl, ViewKey(pfx, "c", "r2"), &v) })
	_ = r2
}

// TestDecisionsDelivered: the decision in etcd when a router starts is
// applied, and so is each later one, in order; an older epoch is refused
// by the cluster and changes nothing.
func TestDecisionsDelivered(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/delivered/"
	put := func(d Decision) {
		t.Helper()
		d.Decider, d.Cause = "operator", "test"
		b := mustJSON(t, d)
		if _, err := cl.Put(context.Background(), WriterKey(pfx, "c"), b); err != nil {
			t.Fatal(err)
		}
	}
	put(Decision{Writer: n1, Epoch: 3})
	// Views not probed: the decider has no evidence and leaves the key alone.
	r := newFakeRouter(t, cl, pfx, "r1", Options{}, unprobed(n0), unprobed(n1), unprobed(n2))
	eventually(t, "the decision read at start", func() bool { return r.sink.has(n1, 3) })
	put(Decision{Writer: n2, Epoch: 4})
	eventually(t, "epoch 4", func() bool { return r.sink.has(n2, 4) })
	put(Decision{Writer: n1, Epoch: 2}) // older: refused by the sink
	put(Decision{Writer: n0, Epoch: 5})
	eventually(t, "epoch 5", func() bool { return r.sink.has(n0, 5) })
	r.sink.mu.Lock()
	got := slices.Clone(r.sink.decisions)
	r.sink.mu.Unlock()
	// Before the first read, writes are refused (the start-up refusal).
	if len(got) == 0 || !got[0].Refuse || got[0].Cause != startCause {
		t.Fatalf("decisions applied %+v, want the start-up refusal first", got)
	}
	var seq []string
	for _, d := range got[1:] {
		seq = append(seq, d.Writer)
		if !strings.Contains(d.Cause, "fleet decision of operator: test") {
			t.Errorf("cause %q", d.Cause)
		}
	}
	if !slices.Equal(seq, []string{n1, n2, n0}) {
		t.Errorf("decisions applied %v, want [n1 n2 n0]", seq)
	}
}

// TestDeletedWriterKeyKeepsEpochsRising: the writer key is deleted after
// the routers applied epoch 5; the next (first) decision is published at
// epoch 6, above every live router's epoch, and applied by every router
// (at epoch 1 they would refuse it until restarted).
func TestDeletedWriterKeyKeepsEpochsRising(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/deleted/"
	r1 := newFakeRouter(t, cl, pfx, "r1", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	r2 := newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, "r2", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "n0 decided at epoch 1", func() bool { return r1.sink.has(n0, 1) && r2.sink.has(n0, 1) })
	if _, err := cl.Put(context.Background(), WriterKey(pfx, "c"), mustJSON(t, Decision{Writer: n0, Epoch: 5, Decider: "operator", Cause: "test"})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "epoch 5 applied and in both views", func() bool {
		var v1, v2 View
		return r1.sink.has(n0, 5) && r2.sink.has(n0, 5) &&
			getJSON(t, cl, ViewKey(pfx, "c", "r1"), &v1) && v1.Epoch == 5 &&
			getJSON(t, cl, ViewKey(pfx, "c", "r2"), &v2) && v2.Epoch == 5
	})
	if _, err := cl.Delete(context.Background(), WriterKey(pfx, "c")); err != nil {
		t.Fatal(err)
	}
	var d Decision
	eventually(t, "a new decision", func() bool { return getJSON(t, cl, WriterKey(pfx, "c"), &d) })
	if d.Epoch != 6 || d.Writer != n0 {
		t.Fatalf("decision after the key was deleted: %+v, want n0 at epoch 6", d)
	}
	eventually(t, "epoch 6 applied by both routers", func() bool { return r1.sink.has(n0, 6) && r2.sink.has(n0, 6) })
}

// TestOneDecider: of three coordinators exactly one is the decider; when it
// closes, exactly one of the others takes over; never two at once.
func TestOneDecider(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	const pfx = "/one-decider/"
	var rs []*fakeRouter
	for _, id := range []string{"r1", "r2", "r3"} {
		rs = append(rs, newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, id, Options{}, unprobed(n0), unprobed(n1), unprobed(n2)))
	}
	most := 0
	one := func(rs []*fakeRouter) func() bool {
		return func() bool {
			n := len(deciders(rs...))
			most = max(most, n)
			return n == 1
		}
	}
	eventually(t, "one decider", one(rs))
	// It stays the only one.
	first := deciders(rs...)[0]
	for range 50 {
		if d := deciders(rs...); len(d) != 1 || d[0] != first {
			t.Fatalf("deciders %v, want only %s", d, first)
		}
		time.Sleep(tick)
	}
	var rest []*fakeRouter
	for _, r := range rs {
		if r.id == first {
			r.stop()
			r.coord.Close()
		} else {
			rest = append(rest, r)
		}
	}
	eventually(t, "another decider", one(rest))
	if next := deciders(rest...)[0]; next == first || most > 1 {
		t.Fatalf("decider %s after %s closed; at most %d at once", next, first, most)
	}
}

// TestDeciderDecidesClustersItDoesNotWatch: the decider decides every
// cluster any live router publishes a view of, in that view's node order.
func TestDeciderDecidesClustersItDoesNotWatch(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/unwatched/"
	bare, err := New(newClient(t, te.endpoints[0]), Options{Prefix: pfx, RouterID: "bare", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	eventually(t, "the bare coordinator elected", bare.IsDecider)
	r := newFakeRouter(t, cl, pfx, "r1", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "a first decision", func() bool { return r.sink.has(n0, 1) })
	if d, _ := decision(t, cl, pfx); d.Decider != "bare" {
		t.Errorf("decided by %q, want bare", d.Decider)
	}
}

// TestFailoverNeedsMajority: three routers agree on a first writer; one
// router seeing it down changes nothing; a second one makes a majority, and
// every router moves to the first node holding the old writer's position.
func TestFailoverNeedsMajority(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/majority/"
	rec := &verdicts{}
	var rs []*fakeRouter
	for _, id := range []string{"r1", "r2", "r3"} {
		rs = append(rs, newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, id, Options{onVerdict: rec.record},
			healthy("0-1-100", "0-1-90", "0-1-100")...))
		rs[len(rs)-1].sink.set(n0, healthy("0-1-100", "0-1-90", "0-1-100")...)
	}
	eventually(t, "every router on n0, epoch 1", func() bool {
		return rs[0].sink.has(n0, 1) && rs[1].sink.has(n0, 1) && rs[2].sink.has(n0, 1)
	})

	aDown := []dbrouter.NodeStats{down(n0), up(n1, "0-1-95"), up(n2, "0-1-100")}
	rs[0].sink.set(n0, aDown...)
	downIn := func(k int) func([]View) bool {
		return func(views []View) bool {
			n := 0
			for _, v := range views {
				if v.Nodes[0].State == "down" {
					n++
				}
			}
			return n == k && len(views) == 3
		}
	}
	var v verdict
	eventually(t, "a verdict with n0 down for one router", func() (ok bool) { v, ok = rec.find(downIn(1)); return })
	if v.change {
		t.Fatalf("one router of three seeing n0 down moved the writer: %+v", v)
	}
	if d, _ := decision(t, cl, pfx); d.Writer != n0 || d.Epoch != 1 {
		t.Fatalf("decision %+v after one router saw n0 down, want n0 epoch 1", d)
	}

	rs[1].sink.set(n0, aDown...)
	eventually(t, "every router on n2 (holds n0's position; n1 is behind), epoch 2", func() bool {
		return rs[0].sink.has(n2, 2) && rs[1].sink.has(n2, 2) && rs[2].sink.has(n2, 2)
	})
	d, _ := decision(t, cl, pfx)
	if !strings.Contains(d.Cause, "n0:3306 is down for 2 of 3 routers") || d.GTID != "0-1-100" {
		t.Errorf("decision %+v: want the cause to count 2 of 3, GTID n2's 0-1-100", d)
	}
}

// TestReadOnlyWriterReplaced: a writer read-only in one router's view is
// replaced; the decider calls Demote on it before publishing.
func TestReadOnlyWriterReplaced(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/read-only/"
	var mu sync.Mutex
	var demoted []string
	demote := func(ctx context.Context, cluster, addr string) error {
		d, _ := decision(t, cl, pfx)
		mu.Lock()
		demoted = append(demoted, cluster+" "+addr+" while "+d.Writer)
		mu.Unlock()
		return nil
	}
	var rs []*fakeRouter
	for _, id := range []string{"r1", "r2", "r3"} {
		rs = append(rs, newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, id, Options{Demote: demote},
			healthy("0-1-5", "0-1-5", "0-1-5")...))
	}
	eventually(t, "n0 decided", func() bool { return rs[2].sink.has(n0, 1) })
	rs[2].sink.set(n0, readOnly(n0, "0-1-5"), up(n1, "0-1-5"), up(n2, "0-1-5"))
	eventually(t, "every router on n1", func() bool {
		return rs[0].sink.has(n1, 2) && rs[1].sink.has(n1, 2) && rs[2].sink.has(n1, 2)
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(demoted, []string{"c " + n0 + " while " + n0}) {
		t.Errorf("Demote calls %q, want one for n0 before the decision moved", demoted)
	}
	if d, _ := decision(t, cl, pfx); !strings.Contains(d.Cause, "read-only (router r3)") || !strings.Contains(d.Cause, "n0:3306 made read-only") {
		t.Errorf("cause %q", d.Cause)
	}
}

// TestDeposedDeciderCannotPublish: a decider cut from etcd (frozen) loses
// its lease; another takes over and decides; once the first can reach etcd
// again, a publication under its old term is rejected, whatever revision
// of the writer key it names.
func TestDeposedDeciderCannotPublish(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/deposed/"
	proxy := newBlackhole(t, te.endpoints[0])
	a := newFakeRouter(t, newClient(t, proxy.addr()), pfx, "a", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "a elected", a.coord.IsDecider)
	b := newFakeRouter(t, cl, pfx, "b", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "n0 decided for both", func() bool { return a.sink.has(n0, 1) && b.sink.has(n0, 1) })
	a.coord.mu.Lock()
	term := *a.coord.term
	a.coord.mu.Unlock()
	_, rev1 := decision(t, cl, pfx)

	proxy.setCut(true) // a is frozen, as far as etcd can tell
	b.sink.set("", down(n0), up(n1, "0-1-1"), up(n2, "0-1-1"))
	eventually(t, "b elected and n1 decided once a's lease expired", func() bool {
		d, _ := decision(t, cl, pfx)
		return b.coord.IsDecider() && d.Writer == n1 && d.Epoch == 2
	})
	_, rev2 := decision(t, cl, pfx)
	proxy.setCut(false) // a thaws
	for _, rev := range []int64{rev1, rev2} {
		_, err := a.coord.publishDecision(context.Background(), term, "c", rev, Decision{Writer: n2, Epoch: 2, Decider: "a", Cause: "stale"})
		if !errors.Is(err, errDeposed) {
			t.Errorf("publication by the deposed decider (writer key revision %d): err = %v, want errDeposed", rev, err)
		}
	}
	if err := a.coord.stillDeciding(context.Background(), term, "c", rev2); !errors.Is(err, errDeposed) {
		t.Errorf("the deposed decider's check before Demote: err = %v, want errDeposed", err)
	}
	if d, rev := decision(t, cl, pfx); d.Writer != n1 || rev != rev2 {
		t.Fatalf("decision %+v (revision %d) after the deposed decider tried, want n1 at %d", d, rev, rev2)
	}
	// The current decider's own term works, and a stale revision does not.
	b.coord.mu.Lock()
	bterm := *b.coord.term
	b.coord.mu.Unlock()
	if _, err := b.coord.publishDecision(context.Background(), bterm, "c", rev1, Decision{Writer: n2, Epoch: 3}); !errors.Is(err, errDecisionMoved) {
		t.Errorf("publication on a stale revision: err = %v, want errDecisionMoved", err)
	}
	if err := b.coord.stillDeciding(context.Background(), bterm, "c", rev2); err != nil {
		t.Errorf("the current decider's check on the current revision: %v", err)
	}
	eventually(t, "a back on the fleet's decision", func() bool { return a.sink.has(n1, 2) })
}

// TestEtcdLostPolicies: with etcd stopped for longer than the lease, each
// policy does what it says; once etcd is back, the router follows the
// fleet's decision again.
func TestEtcdLostPolicies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy EtcdLostPolicy
		want   dbrouter.WriterDecision // applied once lost; zero: none
	}{
		{KeepLastDecision, dbrouter.WriterDecision{}},
		{LocalDecisions, dbrouter.WriterDecision{Epoch: 1}},
		{RefuseWrites, dbrouter.WriterDecision{Epoch: 1, Refuse: true}},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			t.Parallel()
			te := startEtcd(t)
			const pfx = "/lost/"
			r := newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, "r1", Options{EtcdLost: tc.policy},
				healthy("0-1-1", "0-1-1", "0-1-1")...)
			eventually(t, "n0 decided", func() bool { return r.sink.has(n0, 1) })
			before := r.sink.count()
			te.crash()
			stopped := time.Now()
			eventually(t, "the coordinator to count etcd as lost", func() bool {
				r.coord.mu.Lock()
				defer r.coord.mu.Unlock()
				return r.coord.lost
			})
			lost := time.Since(stopped)
			if tc.want == (dbrouter.WriterDecision{}) {
				if n := r.sink.count(); n != before {
					t.Fatalf("%d decisions applied after etcd was lost, want none (keep the last)", n-before)
				}
			} else {
				// The coordinator counts etcd as lost, then applies the
				// policy to each watch: wait for it (1 s at most).
				match := func() bool {
					d, _ := r.sink.last()
					return d.Writer == tc.want.Writer && d.Epoch == tc.want.Epoch && d.Refuse == tc.want.Refuse && strings.Contains(d.Cause, "etcd unreachable")
				}
				for deadline := time.Now().Add(time.Second); !match() && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
				if d, _ := r.sink.last(); !match() {
					t.Fatalf("decision applied once etcd was lost: %+v, want %+v", d, tc.want)
				}
			}
			t.Logf("policy %s applied %v after etcd stopped (lease %v)", tc.policy, lost.Round(time.Millisecond), testTTL)
			afterLost := r.sink.count()
			te.restart()
			restarted := time.Now()
			eventually(t, "n0 applied again once etcd is back", func() bool { return r.sink.count() > afterLost && r.sink.has(n0, 1) })
			t.Logf("back on the fleet's decision %v after etcd restarted", time.Since(restarted).Round(time.Millisecond))
		})
	}
}

// TestNewOptions: bad options are refused; defaults are applied.
func TestNewOptions(t *testing.T) {
	t.Parallel()
	cl, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, tc := range []struct {
		opts Options
		err  string
	}{
		{Options{RouterID: "a/b"}, `RouterID "a/b" contains`},
		{Options{RouterID: "web\xff"}, `RouterID "web\xff" must be valid UTF-8 without control characters`},
		{Options{RouterID: "web\n1"}, `RouterID "web\n1" must be valid UTF-8 without control characters`},
		{Options{RouterID: "web\u202e1"}, `RouterID "web\u202e1" must be valid UTF-8 without control characters`},
		{Options{RouterID: "web\u20281"}, `RouterID "web\u20281" must be valid UTF-8 without control characters`},
		{Options{RouterID: "web\u200b1"}, `RouterID "web\u200b1" must be valid UTF-8 without control characters`},
		{Options{RouterID: "web\u200d1"}, `RouterID "web\u200d1" must be valid UTF-8 without control characters`},
		{Options{RouterID: "\ufeffweb1"}, `RouterID "\ufeffweb1" must be valid UTF-8 without control characters`},
		{Options{RouterID: "web\u00ad1"}, `RouterID "web\u00ad1" must be valid UTF-8 without control characters`},
		{Options{RouterID: "web\u20601"}, `RouterID "web\u20601" must be valid UTF-8 without control characters`},
		{Options{RouterID: "web\u180e1"}, `RouterID "web\u180e1" must be valid UTF-8 without control characters`},
		// HANGUL FILLER is a letter to strconv.IsPrint: %q shows it as it is.
		{Options{RouterID: "web\u31641"}, "RouterID \"web\u31641\" must be valid UTF-8 without control characters"},
		{Options{RouterID: "web\u28001"}, "RouterID \"web\u28001\" must be valid UTF-8 without control characters"},
		{Options{LeaseTTL: -time.Second}, "negative LeaseTTL"},
		{Options{EtcdLost: 7}, "unknown EtcdLost policy 7"},
	} {
		if _, err := New(cl, tc.opts); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("New(%+v): err = %v, want %q", tc.opts, err, tc.err)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil client) accepted")
	}
	c, err := New(cl, Options{Prefix: "/x", LeaseTTL: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.opts.Prefix != "/x/" || c.ttl != 2 || c.opts.DemoteTimeout != DefaultDemoteTimeout || !strings.Contains(c.RouterID(), "-") {
		t.Errorf("defaults: prefix %q ttl %d demote timeout %v router %q", c.opts.Prefix, c.ttl, c.opts.DemoteTimeout, c.RouterID())
	}
}
