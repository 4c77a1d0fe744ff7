package orm

// A minimal copy of integration/ring_test.go's set-up: one ring with a
// router on it, and readers of what each node holds.

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/stretchr/testify/require"
)

const ringPassword = "app-secret-Zq7" // checked against every error text

const (
	tick        = 10 * time.Millisecond
	waitTimeout = 30 * time.Second
)

// startRing starts one ring of n nodes and opens a router on it, with the
// table of sqlcdb/schema.sql created on the ring.
func startRing(t *testing.T, n int, tune func(*dbrouter.Config)) (*ringtest.Ring, *dbrouter.Router, *dbrouter.Cluster) {
	t.Helper()
	h := ringtest.New(t, ringtest.Options{Nodes: n, Password: ringPassword})
	ring := h.Ring(0)
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: ringPassword, Database: "ringtest"},
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
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

// stored is what node i holds of one id: how many rows, and the
// server_id of the server that ran its (first) INSERT.
type stored struct{ rows, node int }

// rowsOn returns, per id, what table t holds on node i.
func rowsOn(t *testing.T, ring *ringtest.Ring, i int) map[string]stored {
	t.Helper()
	rows, err := ring.AdminDB(i).QueryContext(testContext(t, 30*time.Second), "SELECT id, COUNT(*), MIN(node) FROM ringtest.t GROUP BY id")
	require.NoError(t, err, "node %d", i)
	defer rows.Close()
	m := make(map[string]stored)
	for rows.Next() {
		var id string
		var s stored
		require.NoError(t, rows.Scan(&id, &s.rows, &s.node))
		m[id] = s
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
