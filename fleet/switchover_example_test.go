package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/fleet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ExampleSwitchoverWith moves a cluster's writer for the whole fleet with
// the fleet's fence: the old writer is made read-only, the target catches
// up with it, and only then is the decision published. The hooks come from
// a dbrouter configuration naming an account that may SET GLOBAL
// read_only. On a refusal the old writer is writable again and stays the
// writer.
func ExampleSwitchoverWith() {
	cfg, err := dbrouter.LoadConfig("/etc/dbrouter/admin.yaml") // the nodes' admin credentials
	if err != nil {
		log.Fatal(err)
	}
	hooks, err := fleet.SQLHooks(cfg)
	if err != nil {
		log.Fatal(err)
	}
	hooks.CatchUpTimeout = 10 * time.Second

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"etcd1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	d, err := fleet.SwitchoverWith(ctx, cli, fleet.DefaultPrefix, "orders", "10.0.1.2:3306", "ops@bastion", hooks)
	if errors.Is(err, fleet.ErrSwitchoverRefused) {
		log.Fatalf("the writer stays: %v", err) // e.g. the target did not catch up in time
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("writer", d.Writer, "epoch", d.Epoch)
}
