package dbrouter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/dbrouter/dbrouter"
)

// RunInTx runs a transaction on the writer and re-runs it on the next
// writer when it failed before its COMMIT was sent; the caller sees an
// error only when no attempt committed, or when the COMMIT's answer was
// lost (ErrOutcomeUnknown). WithIdempotent marks a statement that may be
// retried even after an outcome-unknown failure. This example needs servers
// at the configured addresses, so it is compiled but not run;
// Example_runInTx in integration/example_test.go kills the writer in the
// middle of the transaction on a ring that it starts.
func ExampleCluster_RunInTx() {
	ctx := context.Background()
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: os.Getenv("DB_PASSWORD"), Database: "bank"},
		Clusters: map[string]dbrouter.ClusterConfig{"bank": {Nodes: []string{"db1:3306", "db2:3306", "db3:3306"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	bank, _ := r.Cluster("bank")

	err = bank.RunInTx(ctx, nil, func(ctx context.Context, tx *dbrouter.Tx) error {
		// Only statements on tx: fn may run more than once.
		if _, err := tx.ExecContext(ctx, "UPDATE account SET balance = balance - 30 WHERE id = 1"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE account SET balance = balance + 30 WHERE id = 2")
		return err
	})
	switch {
	case err == nil:
		fmt.Println("transferred")
	case errors.Is(err, dbrouter.ErrOutcomeUnknown):
		fmt.Println("the COMMIT may have been applied: check before retrying")
	default:
		fmt.Println("not transferred:", err)
	}

	// Setting a fixed value twice does no harm.
	if _, err := bank.ExecContext(dbrouter.WithIdempotent(ctx), "UPDATE account SET balance = 0 WHERE id = 2"); err != nil {
		fmt.Println(err)
	}
}
