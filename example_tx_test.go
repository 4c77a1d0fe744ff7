package dbrouter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
)

// RunInTx re-runs a transaction on the next writer when it failed before
// its COMMIT was sent; here the writer is killed while the transaction is
// open, and the transfer lands on node B. WithIdempotent marks a statement
// that may be retried even after an outcome-unknown failure.
func ExampleCluster_RunInTx() {
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
