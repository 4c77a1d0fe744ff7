package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/dbrouter/dbrouter/fleet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ExampleDrain takes a node out of service for every router of a fleet
// (for a disk replacement, say): the decider moves the writer off it and
// every router stops sending it calls; once the maintenance is over,
// Undrain puts it back. The writer stays where it moved.
func ExampleDrain() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"etcd1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const node = "10.0.1.1:3306"
	err = fleet.Drain(ctx, cli, fleet.DefaultPrefix, "orders", node, "ops@bastion")
	if errors.Is(err, fleet.ErrDrainRefused) {
		log.Fatalf("not drained: %v", err) // e.g. no other node could take the writer role
	}
	st, err := fleet.WaitDrained(ctx, cli, fleet.DefaultPrefix, "orders", node)
	if err != nil {
		log.Fatalf("the fleet has not followed yet (writer %s, routers pending %v): %v", st.Writer, st.Pending, err)
	}
	fmt.Println("writer now", st.Writer)
	// ... maintenance of node ...
	if _, err := fleet.Undrain(ctx, cli, fleet.DefaultPrefix, "orders", node); err != nil {
		log.Fatal(err)
	}
}
