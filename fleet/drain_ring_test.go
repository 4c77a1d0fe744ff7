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

// TestRingFleetDrain: an operator drains the writer, node 0, for the fleet
// under a write load on each fleet router: the decider moves the writer to
// node 1, every router follows through its fence and then drains node 0
// (its stats say so; a read goes elsewhere); no write fails and
// none is outcome unknown. Undrain puts node 0 back in service everywhere,
// and the writer stays on node 1.
func TestRingFleetDrain(t *testing.T) {
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
	if err := Drain(ctx, f.cl, f.prefix, "ring", f.addrs[0], "test"); err != nil {
		t.Fatal(err)
	}
	st, err := WaitDrained(ctx, f.cl, f.prefix, "ring", f.addrs[0])
	if err != nil {
		t.Fatalf("WaitDrained: %v (%+v)", err, st)
	}
	all := time.Since(start)
	n := ok.Load()
	eventually(t, "writes on node 1", func() bool { return ok.Load() > n+300 })
	close(stop)
	wg.Wait()
	t.Logf("fleet drain of node 0: writer %s, every router drained it %v after the key was stored; %d writes acknowledged, %d failed; longest write %v",
		st.Writer, all.Round(time.Millisecond), ok.Load(), len(failed), time.Duration(longest.Load()).Round(time.Millisecond))
	for _, err := range failed {
		t.Errorf("a write failed during the drain (outcome unknown: %v): %v", errors.Is(err, dbrouter.ErrOutcomeUnknown), err)
	}
	if st.Writer != f.addrs[1] || !f.allOn(f.addrs[1]) {
		t.Errorf("writer %s after draining node 0, want node 1 (%s) on every router", st.Writer, f.addrs[1])
	}
	for _, r := range f.routers {
		if !r.cluster.Stats().Nodes[0].Drained {
			t.Errorf("%s: node 0 not drained", r.user)
		}
		var server int
		if err := r.cluster.QueryRowContext(ctx, "SELECT @@server_id").Scan(&server); err != nil || server == f.serverID(t, 0) {
			t.Errorf("%s: a read went to server %d (%v), node 0's is %d", r.user, server, err, f.serverID(t, 0))
		}
	}

	if _, err := Undrain(ctx, f.cl, f.prefix, "ring", f.addrs[0]); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node 0 undrained by every router", func() bool {
		for _, r := range f.routers {
			if r.cluster.Stats().Nodes[0].Drained {
				return false
			}
		}
		return true
	})
	if !f.allOn(f.addrs[1]) {
		t.Error("the writer moved off node 1 after the undrain")
	}
}
