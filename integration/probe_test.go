package integration

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/stretchr/testify/require"
)

// probeCount counts the probes a router runs, per node address.
type probeCount struct {
	dbrouter.NopObserver
	n atomic.Int64
}

func (p *probeCount) ProbeDone(dbrouter.ProbeInfo) { p.n.Add(1) }

// TestProbeBoundedWithReadTimeout: with read_timeout and write_timeout set
// (the driver then sets socket deadlines of its own), a probe of a frozen
// node still ends at the probe timeout, not at read_timeout: the writer
// is Down within about a second, not 30.
func TestProbeBoundedWithReadTimeout(t *testing.T) {
	t.Parallel()
	ring, _, c := startRing(t, 3, func(cfg *dbrouter.Config) {
		cfg.Defaults.ReadTimeout = 30 * time.Second
		cfg.Defaults.WriteTimeout = 30 * time.Second
	})
	waitSettled(t, ring, c)
	frozeAt := time.Now()
	require.NoError(t, ring.Freeze(0))
	t.Cleanup(func() { ring.Thaw(0) })
	require.Eventually(t, func() bool { return c.Stats().Nodes[0].State == dbrouter.StateDown }, 10*time.Second, tick, "A down")
	t.Logf("frozen writer Down %v after the freeze (read_timeout 30s)", time.Since(frozeAt).Round(time.Millisecond))
}

// TestCloseWithFrozenNodeIsPrompt: Close does not wait for a probe hanging
// on a frozen node until its timeout (here 10 s): the probe's socket
// deadline is cut short.
func TestCloseWithFrozenNodeIsPrompt(t *testing.T) {
	t.Parallel()
	ring, r, c := startRing(t, 3, func(cfg *dbrouter.Config) {
		cfg.Defaults.Health.Timeout = 10 * time.Second
	})
	waitSettled(t, ring, c)
	require.NoError(t, ring.Freeze(1))
	t.Cleanup(func() { ring.Thaw(1) })
	// A probe of B is due every 250 ms: one is now waiting on it.
	time.Sleep(600 * time.Millisecond)
	start := time.Now()
	require.NoError(t, r.Close())
	took := time.Since(start)
	t.Logf("Close with a probe waiting on a frozen node (timeout 10s): %v", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("Close took %v: it waited for the probe of the frozen node", took)
	}
}

// TestIdleClusterProbedLessOnRing: on a real ring, a cluster no call uses
// is probed about once per idle_interval per node, and a call brings the
// default rate back.
func TestIdleClusterProbedLessOnRing(t *testing.T) {
	t.Parallel()
	probes := &probeCount{}
	ring, _, c := startRing(t, 3, func(cfg *dbrouter.Config) { cfg.Observer = probes })
	waitSettled(t, ring, c)
	// No call for twice idle_interval, then one idle_interval for every
	// node to be on it.
	time.Sleep(3*dbrouter.DefaultIdleInterval + 500*time.Millisecond)
	n0 := probes.n.Load()
	time.Sleep(2 * time.Second)
	idle := probes.n.Load() - n0
	ctx := testContext(t, 10*time.Second)
	deadline := time.Now().Add(2 * time.Second)
	n1 := probes.n.Load()
	for time.Now().Before(deadline) {
		_, err := c.ExecContext(ctx, "INSERT INTO t (id) VALUES ('idle')")
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond)
	}
	busy := probes.n.Load() - n1
	t.Logf("probes in 2 s: idle cluster %d (3 nodes every %v: 6), in use %d (every %v: 24)", idle, dbrouter.DefaultIdleInterval, busy, dbrouter.DefaultProbeInterval)
	if idle > 12 {
		t.Errorf("%d probes in 2 s of an idle cluster, want about 6", idle)
	}
	if busy < 15 {
		t.Errorf("%d probes in 2 s of a cluster in use, want about 24", busy)
	}
	for _, nd := range c.Stats().Nodes {
		require.Equal(t, dbrouter.StateUp, nd.State, nd.Addr)
	}
}

// TestProbeConnectionsTakenOver: the router takes its probe connections
// over from go-sql-driver, so they hold no driver goroutine: 40 clusters
// of the same 3 servers in use (no calls, so no pooled connection either)
// run no go-sql-driver watcher goroutine, and every node is Up with the
// right writer and positions.
func TestProbeConnectionsTakenOver(t *testing.T) {
	ring, r0, c0 := startRing(t, 3, nil)
	waitSettled(t, ring, c0)
	// The set-up router's pools (warm connections of a cluster in use)
	// would be counted: close it first.
	r0.Close()
	time.Sleep(300 * time.Millisecond)
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: ringPassword, Database: "ringtest"},
		Clusters: map[string]dbrouter.ClusterConfig{},
		Logger:   slog.New(slog.DiscardHandler),
	}
	for i := range 40 {
		cfg.Clusters[fmt.Sprintf("c%02d", i)] = dbrouter.ClusterConfig{Nodes: ring.Addrs()}
	}
	before := driverWatchers()
	r, err := dbrouter.Open(cfg)
	require.NoError(t, err)
	defer r.Close()
	for _, name := range r.Clusters() {
		c, err := r.Cluster(name)
		require.NoError(t, err)
		require.Equal(t, ring.Addr(0), c.WriterAddr(), name)
	}
	time.Sleep(time.Second) // several probes of every node
	after := driverWatchers()
	t.Logf("go-sql-driver watcher goroutines: %d before Open, %d with 40 clusters × 3 nodes probed", before, after)
	// 120 probe connections held by the driver would add 120; a few may
	// come and go with the harness's own connections.
	if after-before >= 10 {
		t.Errorf("%d driver goroutines for 120 probe connections, want none", after-before)
	}
	for _, cs := range r.Stats() {
		for _, nd := range cs.Nodes {
			if nd.State != dbrouter.StateUp || nd.GTIDPosition == "" || nd.LastError != "" {
				t.Errorf("%s %s: %s, position %q, last error %q", cs.Name, nd.Addr, nd.State, nd.GTIDPosition, nd.LastError)
			}
		}
	}
	// KILL every connection of the app user: each probe reconnects
	// once, and nothing moves.
	ctx := testContext(t, 30*time.Second)
	killed := 0
	rows, err := ring.AdminDB(0).QueryContext(ctx, "SELECT id FROM information_schema.processlist WHERE user = 'app'")
	require.NoError(t, err)
	var ids []int64
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	for _, id := range ids {
		if _, err := ring.AdminDB(0).ExecContext(ctx, fmt.Sprintf("KILL %d", id)); err == nil {
			killed++
		}
	}
	time.Sleep(1500 * time.Millisecond)
	for _, cs := range r.Stats() {
		require.Equal(t, ring.Addr(0), cs.Writer, cs.Name)
		for _, nd := range cs.Nodes {
			require.Equal(t, dbrouter.StateUp, nd.State, "%s %s after %d connections were killed: %s", cs.Name, nd.Addr, killed, nd.LastError)
		}
	}
	t.Logf("killed %d connections on node 0: every node Up, writer unchanged", killed)
}

// driverWatchers counts go-sql-driver's per-connection goroutines.
func driverWatchers() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "mysql.(*mysqlConn).startWatcher")
}
