package dbrouter_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"

	"github.com/dbrouter/dbrouter"
)

// RegisterRouter gives code that only takes a driver name and a DSN (a
// framework's config, a migration tool) the *sql.DB of Router.OpenDB:
// the DSN names the registered router and a cluster.
func ExampleRegisterRouter() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: os.Getenv("DB_PASSWORD"), Database: "shop"},
		Clusters: map[string]dbrouter.ClusterConfig{"shop": {Nodes: []string{"10.0.1.1", "10.0.1.2"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	if err := dbrouter.RegisterRouter("app", r); err != nil {
		log.Fatal(err)
	}
	defer dbrouter.DeregisterRouter("app")

	db, err := sql.Open(dbrouter.DriverName, "app/shop") // writes: to the writer, failing over
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	reads, err := sql.Open(dbrouter.DriverName, "app/shop?read=true") // reads: per read_policy
	if err != nil {
		log.Fatal(err)
	}
	defer reads.Close()
	var n int
	if err := reads.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM customer").Scan(&n); err != nil {
		log.Fatal(err)
	}
}

// Driver checks the DSN in sql.Open: a malformed DSN, an unknown router or
// an unknown cluster is an error naming the part and its value.
func ExampleDriver() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Health: dbrouter.HealthConfig{Disabled: true}},
		Clusters: map[string]dbrouter.ClusterConfig{"shop": {Nodes: []string{"127.0.0.1:1"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	if err := dbrouter.RegisterRouter("example", r); err != nil {
		log.Fatal(err)
	}
	defer dbrouter.DeregisterRouter("example")
	for _, dsn := range []string{"example", "nobody/shop", "example/stock", "example/shop?read=maybe"} {
		_, err := sql.Open(dbrouter.DriverName, dsn)
		fmt.Println(err)
	}
	// Output:
	// dbrouter: config: dsn: "example": no '/' between router and cluster; want ROUTER/CLUSTER or ROUTER/CLUSTER?read=true
	// dbrouter: config: dsn router: "nobody": no router registered under this name with dbrouter.RegisterRouter (registered: example)
	// dbrouter: dsn "example/stock": dbrouter: unknown cluster "stock" (configured: shop)
	// dbrouter: config: dsn parameter read: "maybe": want "true" or "false"
}

// OpenReadDB gives a library a *sql.DB for reads: its connections go to
// the nodes the cluster's read_policy chooses, in read-only sessions.
func ExampleRouter_OpenReadDB() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: os.Getenv("DB_PASSWORD"), Database: "shop", ReadPolicy: dbrouter.ReadAnyUp},
		Clusters: map[string]dbrouter.ClusterConfig{"shop": {Nodes: []string{"10.0.1.1", "10.0.1.2", "10.0.1.3"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	reads, err := r.OpenReadDB("shop") // e.g. sqlx.NewDb(reads, "mysql") for reports
	if err != nil {
		log.Fatal(err)
	}
	defer reads.Close()
	var n int
	if err := reads.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM customer").Scan(&n); err != nil {
		log.Fatal(err)
	}
}
