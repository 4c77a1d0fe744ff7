package dbrouter

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleWakeWithCallInFlight: the first call on an idle cluster probes
// every node at once (docs/health.md, "Idle clusters") even when it lands
// on a node where an older call still runs (a long query: the node's
// stall watch is armed already, so the new call does not arm it).
func TestIdleWakeWithCallInFlight(t *testing.T) {
	const idle = time.Second
	set := Settings{Health: HealthConfig{Interval: 20 * time.Millisecond, IdleInterval: idle, Timeout: 100 * time.Millisecond}}
	c, srv := newFakeClusterWithProbes(t, 3, set, nil)
	counts := make([]*atomic.Int64, len(srv))
	release := make(chan struct{})
	for i, s := range srv {
		n := &atomic.Int64{}
		counts[i] = n
		s.set(func(s *fakeServer) {
			s.execFn = func(ctx context.Context, q string) error {
				switch q {
				case probeMariaDB:
					n.Add(1)
				case "SELECT long":
					select {
					case <-release:
					case <-ctx.Done():
					}
				}
				return nil
			}
		})
	}
	if w := c.WriterAddr(); w != "a:3306" {
		t.Fatalf("writer %q", w)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.ExecContext(context.Background(), "SELECT long") // on the writer, a
	}()
	defer func() { close(release); <-done }()
	// No new call for twice idle, then one idle for b and c to be on it.
	time.Sleep(3*idle + 200*time.Millisecond)
	b, cc := counts[1].Load(), counts[2].Load()
	if _, err := c.ExecContext(testCtx(t), "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if counts[1].Load() == b || counts[2].Load() == cc {
		t.Errorf("150 ms after the first call on an idle cluster, b probed %d and c %d times: want every node probed at once (idle rate %v)",
			counts[1].Load()-b, counts[2].Load()-cc, idle)
	}
}
