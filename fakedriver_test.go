package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeServer is one fake node: a driver.Connector whose connections fail
// exactly as programmed. It stands in for go-sql-driver at the narrowest
// seam, as database/sql's own fakedb_test.go does.
type fakeServer struct {
	addr string

	mu         sync.Mutex
	connectErr error                       // returned by Connect when set
	connectFn  func(context.Context) error // runs in Connect when set (e.g. to block)
	execErr    error                       // returned by Exec/Query/Commit when set
	execFn     func(ctx context.Context, query string) error
	commitErr  error

	connects atomic.Int64 // successful connects
	execs    atomic.Int64 // statements that reached the "server"
	commits  atomic.Int64
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
	srv *fakeServer
	bad bool
}

func (c *fakeConn) stmt(ctx context.Context, query string) error {
	c.srv.mu.Lock()
	err, fn := c.srv.execErr, c.srv.execFn
	c.srv.mu.Unlock()
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
	c.srv.execs.Add(1)
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
	return &fakeRows{node: c.srv.addr}, nil
}

func (c *fakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("fake: no prepare") }
func (c *fakeConn) Close() error                        { return nil }
func (c *fakeConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}
func (c *fakeConn) BeginTx(context.Context, driver.TxOptions) (driver.Tx, error) {
	return &fakeTx{c: c}, nil
}

// IsValid tells database/sql not to pool a connection that failed.
func (c *fakeConn) IsValid() bool { return !c.bad }

type fakeTx struct{ c *fakeConn }

func (t *fakeTx) Commit() error {
	t.c.srv.mu.Lock()
	err := t.c.srv.commitErr
	t.c.srv.mu.Unlock()
	if err != nil {
		t.c.bad = true
		return err
	}
	t.c.srv.commits.Add(1)
	return nil
}

func (t *fakeTx) Rollback() error { return nil }

// fakeRows returns one row with one column: the node's address.
type fakeRows struct {
	node string
	done bool
}

func (r *fakeRows) Columns() []string { return []string{"node"} }
func (r *fakeRows) Close() error      { return nil }
func (r *fakeRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	dest[0] = r.node
	return nil
}

// newFakeCluster returns a cluster over n fake servers named a:1, b:1, ...
func newFakeCluster(t *testing.T, n int, cc ConnConfig) (*Cluster, []*fakeServer) {
	t.Helper()
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = DefaultConnectTimeout
	}
	cc.MaxIdleConns = DefaultMaxIdleConns
	c := &Cluster{name: "fake", log: slog.New(slog.DiscardHandler)}
	var servers []*fakeServer
	for i := range n {
		s := &fakeServer{addr: string(rune('a'+i)) + ":3306"}
		servers = append(servers, s)
		c.nodes = append(c.nodes, newNodeWithConnector(s.addr, s, cc))
	}
	t.Cleanup(func() { c.close() })
	return c, servers
}
