package integration

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/stretchr/testify/require"
)

// goIdle waits until c has had no call for long enough that its Up nodes
// are probed at the idle rate (twice idle_interval, then one more).
func goIdle() { time.Sleep(3*dbrouter.DefaultIdleInterval + 300*time.Millisecond) }

// TestKillWriterOfIdleCluster: the writer of an idle cluster (probed every
// idle_interval, no warm pooled connection) is killed; the first write
// after the kill lands on the next node or fails typed, and after the
// writer's restart every node holds each acknowledged row once.
func TestKillWriterOfIdleCluster(t *testing.T) {
	t.Parallel()
	ring, _, c := startRing(t, 3, nil)
	waitSettled(t, ring, c)
	ctx := testContext(t, 60*time.Second)
	_, err := c.ExecContext(ctx, "INSERT INTO t (id) VALUES ('before')")
	require.NoError(t, err)
	goIdle()
	require.NoError(t, ring.Kill(0))
	var tr dbrouter.Trace
	start := time.Now()
	_, err = c.ExecContext(dbrouter.WithTrace(ctx, &tr), "INSERT INTO t (id) VALUES ('after')")
	took := time.Since(start)
	acked := err == nil
	switch {
	case err == nil:
		require.Equal(t, ring.Addr(1), tr.Node, "write after the kill served by %s after %v", tr.Node, tr.Attempts)
	case errors.Is(err, dbrouter.ErrNotSent), errors.Is(err, dbrouter.ErrOutcomeUnknown), errors.Is(err, dbrouter.ErrNoNode):
		t.Logf("write after the kill failed typed: %v", err)
	default:
		t.Fatalf("write after the kill: untyped error %v", err)
	}
	t.Logf("first write on the idle cluster after the writer's kill: %v in %v, attempts %v", err, took.Round(time.Millisecond), tr.Attempts)
	// The next writes go to B.
	_, err = c.ExecContext(ctx, "INSERT INTO t (id) VALUES ('next')")
	require.NoError(t, err)
	// A writer Suspect only because a call failed stays the writer until
	// its probes take it Down (on Docker rings docker-proxy accepts and
	// drops, which takes a moment longer than a refusal).
	require.Eventually(t, func() bool { return c.WriterAddr() == ring.Addr(1) }, 10*time.Second, tick, "writer B")
	require.NoError(t, ring.Restart(0))
	require.NoError(t, ring.WaitConverged(ctx))
	for i := range 3 {
		got := rowCounts(t, ring, i)
		if got["before"] != 1 || got["next"] != 1 || acked && got["after"] != 1 || got["after"] > 1 {
			t.Errorf("node %d: rows %v, want before and next once, after once if acknowledged (%v)", i, got, acked)
		}
	}
}

// TestFreezeWriterOfIdleCluster: the writer of an idle cluster is frozen
// (SIGSTOP); the first write after that must connect (no warm connection),
// so nothing is sent to the frozen node: the stall check takes it Down and
// the write lands on the next node, within a couple of seconds.
func TestFreezeWriterOfIdleCluster(t *testing.T) {
	t.Parallel()
	ring, _, c := startRing(t, 3, nil)
	waitSettled(t, ring, c)
	ctx := testContext(t, 60*time.Second)
	goIdle()
	require.NoError(t, ring.Freeze(0))
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			ring.Thaw(0)
		}
	})
	var tr dbrouter.Trace
	start := time.Now()
	_, err := c.ExecContext(dbrouter.WithTrace(ctx, &tr), "INSERT INTO t (id) VALUES ('frozen')")
	took := time.Since(start)
	t.Logf("first write on the idle cluster after the writer froze: %v in %v on %s, attempts %v", err, took.Round(time.Millisecond), tr.Node, tr.Attempts)
	acked := err == nil
	if err != nil && !errors.Is(err, dbrouter.ErrNotSent) && !errors.Is(err, dbrouter.ErrOutcomeUnknown) && !errors.Is(err, dbrouter.ErrNoNode) {
		t.Fatalf("untyped error %v", err)
	}
	if took > 3*time.Second {
		t.Errorf("the write took %v", took)
	}
	require.NoError(t, ring.Thaw(0))
	thawed = true
	require.NoError(t, ring.WaitConverged(ctx))
	for i := range 3 {
		got := rowCounts(t, ring, i)
		if got["frozen"] > 1 || acked && got["frozen"] != 1 {
			t.Errorf("node %d: rows %v (acknowledged %v)", i, got, acked)
		}
	}
}

// TestWaitTimeoutIdleProbes: with wait_timeout = 1 s on every server and
// an idle cluster probed every 1.5 s, every probe finds its connection
// closed by the server: it connects once more and the node stays Up: no
// Suspect, no writer change.
func TestWaitTimeoutIdleProbes(t *testing.T) {
	t.Parallel()
	events := &eventLog{}
	ring, _, c := startRing(t, 3, func(cfg *dbrouter.Config) {
		cfg.OnEvent = events.add
		cfg.Defaults.Health.IdleInterval = 1500 * time.Millisecond
	})
	waitSettled(t, ring, c)
	ctx := testContext(t, 60*time.Second)
	for i := range 3 {
		_, err := ring.AdminDB(i).ExecContext(ctx, "SET GLOBAL wait_timeout = 1")
		require.NoError(t, err)
		t.Cleanup(func() { ring.AdminDB(i).Exec("SET GLOBAL wait_timeout = 28800") })
		// The probe connections take the new value when they connect
		// again: end them.
		rows, err := ring.AdminDB(i).QueryContext(ctx, "SELECT id FROM information_schema.processlist WHERE user = 'app'")
		require.NoError(t, err)
		var ids []int64
		for rows.Next() {
			var id int64
			require.NoError(t, rows.Scan(&id))
			ids = append(ids, id)
		}
		require.NoError(t, rows.Close())
		for _, id := range ids {
			ring.AdminDB(i).ExecContext(ctx, fmt.Sprintf("KILL %d", id))
		}
	}
	mark := len(events.all())
	time.Sleep(10 * time.Second)
	evs := events.all()[mark:]
	for _, ev := range evs {
		t.Errorf("event with wait_timeout 1 s on an idle cluster: %s %s %s → %s (%s)", ev.Kind, ev.Node, ev.From, ev.To, ev.Cause)
	}
	for _, nd := range c.Stats().Nodes {
		require.Equal(t, dbrouter.StateUp, nd.State, nd.Addr)
	}
	require.Equal(t, ring.Addr(0), c.WriterAddr())
}

// appConns counts the connections of user app on node i of ring.
func appConns(t *testing.T, ring interface{ AdminDB(int) *sql.DB }, i int) int {
	t.Helper()
	var n int
	require.NoError(t, ring.AdminDB(i).QueryRow("SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'app'").Scan(&n))
	return n
}

// TestReloadAndCloseLeaveNoProbeConnection: 20 clusters of one ring, taken
// over probe connections all open; a Reload that drops them all, then
// Close, leave no connection of the router's open on the servers and no
// goroutine of the driver's.
func TestReloadAndCloseLeaveNoProbeConnection(t *testing.T) {
	ring, r0, c0 := startRing(t, 3, nil)
	waitSettled(t, ring, c0)
	require.NoError(t, r0.Close())
	require.Eventually(t, func() bool { return appConns(t, ring, 0) == 0 }, 5*time.Second, tick, "startRing's router's connections closed")
	mk := func(prefix string, n int) *dbrouter.Config {
		cfg := &dbrouter.Config{
			Defaults: dbrouter.Settings{User: "app", Password: ringPassword, Database: "ringtest"},
			Clusters: map[string]dbrouter.ClusterConfig{},
			Logger:   slog.New(slog.DiscardHandler),
		}
		for i := range n {
			cfg.Clusters[fmt.Sprintf("%s%02d", prefix, i)] = dbrouter.ClusterConfig{Nodes: ring.Addrs()}
		}
		return cfg
	}
	before := driverWatchers()
	r, err := dbrouter.Open(mk("a", 20))
	require.NoError(t, err)
	for _, name := range r.Clusters() {
		c, err := r.Cluster(name)
		require.NoError(t, err)
		require.Equal(t, ring.Addr(0), c.WriterAddr(), name)
	}
	time.Sleep(500 * time.Millisecond)
	open := appConns(t, ring, 0)
	require.GreaterOrEqual(t, open, 20, "probe connections on node 0")
	require.NoError(t, r.Reload(mk("b", 1)))
	c, err := r.Cluster("b00")
	require.NoError(t, err)
	require.Equal(t, ring.Addr(0), c.WriterAddr())
	require.Eventually(t, func() bool { return appConns(t, ring, 0) <= 1 }, 5*time.Second, tick,
		"after a Reload that dropped 20 clusters, node 0 still has %d app connections (had %d)", appConns(t, ring, 0), open)
	require.NoError(t, r.Close())
	require.Eventually(t, func() bool { return appConns(t, ring, 0) == 0 }, 5*time.Second, tick,
		"after Close node 0 still has %d app connections", appConns(t, ring, 0))
	if after := driverWatchers(); after > before {
		t.Errorf("%d driver goroutines left after Close", after-before)
	}
}
