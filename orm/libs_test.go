package orm

// The four libraries, each driving the *sql.DB of Router.OpenDB (bun: of
// the "dbrouter" driver, from a DSN) through its own API: a single
// INSERT, two INSERTs in one transaction, and a read of ids.

import (
	"context"
	"database/sql"
	"testing"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/orm/sqlcdb"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// client is one library's way to write and read table t.
type client struct {
	insert func(ctx context.Context, id string, w int) error
	// tx writes a and b in one transaction, calling mid (if not nil)
	// between the two.
	tx   func(ctx context.Context, a, b string, w int, mid func()) error
	list func(ctx context.Context, prefix string) ([]string, error)
}

// library opens a client over a router whose cluster "ring" is
// registered as router "ormtest".
type library struct {
	name string
	open func(t *testing.T, r *dbrouter.Router) client
}

var libraries = []library{
	{"gorm", openGorm},
	{"sqlc", openSqlc},
	{"sqlx", openSqlx},
	{"bun", openBun},
}

func call(f func()) {
	if f != nil {
		f()
	}
}

func openDB(t *testing.T, r *dbrouter.Router) *sql.DB {
	t.Helper()
	db, err := r.OpenDB("ring")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// gormRow is table t for gorm.
type gormRow struct {
	Pk     int64  `gorm:"column:pk;primaryKey"`
	ID     string `gorm:"column:id"`
	Writer int    `gorm:"column:writer"`
	Node   int    `gorm:"column:node"`
}

func (gormRow) TableName() string { return "t" }

func openGorm(t *testing.T, r *dbrouter.Router) client {
	g, err := gorm.Open(mysql.New(mysql.Config{Conn: openDB(t, r)}), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	create := func(g *gorm.DB, id string, w int) error {
		return g.Model(&gormRow{}).Create(map[string]any{"id": id, "writer": w, "node": gorm.Expr("@@server_id")}).Error
	}
	return client{
		insert: func(ctx context.Context, id string, w int) error { return create(g.WithContext(ctx), id, w) },
		tx: func(ctx context.Context, a, b string, w int, mid func()) error {
			return g.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
				if err := create(tx, a, w); err != nil {
					return err
				}
				call(mid)
				return create(tx, b, w)
			})
		},
		list: func(ctx context.Context, prefix string) ([]string, error) {
			var ids []string
			err := g.WithContext(ctx).Model(&gormRow{}).Where("id LIKE ?", prefix+"%").Pluck("id", &ids).Error
			return ids, err
		},
	}
}

func openSqlc(t *testing.T, r *dbrouter.Router) client {
	db := openDB(t, r)
	q := sqlcdb.New(db)
	return client{
		insert: func(ctx context.Context, id string, w int) error {
			return q.InsertRow(ctx, sqlcdb.InsertRowParams{ID: id, Writer: int32(w)})
		},
		tx: func(ctx context.Context, a, b string, w int, mid func()) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			qtx := q.WithTx(tx)
			if err := qtx.InsertRow(ctx, sqlcdb.InsertRowParams{ID: a, Writer: int32(w)}); err != nil {
				return err
			}
			call(mid)
			if err := qtx.InsertRow(ctx, sqlcdb.InsertRowParams{ID: b, Writer: int32(w)}); err != nil {
				return err
			}
			return tx.Commit()
		},
		list: func(ctx context.Context, prefix string) ([]string, error) { return q.ListIDsWithPrefix(ctx, prefix) },
	}
}

const namedInsert = "INSERT INTO t (id, writer, node) VALUES (:id, :writer, @@server_id)"

func openSqlx(t *testing.T, r *dbrouter.Router) client {
	x := sqlx.NewDb(openDB(t, r), "mysql")
	return client{
		insert: func(ctx context.Context, id string, w int) error {
			_, err := x.NamedExecContext(ctx, namedInsert, map[string]any{"id": id, "writer": w})
			return err
		},
		tx: func(ctx context.Context, a, b string, w int, mid func()) error {
			tx, err := x.BeginTxx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			for i, id := range []string{a, b} {
				if i == 1 {
					call(mid)
				}
				if _, err := tx.NamedExecContext(ctx, namedInsert, map[string]any{"id": id, "writer": w}); err != nil {
					return err
				}
			}
			return tx.Commit()
		},
		list: func(ctx context.Context, prefix string) ([]string, error) {
			var ids []string
			if err := x.SelectContext(ctx, &ids, "SELECT id FROM t WHERE id LIKE ?", prefix+"%"); err != nil {
				return nil, err
			}
			var n int
			if err := x.GetContext(ctx, &n, "SELECT COUNT(*) FROM t WHERE id LIKE ?", prefix+"%"); err != nil {
				return nil, err
			}
			if n != len(ids) {
				return nil, errMismatch
			}
			return ids, nil
		},
	}
}

type mismatchError struct{}

func (mismatchError) Error() string { return "sqlx: Get and Select disagree" }

var errMismatch = mismatchError{}

// bunRow is table t for bun.
type bunRow struct {
	bun.BaseModel `bun:"table:t"`
	Pk            int64  `bun:"pk,pk,autoincrement"`
	ID            string `bun:"id"`
	Writer        int    `bun:"writer"`
	Node          int    `bun:"node"`
}

// openBun opens its *sql.DB from a DSN, through the "dbrouter" driver.
func openBun(t *testing.T, _ *dbrouter.Router) client {
	sqldb, err := sql.Open(dbrouter.DriverName, "ormtest/ring")
	require.NoError(t, err)
	t.Cleanup(func() { sqldb.Close() })
	b := bun.NewDB(sqldb, mysqldialect.New())
	insert := func(ctx context.Context, db bun.IDB, id string, w int) error {
		_, err := db.NewInsert().Model(&bunRow{ID: id, Writer: w}).Value("node", "@@server_id").Exec(ctx)
		return err
	}
	return client{
		insert: func(ctx context.Context, id string, w int) error { return insert(ctx, b, id, w) },
		tx: func(ctx context.Context, a, bb string, w int, mid func()) error {
			return b.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				if err := insert(ctx, tx, a, w); err != nil {
					return err
				}
				call(mid)
				return insert(ctx, tx, bb, w)
			})
		},
		list: func(ctx context.Context, prefix string) ([]string, error) {
			var ids []string
			err := b.NewSelect().Model((*bunRow)(nil)).Column("id").Where("id LIKE ?", prefix+"%").Scan(ctx, &ids)
			return ids, err
		},
	}
}
