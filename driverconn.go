package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync/atomic"
)

// A pass is a write's way through a cluster's failback fence, together
// with its place in the cluster's count of calls in flight. A call that
// returns something that can still write after the call itself has
// returned (the rows of INSERT ... RETURNING, a transaction) puts its pass
// in the context it gives database/sql; the connection layer below hands
// the pass on to the driver's rows or transaction, which give it back when
// they are closed or end — also when database/sql closes them because the
// context was cancelled.
type pass struct {
	leave      func() // gives the fence and in-flight places back
	taken      atomic.Bool
	returned   atomic.Bool
	commitSent atomic.Bool // a transaction's COMMIT reached the driver
}

func newPass(leave func()) *pass { return &pass{leave: leave} }

// give back returns the pass; calls after the first do nothing.
func (p *pass) giveBack() {
	if p.returned.CompareAndSwap(false, true) {
		p.leave()
	}
}

// take hands the pass on to the rows or transaction being returned; it
// reports false when something else already has it.
func (p *pass) take() bool { return p.taken.CompareAndSwap(false, true) }

type passKey struct{}

func withPass(ctx context.Context, p *pass) context.Context {
	return context.WithValue(ctx, passKey{}, p)
}

func passOf(ctx context.Context) *pass {
	p, _ := ctx.Value(passKey{}).(*pass)
	return p
}

// nodeConn wraps a driver connection of one of a node's pools. On the pools
// the router runs its own calls through it only hands a call's pass on to
// the rows or transaction that outlive the call. On the pinned pool (see
// Cluster.Writer and Cluster.Conn), whose connections the caller uses
// directly, every statement and transaction first gets a pass of its own
// from guard, which refuses it once the node is no longer the writer.
//
// A connection of a Router's connector (Router.OpenDB) is routed: it
// checks before sending anything that its node still takes the cluster's
// writes, and types what it returns for database/sql's retries (see
// routedConn in connector.go).
//
// Whatever the router's own calls do not cover — statements in a
// transaction, on the pinned pool and on a routed connection, their
// COMMIT and ROLLBACK, the reads of their rows — counts itself in with the
// node's stall watch while it waits on the node (see watch), as a call's
// attempt does, so that a frozen or cut node is found and its connections
// closed in about a quarter of the probe timeout plus the probe timeout.
//
// nodeConn implements every optional interface that go-sql-driver's
// connection does, and falls back to database/sql's own behaviour where
// the wrapped connection lacks one.
type nodeConn struct {
	driver.Conn
	guard  func(ctx context.Context) (*pass, error) // nil: no per-statement pass
	routed *routedConn                              // nil: not made by a Router's connector
	node   *node                                    // the connection's node; nil: no stall watch
	// read: a connection of the node's read pool (a read-only session),
	// which runs the reads of Cluster.QueryContext: their rows are
	// watched and typed (see nodeRows).
	read bool
	// inTx is set while a transaction holds the connection: its
	// statements run under the transaction's pass.
	inTx atomic.Bool
}

// watch counts a statement, COMMIT, ROLLBACK or read of rows in with the
// node's stall watch (Cluster.watchStall; the caller stops it when the
// driver returns) when no call's attempt covers it: on the pinned pool,
// on a routed connection, and in a transaction. The router's own calls
// outside a transaction are watched by their attempt (Cluster.attemptsOn),
// and a node alone (tests) by nothing: then it returns nil.
func (c *nodeConn) watch() *stallDog {
	n := c.node
	if n == nil || n.cluster == nil || c.guard == nil && c.routed == nil && !c.inTx.Load() {
		return nil
	}
	return n.cluster.watchStall(n.index)
}

// pinnedLost types the failure of a statement on the pinned pool (see
// Cluster.Conn and Cluster.Writer) that may have reached the server: a
// connection lost after sending — also closed by the router when a stall
// check found its node silent — is an *OutcomeUnknownError; anything else
// (a server error, the driver's driver.ErrBadConn when nothing was sent)
// is returned as it is, as on any other connection. (A statement whose
// context ended is typed by ctxEnded first.)
func (c *nodeConn) pinnedLost(op Op, err error) error {
	if c.guard == nil {
		return err
	}
	return c.lostAfterSend(op, err)
}

// pinned reports whether the connection is of the pinned pool, with a
// cluster to name in errors.
func (c *nodeConn) pinned() bool {
	return c.guard != nil && c.clustered()
}

// clustered reports whether the connection's node is a cluster's (not a
// node alone, as tests build).
func (c *nodeConn) clustered() bool {
	return c.node != nil && c.node.cluster != nil
}

// readLost types an error of reading the rows of a read made with
// Cluster.QueryContext (in a read-only session; its context had not
// ended), as a routed read connection's (routedConn.readFailed): the
// server's own error as it is; anything else lost the connection after
// the query ran, and is an *OutcomeUnknownError — of a read, which applied
// nothing and may run again — reported to the node's health as a failed
// read is.
func (c *nodeConn) readLost(op Op, err error) error {
	switch classify(err, true) {
	case ClassServerError, ClassReadOnly:
		return err
	}
	n := c.node
	n.cluster.reportCall(n.index, false, ClassOutcomeUnknown, err)
	return &OutcomeUnknownError{Cluster: n.cluster.name, Node: n.addr, Op: op, Err: err}
}

// endedBefore returns, on the pinned pool, an error matching ErrNotSent
// and ctx's error when ctx has ended before a statement is handed to the
// driver (else nil): the statement is then not sent at all, as
// Cluster.ExecContext reports a call whose context ended before its
// statement was written. (go-sql-driver would refuse it too, unsent, but
// with the bare context error, which ctxEnded could not tell from one that
// ended while the statement ran.)
func (c *nodeConn) endedBefore(ctx context.Context, op Op) error {
	if !c.pinned() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return &notSentError{cluster: c.node.cluster.name, op: op, node: c.node.addr, err: err}
	}
	return nil
}

// ctxEnded types err, returned by the driver for a statement (or a BEGIN,
// prepare, ping; rows: a read of a query's rows) whose context ended
// (ctxErr) after it was handed to the driver, as Cluster.ExecContext types
// an attempt its caller's context ended: the server's own answer as it is;
// a BEGIN, prepare or ping, which apply nothing, and a statement that
// provably sent nothing (driver.ErrBadConn), not sent; anything else —
// go-sql-driver closes the connection and returns the context's error — an
// *OutcomeUnknownError, the statement having possibly reached the server
// (the query of rows being read has). The node's health is not touched:
// the caller's context says nothing about the node. The error matches
// ctxErr (context.Canceled or context.DeadlineExceeded) with errors.Is,
// and keeps err.
func (c *nodeConn) ctxEnded(op Op, rows bool, ctxErr, err error) error {
	class := classify(err, true)
	switch class {
	case ClassServerError, ClassReadOnly:
		return err
	}
	if !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	if !rows && (op == OpBegin || op == OpPrepare || op == OpPing || class == ClassNotSent) {
		return &notSentError{cluster: c.node.cluster.name, op: op, node: c.node.addr, err: err}
	}
	return &OutcomeUnknownError{Cluster: c.node.cluster.name, Node: c.node.addr, Op: op, Err: err}
}

// lostAfterSend returns an *OutcomeUnknownError for err when it says the
// connection was lost after sending (see pinnedLost), else err.
func (c *nodeConn) lostAfterSend(op Op, err error) error {
	if c.node == nil || c.node.cluster == nil || err == nil ||
		classify(err, true) != ClassOutcomeUnknown || !connectionLost(err) {
		return err
	}
	return &OutcomeUnknownError{Cluster: c.node.cluster.name, Node: c.node.addr, Op: op, Err: err}
}

var (
	_ driver.ExecerContext      = (*nodeConn)(nil)
	_ driver.QueryerContext     = (*nodeConn)(nil)
	_ driver.ConnBeginTx        = (*nodeConn)(nil)
	_ driver.ConnPrepareContext = (*nodeConn)(nil)
	_ driver.Pinger             = (*nodeConn)(nil)
	_ driver.SessionResetter    = (*nodeConn)(nil)
	_ driver.Validator          = (*nodeConn)(nil)
	_ driver.NamedValueChecker  = (*nodeConn)(nil)
)

// own returns the pass a statement holds while it runs: a new one from
// guard on the pinned pool or from the routed connection's check, else
// nil. Inside a transaction the transaction's pass covers the statement.
func (c *nodeConn) own(ctx context.Context, op Op) (*pass, error) {
	if c.inTx.Load() {
		return nil, nil
	}
	if c.routed != nil {
		return c.routed.pass(ctx, op)
	}
	if c.guard == nil {
		return nil, nil
	}
	return c.guard(ctx)
}

// done types the outcome of a call that may have sent something, on a
// routed connection (routedConn.outcome); on the pinned pool a call whose
// context ended meanwhile as ctxEnded says, a statement or COMMIT whose
// connection was lost is outcome unknown (pinnedLost), and a BEGIN,
// prepare or ping, which apply nothing, not sent; on any other connection
// it returns err.
func (c *nodeConn) done(ctx context.Context, op Op, query string, err error) error {
	if c.routed == nil {
		if err == driver.ErrSkip {
			// Not run: database/sql prepares the statement instead
			// (go-sql-driver asks for it for a statement with arguments
			// unless interpolateParams is set), and compares the error
			// with ErrSkip itself — also when ctx ended meanwhile.
			return err
		}
		if err != nil && c.pinned() {
			if cerr := ctx.Err(); cerr != nil {
				return c.ctxEnded(op, false, cerr, err)
			}
		}
		switch op {
		case OpBegin, OpPrepare, OpPing: // nothing applied
			if c.guard != nil && c.node != nil && c.node.cluster != nil && err != nil && connectionLost(err) {
				// On the pinned pool, typed as nothing sent, as a
				// routed connection's and Cluster.BeginTx's are.
				return &notSentError{cluster: c.node.cluster.name, op: op, node: c.node.addr, err: err}
			}
			return err
		}
		return c.pinnedLost(op, err)
	}
	return c.routed.outcome(ctx, op, query, c.inTx.Load(), err)
}

// op returns the operation a statement is reported as: plain outside a
// transaction, inTx in one.
func (c *nodeConn) op(plain, inTx Op) Op {
	if c.inTx.Load() {
		return inTx
	}
	return plain
}

// handOn returns the pass that the rows or transaction being returned must
// give back: the statement's own, or the call's from ctx if it is free.
func handOn(ctx context.Context, own *pass) *pass {
	if own != nil {
		return own
	}
	if p := passOf(ctx); p != nil && p.take() {
		return p
	}
	return nil
}

// ExecContext runs a statement; its pass, if any, ends with it.
func (c *nodeConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	ex, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip // database/sql prepares it instead
	}
	op := c.op(OpExec, OpTxExec)
	if r := c.routed; r != nil && !c.inTx.Load() {
		if err := r.enter(ctx, op); err != nil {
			return nil, err
		}
		defer r.exit()
		defer c.watch().stop()
		res, err := ex.ExecContext(ctx, query, args)
		return res, c.done(ctx, op, query, err)
	}
	if err := c.endedBefore(ctx, op); err != nil {
		return nil, err
	}
	p, err := c.own(ctx, op)
	if err != nil {
		return nil, err
	}
	if p != nil {
		defer p.giveBack()
	}
	defer c.watch().stop()
	res, err := ex.ExecContext(ctx, query, args)
	return res, c.done(ctx, op, query, err)
}

// QueryContext runs a query; its rows hold the pass until they are closed.
func (c *nodeConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	qu, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return runQuery(ctx, c, c.op(OpQuery, OpTxQuery), query, func() (driver.Rows, error) { return qu.QueryContext(ctx, query, args) })
}

// runQuery runs a query for a connection or statement and hands its pass on
// to the rows. On a routed connection the rows type the errors of reading
// them (see nodeRows.Next); rows that the stall watch covers (see
// nodeConn.watch) count each read in with it.
func runQuery(ctx context.Context, c *nodeConn, op Op, query string, run func() (driver.Rows, error)) (driver.Rows, error) {
	// handed: the rows returned hold the place in flight and the pass
	// (else they are given back here, also when the driver panics).
	handed := false
	if r := c.routed; r != nil && !c.inTx.Load() {
		// The pass is made only for rows that are returned (a statement
		// with arguments is first skipped by go-sql-driver).
		if err := r.enter(ctx, op); err != nil {
			return nil, err
		}
		defer func() {
			if !handed {
				r.exit()
			}
		}()
		w := c.watch()
		defer w.stop()
		rows, err := run()
		if err != nil {
			return nil, c.done(ctx, op, query, err)
		}
		r.succeeded()
		// The rows and their pass in one allocation.
		nr := &nodeRows{Rows: rows, ctx: ctx, op: op, conn: c}
		nr.own.leave = r.leave
		nr.pass = &nr.own
		handed = true
		return nr, nil
	}
	if err := c.endedBefore(ctx, op); err != nil {
		return nil, err
	}
	own, err := c.own(ctx, op)
	if err != nil {
		return nil, err
	}
	if own != nil {
		defer func() {
			if !handed {
				own.giveBack()
			}
		}()
	}
	w := c.watch()
	defer w.stop()
	rows, err := run()
	if err != nil {
		return nil, c.done(ctx, op, query, err)
	}
	handed = true // handOn hands own on, if any, to the rows
	if p := handOn(ctx, own); p != nil || c.routed != nil || w != nil || c.read && c.clustered() {
		nr := &nodeRows{Rows: rows, pass: p, ctx: ctx, op: op, conn: c}
		if p == nil && c.read && c.clustered() {
			// A Cluster read's rows keep a place among the cluster's
			// calls in flight until they are closed (the call's own,
			// held while this runs, is given back when it returns), so
			// that a cluster Router.Reload retires is not closed under
			// them; the failback fence is a write's, not theirs.
			cl := c.node.cluster
			cl.inflight.Add(1)
			nr.own.leave = cl.leaveFn // made once: a method value allocates
			nr.pass = &nr.own
		}
		return nr, nil
	}
	return rows, nil
}

// BeginTx starts a transaction; it holds the pass until it ends.
func (c *nodeConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if err := c.endedBefore(ctx, OpBegin); err != nil {
		return nil, err
	}
	own, err := c.own(ctx, OpBegin)
	if err != nil {
		return nil, err
	}
	handed := false // the transaction holds own (else given back here, also on a panic)
	if own != nil {
		defer func() {
			if !handed {
				own.giveBack()
			}
		}()
	}
	tx, err := c.begin(ctx, opts)
	if err != nil {
		return nil, c.done(ctx, OpBegin, "", err)
	}
	handed = true
	if c.routed != nil {
		c.routed.succeeded()
	}
	if p := handOn(ctx, own); p != nil {
		c.inTx.Store(true)
		return &nodeTx{Tx: tx, pass: p, conn: c}, nil
	}
	if c.routed != nil {
		return &nodeTx{Tx: tx, conn: c}, nil // types its COMMIT
	}
	return tx, nil
}

// begin runs the driver's BEGIN, counted in with the stall watch until it
// returns (or panics).
func (c *nodeConn) begin(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	defer c.watch().stop()
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	if opts.Isolation != driver.IsolationLevel(0) || opts.ReadOnly {
		return nil, errors.New("dbrouter: the driver supports neither isolation levels nor read-only transactions")
	}
	return c.Conn.Begin()
}

// Begin starts a transaction with default options.
func (c *nodeConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// PrepareContext prepares a statement; preparing writes nothing, running
// the statement takes a pass as a direct statement does. A routed
// connection checks its node first, as for a statement.
func (c *nodeConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if r := c.routed; r != nil && !c.inTx.Load() {
		if err := r.enter(ctx, OpPrepare); err != nil {
			return nil, err
		}
		r.exit()
	}
	st, err := c.prepare(ctx, query)
	if err != nil {
		return nil, c.done(ctx, OpPrepare, "", err)
	}
	ns := &nodeStmt{Stmt: st, conn: c, query: query}
	if _, ok := st.(driver.ColumnConverter); ok {
		return &nodeStmtConverter{ns}, nil
	}
	return ns, nil
}

// prepare runs the driver's prepare, counted in with the stall watch
// until it returns (or panics).
func (c *nodeConn) prepare(ctx context.Context, query string) (driver.Stmt, error) {
	defer c.watch().stop()
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.Conn.Prepare(query)
}

// Prepare prepares a statement without a context.
func (c *nodeConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// Ping forwards to the driver's Ping, if it has one. A routed connection
// checks its node first, as for a statement.
func (c *nodeConn) Ping(ctx context.Context) error {
	if r := c.routed; r != nil && !c.inTx.Load() {
		if err := r.enter(ctx, OpPing); err != nil {
			return err
		}
		r.exit()
	}
	if p, ok := c.Conn.(driver.Pinger); ok {
		defer c.watch().stop()
		return c.done(ctx, OpPing, "", p.Ping(ctx))
	}
	return nil
}

// ResetSession forwards to the driver's ResetSession, if it has one. A
// routed connection whose node no longer takes the writes returns
// driver.ErrBadConn, so that database/sql drops it before using it again.
func (c *nodeConn) ResetSession(ctx context.Context) error {
	if c.routed != nil && !c.routed.valid() {
		return driver.ErrBadConn
	}
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// IsValid forwards to the driver's IsValid, if it has one. A routed
// connection is also invalid once it lost its connection after sending,
// or its node no longer takes the writes.
func (c *nodeConn) IsValid() bool {
	if c.routed != nil && !c.routed.valid() {
		return false
	}
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// CheckNamedValue forwards to the driver's CheckNamedValue, if it has one.
func (c *nodeConn) CheckNamedValue(nv *driver.NamedValue) error {
	if v, ok := c.Conn.(driver.NamedValueChecker); ok {
		return v.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// nodeStmt is a prepared statement of a nodeConn. A statement whose
// driver statement has a ColumnConverter is a nodeStmtConverter, so that
// database/sql checks arguments as it would without the wrapper.
type nodeStmt struct {
	driver.Stmt
	conn  *nodeConn
	query string
}

// nodeStmtConverter is a nodeStmt whose driver statement is a
// driver.ColumnConverter.
type nodeStmtConverter struct{ *nodeStmt }

var (
	_ driver.StmtExecContext   = (*nodeStmt)(nil)
	_ driver.StmtQueryContext  = (*nodeStmt)(nil)
	_ driver.NamedValueChecker = (*nodeStmt)(nil)
	_ driver.ColumnConverter   = nodeStmtConverter{}
)

// ExecContext runs the prepared statement.
func (s *nodeStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	op := s.conn.op(OpExec, OpTxExec)
	var (
		p   *pass
		err error
	)
	if r := s.conn.routed; r != nil && !s.conn.inTx.Load() {
		if err := r.enter(ctx, op); err != nil {
			return nil, err
		}
		defer r.exit()
	} else if err := s.conn.endedBefore(ctx, op); err != nil {
		return nil, err
	} else if p, err = s.conn.own(ctx, op); err != nil {
		return nil, err
	}
	if p != nil {
		defer p.giveBack()
	}
	var res driver.Result
	if ex, ok := s.Stmt.(driver.StmtExecContext); ok {
		defer s.conn.watch().stop()
		res, err = ex.ExecContext(ctx, args)
	} else {
		vals, verr := plainValues(args)
		if verr != nil {
			return nil, verr
		}
		defer s.conn.watch().stop()
		res, err = s.Stmt.Exec(vals)
	}
	return res, s.conn.done(ctx, op, s.query, err)
}

// QueryContext runs the prepared query; its rows hold the pass.
func (s *nodeStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return runQuery(ctx, s.conn, s.conn.op(OpQuery, OpTxQuery), s.query, func() (driver.Rows, error) {
		if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
			return q.QueryContext(ctx, args)
		}
		vals, err := plainValues(args)
		if err != nil {
			return nil, err
		}
		return s.Stmt.Query(vals)
	})
}

// CheckNamedValue forwards to the statement's CheckNamedValue, else to
// the connection's, as database/sql does for a statement without one.
func (s *nodeStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if v, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return v.CheckNamedValue(nv)
	}
	return s.conn.CheckNamedValue(nv)
}

// ColumnConverter forwards to the statement's ColumnConverter.
func (s nodeStmtConverter) ColumnConverter(idx int) driver.ValueConverter {
	return s.Stmt.(driver.ColumnConverter).ColumnConverter(idx)
}

func plainValues(args []driver.NamedValue) ([]driver.Value, error) {
	vals := make([]driver.Value, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, errors.New("dbrouter: the driver does not support named parameters")
		}
		vals[i] = a.Value
	}
	return vals, nil
}

// nodeTx is a driver transaction that holds a pass until it ends (on a
// routed connection, always; elsewhere only when it has one).
type nodeTx struct {
	driver.Tx
	pass *pass // nil: none
	conn *nodeConn
}

// Commit notes that COMMIT was sent, sends it and gives the pass back.
func (t *nodeTx) Commit() error {
	if t.pass != nil {
		t.pass.commitSent.Store(true)
	}
	defer t.end()
	defer t.conn.watch().stop()
	return t.conn.done(context.Background(), OpCommit, "", t.Tx.Commit())
}

// Rollback rolls back and gives the pass back. On a routed connection
// that was lost (a statement of the transaction failed after sending), the
// server has discarded the transaction already — a transaction never
// commits without its COMMIT — so Rollback returns nil rather than the
// driver's "invalid connection": libraries that join a rollback's error
// to the statement's (gorm's AddError keeps only the last one for
// errors.Is) then still return the statement's typed error.
func (t *nodeTx) Rollback() error {
	defer t.end()
	defer t.conn.watch().stop()
	err := t.Tx.Rollback()
	if r := t.conn.routed; err != nil && r != nil && r.bad.Load() {
		return nil
	}
	return err
}

func (t *nodeTx) end() {
	t.conn.inTx.Store(false)
	if t.pass != nil {
		t.pass.giveBack()
	}
}

// nodeRows are driver rows that hold a pass until they are closed (pass
// nil: none), and type the errors of reading them (see readErr): on a
// routed connection, on the pinned pool, in a transaction, and for the
// rows of a Cluster.QueryContext write or read. Each read, and the Close
// that reads what is left, counts itself in with the node's stall watch
// when the connection's statements do (see nodeConn.watch), the rows hold
// a Cluster write's pass or they are a Cluster read's. They forward every
// optional interface of go-sql-driver's rows, with database/sql's
// defaults where the wrapped rows lack one.
type nodeRows struct {
	driver.Rows
	pass *pass
	own  pass      // the pass of a routed connection's rows (pass points here)
	conn *nodeConn // the connection the rows are read from

	// The query's context and op (the connection's routedConn, if any,
	// types the errors of a routed connection's rows).
	ctx context.Context
	op  Op

	// failed: a read returned a typed error (readErr); Close, which
	// database/sql then calls, returns its own error as it is, neither
	// typed nor reported a second time.
	failed bool
}

// watch is the connection's watch (nodeConn.watch) for one read. The
// rows of a write made through the Cluster methods (they hold the call's
// pass) and of a read (the read pool's) are watched too: the call's
// attempt, which covered the statement, has returned, and a read of them
// waits on the node as any other does. A long read that the server keeps
// answering is not cut: a stall check only takes Down a node that answers
// neither a probe nor a new connection.
func (r *nodeRows) watch() *stallDog {
	if r.conn == nil {
		return nil
	}
	if w := r.conn.watch(); w != nil || r.pass == nil && !r.conn.read {
		return w
	}
	n := r.conn.node
	if n == nil || n.cluster == nil {
		return nil
	}
	return n.cluster.watchStall(n.index)
}

var (
	_ driver.RowsNextResultSet              = (*nodeRows)(nil)
	_ driver.RowsColumnTypeScanType         = (*nodeRows)(nil)
	_ driver.RowsColumnTypeDatabaseTypeName = (*nodeRows)(nil)
	_ driver.RowsColumnTypeLength           = (*nodeRows)(nil)
	_ driver.RowsColumnTypeNullable         = (*nodeRows)(nil)
	_ driver.RowsColumnTypePrecisionScale   = (*nodeRows)(nil)
)

// Close closes the rows (the driver reads what is left of them) and gives
// the pass back. Its error is typed as a read's (readErr): a connection
// lost while go-sql-driver reads the rows left (QueryRowContext's Scan
// closes rows it read one row of, a caller may close them early) is one
// lost while a row is read.
func (r *nodeRows) Close() error {
	if r.pass != nil {
		defer r.pass.giveBack()
	}
	defer r.watch().stop()
	err := r.Rows.Close()
	if err == nil || r.failed {
		return err
	}
	return r.readErr(err)
}

// Next reads the next row. On a routed connection, a row that cannot be
// read because the connection was lost is an *OutcomeUnknownError (the
// query ran: INSERT ... RETURNING may or may not be committed), reported
// to the node's health, and the connection is not used again; on the
// pinned pool, in a transaction and for the rows of Cluster.QueryContext a
// lost connection's error (or the query's context ending) is an
// *OutcomeUnknownError too (see readErr); the server's own errors are
// returned as they are.
func (r *nodeRows) Next(dest []driver.Value) error {
	defer r.watch().stop()
	return r.readErr(r.Rows.Next(dest))
}

// readErr types an error of reading the rows: on a routed connection as
// routedConn.readFailed does; elsewhere, when the query's context has
// ended, as nodeConn.ctxEnded (an *OutcomeUnknownError matching the
// context's error, unless the server answered); otherwise on the pinned
// pool as nodeConn.pinnedLost, those of a write made through the Cluster
// methods or of a query in a transaction as lostAfterSend, those of a
// Cluster read as nodeConn.readLost.
func (r *nodeRows) readErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	r.failed = true
	c := r.conn
	switch {
	case c == nil:
		return err
	case c.routed != nil:
		return c.routed.readFailed(r.ctx, r.op, err)
	case !c.clustered():
		return err
	}
	if r.ctx != nil {
		if cerr := r.ctx.Err(); cerr != nil {
			return c.ctxEnded(r.op, true, cerr, err)
		}
	}
	switch {
	case c.guard != nil:
		return c.pinnedLost(r.op, err)
	case c.read:
		// A Cluster read's rows (their pass is only a place in flight).
		return c.readLost(r.op, err)
	case r.pass != nil || r.op == OpTxQuery:
		// A Cluster write's rows (Cluster.QueryContext) or a query's in
		// a transaction: the query may have written.
		return c.lostAfterSend(r.op, err)
	}
	return err
}

// HasNextResultSet reports whether another result set follows.
func (r *nodeRows) HasNextResultSet() bool {
	if n, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return n.HasNextResultSet()
	}
	return false
}

// NextResultSet advances to the next result set; its errors are typed
// as Next's.
func (r *nodeRows) NextResultSet() error {
	n, ok := r.Rows.(driver.RowsNextResultSet)
	if !ok {
		return io.EOF
	}
	defer r.watch().stop()
	return r.readErr(n.NextResultSet())
}

// ColumnTypeScanType forwards to the wrapped rows.
func (r *nodeRows) ColumnTypeScanType(i int) reflect.Type {
	if c, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return c.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

// ColumnTypeDatabaseTypeName forwards to the wrapped rows.
func (r *nodeRows) ColumnTypeDatabaseTypeName(i int) string {
	if c, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return c.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

// ColumnTypeLength forwards to the wrapped rows.
func (r *nodeRows) ColumnTypeLength(i int) (int64, bool) {
	if c, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return c.ColumnTypeLength(i)
	}
	return 0, false
}

// ColumnTypeNullable forwards to the wrapped rows.
func (r *nodeRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if c, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return c.ColumnTypeNullable(i)
	}
	return false, false
}

// ColumnTypePrecisionScale forwards to the wrapped rows.
func (r *nodeRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if c, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return c.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}
