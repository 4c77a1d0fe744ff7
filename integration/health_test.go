package integration

// Health probes on real rings: frozen, killed and read-only writers, safe
// failback, fail-fast when every node is down, and no false demotion under
// CPU saturation.

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/stretchr/testify/require"
)

// healthRing starts a ring and a router with default health settings and
// records every event.
func healthRing(t *testing.T, n int) (*ringtest.Ring, *dbrouter.Cluster, *eventLog) {
	t.Helper()
	events := &eventLog{}
	ring, _, c := startRing(t, n, func(cfg *dbrouter.Config) { cfg.OnEvent = events.add })
	ctx := testContext(t, 30*time.Second)
	_, err := c.ExecContext(ctx, "CREATE TABLE h (seq INT PRIMARY KEY, seen INT NOT NULL, node INT NOT NULL)")
	require.NoError(t, err)
	require.NoError(t, ring.WaitConverged(ctx))
	return ring, c, events
}

// seqWrite is one write of seqWriter.
type seqWrite struct {
	seq       int
	node      string // node that acknowledged it
	ok        bool
	unknown   bool
	start     time.Time
	end       time.Time
	ackedPrev int // highest seq acknowledged before this write was sent
}

// seqWriter writes rows 1, 2, 3, ... one at a time; each row records the
// highest seq the serving node held when it ran the write ("seen"), which
// later proves whether that node had caught up.
type seqWriter struct {
	mu     sync.Mutex
	writes []seqWrite
	stop   chan struct{}
	done   chan struct{}
}

func startSeqWriter(t *testing.T, c *dbrouter.Cluster) *seqWriter {
	w := &seqWriter{stop: make(chan struct{}), done: make(chan struct{})}
	ctx := t.Context()
	go func() {
		defer close(w.done)
		acked := 0
		for seq := 1; ; seq++ {
			select {
			case <-w.stop:
				return
			default:
			}
			var tr dbrouter.Trace
			cctx, cancel := context.WithTimeout(dbrouter.WithTrace(ctx, &tr), 3*time.Second)
			start := time.Now()
			_, err := c.ExecContext(cctx, "INSERT INTO h (seq, seen, node) SELECT ?, COALESCE(MAX(seq), 0), @@server_id FROM h", seq)
			cancel()
			sw := seqWrite{seq: seq, start: start, end: time.Now(), ackedPrev: acked, node: tr.Node, ok: err == nil, unknown: errors.Is(err, dbrouter.ErrOutcomeUnknown)}
			if err == nil {
				acked = seq
			} else if !sw.unknown {
				time.Sleep(5 * time.Millisecond) // no writer at all: do not spin
			}
			w.mu.Lock()
			w.writes = append(w.writes, sw)
			w.mu.Unlock()
		}
	}()
	return w
}

// count returns how many writes have returned so far.
func (w *seqWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.writes)
}

// ackedOn returns how many writes that started after t0 addr acknowledged.
func (w *seqWriter) ackedOn(addr string, t0 time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, x := range w.writes {
		if x.ok && x.node == addr && x.start.After(t0) {
			n++
		}
	}
	return n
}

func (w *seqWriter) halt() []seqWrite {
	close(w.stop)
	<-w.done
	return w.writes
}

// firstOKOn returns the first acknowledged write served by addr that
// started after t0.
func firstOKOn(ws []seqWrite, addr string, t0 time.Time) (seqWrite, bool) {
	for _, w := range ws {
		if w.ok && w.node == addr && w.start.After(t0) {
			return w, true
		}
	}
	return seqWrite{}, false
}

// checkCaughtUp verifies on the converged ring that every write node addr
// ran after t0 saw every write acknowledged before it was sent.
func checkCaughtUp(t *testing.T, ring *ringtest.Ring, ws []seqWrite, addr string, t0 time.Time) int {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	require.NoError(t, ring.WaitConverged(ctx))
	seen := map[int]int{}
	rows, err := ring.AdminDB(1).QueryContext(ctx, "SELECT seq, seen FROM ringtest.h")
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var s, v int
		rows.Scan(&s, &v)
		seen[s] = v
	}
	n := 0
	for _, w := range ws {
		if w.ok && w.node == addr && w.start.After(t0) {
			n++
			if seen[w.seq] < w.ackedPrev {
				t.Errorf("write %d went to %s before it had caught up: it saw seq %d, but %d had been acknowledged", w.seq, addr, seen[w.seq], w.ackedPrev)
			}
		}
		if w.ok {
			if _, ok := seen[w.seq]; !ok {
				t.Errorf("acknowledged write %d is missing", w.seq)
			}
		}
	}
	return n
}

// TestFreezeWriterThenThaw freezes the writer (SIGSTOP): with default
// settings writes must flow on the next node within about a second, and
// after Thaw the old writer must get writes back only once caught up.
func TestFreezeWriterThenThaw(t *testing.T) {
	t.Parallel()
	ring, c, events := healthRing(t, 3)
	w := startSeqWriter(t, c)
	require.Eventually(t, func() bool { return w.count() > 50 }, waitTimeout, tick, "writes on A")

	frozeAt := time.Now()
	require.NoError(t, ring.Freeze(0))
	require.Eventually(t, func() bool { return w.ackedOn(ring.Addr(1), frozeAt) > 0 }, waitTimeout, tick, "a write on B")
	require.Eventually(t, func() bool { return w.count() > 150 }, waitTimeout, tick, "50 more writes")
	thawedAt := time.Now()
	require.NoError(t, ring.Thaw(0))
	require.Eventually(t, func() bool { return w.ackedOn(ring.Addr(0), thawedAt) >= 20 }, waitTimeout, tick, "20 writes back on A")
	ws := w.halt()

	first, _ := firstOKOn(ws, ring.Addr(1), frozeAt)
	back, _ := firstOKOn(ws, ring.Addr(0), thawedAt)
	stall := first.end.Sub(frozeAt)
	t.Logf("freeze to first write acknowledged by B: %v", stall.Round(time.Millisecond))
	t.Logf("thaw to first write on A again: %v", back.start.Sub(thawedAt).Round(time.Millisecond))
	if stall > 5*time.Second {
		t.Errorf("writes resumed on B %v after the freeze; want about 1s (bound 5s)", stall)
	}
	unknown := 0
	for _, x := range ws {
		if x.unknown {
			unknown++
		}
	}
	t.Logf("%d writes, %d outcome unknown (in flight on the frozen node)", len(ws), unknown)
	if n := checkCaughtUp(t, ring, ws, ring.Addr(0), thawedAt); n == 0 {
		t.Error("no write reached A after the thaw")
	}
	logEvents(t, events)
}

// TestKillRestartNoEarlyFailback kills the writer, keeps writing on B,
// restarts A: no write may reach A before A holds every write B took.
func TestKillRestartNoEarlyFailback(t *testing.T) {
	t.Parallel()
	ring, c, events := healthRing(t, 3)
	w := startSeqWriter(t, c)
	require.Eventually(t, func() bool { return w.count() > 50 }, waitTimeout, tick, "writes on A")
	killedAt := time.Now()
	require.NoError(t, ring.Kill(0))
	require.Eventually(t, func() bool { return w.count() > 150 }, waitTimeout, tick, "100 writes on B")
	restartedAt := time.Now()
	require.NoError(t, ring.Restart(0))
	require.Eventually(t, func() bool { return w.ackedOn(ring.Addr(0), restartedAt) >= 20 }, waitTimeout, tick, "20 writes back on A")
	ws := w.halt()
	first, _ := firstOKOn(ws, ring.Addr(1), killedAt)
	back, _ := firstOKOn(ws, ring.Addr(0), restartedAt)
	t.Logf("crash to first write acknowledged by B: %v", first.end.Sub(killedAt).Round(time.Millisecond))
	t.Logf("restart (ready) to first write on A again: %v", back.start.Sub(restartedAt).Round(time.Millisecond))
	if n := checkCaughtUp(t, ring, ws, ring.Addr(0), restartedAt); n == 0 {
		t.Error("no write reached A after the restart")
	}
	logEvents(t, events)
}

// TestReadOnlyWriterDemotedByProbe makes the writer read-only with no
// traffic at all: the probes alone must move the writer role.
func TestReadOnlyWriterDemotedByProbe(t *testing.T) {
	t.Parallel()
	ring, c, _ := healthRing(t, 3)
	require.Equal(t, ring.Addr(0), c.WriterAddr(), "writer")
	at := time.Now()
	require.NoError(t, ring.SetReadOnly(0, true))
	require.Eventually(t, func() bool { return c.WriterAddr() == ring.Addr(1) }, waitTimeout, tick, "the writer to move")
	d := time.Since(at)
	t.Logf("read_only=ON to writer moved by the probes: %v (probe interval %v)", d.Round(time.Millisecond), dbrouter.DefaultProbeInterval)
	if d > 5*time.Second {
		t.Errorf("demotion took %v", d)
	}
	// Back to writable: A has everything, so writes return to it.
	require.NoError(t, ring.SetReadOnly(0, false))
	require.Eventually(t, func() bool { return c.WriterAddr() == ring.Addr(0) }, waitTimeout, tick, "the writer to return")
}

// TestAllFrozenFailsFast freezes every node: once the probes have marked
// them Down, a call fails at once with the no-writer error instead of
// hanging until the caller's deadline.
func TestAllFrozenFailsFast(t *testing.T) {
	t.Parallel()
	ring, c, _ := healthRing(t, 3)
	ctx := testContext(t, 30*time.Second)
	for i := range 3 {
		require.NoError(t, ring.Freeze(i))
	}
	t.Cleanup(func() {
		for i := range 3 {
			ring.Thaw(i)
		}
	})
	require.Eventually(t, func() bool {
		for _, n := range c.Stats().Nodes {
			if n.State != dbrouter.StateDown {
				return false
			}
		}
		return true
	}, waitTimeout, tick, "every node Down")
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.ExecContext(cctx, "INSERT INTO h VALUES (1, 0, 0)")
	d := time.Since(start)
	if !errors.Is(err, dbrouter.ErrNoNode) || !errors.Is(err, dbrouter.ErrNotSent) {
		t.Fatalf("err = %v, want ErrNoNode", err)
	}
	t.Logf("all nodes frozen and Down: failed in %v with:\n%v", d, err)
	if d > 2*time.Second {
		t.Errorf("took %v; want an immediate failure", d)
	}
	for i := range 3 {
		ring.Thaw(i)
	}
	require.Eventually(t, func() bool { return c.WriterAddr() != "" }, waitTimeout, tick, "a writer again")
	_, err = c.ExecContext(ctx, "INSERT INTO h VALUES (1, 0, 0)")
	require.NoError(t, err)
}

// TestNoDemotionUnderCPUSaturation keeps both cores busy with spinning
// goroutines plus a query load for 10 s: the probes must not take a live
// node Down. It does not run in parallel with other tests: the load must be
// its own, and it would starve their timing.
func TestNoDemotionUnderCPUSaturation(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s load test")
	}
	_, c, events := healthRing(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var spins, queries, failures atomic.Int64
	for range runtime.NumCPU() {
		wg.Go(func() {
			for ctx.Err() == nil {
				for range 1_000_000 {
					spins.Add(1)
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				var n int
				if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM h").Scan(&n); err != nil && ctx.Err() == nil {
					failures.Add(1)
				}
				queries.Add(1)
			}
		})
	}
	wg.Wait()
	t.Logf("10 s of saturation: %d queries, %d failed, %d spin iterations", queries.Load(), failures.Load(), spins.Load())
	for _, ev := range events.all() {
		if ev.Kind == dbrouter.EventState && ev.To == dbrouter.StateDown.String() {
			t.Errorf("live node demoted under load: %+v", ev)
		}
		if ev.Kind == dbrouter.EventState {
			t.Logf("event: %s %s → %s (%s)", ev.Node, ev.From, ev.To, ev.Cause)
		}
	}
	for _, n := range c.Stats().Nodes {
		t.Logf("node %s: %s, last probe %v", n.Addr, n.State, n.LastProbeLatency)
	}
}
