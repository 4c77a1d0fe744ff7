// source: query.sql

package sqlcdb

import (
	"context"
)

const countID = `-- name: CountID :one
SELECT COUNT(*) FROM t WHERE id = ?
`

// CountID returns how many rows have the id.
func (q *Queries) CountID(ctx context.Context, id string) (int64, error) {
	row := q.db.QueryRowContext(ctx, countID, id)
	var count int64
	err := row.Scan(&count)
	return count, err
}

const insertRow = `-- name: InsertRow :exec
INSERT INTO t (id, writer, node) VALUES (?, ?, @@server_id)
`

// InsertRowParams are the arguments of InsertRow.
type InsertRowParams struct {
	ID     string
	Writer int32
}

// InsertRow inserts a row, recording the server that ran it.
func (q *Queries) InsertRow(ctx context.Context, arg InsertRowParams) error {
	_, err := q.db.ExecContext(ctx, insertRow, arg.ID, arg.Writer)
	return err
}

const listIDsWithPrefix = `-- name: ListIDsWithPrefix :many
SELECT id FROM t WHERE id LIKE CONCAT(?, '%') ORDER BY id
`

// ListIDsWithPrefix returns the ids that begin with the prefix.
func (q *Queries) ListIDsWithPrefix(ctx context.Context, concat interface{}) ([]string, error) {
	rows, err := q.db.QueryContext(ctx, listIDsWithPrefix, concat)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		items = append(items, id)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return items, nil
}
