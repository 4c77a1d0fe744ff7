package integration

// What every test of this package shares: a ring with a router on it, the
// contexts and waits that bound each step, and readers of what the ring
// holds.

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/stretchr/testify/require"
)

const ringPassword = "app-secret-Zq7" // checked against every error text

// Every wait for a state polls its condition every tick for at most
// waitTimeout, with require.Eventually; no test sleeps to wait for a state.
const (
	tick        = 10 * time.Millisecond
	waitTimeout = 30 * time.Second
)

// startRing starts one ring of n nodes and opens a router on it, with a
// table t(pk AUTO_INCREMENT, id, writer, node) created on the ring.
func startRing(t *testing.T, n int, tune func(*dbrouter.Config)) (*ringtest.Ring, *dbrouter.Router, *dbrouter.Cluster) {
	t.Helper()
	h := ringtest.New(t, ringtest.Options{Nodes: n, Password: ringPassword})
	ring := h.Ring(0)
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: ringPassword, Database: "ringtest"},
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if tune != nil {
		tune(cfg)
	}
	r, err := dbrouter.Open(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	c, err := r.Cluster("ring")
	require.NoError(t, err)
	ctx := testContext(t, 30*time.Second)
	_, err = c.ExecContext(ctx, `CREATE TABLE t (
		pk BIGINT AUTO_INCREMENT PRIMARY KEY,
		id VARCHAR(64) NOT NULL,
		writer INT NOT NULL DEFAULT 0,
		node INT NOT NULL DEFAULT 0,
		KEY (id))`)
	require.NoError(t, err)
	require.NoError(t, ring.WaitConverged(ctx))
	return ring, r, c
}

// testContext returns a context that ends after d or with the test.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// rowCounts returns how many rows each id has in table t on node i.
func rowCounts(t *testing.T, ring *ringtest.Ring, i int) map[string]int {
	t.Helper()
	rows, err := ring.AdminDB(i).QueryContext(testContext(t, 30*time.Second), "SELECT id, COUNT(*) FROM ringtest.t GROUP BY id")
	require.NoError(t, err, "node %d", i)
	defer rows.Close()
	m := make(map[string]int)
	for rows.Next() {
		var id string
		var n int
		require.NoError(t, rows.Scan(&id, &n))
		m[id] = n
	}
	require.NoError(t, rows.Err())
	return m
}

// assertNoPassword fails the test when err shows the ring's password.
func assertNoPassword(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), ringPassword) {
		t.Errorf("error shows the password: %v", err)
	}
}

// eventLog records a router's events (Config.OnEvent).
type eventLog struct {
	mu  sync.Mutex
	evs []dbrouter.Event
}

func (l *eventLog) add(ev dbrouter.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

func (l *eventLog) all() []dbrouter.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]dbrouter.Event(nil), l.evs...)
}

// logEvents logs every event recorded so far.
func logEvents(t *testing.T, events *eventLog) {
	t.Helper()
	for _, ev := range events.all() {
		t.Logf("event %s %s: %s %s → %s (%s)", ev.At.Format("15:04:05.000"), ev.Kind, ev.Node, ev.From, ev.To, ev.Cause)
	}
}

// writerIndex returns the position of c's writer in ring.
func writerIndex(t *testing.T, ring *ringtest.Ring, c *dbrouter.Cluster) int {
	t.Helper()
	i := slices.Index(ring.Addrs(), c.WriterAddr())
	require.GreaterOrEqual(t, i, 0, "no writer (%q)", c.WriterAddr())
	return i
}

// waitSettled waits until every node is up and the first node is the
// writer again (failback done), so that the next fault hits the writer.
func waitSettled(t *testing.T, ring *ringtest.Ring, c *dbrouter.Cluster) {
	t.Helper()
	require.Eventually(t, func() bool {
		st := c.Stats()
		for _, n := range st.Nodes {
			if n.State != dbrouter.StateUp {
				return false
			}
		}
		return st.Writer == ring.Addr(0)
	}, waitTimeout, tick, "every node up and node 0 the writer")
}
