package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// endedConnector hands out connections whose first query fails with the
// error queued for them (nil: the query answers one row).
type endedConnector struct {
	errs     []error // the error of each new connection's queries, in order
	connects int
}

func (c *endedConnector) Connect(context.Context) (driver.Conn, error) {
	var err error
	if c.connects < len(c.errs) {
		err = c.errs[c.connects]
	}
	c.connects++
	return &endedConn{err: err}, nil
}

func (c *endedConnector) Driver() driver.Driver { return nil }

type endedConn struct{ err error }

func (c *endedConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("no prepare") }
func (c *endedConn) Close() error                        { return nil }
func (c *endedConn) Begin() (driver.Tx, error)           { return nil, errors.New("no begin") }
func (c *endedConn) QueryContext(context.Context, string, []driver.NamedValue) (driver.Rows, error) {
	if c.err != nil {
		return nil, c.err
	}
	return &oneRow{}, nil
}

type oneRow struct{ done bool }

func (r *oneRow) Columns() []string { return []string{"x"} }
func (r *oneRow) Close() error      { return nil }
func (r *oneRow) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	dest[0] = []byte("1")
	return nil
}

// A reused probe connection that the server ended with an error packet —
// MySQL 8's ER_CLIENT_INTERACTION_TIMEOUT (4031) after wait_timeout,
// MariaDB's ER_CONNECTION_KILLED (1927) after a KILL — says nothing of the
// node: the probe connects again and asks once more, as it does when the
// server just hangs up (mysql.ErrInvalidConn). Before, the error was the
// node's answer: a probe failure on a healthy node.
func TestProbeReconnectsAfterServerEndedConnection(t *testing.T) {
	for _, num := range []uint16{4031, 1927} {
		ended := &mysql.MySQLError{Number: num, Message: "connection ended"}
		// A reused connection the server has ended; the next connection
		// answers.
		c := &endedConnector{}
		p := &probeConn{connector: c, conn: &endedConn{err: ended}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := p.query(ctx, "SELECT 1"); err != nil {
			t.Errorf("%d: probe on a connection the server ended: %v, want a reconnect and an answer", num, err)
		}
		if c.connects != 1 {
			t.Errorf("%d: %d connects, want 1", num, c.connects)
		}
		// A connection made for this query that fails the same way is the
		// node's answer: no loop.
		p.drop()
		c3 := &endedConnector{errs: []error{ended, ended, ended}}
		p.connector = c3
		if _, err := p.query(ctx, "SELECT 1"); !errors.Is(err, ended) {
			t.Errorf("%d: fresh connection ended: %v, want the error", num, err)
		}
		if c3.connects != 1 {
			t.Errorf("%d: %d connects for a fresh connection's failure, want 1", num, c3.connects)
		}
		cancel()
	}
}
