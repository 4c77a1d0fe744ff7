package integration

// Planned switchover on a real ring (Cluster.Switchover, issue 18): under a
// constant write load with transactions open, moving the writer A→B and
// back fails no call, and a target that cannot catch up is refused.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/stretchr/testify/require"
)

// ringReadOnly returns a SwitchoverOptions.ReadOnly hook that flips
// read_only with the ring's administrator connection.
func ringReadOnly(ring *ringtest.Ring) func(ctx context.Context, addr string, on bool) error {
	return func(ctx context.Context, addr string, on bool) error {
		i := slices.Index(ring.Addrs(), addr)
		if i < 0 {
			return fmt.Errorf("no node %s", addr)
		}
		return ring.SetReadOnly(i, on)
	}
}

func TestSwitchoverUnderLoad(t *testing.T) {
	ring, _, c := startRing(t, 3, nil)
	ctx := testContext(t, 2*time.Minute)

	type result struct {
		id         string
		start, end time.Time
		err        error
	}
	var (
		mu      sync.Mutex
		results []result
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		seq     atomic.Int64
	)
	record := func(r result) {
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	}
	// Eight writers inserting without pause, and two that keep a
	// transaction open for 20 ms at a time.
	for w := range 10 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("s%d-%d", w, seq.Add(1))
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				start := time.Now()
				var err error
				if w < 8 {
					_, err = c.ExecContext(cctx, "INSERT INTO t (id) VALUES (?)", id)
				} else {
					err = c.RunInTx(cctx, nil, func(ctx context.Context, tx *dbrouter.Tx) error {
						if _, err := tx.ExecContext(ctx, "INSERT INTO t (id) VALUES (?)", id); err != nil {
							return err
						}
						time.Sleep(20 * time.Millisecond)
						_, err := tx.ExecContext(ctx, "INSERT INTO t (id) VALUES (?)", id+"-2")
						return err
					})
				}
				cancel()
				record(result{id: id, start: start, end: time.Now(), err: err})
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(results) }
	require.Eventually(t, func() bool { return count() > 500 }, waitTimeout, tick, "load on A")

	opts := &dbrouter.SwitchoverOptions{ReadOnly: ringReadOnly(ring)}
	var windows [][2]time.Time
	switchTo := func(i int) {
		t0 := time.Now()
		require.NoError(t, c.Switchover(ctx, ring.Addr(i), opts))
		windows = append(windows, [2]time.Time{t0, time.Now()})
		t.Logf("switchover to node %d took %v", i, time.Since(t0).Round(time.Millisecond))
		require.Equal(t, ring.Addr(i), c.WriterAddr())
	}
	switchTo(1)
	n := count()
	require.Eventually(t, func() bool { return count() > n+500 }, waitTimeout, tick, "load on B")
	// Bring A back in service and switch back to it.
	require.NoError(t, ring.SetReadOnly(0, false))
	require.Eventually(t, func() bool { return !c.Stats().Nodes[0].ReadOnly }, waitTimeout, tick, "A writable again")
	switchTo(0)
	n = count()
	require.Eventually(t, func() bool { return count() > n+500 }, waitTimeout, tick, "load on A again")
	close(stop)
	wg.Wait()
	require.NoError(t, ring.SetReadOnly(1, false))

	// Zero failed calls, zero outcome-unknown; the longest stall is the
	// longest call that overlapped a switchover.
	var failed, unknown int
	var stall time.Duration
	stalls := make([]time.Duration, len(windows))
	for _, r := range results {
		if r.err != nil {
			failed++
			if errors.Is(r.err, dbrouter.ErrOutcomeUnknown) {
				unknown++
			}
			t.Errorf("call %s failed: %v", r.id, r.err)
		}
		for i, w := range windows {
			if r.end.After(w[0]) && r.start.Before(w[1]) {
				stall = max(stall, r.end.Sub(r.start))
				stalls[i] = max(stalls[i], r.end.Sub(r.start))
			}
		}
	}
	t.Logf("%d calls (8 writers, 2 with 20 ms transactions), 2 switchovers: %d failed, %d outcome unknown; longest call overlapping a switchover: %v (A→B %v, B→A %v)",
		len(results), failed, unknown, stall.Round(time.Millisecond), stalls[0].Round(time.Millisecond), stalls[1].Round(time.Millisecond))
	require.Less(t, stall, 5*time.Second, "a switchover stalled calls for long")

	// Nothing lost, nothing doubled, on every node.
	require.NoError(t, ring.WaitConverged(ctx))
	for i := range 3 {
		rows := rowCounts(t, ring, i)
		for _, r := range results {
			if r.err == nil && rows[r.id] != 1 {
				t.Errorf("node %d: acknowledged %s is there %d times", i, r.id, rows[r.id])
			}
		}
	}
}

func TestSwitchoverRefusedWhenTargetLags(t *testing.T) {
	ring, _, c := startRing(t, 3, nil)
	ctx := testContext(t, time.Minute)
	// B stops replicating, and A takes writes B does not have.
	_, err := ring.AdminDB(1).ExecContext(ctx, "STOP SLAVE")
	require.NoError(t, err)
	for i := range 20 {
		_, err := c.ExecContext(ctx, "INSERT INTO t (id) VALUES (?)", fmt.Sprintf("lag-%d", i))
		require.NoError(t, err)
	}
	start := time.Now()
	err = c.Switchover(ctx, ring.Addr(1), &dbrouter.SwitchoverOptions{CatchUpTimeout: 500 * time.Millisecond})
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
	require.ErrorIs(t, err, dbrouter.ErrSwitchoverRefused)
	require.ErrorContains(t, err, "did not reach")
	require.Equal(t, ring.Addr(0), c.WriterAddr(), "the writer moved despite the refusal")
	_, err = c.ExecContext(ctx, "INSERT INTO t (id) VALUES ('after-refusal')")
	require.NoError(t, err)
	_, err = ring.AdminDB(1).ExecContext(ctx, "START SLAVE")
	require.NoError(t, err)
	require.NoError(t, ring.WaitConverged(ctx))
}
