package dbrouter

// Adversarial review of the hardening change (#12). Each TestReview test
// states a promise of the library and fails where the change breaks it.

import (
	"context"
	"database/sql/driver"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// A failback that cannot complete because one transaction is open makes
// every other write wait: hold() raises the fence before it knows whether
// the writes already past it will end in time, and keeps it raised for up
// to Health.Timeout+1s, then the next probe tries again. The parent commit
// (RWMutex.TryLock loop) never blocked new writes while it waited.
func TestReviewOpenTxStallsEveryWriteDuringFailback(t *testing.T) {
	t.Parallel()
	c, srv := newFakeClusterWithProbes(t, 2, fastProbes(), nil)
	ctx := testCtx(t)
	c.WriterAddr() // start the probers
	srv[0].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	eventually(t, "a Down, b writer", func() bool { return c.WriterAddr() == "b:3306" })

	// A long transaction on b (a batch job, a slow request).
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()

	// a comes back, caught up: it is the failback candidate, and failback
	// waits for the transaction.
	srv[0].set(func(s *fakeServer) { s.connectErr = nil })
	eventually(t, "a Up", func() bool { return c.Stats().Nodes[0].State == StateUp })
	time.Sleep(100 * time.Millisecond) // RecoverAfter good probes: failback starts

	var worst time.Duration
	var failed []error
	for range 5 {
		wctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		start := time.Now()
		_, err := c.ExecContext(wctx, "INSERT INTO t VALUES (1)")
		cancel()
		if err != nil {
			failed = append(failed, err)
		}
		if d := time.Since(start); d > worst {
			worst = d
		}
		time.Sleep(30 * time.Millisecond)
	}
	if worst > 200*time.Millisecond || len(failed) > 0 {
		t.Errorf("autocommit writes unrelated to the open transaction: worst latency %v, %d of 5 failed (%v), while a failback waits for the transaction (probe timeout %v)",
			worst, len(failed), errors.Join(failed...), fastProbes().Health.Timeout)
	}
}

// A transaction begun on Cluster.Writer() (or Cluster.Conn) holds a pass,
// and each of its statements asks for a second one. While a failback holds
// the fence waiting for that transaction, the transaction's own next
// statement waits for the failback: a deadlock that only the failback's
// timeout (Health.Timeout+1s) breaks, after which the failback fails too.
func TestReviewPinnedTxStatementDeadlocksWithFailback(t *testing.T) {
	t.Parallel()
	c, _ := newFakeCluster(t, 2, Settings{})
	ctx := testCtx(t)
	tx, err := c.Writer().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()

	hctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond) // a failback's bound with the default probe timeout
	defer cancel()
	held := make(chan bool, 1)
	go func() { held <- c.fence.hold(hctx) }()
	eventually(t, "the failback to hold the fence", func() bool { return c.fence.held.Load() })

	start := time.Now()
	_, err = tx.ExecContext(ctx, "UPDATE t SET x = 1")
	took := time.Since(start)
	if <-held {
		c.fence.unhold()
		t.Error("failback got the fence while a pinned transaction was open")
	}
	if err != nil {
		t.Fatalf("statement in the pinned transaction: %v", err)
	}
	if took > 300*time.Millisecond {
		t.Errorf("a statement of an open pinned transaction waited %v for a failback that was waiting for that same transaction", took)
	}
}

// A write waiting at the fence when the cluster is closed goes through
// after Close: it opens a new pool that nobody closes (connection and
// goroutine leak) and reaches the server.
func TestReviewWriteAfterCloseOpensLeakedPool(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 1, Settings{})
	ctx := testCtx(t)
	if !c.fence.hold(ctx) { // a failback in progress
		t.Fatal("hold")
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)")
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // the write waits at the fence
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	c.fence.unhold() // close cancels the failback
	err := <-done
	if err == nil || !errors.Is(err, ErrNotSent) || srv[0].execs.Load() != 0 {
		t.Errorf("write waiting at the fence during Close: err = %v, %d statements reached the server after Close", err, srv[0].execs.Load())
	}
	if db := c.nodes[0].pools[poolWrite].db.Load(); db != nil {
		if n := db.Stats().OpenConnections; n > 0 {
			t.Errorf("a pool opened after Close holds %d connection(s) and its opener goroutine; nothing will close it", n)
		}
		db.Close()
	}
}

// Writer() on a closed (or retired) cluster opens a pinned pool after the
// nodes' pools were closed: its connection and goroutine leak.
func TestReviewWriterAfterCloseLeaksPool(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 1, Settings{})
	c.close()
	db := c.Writer()
	_, err := db.ExecContext(testCtx(t), "INSERT INTO t VALUES (1)")
	// A pool asked for after Close is born closed, like a *sql.DB after
	// its own Close.
	if err == nil || !strings.Contains(err.Error(), "database is closed") {
		t.Errorf("Writer().ExecContext after Close: err = %v, want sql: database is closed", err)
	}
	if n := srv[0].connects.Load(); n != 0 {
		t.Errorf("Writer() after Close connected %d time(s) to the server; pool open connections %d, never closed", n, db.Stats().OpenConnections)
	}
	db.Close()
}

// MaxOpenConns is documented as a per-node limit ("limits open
// connections per node"); with three pools per node a node now gets up to
// three times as many connections (plus the probe's and warm()'s).
// RunInTx: when ctx ends and fn returns an outcome-unknown error (a write
// to another cluster in the same request, cut by the same deadline), the
// error matches both ErrNotSent and ErrOutcomeUnknown.
func TestReviewRunInTxErrorMatchesBothClasses(t *testing.T) {
	t.Parallel()
	c, _ := newFakeCluster(t, 1, Settings{})
	other, osrv := newFakeCluster(t, 1, Settings{})
	osrv[0].set(func(s *fakeServer) {
		s.execFn = func(ctx context.Context, _ string) error { return blockUntilDone(ctx) }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.RunInTx(ctx, nil, func(ctx context.Context, tx *Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE t SET x = 1"); err != nil {
			return err
		}
		_, err := other.ExecContext(ctx, "INSERT INTO audit VALUES (1)")
		return err
	})
	notSent, unknown := errors.Is(err, ErrNotSent), errors.Is(err, ErrOutcomeUnknown)
	if notSent && unknown {
		t.Errorf("RunInTx: err = %v\nmatches ErrNotSent and ErrOutcomeUnknown", err)
	}
}

// Statements of a router transaction return the driver's errors as they
// are: a connection lost mid-statement (mysql.ErrInvalidConn) matches
// neither ErrNotSent nor ErrOutcomeUnknown, and neither does one found dead
// before sending (driver.ErrBadConn).
func TestReviewTxStatementErrorsAreUntyped(t *testing.T) {
	t.Parallel()
	for _, e := range []error{mysql.ErrInvalidConn, driver.ErrBadConn} {
		c, srv := newFakeCluster(t, 2, Settings{})
		ctx := testCtx(t)
		tx, err := c.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv[0].set(func(s *fakeServer) { s.execErr = e })
		_, err = tx.ExecContext(ctx, "UPDATE t SET x = 1")
		tx.Rollback()
		if errors.Is(err, ErrNotSent) == errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("Tx.ExecContext failing with %v: err = %v matches neither class", e, err)
		}
	}
}

// Router.Close after a Reload that retired a cluster waits, with no bound,
// for that cluster's calls in flight — now including the rows of every
// write (INSERT ... RETURNING) and every pinned statement's rows. One
// unclosed *sql.Rows makes Close hang forever; sql.DB.Close never waits
// for rows.
func TestReviewCloseHangsOnRetiredClusterRows(t *testing.T) {
	t.Parallel()
	c, _ := newFakeCluster(t, 1, Settings{})
	log := slog.New(slog.DiscardHandler)
	r := &Router{log: log, events: newDispatcher(log, nil), done: make(chan struct{})}
	old := &Config{Defaults: Settings{User: "app"}, Clusters: map[string]ClusterConfig{"fake": {Nodes: []string{"a:3306"}}}}
	p, err := old.compile(nil, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	r.table.Store(&routeTable{plan: p, clusters: map[string]*Cluster{"fake": c}, names: []string{"fake"}, maps: map[string]ShardMap{}})

	rows, err := c.QueryContext(context.Background(), "INSERT INTO t VALUES (1) RETURNING id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close() // forgotten by the application until much later
	if err := r.Reload(&Config{Defaults: Settings{User: "app"}, Clusters: map[string]ClusterConfig{"fake": {Nodes: []string{"127.0.0.1:1"}}}}); err != nil {
		t.Fatal(err)
	}
	returnsWithin(t, 3*time.Second, "Router.Close (waiting for the unclosed rows of a write on a retired cluster?)", func() { r.Close() })
}

// Hot-path cost of the read pool, the pass handed to the rows of a write
// and to a transaction (compare with the parent commit).
func BenchmarkReviewPaths(b *testing.B) {
	ctx := context.Background()
	b.Run("read", func(b *testing.B) {
		c, _ := newFakeCluster(b, 3, Settings{})
		b.ReportAllocs()
		for b.Loop() {
			rows, err := c.QueryContext(ctx, "SELECT id FROM t WHERE id = ?", 1)
			if err != nil {
				b.Fatal(err)
			}
			rows.Close()
		}
	})
	b.Run("write-rows", func(b *testing.B) {
		c, _ := newFakeCluster(b, 3, Settings{})
		b.ReportAllocs()
		for b.Loop() {
			rows, err := c.QueryContext(ctx, "INSERT INTO t (id) VALUES (?) RETURNING id", 1)
			if err != nil {
				b.Fatal(err)
			}
			rows.Close()
		}
	})
	b.Run("tx", func(b *testing.B) {
		c, _ := newFakeCluster(b, 3, Settings{})
		b.ReportAllocs()
		for b.Loop() {
			tx, err := c.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
