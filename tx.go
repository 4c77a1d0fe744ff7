package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Tx is a transaction pinned to one connection on the node that was writer
// when it began. Its statements never fail over. Commit classifies its
// failures: a COMMIT that was never sent (the transaction's context had
// ended, or it was already committed or rolled back) or provably not
// delivered returns an error matching ErrNotSent, and one whose answer was
// lost returns an *OutcomeUnknownError. Cluster.RunInTx re-runs a
// transaction on the next writer when that is safe.
//
// Until it ends — Commit, Rollback, or the end of the context given to
// BeginTx, on which database/sql rolls it back — a Tx keeps a failback from
// moving the writer, and keeps a cluster retired by Router.Reload open.
//
// A Tx is not safe for concurrent use, like *sql.Tx.
type Tx struct {
	tx      *sql.Tx
	ctx     context.Context // BeginTx's
	pass    *pass           // the transaction's place behind the fence; nil in tests that build a Tx by hand
	cluster string
	node    string
	owner   *Cluster // nil in tests that build a Tx by hand
	idx     int      // the node's index in owner.nodes

	mu       sync.Mutex
	connErrs []error // errors of tx's statements that mean the node lost or refused it
}

// note records the error of one of the transaction's statements: one that
// says the node lost or refused the transaction is kept, to decide a
// re-run, and told to the cluster's health tracking, so that a dead node is
// noticed by the next call too.
func (t *Tx) note(err error) {
	if err == nil || !rerunnable(err) {
		return
	}
	t.mu.Lock()
	t.connErrs = append(t.connErrs, err)
	t.mu.Unlock()
	if t.owner == nil || t.idx < 0 {
		return
	}
	switch class := classify(err, true); class {
	case ClassOutcomeUnknown, ClassNotSent, ClassReadOnly:
		if connectionLost(err) || class == ClassReadOnly {
			t.owner.reportCall(t.idx, true, class, err)
		}
	}
}

// lostOrRefused reports whether fnErr, returned by RunInTx's function,
// came from the node losing or refusing the transaction rather than from
// the caller: it holds an error one of the transaction's statements
// returned, or it is a connection-level error and the ROLLBACK after it
// (rbErr) found the connection gone too.
func (t *Tx) lostOrRefused(fnErr, rbErr error) bool {
	t.mu.Lock()
	errs := t.connErrs
	t.mu.Unlock()
	for _, e := range errs {
		if errors.Is(fnErr, e) {
			return true
		}
	}
	return connectionLost(fnErr) && !isDeadlock(fnErr) && rbErr != nil && connectionLost(rbErr)
}

// Node returns the address of the node the transaction runs on.
func (t *Tx) Node() string { return t.node }

// Tx returns the underlying *sql.Tx, for libraries that need one. Commit or
// Rollback may be called on either; call Commit on t to have its failure
// classified.
func (t *Tx) Tx() *sql.Tx { return t.tx }

// ExecContext runs a statement in the transaction. A failure that is not
// the server's own error matches ErrNotSent (the transaction was already
// over, or ctx had ended, before anything was sent) or ErrOutcomeUnknown
// (the connection broke).
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	done := ctx.Err() != nil
	res, err := t.tx.ExecContext(ctx, query, args...)
	return res, t.typed(OpTxExec, done, err)
}

// QueryContext runs a query in the transaction; its failures are typed as
// ExecContext's.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	done := ctx.Err() != nil
	rows, err := t.tx.QueryContext(ctx, query, args...)
	return rows, t.typed(OpTxQuery, done, err)
}

// QueryRowContext runs a query in the transaction that returns at most one
// row. Errors are deferred until Row's Scan is called. The *Row is the type
// Cluster.QueryRowContext returns.
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *Row {
	rows, err := t.QueryContext(ctx, query, args...)
	return &Row{rows: rows, err: err, tx: t}
}

// typed notes err and gives it the error class of a statement in the
// transaction: server errors as they are; not sent when the transaction was
// already over (sql.ErrTxDone) or ctx had ended before the call (ctxDone),
// as database/sql then sends nothing; otherwise by classify.
func (t *Tx) typed(op Op, ctxDone bool, err error) error {
	if err == nil {
		return nil
	}
	t.note(err)
	if errors.Is(err, sql.ErrTxDone) || ctxDone {
		return &notSentError{cluster: t.cluster, op: op, node: t.node, err: err}
	}
	if _, ok := err.(*OutcomeUnknownError); ok {
		return err // typed already (the rows of a query: nodeRows.readErr)
	}
	switch classify(err, true) {
	case ClassNotSent:
		return &notSentError{cluster: t.cluster, op: op, node: t.node, err: err}
	case ClassOutcomeUnknown:
		return &OutcomeUnknownError{Cluster: t.cluster, Node: t.node, Op: op, Err: err}
	}
	return err
}

// Commit commits the transaction and releases its connection.
func (t *Tx) Commit() error {
	err := t.tx.Commit()
	if err == nil {
		return nil
	}
	t.note(err)
	if errors.Is(err, sql.ErrTxDone) || t.pass != nil && !t.pass.commitSent.Load() {
		// database/sql did not send COMMIT: the transaction was already
		// committed or rolled back, or its context had ended (and
		// database/sql rolls it back).
		return &notSentError{cluster: t.cluster, op: OpCommit, node: t.node, err: err}
	}
	switch classify(err, true) {
	case ClassNotSent:
		return &notSentError{cluster: t.cluster, op: OpCommit, node: t.node, err: err}
	case ClassOutcomeUnknown:
		return &OutcomeUnknownError{Cluster: t.cluster, Node: t.node, Op: OpCommit, Err: err}
	}
	return err
}

// Rollback aborts the transaction and releases its connection.
func (t *Tx) Rollback() error {
	return t.tx.Rollback()
}

// errDeadlock is ER_LOCK_DEADLOCK: the server rolled the whole transaction
// back.
const errDeadlock = 1213

// RunInTx runs fn in a transaction on the writer and commits it.
//
// When the transaction fails before its COMMIT was sent, nothing of it was
// applied: the node's connection was lost (the server rolls back an
// unfinished transaction when its client goes), the node refused writes as
// read-only, or the server rolled it back as a deadlock victim. RunInTx
// then rolls back and runs fn again from the start, in a new transaction on
// the writer of that moment (the next node if this one failed), up to
// Settings.TxAttempts times in all (DefaultTxAttempts, 5, unless set) and
// while ctx lasts. A COMMIT that provably was
// not sent, or that the server refused (read_only was set meanwhile, or a
// deadlock), is re-run the same way. A COMMIT whose answer was lost returns
// the *OutcomeUnknownError and is never re-run.
//
// Only what the transaction's own connection said decides a re-run: an
// error of one of tx's statements (connection lost, read-only refusal,
// deadlock) that fn returned, wrapped or not, or a connection-level error
// (a net.Error, EOF) when the ROLLBACK that follows also finds the
// connection gone. Any other error returned by fn — the caller's own, even
// a network timeout of its own HTTP call, or a server error such as a
// duplicate key — rolls the transaction back and is returned as is;
// when ctx ended before COMMIT, the error also matches ErrNotSent.
// fn should only run statements on tx: anything else it does may happen
// more than once. Statements that commit implicitly (DDL) or write
// non-transactional tables must not be used in fn.
func (c *Cluster) RunInTx(ctx context.Context, opts *sql.TxOptions, fn func(ctx context.Context, tx *Tx) error) error {
	var (
		last     error
		lastNode string
	)
	for attempt := 1; attempt <= c.settings.TxAttempts; attempt++ {
		if attempt > 1 {
			if err := ctx.Err(); err != nil {
				return &notSentError{cluster: c.name, op: OpTransaction, err: err, tried: []*NodeError{{Node: lastNode, Class: ClassNotSent, Err: last}}}
			}
		}
		tx, err := c.BeginTx(ctx, opts)
		if err != nil {
			return err // not sent: BeginTx already tried every node
		}
		lastNode = tx.Node()
		if err := fn(ctx, tx); err != nil {
			rbErr := tx.Rollback()
			if ctx.Err() != nil {
				if errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrNotSent) {
					return err // already typed (by tx's statements or another call fn made)
				}
				// No COMMIT was sent: nothing of the transaction applied.
				return &notSentError{cluster: c.name, op: OpTransaction, node: tx.Node(), err: err}
			}
			if !tx.lostOrRefused(err, rbErr) {
				return err
			}
			last = err
			c.txRerun(attempt, err)
			backoff(ctx, err)
			continue
		}
		err = tx.Commit()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrNotSent) && !errors.Is(err, sql.ErrTxDone) || isDeadlock(err) || classify(err, true) == ClassReadOnly {
			// Not sent, or refused (deadlock victim, read_only set while
			// the transaction was open): nothing was applied.
			last = err
			c.txRerun(attempt, err)
			backoff(ctx, err)
			continue
		}
		return err
	}
	return &NoNodeError{Cluster: c.name, Op: OpTransaction, Runs: c.settings.TxAttempts, Attempts: []*NodeError{{Node: lastNode, Class: ClassNotSent, Err: last}}}
}

// rerunnable reports whether a statement's failure inside a transaction
// (before its COMMIT) means the node lost or refused it, so that it left
// no trace and may be run again.
func rerunnable(err error) bool {
	if isDeadlock(err) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return isReadOnlyRefusal(me)
	}
	return connectionLost(err)
}

func isDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == errDeadlock
}

// connectionLost reports whether err says the connection to the node failed
// (as opposed to the caller's own error or a context ending).
func connectionLost(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ce *connectError
	var ne net.Error
	return errors.As(err, &ce) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne)
}

// backoff pauses briefly before re-running a transaction: long enough for a
// deadlock's other party to finish, short next to a failover.
func backoff(ctx context.Context, err error) {
	d := time.Millisecond
	if isDeadlock(err) {
		d = time.Duration(1+rand.IntN(10)) * time.Millisecond
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
