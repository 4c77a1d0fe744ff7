package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// This file is the *sql.DB that fails over: a driver.Connector over a
// cluster name of a Router, whose connections each go to the writer of the
// moment and type their errors so that database/sql's own retries (on
// driver.ErrBadConn) never apply a write twice (docs/design.md §7).

// Connector returns a driver.Connector over the named cluster, for code
// that builds its own *sql.DB (sql.OpenDB) or takes a connector. Each new
// connection goes to the cluster's writer of that moment; see OpenDB for
// the rules. The name is checked now (an error matching ErrUnknownCluster)
// and resolved again on every connect, so that the connector follows
// Reload. It is safe for concurrent use.
func (r *Router) Connector(cluster string) (driver.Connector, error) {
	if _, err := r.Cluster(cluster); err != nil {
		return nil, err
	}
	return &clusterConnector{resolve: func() (*Cluster, error) { return r.Cluster(cluster) }}, nil
}

// ReadConnector is Connector for reads: each new connection goes to a read
// node of the cluster, chosen by its read_policy (see OpenReadDB). It is
// safe for concurrent use.
func (r *Router) ReadConnector(cluster string) (driver.Connector, error) {
	if _, err := r.Cluster(cluster); err != nil {
		return nil, err
	}
	return &clusterConnector{resolve: func() (*Cluster, error) { return r.Cluster(cluster) }, read: true}, nil
}

// OpenDB returns a *sql.DB over the named cluster that fails over, for
// libraries that take a plain *sql.DB (gorm, sqlx, sqlc, bun, ent). Unlike
// Cluster.Writer, which is pinned to one node, its new connections go to
// the writer of the moment (after the first probe round, through the
// nodes' bounded connect and the write order, like a call), and its
// connections are dropped once their node no longer takes the writes:
//
//   - before sending anything, a connection whose node is no longer the
//     writer, is Down, or whose cluster was closed or retired by Reload
//     returns an error matching driver.ErrBadConn and ErrNotSent, and
//     database/sql retries on a new connection, to the new writer;
//   - a write refused as read-only is reported to the cluster; a single
//     statement applied nothing and is returned the same way, and retried
//     on the new writer, while a string of several statements, a CALL or
//     a compound statement, which may have applied part of itself before
//     the refusal, gets the server's error and is not retried;
//   - a connection lost after sending, also while rows are read, returns
//     an *OutcomeUnknownError (never driver.ErrBadConn: database/sql does
//     not retry it) and is dropped; BeginTx, Prepare and Ping apply
//     nothing and return an error matching driver.ErrBadConn and
//     ErrNotSent instead (database/sql retries BeginTx and Prepare, not a
//     ping that already started); the driver's own driver.ErrBadConn
//     (nothing written) matches ErrNotSent too; a statement run with a
//     context marked by WithIdempotent, outside a transaction, is run
//     again by database/sql on a new connection;
//   - statements in a transaction, and its COMMIT, are never retried: a
//     failover inside a transaction is an error.
//
// Statements and transactions on it keep a failback from moving the
// writer meanwhile, and its failures count for the nodes' health, as
// direct calls do. The pool takes the cluster's max_open_conns,
// max_idle_conns, conn_max_lifetime and conn_max_idle_time. The caller
// owns the *sql.DB and must Close it; closing the router makes its calls
// fail with an error matching ErrClosed.
//
// What does not move during a failover: an open transaction, a *sql.Conn,
// session state (SET, temporary tables, GET_LOCK) and LAST_INSERT_ID of a
// lost connection (docs/design.md §7).
func (r *Router) OpenDB(cluster string) (*sql.DB, error) {
	return r.openDB(cluster, false)
}

// OpenReadDB is OpenDB for reads: a *sql.DB whose new connections go to a
// read node of the cluster, chosen by the cluster's read_policy as the
// router's own reads are ("writer": the writer, then the other nodes;
// "any-up" and "round-robin": the Up nodes within max_lag, taken in turn).
// Its sessions are read-only (SET SESSION TRANSACTION READ ONLY at
// connect), so a statement that writes (DDL and non-transactional tables
// included) is refused by the server, with the server's error, and never
// applied — unless the caller makes the session read-write (SET SESSION
// TRANSACTION READ WRITE, SET tx_read_only = 0, START TRANSACTION READ
// WRITE): its writes then reach whatever node the connection is on,
// without the fence, and the pooled connection stays read-write. Do not.
// The error contract is OpenDB's: a
// connection whose node no longer serves reads (Down, or no longer in the
// read order) or whose cluster was retired returns, before sending, an
// error matching driver.ErrBadConn and ErrNotSent, and database/sql
// retries on a new connection; a connection lost after sending returns an
// *OutcomeUnknownError. Reads do not wait at the failback fence. The
// caller owns the *sql.DB and must Close it.
func (r *Router) OpenReadDB(cluster string) (*sql.DB, error) {
	return r.openDB(cluster, true)
}

func (r *Router) openDB(cluster string, read bool) (*sql.DB, error) {
	c, err := r.Cluster(cluster)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(&clusterConnector{resolve: func() (*Cluster, error) { return r.Cluster(cluster) }, read: read})
	db.SetMaxOpenConns(c.settings.MaxOpenConns)
	db.SetMaxIdleConns(c.settings.MaxIdleConns)
	db.SetConnMaxLifetime(c.settings.ConnMaxLifetime)
	db.SetConnMaxIdleTime(c.settings.ConnMaxIdleTime)
	return db, nil
}

// clusterConnector is the driver.Connector of Router.Connector and
// Router.OpenDB, and of Router.ReadConnector and Router.OpenReadDB with
// read set; drv is the registered Driver for a connector opened from a DSN.
type clusterConnector struct {
	resolve func() (*Cluster, error) // the cluster of the name now
	read    bool                     // to a read node, in a read-only session
	drv     driver.Driver
}

// Connect resolves the cluster and connects to its writer, or to the next
// node of the write order after a failure to connect (reported to the
// cluster, as a call's is). When no node can be reached the error matches
// ErrNoNode and ErrNotSent.
//
// A cluster that Router.Reload replaced between the lookup and the
// connect is looked up again (a few times at most), so that a connect
// racing a Reload goes to the new cluster rather than fail with ErrClosed.
func (k *clusterConnector) Connect(ctx context.Context) (driver.Conn, error) {
	for range 3 {
		c, err := k.resolve()
		if err != nil {
			return nil, err
		}
		conn, err := c.connectRouted(ctx, k.read)
		if err == nil || !c.retiring.Load() {
			return conn, err
		}
		if now, rerr := k.resolve(); rerr != nil || now == c {
			return conn, err
		}
	}
	c, err := k.resolve()
	if err != nil {
		return nil, err
	}
	return c.connectRouted(ctx, k.read)
}

// Driver returns the registered Driver for a connector opened from a DSN,
// else a driver whose Open refuses: connections come from the connector
// only.
func (k *clusterConnector) Driver() driver.Driver {
	if k.drv != nil {
		return k.drv
	}
	return routedDriver{}
}

type routedDriver struct{}

func (routedDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("dbrouter: this driver has no DSN: use Router.OpenDB or Router.Connector")
}

// connectRouted opens a routed connection to the writer, or with read to
// a read node in a read-only session (see Connect).
func (c *Cluster) connectRouted(ctx context.Context, read bool) (_ driver.Conn, err error) {
	if c.observer != nil {
		var t *Trace
		var start time.Time
		ctx, t, start = c.observeStart(ctx)
		defer func() { c.observeDone(ctx, OpConnect, t, start, err) }()
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.leave()
	var conn driver.Conn
	err = c.attempts(ctx, OpConnect, read, false, func(ctx context.Context, n *node) (bool, error) {
		k := n.connector
		if read {
			k = n.readConnector
		}
		dc, err := k.Connect(ctx)
		if err != nil {
			return false, err
		}
		nc := dc.(*nodeConn)
		nc.routed = newRoutedConn(c, c.nodeIndex(n), read)
		conn = nc
		return false, nil
	})
	return conn, err
}

// routedConn is what a connection of Router.OpenDB knows of where it
// belongs: its cluster and node, and whether it was lost.
type routedConn struct {
	c     *Cluster
	i     int
	read  bool        // a read connection (Router.OpenReadDB)
	bad   atomic.Bool // lost after sending, or refused: never used again
	leave func()      // exit, for the passes of rows and transactions
}

func newRoutedConn(c *Cluster, i int, read bool) *routedConn {
	r := &routedConn{c: c, i: i, read: read}
	r.leave = r.exit
	return r
}

// takesWrites reports whether node i is where a write would go now: in
// the write order, after nothing but Suspect nodes (which a write may
// fail over from) — the writer itself, or the next node while the writer
// is Suspect.
func (p *picker) takesWrites(i int) bool {
	for _, j := range p.writes {
		if j == i {
			return p.nodes[i].state != StateDown
		}
		if p.nodes[j].state != StateSuspect {
			return false
		}
	}
	return false
}

// takesReads reports whether node i is in the read order and not Down.
func (p *picker) takesReads(i int) bool {
	for _, j := range p.reads {
		if j == i {
			return p.nodes[i].state != StateDown
		}
	}
	return false
}

// serves reports whether the connection's node takes what it is for now:
// the writes, or for a read connection the reads.
func (r *routedConn) serves(p *picker) bool {
	if r.read {
		return p.takesReads(r.i)
	}
	return p.takesWrites(r.i)
}

// valid reports whether the connection may still be used.
func (r *routedConn) valid() bool {
	return !r.bad.Load() && r.c.stillOpen() == nil && r.serves(r.c.pick.Load())
}

// pass is enter for a call whose result outlives it (rows, a
// transaction): the pass gives the place back.
func (r *routedConn) pass(ctx context.Context, op Op) (*pass, error) {
	if err := r.enter(ctx, op); err != nil {
		return nil, err
	}
	return newPass(r.leave), nil
}

// enter lets a statement (or a BeginTx, Prepare, Ping) of the connection
// through the fence, as a pinned connection's is (a read connection's
// skips the fence), counted among the cluster's calls in flight until
// exit; it refuses, with an error matching driver.ErrBadConn and
// ErrNotSent, when the node no longer takes the writes (the reads, for a
// read connection) or the cluster was closed or retired.
func (r *routedConn) enter(ctx context.Context, op Op) error {
	c := r.c
	if err := c.enter(); err != nil {
		r.bad.Store(true)
		return r.stale(op, err)
	}
	c.nodes[r.i].routedBusy.Add(1)
	if !r.read {
		if err := c.fence.enter(ctx); err != nil {
			c.nodes[r.i].routedBusy.Add(-1)
			c.leave()
			return &notSentError{cluster: c.name, op: op, node: c.nodes[r.i].addr, err: err} // ctx ended at the fence
		}
	}
	if err := c.stillOpen(); err != nil {
		r.exit()
		r.bad.Store(true)
		return r.stale(op, err)
	}
	if r.bad.Load() {
		r.exit()
		return r.stale(op, errors.New("the connection was lost"))
	}
	if pk := c.pick.Load(); !r.serves(pk) {
		r.exit()
		r.bad.Store(true)
		why := "is no longer the writer"
		if r.read {
			why = "no longer serves reads"
		}
		if pk.nodes[r.i].state == StateDown {
			why = "is Down"
		}
		now := "no node"
		if pk.writer >= 0 {
			now = r.c.nodes[pk.writer].addr
		}
		return r.stale(op, fmt.Errorf("node %s %s (writer: %s)", r.c.nodes[r.i].addr, why, now))
	}
	return nil
}

// succeeded reports a call that succeeded on a Suspect node, which may
// then come Up, as a direct call's success does.
func (r *routedConn) succeeded() {
	if r.c.pick.Load().nodes[r.i].state == StateSuspect {
		r.c.reportCall(r.i, false, 0, nil)
	}
}

// exit ends what enter began.
func (r *routedConn) exit() {
	if !r.read {
		r.c.fence.leave()
	}
	r.c.nodes[r.i].routedBusy.Add(-1)
	r.c.leave()
}

// stale returns the error of a call refused on the connection before
// anything was sent.
func (r *routedConn) stale(op Op, err error) error {
	return &staleConnError{cluster: r.c.name, node: r.c.nodes[r.i].addr, op: op, err: err}
}

// outcome types the result of a call that may have sent something. inTx
// reports whether it ran in a transaction (its COMMIT included), whose
// failures database/sql never retries and this never turns into retries.
//
//   - success: reported when the node was Suspect (it may come Up);
//   - driver.ErrSkip (nothing run; database/sql prepares instead): as it is;
//   - the driver's own driver.ErrBadConn (nothing sent): the connection
//     is invalid; outside a transaction an error matching driver.ErrBadConn
//     and ErrNotSent (database/sql retries it), in one an error matching
//     ErrNotSent (and driver.ErrBadConn, so that database/sql drops the
//     connection);
//   - a server error: as it is;
//   - a read-only refusal: reported; outside a transaction, of a query
//     that is one statement (see refusedWhole), an error matching
//     driver.ErrBadConn and ErrNotSent (nothing was applied); else the
//     server's error as it is (part of it may have been applied);
//   - connection lost: reported (unless ctx ended), the connection is
//     invalid; BeginTx, Prepare and Ping apply nothing, and return an error
//     matching driver.ErrBadConn and ErrNotSent outside a transaction, and
//     ErrNotSent in one; anything else is an *OutcomeUnknownError.
func (r *routedConn) outcome(ctx context.Context, op Op, query string, inTx bool, err error) error {
	if err == nil {
		r.succeeded()
		return nil
	}
	if err == driver.ErrSkip {
		// Not run: database/sql prepares the statement instead (what
		// go-sql-driver asks for a statement with arguments unless
		// interpolateParams is set).
		return err
	}
	if errors.Is(err, driver.ErrBadConn) {
		r.bad.Store(true)
		if inTx {
			return &notSentError{cluster: r.c.name, op: op, node: r.c.nodes[r.i].addr, err: err}
		}
		return r.stale(op, err)
	}
	switch class := classify(err, true); class {
	case ClassServerError, ClassNotSent:
		return err
	case ClassReadOnly:
		if r.read {
			// The session is read-only: the statement wrote, the node
			// may well be writable. The server's error, as it is.
			return err
		}
		r.c.reportCall(r.i, true, class, err)
		if inTx || !refusedWhole(query) {
			return err
		}
		r.bad.Store(true)
		return r.stale(op, err)
	}
	r.bad.Store(true)
	if ctx.Err() == nil {
		r.c.reportCall(r.i, !r.read, ClassOutcomeUnknown, err)
	}
	switch op {
	case OpBegin, OpPrepare, OpPing:
		if inTx {
			return &notSentError{cluster: r.c.name, op: op, node: r.c.nodes[r.i].addr, err: err}
		}
		return r.stale(op, err)
	}
	ou := &OutcomeUnknownError{Cluster: r.c.name, Node: r.c.nodes[r.i].addr, Op: op, Err: err}
	if !inTx && ctx.Err() == nil && isIdempotent(ctx) {
		return &idempotentRetryError{ou}
	}
	return ou
}

// idempotentRetryError is the *OutcomeUnknownError of a statement marked
// with WithIdempotent, outside a transaction: it also matches
// driver.ErrBadConn, so that database/sql runs the statement again on a
// new connection (to the writer of the moment), as a direct call runs it
// again on the next node. When database/sql's retries are spent, the
// caller gets it: it matches ErrOutcomeUnknown, and errors.As finds the
// *OutcomeUnknownError.
type idempotentRetryError struct{ *OutcomeUnknownError }

func (e *idempotentRetryError) Unwrap() error        { return e.OutcomeUnknownError }
func (e *idempotentRetryError) Is(target error) bool { return target == driver.ErrBadConn }

// readFailed types an error of reading the rows of a query that ran (see
// nodeRows.Next): a server error as it is; anything else lost the
// connection after the query was sent, and is an *OutcomeUnknownError,
// reported unless ctx ended, with the connection invalid.
func (r *routedConn) readFailed(ctx context.Context, op Op, err error) error {
	switch classify(err, true) {
	case ClassServerError, ClassReadOnly:
		return err
	}
	r.bad.Store(true)
	if ctx.Err() == nil {
		r.c.reportCall(r.i, !r.read, ClassOutcomeUnknown, err)
	}
	return &OutcomeUnknownError{Cluster: r.c.name, Node: r.c.nodes[r.i].addr, Op: op, Err: err}
}

// staleConnError reports a call on a connection of Router.OpenDB that
// applied nothing: refused before sending (its node no longer takes the
// writes, its cluster was retired or closed), refused as read-only, or a
// BeginTx, Prepare or Ping whose connection was lost. It matches
// driver.ErrBadConn, so that database/sql retries the call on another
// connection, and ErrNotSent; err says why.
type staleConnError struct {
	cluster string
	node    string
	op      Op
	err     error
}

func (e *staleConnError) Error() string {
	return fmt.Sprintf("dbrouter: cluster %q: %s on %s not sent: %v (connection dropped: retry on a new one)", e.cluster, e.op, e.node, e.err)
}

func (e *staleConnError) Unwrap() error { return e.err }

func (e *staleConnError) Is(target error) bool {
	return target == ErrNotSent || target == driver.ErrBadConn
}
