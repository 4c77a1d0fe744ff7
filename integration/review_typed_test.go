package integration

// Adversarial review of the typed-edges changes against go-sql-driver and
// a real ring: the rows of a plain Cluster.QueryContext read, now wrapped,
// stall-watched, typed and reported to the node's health.

import (
	"database/sql"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/stretchr/testify/require"
)

// connections returns node i's Connections status counter: every
// connection the server accepted (a stall check's handshake counts one).
func connections(t *testing.T, db *sql.DB) int {
	t.Helper()
	var name string
	var n int
	require.NoError(t, db.QueryRowContext(testContext(t, 10*time.Second), "SHOW GLOBAL STATUS LIKE 'Connections'").Scan(&name, &n))
	return n
}

// requireNoStateChange fails on any state change or writer move since t0.
func requireNoStateChange(t *testing.T, events *eventLog, t0 time.Time, what string) {
	t.Helper()
	for _, ev := range events.all() {
		if ev.At.Before(t0) {
			continue
		}
		if ev.Kind == dbrouter.EventWriter || ev.Kind == dbrouter.EventState {
			t.Errorf("%s: %s %s %s → %s (%s)", what, ev.Kind, ev.Node, ev.From, ev.To, ev.Cause)
		}
	}
}

// TestReviewTypedReadRowsRealRing runs the read-rows attacks on one ring.
func TestReviewTypedReadRowsRealRing(t *testing.T) {
	events := &eventLog{}
	var cfg *dbrouter.Config
	ring, r, c := startRing(t, 3, func(cf *dbrouter.Config) {
		cf.OnEvent = events.add
		cfg = cf
	})
	require.Equal(t, ring.Addr(0), c.WriterAddr())
	admin := ring.AdminDB(0)

	// A slow consumer: 20 MB of rows read one every 2 ms (about 4 s),
	// the server blocked on a full socket most of the time; then rows the
	// server makes slowly (SELECT SLEEP(0.5) per row, 3 s), each Next
	// waiting on the node. A healthy writer: nothing may change.
	t.Run("slow consumer and slow rows", func(t *testing.T) {
		ctx := testContext(t, 60*time.Second)
		t0 := time.Now()
		before := connections(t, admin)
		rows, err := c.QueryContext(ctx, "SELECT seq, REPEAT('x', 10000) FROM seq_1_to_2000")
		require.NoError(t, err)
		n := 0
		for rows.Next() {
			n++
			time.Sleep(2 * time.Millisecond)
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
		require.Equal(t, 2000, n)
		slowReader := connections(t, admin) - before - 1
		before = connections(t, admin)
		rows, err = c.QueryContext(ctx, "SELECT SLEEP(0.5) FROM seq_1_to_6")
		require.NoError(t, err)
		n = 0
		for rows.Next() {
			n++
		}
		require.NoError(t, rows.Err())
		require.Equal(t, 6, n)
		slowRows := connections(t, admin) - before - 1
		t.Logf("new connections to the writer: %d while a slow consumer read 20 MB for %v; %d while rows took 3 s to come",
			slowReader, time.Since(t0).Round(time.Millisecond), slowRows)
		requireNoStateChange(t, events, t0, "healthy writer, slow reads")
	})

	// The server KILLs the connection reading rows (pt-kill, a DBA), or
	// only its query: the node is never taken Down nor the writer moved.
	t.Run("killed mid-rows", func(t *testing.T) {
		for _, kill := range []string{"KILL QUERY ", "KILL "} {
			ctx := testContext(t, 60*time.Second)
			t0 := time.Now()
			rows, err := c.QueryContext(ctx, "SELECT CONNECTION_ID(), seq, REPEAT('x', 100000) FROM seq_1_to_100000")
			require.NoError(t, err)
			require.True(t, rows.Next(), rows.Err())
			var id, seq int
			var pad string
			require.NoError(t, rows.Scan(&id, &seq, &pad))
			_, err = admin.ExecContext(ctx, kill+strconv.Itoa(id))
			require.NoError(t, err)
			n := 0
			for rows.Next() {
				n++
			}
			err = rows.Err()
			rows.Close()
			got, _ := which(err)
			t.Logf("%s: %d rows after the kill, rows.Err() = %v (%T), matches %s", kill, n, err, err, got)
			require.Error(t, err)
			time.Sleep(300 * time.Millisecond) // a probe asked for at once has answered
			for _, ev := range events.all() {
				if !ev.At.Before(t0) && ev.Kind == dbrouter.EventState {
					t.Logf("%s: event %s %s → %s (%s)", kill, ev.Node, ev.From, ev.To, ev.Cause)
				}
			}
			// A KILL of the connection is go-sql-driver's lost
			// connection (no error packet reaches it): reported as a
			// failed read, it makes the writer Suspect until the probe
			// asked for at once answers, as the same KILL during the
			// call does. Never Down, and the writer stays.
			requireNoHealthChange(t, events, t0)
			require.Equal(t, ring.Addr(0), c.WriterAddr())
		}
	})

	// Router.Reload changes the cluster's settings while a read's rows
	// are open: the retired cluster must let them finish (design.md §8).
	t.Run("reload with open read rows", func(t *testing.T) {
		ctx := testContext(t, 60*time.Second)
		rows, err := c.QueryContext(ctx, "SELECT seq, REPEAT('x', 10000) FROM seq_1_to_20000")
		require.NoError(t, err)
		defer rows.Close()
		require.True(t, rows.Next(), rows.Err())
		next := *cfg
		next.Clusters = map[string]dbrouter.ClusterConfig{}
		for k, v := range cfg.Clusters {
			v.MaxIdleConns = 7 // a change: the cluster is replaced
			next.Clusters[k] = v
		}
		require.NoError(t, r.Reload(&next))
		c2, err := r.Cluster("ring")
		require.NoError(t, err)
		require.NotSame(t, c, c2, "the cluster was not replaced")
		time.Sleep(200 * time.Millisecond)
		n := 1
		for rows.Next() {
			n++
		}
		err = rows.Err()
		got, _ := which(err)
		require.NoError(t, err, "a read's rows cut by Reload after %d rows (matches %s)", n, got)
		require.Equal(t, 20000, n)
	})
}

// which names what err matches of ErrNotSent and ErrOutcomeUnknown.
func which(err error) (string, bool) {
	ns, ou := errors.Is(err, dbrouter.ErrNotSent), errors.Is(err, dbrouter.ErrOutcomeUnknown)
	switch {
	case ns && ou:
		return "both", false
	case ns:
		return "ErrNotSent", true
	case ou:
		return "ErrOutcomeUnknown", true
	}
	return "neither", false
}

// TestReviewTypedRowScanCloseFrozen freezes the writer while Row.Scan of
// a read closes its rows: go-sql-driver's Close reads every row left (the
// query has many; QueryRowContext wants the first), the stall check
// releases it, and Scan returns Close's error — which must be typed as a
// read's lost connection (*OutcomeUnknownError), not the bare
// mysql.ErrInvalidConn that matches neither ErrNotSent nor
// ErrOutcomeUnknown.
func TestReviewTypedRowScanCloseFrozen(t *testing.T) {
	ring, _, c, _ := stallRing(t)
	ctx := testContext(t, 60*time.Second)
	row := c.QueryRowContext(ctx, "SELECT seq, REPEAT('x', 1000000) FROM seq_1_to_1000000")
	go func() {
		time.Sleep(300 * time.Millisecond) // Scan's Close is reading the rows left
		freezeWriter(t, ring)
	}()
	var seq int
	var pad string
	start := time.Now()
	err := row.Scan(&seq, &pad)
	got, _ := which(err)
	t.Logf("Row.Scan after %v: %v (%T), matches %s", time.Since(start).Round(time.Millisecond), err, err, got)
	requireStuckReleased(t, ring, "Row.Scan's Close of a Cluster read", dbrouter.OpQuery, err, time.Since(start)-300*time.Millisecond)
}
