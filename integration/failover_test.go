package integration

// Integration tests on real MariaDB rings started by ringtest: the failover
// claims of docs/design.md (§2, §4–§6) proven against servers that are killed (SIGKILL),
// frozen (SIGSTOP) and made read-only, not against mocks.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
)

const ringPassword = "app-secret-Zq7" // checked against every error text

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
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	c, err := r.Cluster("ring")
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, 30*time.Second)
	if _, err := c.ExecContext(ctx, `CREATE TABLE t (
		pk BIGINT AUTO_INCREMENT PRIMARY KEY,
		id VARCHAR(64) NOT NULL,
		writer INT NOT NULL DEFAULT 0,
		node INT NOT NULL DEFAULT 0,
		KEY (id))`); err != nil {
		t.Fatal(err)
	}
	if err := ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	return ring, r, c
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// rowCounts returns how many rows each id has on node i.
func rowCounts(t *testing.T, ring *ringtest.Ring, i int) map[string]int {
	t.Helper()
	rows, err := ring.AdminDB(i).QueryContext(testContext(t, 30*time.Second), "SELECT id, COUNT(*) FROM ringtest.t GROUP BY id")
	if err != nil {
		t.Fatalf("node %d: %v", i, err)
	}
	defer rows.Close()
	m := make(map[string]int)
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		m[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func assertNoPassword(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), ringPassword) {
		t.Errorf("error shows the password: %v", err)
	}
}

func TestRingWritesReplicate(t *testing.T) {
	t.Parallel()
	ring, _, c := startRing(t, 3, nil)
	ctx := testContext(t, 30*time.Second)
	var tr dbrouter.Trace
	for i := range 10 {
		if _, err := c.ExecContext(dbrouter.WithTrace(ctx, &tr), "INSERT INTO t (id) VALUES (?)", fmt.Sprint("r", i)); err != nil {
			t.Fatal(err)
		}
		if tr.Node != ring.Addr(0) {
			t.Fatalf("write served by %s, want the first node %s", tr.Node, ring.Addr(0))
		}
	}
	if err := ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got := rowCounts(t, ring, i); len(got) != 10 {
			t.Errorf("node %d has %d ids, want 10", i, len(got))
		}
	}
	var n int
	if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 10 {
		t.Errorf("QueryRow count = %d, %v; want 10", n, err)
	}
}

// outcome is what a writer goroutine saw for one write.
type outcome int

const (
	okDirect  outcome = iota // acknowledged by the first node tried
	okRetried                // acknowledged after a transparent retry
	unknown                  // *OutcomeUnknownError
	notSent                  // ErrNotSent
	otherErr                 // anything else: a test failure
)

// TestKillWriterUnderLoad kills the writer with SIGKILL while several
// goroutines write, and checks that writes continue on the next node and
// that nothing acknowledged is lost and nothing is doubled.
func TestKillWriterUnderLoad(t *testing.T) {
	t.Parallel()
	ring, _, c := startRing(t, 3, nil)
	ctx := testContext(t, 60*time.Second)

	const writers = 6
	var (
		mu       sync.Mutex
		results  = make(map[string]outcome)
		byNode   = make(map[string]int)
		killed   atomic.Bool
		afterOK  atomic.Int64 // writes acknowledged after the kill
		firstOK  atomic.Int64 // unix nanos of the first of them
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		firstErr atomic.Value
	)
	for w := range writers {
		wg.Go(func() {
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%06d", w, seq)
				var tr dbrouter.Trace
				cctx, cancel := context.WithTimeout(dbrouter.WithTrace(ctx, &tr), 5*time.Second)
				_, err := c.ExecContext(cctx, "INSERT INTO t (id, writer, node) VALUES (?, ?, @@server_id)", id, w)
				cancel()
				o := okDirect
				switch {
				case err == nil && len(tr.Attempts) > 0:
					o = okRetried
				case err == nil:
				case errors.Is(err, dbrouter.ErrOutcomeUnknown):
					o = unknown
				case errors.Is(err, dbrouter.ErrNotSent):
					o = notSent
				default:
					o = otherErr
					firstErr.CompareAndSwap(nil, err)
				}
				if err != nil {
					assertNoPassword(t, err)
				}
				mu.Lock()
				results[id] = o
				if err == nil {
					byNode[tr.Node]++
				}
				mu.Unlock()
				if err == nil && killed.Load() {
					afterOK.Add(1)
					firstOK.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		})
	}
	waitFor(t, ctx, "200 writes before the kill", func() bool { mu.Lock(); defer mu.Unlock(); return len(results) >= 200 })
	killAt := time.Now()
	if err := ring.Kill(0); err != nil {
		t.Fatal(err)
	}
	killed.Store(true)
	waitFor(t, ctx, "200 writes after the kill", func() bool { return afterOK.Load() >= 200 })
	close(stop)
	wg.Wait()
	t.Logf("kill to first acknowledged write: %v; to 200 acknowledged writes: %v",
		time.Unix(0, firstOK.Load()).Sub(killAt).Round(time.Microsecond), time.Since(killAt).Round(time.Millisecond))
	if err, _ := firstErr.Load().(error); err != nil {
		t.Fatalf("a write failed with an unclassified error: %v", err)
	}

	// Bring the killed node back: writes it acknowledged but had not yet
	// shipped are in its binlog and reach the others when it returns.
	if err := ring.Restart(0); err != nil {
		t.Fatal(err)
	}
	if err := ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}

	count := map[outcome]int{}
	for _, o := range results {
		count[o]++
	}
	t.Logf("writes: %d acknowledged directly, %d acknowledged after a transparent retry, %d outcome unknown, %d not sent; served by %v",
		count[okDirect], count[okRetried], count[unknown], count[notSent], byNode)
	// The writes in flight when the server died are the ones whose outcome
	// is unknown: at most one per writer. Later writes either found the node
	// marked failed or failed to reach it and were retried transparently
	// (TestKillIdleWriterRetriesTransparently forces that path).
	if count[unknown] > writers {
		t.Errorf("%d outcome-unknown writes; at most %d (one in flight per writer) can be", count[unknown], writers)
	}
	if count[unknown]+count[okRetried] == 0 {
		t.Errorf("no write noticed the kill")
	}
	if byNode[ring.Addr(1)] == 0 {
		t.Errorf("no write served by the second node %s", ring.Addr(1))
	}
	for i := range 3 {
		rows := rowCounts(t, ring, i)
		var unknownApplied int
		for id, o := range results {
			n := rows[id]
			switch {
			case n > 1:
				t.Errorf("node %d: id %s written %d times", i, id, n)
			case (o == okDirect || o == okRetried) && n != 1:
				t.Errorf("node %d: acknowledged id %s (%v) is missing", i, id, o)
			case o == notSent && n != 0:
				t.Errorf("node %d: id %s was reported not sent but exists", i, id)
			case o == unknown && n == 1:
				unknownApplied++
			}
		}
		if len(rows) > len(results) {
			t.Errorf("node %d has %d ids, more than the %d written", i, len(rows), len(results))
		}
		t.Logf("node %d: %d ids; of the %d outcome-unknown writes, %d were applied", i, len(rows), count[unknown], unknownApplied)
	}
}

// TestKillIdleWriterRetriesTransparently kills the writer while its pool
// holds idle connections: the next write finds them dead before sending
// anything, cannot connect again, and is retried on the next node without
// the caller seeing an error.
func TestKillIdleWriterRetriesTransparently(t *testing.T) {
	t.Parallel()
	ring, _, c := startRing(t, 3, nil)
	ctx := testContext(t, 30*time.Second)
	if _, err := c.ExecContext(ctx, "INSERT INTO t (id) VALUES ('idle-1')"); err != nil {
		t.Fatal(err)
	}
	if err := ring.Kill(0); err != nil {
		t.Fatal(err)
	}
	var tr dbrouter.Trace
	if _, err := c.ExecContext(dbrouter.WithTrace(ctx, &tr), "INSERT INTO t (id) VALUES ('idle-2')"); err != nil {
		t.Fatalf("write after the kill: %v", err)
	}
	switch {
	case tr.Node == ring.Addr(1) && len(tr.Attempts) == 1 && tr.Attempts[0].Class == dbrouter.ClassNotSent:
		t.Logf("retried transparently after: %v", tr.Attempts[0])
	case tr.Node == ring.Addr(1) && len(tr.Attempts) == 0 && c.Stats().Nodes[0].State != dbrouter.StateUp:
		// A probe saw the kill first (its own connection broke with the
		// server): the write went to the next node directly.
		t.Logf("a probe demoted %s before the write: %s", ring.Addr(0), c.Stats().Nodes[0].LastError)
	default:
		t.Fatalf("served by %s after %v; want %s after one not-sent failure on %s, or directly once a probe demoted it", tr.Node, tr.Attempts, ring.Addr(1), ring.Addr(0))
	}
	if err := ring.Restart(0); err != nil {
		t.Fatal(err)
	}
	if err := ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got := rowCounts(t, ring, i); got["idle-1"] != 1 || got["idle-2"] != 1 {
			t.Errorf("node %d: rows %v, want idle-1 and idle-2 once each", i, got)
		}
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestReadOnlyWriterMovesWrites(t *testing.T) {
	t.Parallel()
	ring, _, c := startRing(t, 3, nil)
	ctx := testContext(t, 30*time.Second)
	if err := ring.SetReadOnly(0, true); err != nil {
		t.Fatal(err)
	}
	var tr dbrouter.Trace
	if _, err := c.ExecContext(dbrouter.WithTrace(ctx, &tr), "INSERT INTO t (id) VALUES ('ro-1')"); err != nil {
		t.Fatal(err)
	}
	if tr.Node != ring.Addr(1) || len(tr.Attempts) != 1 || tr.Attempts[0].Class != dbrouter.ClassReadOnly {
		t.Fatalf("served by %s after %v; want %s after one read-only refusal", tr.Node, tr.Attempts, ring.Addr(1))
	}
	if got := c.WriterAddr(); got != ring.Addr(1) {
		t.Errorf("WriterAddr = %s, want %s", got, ring.Addr(1))
	}
	// Reads still work, from the writer.
	var n int
	if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM t WHERE id = 'ro-1'").Scan(&n); err != nil || n != 1 {
		t.Errorf("read after failover: n=%d err=%v", n, err)
	}
	if err := ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rowCounts(t, ring, 0)["ro-1"]; got != 1 {
		t.Errorf("read-only node has %d copies of ro-1 (replicated), want 1", got)
	}
}

func TestAllNodesDownThenOneReturns(t *testing.T) {
	t.Parallel()
	ring, _, c := startRing(t, 3, nil)
	ctx := testContext(t, 60*time.Second)
	for i := range 3 {
		if err := ring.Kill(i); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	_, err := c.ExecContext(ctx, "INSERT INTO t (id) VALUES ('down-1')")
	elapsed := time.Since(start)
	var nw *dbrouter.NoWriterError
	if !errors.As(err, &nw) || !errors.Is(err, dbrouter.ErrNoWriter) || !errors.Is(err, dbrouter.ErrNotSent) {
		t.Fatalf("err = %v, want *NoWriterError (ErrNoWriter, ErrNotSent)", err)
	}
	assertNoPassword(t, err)
	if len(nw.Attempts) != 3 {
		t.Errorf("attempts = %d, want 3: %v", len(nw.Attempts), err)
	}
	for i := range 3 {
		if !strings.Contains(err.Error(), ring.Addr(i)) {
			t.Errorf("error does not name node %s: %v", ring.Addr(i), err)
		}
	}
	t.Logf("all nodes down: error after %v:\n%v", elapsed.Round(time.Millisecond), err)
	if elapsed > 5*time.Second {
		t.Errorf("took %v to report three refused nodes", elapsed)
	}
	if err := ring.Restart(1); err != nil {
		t.Fatal(err)
	}
	// The health probes bring node 1 back after recover_after good probes.
	restarted := time.Now()
	var tr dbrouter.Trace
	waitFor(t, ctx, "a write to succeed", func() bool {
		_, err := c.ExecContext(dbrouter.WithTrace(ctx, &tr), "INSERT INTO t (id) VALUES ('down-2')")
		return err == nil
	})
	t.Logf("node 1 ready to first write served: %v", time.Since(restarted).Round(time.Millisecond))
	if tr.Node != ring.Addr(1) {
		t.Errorf("served by %s, want %s", tr.Node, ring.Addr(1))
	}
}

// TestFrozenServerHandshakeIsBounded freezes the first node before any
// connection to it exists: the kernel still accepts the TCP connection but
// the server never sends its handshake. connect_timeout must cut that wait
// and the write must go to the next node, well before the caller's deadline.
func TestFrozenServerHandshakeIsBounded(t *testing.T) {
	t.Parallel()
	ring, _, _ := startRing(t, 2, nil)
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: ringPassword, Database: "ringtest", ConnectTimeout: 300 * time.Millisecond},
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.DiscardHandler),
	}
	r, err := dbrouter.Open(cfg) // a fresh router: no pooled connection to node 0
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, _ := r.Cluster("ring")
	if err := ring.Freeze(0); err != nil {
		t.Fatal(err)
	}
	defer ring.Thaw(0)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var tr dbrouter.Trace
	start := time.Now()
	_, err = c.ExecContext(dbrouter.WithTrace(ctx, &tr), "INSERT INTO t (id) VALUES ('frozen-1')")
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("frozen first node: write served by %s after %v (connect_timeout 300ms)", tr.Node, elapsed.Round(time.Millisecond))
	if tr.Node != ring.Addr(1) || len(tr.Attempts) != 1 || tr.Attempts[0].Class != dbrouter.ClassNotSent {
		t.Errorf("trace: node %s attempts %v; want node 1 after one not-sent failure", tr.Node, tr.Attempts)
	}
	if elapsed > 5*time.Second {
		t.Errorf("write took %v; the handshake wait was not bounded by connect_timeout", elapsed)
	}
}
