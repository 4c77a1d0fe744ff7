package dbrouter_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"sync"

	"github.com/dbrouter/dbrouter"
)

// outcomeCounter is an Observer that counts calls by outcome; embedding
// NopObserver lets it leave the other measurements alone.
type outcomeCounter struct {
	dbrouter.NopObserver
	mu    sync.Mutex
	calls map[dbrouter.Outcome]int
	tried map[string]int // failed attempts per node
}

func (o *outcomeCounter) CallDone(_ context.Context, c dbrouter.CallInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls[c.Outcome]++
	for _, a := range c.Attempts {
		o.tried[a.Node+" "+a.Class.String()]++
	}
}

// ExampleObserver counts calls by outcome class with a hand-written
// Observer; the prometheus and otel modules are ready-made ones
// (docs/observability.md). Nothing listens on these ports: the write finds
// no node.
func ExampleObserver() {
	obs := &outcomeCounter{calls: map[dbrouter.Outcome]int{}, tried: map[string]int{}}
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Health: dbrouter.HealthConfig{Disabled: true}},
		Clusters: map[string]dbrouter.ClusterConfig{"orders": {Nodes: []string{"127.0.0.1:1", "127.0.0.1:2"}}},
		Logger:   slog.New(slog.DiscardHandler),
		Observer: obs,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	orders, _ := r.Cluster("orders")
	_, err = orders.ExecContext(context.Background(), "INSERT INTO orders (id) VALUES (?)", 42)
	fmt.Println(dbrouter.OutcomeOf(err))
	fmt.Println(obs.calls)
	fmt.Println(obs.tried)
	// Output:
	// no_node
	// map[no_node:1]
	// map[127.0.0.1:1 not sent:1 127.0.0.1:2 not sent:1]
}

// ExampleNodeStats_pools prints the statistics of the pools a router holds
// for each node: none until a call opens one.
func ExampleNodeStats_pools() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Health: dbrouter.HealthConfig{Disabled: true}},
		Clusters: map[string]dbrouter.ClusterConfig{"orders": {Nodes: []string{"127.0.0.1:1"}}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	orders, _ := r.Cluster("orders")
	fmt.Println(len(orders.Stats().Nodes[0].Pools))
	orders.ExecContext(context.Background(), "INSERT INTO orders (id) VALUES (1)") // fails: opens the write pool
	for _, p := range orders.Stats().Nodes[0].Pools {
		fmt.Println(p.Pool, p.OpenConnections, p.MaxOpenConnections)
	}
	// Output:
	// 0
	// write 0 0
}
