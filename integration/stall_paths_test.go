package integration

// The stall checks beyond the Cluster methods (docs/health.md, "Stall
// checks"): a writer frozen (SIGSTOP) under a statement or COMMIT of a
// transaction, of Router.OpenDB's *sql.DB, or of Cluster.Conn and
// Cluster.Writer is taken Down by the stall check the stuck call starts,
// in about a quarter of the probe timeout plus the probe timeout (≈250 ms
// with default settings), not by the probes (up to interval + 2 × timeout,
// 650 ms). The stuck call returns ErrOutcomeUnknown, and the next call goes
// to the next node. A long statement on a live writer through the same
// paths is not abandoned.

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/stretchr/testify/require"
)

// stuckBound is how long a call stuck on a frozen writer may take to be
// released: generous (the figure expected is 250–350 ms; the probes alone
// take up to 650 ms), for loaded machines.
const stuckBound = 1500 * time.Millisecond

// stallRing starts a 3-node ring with default health settings and a
// router recording its events.
func stallRing(t *testing.T) (*ringtest.Ring, *dbrouter.Router, *dbrouter.Cluster, *eventLog) {
	t.Helper()
	events := &eventLog{}
	ring, r, c := startRing(t, 3, func(cfg *dbrouter.Config) { cfg.OnEvent = events.add })
	require.Equal(t, ring.Addr(0), c.WriterAddr())
	return ring, r, c, events
}

// freezeWriter freezes node 0 (thawed at the end of the test) and returns
// when it was frozen.
func freezeWriter(t *testing.T, ring *ringtest.Ring) time.Time {
	t.Helper()
	require.NoError(t, ring.Freeze(0))
	t.Cleanup(func() { ring.Thaw(0) })
	return time.Now()
}

// requireStuckReleased checks the error of a call stuck on the frozen
// writer: outcome unknown, of op, within stuckBound of the call's start.
func requireStuckReleased(t *testing.T, ring *ringtest.Ring, what string, op dbrouter.Op, err error, took time.Duration) {
	t.Helper()
	t.Logf("%s stuck on the frozen writer: released after %v: %v", what, took.Round(time.Millisecond), err)
	var ou *dbrouter.OutcomeUnknownError
	require.ErrorAs(t, err, &ou, "%s: want an *OutcomeUnknownError", what)
	require.ErrorIs(t, err, dbrouter.ErrOutcomeUnknown)
	require.Equal(t, op, ou.Op, what)
	require.Equal(t, ring.Addr(0), ou.Node, what)
	require.Less(t, took, stuckBound, "%s released after %v: the stall check did not act", what, took)
}

// serverID returns node i's @@server_id.
func serverID(t *testing.T, ring *ringtest.Ring, i int) int {
	t.Helper()
	var id int
	require.NoError(t, ring.AdminDB(i).QueryRowContext(testContext(t, 10*time.Second), "SELECT @@server_id").Scan(&id))
	return id
}

// TestStallFrozenWriterInRunInTx freezes the writer while a RunInTx
// transaction runs a statement: the statement returns ErrOutcomeUnknown
// once the stall check took the node Down, and RunInTx runs the
// transaction again on the next node (no COMMIT was sent: it cannot apply
// on the old writer). Once the old writer thaws and the ring converges,
// the first run left no row and the second one row.
func TestStallFrozenWriterInRunInTx(t *testing.T) {
	ring, _, c, events := stallRing(t)
	ctx := testContext(t, 60*time.Second)
	var (
		runs  []string
		first error
		took  time.Duration
	)
	err := c.RunInTx(ctx, nil, func(ctx context.Context, tx *dbrouter.Tx) error {
		runs = append(runs, tx.Node())
		if len(runs) > 1 {
			_, err := tx.ExecContext(ctx, "INSERT INTO t (id, node) VALUES ('tx-run2', @@server_id)")
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO t (id, node) VALUES ('tx-run1a', @@server_id)"); err != nil {
			return err
		}
		freezeWriter(t, ring)
		start := time.Now()
		_, first = tx.ExecContext(ctx, "INSERT INTO t (id, node) VALUES ('tx-run1b', @@server_id)")
		took = time.Since(start)
		return first
	})
	require.NoError(t, err, "RunInTx")
	requireStuckReleased(t, ring, "statement in RunInTx", dbrouter.OpTxExec, first, took)
	require.Equal(t, []string{ring.Addr(0), ring.Addr(1)}, runs, "the transaction's runs")

	// The next call goes to the next node.
	var tr dbrouter.Trace
	_, err = c.ExecContext(dbrouter.WithTrace(ctx, &tr), "INSERT INTO t (id) VALUES ('next')")
	require.NoError(t, err)
	require.Equal(t, ring.Addr(1), tr.Node, "the next call")

	require.NoError(t, ring.Thaw(0))
	require.NoError(t, ring.WaitConverged(ctx))
	for i := range 3 {
		n := rowCounts(t, ring, i)
		require.Zero(t, n["tx-run1a"]+n["tx-run1b"], "node %d holds rows of the abandoned run", i)
		require.Equal(t, 1, n["tx-run2"], "node %d: rows of the second run", i)
	}
	logEvents(t, events)
}

// TestStallFrozenWriterAtCommit freezes the writer just before a RunInTx
// transaction's COMMIT: RunInTx returns the COMMIT's ErrOutcomeUnknown
// (the server may apply the COMMIT it had received when it thaws) without
// running the transaction again, and the next call goes to the next node.
func TestStallFrozenWriterAtCommit(t *testing.T) {
	ring, _, c, events := stallRing(t)
	ctx := testContext(t, 60*time.Second)
	runs := 0
	var start time.Time
	err := c.RunInTx(ctx, nil, func(ctx context.Context, tx *dbrouter.Tx) error {
		runs++
		if _, err := tx.ExecContext(ctx, "INSERT INTO t (id) VALUES ('at-commit')"); err != nil {
			return err
		}
		freezeWriter(t, ring)
		start = time.Now()
		return nil
	})
	requireStuckReleased(t, ring, "COMMIT of RunInTx", dbrouter.OpCommit, err, time.Since(start))
	require.Equal(t, 1, runs, "a transaction whose COMMIT may have applied ran again")
	var tr dbrouter.Trace
	_, err = c.ExecContext(dbrouter.WithTrace(ctx, &tr), "INSERT INTO t (id) VALUES ('next')")
	require.NoError(t, err)
	require.Equal(t, ring.Addr(1), tr.Node, "the next call")
	logEvents(t, events)
}

// TestStallFrozenWriterOpenDB freezes the writer under a statement on
// Router.OpenDB's *sql.DB: it returns ErrOutcomeUnknown (database/sql does
// not retry it), and the next statement on the same *sql.DB runs on the
// next node.
func TestStallFrozenWriterOpenDB(t *testing.T) {
	ring, r, _, events := stallRing(t)
	db, err := r.OpenDB("ring")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	ctx := testContext(t, 60*time.Second)
	_, err = db.ExecContext(ctx, "INSERT INTO t (id) VALUES ('warm')")
	require.NoError(t, err)
	freezeWriter(t, ring)
	start := time.Now()
	_, err = db.ExecContext(ctx, "INSERT INTO t (id) VALUES ('stuck')")
	requireStuckReleased(t, ring, "statement on OpenDB", dbrouter.OpExec, err, time.Since(start))
	// The next statement: the *sql.DB drops the connection to the Down
	// node and connects to the next one.
	_, err = db.ExecContext(ctx, "INSERT INTO t (id) VALUES ('next')")
	require.NoError(t, err)
	var id int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id))
	require.Equal(t, serverID(t, ring, 1), id, "the next statement's node")
	logEvents(t, events)
}

// TestStallFrozenWriterOpenDBTx is TestStallFrozenWriterOpenDB for a
// statement in a transaction begun on the *sql.DB: the transaction fails
// with ErrOutcomeUnknown, and the next one runs on the next node.
func TestStallFrozenWriterOpenDBTx(t *testing.T) {
	ring, r, _, events := stallRing(t)
	db, err := r.OpenDB("ring")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	ctx := testContext(t, 60*time.Second)
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "INSERT INTO t (id) VALUES ('opendb-tx-1')")
	require.NoError(t, err)
	freezeWriter(t, ring)
	start := time.Now()
	_, err = tx.ExecContext(ctx, "INSERT INTO t (id) VALUES ('opendb-tx-2')")
	requireStuckReleased(t, ring, "statement in an OpenDB transaction", dbrouter.OpTxExec, err, time.Since(start))
	require.NoError(t, tx.Rollback(), "Rollback after a lost connection")
	tx, err = db.BeginTx(ctx, nil)
	require.NoError(t, err)
	var id int
	require.NoError(t, tx.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id))
	require.NoError(t, tx.Commit())
	require.Equal(t, serverID(t, ring, 1), id, "the next transaction's node")
	logEvents(t, events)
}

// TestStallFrozenWriterConn freezes the writer under a statement on a
// connection from Cluster.Conn: it returns ErrOutcomeUnknown, and the next
// Cluster.Conn is a connection to the next node.
func TestStallFrozenWriterConn(t *testing.T) {
	ring, _, c, events := stallRing(t)
	ctx := testContext(t, 60*time.Second)
	conn, err := c.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "INSERT INTO t (id) VALUES ('warm')")
	require.NoError(t, err)
	freezeWriter(t, ring)
	start := time.Now()
	_, err = conn.ExecContext(ctx, "INSERT INTO t (id) VALUES ('stuck')")
	requireStuckReleased(t, ring, "statement on Cluster.Conn", dbrouter.OpExec, err, time.Since(start))
	next, err := c.Conn(ctx)
	require.NoError(t, err)
	defer next.Close()
	var id int
	require.NoError(t, next.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id))
	require.Equal(t, serverID(t, ring, 1), id, "the next Cluster.Conn's node")
	logEvents(t, events)
}

// TestStallFrozenWriterPinnedPool freezes the writer under a statement on
// Cluster.Writer's pool: it returns ErrOutcomeUnknown, and Cluster.Writer
// then returns the next node's pool.
func TestStallFrozenWriterPinnedPool(t *testing.T) {
	ring, _, c, events := stallRing(t)
	ctx := testContext(t, 60*time.Second)
	db := c.Writer()
	_, err := db.ExecContext(ctx, "INSERT INTO t (id) VALUES ('warm')")
	require.NoError(t, err)
	freezeWriter(t, ring)
	start := time.Now()
	_, err = db.ExecContext(ctx, "INSERT INTO t (id) VALUES ('stuck')")
	requireStuckReleased(t, ring, "statement on Cluster.Writer", dbrouter.OpExec, err, time.Since(start))
	require.Equal(t, ring.Addr(1), c.WriterAddr())
	var id int
	require.NoError(t, c.Writer().QueryRowContext(ctx, "SELECT @@server_id").Scan(&id))
	require.Equal(t, serverID(t, ring, 1), id, "the next Cluster.Writer's node")
	logEvents(t, events)
}

// TestStallLongStatementsOffClusterCallsNotAbandoned runs 3 s statements on
// a live writer through every watched path — SELECT SLEEP(3) in a RunInTx
// transaction, on Cluster.Conn, on Cluster.Writer and on Router.OpenDB,
// and an UPDATE in a transaction that waits 3 s for a row lock another
// session holds — and the rows of a 3 s read made with
// Cluster.QueryContext, while a sequential writer keeps writing: the stall
// checks they start find the writer alive, every statement completes, and
// the writer stays.
func TestStallLongStatementsOffClusterCallsNotAbandoned(t *testing.T) {
	ring, r, c, events := stallRing(t)
	ctx := testContext(t, 60*time.Second)
	_, err := c.ExecContext(ctx, "CREATE TABLE h (seq INT PRIMARY KEY, seen INT NOT NULL, node INT NOT NULL)")
	require.NoError(t, err)
	_, err = c.ExecContext(ctx, "CREATE TABLE slow (id INT PRIMARY KEY, v INT NOT NULL)")
	require.NoError(t, err)
	_, err = c.ExecContext(ctx, "INSERT INTO slow VALUES (1, 0)")
	require.NoError(t, err)
	db, err := r.OpenDB("ring")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })

	// Another session holds the row lock for 3 s.
	admin, err := ring.AdminDB(0).Conn(ctx)
	require.NoError(t, err)
	defer admin.Close()
	_, err = admin.ExecContext(ctx, "START TRANSACTION")
	require.NoError(t, err)
	_, err = admin.ExecContext(ctx, "UPDATE ringtest.slow SET v = v + 10 WHERE id = 1")
	require.NoError(t, err)

	t0 := time.Now()
	w := startSeqWriter(t, c)
	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		wg.Go(func() {
			start := time.Now()
			err := f()
			t.Logf("%s: %v after %v", name, err, time.Since(start).Round(time.Millisecond))
			if err != nil {
				t.Errorf("%s: %v", name, err)
			} else if d := time.Since(start); d < 2900*time.Millisecond {
				t.Errorf("%s returned after %v: it did not wait", name, d)
			}
		})
	}
	sleep := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) error {
		var v int
		return q.QueryRowContext(ctx, "SELECT SLEEP(3)").Scan(&v)
	}
	run("SELECT SLEEP(3) in RunInTx", func() error {
		return c.RunInTx(ctx, nil, func(ctx context.Context, tx *dbrouter.Tx) error {
			var v int
			return tx.QueryRowContext(ctx, "SELECT SLEEP(3)").Scan(&v)
		})
	})
	run("row lock wait in RunInTx", func() error {
		return c.RunInTx(ctx, nil, func(ctx context.Context, tx *dbrouter.Tx) error {
			_, err := tx.ExecContext(ctx, "UPDATE slow SET v = v + 1 WHERE id = 1")
			return err
		})
	})
	run("SELECT SLEEP(3) on Cluster.Conn", func() error {
		conn, err := c.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		return sleep(conn)
	})
	run("SELECT SLEEP(3) on Cluster.Writer", func() error { return sleep(c.Writer()) })
	run("SELECT SLEEP(3) on OpenDB", func() error { return sleep(db) })
	run("rows of SELECT SLEEP(1) FROM seq_1_to_3, a Cluster read", func() error {
		// Watched while each row is read (or the query, if the server
		// sends them all at the end): a long read is not cut.
		rows, err := c.QueryContext(ctx, "SELECT SLEEP(1) FROM seq_1_to_3")
		if err != nil {
			return err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if n != 3 {
			return fmt.Errorf("%d rows, want 3", n)
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	_, err = admin.ExecContext(ctx, "COMMIT")
	require.NoError(t, err)
	wg.Wait()
	ws := w.halt()
	for _, x := range ws {
		if !x.ok {
			t.Errorf("write %d failed meanwhile (unknown %v)", x.seq, x.unknown)
		}
	}
	var v int
	require.NoError(t, c.QueryRowContext(ctx, "SELECT v FROM slow WHERE id = 1").Scan(&v))
	require.Equal(t, 11, v, "the waiting UPDATE applied once, after the lock holder's")
	require.Equal(t, ring.Addr(0), c.WriterAddr())
	requireNoHealthChange(t, events, t0)
	logEvents(t, events)
}
