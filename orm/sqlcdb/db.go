// Package sqlcdb is what sqlc generates for query.sql and schema.sql
// (engine mysql), written by hand in the exact shape of sqlc's output so
// that it needs no sqlc binary: a DBTX interface that a *sql.DB, a
// *sql.Tx or a *sql.Conn satisfies, and Queries over it. Given the
// *sql.DB of dbrouter's Router.OpenDB, its queries fail over.
package sqlcdb

import (
	"context"
	"database/sql"
)

// DBTX is what Queries runs its statements on: a *sql.DB, *sql.Tx or
// *sql.Conn.
type DBTX interface {
	ExecContext(context.Context, string, ...interface{}) (sql.Result, error)
	PrepareContext(context.Context, string) (*sql.Stmt, error)
	QueryContext(context.Context, string, ...interface{}) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...interface{}) *sql.Row
}

// New returns the queries of query.sql over db.
func New(db DBTX) *Queries {
	return &Queries{db: db}
}

// Queries runs the queries of query.sql.
type Queries struct {
	db DBTX
}

// WithTx returns the queries over the transaction tx.
func (q *Queries) WithTx(tx *sql.Tx) *Queries {
	return &Queries{
		db: tx,
	}
}
