package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/stretchr/testify/require"
)

// TestReloadUnderLoad moves a shard map's key from one cluster to another
// with Router.Reload while 8 goroutines route and write through it, with a
// transaction open on the cluster being removed. In-flight work finishes on
// the cluster it started on, the removed cluster is closed only after that,
// an invalid reload is rejected whole, and every acknowledged write is on
// the cluster it was routed to, exactly once.
func TestReloadUnderLoad(t *testing.T) {
	h := ringtest.New(t, ringtest.Options{Clusters: 3, Nodes: 1, Password: ringPassword})
	base := func(mapTo string, clusters ...int) *dbrouter.Config {
		cfg := &dbrouter.Config{
			Defaults:  dbrouter.Settings{User: "app", Password: ringPassword, Database: "ringtest"},
			Clusters:  map[string]dbrouter.ClusterConfig{},
			ShardMaps: map[string]dbrouter.ShardMapConfig{"m": {Strategy: "directory", Entries: map[string]string{"k": mapTo}}},
			Logger:    slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		}
		for _, k := range clusters {
			cfg.Clusters[fmt.Sprintf("c%d", k)] = dbrouter.ClusterConfig{Nodes: h.Ring(k).Addrs()}
		}
		return cfg
	}
	r, err := dbrouter.Open(base("c0", 0, 1, 2))
	require.NoError(t, err)
	defer r.Close()
	ctx := testContext(t, 60*time.Second)
	for _, name := range r.Clusters() {
		c, _ := r.Cluster(name)
		_, err := c.ExecContext(ctx, "CREATE TABLE w (id VARCHAR(64) PRIMARY KEY, cluster VARCHAR(8) NOT NULL)")
		require.NoError(t, err)
	}
	c2before, _ := r.Cluster("c2")

	// A transaction on c0 stays open across the reload that removes c0.
	c0, _ := r.Route("m", "k")
	tx, err := c0.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "INSERT INTO w VALUES ('tx-before-reload', 'c0')")
	require.NoError(t, err)

	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		mu      sync.Mutex
		acked   = map[string]string{} // id → cluster it was routed to
		retried atomic.Int64
	)
	for w := range 8 {
		wg.Go(func() {
			for seq := 0; !stop.Load(); seq++ {
				id := fmt.Sprintf("w%d-%d", w, seq)
				for {
					c, err := r.Route("m", "k")
					if err != nil {
						t.Errorf("Route: %v", err)
						return
					}
					_, err = c.ExecContext(ctx, "INSERT INTO w VALUES (?, ?)", id, c.Name())
					if errors.Is(err, dbrouter.ErrClosed) && errors.Is(err, dbrouter.ErrNotSent) {
						retried.Add(1) // routed just before the reload retired it
						continue
					}
					if err != nil {
						t.Errorf("insert %s on %s: %v", id, c.Name(), err)
						return
					}
					mu.Lock()
					acked[id] = c.Name()
					mu.Unlock()
					break
				}
			}
		})
	}
	ackedOn := func(cl string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, c := range acked {
				if c == cl {
					n++
				}
			}
			return n >= 100
		}
	}
	require.Eventually(t, ackedOn("c0"), waitTimeout, tick, "100 writes on c0 before the reload")

	// An invalid configuration is rejected whole.
	bad := base("c9", 1, 2)
	if err := r.Reload(bad); err == nil {
		t.Fatal("Reload of a map naming an unknown cluster succeeded")
	} else {
		t.Logf("rejected as expected: %v", err)
	}
	if c, _ := r.Route("m", "k"); c.Name() != "c0" {
		t.Fatalf("after a rejected reload the key routes to %s, want c0", c.Name())
	}

	require.NoError(t, r.Reload(base("c1", 1, 2)))
	if c, _ := r.Route("m", "k"); c.Name() != "c1" {
		t.Fatalf("after reload the key routes to %s, want c1", c.Name())
	}
	if c2, _ := r.Cluster("c2"); c2 != c2before {
		t.Error("an unchanged cluster was replaced by Reload")
	}
	if _, err := r.Cluster("c0"); !errors.Is(err, dbrouter.ErrUnknownCluster) {
		t.Errorf("removed cluster still served: %v", err)
	}
	// The open transaction finishes on c0, which is not closed before.
	if _, err := tx.ExecContext(ctx, "INSERT INTO w VALUES ('tx-after-reload', 'c0')"); err != nil {
		t.Fatalf("transaction on the removed cluster, after Reload: %v", err)
	}
	require.Eventually(t, ackedOn("c1"), waitTimeout, tick, "100 writes on c1 while the transaction on c0 is open")
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit on the removed cluster: %v", err)
	}
	stop.Store(true)
	wg.Wait()
	// The removed cluster refuses new calls once drained.
	if _, err := c0.ExecContext(ctx, "SELECT 1"); !errors.Is(err, dbrouter.ErrClosed) {
		t.Errorf("call on the removed cluster after its drain: %v", err)
	}

	// Every acknowledged id is on the cluster it was routed to, once.
	perCluster := map[string]int{}
	for id, cl := range acked {
		perCluster[cl]++
		k := int(cl[1] - '0')
		var n int
		require.NoError(t, h.Ring(k).AdminDB(0).QueryRowContext(ctx, "SELECT COUNT(*) FROM ringtest.w WHERE id = ?", id).Scan(&n))
		if n != 1 {
			t.Errorf("id %s acknowledged on %s is there %d times", id, cl, n)
		}
	}
	var total int
	for k := range 2 {
		var n int
		h.Ring(k).AdminDB(0).QueryRowContext(ctx, "SELECT COUNT(*) FROM ringtest.w WHERE id LIKE 'w%'").Scan(&n)
		total += n
	}
	if total != len(acked) {
		t.Errorf("%d rows on c0+c1, %d acknowledged: a write that was not acknowledged was applied", total, len(acked))
	}
	t.Logf("acknowledged writes: %v; calls retried after landing on the retired cluster: %d", perCluster, retried.Load())
	if perCluster["c0"] == 0 || perCluster["c1"] == 0 {
		t.Errorf("writes per cluster %v: want some on each side of the reload", perCluster)
	}
}

// TestWatchConfigFile reloads a router when its YAML file changes, and
// keeps the old configuration when the new file is invalid.
func TestWatchConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dbrouter.yaml")
	write := func(cluster string) {
		yaml := fmt.Sprintf("defaults: {user: app}\nclusters: {c1: {nodes: ['127.0.0.1:1']}, c2: {nodes: ['127.0.0.1:2']}}\nshard_maps: {m: {strategy: directory, entries: {k: %s}}}\n", cluster)
		require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	}
	write("c1")
	cfg, err := dbrouter.LoadConfig(path)
	require.NoError(t, err)
	r, err := dbrouter.Open(cfg)
	require.NoError(t, err)
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 10)
	go r.WatchConfigFile(ctx, path, 10*time.Millisecond, func(err error) { errs <- err })
	routesTo := func(want string) bool {
		c, err := r.Route("m", "k")
		return err == nil && c.Name() == want
	}
	write("c2") // whichever content the watcher reads first, it ends on c2
	require.Eventually(t, func() bool { return routesTo("c2") }, waitTimeout, tick, "reload to c2")
	write("c7")
	select {
	case err := <-errs:
		t.Logf("rejected as expected: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("an invalid file was not reported")
	}
	if !routesTo("c2") {
		t.Fatal("an invalid file changed the routing")
	}
}
