package dbrouter

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A driver that panics must not leave a call counted in: not with the
// node's stall watch (whose count of calls begun and finished would then
// never meet again, so that the node is checked every timeout/4 for ever
// and, the first time a check's new connection is slow, made Suspect), not
// among the cluster's calls in flight (a retired cluster would never
// close), not past the failback fence (a failback would wait for it for
// ever) and not among a node's routed calls (a switchover would count it).

// errPanicked is what the fake driver panics with.
const errPanicked = "fake driver panicked"

// catchPanic runs f and reports whether it panicked with errPanicked.
func catchPanic(f func()) (panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != errPanicked {
				panic(v)
			}
			panicked = true
		}
	}()
	f()
	return false
}

// leftCounted returns what a call left counted in on c, "" when nothing.
func leftCounted(c *Cluster) string {
	var s string
	for i := range c.dogs {
		d := &c.dogs[i]
		if st, fi := d.started.Load(), d.finished.Load(); st != fi {
			s += fmt.Sprintf(" node %d's stall watch: %d begun, %d finished;", i, st, fi)
		}
		if n := c.nodes[i].routedBusy.Load(); n != 0 {
			s += fmt.Sprintf(" node %d's routed calls: %d;", i, n)
		}
	}
	if n := c.inflight.Load(); n != 0 {
		s += fmt.Sprintf(" calls in flight: %d;", n)
	}
	if n := c.fence.inside.Load(); n != 0 {
		s += fmt.Sprintf(" past the fence: %d;", n)
	}
	return s
}

// TestDriverPanicLeavesNothingCounted makes the fake driver panic in each
// place a call waits on a node — a statement of each Cluster method, a
// statement, BEGIN, COMMIT and read of rows on the pinned pool, in a
// transaction and on Router.OpenDB — recovers, closes what the call
// returned, and checks that nothing is left counted. Then, with new
// connections to the node hanging (a stall check's handshake would get no
// answer), the node must stay Up: a call left counted in with the stall
// watch would have it checked, and made Suspect.
func TestDriverPanicLeavesNothingCounted(t *testing.T) {
	var watching atomic.Bool
	var mu sync.Mutex
	var changes []string // state changes of a:3306 once the calls are over
	c, srv := newFakeClusterWithProbes(t, 3, review8Health(), func(ev Event) {
		if watching.Load() && ev.Kind == EventState && ev.Node == "a:3306" {
			mu.Lock()
			changes = append(changes, ev.From+" → "+ev.To+": "+ev.Cause)
			mu.Unlock()
		}
	})
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(&clusterConnector{resolve: func() (*Cluster, error) { return c, nil }})
	t.Cleanup(func() { db.Close() })

	const boom = "INSERT INTO t VALUES (666)"
	panicOn := func(s *fakeServer) {
		s.execFn = func(_ context.Context, q string) error {
			if q == boom || q == boom+" RETURNING id" || q == "SELECT 666" {
				panic(errPanicked)
			}
			return nil
		}
	}
	srv[0].set(panicOn)
	cases := []struct {
		name string
		run  func(t *testing.T) // panics; cleans up with t.Cleanup
	}{
		{"Cluster.ExecContext", func(t *testing.T) { c.ExecContext(ctx, boom) }},
		{"Cluster.QueryContext write", func(t *testing.T) { c.QueryContext(ctx, boom+" RETURNING id") }},
		{"Cluster.QueryContext read", func(t *testing.T) { c.QueryContext(ctx, "SELECT 666") }},
		{"Cluster.Conn exec", func(t *testing.T) {
			conn, err := c.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			conn.ExecContext(ctx, boom)
		}},
		{"Cluster.Writer query", func(t *testing.T) { c.Writer().QueryContext(ctx, boom+" RETURNING id") }},
		{"Cluster.Writer begin", func(t *testing.T) {
			// Not on a *sql.Conn: database/sql's BeginTx does not release
			// the connection when the driver panics (its Close would hang);
			// this leaves one of the pinned pool's connections in use.
			srv[0].set(func(s *fakeServer) { s.beginFn = func() error { panic(errPanicked) } })
			t.Cleanup(func() { srv[0].set(func(s *fakeServer) { s.beginFn = nil }) })
			c.Writer().BeginTx(ctx, nil)
		}},
		{"Tx.ExecContext", func(t *testing.T) {
			tx, err := c.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tx.Rollback() })
			tx.ExecContext(ctx, boom)
		}},
		{"Tx.Commit on Cluster.Writer", func(t *testing.T) {
			// Not on a *sql.Conn: database/sql's Commit does not end the
			// transaction when the driver panics (the *sql.Conn's Close
			// would hang).
			tx, err := c.Writer().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tx.Rollback() })
			srv[0].set(func(s *fakeServer) { s.commitFn = func() error { panic(errPanicked) } })
			t.Cleanup(func() { srv[0].set(func(s *fakeServer) { s.commitFn = nil }) })
			tx.Commit()
		}},
		{"rows of a Cluster write", func(t *testing.T) {
			rows, err := c.QueryContext(ctx, "INSERT INTO t VALUES (2) RETURNING id")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rows.Close() })
			srv[0].set(func(s *fakeServer) { s.nextFn = func() error { panic(errPanicked) } })
			t.Cleanup(func() { srv[0].set(func(s *fakeServer) { s.nextFn = nil }) })
			rows.Next()
		}},
		{"Router.OpenDB exec", func(t *testing.T) { db.ExecContext(ctx, boom) }},
		{"Router.OpenDB query", func(t *testing.T) { db.QueryContext(ctx, boom+" RETURNING id") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !catchPanic(func() { tc.run(t) }) {
				t.Fatal("the driver's panic did not reach the caller")
			}
		})
		if s := leftCounted(c); s != "" {
			t.Errorf("after %s: left counted in by the panics so far:%s", tc.name, s)
		}
	}

	// New connections to a now hang: a stall check would make it Suspect.
	srv[0].set(func(s *fakeServer) {
		s.execFn = nil
		s.connectFn = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	})
	watching.Store(true)
	time.Sleep(5 * c.settings.Health.Timeout)
	mu.Lock()
	defer mu.Unlock()
	if len(changes) > 0 {
		t.Errorf("a:3306, with no call on it, changed state after the panics (a stall check ran): %q", changes)
	}
}
