package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// The *sql.DB of Router.OpenDB, on fake servers: database/sql's own
// retries (on driver.ErrBadConn) must land on the new writer after a
// read-only refusal or a switch of writer, and never run a statement twice
// whose outcome is unknown.

// fullConn is a fake connection with every optional interface
// go-sql-driver's has, counting the calls each gets.
type fullConn struct {
	*fakeConn
	calls *ifaceCalls
}

type ifaceCalls struct {
	exec, query, begin, prepare, ping, reset, valid, check atomic.Int64
}

var (
	_ driver.ExecerContext      = (*fullConn)(nil)
	_ driver.QueryerContext     = (*fullConn)(nil)
	_ driver.ConnBeginTx        = (*fullConn)(nil)
	_ driver.ConnPrepareContext = (*fullConn)(nil)
	_ driver.Pinger             = (*fullConn)(nil)
	_ driver.SessionResetter    = (*fullConn)(nil)
	_ driver.Validator          = (*fullConn)(nil)
	_ driver.NamedValueChecker  = (*fullConn)(nil)
)

// ExecContext and QueryContext skip statements with arguments, as
// go-sql-driver does without interpolateParams: database/sql then
// prepares them.
func (c *fullConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	c.calls.exec.Add(1)
	if len(args) > 0 {
		return nil, driver.ErrSkip
	}
	return c.fakeConn.ExecContext(ctx, q, args)
}

func (c *fullConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	c.calls.query.Add(1)
	if len(args) > 0 {
		return nil, driver.ErrSkip
	}
	return c.fakeConn.QueryContext(ctx, q, args)
}

// BeginTx fails as the server's statements do (execErr), without
// counting as a statement that ran.
func (c *fullConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.calls.begin.Add(1)
	c.srv.mu.Lock()
	err := c.srv.execErr
	c.srv.mu.Unlock()
	if err != nil {
		c.bad = true
		return nil, err
	}
	return c.fakeConn.BeginTx(ctx, opts)
}

func (c *fullConn) PrepareContext(_ context.Context, q string) (driver.Stmt, error) {
	c.calls.prepare.Add(1)
	return &fakeStmt{c: c.fakeConn, query: q}, nil
}

func (c *fullConn) Ping(ctx context.Context) error {
	c.calls.ping.Add(1)
	return c.fakeConn.stmt(ctx, "PING")
}

func (c *fullConn) ResetSession(context.Context) error {
	c.calls.reset.Add(1)
	if c.bad {
		return driver.ErrBadConn
	}
	return nil
}

func (c *fullConn) IsValid() bool {
	c.calls.valid.Add(1)
	return c.fakeConn.IsValid()
}

func (c *fullConn) CheckNamedValue(nv *driver.NamedValue) error {
	c.calls.check.Add(1)
	return driver.ErrSkip
}

// fakeStmt is a prepared statement of a fake connection.
type fakeStmt struct {
	c     *fakeConn
	query string
}

func (s *fakeStmt) Close() error  { return nil }
func (s *fakeStmt) NumInput() int { return -1 }
func (s *fakeStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.c.ExecContext(context.Background(), s.query, nil)
}
func (s *fakeStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.c.QueryContext(context.Background(), s.query, nil)
}

// fullConnector connects to a fake server with fullConns.
type fullConnector struct {
	srv   *fakeServer
	calls *ifaceCalls
}

func (k *fullConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := k.srv.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &fullConn{fakeConn: conn.(*fakeConn), calls: k.calls}, nil
}

func (k *fullConnector) Driver() driver.Driver { return fakeDriver{} }

// newRoutedFake builds a cluster of n fake servers without probes whose
// connections have every optional interface.
func newRoutedFake(t *testing.T, n int) (*Cluster, []*fakeServer, *ifaceCalls) {
	t.Helper()
	cfg := &Config{Defaults: Settings{Health: HealthConfig{Disabled: true}}, Clusters: map[string]ClusterConfig{"fake": {Nodes: []string{"x"}}}}
	log := slog.New(slog.DiscardHandler)
	c := &Cluster{name: "fake", settings: cfg.effective("fake"), log: log, events: newDispatcher(log, nil)}
	calls := &ifaceCalls{}
	var servers []*fakeServer
	for i := range n {
		s := &fakeServer{addr: string(rune('a'+i)) + ":3306", gtid: "0-1-1", serverID: strconv.Itoa(i + 1)}
		servers = append(servers, s)
		c.nodes = append(c.nodes, newNodeWithConnector(s.addr, &fullConnector{srv: s, calls: calls}, c.settings))
	}
	c.initHealth()
	t.Cleanup(func() {
		c.close()
		c.events.close()
	})
	return c, servers, calls
}

// routedDB opens a *sql.DB over whatever cluster current holds, as
// Router.OpenDB does over a name.
func routedDB(t *testing.T, current *atomic.Pointer[Cluster]) *sql.DB {
	t.Helper()
	db := sql.OpenDB(&clusterConnector{resolve: func() (*Cluster, error) { return current.Load(), nil }})
	t.Cleanup(func() { db.Close() })
	return db
}

func routedDBOver(t *testing.T, c *Cluster) *sql.DB {
	var p atomic.Pointer[Cluster]
	p.Store(c)
	return routedDB(t, &p)
}

var errReadOnly = &mysql.MySQLError{Number: 1290, Message: "The MariaDB server is running with the --read-only option so it cannot execute this statement"}

const insert = "INSERT INTO t (id) VALUES (?)"

func TestOpenDBReadOnlyRefusalRetriedOnNewWriter(t *testing.T) {
	t.Parallel()
	c, srv, _ := newRoutedFake(t, 3)
	db := routedDBOver(t, c)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, insert, 1); err != nil {
		t.Fatal(err)
	}
	srv[0].set(func(s *fakeServer) { s.execErr = errReadOnly })
	if _, err := db.ExecContext(ctx, insert, 2); err != nil {
		t.Fatalf("write after a read-only refusal: %v", err)
	}
	if a, b := srv[0].execs.Load(), srv[1].execs.Load(); a != 2 || b != 1 {
		t.Errorf("executions: a %d (want 2: one applied, one refused), b %d (want 1)", a, b)
	}
	if w := c.WriterAddr(); w != srv[1].addr {
		t.Errorf("writer %s, want %s", w, srv[1].addr)
	}
}

func TestOpenDBFollowsWriterSwitch(t *testing.T) {
	t.Parallel()
	c, srv, _ := newRoutedFake(t, 3)
	db := routedDBOver(t, c)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, insert, 1); err != nil {
		t.Fatal(err)
	}
	held, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := held.ExecContext(ctx, insert, 2); err != nil {
		t.Fatal(err)
	}
	// A failed call moves the writer (no probes: calls alone judge).
	c.reportCall(0, true, ClassNotSent, errors.New("dial refused"))
	if w := c.WriterAddr(); w != srv[1].addr {
		t.Fatalf("writer %s, want %s", w, srv[1].addr)
	}
	// The pooled connection to a is dropped before use; the retry
	// connects to b.
	if _, err := db.ExecContext(ctx, insert, 3); err != nil {
		t.Fatalf("write after the switch: %v", err)
	}
	if a, b := srv[0].execs.Load(), srv[1].execs.Load(); a != 2 || b != 1 {
		t.Errorf("executions: a %d (want 2), b %d (want 1)", a, b)
	}
	// A *sql.Conn does not move: refused before sending, as ErrBadConn
	// and ErrNotSent.
	_, err = held.ExecContext(ctx, insert, 4)
	if !errors.Is(err, driver.ErrBadConn) || !errors.Is(err, ErrNotSent) {
		t.Fatalf("held connection after the switch: %v, want ErrBadConn and ErrNotSent", err)
	}
	if a := srv[0].execs.Load(); a != 2 {
		t.Errorf("a ran %d statements, want 2: the refused one was sent", a)
	}
}

func TestPickerTakesWrites(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		states []NodeState
		writes []int
		want   []bool
	}{
		{"writer up", []NodeState{StateUp, StateUp, StateUp}, []int{0, 1, 2}, []bool{true, false, false}},
		{"writer suspect", []NodeState{StateSuspect, StateUp, StateUp}, []int{0, 1, 2}, []bool{true, true, false}},
		{"all suspect", []NodeState{StateSuspect, StateSuspect, StateSuspect}, []int{0, 1, 2}, []bool{true, true, true}},
		{"writer down", []NodeState{StateDown, StateUp, StateUp}, []int{1, 2}, []bool{false, true, false}},
		{"no writer", []NodeState{StateDown, StateDown, StateDown}, nil, []bool{false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &picker{writes: tc.writes}
			for _, s := range tc.states {
				p.nodes = append(p.nodes, nodeView{state: s})
			}
			for i, want := range tc.want {
				if got := p.takesWrites(i); got != want {
					t.Errorf("node %d: %v, want %v", i, got, want)
				}
			}
		})
	}
}

// TestOpenDBOutcomeUnknownNotRetried: a connection lost after sending is
// an *OutcomeUnknownError, never driver.ErrBadConn, on every path that
// sends: database/sql runs the statement once.
func TestOpenDBOutcomeUnknownNotRetried(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		op   Op
		run  func(ctx context.Context, db *sql.DB, fail func()) error
	}{
		{"exec", OpExec, func(ctx context.Context, db *sql.DB, fail func()) error {
			fail()
			_, err := db.ExecContext(ctx, "INSERT INTO t (id) VALUES (1)")
			return err
		}},
		{"exec with arguments (prepared by database/sql)", OpExec, func(ctx context.Context, db *sql.DB, fail func()) error {
			fail()
			_, err := db.ExecContext(ctx, insert, 1)
			return err
		}},
		{"query", OpQuery, func(ctx context.Context, db *sql.DB, fail func()) error {
			fail()
			rows, err := db.QueryContext(ctx, "INSERT INTO t (id) VALUES (1) RETURNING id")
			if err == nil {
				rows.Close()
			}
			return err
		}},
		{"prepared exec", OpExec, func(ctx context.Context, db *sql.DB, fail func()) error {
			st, err := db.PrepareContext(ctx, insert)
			if err != nil {
				return err
			}
			defer st.Close()
			fail()
			_, err = st.ExecContext(ctx, 1)
			return err
		}},
		{"prepared query", OpQuery, func(ctx context.Context, db *sql.DB, fail func()) error {
			st, err := db.PrepareContext(ctx, "INSERT INTO t (id) VALUES (1) RETURNING id")
			if err != nil {
				return err
			}
			defer st.Close()
			fail()
			rows, err := st.QueryContext(ctx)
			if err == nil {
				rows.Close()
			}
			return err
		}},
		{"exec in a transaction", OpTxExec, func(ctx context.Context, db *sql.DB, fail func()) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			fail()
			_, err = tx.ExecContext(ctx, insert, 1)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, srv, _ := newRoutedFake(t, 3)
			db := routedDBOver(t, c)
			fail := func() { srv[0].set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn }) }
			err := tc.run(t.Context(), db, fail)
			var ou *OutcomeUnknownError
			if !errors.As(err, &ou) || !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, ErrNotSent) {
				t.Fatalf("error %v, want an *OutcomeUnknownError that does not match ErrBadConn", err)
			}
			if ou.Op != tc.op || ou.Node != srv[0].addr {
				t.Errorf("op %q on %s, want %q on %s", ou.Op, ou.Node, tc.op, srv[0].addr)
			}
			total := srv[0].execs.Load() + srv[1].execs.Load() + srv[2].execs.Load()
			if total != 1 {
				t.Errorf("the statement ran %d times, want 1", total)
			}
			if st := c.Stats().Nodes[0].State; st == StateUp {
				t.Errorf("node a is %v: the lost connection was not reported", st)
			}
		})
	}
}

func TestOpenDBCommitOutcomeUnknown(t *testing.T) {
	t.Parallel()
	c, srv, _ := newRoutedFake(t, 3)
	db := routedDBOver(t, c)
	ctx := t.Context()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, insert, 1); err != nil {
		t.Fatal(err)
	}
	srv[0].set(func(s *fakeServer) { s.commitErr = mysql.ErrInvalidConn })
	err = tx.Commit()
	var ou *OutcomeUnknownError
	if !errors.As(err, &ou) || ou.Op != OpCommit || errors.Is(err, driver.ErrBadConn) {
		t.Fatalf("commit: %v, want an *OutcomeUnknownError (OpCommit) that does not match ErrBadConn", err)
	}
	if n := c.inflight.Load(); n != 0 {
		t.Errorf("%d calls in flight after the commit, want 0", n)
	}
}

// TestOpenDBTransactionNeverRetried: a read-only refusal inside a
// transaction is the server's error, not a retry on another node.
func TestOpenDBTransactionNeverRetried(t *testing.T) {
	t.Parallel()
	c, srv, _ := newRoutedFake(t, 3)
	db := routedDBOver(t, c)
	ctx := t.Context()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	srv[0].set(func(s *fakeServer) { s.execErr = errReadOnly })
	_, err = tx.ExecContext(ctx, insert, 1)
	var me *mysql.MySQLError
	if !errors.As(err, &me) || errors.Is(err, driver.ErrBadConn) {
		t.Fatalf("read-only refusal in a transaction: %v, want the server's error", err)
	}
	if b := srv[1].execs.Load(); b != 0 {
		t.Errorf("b ran %d statements, want 0", b)
	}
	if !c.Stats().Nodes[0].ReadOnly {
		t.Errorf("the refusal was not reported: a is not flagged read-only")
	}
}

// TestOpenDBRollbackOfLostTransaction: once a statement of a transaction
// lost its connection, Rollback returns nil (the server discarded the
// transaction), so that a library joining the rollback's error to the
// statement's keeps the statement's typed error last; a rollback on a
// healthy connection still returns the driver's result.
func TestOpenDBRollbackOfLostTransaction(t *testing.T) {
	t.Parallel()
	c, srv, _ := newRoutedFake(t, 3)
	db := routedDBOver(t, c)
	ctx := t.Context()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv[0].set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
	_, err = tx.ExecContext(ctx, insert, 1)
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("lost statement in a transaction: %v, want ErrOutcomeUnknown", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Errorf("rollback of a lost transaction: %v, want nil", err)
	}
}

func TestOpenDBRetiredClusterRefused(t *testing.T) {
	t.Parallel()
	old, oldSrv, _ := newRoutedFake(t, 1)
	cur, curSrv, _ := newRoutedFake(t, 1)
	var p atomic.Pointer[Cluster]
	p.Store(old)
	db := routedDB(t, &p)
	ctx := t.Context()
	held, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := db.ExecContext(ctx, insert, 1); err != nil {
		t.Fatal(err)
	}
	p.Store(cur) // what Reload does to the table
	old.retire()
	if _, err := db.ExecContext(ctx, insert, 2); err != nil {
		t.Fatalf("write after the reload: %v", err)
	}
	if o, n := oldSrv[0].execs.Load(), curSrv[0].execs.Load(); o != 1 || n != 1 {
		t.Errorf("executions: retired cluster %d (want 1), new %d (want 1)", o, n)
	}
	_, err = held.ExecContext(ctx, insert, 3)
	if !errors.Is(err, driver.ErrBadConn) || !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrClosed) {
		t.Fatalf("held connection of a retired cluster: %v, want ErrBadConn, ErrNotSent and ErrClosed", err)
	}
}

func TestOpenDBConnectFailsOver(t *testing.T) {
	t.Parallel()
	c, srv, _ := newRoutedFake(t, 3)
	db := routedDBOver(t, c)
	ctx := t.Context()
	srv[0].set(func(s *fakeServer) { s.connectErr = errors.New("connection refused") })
	if _, err := db.ExecContext(ctx, insert, 1); err != nil {
		t.Fatal(err)
	}
	if b := srv[1].execs.Load(); b != 1 {
		t.Errorf("b ran %d statements, want 1", b)
	}
	if st := c.Stats().Nodes[0].State; st != StateSuspect {
		t.Errorf("a is %v, want Suspect: the failed connect was not reported", st)
	}
	for _, s := range srv {
		s.set(func(s *fakeServer) { s.connectErr = errors.New("connection refused") })
	}
	db.SetMaxIdleConns(0)
	_, err := db.ExecContext(ctx, insert, 2)
	if !errors.Is(err, ErrNoNode) || !errors.Is(err, ErrNotSent) || errors.Is(err, driver.ErrBadConn) {
		t.Fatalf("no node reachable: %v, want ErrNoNode and ErrNotSent", err)
	}
}

func TestOpenDBForwardsOptionalInterfaces(t *testing.T) {
	t.Parallel()
	c, _, calls := newRoutedFake(t, 1)
	db := routedDBOver(t, c)
	db.SetMaxOpenConns(1)
	ctx := t.Context()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, insert, 1); err != nil {
		t.Fatal(err)
	}
	var node string
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&node); err != nil {
		t.Fatal(err)
	}
	st, err := db.PrepareContext(ctx, insert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ExecContext(ctx, 2); err != nil {
		t.Fatal(err)
	}
	st.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int64{
		"ExecContext": calls.exec.Load(), "QueryContext": calls.query.Load(), "BeginTx": calls.begin.Load(),
		"PrepareContext": calls.prepare.Load(), "Ping": calls.ping.Load(), "ResetSession": calls.reset.Load(),
		"IsValid": calls.valid.Load(), "CheckNamedValue": calls.check.Load(),
	} {
		if n == 0 {
			t.Errorf("%s was not forwarded", name)
		}
	}
}

// TestOpenDBWritesHoldFence: a statement's rows and a transaction count
// as writes in flight until they end, as direct calls do.
func TestOpenDBWritesHoldFence(t *testing.T) {
	t.Parallel()
	c, _, _ := newRoutedFake(t, 1)
	db := routedDBOver(t, c)
	ctx := t.Context()
	rows, err := db.QueryContext(ctx, "INSERT INTO t (id) VALUES (1) RETURNING id")
	if err != nil {
		t.Fatal(err)
	}
	if in, f := c.inflight.Load(), c.fence.inside.Load(); in != 1 || f != 1 {
		t.Errorf("rows open: %d in flight, %d past the fence; want 1 and 1", in, f)
	}
	rows.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, insert, 1); err != nil {
		t.Fatal(err)
	}
	if in, f := c.inflight.Load(), c.fence.inside.Load(); in != 1 || f != 1 {
		t.Errorf("transaction open: %d in flight, %d past the fence; want 1 and 1", in, f)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if in, f := c.inflight.Load(), c.fence.inside.Load(); in != 0 || f != 0 {
		t.Errorf("after commit: %d in flight, %d past the fence; want 0 and 0", in, f)
	}
}

// TestOpenDBBeginAndPingRetried: BeginTx and Ping apply nothing, so a
// connection lost under them, or refused because its node lost the
// writer role, fails with driver.ErrBadConn and ErrNotSent, and
// database/sql retries on the new writer (BeginTx always; Ping only when
// the pool drops the connection before pinging: sql.DB.PingContext does
// not retry the ping itself, so the next one lands on the new writer).
func TestOpenDBBeginAndPingRetried(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, db *sql.DB) error
		// pings: sql.DB.PingContext returns a lost ping's error as is.
		pings bool
	}{
		{"begin", func(ctx context.Context, db *sql.DB) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO t (id) VALUES (1)"); err != nil {
				return err
			}
			return tx.Commit()
		}, false},
		{"ping", func(ctx context.Context, db *sql.DB) error { return db.PingContext(ctx) }, true},
	} {
		t.Run(tc.name+" after a lost connection", func(t *testing.T) {
			t.Parallel()
			c, srv, _ := newRoutedFake(t, 3)
			db := routedDBOver(t, c)
			ctx := t.Context()
			if _, err := db.ExecContext(ctx, "INSERT INTO t (id) VALUES (0)"); err != nil {
				t.Fatal(err)
			}
			srv[0].set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
			err := tc.run(ctx, db)
			if tc.pings {
				if !errors.Is(err, driver.ErrBadConn) || !errors.Is(err, ErrNotSent) || errors.Is(err, ErrOutcomeUnknown) {
					t.Fatalf("lost ping: %v, want ErrBadConn and ErrNotSent", err)
				}
				err = tc.run(ctx, db)
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if b := srv[1].execs.Load(); b != 1 {
				t.Errorf("b ran %d statements, want 1", b)
			}
		})
		t.Run(tc.name+" after a switch", func(t *testing.T) {
			t.Parallel()
			c, srv, _ := newRoutedFake(t, 3)
			db := routedDBOver(t, c)
			ctx := t.Context()
			held, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			if err := held.PingContext(ctx); err != nil {
				t.Fatal(err)
			}
			c.reportCall(0, true, ClassNotSent, errors.New("dial refused"))
			if err := held.PingContext(ctx); !errors.Is(err, driver.ErrBadConn) || !errors.Is(err, ErrNotSent) {
				t.Errorf("ping on a held connection after the switch: %v, want ErrBadConn and ErrNotSent", err)
			}
			if err := tc.run(ctx, db); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if a, b := srv[0].execs.Load(), srv[1].execs.Load(); a != 1 || b != 1 {
				t.Errorf("executions: a %d (want 1: the first ping), b %d (want 1)", a, b)
			}
		})
	}
}

// TestOpenDBClosedCluster: after Router.Close a connection is refused and
// a new one cannot be made: the error matches ErrClosed and ErrNotSent.
func TestOpenDBClosedCluster(t *testing.T) {
	t.Parallel()
	c, srv, _ := newRoutedFake(t, 2)
	db := routedDBOver(t, c)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, insert, 1); err != nil {
		t.Fatal(err)
	}
	c.close()
	_, err := db.ExecContext(ctx, insert, 2)
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotSent) {
		t.Fatalf("after close: %v, want ErrClosed and ErrNotSent", err)
	}
	if n := srv[0].execs.Load() + srv[1].execs.Load(); n != 1 {
		t.Errorf("%d statements ran, want 1", n)
	}
}

// TestRouterOpenDBResolvesByName: OpenDB and Connector check the name, and
// every connect resolves it again, so a cluster removed by Reload is gone.
func TestRouterOpenDBResolvesByName(t *testing.T) {
	t.Parallel()
	cfg := &Config{
		Defaults: Settings{User: "app", Health: HealthConfig{Disabled: true}},
		Clusters: map[string]ClusterConfig{
			"orders": {Nodes: []string{"127.0.0.1:1"}},
			"other":  {Nodes: []string{"127.0.0.1:2"}},
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.OpenDB("nope"); !errors.Is(err, ErrUnknownCluster) {
		t.Errorf("OpenDB of an unknown cluster: %v, want ErrUnknownCluster", err)
	}
	if _, err := r.Connector("nope"); !errors.Is(err, ErrUnknownCluster) {
		t.Errorf("Connector of an unknown cluster: %v, want ErrUnknownCluster", err)
	}
	k, err := r.Connector("orders")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Driver().Open("dsn"); err == nil {
		t.Errorf("the connector's driver opened a DSN")
	}
	db, err := r.OpenDB("orders")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg2 := cfg.Clone()
	delete(cfg2.Clusters, "orders")
	if err := r.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(t.Context()); !errors.Is(err, ErrUnknownCluster) {
		t.Errorf("connect after the cluster was removed: %v, want ErrUnknownCluster", err)
	}
}
