package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// The stall watch beyond the Cluster methods (docs/health.md, "Stall
// checks"): statements in a transaction, on Cluster.Conn and
// Cluster.Writer, and on Router.OpenDB's connections, their COMMIT and the
// reads of their rows count themselves in with the node's watch, so that a
// frozen writer is taken Down by a stall check, not by the probes (a 2 s
// interval here, FailAfter 3), and the stuck call returns typed.

// stallRig is a fake cluster of three nodes with probes on, whose first
// node, the writer, freezes on demand: new connections, statements,
// COMMITs and reads of rows then get no answer until the router takes the
// node Down (and, on a real server, closes its connections: the fake then
// fails them with mysql.ErrInvalidConn).
type stallRig struct {
	c        *Cluster
	srv      []*fakeServer
	released chan struct{}
	onB      atomic.Int64 // statements "INSERT INTO t VALUES (3)" on b
	retried  atomic.Int64 // statements "INSERT INTO t VALUES (2)" on b or c
}

func newStallRig(t *testing.T) *stallRig {
	r := &stallRig{released: make(chan struct{})}
	var once sync.Once
	r.c, r.srv = newFakeClusterWithProbes(t, 3, review8Health(), func(ev Event) {
		if ev.Kind == EventState && ev.Node == "a:3306" && ev.To == "down" {
			once.Do(func() { close(r.released) })
		}
	})
	for k, o := range r.srv[1:] {
		o.set(func(s *fakeServer) {
			s.execFn = func(_ context.Context, q string) error {
				switch q {
				case "INSERT INTO t VALUES (2)":
					r.retried.Add(1)
				case "INSERT INTO t VALUES (3)":
					if k == 0 {
						r.onB.Add(1)
					}
				}
				return nil
			}
		})
	}
	if _, err := r.c.ExecContext(testCtx(t), "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	return r
}

// frozen waits as a frozen server's connection does: until the router
// closes it (the node is Down), or ctx ends.
func (r *stallRig) frozen(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.released:
		return mysql.ErrInvalidConn
	}
}

func (r *stallRig) freeze() {
	noCtx := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return r.frozen(ctx)
	}
	r.srv[0].set(func(s *fakeServer) {
		s.connectFn = r.frozen
		s.execFn = func(ctx context.Context, _ string) error { return r.frozen(ctx) }
		s.commitFn = noCtx
		s.nextFn = noCtx
	})
}

// TestStallWatchBeyondClusterCalls freezes the writer under a statement,
// COMMIT or read of rows made outside the Cluster methods: each stuck call
// must come back as ErrOutcomeUnknown within a fraction of the probes'
// time, never retried elsewhere, and the next call must go to b.
func TestStallWatchBeyondClusterCalls(t *testing.T) {
	opendb := func(r *stallRig) *sql.DB {
		db := sql.OpenDB(&clusterConnector{resolve: func() (*Cluster, error) { return r.c, nil }})
		t.Cleanup(func() { db.Close() })
		return db
	}
	nextOnDB := func(db *sql.DB) func(context.Context, *stallRig) error {
		return func(ctx context.Context, _ *stallRig) error {
			_, err := db.ExecContext(ctx, "INSERT INTO t VALUES (3)")
			return err
		}
	}
	nextOnCluster := func(ctx context.Context, r *stallRig) error {
		_, err := r.c.ExecContext(ctx, "INSERT INTO t VALUES (3)")
		return err
	}
	nextOnConn := func(ctx context.Context, r *stallRig) error {
		conn, err := r.c.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.ExecContext(ctx, "INSERT INTO t VALUES (3)")
		return err
	}
	cases := []struct {
		name string
		// setup runs before the freeze and returns the call that gets
		// stuck, and the call that must then go to b.
		setup func(t *testing.T, ctx context.Context, r *stallRig) (stuck func(context.Context) error, next func(context.Context, *stallRig) error)
		op    Op
	}{
		{"tx exec", func(t *testing.T, ctx context.Context, r *stallRig) (func(context.Context) error, func(context.Context, *stallRig) error) {
			tx, err := r.c.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tx.Rollback() })
			return func(ctx context.Context) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)")
				return err
			}, nextOnCluster
		}, OpTxExec},
		{"tx commit", func(t *testing.T, ctx context.Context, r *stallRig) (func(context.Context) error, func(context.Context, *stallRig) error) {
			tx, err := r.c.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
				t.Fatal(err)
			}
			return func(context.Context) error { return tx.Commit() }, nextOnCluster
		}, OpCommit},
		{"tx rows", func(t *testing.T, ctx context.Context, r *stallRig) (func(context.Context) error, func(context.Context, *stallRig) error) {
			tx, err := r.c.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tx.Rollback() })
			rows, err := tx.QueryContext(ctx, "INSERT INTO t VALUES (2) RETURNING id")
			if err != nil {
				t.Fatal(err)
			}
			return func(context.Context) error {
				defer rows.Close()
				if rows.Next() {
					return errors.New("a row from a frozen server")
				}
				return tx.typed(OpTxQuery, false, rows.Err())
			}, nextOnCluster
		}, OpTxQuery},
		{"conn exec", func(t *testing.T, ctx context.Context, r *stallRig) (func(context.Context) error, func(context.Context, *stallRig) error) {
			conn, err := r.c.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			return func(ctx context.Context) error {
				_, err := conn.ExecContext(ctx, "INSERT INTO t VALUES (2)")
				return err
			}, nextOnConn
		}, OpExec},
		{"conn tx commit", func(t *testing.T, ctx context.Context, r *stallRig) (func(context.Context) error, func(context.Context, *stallRig) error) {
			conn, err := r.c.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
				t.Fatal(err)
			}
			return func(context.Context) error { return tx.Commit() }, nextOnConn
		}, OpCommit},
		{"writer rows", func(t *testing.T, ctx context.Context, r *stallRig) (func(context.Context) error, func(context.Context, *stallRig) error) {
			rows, err := r.c.Writer().QueryContext(ctx, "INSERT INTO t VALUES (2) RETURNING id")
			if err != nil {
				t.Fatal(err)
			}
			return func(context.Context) error {
				defer rows.Close()
				if rows.Next() {
					return errors.New("a row from a frozen server")
				}
				return rows.Err()
			}, nextOnConn
		}, OpQuery},
		{"writer exec", func(t *testing.T, ctx context.Context, r *stallRig) (func(context.Context) error, func(context.Context, *stallRig) error) {
			db := r.c.Writer()
			if err := db.PingContext(ctx); err != nil { // a connection in the pool
				t.Fatal(err)
			}
			return func(ctx context.Context) error {
				_, err := db.ExecContext(ctx, "INSERT INTO t VALUES (2)")
				return err
			}, nextOnCluster
		}, OpExec},
		{"opendb exec", func(t *testing.T, ctx context.Context, r *stallRig) (func(context.Context) error, func(context.Context, *stallRig) error) {
			db := opendb(r)
			if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			return func(ctx context.Context) error {
				_, err := db.ExecContext(ctx, "INSERT INTO t VALUES (2)")
				return err
			}, nextOnDB(db)
		}, OpExec},
		{"opendb rows", func(t *testing.T, ctx context.Context, r *stallRig) (func(context.Context) error, func(context.Context, *stallRig) error) {
			db := opendb(r)
			rows, err := db.QueryContext(ctx, "INSERT INTO t VALUES (2) RETURNING id")
			if err != nil {
				t.Fatal(err)
			}
			return func(context.Context) error {
				defer rows.Close()
				if rows.Next() {
					return errors.New("a row from a frozen server")
				}
				return rows.Err()
			}, nextOnDB(db)
		}, OpQuery},
		{"opendb tx exec", func(t *testing.T, ctx context.Context, r *stallRig) (func(context.Context) error, func(context.Context, *stallRig) error) {
			db := opendb(r)
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tx.Rollback() })
			return func(ctx context.Context) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)")
				return err
			}, nextOnDB(db)
		}, OpTxExec},
		{"opendb tx commit", func(t *testing.T, ctx context.Context, r *stallRig) (func(context.Context) error, func(context.Context, *stallRig) error) {
			db := opendb(r)
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
				t.Fatal(err)
			}
			return func(context.Context) error { return tx.Commit() }, nextOnDB(db)
		}, OpCommit},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newStallRig(t)
			ctx := testCtx(t)
			stuck, next := tc.setup(t, ctx, r)
			r.freeze()
			// Bounded well below the probes' verdict (FailAfter 3 at 2 s):
			// without the watch the call fails with this deadline instead.
			sctx, cancel := context.WithTimeout(ctx, 4*time.Second)
			defer cancel()
			start := time.Now()
			err := stuck(sctx)
			took := time.Since(start)
			t.Logf("stuck %s released after %v: %v", tc.name, took, err)
			var ou *OutcomeUnknownError
			if !errors.As(err, &ou) {
				t.Fatalf("stuck %s: err = %v, want an *OutcomeUnknownError", tc.name, err)
			}
			if ou.Op != tc.op || ou.Node != "a:3306" {
				t.Errorf("stuck %s: op %q node %s, want %q on a:3306", tc.name, ou.Op, ou.Node, tc.op)
			}
			if took > 1500*time.Millisecond {
				t.Errorf("stuck %s released after %v: the stall check did not act", tc.name, took)
			}
			if n := r.retried.Load(); n != 0 {
				t.Errorf("the stuck statement was run again elsewhere: %d times", n)
			}
			if err := next(ctx, r); err != nil {
				t.Fatalf("next call: %v", err)
			}
			if n := r.onB.Load(); n != 1 {
				t.Errorf("next call: %d statements on b, want 1", n)
			}
		})
	}
}

// TestStallWatchRunInTxReruns freezes the writer under a statement of a
// RunInTx transaction: the statement returns ErrOutcomeUnknown once the
// stall check took the node Down, and RunInTx runs the transaction again
// on b (no COMMIT was sent: nothing of it can apply on a). A COMMIT stuck
// the same way is returned as outcome unknown and not run again.
func TestStallWatchRunInTxReruns(t *testing.T) {
	t.Run("statement", func(t *testing.T) {
		r := newStallRig(t)
		ctx := testCtx(t)
		var (
			runs  []string
			first error
			took  time.Duration
		)
		err := r.c.RunInTx(ctx, nil, func(ctx context.Context, tx *Tx) error {
			runs = append(runs, tx.Node())
			if len(runs) == 1 {
				r.freeze()
				start := time.Now()
				_, first = tx.ExecContext(ctx, "INSERT INTO t VALUES (2)")
				took = time.Since(start)
				return first
			}
			_, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (3)")
			return err
		})
		t.Logf("stuck statement released after %v: %v; runs on %v", took, first, runs)
		if err != nil {
			t.Fatalf("RunInTx: %v", err)
		}
		if !errors.Is(first, ErrOutcomeUnknown) {
			t.Errorf("stuck statement: err = %v, want ErrOutcomeUnknown", first)
		}
		if took > 1500*time.Millisecond {
			t.Errorf("stuck statement released after %v: the stall check did not act", took)
		}
		if len(runs) != 2 || runs[1] != "b:3306" {
			t.Errorf("runs on %v, want a:3306 then b:3306", runs)
		}
	})
	t.Run("commit", func(t *testing.T) {
		r := newStallRig(t)
		ctx := testCtx(t)
		runs := 0
		start := time.Now()
		err := r.c.RunInTx(ctx, nil, func(ctx context.Context, tx *Tx) error {
			runs++
			if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
				return err
			}
			r.freeze()
			start = time.Now()
			return nil
		})
		took := time.Since(start)
		t.Logf("stuck COMMIT released after %v: %v", took, err)
		var ou *OutcomeUnknownError
		if !errors.As(err, &ou) || ou.Op != OpCommit {
			t.Fatalf("RunInTx with a stuck COMMIT: err = %v, want an *OutcomeUnknownError of the commit", err)
		}
		if runs != 1 || r.retried.Load() != 0 {
			t.Errorf("a transaction whose COMMIT may have applied ran again: %d runs", runs)
		}
		if took > 1500*time.Millisecond {
			t.Errorf("stuck COMMIT released after %v: the stall check did not act", took)
		}
	})
}

// TestStallWatchSlowStatementsStay runs statements that take 600 ms on a
// writer that still answers probes and new connections, in a transaction,
// on Cluster.Conn and on Router.OpenDB's *sql.DB: the stall checks they
// start find the node alive, and every statement completes on it.
func TestStallWatchSlowStatementsStay(t *testing.T) {
	var changes atomic.Int64
	var t0 atomic.Pointer[time.Time]
	c, srv := newFakeClusterWithProbes(t, 3, review8Health(), func(ev Event) {
		if since := t0.Load(); since != nil && ev.At.After(*since) && (ev.Kind == EventState || ev.Kind == EventWriter) {
			changes.Add(1)
			t.Logf("event: %s %s %s → %s (%s)", ev.Kind, ev.Node, ev.From, ev.To, ev.Cause)
		}
	})
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	hs := &countingConnector{Connector: c.nodes[0].probe.connector}
	c.nodes[0].probe.connector = hs
	now := time.Now()
	t0.Store(&now)
	srv[0].set(func(s *fakeServer) {
		s.execFn = func(ctx context.Context, q string) error {
			if q != "SLOW" {
				return nil
			}
			select {
			case <-time.After(600 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	db := sql.OpenDB(&clusterConnector{resolve: func() (*Cluster, error) { return c, nil }})
	defer db.Close()
	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		wg.Go(func() {
			start := time.Now()
			if err := f(); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			t.Logf("%s: %v", name, time.Since(start).Round(time.Millisecond))
		})
	}
	run("RunInTx", func() error {
		return c.RunInTx(ctx, nil, func(ctx context.Context, tx *Tx) error {
			_, err := tx.ExecContext(ctx, "SLOW")
			return err
		})
	})
	run("Cluster.Conn", func() error {
		conn, err := c.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.ExecContext(ctx, "SLOW")
		return err
	})
	run("OpenDB", func() error {
		_, err := db.ExecContext(ctx, "SLOW")
		return err
	})
	wg.Wait()
	if n := changes.Load(); n != 0 {
		t.Errorf("%d state or writer changes while a live writer ran slow statements", n)
	}
	if hs.connects.Load() == 0 {
		t.Errorf("no stall check ran: the slow statements were not watched")
	}
	t.Logf("%d stall handshakes", hs.connects.Load())
}
