package fleet

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
)

// Review of the fleet-fixes merge (the start-up refusal of Watch, the
// KILL CONNECTION of SQLHooks' Demote).

// Defect: a Coordinator closed while a watched cluster was still in its
// start-up refusal (etcd down, or not read yet) left the cluster refusing
// writes for good, with a cause that says the refusal lasts until the
// decision is read or the EtcdLost policy applies — neither can happen
// once the coordinator is closed. A Watch after Close does nothing (the
// local rule), and a Watch racing Close applied the refusal and returned
// a no-op stop, the refusal in force for good. Expected: Close hands a
// cluster still in its start-up refusal to the local rule, as a Watch
// after Close leaves it.
func TestReviewFleetfixCloseDuringStartupRefusal(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	te.crash()
	c, err := New(newClient(t, te.endpoints[0]), Options{Prefix: "/review-close-startup/", RouterID: "r", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeSink{}
	s.set("", healthy("0-1-1", "0-1-1", "0-1-1")...)
	stop := c.Watch("c", testNodes, s)
	defer stop()
	if d, ok := s.last(); !ok || !d.Refuse {
		t.Fatalf("right after Watch with etcd down: %+v (applied %v), want the start-up refusal", d, ok)
	}
	c.Close()
	if d, _ := s.last(); d.Refuse {
		t.Errorf("after Close: %+v: writes refused for good (nothing can end the start-up refusal now)", d)
	} else if d.Writer != "" || !strings.Contains(d.Cause, "closed") {
		t.Errorf("after Close: %+v, want the local rule, with a cause that says the coordinator was closed", d)
	}
	// A Watch after Close leaves the local rule, as before.
	s2 := &fakeSink{}
	c.Watch("d", testNodes, s2)
	if n := s2.count(); n != 0 {
		t.Errorf("Watch after Close applied %d decisions %+v, want none", n, s2.all())
	}
}

// Defect: under KeepLastDecision, with etcd unreachable for longer than
// the lease, a cluster that a Reload rebuilds (a new Watch of the same
// cluster name, a new sink) lost the fleet's last decision: the new watch
// had read none, so the policy handed it to the local rule — which may
// pick another node than the fleet's writer (an old writer back and
// writable), while the rest of the fleet keeps writing to the fleet's
// writer. The coordinator knew the last decision (the earlier watch of
// the cluster applied it). Expected: the rebuilt cluster keeps it.
func TestReviewFleetfixRewatchWhileEtcdLostKeepsLastDecision(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/review-rewatch-lost/"
	if _, err := cl.Put(context.Background(), WriterKey(pfx, "c"), mustJSON(t, Decision{Writer: n1, Epoch: 2, Decider: "old", Cause: "test"})); err != nil {
		t.Fatal(err)
	}
	c, err := New(newClient(t, te.endpoints[0]), Options{Prefix: pfx, RouterID: "r", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := &fakeSink{}
	s.set(n1, healthy("0-1-1", "0-1-1", "0-1-1")...)
	stop := c.Watch("c", testNodes, s)
	defer stop()
	eventually(t, "the fleet's writer n1", func() bool { return s.has(n1, 2) })
	te.crash()
	eventually(t, "etcd lost", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.lost
	})
	// A Reload rebuilds the cluster: a new sink, watched under the same
	// name; the old watch is stopped after.
	s2 := &fakeSink{}
	s2.set("", healthy("0-1-1", "0-1-1", "0-1-1")...)
	stop2 := c.Watch("c", testNodes, s2)
	defer stop2()
	stop()
	time.Sleep(200 * time.Millisecond)
	if d, ok := s2.last(); !ok || d.Writer != n1 || d.Refuse {
		t.Errorf("rebuilt cluster with etcd lost (KeepLastDecision): %+v (applied %v); all %+v, want the last decision (n1, epoch 2) kept", d, ok, s2.all())
	}
	te.restart()
}

// Defect: Coordinator.Close hung for good while etcd was down: the
// campaign's Election.Campaign, its ctx ended, resigns with the client's
// context (no bound), and Close waited for the campaign. A second router
// is campaigning (the first is the decider) when etcd goes.
func TestReviewFleetfixCloseWithEtcdDown(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	const pfx = "/review-close-down/"
	a, err := New(newClient(t, te.endpoints[0]), Options{Prefix: pfx, RouterID: "a", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	eventually(t, "a decider", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.term != nil
	})
	b, err := New(newClient(t, te.endpoints[0]), Options{Prefix: pfx, RouterID: "b", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // b campaigns, behind a
	te.crash()
	time.Sleep(300 * time.Millisecond)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- b.Close() }()
	select {
	case <-done:
		t.Logf("Close with etcd down: %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("Close still waiting 15 s after etcd went down")
	}
	te.restart()
}

// Defects of SQLHooks' Demote when its statement outlived it:
//
//   - It killed its connection only when its ctx had ended. When the
//     driver gave up first — the cluster's read_timeout shorter than
//     DemoteTimeout, an i/o timeout with ctx still running — the SET
//     GLOBAL read_only = ON was left waiting on the server, not killed:
//     Demote returned an error (the switchover is refused, Promote
//     undoes), and the statement took effect once the lock went, leaving
//     the writer read-only after the refusal. Expected: any error that
//     does not say the server ended the statement kills the connection.
//   - With the configuration's max_open_conns at 1, the KILL CONNECTION
//     waited for a connection of the pool, held by the statement it was
//     to kill, until killBound: not killed, the same outcome. Expected:
//     the hooks' pool is not limited by the application's setting.
func TestReviewFleetfixDemoteKillsOnRing(t *testing.T) {
	ring := ringtest.New(t, ringtest.Options{Nodes: 2, Password: ringPassword}).Ring(0)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	admin := ring.AdminDB(0)
	for _, q := range []string{
		fmt.Sprintf("CREATE USER IF NOT EXISTS 'swadmin'@'%%' IDENTIFIED BY '%s'", ringPassword),
		"GRANT ALL PRIVILEGES ON *.* TO 'swadmin'@'%'",
		"CREATE TABLE IF NOT EXISTS ringtest.rt (x INT)",
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, tc := range []struct {
		name     string
		settings dbrouter.Settings
		timeout  time.Duration // the Demote's ctx
	}{
		{"read_timeout", dbrouter.Settings{ReadTimeout: 300 * time.Millisecond}, 5 * time.Second},
		{"max_open_conns 1", dbrouter.Settings{MaxOpenConns: 1}, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			demoteKills(t, ctx, ring, tc.settings, tc.timeout)
		})
	}
}

// demoteKills runs SQLHooks' Demote on node 0 of ring, a table locked
// there, with settings and a ctx of timeout, and checks that read_only is
// still off a second after the lock went.
func demoteKills(t *testing.T, ctx context.Context, ring *ringtest.Ring, settings dbrouter.Settings, timeout time.Duration) {
	admin := ring.AdminDB(0)
	readOnly := func() int {
		t.Helper()
		var ro int
		if err := admin.QueryRowContext(ctx, "SELECT @@global.read_only").Scan(&ro); err != nil {
			t.Fatal(err)
		}
		return ro
	}
	defer admin.ExecContext(context.Background(), "SET GLOBAL read_only = OFF")
	lock, err := admin.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, "LOCK TABLES ringtest.rt WRITE"); err != nil {
		t.Fatal(err)
	}
	locked := true
	unlock := func() {
		if locked {
			locked = false
			if _, err := lock.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
				t.Errorf("UNLOCK TABLES: %v", err)
			}
		}
	}
	defer unlock()
	settings.User, settings.Password = "swadmin", ringPassword
	hooks, err := SQLHooks(&dbrouter.Config{
		Defaults: settings,
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: ring.Addrs()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	err = hooks.Demote(dctx, "ring", ring.Addrs()[0])
	dcancel()
	t.Logf("Demote returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("Demote succeeded with the table locked")
	}
	if strings.Contains(err.Error(), "may still take effect") {
		t.Errorf("Demote: %v, want the connection killed and seen gone", err)
	}
	unlock()
	time.Sleep(time.Second)
	if ro := readOnly(); ro != 0 {
		t.Errorf("read_only = %d a second after the lock went: the Demote that failed took effect later", ro)
	}
}
