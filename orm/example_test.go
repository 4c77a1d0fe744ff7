package orm_test

import (
	"context"
	"database/sql"
	"errors"
	"log"
	"os"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/orm/sqlcdb"
	"github.com/jmoiron/sqlx"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
)

// openRouter opens the router every example uses: one cluster, "orders".
func openRouter() *dbrouter.Router {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: os.Getenv("DB_PASSWORD"), Database: "shop"},
		Clusters: map[string]dbrouter.ClusterConfig{"orders": {Nodes: []string{"10.0.1.1", "10.0.1.2", "10.0.1.3"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	return r
}

// Order is a row of table orders.
type Order struct {
	ID    int64
	Total int64
}

// gorm takes the *sql.DB of Router.OpenDB as its connection; its errors
// keep dbrouter's types for errors.Is, and db.Transaction stays on one
// node.
func Example_gorm() {
	r := openRouter()
	defer r.Close()
	db, err := r.OpenDB("orders")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	g, err := gorm.Open(mysql.New(mysql.Config{Conn: db}), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	err = g.Transaction(func(tx *gorm.DB) error {
		return tx.Create(&Order{Total: 100}).Error
	})
	if errors.Is(err, dbrouter.ErrOutcomeUnknown) {
		log.Print("may or may not be committed: check before running it again")
	}
}

// sqlc's generated Queries take any DBTX: the *sql.DB of Router.OpenDB,
// or a *sql.Tx begun on it.
func Example_sqlc() {
	r := openRouter()
	defer r.Close()
	db, err := r.OpenDB("orders")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	q := sqlcdb.New(db)
	if err := q.InsertRow(context.Background(), sqlcdb.InsertRowParams{ID: "order-1", Writer: 1}); err != nil {
		log.Print(err)
	}
}

// sqlx wraps the *sql.DB of Router.OpenDB under the "mysql" bind style.
func Example_sqlx() {
	r := openRouter()
	defer r.Close()
	db, err := r.OpenDB("orders")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	x := sqlx.NewDb(db, "mysql")
	ctx := context.Background()
	_, err = x.NamedExecContext(ctx, "INSERT INTO orders (total) VALUES (:total)", map[string]any{"total": 100})
	if err != nil {
		log.Print(err)
	}
	var orders []Order
	if err := x.SelectContext(ctx, &orders, "SELECT id, total FROM orders WHERE total > ?", 50); err != nil {
		log.Print(err)
	}
}

// bun takes a *sql.DB too; here it comes from a DSN through the "dbrouter"
// driver, which names a router registered by the program.
func Example_bun() {
	r := openRouter()
	defer r.Close()
	if err := dbrouter.RegisterRouter("app", r); err != nil {
		log.Fatal(err)
	}
	sqldb, err := sql.Open(dbrouter.DriverName, "app/orders")
	if err != nil {
		log.Fatal(err)
	}
	defer sqldb.Close()
	b := bun.NewDB(sqldb, mysqldialect.New())
	err = b.RunInTx(context.Background(), nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.NewInsert().Model(&Order{Total: 100}).Exec(ctx)
		return err
	})
	if err != nil {
		log.Print(err)
	}
}
