package dbrouter_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/dbrouter/dbrouter"
)

// ExampleCluster_Switchover takes the writer out of service for
// maintenance: the role moves to the next node without failing a call,
// the old writer is made read-only over an administrator's connection, and
// after the maintenance the role moves back.
func ExampleCluster_Switchover() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: "secret", Database: "shop"},
		Clusters: map[string]dbrouter.ClusterConfig{"orders": {Nodes: []string{"db1", "db2", "db3"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	orders, _ := r.Cluster("orders")
	var admin map[string]*sql.DB // an administrator's pool per node, opened elsewhere

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := &dbrouter.SwitchoverOptions{
		ReadOnly: func(ctx context.Context, addr string, on bool) error {
			_, err := admin[addr].ExecContext(ctx, fmt.Sprintf("SET GLOBAL read_only = %t", on))
			return err
		},
	}
	opts.DrainTimeout = 10 * time.Second // for the calls still running on old once it is drained
	old := orders.WriterAddr()
	switch err := orders.Drain(ctx, old, opts); {
	case errors.Is(err, dbrouter.ErrSwitchoverRefused):
		log.Fatalf("the writer stays on %s: %v", old, err)
	case errors.Is(err, dbrouter.ErrDrainTimeout):
		log.Printf("%s is drained, but calls still run there: %v", old, err)
	case err != nil:
		log.Fatal(err)
	}
	// ... maintenance of old; then, once it is writable again:
	if err := orders.Undrain(old); err != nil {
		log.Fatal(err)
	}
	if err := orders.Switchover(ctx, old, opts); err != nil {
		log.Fatal(err)
	}
}
