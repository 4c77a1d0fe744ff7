package fleet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Review of the fleet edges: a campaign left behind by Close, the start-up
// refusal of a cluster whose writer key cannot be read.

// campaignGoroutines counts the goroutines of the process inside etcd's
// Election.Campaign.
func campaignGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "concurrency.(*Election).Campaign(") {
			count++
		}
	}
	return count
}

// Defect: Coordinator.Close while etcd was down returned within a few
// seconds, but left etcd's Election.Campaign running: its ctx ended, it
// resigns with the client's own context, which ends only when the client
// is closed — and a Coordinator does not close the client it was given.
// One goroutine leaked per Close until etcd answered again. Expected: the
// campaign's goroutine ends soon after Close, etcd still down. Not
// parallel: it counts the goroutines of the whole process.
func TestReviewEdgesCloseEndsCampaign(t *testing.T) {
	base := campaignGoroutines()
	te := startEtcd(t)
	const pfx = "/review-edges-campaign/"
	a, err := New(newClient(t, te.endpoints[0]), Options{Prefix: pfx, RouterID: "a", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	eventually(t, "a decider", a.IsDecider)
	b, err := New(newClient(t, te.endpoints[0]), Options{Prefix: pfx, RouterID: "b", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "b campaigning behind a", func() bool { return campaignGoroutines() > base })
	te.crash()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case <-done:
		t.Logf("Close with etcd down: %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("Close still waiting 15 s after etcd went down")
	}
	deadline := time.Now().Add(10 * time.Second)
	for campaignGoroutines() > base {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after Close (etcd still down): %d goroutines in Election.Campaign, %d before the test: the closed coordinator's campaign is still running", campaignGoroutines(), base)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("campaign goroutine gone %v after Close was called", time.Since(start).Round(time.Millisecond))
}

// logBuffer collects a coordinator's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logger returns a logger writing to l (and to the test's output with -v).
func (l *logBuffer) logger(t testing.TB) *slog.Logger {
	var w io.Writer = l
	if testing.Verbose() {
		w = io.MultiWriter(l, t.Output())
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// warned reports whether a line at level WARN or ERROR holds every one of
// parts.
func (l *logBuffer) warned(parts ...string) bool {
	for _, line := range strings.Split(l.String(), "\n") {
		if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// refusedSince checks that every decision s was handed refuses writes.
func refusedAll(t *testing.T, s *fakeSink, when string) {
	t.Helper()
	for _, d := range s.all() {
		if !d.Refuse {
			t.Fatalf("%s: decision %+v applied (all: %+v), want writes refused throughout", when, d, s.all())
		}
	}
}

// Defect: a watched cluster refuses writes until the coordinator's first
// read of its writer key succeeds. A read that fails while etcd answers —
// a value that does not decode, or decodes to no decision (no epoch: the
// fleet publishes none below 1) — left the refusal in force for good, its
// cause saying only that the decision had not been read yet, and the
// failure logged at Debug (a read error) or not tied to the refusal (an
// undecodable value), whatever the EtcdLost policy; a value such as "{}"
// was applied as a decision handing the cluster to the local rule, while
// the other routers keep the fleet's writer. Expected: the refusal's cause
// names the key and the error, a warning says so at once; once the
// failure has lasted the lease, every policy keeps refusing (no decision
// to keep; the router is live and the other routers follow etcd, so even
// LocalDecisions, whose risk is a partition, must not take the local
// rule); a readable decision ends it at once.
func TestReviewEdgesUnreadableWriterKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		value  string
		policy EtcdLostPolicy
		why    string // in the cause and the warning
	}{
		{"garbage/keep-last", "{not json", KeepLastDecision, "invalid character"},
		{"garbage/refuse", "{not json", RefuseWrites, "invalid character"},
		{"garbage/local", "{not json", LocalDecisions, "invalid character"},
		{"no-epoch/keep-last", "{}", KeepLastDecision, "no epoch"},
		{"no-epoch/local", `{"writer":"n1:3306"}`, LocalDecisions, "no epoch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			te := startEtcd(t)
			cl := newClient(t, te.endpoints[0])
			pfx := "/review-edges-unreadable/"
			key := WriterKey(pfx, "c")
			if _, err := cl.Put(context.Background(), key, tc.value); err != nil {
				t.Fatal(err)
			}
			var logs logBuffer
			c, err := New(cl, Options{Prefix: pfx, RouterID: "r", LeaseTTL: testTTL, EtcdLost: tc.policy, Logger: logs.logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Not probed: no view counts, so the decider (this coordinator)
			// does not replace the value.
			s := &fakeSink{}
			s.set("", unprobed(n0), unprobed(n1), unprobed(n2))
			start := time.Now()
			stop := c.Watch("c", testNodes, s)
			defer stop()
			eventually(t, "a refusal that names the key and the error", func() bool {
				d, _ := s.last()
				return d.Refuse && strings.Contains(d.Cause, key) && strings.Contains(d.Cause, tc.why)
			})
			d, _ := s.last()
			t.Logf("after %v: %s", time.Since(start).Round(time.Millisecond), d.Cause)
			if el := time.Since(start); el > testTTL {
				t.Errorf("the refusal said why only %v after Watch, want within the lease (%v)", el.Round(time.Millisecond), testTTL)
			}
			refusedAll(t, s, "before the lease")
			if !logs.warned(key, tc.why) {
				t.Errorf("no warning naming %s and %q; log:\n%s", key, tc.why, logs.String())
			}
			time.Sleep(time.Until(start.Add(testTTL - 300*time.Millisecond)))
			refusedAll(t, s, "before the lease ran out")
			time.Sleep(time.Until(start.Add(testTTL + 1500*time.Millisecond)))
			d, _ = s.last()
			// Under every policy: the router is live, the others follow
			// etcd (LocalDecisions took the local rule here: two writers
			// without a fault, TestReviewEdges2LocalDecisionsUnreadableKeyTwoWriters).
			refusedAll(t, s, "after the lease, "+tc.policy.String())
			if !strings.Contains(d.Cause, key) || !strings.Contains(d.Cause, tc.why) {
				t.Errorf("%s, after the lease: %+v, want the refusal still naming the key and the error", tc.policy, d)
			}
			// A readable decision ends it.
			if _, err := cl.Put(context.Background(), key, mustJSON(t, Decision{Writer: n1, Epoch: 2, Decider: "old", Cause: "test"})); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the fleet's writer n1 once the key is readable", func() bool { return s.has(n1, 2) })
		})
	}
}

// authClient returns a client of endpoint that logs in as user.
func authClient(t testing.TB, endpoint, user, password string) *clientv3.Client {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second,
		Username: user, Password: password, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// Defect: as TestReviewEdgesUnreadableWriterKey, with the read refused by
// etcd's access control (the router's role may read and write its
// presence, views and the election, not the writer keys: a role set up
// for another prefix, say): writes refused for good, the error at Debug.
// Expected: the refusal and a warning name the key and "permission
// denied"; under KeepLastDecision the refusal outlasts the lease (the
// other routers follow etcd); once the role may read the key, the router
// follows the decision.
func TestReviewEdgesWriterKeyPermissionDenied(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	const pfx = "/review-edges-perm/"
	key := WriterKey(pfx, "c")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := newClient(t, te.Endpoint())
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(admin.Put(ctx, key, mustJSON(t, Decision{Writer: n1, Epoch: 2, Decider: "old", Cause: "test"})))
	must(admin.RoleAdd(ctx, "root"))
	must(admin.UserAdd(ctx, "root", "rootpw"))
	must(admin.UserGrantRole(ctx, "root", "root"))
	must(admin.RoleAdd(ctx, "router"))
	// Everything under the prefix that sorts before writers/: routers/,
	// views/, election/, drained/, switchovers/.
	must(admin.RoleGrantPermission(ctx, "router", pfx, pfx+"writers/", clientv3.PermissionType(clientv3.PermReadWrite)))
	must(admin.UserAdd(ctx, "router", "routerpw"))
	must(admin.UserGrantRole(ctx, "router", "router"))
	must(admin.AuthEnable(ctx))
	root := authClient(t, te.Endpoint(), "root", "rootpw")

	var logs logBuffer
	c, err := New(authClient(t, te.endpoints[0], "router", "routerpw"), Options{Prefix: pfx, RouterID: "r", LeaseTTL: testTTL, Logger: logs.logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.viewPoll = 20 * time.Millisecond
	s := &fakeSink{}
	s.set("", unprobed(n0), unprobed(n1), unprobed(n2))
	start := time.Now()
	stop := c.Watch("c", testNodes, s)
	defer stop()
	// A real router's cluster c1 on the same coordinator: what its
	// refused writes say.
	r, err := dbrouter.Open(review6Config(c, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c1, err := r.Cluster("c1")
	if err != nil {
		t.Fatal(err)
	}
	const why = "permission denied"
	eventually(t, "a refusal that names the key and the error", func() bool {
		d, _ := s.last()
		return d.Refuse && strings.Contains(d.Cause, key) && strings.Contains(d.Cause, why)
	})
	d, _ := s.last()
	t.Logf("after %v: %s", time.Since(start).Round(time.Millisecond), d.Cause)
	if !logs.warned(key, why) {
		t.Errorf("no warning naming %s and %q; log:\n%s", key, why, logs.String())
	}
	eventually(t, "c1's writes refused, saying why", func() bool {
		_, err := c1.ExecContext(ctx, "INSERT INTO t VALUES (1)")
		return errors.Is(err, dbrouter.ErrNotSent) && errors.Is(err, dbrouter.ErrNoNode) &&
			strings.Contains(err.Error(), WriterKey(pfx, "c1")) && strings.Contains(err.Error(), why)
	})
	_, err = c1.ExecContext(ctx, "INSERT INTO t VALUES (1)")
	t.Logf("a write to c1: %v", err)

	// The coordinator's status and the view it publishes say so too.
	var cs ClusterStatus
	for _, x := range c.Status().Clusters {
		if x.Cluster == "c" {
			cs = x
		}
	}
	if !cs.Refused || !strings.Contains(cs.Cause, why) || !strings.Contains(cs.ReadError, why) || cs.ReadErrorSince.IsZero() {
		t.Errorf("Status of c: %+v, want writes refused, and the read error since when", cs)
	}
	eventually(t, "the view of c saying why writes are refused", func() bool {
		var v View
		return getJSON(t, root, ViewKey(pfx, "c", "r"), &v) && strings.Contains(v.Refused, why) && strings.Contains(v.ReadError, why)
	})

	time.Sleep(time.Until(start.Add(testTTL + 1500*time.Millisecond)))
	refusedAll(t, s, "KeepLastDecision, after the lease")
	// The decider (this coordinator, alone) cannot read the writer keys
	// either: it decides nothing, and says so.
	eventually(t, "the decider's warning", func() bool { return logs.warned("the decider cannot read the fleet", why) })
	if _, err := c1.ExecContext(ctx, "INSERT INTO t VALUES (1)"); !errors.Is(err, dbrouter.ErrNotSent) || !strings.Contains(err.Error(), why) {
		t.Errorf("a write to c1 after the lease: %v, want refused (not sent), saying why", err)
	}
	must(root.RoleGrantPermission(ctx, "router", pfx+"writers/", pfx+"writers0", clientv3.PermissionType(clientv3.PermRead)))
	eventually(t, "the fleet's writer n1 once the key may be read", func() bool { return s.has(n1, 2) })
	for _, x := range c.Status().Clusters {
		if x.Cluster == "c" && (x.Refused || x.ReadError != "" || x.Writer != n1 || x.Epoch != 2) {
			t.Errorf("Status of c once read: %+v, want n1 at epoch 2, no read error", x)
		}
	}
	eventually(t, "the view of c without the refusal", func() bool {
		var v View
		return getJSON(t, root, ViewKey(pfx, "c", "r"), &v) && v.Refused == "" && v.ReadError == ""
	})
}

// Defect: the decider read a writer key holding a decision without an
// epoch ({"writer":"n1:3306"}, written by hand) as the current decision:
// it never replaced it while n1 was healthy, and the routers, which do
// not apply a value without an epoch (TestReviewEdgesUnreadableWriterKey),
// would refuse writes for good. Expected: the decider treats it as no
// decision, as it does a value that does not decode, and publishes a
// first decision above it, which the routers follow.
func TestReviewEdgesDeciderReplacesDecisionWithoutEpoch(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review-edges-no-epoch/"
	if _, err := cl.Put(context.Background(), WriterKey(pfx, "c"), `{"writer":"n1:3306","cause":"by hand"}`); err != nil {
		t.Fatal(err)
	}
	r := newFakeRouter(t, cl, pfx, "r", Options{}, healthy("0-1-1", "0-1-1", "0-1-1")...)
	eventually(t, "a decision with an epoch, applied", func() bool {
		d, _ := decision(t, cl, pfx)
		return d.Epoch >= 1 && r.sink.has(d.Writer, d.Epoch)
	})
	d, _ := decision(t, cl, pfx)
	t.Logf("published: %+v", d)
}

// A cluster rebuilt by a Reload (a new Watch of the same name) while its
// writer key holds a value that is no decision: under KeepLastDecision,
// once the lease has passed, it keeps the decision the earlier watch
// applied, as it would with etcd lost (the router used that decision all
// along), rather than refusing writes.
func TestReviewEdgesRewatchUnreadableKeepsLastDecision(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review-edges-rewatch/"
	key := WriterKey(pfx, "c")
	if _, err := cl.Put(context.Background(), key, mustJSON(t, Decision{Writer: n1, Epoch: 2, Decider: "old", Cause: "test"})); err != nil {
		t.Fatal(err)
	}
	c, err := New(cl, Options{Prefix: pfx, RouterID: "r", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Writer "" and unprobed: no router's view names a writer to restore,
	// no view counts: the decider leaves the value as it is.
	s := &fakeSink{}
	s.set("", unprobed(n0), unprobed(n1), unprobed(n2))
	stop := c.Watch("c", testNodes, s)
	defer stop()
	eventually(t, "the fleet's writer n1", func() bool { return s.has(n1, 2) })
	if _, err := cl.Put(context.Background(), key, "{not json"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the read error in Status", func() bool {
		st := c.Status()
		return len(st.Clusters) == 1 && strings.Contains(st.Clusters[0].ReadError, "invalid character")
	})
	if !s.has(n1, 2) {
		t.Fatalf("an unreadable value changed the decision applied: %+v", s.all())
	}
	s2 := &fakeSink{}
	s2.set("", unprobed(n0), unprobed(n1), unprobed(n2))
	start := time.Now()
	stop2 := c.Watch("c", testNodes, s2)
	defer stop2()
	stop()
	time.Sleep(time.Until(start.Add(testTTL - 300*time.Millisecond)))
	refusedAll(t, s2, "the rebuilt cluster before the lease")
	eventually(t, "the rebuilt cluster on the last decision (n1, epoch 2)", func() bool { return s2.has(n1, 2) })
	if el := time.Since(start); el > testTTL+2*time.Second {
		t.Errorf("the last decision kept %v after the new Watch, want about a lease (%v)", el.Round(time.Millisecond), testTTL)
	}
}
