package dbrouter

import (
	"context"
	"database/sql"
	"sync"
)

// Tx is a transaction pinned to one connection on the node that was writer
// when it began. Its statements never fail over. Commit classifies its
// failures: a COMMIT that provably was not sent returns an error matching
// ErrNotSent (the transaction was rolled back by the server when the
// connection dropped), and one whose answer was lost returns an
// *OutcomeUnknownError.
//
// A Tx is not safe for concurrent use, like *sql.Tx.
type Tx struct {
	tx      *sql.Tx
	conn    *sql.Conn
	cluster string
	node    string
	release func() // releases the cluster's failback fence
	done    sync.Once
}

func (t *Tx) finish() {
	t.conn.Close()
	t.done.Do(t.release)
}

// Node returns the address of the node the transaction runs on.
func (t *Tx) Node() string { return t.node }

// Tx returns the underlying *sql.Tx, for libraries that need one. Commit and
// Rollback must still be called on t so that its connection is released.
func (t *Tx) Tx() *sql.Tx { return t.tx }

// ExecContext runs a statement in the transaction.
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, query, args...)
}

// QueryContext runs a query in the transaction.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a query in the transaction that returns at most one
// row.
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, query, args...)
}

// Commit commits the transaction and releases its connection.
func (t *Tx) Commit() error {
	defer t.finish()
	err := t.tx.Commit()
	if err == nil {
		return nil
	}
	switch classify(err, true) {
	case ClassNotSent:
		return &notSentError{cluster: t.cluster, op: "commit on " + t.node, err: err}
	case ClassOutcomeUnknown:
		return &OutcomeUnknownError{Cluster: t.cluster, Node: t.node, Op: "commit", Err: err}
	}
	return err
}

// Rollback aborts the transaction and releases its connection.
func (t *Tx) Rollback() error {
	defer t.finish()
	return t.tx.Rollback()
}
