package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/stretchr/testify/require"
)

// TestOpenDBKillWriterUnderLoad kills the writer (SIGKILL) while 4
// goroutines write through Router.OpenDB's plain *sql.DB (what an ORM is
// given): writes go on on the next node through database/sql's own
// retries, every acknowledged write is on every node exactly once, nothing
// is doubled, and the writes whose fate is unknown say so through
// errors.Is.
func TestOpenDBKillWriterUnderLoad(t *testing.T) {
	t.Parallel()
	openDBFaultUnderLoad(t, "kill", (*ringtest.Ring).Kill, (*ringtest.Ring).Restart)
}

// TestOpenDBFreezeWriterUnderLoad is TestOpenDBKillWriterUnderLoad with
// the writer frozen (SIGSTOP), then thawed.
func TestOpenDBFreezeWriterUnderLoad(t *testing.T) {
	t.Parallel()
	openDBFaultUnderLoad(t, "freeze", (*ringtest.Ring).Freeze, (*ringtest.Ring).Thaw)
}

func openDBFaultUnderLoad(t *testing.T, name string, fault, recover func(*ringtest.Ring, int) error) {
	ring, r, _ := startRing(t, 3, nil)
	db, err := r.OpenDB("ring")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	ctx := testContext(t, 90*time.Second)

	const writers = 4
	var (
		mu       sync.Mutex
		results  = make(map[string]outcome)
		killed   atomic.Bool
		afterOK  atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		firstErr atomic.Value
	)
	defer func() { // also when a require fails: no write outlives the test
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	for w := range writers {
		wg.Go(func() {
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%06d", w, seq)
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := db.ExecContext(cctx, "INSERT INTO t (id, writer, node) VALUES (?, ?, @@server_id)", id, w)
				cancel()
				o := okDirect
				switch {
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
					t.Logf("%s: %v", id, err)
				}
				mu.Lock()
				results[id] = o
				mu.Unlock()
				if err == nil && killed.Load() {
					afterOK.Add(1)
				}
			}
		})
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(results) >= 200 }, waitTimeout, tick, "200 writes before the kill")
	killAt := time.Now()
	require.NoError(t, fault(ring, 0))
	killed.Store(true)
	require.Eventually(t, func() bool { return afterOK.Load() >= 200 }, waitTimeout, tick, "200 writes after the kill")
	close(stop)
	wg.Wait()
	t.Logf("%s to 200 acknowledged writes: %v", name, time.Since(killAt).Round(time.Millisecond))
	if err, _ := firstErr.Load().(error); err != nil {
		t.Fatalf("a write failed with an unclassified error: %v", err)
	}

	require.NoError(t, recover(ring, 0))
	require.NoError(t, ring.WaitConverged(ctx))

	count := map[outcome]int{}
	for _, o := range results {
		count[o]++
	}
	t.Logf("%s, writes through OpenDB: %d acknowledged, %d outcome unknown, %d not sent",
		name, count[okDirect], count[unknown], count[notSent])
	require.LessOrEqual(t, count[unknown], 3*writers, "outcome-unknown writes: a few in flight per writer at most")
	var servers int
	require.NoError(t, ring.AdminDB(0).QueryRowContext(ctx, "SELECT COUNT(DISTINCT node) FROM ringtest.t").Scan(&servers))
	require.GreaterOrEqual(t, servers, 2, "writes served by the killed writer and by the next node")
	for i := range 3 {
		rows := rowCounts(t, ring, i)
		var lost, doubled, unknownApplied int
		for id, o := range results {
			n := rows[id]
			switch {
			case n > 1:
				doubled++
				t.Errorf("node %d: id %s written %d times", i, id, n)
			case o == okDirect && n != 1:
				lost++
				t.Errorf("node %d: acknowledged id %s is missing", i, id)
			case o == notSent && n != 0:
				t.Errorf("node %d: id %s was reported not sent but exists", i, id)
			case o == unknown && n == 1:
				unknownApplied++
			}
		}
		require.LessOrEqual(t, len(rows), len(results), "node %d has ids nobody wrote", i)
		t.Logf("node %d: %d ids; acknowledged lost %d, doubled %d; of %d outcome unknown, %d applied",
			i, len(rows), lost, doubled, count[unknown], unknownApplied)
	}
}
