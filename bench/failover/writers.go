package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
)

// routerWriter writes through a dbrouter.Cluster with default settings.
type routerWriter struct {
	r    *dbrouter.Router
	c    *dbrouter.Cluster
	stmt string
}

func newRouterWriter(ring *ringtest.Ring, table string) (*routerWriter, error) {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: ringtest.DefaultUser, Password: ringtest.DefaultPassword, Database: ringtest.DefaultDatabase},
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	c, err := r.Cluster("ring")
	if err != nil {
		r.Close()
		return nil, err
	}
	// An application has been running a while when its writer fails: let
	// the probes reach every node once (they keep a warm connection each).
	c.WriterAddr()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		probed := 0
		for _, n := range r.Stats()[0].Nodes {
			if n.LastProbeLatency > 0 {
				probed++
			}
		}
		if probed == ring.Len() {
			break
		}
	}
	return &routerWriter{r: r, c: c, stmt: "INSERT INTO " + table + " (id) VALUES (?)"}, nil
}

// switchover moves the writer from A to B with Cluster.Switchover, making A
// read-only through the ring's administrator connection.
func (w *routerWriter) switchover(ctx context.Context, ring *ringtest.Ring) error {
	return w.c.Switchover(ctx, ring.Addr(1), &dbrouter.SwitchoverOptions{
		ReadOnly: func(_ context.Context, addr string, on bool) error {
			for i, a := range ring.Addrs() {
				if a == addr {
					return ring.SetReadOnly(i, on)
				}
			}
			return fmt.Errorf("no node %s", addr)
		},
	})
}

func (w *routerWriter) describe() string {
	return "dbrouter, default settings (probe every 250ms, timeout 200ms, fail_after 2; connect_timeout 1s)"
}

func (w *routerWriter) writerAddr() string { return w.c.WriterAddr() }

func (w *routerWriter) close() { w.r.Close() }

func (w *routerWriter) write(ctx context.Context, id string) result {
	var tr dbrouter.Trace
	_, err := w.c.ExecContext(dbrouter.WithTrace(ctx, &tr), w.stmt, id)
	r := result{node: tr.Node, attempts: len(tr.Attempts), err: err}
	var ou *dbrouter.OutcomeUnknownError
	var me *mysql.MySQLError
	switch {
	case err == nil && len(tr.Attempts) == 0:
		r.class = classOK
	case err == nil:
		r.class = classRetried
	case errors.As(err, &ou):
		r.class, r.node, r.sent = classUnknown, ou.Node, true
	case errors.Is(err, dbrouter.ErrNotSent):
		r.class = classNotSent
	case errors.As(err, &me):
		r.class = classServer
	default:
		r.class, r.sent = classFailed, true
	}
	return r
}

// naiveWriter is the approach dbrouter replaces, as a PHP developer would
// write it: for each call, connect to each master in order with a connect
// timeout, run the INSERT, and on any error try the next. No pool, no
// background probes, no error classification.
type naiveWriter struct {
	addrs          []string
	connectors     []driver.Connector
	connectTimeout time.Duration
	ioTimeout      time.Duration
	stmt           string
}

func newNaiveWriter(ring *ringtest.Ring, table string, connectTimeout, ioTimeout time.Duration) (*naiveWriter, error) {
	// The driver logs every broken connection; the CSV has them all.
	mysql.SetLogger(log.New(io.Discard, "", 0))
	w := &naiveWriter{addrs: ring.Addrs(), connectTimeout: connectTimeout, ioTimeout: ioTimeout,
		stmt: "INSERT INTO " + table + " (id) VALUES (?)"}
	for _, a := range w.addrs {
		mc := mysql.NewConfig()
		mc.User, mc.Passwd, mc.DBName = ringtest.DefaultUser, ringtest.DefaultPassword, ringtest.DefaultDatabase
		mc.Net, mc.Addr = "tcp", a
		mc.Timeout = connectTimeout
		mc.ReadTimeout, mc.WriteTimeout = ioTimeout, ioTimeout
		conn, err := mysql.NewConnector(mc)
		if err != nil {
			return nil, err
		}
		w.connectors = append(w.connectors, conn)
	}
	return w, nil
}

func (w *naiveWriter) describe() string {
	return fmt.Sprintf("naive: per call, masters A, B, ... in order, a new connection each (connect timeout %v, read/write timeout %v), next master on any error, no probes",
		w.connectTimeout, w.ioTimeout)
}

func (w *naiveWriter) writerAddr() string { return w.addrs[0] }

func (w *naiveWriter) close() {}

func (w *naiveWriter) write(ctx context.Context, id string) result {
	var r result
	var errs []error
	for i, a := range w.addrs {
		if ctx.Err() != nil {
			break
		}
		ok, sent, err := w.try(ctx, w.connectors[i], id)
		if ok {
			r.node = a
			r.class = classOK
			if r.attempts > 0 {
				r.class = classRetried
			}
			return r
		}
		r.attempts++
		r.sent = r.sent || sent
		errs = append(errs, fmt.Errorf("%s: %w", nodeNameOf(w.addrs, a), err))
	}
	r.class = classFailed
	if ctx.Err() != nil {
		r.class = classDeadline
	}
	r.err = errors.Join(errs...)
	return r
}

// try runs the INSERT on one master over a new connection. sent reports
// whether a failure happened after the statement may have reached it.
func (w *naiveWriter) try(ctx context.Context, c driver.Connector, id string) (ok, sent bool, err error) {
	db := sql.OpenDB(c) // a fresh connection per call, like mysqli_connect per request
	defer db.Close()
	cctx, cancel := context.WithTimeout(ctx, w.connectTimeout)
	conn, err := db.Conn(cctx)
	cancel()
	if err != nil {
		return false, false, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, w.stmt, id); err != nil {
		var me *mysql.MySQLError
		return false, !errors.As(err, &me), err
	}
	return true, false, nil
}

func nodeNameOf(addrs []string, a string) string {
	for i, x := range addrs {
		if x == a {
			return nodeName(i)
		}
	}
	return a
}
