package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Review of the *sql.DB that fails over (Router.OpenDB, the "dbrouter"
// driver): each test pins down one defect found by attacking it.

// review5Conn is a fullConn whose rows, argument checks and prepared
// statements can be changed per test.
type review5Conn struct {
	*fullConn
	rows func() driver.Rows // the rows of a query, when set
}

// CheckNamedValue accepts a review5Point, as a driver with its own types
// (go-sql-driver's json.RawMessage, uint64) does at the connection.
func (c *review5Conn) CheckNamedValue(nv *driver.NamedValue) error {
	if p, ok := nv.Value.(review5Point); ok {
		nv.Value = fmt.Sprintf("POINT(%d %d)", p.x, p.y)
		return nil
	}
	return driver.ErrSkip
}

func (c *review5Conn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := c.fullConn.QueryContext(ctx, q, args)
	if err != nil || c.rows == nil {
		return rows, err
	}
	return c.rows(), nil
}

type review5Point struct{ x, y int }

// review5Connector connects with review5Conns.
type review5Connector struct {
	srv   *fakeServer
	calls *ifaceCalls
	rows  func() driver.Rows
}

func (k *review5Connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := k.srv.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &review5Conn{fullConn: &fullConn{fakeConn: conn.(*fakeConn), calls: k.calls}, rows: k.rows}, nil
}

func (k *review5Connector) Driver() driver.Driver { return fakeDriver{} }

// newReview5Fake is newRoutedFake with review5Conns whose queries return
// rows() when it is not nil.
func newReview5Fake(t *testing.T, n int, rows func() driver.Rows) (*Cluster, []*fakeServer) {
	t.Helper()
	cfg := &Config{Defaults: Settings{Health: HealthConfig{Disabled: true}}, Clusters: map[string]ClusterConfig{"fake": {Nodes: []string{"x"}}}}
	log := slog.New(slog.DiscardHandler)
	c := &Cluster{name: "fake", settings: cfg.effective("fake"), log: log, events: newDispatcher(log, nil)}
	var servers []*fakeServer
	for i := range n {
		s := &fakeServer{addr: string(rune('a'+i)) + ":3306", gtid: "0-1-1", serverID: strconv.Itoa(i + 1)}
		servers = append(servers, s)
		c.nodes = append(c.nodes, newNodeWithConnector(s.addr, &review5Connector{srv: s, calls: &ifaceCalls{}, rows: rows}, c.settings))
	}
	c.initHealth()
	t.Cleanup(func() {
		c.close()
		c.events.close()
	})
	return c, servers
}

func review5Execs(srv []*fakeServer) (n int64) {
	for _, s := range srv {
		n += s.execs.Load()
	}
	return n
}

// TestReview5DSNNeverShowsPassword: a go-sql-driver DSN handed to the
// dbrouter driver by mistake ("user:password@tcp(host)/db") is refused
// without showing any part of the password, whichever part of the DSN
// the password falls in.
func TestReview5DSNNeverShowsPassword(t *testing.T) {
	cfg := &Config{
		Defaults: Settings{User: "app", Health: HealthConfig{Disabled: true}},
		Clusters: map[string]ClusterConfig{"orders": {Nodes: []string{"127.0.0.1:1"}}},
		Logger:   slog.New(slog.DiscardHandler),
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := RegisterRouter("review5", r); err != nil {
		t.Fatal(err)
	}
	defer DeregisterRouter("review5")
	for _, dsn := range []string{
		"app:Hunter7zq@tcp(127.0.0.1:3306)/orders",
		"app:Hunter7zq@tcp(127.0.0.1:3306)/orders?parseTime=true",
		"app:Hunter7zq@/orders",
		"app:Hunter7zq@tcp(127.0.0.1:3306)",
		"app:Hun/ter7zq@tcp(127.0.0.1:3306)/orders",
		"app:Hun?ter7zq@tcp(127.0.0.1:3306)/orders",
		"app:Hun&ter7zq=1@tcp(127.0.0.1:3306)/orders",
		"review5/app:Hunter7zq@tcp(127.0.0.1:3306)/orders",
		"review5/app:Hunter7zq@orders",
	} {
		t.Run(dsn, func(t *testing.T) {
			_, err := sql.Open(DriverName, dsn)
			if err == nil {
				t.Fatalf("sql.Open accepted %q", dsn)
			}
			for _, part := range []string{"Hunter7zq", "Hun", "ter7zq"} {
				if strings.Contains(err.Error(), part) {
					t.Errorf("error shows %q of the password: %v", part, err)
				}
			}
			if _, err := (Driver{}).Open(dsn); err == nil || strings.Contains(err.Error(), "Hun") || strings.Contains(err.Error(), "ter7zq") {
				t.Errorf("Driver.Open: %v", err)
			}
		})
	}
	// A DSN without '@' still names the value it refuses.
	if _, err := sql.Open(DriverName, "review5/nope"); !errors.Is(err, ErrUnknownCluster) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown cluster: %v", err)
	}
}

// TestReview5DriverBadConnIsNotSent: the driver's own driver.ErrBadConn
// (go-sql-driver's "nothing was written") on a connection of OpenDB
// matches ErrNotSent wherever database/sql hands it to the caller instead
// of retrying it: on a *sql.Conn, in a transaction, at COMMIT.
func TestReview5DriverBadConnIsNotSent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		op   Op
		run  func(ctx context.Context, db *sql.DB, srv []*fakeServer) error
	}{
		{"held connection", OpExec, func(ctx context.Context, db *sql.DB, srv []*fakeServer) error {
			conn, err := db.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			srv[0].set(func(s *fakeServer) { s.execErr = driver.ErrBadConn })
			_, err = conn.ExecContext(ctx, "INSERT INTO t (id) VALUES (1)")
			return err
		}},
		{"statement in a transaction", OpTxExec, func(ctx context.Context, db *sql.DB, srv []*fakeServer) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			srv[0].set(func(s *fakeServer) { s.execErr = driver.ErrBadConn })
			_, err = tx.ExecContext(ctx, "INSERT INTO t (id) VALUES (1)")
			return err
		}},
		{"commit", OpCommit, func(ctx context.Context, db *sql.DB, srv []*fakeServer) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, "INSERT INTO t (id) VALUES (1)"); err != nil {
				return err
			}
			srv[0].set(func(s *fakeServer) { s.commitErr = driver.ErrBadConn })
			return tx.Commit()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, srv, _ := newRoutedFake(t, 2)
			db := routedDBOver(t, c)
			err := tc.run(t.Context(), db, srv)
			if !errors.Is(err, ErrNotSent) || errors.Is(err, ErrOutcomeUnknown) {
				t.Fatalf("%s: %v, want an error matching ErrNotSent", tc.name, err)
			}
			if !strings.Contains(err.Error(), string(tc.op)) {
				t.Errorf("error %q does not name %q", err, tc.op)
			}
			if n := srv[1].execs.Load(); n != 0 {
				t.Errorf("b ran %d statements, want 0", n)
			}
		})
	}
}

// TestReview5ReadOnlyRefusalAfterPartOfAStatement: a read-only refusal
// says nothing was applied only for a single statement. A string of
// several statements (multiStatements=true) or a CALL may have applied
// its first statements before the node turned read-only: retrying it on
// the new writer would apply them twice. It is returned as the server's
// error, as a bare *sql.DB returns it, and not retried.
func TestReview5ReadOnlyRefusalAfterPartOfAStatement(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, query string
		args        []any
	}{
		{"several statements", "INSERT INTO t (id) VALUES (1); INSERT INTO u (id) VALUES (1)", nil},
		{"call", "CALL add_order(1)", nil},
		{"prepared call", "call add_order(?)", []any{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, srv, _ := newRoutedFake(t, 2)
			db := routedDBOver(t, c)
			ctx := t.Context()
			// The first statement is applied, then the node turns
			// read-only and refuses the rest.
			srv[0].set(func(s *fakeServer) {
				s.execFn = func(_ context.Context, q string) error {
					srv[0].execs.Add(1)
					return errReadOnly
				}
			})
			_, err := db.ExecContext(ctx, tc.query, tc.args...)
			var me *mysql.MySQLError
			if !errors.As(err, &me) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, ErrNotSent) {
				t.Fatalf("%v, want the server's error, not a retry", err)
			}
			if a, b := srv[0].execs.Load(), srv[1].execs.Load(); a != 1 || b != 0 {
				t.Errorf("executions: a %d (want 1), b %d (want 0: not run again)", a, b)
			}
			if !c.Stats().Nodes[0].ReadOnly {
				t.Errorf("the refusal was not reported: a is not flagged read-only")
			}
			// The next statement goes to the new writer.
			srv[0].set(func(s *fakeServer) { s.execFn = nil })
			if _, err := db.ExecContext(ctx, "INSERT INTO t (id) VALUES (2)"); err != nil {
				t.Fatal(err)
			}
			if b := srv[1].execs.Load(); b != 1 {
				t.Errorf("b ran %d statements, want 1", b)
			}
		})
	}
}

// review5LostRows returns one row, then loses the connection.
type review5LostRows struct{ n int }

func (r *review5LostRows) Columns() []string { return []string{"id"} }
func (r *review5LostRows) Close() error      { return nil }
func (r *review5LostRows) Next(dest []driver.Value) error {
	r.n++
	if r.n == 1 {
		dest[0] = int64(1)
		return nil
	}
	return mysql.ErrInvalidConn
}

// TestReview5RowsLostMidIteration: rows of INSERT ... RETURNING (gorm's
// Create on MariaDB) whose connection is lost while they are read: the
// insert may or may not be committed, so Rows.Err is an
// *OutcomeUnknownError, the node's health hears of it, and the connection
// is not reused.
func TestReview5RowsLostMidIteration(t *testing.T) {
	t.Parallel()
	for _, inTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("in transaction %v", inTx), func(t *testing.T) {
			t.Parallel()
			c, _ := newReview5Fake(t, 2, func() driver.Rows { return &review5LostRows{} })
			db := routedDBOver(t, c)
			ctx := t.Context()
			q := db.QueryContext
			want := OpQuery
			if inTx {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback()
				q, want = tx.QueryContext, OpTxQuery
			}
			rows, err := q(ctx, "INSERT INTO t (id) VALUES (1), (2) RETURNING id")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
			}
			err = rows.Err()
			rows.Close()
			var ou *OutcomeUnknownError
			if !errors.As(err, &ou) || ou.Op != want || errors.Is(err, driver.ErrBadConn) || !errors.Is(err, mysql.ErrInvalidConn) {
				t.Fatalf("rows lost mid-iteration: %v, want an *OutcomeUnknownError (%s) wrapping the driver's error", err, want)
			}
			if st := c.Stats().Nodes[0].State; st == StateUp {
				t.Errorf("node a is %v: the lost connection was not reported", st)
			}
			if in, f := c.inflight.Load(), c.fence.inside.Load(); !inTx && (in != 0 || f != 0) {
				t.Errorf("after the rows: %d in flight, %d past the fence; want 0 and 0", in, f)
			}
		})
	}
}

// TestReview5FenceWaitCancelled: a write of OpenDB waiting at the failback
// fence whose context ends there sent nothing: the error matches ErrNotSent
// and the context's error, the connection stays usable, and the write
// goes through once the fence opens.
func TestReview5FenceWaitCancelled(t *testing.T) {
	t.Parallel()
	c, srv, _ := newRoutedFake(t, 2)
	db := routedDBOver(t, c)
	db.SetMaxOpenConns(1)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, "INSERT INTO t (id) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if !c.fence.hold(ctx) {
		t.Fatal("hold")
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := db.ExecContext(wctx, "INSERT INTO t (id) VALUES (2)")
	cancel()
	if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("write cancelled at the fence: %v, want ErrNotSent and DeadlineExceeded", err)
	}
	c.fence.unhold()
	if _, err := db.ExecContext(ctx, "INSERT INTO t (id) VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	if n := review5Execs(srv); n != 2 {
		t.Errorf("%d statements ran, want 2", n)
	}
	if a := srv[0].connects.Load(); a != 1 {
		t.Errorf("%d connections made, want 1: the cancelled write dropped its connection", a)
	}
	if in, f := c.inflight.Load(), c.fence.inside.Load(); in != 0 || f != 0 {
		t.Errorf("%d in flight, %d past the fence; want 0 and 0", in, f)
	}
}

// TestReview5StmtArgumentCheckedByConnection: as database/sql does for a
// statement without its own NamedValueChecker, a prepared statement of
// OpenDB lets the connection's checker convert an argument (a driver's own
// types), rather than refuse it with the default converter.
func TestReview5StmtArgumentCheckedByConnection(t *testing.T) {
	t.Parallel()
	c, _ := newReview5Fake(t, 1, nil)
	db := routedDBOver(t, c)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, insert, review5Point{1, 2}); err != nil {
		t.Errorf("exec with a type of the driver's: %v", err)
	}
	st, err := db.PrepareContext(ctx, insert)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ExecContext(ctx, review5Point{3, 4}); err != nil {
		t.Errorf("prepared exec with a type of the driver's: %v", err)
	}
}

// TestReview5DirectReadOnlyRefusalAfterPartOfAStatement is
// TestReview5ReadOnlyRefusalAfterPartOfAStatement for the router's own
// calls (Cluster.ExecContext, Cluster.QueryContext of a write), which
// moved such a refusal to the next node too.
func TestReview5DirectReadOnlyRefusalAfterPartOfAStatement(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, query string
		run         func(ctx context.Context, c *Cluster, query string) error
	}{
		{"exec of several statements", "INSERT INTO t (id) VALUES (1); INSERT INTO u (id) VALUES (1)", func(ctx context.Context, c *Cluster, q string) error {
			_, err := c.ExecContext(ctx, q)
			return err
		}},
		{"exec of a call", "CALL add_order(1)", func(ctx context.Context, c *Cluster, q string) error {
			_, err := c.ExecContext(ctx, q)
			return err
		}},
		{"query of several statements", "INSERT INTO t (id) VALUES (1); SELECT 1", func(ctx context.Context, c *Cluster, q string) error {
			rows, err := c.QueryContext(ctx, q)
			if err == nil {
				rows.Close()
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, srv := newFakeCluster(t, 2, Settings{})
			ctx := t.Context()
			srv[0].set(func(s *fakeServer) {
				s.execFn = func(_ context.Context, q string) error {
					srv[0].execs.Add(1) // the first statement was applied
					return errReadOnly
				}
			})
			err := tc.run(ctx, c, tc.query)
			var me *mysql.MySQLError
			if !errors.As(err, &me) || errors.Is(err, ErrNotSent) || errors.Is(err, ErrNoNode) {
				t.Fatalf("%v, want the server's error, not a retry", err)
			}
			if a, b := srv[0].execs.Load(), srv[1].execs.Load(); a != 1 || b != 0 {
				t.Errorf("executions: a %d (want 1), b %d (want 0: not run again)", a, b)
			}
			if !c.Stats().Nodes[0].ReadOnly {
				t.Errorf("the refusal was not reported: a is not flagged read-only")
			}
			// A single statement refused as read-only still moves on.
			if _, err := c.ExecContext(ctx, "INSERT INTO t (id) VALUES (2)"); err != nil {
				t.Fatal(err)
			}
			if b := srv[1].execs.Load(); b != 1 {
				t.Errorf("b ran %d statements, want 1", b)
			}
		})
	}
}

// TestReview5PreparedStmtAcrossFailover: a *sql.Stmt prepared before a
// switch of writer runs once, on the new writer: database/sql prepares it
// again there after the old connection refused it before sending.
func TestReview5PreparedStmtAcrossFailover(t *testing.T) {
	t.Parallel()
	c, srv, calls := newRoutedFake(t, 3)
	db := routedDBOver(t, c)
	ctx := t.Context()
	st, err := db.PrepareContext(ctx, insert)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ExecContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c.reportCall(0, true, ClassNotSent, errors.New("dial refused"))
	prepared := calls.prepare.Load()
	if _, err := st.ExecContext(ctx, 2); err != nil {
		t.Fatalf("prepared statement after the switch: %v", err)
	}
	if a, b := srv[0].execs.Load(), srv[1].execs.Load(); a != 1 || b != 1 {
		t.Errorf("executions: a %d (want 1), b %d (want 1)", a, b)
	}
	if n := calls.prepare.Load() - prepared; n != 1 {
		t.Errorf("prepared %d times after the switch, want 1 (on b)", n)
	}
}

// TestReview5RegistryRaces: RegisterRouter, DeregisterRouter, sql.Open and
// statements of *sql.DBs opened over a registered router, at once (run
// with -race); a *sql.DB keeps its router after DeregisterRouter, and a
// closed router's calls fail with ErrClosed and ErrNotSent.
func TestReview5RegistryRaces(t *testing.T) {
	cfg := &Config{
		Defaults: Settings{User: "app", Health: HealthConfig{Disabled: true}},
		Clusters: map[string]ClusterConfig{"orders": {Nodes: []string{"127.0.0.1:1"}}},
		Logger:   slog.New(slog.DiscardHandler),
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := RegisterRouter("review5race", r); err != nil {
		t.Fatal(err)
	}
	defer DeregisterRouter("review5race")
	held, err := sql.Open(DriverName, "review5race/orders")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			name := "review5race-" + strconv.Itoa(g)
			for range 50 {
				if err := RegisterRouter(name, r); err != nil {
					t.Error(err)
					return
				}
				if db, err := sql.Open(DriverName, name+"/orders"); err == nil {
					db.Close()
				}
				DeregisterRouter(name)
				sql.Open(DriverName, name+"/orders") // may fail: deregistered
			}
		}()
	}
	for range 4 {
		<-done
	}
	DeregisterRouter("review5race")
	// Nothing listens on 127.0.0.1:1: not sent, but the router is still
	// the *sql.DB's.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := held.PingContext(ctx); !errors.Is(err, ErrNotSent) || errors.Is(err, ErrClosed) {
		t.Errorf("ping after DeregisterRouter: %v, want ErrNotSent from the router", err)
	}
	r.Close()
	if err := held.PingContext(ctx); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotSent) {
		t.Errorf("ping after Router.Close: %v, want ErrClosed and ErrNotSent", err)
	}
}

// Errors go-sql-driver returns before writing anything, for the caller's
// own mistake: a statement larger than max_allowed_packet, a named
// parameter, an isolation level MySQL does not have.
var (
	errNamedParams = errors.New("mysql: driver does not support the use of Named Parameters")
	errIsolation   = fmt.Errorf("mysql: unsupported isolation level: %v", sql.LevelSnapshot)
)

// TestReview5DriverRefusalIsNotAHealthEvent: an error the driver returns
// before sending, because of the call itself (mysql.ErrPktTooLarge, a
// named parameter, an unsupported isolation level), is returned as it is:
// not an outcome-unknown failure (nothing was sent), not retried, and not
// a failure of the node (a healthy writer made Suspect by a caller's
// mistake), on the router's own calls and on OpenDB.
func TestReview5DriverRefusalIsNotAHealthEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		err   error
		begin bool
	}{
		{"packet too large", mysql.ErrPktTooLarge, false},
		{"named parameter", errNamedParams, false},
		{"isolation level", errIsolation, true},
	} {
		check := func(t *testing.T, c *Cluster, srv []*fakeServer, err error) {
			t.Helper()
			if !errors.Is(err, tc.err) || errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, driver.ErrBadConn) {
				t.Errorf("%v, want the driver's error as it is", err)
			}
			for i, n := range c.Stats().Nodes {
				if n.State != StateUp {
					t.Errorf("node %d is %v after the caller's mistake, want Up", i, n.State)
				}
			}
			if w := c.WriterAddr(); w != srv[0].addr {
				t.Errorf("writer %s, want %s", w, srv[0].addr)
			}
		}
		t.Run(tc.name+" direct", func(t *testing.T) {
			t.Parallel()
			c, srv, _ := newRoutedFake(t, 2)
			srv[0].set(func(s *fakeServer) { s.execErr = tc.err })
			var err error
			if tc.begin {
				var tx *Tx
				if tx, err = c.BeginTx(t.Context(), &sql.TxOptions{Isolation: sql.LevelSnapshot}); err == nil {
					tx.Rollback()
				}
			} else {
				_, err = c.ExecContext(t.Context(), "INSERT INTO t (id) VALUES (1)")
			}
			check(t, c, srv, err)
		})
		t.Run(tc.name+" OpenDB", func(t *testing.T) {
			t.Parallel()
			c, srv, _ := newRoutedFake(t, 2)
			db := routedDBOver(t, c)
			srv[0].set(func(s *fakeServer) { s.execErr = tc.err })
			var err error
			if tc.begin {
				var tx *sql.Tx
				if tx, err = db.BeginTx(t.Context(), &sql.TxOptions{Isolation: sql.LevelSnapshot}); err == nil {
					tx.Rollback()
				}
			} else {
				_, err = db.ExecContext(t.Context(), "INSERT INTO t (id) VALUES (1)")
			}
			check(t, c, srv, err)
			if n := srv[0].connects.Load() + srv[1].connects.Load(); n != 1 {
				t.Errorf("%d connections made, want 1: not retried, the connection kept", n)
			}
		})
	}
}

// TestReview5IdempotentRetried: the contract's "idempotent-marked
// statements may be retried" holds for OpenDB: a statement run with
// WithIdempotent whose connection is lost after sending is run again by
// database/sql on a new connection, to the new writer; unmarked, or in a
// transaction, it is not.
func TestReview5IdempotentRetried(t *testing.T) {
	t.Parallel()
	c, srv, _ := newRoutedFake(t, 3)
	db := routedDBOver(t, c)
	ctx := WithIdempotent(t.Context())
	srv[0].set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
	if _, err := db.ExecContext(ctx, "DELETE FROM t WHERE id = 1"); err != nil {
		t.Fatalf("idempotent statement after a lost connection: %v", err)
	}
	if a, b := srv[0].execs.Load(), srv[1].execs.Load(); a != 1 || b != 1 {
		t.Errorf("executions: a %d (want 1, lost), b %d (want 1)", a, b)
	}
	// Every node loses it: the retries end with the typed error.
	for _, s := range srv {
		s.set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
	}
	_, err := db.ExecContext(ctx, "DELETE FROM t WHERE id = 1")
	var ou *OutcomeUnknownError
	if !errors.As(err, &ou) || !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrNotSent) {
		t.Fatalf("idempotent statement lost everywhere: %v, want an *OutcomeUnknownError", err)
	}
	// In a transaction: not retried.
	for _, s := range srv {
		s.set(func(s *fakeServer) { s.execErr = nil })
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	before := review5Execs(srv)
	for _, s := range srv {
		s.set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM t WHERE id = 1"); !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, driver.ErrBadConn) {
		t.Errorf("idempotent statement in a transaction: %v, want ErrOutcomeUnknown, not ErrBadConn", err)
	}
	if n := review5Execs(srv) - before; n != 1 {
		t.Errorf("the statement in the transaction ran %d times, want 1", n)
	}
}

// TestReview5RefusedWhole: which read-only refusals may run again on the
// new writer. sqlc's queries start with a "-- name:" comment: still one
// statement, still retried.
func TestReview5RefusedWhole(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		query string
		whole bool
	}{
		{"", true},
		{"INSERT INTO t (id) VALUES (?)", true},
		{"  (SELECT 1)", true},
		{"INSERT INTO t (id) VALUES (1);", true},
		{"-- name: InsertRow :exec\nINSERT INTO t (id) VALUES (?)", true},
		{"# note\n/* hint */ UPDATE t SET x = 1", true},
		{"INSERT INTO t (id) VALUES (1); INSERT INTO u (id) VALUES (1)", false},
		{"-- name: A; B\nINSERT INTO t (id) VALUES (1); DELETE FROM u", false},
		{"CALL p(1)", false},
		{" call p(1)", false},
		{"BEGIN NOT ATOMIC INSERT INTO t VALUES (1); INSERT INTO u VALUES (1); END", false},
		{"EXECUTE s", false},
		{"/*! INSERT INTO t VALUES (1) */", false},
		{"/*M!100000 CALL p() */", false},
		{"-- only a comment", false},
		{"/* unterminated", false},
		{"--x\nINSERT INTO t VALUES (1)", false}, // "--x" is not a comment in MariaDB
	} {
		if got := refusedWhole(tc.query); got != tc.whole {
			t.Errorf("refusedWhole(%q) = %v, want %v", tc.query, got, tc.whole)
		}
	}
}

// TestReview5SqlcQueryRetriedAfterReadOnly: an sqlc-shaped write (a
// "-- name:" comment first) refused as read-only runs again on the new
// writer through OpenDB, as any single statement does.
func TestReview5SqlcQueryRetriedAfterReadOnly(t *testing.T) {
	t.Parallel()
	c, srv, _ := newRoutedFake(t, 2)
	db := routedDBOver(t, c)
	srv[0].set(func(s *fakeServer) { s.execErr = errReadOnly })
	if _, err := db.ExecContext(t.Context(), "-- name: InsertRow :exec\nINSERT INTO t (id) VALUES (?)", 1); err != nil {
		t.Fatalf("sqlc write after a read-only refusal: %v", err)
	}
	if b := srv[1].execs.Load(); b != 1 {
		t.Errorf("b ran %d statements, want 1", b)
	}
}

// TestReview5ConnectRacingReload: a new connection whose cluster lookup
// raced a Reload (it got the cluster being retired) goes to the new
// cluster instead of failing with ErrClosed.
func TestReview5ConnectRacingReload(t *testing.T) {
	t.Parallel()
	old, oldSrv, _ := newRoutedFake(t, 1)
	cur, curSrv, _ := newRoutedFake(t, 1)
	old.retire()
	var lookups atomic.Int64
	db := sql.OpenDB(&clusterConnector{resolve: func() (*Cluster, error) {
		if lookups.Add(1) == 1 {
			return old, nil // looked up just before Reload swapped the table
		}
		return cur, nil
	}})
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(t.Context(), insert, 1); err != nil {
		t.Fatalf("write whose connect raced a Reload: %v", err)
	}
	if o, n := oldSrv[0].execs.Load(), curSrv[0].execs.Load(); o != 0 || n != 1 {
		t.Errorf("executions: retired %d (want 0), new %d (want 1)", o, n)
	}
}
