package integration

// No false alarms from the stall checks (docs/health.md, "Stall checks"):
// a call waiting longer than a quarter of the probe timeout makes the
// router check its node at once, and a node that answers neither a probe
// nor a new connection goes Down. A node that is only slow must not.

import (
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/stretchr/testify/require"
)

// requireNoHealthChange fails the test if any event after t0 took a node
// Down or moved the writer.
func requireNoHealthChange(t *testing.T, events *eventLog, t0 time.Time) {
	t.Helper()
	for _, ev := range events.all() {
		if ev.At.Before(t0) {
			continue
		}
		if ev.Kind == dbrouter.EventWriter || ev.Kind == dbrouter.EventState && ev.To == dbrouter.StateDown.String() {
			t.Errorf("a slow but live writer moved: %s %s %s → %s (%s)", ev.Kind, ev.Node, ev.From, ev.To, ev.Cause)
		}
	}
}

// TestLongStatementsNotAbandoned runs a 5 s SELECT SLEEP(5) and a 5 s
// UPDATE on a healthy writer with default settings, while a sequential
// writer keeps writing: both complete, and the writer stays.
func TestLongStatementsNotAbandoned(t *testing.T) {
	t.Parallel()
	ring, c, events := healthRing(t, 3)
	ctx := testContext(t, 30*time.Second)
	// A table of its own: the UPDATE's row lock must not hold up the
	// sequential writer's INSERT ... SELECT on h.
	_, err := c.ExecContext(ctx, "CREATE TABLE slow (id INT PRIMARY KEY, v INT NOT NULL)")
	require.NoError(t, err)
	_, err = c.ExecContext(ctx, "INSERT INTO slow VALUES (1, 0)")
	require.NoError(t, err)
	t0 := time.Now()
	w := startSeqWriter(t, c)
	var wg sync.WaitGroup
	wg.Go(func() {
		var v int
		start := time.Now()
		require.NoError(t, c.QueryRowContext(ctx, "SELECT SLEEP(5)").Scan(&v), "SELECT SLEEP(5)")
		t.Logf("SELECT SLEEP(5) returned %d after %v", v, time.Since(start).Round(time.Millisecond))
	})
	wg.Go(func() {
		start := time.Now()
		res, err := c.ExecContext(ctx, "UPDATE slow SET v = v + 1 + SLEEP(5) WHERE id = 1")
		require.NoError(t, err, "5 s UPDATE")
		n, _ := res.RowsAffected()
		t.Logf("5 s UPDATE: %d row(s) changed after %v", n, time.Since(start).Round(time.Millisecond))
		require.GreaterOrEqual(t, time.Since(start), 4900*time.Millisecond, "the UPDATE really slept")
	})
	wg.Wait()
	ws := w.halt()
	for _, x := range ws {
		if !x.ok {
			t.Errorf("write %d failed meanwhile (unknown %v)", x.seq, x.unknown)
		}
	}
	require.Equal(t, ring.Addr(0), c.WriterAddr())
	requireNoHealthChange(t, events, t0)
	logEvents(t, events)
}

// TestBrieflySlowWriterStays makes a healthy writer slow for about 150 ms,
// three times each way, while a sequential writer writes: a metadata lock
// held by another session (the writes wait for it) and a SIGSTOP of about
// 150 ms (the whole server is silent, then answers everything). Neither
// moves the writer nor takes a node Down. A SIGSTOP is a 120 ms sleep
// between Freeze, which returns once every thread has stopped, and Thaw;
// on a machine so loaded that one lasts longer than 190 ms in all, it no
// longer models a brief stall (the probe timeout is 200 ms), and the test
// says so instead of judging that part.
func TestBrieflySlowWriterStays(t *testing.T) {
	t.Parallel()
	ring, c, events := healthRing(t, 3)
	t0 := time.Now()
	w := startSeqWriter(t, c)
	require.Eventually(t, func() bool { return w.count() > 20 }, waitTimeout, tick, "writes on A")

	ctx := testContext(t, 30*time.Second)
	admin := ring.AdminDB(0)
	for k := range 3 {
		conn, err := admin.Conn(ctx)
		require.NoError(t, err)
		_, err = conn.ExecContext(ctx, "LOCK TABLES ringtest.h WRITE")
		require.NoError(t, err)
		time.Sleep(150 * time.Millisecond) // the slowness under test
		_, err = conn.ExecContext(ctx, "UNLOCK TABLES")
		require.NoError(t, err)
		conn.Close()
		time.Sleep(time.Duration(100+97*k) * time.Millisecond) // another phase of the probe cycle
	}
	n := w.count()
	require.Eventually(t, func() bool { return w.count() > n+10 }, waitTimeout, tick, "writes after the locks")
	requireNoHealthChange(t, events, t0)
	require.Equal(t, ring.Addr(0), c.WriterAddr())

	t1 := time.Now()
	var longest time.Duration
	for k := range 3 {
		start := time.Now()
		require.NoError(t, ring.Freeze(0))
		time.Sleep(120 * time.Millisecond) // the slowness under test
		require.NoError(t, ring.Thaw(0))
		d := time.Since(start)
		longest = max(longest, d)
		t.Logf("SIGSTOP %d: %v from Freeze to the end of Thaw", k+1, d.Round(time.Millisecond))
		time.Sleep(time.Duration(100+97*k) * time.Millisecond)
	}
	n = w.count()
	require.Eventually(t, func() bool { return w.count() > n+20 }, waitTimeout, tick, "writes after the stalls")
	ws := w.halt()
	logEvents(t, events)
	if longest > 190*time.Millisecond {
		t.Logf("a SIGSTOP lasted up to %v here (machine loaded): not a brief stall; its part is not judged", longest.Round(time.Millisecond))
		return
	}
	for _, x := range ws {
		if !x.ok {
			t.Errorf("write %d failed (unknown %v)", x.seq, x.unknown)
		}
	}
	require.Equal(t, ring.Addr(0), c.WriterAddr())
	requireNoHealthChange(t, events, t1)
}
