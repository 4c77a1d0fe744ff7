package dbrouter

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A connection Cluster.Writer's pool cannot open is a failure before
// anything was sent: the error matches ErrNotSent (and not
// ErrOutcomeUnknown), names the cluster and the node, and keeps the
// driver's error. Before, database/sql handed back the router's internal
// connect error, which matched neither class.
func TestWriterPoolConnectFailureNotSent(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 2, Settings{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	db := c.Writer()
	refused := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	srv[0].set(func(s *fakeServer) { s.connectErr = refused })
	_, err := db.ExecContext(ctx, "INSERT INTO t VALUES (1)")
	if !errors.Is(err, ErrNotSent) || errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, refused) {
		t.Fatalf("Writer().ExecContext with the node refusing connections: %v, want not sent (only) wrapping the driver's error", err)
	}
	// Cluster.Conn, which fails over, still moves to the next node.
	conn, err := c.Conn(ctx)
	if err != nil {
		t.Fatalf("Cluster.Conn with node 0 refusing: %v", err)
	}
	conn.Close()
}
