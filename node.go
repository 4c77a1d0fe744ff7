package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// node is one server of a cluster with its own connection pool, created
// on first use so that configured but unused nodes cost no goroutine.
type node struct {
	addr   string
	dbOnce sync.Once
	pool   *sql.DB
	newDB  func() *sql.DB

	// state mirrors the node's NodeState for a lock-free check on the
	// call path; Cluster.mu guards the authoritative copy.
	state atomic.Int32

	// conns tracks the node's open network connections so that they can
	// all be closed, idle and in use, when the node goes Down.
	connsMu sync.Mutex
	conns   map[*trackedConn]struct{}
	maxIdle int
}

// dial opens a TCP connection for the driver and tracks it.
func (n *node) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: conn, node: n}
	n.connsMu.Lock()
	if n.conns == nil {
		n.conns = make(map[*trackedConn]struct{})
	}
	n.conns[tc] = struct{}{}
	n.connsMu.Unlock()
	return tc, nil
}

// closeConns closes every open connection to the node: calls in flight on
// it fail at once (a write with an outcome-unknown error, a read moves to
// the next node) instead of waiting for their deadline, and no idle pooled
// connection is handed out again.
func (n *node) closeConns() {
	n.connsMu.Lock()
	conns := make([]*trackedConn, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	n.connsMu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	// Drop the idle pool's entries for the closed connections now.
	n.db().SetMaxIdleConns(0)
	n.db().SetMaxIdleConns(n.maxIdle)
}

// trackedConn is a net.Conn that leaves its node's set when closed.
type trackedConn struct {
	net.Conn
	node *node
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.node.connsMu.Lock()
		delete(c.node.conns, c)
		c.node.connsMu.Unlock()
	})
	return c.Conn.Close()
}

// SyscallConn exposes the socket so that go-sql-driver can check a pooled
// connection's liveness before using it (it skips the check otherwise, and
// a write on a dead connection would then look outcome-unknown).
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("dbrouter: connection has no file descriptor")
	}
	return sc.SyscallConn()
}

// newNode builds the node's pool from the cluster's driver configuration.
// It does no network I/O.
func newNode(addr string, base *mysql.Config, cc Settings, log *slog.Logger) (*node, error) {
	n := &node{addr: addr}
	mc := base.Clone()
	mc.Addr = addr
	mc.DialFunc = n.dial
	mc.Logger = driverLogger{log: log.With("node", addr)}
	if mc.TLS != nil && mc.TLS.ServerName == "" && !mc.TLS.InsecureSkipVerify {
		mc.TLS = mc.TLS.Clone()
		mc.TLS.ServerName = hostOf(addr)
	}
	inner, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("dbrouter: node %s: %w", addr, err)
	}
	n.setPool(inner, cc)
	return n, nil
}

// newNodeWithConnector builds a node on any driver.Connector; tests use it
// with a fake driver.
func newNodeWithConnector(addr string, inner driver.Connector, cc Settings) *node {
	n := &node{addr: addr}
	n.setPool(inner, cc)
	return n
}

func (n *node) setPool(inner driver.Connector, cc Settings) {
	n.maxIdle = cc.MaxIdleConns
	n.newDB = func() *sql.DB {
		db := sql.OpenDB(&boundedConnector{inner: inner, timeout: cc.ConnectTimeout})
		db.SetMaxOpenConns(cc.MaxOpenConns)
		db.SetMaxIdleConns(cc.MaxIdleConns)
		db.SetConnMaxLifetime(cc.ConnMaxLifetime)
		db.SetConnMaxIdleTime(cc.ConnMaxIdleTime)
		return db
	}
}

// db returns the node's connection pool, opening it (without connecting)
// on first use.
func (n *node) db() *sql.DB {
	n.dbOnce.Do(func() { n.pool = n.newDB() })
	return n.pool
}

// boundedConnector bounds the whole connection setup (dial, TLS, MySQL
// handshake) by a timeout, and marks every failure as a connect error: the
// caller's statement was not sent. database/sql also opens connections from
// its own goroutine with no deadline at all, so the bound must live here.
type boundedConnector struct {
	inner   driver.Connector
	timeout time.Duration
}

func (c *boundedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := c.inner.Connect(cctx)
	if err != nil {
		if ctx.Err() == nil && cctx.Err() != nil {
			err = fmt.Errorf("connection setup (dial and handshake) took longer than connect_timeout %v: %w", c.timeout, err)
		}
		return nil, &connectError{err: err}
	}
	return conn, nil
}

func (c *boundedConnector) Driver() driver.Driver { return c.inner.Driver() }

// connectError marks a failure to establish a connection.
type connectError struct{ err error }

func (e *connectError) Error() string { return "connect: " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// driverLogger sends go-sql-driver's log lines to slog at debug level.
type driverLogger struct{ log *slog.Logger }

func (l driverLogger) Print(v ...any) {
	l.log.Debug("mysql driver: " + fmt.Sprint(v...))
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
