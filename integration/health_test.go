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
)

// healthRing starts a ring and a router with default health settings and
// records every event.
func healthRing(t *testing.T, n int) (*ringtest.Ring, *dbrouter.Cluster, *eventLog) {
	t.Helper()
	events := &eventLog{}
	ring, _, c := startRing(t, n, func(cfg *dbrouter.Config) { cfg.OnEvent = events.add })
	ctx := testContext(t, 30*time.Second)
	if _, err := c.ExecContext(ctx, "CREATE TABLE h (seq INT PRIMARY KEY, seen INT NOT NULL, node INT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if err := ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	return ring, c, events
}

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
	if err := ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	rows, err := ring.AdminDB(1).QueryContext(ctx, "SELECT seq, seen FROM ringtest.h")
	if err != nil {
		t.Fatal(err)
	}
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
	ctx := testContext(t, 60*time.Second)
	w := startSeqWriter(t, c)
	waitFor(t, ctx, "writes on A", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return len(w.writes) > 50 })

	frozeAt := time.Now()
	if err := ring.Freeze(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "a write on B", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		_, ok := firstOKOn(w.writes, ring.Addr(1), frozeAt)
		return ok
	})
	waitFor(t, ctx, "50 more writes", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return len(w.writes) > 150 })
	thawedAt := time.Now()
	if err := ring.Thaw(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "writes back on A", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		_, ok := firstOKOn(w.writes, ring.Addr(0), thawedAt)
		return ok
	})
	time.Sleep(300 * time.Millisecond) // a few more writes on A
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
	ctx := testContext(t, 60*time.Second)
	w := startSeqWriter(t, c)
	waitFor(t, ctx, "writes on A", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return len(w.writes) > 50 })
	killedAt := time.Now()
	if err := ring.Kill(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "100 writes on B", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return len(w.writes) > 150 })
	restartedAt := time.Now()
	if err := ring.Restart(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "writes back on A", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		_, ok := firstOKOn(w.writes, ring.Addr(0), restartedAt)
		return ok
	})
	time.Sleep(300 * time.Millisecond)
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

func logEvents(t *testing.T, events *eventLog) {
	t.Helper()
	for _, ev := range events.all() {
		t.Logf("event %s %s: %s %s → %s (%s)", ev.At.Format("15:04:05.000"), ev.Kind, ev.Node, ev.From, ev.To, ev.Cause)
	}
}

// TestReadOnlyWriterDemotedByProbe makes the writer read-only with no
// traffic at all: the probes alone must move the writer role.
func TestReadOnlyWriterDemotedByProbe(t *testing.T) {
	t.Parallel()
	ring, c, _ := healthRing(t, 3)
	ctx := testContext(t, 30*time.Second)
	if got := c.WriterAddr(); got != ring.Addr(0) {
		t.Fatalf("writer %s, want %s", got, ring.Addr(0))
	}
	at := time.Now()
	if err := ring.SetReadOnly(0, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the writer to move", func() bool { return c.WriterAddr() == ring.Addr(1) })
	d := time.Since(at)
	t.Logf("read_only=ON to writer moved by the probes: %v (probe interval %v)", d.Round(time.Millisecond), dbrouter.DefaultProbeInterval)
	if d > 5*time.Second {
		t.Errorf("demotion took %v", d)
	}
	// Back to writable: A has everything, so writes return to it.
	if err := ring.SetReadOnly(0, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the writer to return", func() bool { return c.WriterAddr() == ring.Addr(0) })
}

// TestAllFrozenFailsFast freezes every node: once the probes have marked
// them Down, a call fails at once with the no-writer error instead of
// hanging until the caller's deadline.
func TestAllFrozenFailsFast(t *testing.T) {
	t.Parallel()
	ring, c, _ := healthRing(t, 3)
	ctx := testContext(t, 30*time.Second)
	for i := range 3 {
		if err := ring.Freeze(i); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range 3 {
			ring.Thaw(i)
		}
	})
	waitFor(t, ctx, "every node Down", func() bool {
		for _, n := range c.Stats().Nodes {
			if n.State != dbrouter.StateDown {
				return false
			}
		}
		return true
	})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.ExecContext(cctx, "INSERT INTO h VALUES (1, 0, 0)")
	d := time.Since(start)
	if !errors.Is(err, dbrouter.ErrNoWriter) || !errors.Is(err, dbrouter.ErrNotSent) {
		t.Fatalf("err = %v, want ErrNoWriter", err)
	}
	t.Logf("all nodes frozen and Down: failed in %v with:\n%v", d, err)
	if d > 2*time.Second {
		t.Errorf("took %v; want an immediate failure", d)
	}
	for i := range 3 {
		ring.Thaw(i)
	}
	waitFor(t, ctx, "a writer again", func() bool { return c.WriterAddr() != "" })
	if _, err := c.ExecContext(ctx, "INSERT INTO h VALUES (1, 0, 0)"); err != nil {
		t.Fatal(err)
	}
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
