package integration

// Typed errors at the edges, against go-sql-driver and a real ring: a
// statement on Cluster.Conn or Cluster.Writer whose context ends while it
// runs, and the rows of a plain Cluster.QueryContext read stuck on a
// frozen writer.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/stretchr/testify/require"
)

// TestPinnedContextEndTypedRealDriver ends the context of a statement on
// Cluster.Conn and on Cluster.Writer while the server runs it (DO
// SLEEP(3), which go-sql-driver abandons by closing the connection): an
// *OutcomeUnknownError matching context.DeadlineExceeded, as
// Cluster.ExecContext returns; a statement whose context had already
// ended on Cluster.Conn is not sent (ErrNotSent and context.Canceled).
// The writer stays.
func TestPinnedContextEndTypedRealDriver(t *testing.T) {
	ring, _, c, events := stallRing(t)
	ctx := testContext(t, 60*time.Second)
	t0 := time.Now()
	conn, err := c.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	check := func(what string, err error) {
		t.Helper()
		t.Logf("%s: %v", what, err)
		var ou *dbrouter.OutcomeUnknownError
		require.ErrorAs(t, err, &ou, what)
		require.Equal(t, dbrouter.OpExec, ou.Op, what)
		require.Equal(t, ring.Addr(0), ou.Node, what)
		require.ErrorIs(t, err, context.DeadlineExceeded, what)
		require.NotErrorIs(t, err, dbrouter.ErrNotSent, what)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = conn.ExecContext(short, "DO SLEEP(3)")
	cancel()
	check("Cluster.Conn", err)

	short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = c.Writer().ExecContext(short, "DO SLEEP(3)")
	cancel()
	check("Cluster.Writer", err)

	conn2, err := c.Conn(ctx)
	require.NoError(t, err)
	defer conn2.Close()
	ended, cancel := context.WithCancel(ctx)
	cancel()
	_, err = conn2.ExecContext(ended, "INSERT INTO t (id) VALUES ('never')")
	t.Logf("ended before: %v", err)
	require.ErrorIs(t, err, dbrouter.ErrNotSent)
	require.ErrorIs(t, err, context.Canceled)
	var n int
	require.NoError(t, c.QueryRowContext(ctx, "SELECT COUNT(*) FROM t WHERE id = 'never'").Scan(&n))
	require.Zero(t, n, "a statement whose context had ended was sent")

	require.Equal(t, ring.Addr(0), c.WriterAddr())
	requireNoHealthChange(t, events, t0)
}

// TestStallFrozenWriterClusterReadRows freezes the writer while the rows
// of a plain read (Cluster.QueryContext of a SELECT, read pool) are being
// read: once the rows the kernel holds are read, Rows.Next waits on the
// frozen server, and the stall check must release it as it releases a
// statement, typed as an *OutcomeUnknownError of OpQuery; the next read
// goes to the next node.
func TestStallFrozenWriterClusterReadRows(t *testing.T) {
	ring, _, c, events := stallRing(t)
	ctx := testContext(t, 60*time.Second)
	// 1 MB rows: the server cannot have sent them all before the freeze,
	// and the few the sockets hold are read at once.
	rows, err := c.QueryContext(ctx, "SELECT seq, REPEAT('x', 1000000) FROM seq_1_to_100000")
	require.NoError(t, err)
	defer rows.Close()
	require.True(t, rows.Next(), rows.Err())
	freezeWriter(t, ring)
	start := time.Now()
	read := 0
	for rows.Next() {
		read++
	}
	err = rows.Err()
	t.Logf("%d rows read after the freeze", read)
	requireStuckReleased(t, ring, "read of a Cluster read's rows", dbrouter.OpQuery, err, time.Since(start))
	var id int
	require.NoError(t, c.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id))
	require.Equal(t, serverID(t, ring, 1), id, "the next read's node")
	if errors.Is(err, dbrouter.ErrNotSent) {
		t.Errorf("a read of rows that ran matches ErrNotSent: %v", err)
	}
	logEvents(t, events)
}
