package fleet_test

import (
	"context"
	"database/sql"
	"log"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/fleet"
	_ "github.com/go-sql-driver/mysql" // for the Demote hook's admin connection
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ExampleNew makes a router one of a fleet: the Coordinator is the
// router's WriterSource, so every cluster's writer is the fleet's decision
// (docs/fleet.md). Demote lets the decider make an old writer it can still
// reach read-only before it names a new one; it needs an account allowed to
// SET GLOBAL read_only, not the application's.
func ExampleNew() {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"etcd1:2379", "etcd2:2379", "etcd3:2379"},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	coord, err := fleet.New(cli, fleet.Options{
		RouterID: "web-1",                // unique among the fleet's routers
		EtcdLost: fleet.KeepLastDecision, // the default, spelled out
		Demote: func(ctx context.Context, cluster, addr string) error {
			db, err := sql.Open("mysql", "dbrouter-admin:admin-secret@tcp("+addr+")/")
			if err != nil {
				return err
			}
			defer db.Close()
			_, err = db.ExecContext(ctx, "SET GLOBAL read_only = ON")
			return err
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer coord.Close() // after the router's Close: deferred calls run last first

	cfg, err := dbrouter.LoadConfig("/etc/dbrouter.yaml")
	if err != nil {
		log.Fatal(err)
	}
	cfg.WriterSource = coord
	r, err := dbrouter.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
}
