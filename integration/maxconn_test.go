package integration

// A writer that is up but refuses new connections (max_connections,
// max_user_connections) while the router's connections to it, its probe
// connection included, have been killed.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
)

// connFiller holds connections to one node until the server refuses one.
type connFiller struct {
	t    *testing.T
	db   *sql.DB
	held []*sql.Conn
	ids  map[int64]bool // the processlist ids of the connections it opened
}

// newConnFiller returns a filler that opens its connections from db.
func newConnFiller(t *testing.T, db *sql.DB) *connFiller {
	f := &connFiller{t: t, db: db, ids: map[int64]bool{}}
	t.Cleanup(f.release)
	return f
}

// fill opens connections until the server refuses one, which must be
// refused with MySQL error refusal, and returns the refusal.
func (f *connFiller) fill(ctx context.Context, refusal uint16) *mysql.MySQLError {
	f.t.Helper()
	for {
		conn, err := f.db.Conn(ctx)
		if err != nil {
			var me *mysql.MySQLError
			require.ErrorAs(f.t, err, &me, "filling the node's connections")
			require.Equal(f.t, refusal, me.Number, "filling the node's connections: %v", err)
			return me
		}
		var id int64
		require.NoError(f.t, conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id))
		f.held = append(f.held, conn)
		f.ids[id] = true
		require.Less(f.t, len(f.held), 1000, "no refusal after 1000 connections")
	}
}

// release closes every connection held.
func (f *connFiller) release() {
	for _, c := range f.held {
		c.Close()
	}
	f.held = nil
}

// othersOf returns the processlist ids of user's connections on admin's
// server that f did not open.
func (f *connFiller) othersOf(ctx context.Context, admin *sql.Conn, user string) []int64 {
	f.t.Helper()
	rows, err := admin.QueryContext(ctx, "SELECT id FROM information_schema.processlist WHERE user = ?", user)
	require.NoError(f.t, err)
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		require.NoError(f.t, rows.Scan(&id))
		if !f.ids[id] {
			ids = append(ids, id)
		}
	}
	require.NoError(f.t, rows.Err())
	return ids
}

// crowdOut fills the node's connections until the server refuses one with
// refusal, and kills every connection of the router's (user app) to it,
// its probe connection included, filling the room each kill frees, until
// none is left and full reports the node full (a killed session may still
// count against the limit a moment after it left the processlist): the
// router's next connection to the node, the probe's included, is refused.
func (f *connFiller) crowdOut(ctx context.Context, admin *sql.Conn, refusal uint16, full func() bool) {
	f.t.Helper()
	killed := 0
	for round := 0; ; round++ {
		require.Less(f.t, round, 200, "the router's connections keep coming back, or the node never fills up")
		me := f.fill(ctx, refusal)
		others := f.othersOf(ctx, admin, "app")
		if len(others) == 0 {
			if full() {
				f.t.Logf("%d connections held after %d round(s), %d of the router's killed; refusal: %v", len(f.held), round, killed, me)
				break
			}
			time.Sleep(tick)
			continue
		}
		for _, id := range others {
			if _, err := admin.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err == nil {
				killed++
			}
		}
	}
	require.Positive(f.t, killed, "no connection of the router's was killed")
}

// TestWriterAtMaxConnections: every connection of the router's to the
// writer A, its probe connection included, is killed while A refuses new
// ones, so that each probe must connect again and is refused:
//
//   - the application's user (no SUPER, as the router's user should have
//     none) fills A to max_connections: the server keeps one connection
//     more for SUPER users, and refuses an ordinary user's next one after
//     authentication (1040, SQLSTATE 08004);
//   - root sessions fill A to max_connections and that one more: the
//     server refuses the next connection before the handshake (1040, no
//     SQLSTATE);
//   - the application's user reaches its account's MAX_USER_CONNECTIONS
//     (1226).
//
// The server is up: for 12 probe intervals each time A stays the writer
// and is never Down, and a write is refused as not sent, with the
// server's error, and not tried on B. Once the connections are freed,
// writes go to A again; no event moves the writer or takes a node Down
// (a Suspect, which a probe timing out on a loaded machine may cause, is
// logged).
func TestWriterAtMaxConnections(t *testing.T) {
	t.Parallel()
	events := &eventLog{}
	ring, _, c := startRing(t, 3, func(cfg *dbrouter.Config) { cfg.OnEvent = events.add })
	waitSettled(t, ring, c)
	ctx := testContext(t, 180*time.Second)
	a, b := ring.Addr(0), ring.Addr(1)
	_, err := c.ExecContext(ctx, "INSERT INTO t (id) VALUES ('before')")
	require.NoError(t, err)

	// A root session taken before the node fills up, which KILLs and
	// looks at the processlist meanwhile.
	admin, err := ring.AdminDB(0).Conn(ctx)
	require.NoError(t, err)
	defer func() {
		// Its session may have sql_log_bin = 0: not back to the pool.
		admin.Raw(func(any) error { return driver.ErrBadConn })
		admin.Close()
	}()
	var maxConns int
	require.NoError(t, admin.QueryRowContext(ctx, "SELECT @@global.max_connections").Scan(&maxConns))
	t.Logf("max_connections %d", maxConns)
	var super int
	require.NoError(t, admin.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM information_schema.user_privileges
		WHERE grantee LIKE '''app''@%' AND privilege_type IN ('SUPER', 'CONNECTION ADMIN')`).Scan(&super))
	require.Zero(t, super, "the application user must have neither SUPER nor CONNECTION ADMIN")

	// probeRefused waits until A's last probe was refused with refusal
	// (the start of the driver's error text), and then for 12 more probe
	// intervals, during which A must stay the writer and never go Down.
	probeRefused := func(what string, refusal string) {
		t.Helper()
		var msg string
		require.Eventually(t, func() bool {
			msg = c.Stats().Nodes[0].LastError
			return strings.Contains(msg, "connect: "+refusal)
		}, waitTimeout, tick, "%s: a probe of A refused with %q", what, refusal)
		deadline := time.Now().Add(12 * dbrouter.DefaultProbeInterval)
		for time.Now().Before(deadline) {
			st := c.Stats()
			nd := st.Nodes[0]
			require.Equal(t, a, st.Writer, "%s: the writer moved", what)
			require.NotEqual(t, dbrouter.StateDown, nd.State, "%s: A went Down: %s", what, nd.LastError)
			time.Sleep(tick)
		}
		t.Logf("%s: A's probes refused: %s; last probe: %s", what, msg, c.Stats().Nodes[0].LastError)
	}
	// writeRefused checks that a write is refused as not sent, with the
	// server's errno, and was tried on A alone.
	writeRefused := func(what string, errno uint16) {
		t.Helper()
		var tr dbrouter.Trace
		_, err := c.ExecContext(dbrouter.WithTrace(ctx, &tr), "INSERT INTO t (id) VALUES ('refused')")
		require.Error(t, err, "%s: a write", what)
		t.Logf("%s: write: %v (node %q, attempts %v)", what, err, tr.Node, tr.Attempts)
		require.ErrorIs(t, err, dbrouter.ErrNotSent, what)
		var me *mysql.MySQLError
		require.ErrorAs(t, err, &me, what)
		require.Equal(t, errno, me.Number, what)
		require.NotEqual(t, b, tr.Node, "%s: the refused write went to B", what)
		for _, at := range tr.Attempts {
			require.Equal(t, a, at.Node, "%s: attempt on a node other than A: %v", what, at)
		}
	}
	// writesBack waits for a write, which A must serve.
	writesBack := func(what string, id string) {
		t.Helper()
		freedAt := time.Now()
		require.Eventually(t, func() bool {
			var tr dbrouter.Trace
			_, err := c.ExecContext(dbrouter.WithTrace(ctx, &tr), "INSERT INTO t (id) VALUES (?)", id)
			if err != nil {
				t.Logf("%s: write: %v", what, err)
				return false
			}
			require.Equal(t, a, tr.Node, "%s: a write", what)
			return true
		}, waitTimeout, 50*time.Millisecond, "%s: a write on A", what)
		t.Logf("%s: first write on A %v after the connections were freed", what, time.Since(freedAt).Round(time.Millisecond))
	}

	// probeOK waits for a good probe of A: its probe connection is open
	// again, for crowdOut to kill.
	probeOK := func(what string) {
		t.Helper()
		require.Eventually(t, func() bool {
			nd := c.Stats().Nodes[0]
			return nd.State == dbrouter.StateUp && nd.LastError == ""
		}, waitTimeout, tick, "%s: a good probe of A", what)
	}

	mark := len(events.all())
	appDB, err := sql.Open("mysql", ring.DSN(0))
	require.NoError(t, err)
	defer appDB.Close()
	appDB.SetMaxIdleConns(0)

	// The application's user fills A up to max_connections: the server
	// keeps one connection more for SUPER users, so it refuses the next
	// connection of an ordinary user after authentication, with an
	// SQLSTATE.
	f := newConnFiller(t, appDB)
	f.crowdOut(ctx, admin, 1040, func() bool { return clientConns(t, ctx, admin) >= maxConns })
	probeRefused("A full for ordinary users", "Error 1040 (08004): ")
	writeRefused("A full for ordinary users", 1040)
	f.release()
	writesBack("A freed", "after")
	probeOK("A freed")

	// Root sessions fill A up to max_connections and the one more: the
	// server refuses the next connection before the handshake, without
	// an SQLSTATE.
	f = newConnFiller(t, ring.AdminDB(0))
	f.crowdOut(ctx, admin, 1040, func() bool { return clientConns(t, ctx, admin) > maxConns })
	probeRefused("every connection to A taken", "Error 1040: ")
	writeRefused("every connection to A taken", 1040)
	f.release()
	writesBack("A freed of root sessions", "after root")
	probeOK("A freed of root sessions")

	// The application's user at its account's MAX_USER_CONNECTIONS: 1226.
	// (The global max_user_connections, 1203, cannot be set on a server
	// started without it.) Not replicated: B and C keep no limit.
	_, err = admin.ExecContext(ctx, "SET SESSION sql_log_bin = 0")
	require.NoError(t, err)
	_, err = admin.ExecContext(ctx, "ALTER USER 'app'@'%' WITH MAX_USER_CONNECTIONS 20")
	require.NoError(t, err)
	f = newConnFiller(t, appDB)
	f.crowdOut(ctx, admin, 1226, func() bool { return len(f.held) >= 20 })
	probeRefused("app at MAX_USER_CONNECTIONS", "Error 1226 (42000): ")
	writeRefused("app at MAX_USER_CONNECTIONS", 1226)
	_, err = admin.ExecContext(ctx, "ALTER USER 'app'@'%' WITH MAX_USER_CONNECTIONS 0")
	require.NoError(t, err)
	f.release()
	writesBack("app's limit lifted", "after user limit")
	probeOK("app's limit lifted")

	waitSettled(t, ring, c)
	for _, ev := range events.all()[mark:] {
		switch {
		case ev.Kind == dbrouter.EventWriter, ev.Kind == dbrouter.EventState && ev.To == dbrouter.StateDown.String():
			t.Errorf("event with the writer refusing connections: %s %s %s → %s (%s)", ev.Kind, ev.Node, ev.From, ev.To, ev.Cause)
		default:
			t.Logf("event: %s %s %s → %s (%s)", ev.Kind, ev.Node, ev.From, ev.To, ev.Cause)
		}
	}
	require.NoError(t, ring.WaitConverged(ctx))
	for i := range 3 {
		got := rowCounts(t, ring, i)
		if got["before"] != 1 || got["refused"] != 0 || got["after"] != 1 || got["after root"] != 1 || got["after user limit"] != 1 {
			t.Errorf("node %d: rows %v, want before, after, after root and after user limit once, refused never", i, got)
		}
	}
}

// clientConns returns the number of client connections to admin's server,
// as max_connections counts them: not its replication threads.
func clientConns(t *testing.T, ctx context.Context, admin *sql.Conn) int {
	t.Helper()
	var n int
	require.NoError(t, admin.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM information_schema.processlist WHERE user NOT IN ('system user', 'unauthenticated user') AND command <> 'Daemon'").Scan(&n))
	return n
}
