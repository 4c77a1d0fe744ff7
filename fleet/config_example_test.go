package fleet_test

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/fleet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A router of the fleet opens on the configuration stored in etcd, then
// follows every change of it. Passwords stay out of etcd as ${VAR}
// references, expanded from each router's environment. (Compiled, not
// run: it needs an etcd.)
func ExampleWatchConfig() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()

	// What YAML cannot carry: the logger, an event hook, a WriterSource,
	// shard maps built in Go.
	base := &dbrouter.Config{Logger: slog.Default()}
	cfg, rev, err := fleet.LoadConfig(ctx, cli, fleet.DefaultPrefix, base)
	if err != nil {
		log.Fatal(err) // errors.Is(err, fleet.ErrNoConfig): nothing pushed yet
	}
	r, err := dbrouter.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	log.Printf("configuration revision %d", rev)

	go func() {
		err := fleet.WatchConfig(ctx, cli, fleet.DefaultPrefix, r, fleet.WatchOptions{
			Base: base,
			OnUpdate: func(u fleet.ConfigUpdate) {
				if u.Err != nil { // rejected: the router keeps its configuration
					log.Printf("configuration revision %d not applied: %v", u.Rev, u.Err)
				}
			},
		})
		log.Printf("config watch ended: %v", err)
	}()

	cust, err := r.Route("customers", "Smith") // per request: follows reloads
	if err != nil {
		log.Fatal(err)
	}
	_ = cust
}

// PutConfig stores a new configuration only if nobody changed the stored
// one since it was read: a read-modify-write that fails rather than
// overwrite someone else's change. (Compiled, not run: it needs an etcd.)
func ExamplePutConfig() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()

	_, rev, err := fleet.GetConfig(ctx, cli, fleet.DefaultPrefix)
	if err != nil && !errors.Is(err, fleet.ErrNoConfig) {
		log.Fatal(err)
	}
	// rev is 0 when there is none: PutConfig then only creates it.
	next, err := os.ReadFile("dbrouter.yaml") // passwords as ${DB_PASSWORD}
	if err != nil {
		log.Fatal(err)
	}
	newRev, err := fleet.PutConfig(ctx, cli, fleet.DefaultPrefix, next, rev)
	var ce *dbrouter.ConfigError
	switch {
	case errors.Is(err, fleet.ErrConfigConflict):
		log.Fatalf("someone else changed it; read it again: %v", err)
	case errors.As(err, &ce):
		log.Fatalf("invalid, nothing stored: %s: %s", ce.Field, ce.Msg)
	case err != nil:
		log.Fatal(err)
	}
	log.Printf("stored at revision %d", newRev)
}
