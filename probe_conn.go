package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
)

// probeConn is a node's health-probe connection: one driver connection of
// its own, outside every pool, so that an application holding all of a
// pool's connections (max_open_conns) cannot make a healthy node look dead,
// and so that probing costs no pool and no goroutine.
type probeConn struct {
	connector driver.Connector // a boundedConnector: connect_timeout, connectError

	mu   sync.Mutex
	conn driver.Conn
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
		row, err := p.queryOnce(ctx, query)
		if err == nil {
			return row, nil
		}
		p.drop()
		if try > 0 || !errors.Is(err, driver.ErrBadConn) || ctx.Err() != nil {
			return nil, err
		}
	}
}

func (p *probeConn) queryOnce(ctx context.Context, query string) ([]string, error) {
	if p.conn == nil {
		conn, err := p.connector.Connect(ctx)
		if err != nil {
			return nil, err
		}
		p.conn = conn
	} else if r, ok := p.conn.(driver.SessionResetter); ok {
		// As database/sql does before reusing a connection: go-sql-driver
		// checks here, without sending anything, that the server has not
		// closed it (KILL, wait_timeout), and says driver.ErrBadConn.
		if err := r.ResetSession(ctx); err != nil {
			return nil, err
		}
	}
	q, ok := p.conn.(driver.QueryerContext)
	if !ok {
		return nil, errors.New("dbrouter: probe: the driver cannot run a query without preparing it")
	}
	rows, err := q.QueryContext(ctx, query, nil)
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

// drop closes the connection; p.mu must be held.
func (p *probeConn) drop() {
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
}

// close closes the connection.
func (p *probeConn) close() {
	p.mu.Lock()
	p.drop()
	p.mu.Unlock()
}
