-- name: InsertRow :exec
INSERT INTO t (id, writer, node) VALUES (?, ?, @@server_id);

-- name: CountID :one
SELECT COUNT(*) FROM t WHERE id = ?;

-- name: ListIDsWithPrefix :many
SELECT id FROM t WHERE id LIKE CONCAT(?, '%') ORDER BY id;
