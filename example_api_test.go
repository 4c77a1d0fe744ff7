package dbrouter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/dbrouter/dbrouter"
)

// Settings.ReadPolicy and Settings.Failback are typed strings: constants in
// Go, the same strings in YAML. Any other value is a *ConfigError naming
// the field and the value.
func ExampleReadPolicy() {
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", ReadPolicy: dbrouter.ReadRoundRobin, Failback: dbrouter.FailbackNever},
		Clusters: map[string]dbrouter.ClusterConfig{"logs": {Nodes: []string{"10.0.9.1", "10.0.9.2"}}},
	}
	fmt.Println(cfg.Validate())

	parsed, err := dbrouter.ParseConfig([]byte(`
defaults: { user: app, read_policy: any-up, failback: never }
clusters: { logs: { nodes: [10.0.9.1, 10.0.9.2] } }
`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(parsed.Defaults.ReadPolicy == dbrouter.ReadAnyUp, parsed.Defaults.Failback == dbrouter.FailbackNever)

	_, err = dbrouter.ParseConfig([]byte(`
defaults: { user: app, read_policy: nearest }
clusters: { logs: { nodes: [10.0.9.1] } }
`))
	fmt.Println(err)
	// Output:
	// <nil>
	// true true
	// dbrouter: config: defaults.read_policy: "nearest": unknown read policy; use "writer", "any-up" or "round-robin"
}

// Stats reports each node's health and its Role. It has no Output: which
// node is the writer depends on what the probes find.
func ExampleRouter_Stats() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app"},
		Clusters: map[string]dbrouter.ClusterConfig{"orders": {Nodes: []string{"10.0.1.1", "10.0.1.2"}}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	for _, cs := range r.Stats() {
		for _, n := range cs.Nodes {
			switch n.Role {
			case dbrouter.RoleWriter:
				fmt.Println(cs.Name, n.Addr, "takes the writes; state", n.State)
			case dbrouter.RoleReplica:
				fmt.Println(cs.Name, n.Addr, "replica; state", n.State, "lag", n.Lag)
			}
		}
	}
}

// A call that no node can take, a read as well as a write, returns a
// *NoNodeError listing each node's failure. Nothing listens on these ports;
// probes are off so that the order of the attempts is the configured one.
func ExampleNoNodeError() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Health: dbrouter.HealthConfig{Disabled: true}},
		Clusters: map[string]dbrouter.ClusterConfig{"orders": {Nodes: []string{"127.0.0.1:1", "127.0.0.1:2"}}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	orders, _ := r.Cluster("orders")
	var total int
	err = orders.QueryRowContext(context.Background(), "SELECT total FROM orders WHERE id = ?", 42).Scan(&total)
	var nn *dbrouter.NoNodeError
	if errors.As(err, &nn) {
		fmt.Println(nn.Cluster, nn.Op, errors.Is(err, dbrouter.ErrNoNode), errors.Is(err, dbrouter.ErrNotSent))
		for _, a := range nn.Attempts {
			fmt.Println(a.Node, a.Class)
		}
	}
	// Output:
	// orders query true true
	// 127.0.0.1:1 not sent
	// 127.0.0.1:2 not sent
}

// Errors name the operation that failed with an Op constant; RunInTx's
// count of runs, when it gives up, is in a field of its own (Runs).
func ExampleOp() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Health: dbrouter.HealthConfig{Disabled: true}},
		Clusters: map[string]dbrouter.ClusterConfig{"orders": {Nodes: []string{"127.0.0.1:1"}}}, // nothing listens there
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	orders, _ := r.Cluster("orders")
	ctx := context.Background()

	var nn *dbrouter.NoNodeError
	_, err = orders.ExecContext(ctx, "INSERT INTO orders (id) VALUES (?)", 42)
	if errors.As(err, &nn) {
		fmt.Println(nn.Op == dbrouter.OpExec, nn.Op, nn.Runs)
	}
	err = orders.RunInTx(ctx, nil, func(ctx context.Context, tx *dbrouter.Tx) error { return nil })
	if errors.As(err, &nn) {
		fmt.Println(nn.Op == dbrouter.OpBegin, nn.Op, nn.Runs) // no transaction could begin
	}
	// Output:
	// true exec 0
	// true begin 0
}

// PingContext checks that the cluster has a writer that answers, failing
// over like a read. Nothing listens on these ports: no node answers.
func ExampleCluster_PingContext() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app"},
		Clusters: map[string]dbrouter.ClusterConfig{"orders": {Nodes: []string{"127.0.0.1:1", "127.0.0.1:2"}}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	orders, _ := r.Cluster("orders")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = orders.PingContext(ctx)
	fmt.Println(err == nil, errors.Is(err, dbrouter.ErrNoNode), errors.Is(err, dbrouter.ErrNotSent))
	// Output:
	// false true true
}

// Settings.TxAttempts (YAML tx_attempts) bounds how many times RunInTx runs
// a transaction; zero means DefaultTxAttempts.
func ExampleSettings_txAttempts() {
	cfg, err := dbrouter.ParseConfig([]byte(`
defaults: { user: app }
clusters:
  orders:   { nodes: [10.0.1.1, 10.0.1.2], tx_attempts: 2 }
  payments: { nodes: [10.0.2.1, 10.0.2.2] }
`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Clusters["orders"].TxAttempts, cfg.Clusters["payments"].TxAttempts, dbrouter.DefaultTxAttempts)

	_, err = dbrouter.ParseConfig([]byte(`
defaults: { user: app, tx_attempts: -1 }
clusters: { orders: { nodes: [10.0.1.1] } }
`))
	fmt.Println(err)
	// Output:
	// 2 0 5
	// dbrouter: config: defaults.tx_attempts: "-1": must be at least 1 (0 means the default, 5)
}
