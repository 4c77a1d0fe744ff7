package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// fakeServer is one fake node: a driver.Connector whose connections fail
// exactly as programmed. It stands in for go-sql-driver at the narrowest
// seam, as database/sql's own fakedb_test.go does.
type fakeServer struct {
	addr string

	mu          sync.Mutex
	connectErr  error                       // returned by Connect when set
	connectFn   func(context.Context) error // runs in Connect when set (e.g. to block)
	execErr     error                       // returned by Exec/Query/Commit when set
	execFn      func(ctx context.Context, query string) error
	commitErr   error
	commitFn    func() error                // runs in Commit when set (e.g. to block)
	beginFn     func() error                // runs in BeginTx when set (e.g. to block)
	beginCtxFn  func(context.Context) error // runs in BeginTx with its context when set
	nextFn      func() error                // runs in each Next of a query's rows when set (e.g. to block)
	rowsCloseFn func() error                // runs in Close of a query's rows when set (its error is Close's)
	readOnly    bool                        // @@read_only as probes see it
	gtid        string                      // @@gtid_current_pos as probes see it
	serverID    string                      // @@server_id as probes see it
	lagging     bool                        // MASTER_GTID_WAIT times out
	// writes reports whether a query writes: in a read-only session such
	// a query is refused with error 1792, as a real server does.
	writes func(query string) bool

	connects atomic.Int64 // successful connects
	execs    atomic.Int64 // statements that reached the "server", probes apart
	probes   atomic.Int64 // probe queries that reached it
	roExecs  atomic.Int64 // of which in read-only sessions
	commits  atomic.Int64
	closes   atomic.Int64 // connections closed (a stall check's handshake closes its own at once)
}

func (s *fakeServer) set(f func(s *fakeServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *fakeServer) Connect(ctx context.Context) (driver.Conn, error) {
	s.mu.Lock()
	err, fn := s.connectErr, s.connectFn
	s.mu.Unlock()
	if fn != nil {
		if err := fn(ctx); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	s.connects.Add(1)
	return &fakeConn{srv: s}, nil
}

func (s *fakeServer) Driver() driver.Driver { return fakeDriver{} }

type fakeDriver struct{}

func (fakeDriver) Open(string) (driver.Conn, error) { return nil, errors.New("fake: use a connector") }

type fakeConn struct {
	srv      *fakeServer
	bad      bool
	readOnly bool // SET SESSION TRANSACTION READ ONLY ran
}

func (c *fakeConn) stmt(ctx context.Context, query string) error {
	c.srv.mu.Lock()
	err, fn, down, writes := c.srv.execErr, c.srv.execFn, c.srv.connectErr != nil, c.srv.writes
	c.srv.mu.Unlock()
	if query == setSessionReadOnly && !down {
		c.readOnly = true
		return nil
	}
	if c.readOnly && writes != nil && writes(query) && !down {
		return &mysql.MySQLError{Number: 1792, Message: "Cannot execute statement in a READ ONLY transaction"}
	}
	if down { // a server that refuses connections has dropped the old ones too
		c.bad = true
		return driver.ErrBadConn
	}
	if fn != nil {
		if err := fn(ctx, query); err != nil {
			c.bad = true
			return err
		}
	}
	if err != nil {
		if !errors.Is(err, driver.ErrBadConn) {
			c.srv.execs.Add(1) // it reached the server
		}
		c.bad = true
		return err
	}
	if query == probeMariaDB || query == probeMySQL || query == probeVersion {
		// Probes are counted apart: tests count the calls a node took,
		// and a probe's timing is the scheduler's.
		c.srv.probes.Add(1)
		return nil
	}
	c.srv.execs.Add(1)
	if c.readOnly {
		c.srv.roExecs.Add(1)
	}
	return nil
}

func (c *fakeConn) ExecContext(ctx context.Context, query string, _ []driver.NamedValue) (driver.Result, error) {
	if err := c.stmt(ctx, query); err != nil {
		return nil, err
	}
	return driver.RowsAffected(1), nil
}

func (c *fakeConn) QueryContext(ctx context.Context, query string, _ []driver.NamedValue) (driver.Rows, error) {
	if err := c.stmt(ctx, query); err != nil {
		return nil, err
	}
	switch query {
	case probeVersion:
		return &fakeRows{cols: []string{"version", "comment"}, vals: []driver.Value{"10.11.19-MariaDB-0+deb12u1", "Debian 12"}}, nil
	case "SELECT @@global.gtid_current_pos":
		c.srv.mu.Lock()
		gtid := c.srv.gtid
		c.srv.mu.Unlock()
		return &fakeRows{cols: []string{"gtid"}, vals: []driver.Value{gtid}}, nil
	case "SELECT MASTER_GTID_WAIT(?, ?)":
		c.srv.mu.Lock()
		res := int64(0)
		if c.srv.lagging {
			res = -1 // MASTER_GTID_WAIT's timeout
		}
		c.srv.mu.Unlock()
		return &fakeRows{cols: []string{"r"}, vals: []driver.Value{res}}, nil
	case readOnlyQuery:
		c.srv.mu.Lock()
		ro := c.srv.readOnly
		c.srv.mu.Unlock()
		return &fakeRows{cols: []string{"ro"}, vals: []driver.Value{ro}}, nil
	case probeMariaDB:
		c.srv.mu.Lock()
		ro, gtid, id := c.srv.readOnly, c.srv.gtid, c.srv.serverID
		c.srv.mu.Unlock()
		return &fakeRows{cols: []string{"ro", "gtid", "id"}, vals: []driver.Value{ro, gtid, id}}, nil
	}
	return &fakeRows{cols: []string{"node"}, vals: []driver.Value{c.srv.addr}, srv: c.srv}, nil
}

func (c *fakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("fake: no prepare") }
func (c *fakeConn) Close() error                        { c.srv.closes.Add(1); return nil }
func (c *fakeConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}
func (c *fakeConn) BeginTx(ctx context.Context, _ driver.TxOptions) (driver.Tx, error) {
	c.srv.mu.Lock()
	fn, ctxFn := c.srv.beginFn, c.srv.beginCtxFn
	c.srv.mu.Unlock()
	if ctxFn != nil {
		if err := ctxFn(ctx); err != nil {
			c.bad = true
			return nil, err
		}
	}
	if fn != nil {
		if err := fn(); err != nil {
			c.bad = true
			return nil, err
		}
	}
	return &fakeTx{c: c}, nil
}

// IsValid tells database/sql not to pool a connection that failed.
func (c *fakeConn) IsValid() bool { return !c.bad }

type fakeTx struct{ c *fakeConn }

func (t *fakeTx) Commit() error {
	t.c.srv.mu.Lock()
	err, fn := t.c.srv.commitErr, t.c.srv.commitFn
	t.c.srv.mu.Unlock()
	if fn != nil && err == nil {
		err = fn()
	}
	if err != nil {
		t.c.bad = true
		return err
	}
	t.c.srv.commits.Add(1)
	return nil
}

// Rollback fails, as go-sql-driver's does, on a connection that was lost.
func (t *fakeTx) Rollback() error {
	if t.c.bad {
		return mysql.ErrInvalidConn
	}
	return nil
}

// fakeRows returns one row; those of a statement the fake does not know
// (srv set) run the server's nextFn first.
type fakeRows struct {
	cols []string
	vals []driver.Value
	done bool
	srv  *fakeServer
}

func (r *fakeRows) Columns() []string { return r.cols }
func (r *fakeRows) Close() error {
	if r.srv != nil {
		r.srv.mu.Lock()
		fn := r.srv.rowsCloseFn
		r.srv.mu.Unlock()
		if fn != nil {
			return fn()
		}
	}
	return nil
}

func (r *fakeRows) Next(dest []driver.Value) error {
	if r.srv != nil {
		r.srv.mu.Lock()
		fn := r.srv.nextFn
		r.srv.mu.Unlock()
		if fn != nil {
			if err := fn(); err != nil {
				return err
			}
		}
	}
	if r.done {
		return io.EOF
	}
	r.done = true
	copy(dest, r.vals)
	return nil
}

// newFakeCluster returns a cluster over n fake servers named a:3306,
// b:3306, ... with health probes disabled: calls alone judge the nodes.
func newFakeCluster(t testing.TB, n int, cc Settings) (*Cluster, []*fakeServer) {
	t.Helper()
	cc.Health.Disabled = true
	return newFakeClusterWithProbes(t, n, cc, nil)
}

// newFakeClusterWithProbes is newFakeCluster with the health settings of cc
// (probes on unless cc.Health.Disabled) and events sent to onEvent.
func newFakeClusterWithProbes(t testing.TB, n int, cc Settings, onEvent func(Event)) (*Cluster, []*fakeServer) {
	t.Helper()
	return newFakeClusterWithSource(t, n, cc, onEvent, nil)
}

// newFakeClusterWithSource is newFakeClusterWithProbes with a WriterSource.
func newFakeClusterWithSource(t testing.TB, n int, cc Settings, onEvent func(Event), src WriterSource) (*Cluster, []*fakeServer) {
	t.Helper()
	cfg := &Config{Defaults: cc, Clusters: map[string]ClusterConfig{"fake": {Nodes: []string{"x"}}}}
	log := slog.New(slog.DiscardHandler)
	c := &Cluster{name: "fake", settings: cfg.effective("fake"), log: log, events: newDispatcher(log, onEvent), source: src}
	var servers []*fakeServer
	for i := range n {
		s := &fakeServer{addr: string(rune('a'+i)) + ":3306", gtid: "0-1-1", serverID: strconv.Itoa(i + 1)}
		servers = append(servers, s)
		c.nodes = append(c.nodes, newNodeWithConnector(s.addr, s, c.settings))
	}
	c.initHealth()
	t.Cleanup(func() {
		c.close()
		c.events.close()
	})
	return c, servers
}
