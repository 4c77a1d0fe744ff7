package integration

// Real-ring regression tests for the hardening issue (#12); the fake-driver
// ones are in hardening_test.go.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/stretchr/testify/require"
)

// Item 1: a SELECT of a stored function that writes is applied at most once
// when its node is frozen (and later thawed) or killed mid-call: the caller
// gets outcome unknown, never a silent second run on the next node. Plain
// SELECTs still fail over transparently.
func TestItem01SelectThatWritesAppliedAtMostOnce(t *testing.T) {
	ring, _, c := startRing(t, 3, nil)
	ctx := testContext(t, 3*time.Minute)
	_, err := c.ExecContext(ctx, "CREATE TABLE orders (pk BIGINT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL)")
	require.NoError(t, err)
	// The function sleeps after its INSERT so that the fault lands
	// mid-call. Creating a function with binary logging on needs SUPER.
	if _, err := ring.AdminDB(0).ExecContext(ctx, `CREATE FUNCTION ringtest.create_order(x INT) RETURNS INT
		DETERMINISTIC MODIFIES SQL DATA
		BEGIN INSERT INTO ringtest.orders (n) VALUES (x); DO SLEEP(1.5); RETURN x; END`); err != nil {
		t.Fatal(err)
	}
	require.NoError(t, ring.WaitConverged(ctx))
	countOn := func(i, n int) int {
		var k int
		if err := ring.AdminDB(i).QueryRowContext(ctx, "SELECT COUNT(*) FROM ringtest.orders WHERE n = ?", n).Scan(&k); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		return k
	}

	faults := []struct {
		name          string
		break_, heal_ func(i int) error
	}{
		{"freeze", ring.Freeze, ring.Thaw},
		{"kill", ring.Kill, ring.Restart},
	}
	for k, f := range faults {
		n := 100 + k
		w := writerIndex(t, ring, c)
		faulted := make(chan error, 1)
		go func() {
			time.Sleep(500 * time.Millisecond)
			faulted <- f.break_(w)
		}()
		var got int
		var tr dbrouter.Trace
		err := c.QueryRowContext(dbrouter.WithTrace(ctx, &tr), "SELECT ringtest.create_order(?)", n).Scan(&got)
		if ferr := <-faulted; ferr != nil {
			t.Fatal(ferr)
		}
		t.Logf("%s of %s mid-call: err = %v (trace: node %q, %d failed attempts)", f.name, ring.Addr(w), err, tr.Node, len(tr.Attempts))
		if !errors.Is(err, dbrouter.ErrOutcomeUnknown) {
			t.Errorf("%s: err = %v, want outcome unknown", f.name, err)
		}
		require.NoError(t, f.heal_(w))
		require.NoError(t, ring.WaitConverged(ctx))
		for i := range ring.Len() {
			if k := countOn(i, n); k > 1 {
				t.Errorf("%s: node %d has the order %d times: a SELECT that writes was applied twice", f.name, i, k)
			} else {
				t.Logf("%s: node %d has the order %d time(s)", f.name, i, k)
			}
		}
		waitSettled(t, ring, c)
	}

	// A plain SELECT fails over transparently, frozen or killed.
	for _, f := range faults {
		w := writerIndex(t, ring, c)
		faulted := make(chan error, 1)
		go func() {
			time.Sleep(300 * time.Millisecond)
			faulted <- f.break_(w)
		}()
		var slept int
		var tr dbrouter.Trace
		err := c.QueryRowContext(dbrouter.WithTrace(ctx, &tr), "SELECT SLEEP(1)").Scan(&slept)
		if ferr := <-faulted; ferr != nil {
			t.Fatal(ferr)
		}
		if err != nil || tr.Node == ring.Addr(w) {
			t.Errorf("plain SELECT with its node %s: err = %v, served by %q; want success on another node", f.name, err, tr.Node)
		} else {
			t.Logf("plain SELECT with %s %s: served by %s after %d failed attempt(s)", ring.Addr(w), f.name, tr.Node, len(tr.Attempts))
		}
		require.NoError(t, f.heal_(w))
		require.NoError(t, ring.WaitConverged(ctx))
		waitSettled(t, ring, c)
	}
}

// Item 7: an application that holds every connection of its pool does not
// make a healthy writer look dead: probes have their own connection.
func TestItem07ProbesOutsideAppPoolOnRealRing(t *testing.T) {
	ring, _, c := startRing(t, 2, func(cfg *dbrouter.Config) { cfg.Defaults.MaxOpenConns = 2 })
	ctx := testContext(t, time.Minute)
	for k := range 2 {
		tx, err := c.BeginTx(ctx, nil)
		require.NoError(t, err)
		defer tx.Rollback()
		_, err = tx.ExecContext(ctx, "INSERT INTO t (id) VALUES (?)", fmt.Sprintf("held-%d", k))
		require.NoError(t, err)
	}
	time.Sleep(2 * time.Second) // eight probe intervals with the pool exhausted
	st := c.Stats()
	if st.Writer != ring.Addr(0) || st.Nodes[0].State != dbrouter.StateUp || st.Nodes[0].ConsecutiveFailures != 0 {
		t.Fatalf("with the pool held: writer %q, node 0 %s after %d failed probes (%s); want node 0 up and writer",
			st.Writer, st.Nodes[0].State, st.Nodes[0].ConsecutiveFailures, st.Nodes[0].LastError)
	}
	// A third call waits for a connection, bounded by its own deadline.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := c.ExecContext(cctx, "INSERT INTO t (id) VALUES ('third')"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third write with the pool exhausted: err = %v, want its deadline", err)
	}
}

// The probe's own connection (outside the pools) is checked before reuse,
// as database/sql checks a pooled one: when the server kills every idle
// connection of the app (a DBA, a connection killer), the next probe
// reconnects instead of failing, and the writer does not move.
func TestKilledIdleConnectionsDoNotMoveTheWriter(t *testing.T) {
	events := &eventLog{}
	ring, _, c := startRing(t, 2, func(cfg *dbrouter.Config) { cfg.OnEvent = events.add })
	ctx := testContext(t, time.Minute)
	require.Eventually(t, func() bool {
		st := c.Stats()
		return st.Nodes[0].GTIDPosition != "" && st.Nodes[1].GTIDPosition != ""
	}, waitTimeout, tick, "both nodes probed")
	before := len(events.all())
	for range 3 {
		rows, err := ring.AdminDB(0).QueryContext(ctx, "SELECT id FROM information_schema.processlist WHERE user = 'app' AND command = 'Sleep'")
		require.NoError(t, err)
		var ids []int64
		for rows.Next() {
			var id int64
			require.NoError(t, rows.Scan(&id))
			ids = append(ids, id)
		}
		require.NoError(t, rows.Close())
		for _, id := range ids {
			ring.AdminDB(0).ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id))
		}
		t.Logf("killed %d idle connection(s) of app on node 0", len(ids))
		time.Sleep(time.Second) // four probe intervals
	}
	for _, ev := range events.all()[before:] {
		t.Errorf("event after killing idle connections: %s %s → %s (%s)", ev.Node, ev.From, ev.To, ev.Cause)
	}
	if _, err := c.ExecContext(ctx, "INSERT INTO t (id) VALUES ('after-kill')"); err != nil {
		t.Fatalf("write after the kills: %v", err)
	}
	if w := c.WriterAddr(); w != ring.Addr(0) {
		t.Fatalf("writer %s, want %s", w, ring.Addr(0))
	}
}

// The driver option rejectReadOnly=true would turn the read-only session's
// refusal (1792) into driver.ErrBadConn, so that a read that writes looked
// unsent on every node and demoted them all; the router turns it off, as it
// handles read-only servers itself.
func TestRejectReadOnlyParamKeepsReadsThatWriteWorking(t *testing.T) {
	ring, _, c := startRing(t, 2, func(cfg *dbrouter.Config) {
		cfg.Defaults.Params = map[string]string{"rejectReadOnly": "true"}
	})
	ctx := testContext(t, time.Minute)
	_, err := c.ExecContext(ctx, "CREATE TABLE orders (pk BIGINT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL)")
	require.NoError(t, err)
	if _, err := ring.AdminDB(0).ExecContext(ctx, `CREATE FUNCTION ringtest.create_order(x INT) RETURNS INT
		DETERMINISTIC MODIFIES SQL DATA
		BEGIN INSERT INTO ringtest.orders (n) VALUES (x); RETURN x; END`); err != nil {
		t.Fatal(err)
	}
	var got int
	if err := c.QueryRowContext(ctx, "SELECT ringtest.create_order(7)").Scan(&got); err != nil || got != 7 {
		t.Fatalf("SELECT create_order(7) with rejectReadOnly=true: %d, %v", got, err)
	}
	var n int
	if err := ring.AdminDB(0).QueryRowContext(ctx, "SELECT COUNT(*) FROM ringtest.orders WHERE n = 7").Scan(&n); err != nil || n != 1 {
		t.Fatalf("orders on node 0: %d, %v; want 1", n, err)
	}
	if st := c.Stats(); st.Writer != ring.Addr(0) || st.Nodes[0].State != dbrouter.StateUp {
		t.Fatalf("writer %q, node 0 %s: a read that writes moved the writer", st.Writer, st.Nodes[0].State)
	}
}
