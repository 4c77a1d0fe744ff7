package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// probeConn is a node's health-probe connection: one driver connection of
// its own, outside every pool, so that an application holding all of a
// pool's connections (max_open_conns) cannot make a healthy node look dead,
// and so that probing costs no pool and no goroutine.
//
// A probe is one round trip, several thousand a second in a router with
// thousands of nodes in use, so it avoids what database/sql and the driver
// add to a query (docs/health.md, "What a probe costs"): when the
// connection's socket is known (node.dial saw it: go-sql-driver), the probe
// bounds the query by a deadline on the socket instead of by its context,
// which go-sql-driver would hand to a watcher goroutine and back for every
// query; and it sends the query without first checking the idle
// connection's liveness (a system call): a reused connection that fails
// for any reason but the deadline is replaced and the query sent once
// more, which a read-only probe may.
type probeConn struct {
	connector driver.Connector // a boundedConnector: connect_timeout, connectError

	mu   sync.Mutex
	conn driver.Conn
	// raw, when set instead of conn, is a connection the router took over
	// from the driver (probe_raw.go).
	raw *rawSession
	// sock is conn's socket when node.dial saw it (see probeDial): the
	// probe sets its deadline, and close sets it to now so that a probe
	// waiting on a silent node ends at once.
	sock atomic.Pointer[net.Conn]
	// closing is set by close: a probe that sets its deadline after close
	// looked at sock ends at once all the same.
	closing atomic.Bool
	// ownDeadlines is set when the driver sets no deadline of its own on
	// the socket (no read_timeout, no write_timeout): only then does a
	// deadline the probe sets hold for the whole query.
	ownDeadlines atomic.Bool
	// takeOver is set when the router may take the probe connection over
	// from the driver (rawProbeable).
	takeOver atomic.Bool
}

// probeDial is the context key under which a probe's connect asks
// node.dial to hand it the socket it opens.
type probeDial struct{}

// probeSocket holds the socket node.dial opened for a probe's connect.
type probeSocket struct {
	conn net.Conn         // the trackedConn
	seen *probeSocketConn // what the driver was given
}

// dialedSocket returns the socket node.dial handed to a probe's connect
// through ctx, if any.
func dialedSocket(ctx context.Context) *probeSocket {
	ps, _ := ctx.Value(probeDial{}).(*probeSocket)
	return ps
}

// query runs a one-row query on the probe connection, connecting first if
// needed, and returns the row's columns as text. A connection found broken
// before anything was sent (driver.ErrBadConn: the router closed it when
// the node went Down) is replaced once; any other failure drops the
// connection, and the next probe connects again.
func (p *probeConn) query(ctx context.Context, query string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for try := 0; ; try++ {
		reused := p.conn != nil || p.raw != nil
		row, err := p.queryOnce(ctx, query)
		if err == nil {
			return row, nil
		}
		p.drop()
		// A reused connection may have been closed meanwhile (by the
		// server: KILL, wait_timeout; by the router: the node went
		// Down): go-sql-driver then says driver.ErrBadConn (nothing
		// sent) or mysql.ErrInvalidConn (the server hung up), or the
		// server says so first (connectionEnded): connect and ask once
		// more. A connection made for this query, a deadline reached or
		// any other error is the node's answer.
		if try > 0 || !reused || ctx.Err() != nil || pastDeadline(ctx) || p.closing.Load() ||
			!errors.Is(err, driver.ErrBadConn) && !errors.Is(err, mysql.ErrInvalidConn) && !connectionEnded(err) {
			return nil, err
		}
	}
}

// connectionEnded reports whether err is a server's word that it ended
// this connection, not an answer about the server: MySQL 8 sends
// ER_CLIENT_INTERACTION_TIMEOUT (4031) before closing a connection idle
// past wait_timeout, MariaDB ER_CONNECTION_KILLED (1927) to a connection
// KILLed while it ran a statement.
func connectionEnded(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == errClientInteractionTimeout || me.Number == errConnectionKilled)
}

func (p *probeConn) queryOnce(ctx context.Context, query string) ([]string, error) {
	if p.conn == nil && p.raw == nil {
		ps := &probeSocket{}
		conn, err := p.connector.Connect(context.WithValue(ctx, probeDial{}, ps))
		if err != nil {
			return nil, err
		}
		p.conn = conn
		if ps.conn != nil {
			p.sock.Store(&ps.conn)
			if ps.seen != nil && p.takeOver.Load() {
				// The driver lets go: its goodbye and close go nowhere
				// and its watcher goroutine ends; the session is ours.
				ps.seen.detached.Store(true)
				conn.Close()
				p.conn = nil
				p.raw = &rawSession{sock: ps.conn}
			}
		}
	}
	if p.raw != nil {
		sock := p.sock.Load()
		dl, _ := ctx.Deadline()
		if err := (*sock).SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("%w: %w", mysql.ErrInvalidConn, err)
		}
		if ctx.Err() != nil || p.closing.Load() {
			(*sock).SetDeadline(time.Now())
		}
		return p.raw.query(query)
	}
	q, ok := p.conn.(driver.QueryerContext)
	if !ok {
		return nil, errors.New("dbrouter: probe: the driver cannot run a query without preparing it")
	}
	qctx := ctx
	if sock := p.sock.Load(); sock != nil && p.ownDeadlines.Load() {
		if dl, ok := ctx.Deadline(); ok && (*sock).SetDeadline(dl) == nil {
			// The socket's deadline bounds the query as ctx would have,
			// without the driver's watcher goroutine. Close (or the
			// router's end) after that deadline was set ends the wait
			// at once: see close.
			qctx = context.Background()
			if ctx.Err() != nil || p.closing.Load() {
				(*sock).SetDeadline(time.Now())
			}
		}
	}
	rows, err := q.QueryContext(qctx, query, nil)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	vals := make([]driver.Value, len(rows.Columns()))
	if err := rows.Next(vals); err != nil {
		return nil, fmt.Errorf("probe %q returned no row: %w", query, err)
	}
	// Copy out before Close: the driver may reuse its buffers.
	row := make([]string, len(vals))
	for i, v := range vals {
		switch v := v.(type) {
		case nil:
		case []byte:
			row[i] = string(v)
		default:
			row[i] = fmt.Sprint(v)
		}
	}
	return row, nil
}

// pastDeadline reports whether ctx's deadline has passed, which a socket
// deadline set to it may report a moment before ctx's timer ends ctx.
func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// drop closes the connection; p.mu must be held.
func (p *probeConn) drop() {
	if p.raw != nil {
		p.sock.Store(nil)
		p.raw.quit()
		p.raw = nil
	}
	if p.conn != nil {
		if sock := p.sock.Swap(nil); sock != nil {
			// The driver's goodbye (COM_QUIT) must not wait for a node
			// that answers nothing.
			(*sock).SetDeadline(time.Now().Add(10 * time.Millisecond))
		}
		p.conn.Close()
		p.conn = nil
	}
}

// interrupt ends at once a probe waiting on the connection, and makes every
// later probe end at once: the cluster is closing.
func (p *probeConn) interrupt() {
	p.closing.Store(true)
	if sock := p.sock.Load(); sock != nil {
		(*sock).SetDeadline(time.Now())
	}
}

// close ends a probe waiting on the connection, then closes it.
func (p *probeConn) close() {
	p.interrupt()
	p.mu.Lock()
	p.drop()
	p.mu.Unlock()
}
