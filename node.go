package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// node is one server of a cluster with its own connection pool.
type node struct {
	addr string
	db   *sql.DB

	// down is set when a call failed to reach the node; such a node is
	// tried only after every healthy one. readOnly is set when the node
	// refused a write as read-only; it may still serve reads.
	down     atomic.Bool
	readOnly atomic.Bool
}

// newNode builds the node's pool from the cluster's driver configuration.
// It does no network I/O.
func newNode(addr string, base *mysql.Config, cc ConnConfig, log *slog.Logger) (*node, error) {
	mc := base.Clone()
	mc.Addr = addr
	mc.Logger = driverLogger{log: log.With("node", addr)}
	if mc.TLS != nil && mc.TLS.ServerName == "" && !mc.TLS.InsecureSkipVerify {
		mc.TLS = mc.TLS.Clone()
		mc.TLS.ServerName = hostOf(addr)
	}
	inner, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("dbrouter: node %s: %w", addr, err)
	}
	return newNodeWithConnector(addr, inner, cc), nil
}

// newNodeWithConnector builds a node on any driver.Connector; tests use it
// with a fake driver.
func newNodeWithConnector(addr string, inner driver.Connector, cc ConnConfig) *node {
	db := sql.OpenDB(&boundedConnector{inner: inner, timeout: cc.ConnectTimeout})
	db.SetMaxOpenConns(cc.MaxOpenConns)
	db.SetMaxIdleConns(cc.MaxIdleConns)
	db.SetConnMaxLifetime(cc.ConnMaxLifetime)
	db.SetConnMaxIdleTime(cc.ConnMaxIdleTime)
	return &node{addr: addr, db: db}
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
