package dbrouter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/dbrouter/dbrouter"
)

// ParseConfig reads YAML, expands ${VAR} from the environment and validates
// the result; errors name the field and the value.
func ExampleParseConfig() {
	os.Setenv("DB_PASSWORD", "s3cret")
	cfg, err := dbrouter.ParseConfig([]byte(`
defaults:
  user: app
  password: ${DB_PASSWORD}
  database: shop
clusters:
  cust-1: { nodes: [10.0.1.1:3306, 10.0.1.2:3306, 10.0.1.3:3306] }   # order = failover order
`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Clusters["cust-1"].Nodes)

	_, err = dbrouter.ParseConfig([]byte(`
defaults: { user: app }
clusters:
  cust-1: { nodes: [10.0.1.1:3306, ":3306"] }
`))
	fmt.Println(err)
	// Output:
	// [10.0.1.1:3306 10.0.1.2:3306 10.0.1.3:3306]
	// dbrouter: config: clusters.cust-1.nodes[1]: ":3306": node address has no host
}

// A Config can also be a Go struct literal. Open does no network I/O, so it
// succeeds while the servers are down.
func ExampleOpen() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: os.Getenv("DB_PASSWORD"), Database: "shop"},
		Clusters: map[string]dbrouter.ClusterConfig{
			"logs-web3": {Nodes: []string{"127.0.0.1:1", "127.0.0.1:2"}},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	logs, err := r.Cluster("logs-web3")
	if err != nil {
		log.Fatal(err)
	}
	// Nodes are in failover order; with no server on these ports, the
	// writer (logs.WriterAddr()) depends on what the probes find.
	fmt.Println(logs.Name(), logs.Nodes())

	_, err = r.Cluster("logs-web4")
	fmt.Println(errors.Is(err, dbrouter.ErrUnknownCluster), err)
	// Output:
	// logs-web3 [127.0.0.1:1 127.0.0.1:2]
	// true dbrouter: unknown cluster "logs-web4" (configured: logs-web3)
}

// Every call reports how it went: errors.Is tells whether a failed write is
// safe to retry (ErrNotSent) or may have been applied (ErrOutcomeUnknown).
func ExampleOutcomeUnknownError() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app"},
		Clusters: map[string]dbrouter.ClusterConfig{"c": {Nodes: []string{"127.0.0.1:1"}}}, // nothing listens there
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	c, _ := r.Cluster("c")
	_, err = c.ExecContext(context.Background(), "INSERT INTO orders (id) VALUES (?)", 42)
	switch {
	case err == nil:
		fmt.Println("written")
	case errors.Is(err, dbrouter.ErrOutcomeUnknown):
		fmt.Println("may or may not be written: check before retrying")
	case errors.Is(err, dbrouter.ErrNotSent):
		fmt.Println("not written anywhere: safe to retry later")
	default:
		fmt.Println("the server refused it:", err)
	}
	// Output:
	// not written anywhere: safe to retry later
}

// A router on one three-node cluster: writes, reads and a transaction go to
// the cluster's writer, and the writer's *sql.DB serves any database/sql
// code. This example needs servers at the configured addresses, so it is
// compiled but not run; Example_ring in integration/example_test.go runs
// the same calls on a ring that it starts and checks their results.
func Example() {
	ctx := context.Background()
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: os.Getenv("DB_PASSWORD"), Database: "shop"},
		Clusters: map[string]dbrouter.ClusterConfig{"shop": {Nodes: []string{"db1:3306", "db2:3306", "db3:3306"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	shop, _ := r.Cluster("shop")

	if _, err := shop.ExecContext(ctx, "INSERT INTO customer VALUES (?, ?)", "Smith", 100); err != nil {
		log.Fatal(err)
	}

	tx, err := shop.BeginTx(ctx, nil) // pinned to the writer
	if err != nil {
		log.Fatal(err)
	}
	tx.ExecContext(ctx, "UPDATE customer SET balance = balance - 10 WHERE name = 'Smith'")
	tx.ExecContext(ctx, "UPDATE customer SET balance = balance + 10 WHERE name = 'Jones'")
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	var balance int
	if err := shop.QueryRowContext(ctx, "SELECT balance FROM customer WHERE name = ?", "Smith").Scan(&balance); err != nil {
		log.Fatal(err)
	}
	fmt.Println("Smith:", balance)

	// Code that needs one node's *sql.DB for a while (migrations) gets the
	// writer's pool, pinned to it; for ORMs, see Router.OpenDB.
	db := shop.Writer()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM customer").Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "customers")
}

// OpenDB gives gorm, sqlx, sqlc, bun or ent a plain *sql.DB that fails
// over: database/sql retries a call refused before anything was applied
// (driver.ErrBadConn) on a new connection, which goes to the new writer; a
// write whose connection was lost after sending is not retried.
func ExampleRouter_OpenDB() {
	ctx := context.Background()
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: os.Getenv("DB_PASSWORD"), Database: "shop"},
		Clusters: map[string]dbrouter.ClusterConfig{"shop": {Nodes: []string{"10.0.1.1", "10.0.1.2", "10.0.1.3"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	db, err := r.OpenDB("shop") // e.g. sqlx.NewDb(db, "mysql"), gorm's mysql.Config{Conn: db}
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "INSERT INTO customer VALUES (?, ?)", "Smith", 100)
	switch {
	case errors.Is(err, dbrouter.ErrOutcomeUnknown): // may or may not be applied: check before retrying
	case errors.Is(err, dbrouter.ErrNotSent): // applied nowhere (no node reachable): safe to retry
	}
}
