package integration

// Runnable examples of the root package's entry points on real rings:
// they run with this package's tests and check their output. The root
// package's godoc shows the same code with a placeholder configuration
// (example_test.go and example_tx_test.go there), so that its tests need no
// server and no test harness.

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/jmoiron/sqlx"
)

// Example_ring runs against a real three-node MariaDB ring started by
// ringtest: writes, reads, a transaction, and sqlx on the writer's pool.
func Example_ring() {
	ctx := context.Background()
	h, err := ringtest.Start(ctx, ringtest.Options{Nodes: 3})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	ring := h.Ring(0)

	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: "app-secret", Database: "ringtest"},
		Clusters: map[string]dbrouter.ClusterConfig{"shop": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	shop, _ := r.Cluster("shop")

	if _, err := shop.ExecContext(ctx, "CREATE TABLE customer (name VARCHAR(40) PRIMARY KEY, balance INT)"); err != nil {
		log.Fatal(err)
	}
	if _, err := shop.ExecContext(ctx, "INSERT INTO customer VALUES (?, ?), (?, ?)", "Smith", 100, "Jones", 50); err != nil {
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

	// sqlx (or any database/sql code) on the writer's *sql.DB.
	db := sqlx.NewDb(shop.Writer(), "mysql")
	var names []string
	if err := db.SelectContext(ctx, &names, "SELECT name FROM customer ORDER BY name"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(names)

	// The ring replicated everything to the third node.
	if err := ring.WaitConverged(ctx); err != nil {
		log.Fatal(err)
	}
	ring.AdminDB(2).QueryRowContext(ctx, "SELECT balance FROM ringtest.customer WHERE name = 'Jones'").Scan(&balance)
	fmt.Println("Jones on node C:", balance)
	// Output:
	// Smith: 90
	// [Jones Smith]
	// Jones on node C: 60
}

// Example_runInTx is ExampleCluster_RunInTx on a real ring. RunInTx re-runs
// a transaction on the next writer when it failed before its COMMIT was
// sent; here the writer is killed while the transaction is open, and the
// transfer lands on node B. WithIdempotent marks a statement that may be
// retried even after an outcome-unknown failure.
func Example_runInTx() {
	ctx := context.Background()
	h, err := ringtest.Start(ctx, ringtest.Options{Nodes: 3})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	ring := h.Ring(0)
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: "app-secret", Database: "ringtest"},
		Clusters: map[string]dbrouter.ClusterConfig{"bank": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	bank, _ := r.Cluster("bank")
	if _, err := bank.ExecContext(ctx, "CREATE TABLE account (id INT PRIMARY KEY, balance INT NOT NULL)"); err != nil {
		log.Fatal(err)
	}
	if _, err := bank.ExecContext(ctx, "INSERT INTO account VALUES (1, 100), (2, 0)"); err != nil {
		log.Fatal(err)
	}
	// Replication is asynchronous: let B have the table before A dies.
	if err := ring.WaitConverged(ctx); err != nil {
		log.Fatal(err)
	}

	runs, node := 0, ""
	err = bank.RunInTx(ctx, nil, func(ctx context.Context, tx *dbrouter.Tx) error {
		runs++
		node = tx.Node()
		if _, err := tx.ExecContext(ctx, "UPDATE account SET balance = balance - 30 WHERE id = 1"); err != nil {
			return err
		}
		if runs == 1 {
			ring.Kill(0) // the writer dies before COMMIT: nothing of this run is applied
		}
		_, err := tx.ExecContext(ctx, "UPDATE account SET balance = balance + 30 WHERE id = 2")
		return err
	})
	fmt.Println("runs:", runs, "error:", err, "committed on node", indexOf(ring.Addrs(), node))

	var a, b int
	if err := bank.QueryRowContext(ctx, "SELECT balance FROM account WHERE id = 1").Scan(&a); err != nil {
		fmt.Println(err)
	}
	bank.QueryRowContext(ctx, "SELECT balance FROM account WHERE id = 2").Scan(&b)
	fmt.Println("balances:", a, b)

	// An idempotent statement: setting a fixed value twice does no harm.
	_, err = bank.ExecContext(dbrouter.WithIdempotent(ctx), "UPDATE account SET balance = 0 WHERE id = 2")
	fmt.Println("idempotent update:", err, errors.Is(err, dbrouter.ErrOutcomeUnknown))
	// Output:
	// runs: 2 error: <nil> committed on node 1
	// balances: 70 30
	// idempotent update: <nil> false
}

func indexOf(addrs []string, a string) int {
	for i, x := range addrs {
		if x == a {
			return i
		}
	}
	return -1
}
