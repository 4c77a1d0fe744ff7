package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
)

// TestRingFleetSwitchover: an operator's Switchover moves every fleet
// router from node 0 to node 1 under a write load on each, through each
// router's fence: no write fails, none is outcome unknown, and after the
// switch every router's writes land on node 1.
func TestRingFleetSwitchover(t *testing.T) {
	f := startFleetRing(t, ringOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var (
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		ok      atomic.Int64
		mu      sync.Mutex
		failed  []error
		longest atomic.Int64
	)
	for _, r := range f.routers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				start := time.Now()
				_, err := r.cluster.ExecContext(cctx, "INSERT INTO t (router, server) VALUES (?, @@server_id)", r.user)
				cancel()
				if d := int64(time.Since(start)); d > longest.Load() {
					longest.Store(d)
				}
				if err != nil {
					mu.Lock()
					failed = append(failed, fmt.Errorf("%s: %w", r.user, err))
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	eventually(t, "writes on node 0", func() bool { return ok.Load() > 300 })
	start := time.Now()
	d, err := Switchover(ctx, f.cl, f.prefix, "ring", f.addrs[1], "test")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "every fleet router on node 1", func() bool { return f.allOn(f.addrs[1]) })
	all := time.Since(start)
	n := ok.Load()
	eventually(t, "writes on node 1", func() bool { return ok.Load() > n+300 })
	close(stop)
	wg.Wait()
	t.Logf("fleet switchover to node 1 (epoch %d): all three routers on it after %v; %d writes acknowledged, %d failed; longest write %v",
		d.Epoch, all.Round(time.Millisecond), ok.Load(), len(failed), time.Duration(longest.Load()).Round(time.Millisecond))
	for _, err := range failed {
		unknown := errors.Is(err, dbrouter.ErrOutcomeUnknown)
		t.Errorf("a write failed during the switchover (outcome unknown: %v): %v", unknown, err)
	}
	want := f.serverID(t, 1)
	for _, r := range f.routers {
		var server int
		if err := r.cluster.QueryRowContext(ctx, "SELECT server FROM t WHERE router = ? ORDER BY pk DESC LIMIT 1", r.user).Scan(&server); err != nil || server != want {
			t.Errorf("%s: last write on server %d (%v), want node 1's %d", r.user, server, err, want)
		}
	}
}
