package dbrouter

// Regression tests for the hardening issue (#12): each test names its item
// and fails on the code before the fix. Real-ring counterparts are in
// integration/hardening_test.go.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Item 1: a SELECT that writes (a stored function that inserts) is refused
// in the read-only session reads run in, then runs once as a write: after
// an outcome-unknown failure it is not re-sent to another node.
func TestItem01ReadThatWritesIsNeverReRun(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 3, Settings{})
	for _, s := range srv {
		s.set(func(s *fakeServer) { s.writes = func(q string) bool { return strings.Contains(q, "create_order") } })
	}
	ctx := testCtx(t)

	// Healthy: refused as a read, applied once as a write on a.
	var got string
	if err := c.QueryRowContext(ctx, "SELECT create_order(42)").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if n := srv[0].execs.Load(); n != 1 || srv[0].roExecs.Load() != 0 {
		t.Fatalf("a ran it %d times (%d in a read-only session), want once as a write", n, srv[0].roExecs.Load())
	}

	// The connection breaks mid-call: outcome unknown, and never on b.
	srv[0].set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
	err := c.QueryRowContext(ctx, "SELECT create_order(43)").Scan(&got)
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want outcome unknown", err)
	}
	if n := srv[1].execs.Load() + srv[2].execs.Load(); n != 0 {
		t.Fatalf("a SELECT that writes was re-sent to another node %d times", n)
	}
}

// Item 1: a plain SELECT still fails over after an outcome-unknown failure,
// and runs in a read-only session.
func TestItem01PlainSelectStillFailsOver(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 2, Settings{})
	srv[0].set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
	var tr Trace
	var node string
	if err := c.QueryRowContext(WithTrace(testCtx(t), &tr), "SELECT @@hostname").Scan(&node); err != nil {
		t.Fatal(err)
	}
	if tr.Node != "b:3306" || srv[1].roExecs.Load() != 1 {
		t.Fatalf("served by %s with %d read-only statements on b, want b in a read-only session", tr.Node, srv[1].roExecs.Load())
	}
}

// Item 1: several statements in one string are never a read.
func TestItem01MultiStatementIsNotARead(t *testing.T) {
	t.Parallel()
	for _, q := range []string{
		"SELECT 1; INSERT INTO t VALUES (1)",
		"select 1;insert into t values (1)",
		"SELECT 1 ;\n DELETE FROM t",
	} {
		if isReadStatement(q) {
			t.Errorf("isReadStatement(%q) = true", q)
		}
	}
	for _, q := range []string{"SELECT 1;", "SELECT 1 ; \n", "SELECT 1;;"} {
		if !isReadStatement(q) {
			t.Errorf("isReadStatement(%q) = false, want true (one statement)", q)
		}
	}
	c, srv := newFakeCluster(t, 2, Settings{})
	srv[0].set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
	rows, err := c.QueryContext(testCtx(t), "SELECT 1; INSERT INTO t VALUES (1)")
	if err == nil {
		rows.Close()
	}
	if !errors.Is(err, ErrOutcomeUnknown) || srv[1].execs.Load() != 0 {
		t.Fatalf("err = %v, b ran %d statements; want outcome unknown and nothing on b", err, srv[1].execs.Load())
	}
}

// Item 2: error 1290 for --secure-file-priv is a server error, not a
// read-only server: the writer stays.
func TestItem02SecureFilePrivIsNotReadOnly(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 2, Settings{})
	srv[0].set(func(s *fakeServer) {
		s.execErr = &mysql.MySQLError{Number: 1290, Message: "The MariaDB server is running with the --secure-file-priv option so it cannot execute this statement"}
	})
	_, err := c.ExecContext(testCtx(t), "LOAD DATA INFILE '/tmp/x' INTO TABLE t")
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1290 || errors.Is(err, ErrNotSent) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want the server's 1290 as is", err)
	}
	if w := c.WriterAddr(); w != "a:3306" || srv[1].execs.Load() != 0 {
		t.Fatalf("writer %s, b ran %d statements: a refusal that is not read-only moved the writer", w, srv[1].execs.Load())
	}
	for _, msg := range []string{
		"The MariaDB server is running with the --read-only option so it cannot execute this statement",
		"The MySQL server is running with the --super-read-only option so it cannot execute this statement",
	} {
		if got := classify(&mysql.MySQLError{Number: 1290, Message: msg}, true); got != ClassReadOnly {
			t.Errorf("classify(1290 %q) = %s, want read-only", msg, got)
		}
	}
}

// Item 3: Cluster.Conn, Cluster.Writer and the rows of a write sent through
// QueryContext hold the failback fence while they may write, and a pinned
// connection's statements are refused once its node is no longer the
// writer.
func TestItem03PinnedConnsAndWriteRowsHoldTheFence(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 2, Settings{})
	ctx := testCtx(t)
	held := func() bool {
		hctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if c.fence.hold(hctx) {
			c.fence.unhold()
			return false
		}
		return true
	}

	rows, err := c.QueryContext(ctx, "INSERT INTO t VALUES (1) RETURNING id")
	if err != nil {
		t.Fatal(err)
	}
	if !held() {
		t.Error("open rows of INSERT ... RETURNING do not hold the fence")
	}
	rows.Close()
	if held() {
		t.Error("closed rows still hold the fence")
	}

	tx, err := c.Writer().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !held() {
		t.Error("a transaction on Cluster.Writer does not hold the fence")
	}
	tx.Rollback()

	conn, err := c.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	block := make(chan struct{})
	srv[0].set(func(s *fakeServer) {
		s.execFn = func(ctx context.Context, q string) error {
			if q == "SELECT GET_LOCK('x', 10)" {
				<-block
			}
			return nil
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := conn.ExecContext(ctx, "SELECT GET_LOCK('x', 10)")
		done <- err
	}()
	eventually(t, "the pinned statement to pass the fence", func() bool { return c.fence.inside.Load() == 1 })
	if !held() {
		t.Error("a statement on Cluster.Conn does not hold the fence")
	}
	close(block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// a stops being the writer: the pinned connection and pool refuse.
	c.reportCall(0, true, ClassReadOnly, errors.New("read-only"))
	before := srv[0].execs.Load()
	_, err = conn.ExecContext(ctx, "INSERT INTO t VALUES (2)")
	if !errors.Is(err, ErrNotSent) || !strings.Contains(err.Error(), "no longer the writer") {
		t.Fatalf("statement on a pinned connection to a demoted writer: err = %v, want not sent", err)
	}
	db := c.nodes[0].pool(poolPinned)
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES (3)"); !errors.Is(err, ErrNotSent) {
		t.Fatalf("statement on the old writer's pinned pool: err = %v, want not sent", err)
	}
	if srv[0].execs.Load() != before {
		t.Fatal("a statement reached the demoted writer")
	}
	if c.Writer() != c.nodes[1].pool(poolPinned) {
		t.Fatal("Writer() is not b's pool after the writer moved")
	}
}

// Item 5: a transaction abandoned by cancelling its context (database/sql
// rolls it back) gives back its place behind the fence and among the calls
// in flight, so that failback runs again and a retired cluster closes.
func TestItem05AbandonedTxReleasesFenceAndDrain(t *testing.T) {
	t.Parallel()
	c, _ := newFakeCluster(t, 2, Settings{})
	ctx, cancel := context.WithCancel(context.Background())
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE t SET x = 1"); err != nil {
		t.Fatal(err)
	}
	cancel() // abandoned: neither Commit nor Rollback
	eventually(t, "the abandoned transaction to leave the fence", func() bool { return c.fence.inside.Load() == 0 })
	returnsWithin(t, 5*time.Second, "retiring the cluster (blocked by the abandoned transaction?)", c.retire)
}

// returnsWithin fails t unless f returns within d: a bound against hangs,
// generous enough for a loaded machine.
func returnsWithin(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		f()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s has not returned after %v", what, d)
	}
}

// Item 6: a write waiting for a failback's fence gives up at its own
// deadline, not after the failback.
func TestItem06FenceHonoursCallerDeadline(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 2, Settings{})
	if !c.fence.hold(context.Background()) {
		t.Fatal("hold")
	}
	defer c.fence.unhold()
	calls := map[string]func(ctx context.Context) error{
		"ExecContext": func(ctx context.Context) error {
			_, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)")
			return err
		},
		"QueryContext write": func(ctx context.Context) error {
			rows, err := c.QueryContext(ctx, "INSERT INTO t VALUES (1) RETURNING id")
			if err == nil {
				rows.Close()
			}
			return err
		},
		"BeginTx": func(ctx context.Context) error {
			tx, err := c.BeginTx(ctx, nil)
			if err == nil {
				tx.Rollback()
			}
			return err
		},
		"RunInTx": func(ctx context.Context) error {
			return c.RunInTx(ctx, nil, func(context.Context, *Tx) error { return nil })
		},
		"Writer().ExecContext": func(ctx context.Context) error {
			_, err := c.Writer().ExecContext(ctx, "INSERT INTO t VALUES (1)")
			return err
		},
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		start := time.Now()
		err := call(ctx)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: err = %v, want not sent with the deadline", name, err)
		}
		if took > time.Second {
			t.Errorf("%s took %v with a 50ms deadline", name, took)
		}
	}
	if n := srv[0].execs.Load() + srv[1].execs.Load(); n != 0 {
		t.Errorf("%d statements passed a held fence", n)
	}
}

// Item 7: probes have their own connection: an application holding every
// connection of the pool (max_open_conns: 2, two open transactions) does
// not make a healthy writer look dead.
func TestItem07ProbesDoNotShareTheAppPool(t *testing.T) {
	t.Parallel()
	cc := fastProbes()
	cc.MaxOpenConns = 2
	c, _ := newFakeClusterWithProbes(t, 2, cc, nil)
	ctx := testCtx(t)
	for range 2 {
		tx, err := c.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
	}
	time.Sleep(20 * cc.Health.Interval)
	for _, ns := range c.Stats().Nodes {
		if ns.State != StateUp || ns.ConsecutiveFailures != 0 {
			t.Errorf("%s is %s after %d failed probes (%s) while the app held the pool", ns.Addr, ns.State, ns.ConsecutiveFailures, ns.LastError)
		}
	}
	if w := c.WriterAddr(); w != "a:3306" {
		t.Errorf("writer %s, want a:3306", w)
	}
}

// Item 10: a cluster's first use racing its close is not a data race (run
// with -race).
func TestItem10FirstUseRacesClose(t *testing.T) {
	t.Parallel()
	for range 20 {
		c, _ := newFakeClusterWithProbes(t, 3, fastProbes(), nil)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				c.WriterAddr()
				c.ExecContext(context.Background(), "INSERT INTO t VALUES (1)")
			})
		}
		wg.Go(func() { c.close() })
		wg.Wait()
	}
}

// Item 11: a server that refuses a connection because it has too many, or
// because this router's credentials or database are wrong, is up: the
// call fails as not sent, the writer stays, the node stays Up.
func TestItem11ConnectRefusalsDoNotMoveTheWriter(t *testing.T) {
	t.Parallel()
	for _, refusal := range []*mysql.MySQLError{
		{Number: 1040, Message: "Too many connections"},
		{Number: 1045, Message: "Access denied for user 'app'@'10.0.0.9' (using password: YES)"},
		{Number: 1049, Message: "Unknown database 'shop'"},
	} {
		t.Run(refusal.Error(), func(t *testing.T) {
			t.Parallel()
			c, srv := newFakeClusterWithProbes(t, 2, fastProbes(), nil)
			ctx := testCtx(t)
			var insertsOnB atomic.Int64
			srv[1].set(func(s *fakeServer) {
				s.execFn = func(_ context.Context, q string) error {
					if strings.HasPrefix(q, "INSERT") {
						insertsOnB.Add(1)
					}
					return nil
				}
			})
			if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			c.nodes[0].closeConns()
			srv[0].set(func(s *fakeServer) {
				s.connectErr = refusal
				s.execErr = driver.ErrBadConn // pooled connections are gone too
			})
			_, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)")
			var me *mysql.MySQLError
			if !errors.Is(err, ErrNotSent) || errors.Is(err, ErrOutcomeUnknown) || !errors.As(err, &me) || me.Number != refusal.Number {
				t.Fatalf("err = %v, want not sent with the server's %d", err, refusal.Number)
			}
			time.Sleep(20 * fastProbes().Health.Interval)
			if w := c.WriterAddr(); w != "a:3306" || insertsOnB.Load() != 0 {
				t.Fatalf("writer %s, b ran %d inserts: a refusal moved the writer", w, insertsOnB.Load())
			}
			if st := c.Stats().Nodes[0]; st.State != StateUp || !strings.Contains(st.LastError, refusal.Message) {
				t.Fatalf("a is %s (last error %q), want up with the refusal shown", st.State, st.LastError)
			}
		})
	}
}

// Item 12: every error a call returns matches exactly one of ErrNotSent,
// ErrOutcomeUnknown, or is a server error — idempotent writes included.
func TestItem12IdempotentWritesKeepTheirClass(t *testing.T) {
	t.Parallel()
	exactlyOne := func(t *testing.T, err error, want error) {
		t.Helper()
		notSent, unknown := errors.Is(err, ErrNotSent), errors.Is(err, ErrOutcomeUnknown)
		if notSent == unknown || !errors.Is(err, want) {
			t.Fatalf("err = %v: not sent %v, outcome unknown %v; want exactly %v", err, notSent, unknown, want)
		}
	}
	t.Run("deadline mid-statement", func(t *testing.T) {
		c, srv := newFakeCluster(t, 2, Settings{})
		srv[0].set(func(s *fakeServer) {
			s.execFn = func(ctx context.Context, _ string) error { return blockUntilDone(ctx) }
		})
		ctx, cancel := context.WithTimeout(WithIdempotent(context.Background()), 50*time.Millisecond)
		defer cancel()
		_, err := c.ExecContext(ctx, "DELETE FROM t WHERE id = 1")
		exactlyOne(t, err, ErrOutcomeUnknown)
		var ou *OutcomeUnknownError
		if !errors.As(err, &ou) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want *OutcomeUnknownError with the deadline", err)
		}
	})
	t.Run("every node outcome unknown", func(t *testing.T) {
		c, srv := newFakeCluster(t, 3, Settings{})
		for _, s := range srv {
			s.set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
		}
		_, err := c.ExecContext(WithIdempotent(testCtx(t)), "DELETE FROM t WHERE id = 1")
		exactlyOne(t, err, ErrOutcomeUnknown)
		if !errors.Is(err, ErrNoNode) {
			t.Fatalf("err = %v, want it to match ErrNoNode too", err)
		}
	})
	t.Run("every node refused", func(t *testing.T) {
		c, srv := newFakeCluster(t, 2, Settings{})
		for _, s := range srv {
			s.set(func(s *fakeServer) { s.connectErr = errDialRefused })
		}
		_, err := c.ExecContext(WithIdempotent(testCtx(t)), "DELETE FROM t WHERE id = 1")
		exactlyOne(t, err, ErrNotSent)
	})
}

// Item 13: Commit after the transaction's context ended, and a second
// Commit, never sent COMMIT: not sent, never outcome unknown.
func TestItem13CommitNotSentIsNotOutcomeUnknown(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 2, Settings{})
	ctx, cancel := context.WithCancel(context.Background())
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for i := range 2 {
		err := tx.Commit()
		if !errors.Is(err, ErrNotSent) || errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("Commit #%d after the context ended: err = %v, want not sent", i+1, err)
		}
	}
	if srv[0].commits.Load() != 0 {
		t.Fatal("COMMIT reached the server")
	}

	tx, err = c.BeginTx(testCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	err = tx.Commit()
	if !errors.Is(err, sql.ErrTxDone) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("second Commit: err = %v, want sql.ErrTxDone, not outcome unknown", err)
	}
}

// Item 14: a net.Error of the caller's own (an HTTP timeout inside fn) is
// returned as is; RunInTx does not take it for a lost connection.
func TestItem14CallersNetErrorIsNotReRun(t *testing.T) {
	t.Parallel()
	c, _ := newFakeCluster(t, 2, Settings{})
	httpErr := &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}
	runs := 0
	err := c.RunInTx(testCtx(t), nil, func(ctx context.Context, tx *Tx) error {
		runs++
		if _, err := tx.ExecContext(ctx, "UPDATE t SET x = 1"); err != nil {
			return err
		}
		return httpErr
	})
	if runs != 1 || !errors.Is(err, httpErr) || errors.Is(err, ErrNoNode) {
		t.Fatalf("fn ran %d times, err = %v; want once and the caller's error as is", runs, err)
	}

	// The same net.Error from the transaction's own connection re-runs.
	c2, srv := newFakeCluster(t, 2, Settings{})
	srv[0].set(func(s *fakeServer) { s.execErr = errReadTimeout })
	runs = 0
	err = c2.RunInTx(testCtx(t), nil, func(ctx context.Context, tx *Tx) error {
		runs++
		_, err := tx.ExecContext(ctx, "UPDATE t SET x = 1")
		return err
	})
	if err != nil || runs != 2 {
		t.Fatalf("connection timeout inside the transaction: runs %d, err %v; want a re-run on b", runs, err)
	}
}

// Item 15: ErrClosed after Router.Close matches ErrNotSent, as it does
// after Reload.
func TestItem15ClosedIsNotSent(t *testing.T) {
	t.Parallel()
	r, err := Open(&Config{Defaults: Settings{User: "app"}, Clusters: map[string]ClusterConfig{"c": {Nodes: []string{"127.0.0.1:1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := r.Cluster("c")
	r.Close()
	_, err = c.ExecContext(context.Background(), "INSERT INTO t VALUES (1)")
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotSent) {
		t.Fatalf("err = %v, want ErrClosed and ErrNotSent", err)
	}
	if _, err := c.BeginTx(context.Background(), nil); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotSent) {
		t.Fatalf("BeginTx: err = %v, want ErrClosed and ErrNotSent", err)
	}
}

// Item 18: Row.Scan refuses *sql.RawBytes, as sql.Row.Scan does.
func TestItem18RowScanRefusesRawBytes(t *testing.T) {
	t.Parallel()
	c, _ := newFakeCluster(t, 1, Settings{})
	var raw sql.RawBytes
	err := c.QueryRowContext(testCtx(t), "SELECT 'x'").Scan(&raw)
	if err == nil || !strings.Contains(err.Error(), "RawBytes") {
		t.Fatalf("err = %v, want RawBytes refused", err)
	}
}

// Item 3: the statements of a transaction begun on a pinned connection run
// under the transaction's pass: they do not queue behind a failback's fence
// that the transaction itself keeps from closing.
func TestItem03PinnedTxStatementsUseTheTxPass(t *testing.T) {
	t.Parallel()
	c, _ := newFakeCluster(t, 2, Settings{})
	ctx := testCtx(t)
	tx, err := c.Writer().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if c.fence.hold(hctx) {
			c.fence.unhold()
		}
	}()
	eventually(t, "the failback to hold the fence", c.fence.held.Load)
	start := time.Now()
	if _, err := tx.ExecContext(ctx, "UPDATE t SET x = 1"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a statement of the transaction waited %v behind the fence its own transaction holds", took)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fence to be free", func() bool { return c.fence.inside.Load() == 0 })
}
