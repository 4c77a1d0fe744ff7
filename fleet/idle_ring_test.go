package fleet

import (
	"slices"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
)

// TestRingKillWriterIdleRouters: TestRingKillWriter with every router idle
// (no call for longer than twice idle_interval, so their Up nodes are
// probed every idle_interval): each router sees the kill only at its next
// probe, so the majority of Down views, and the decision, come up to
// idle_interval later than on busy routers (docs/fleet.md).
func TestRingKillWriterIdleRouters(t *testing.T) {
	f := startFleetRing(t, ringOptions{})
	cl := f.cl
	time.Sleep(3*dbrouter.DefaultIdleInterval + 500*time.Millisecond)
	if err := f.ring.Kill(0); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	on := make([]time.Duration, len(f.routers))
	var local time.Duration
	var d Decision
	eventually(t, "every router on the decided new writer", func() bool {
		if local == 0 {
			if w := f.local.cluster.Stats().Writer; w != "" && w != f.addrs[0] {
				local = time.Since(killed)
			}
		}
		getJSON(t, cl, WriterKey(f.prefix, "ring"), &d)
		done := d.Epoch == f.epoch+1
		for i, r := range f.routers {
			if on[i] == 0 && d.Epoch == f.epoch+1 && r.cluster.Stats().Writer == d.Writer {
				on[i] = time.Since(killed)
			}
			done = done && on[i] > 0
		}
		return done && local > 0
	})
	all := slices.Max(on)
	t.Logf("idle routers, writer killed: decision epoch %d → %s (%s)", d.Epoch, d.Writer, d.Cause)
	t.Logf("kill → each idle fleet router on the new writer: %v; all three: %v; idle local-mode router: %v",
		on, all.Round(time.Millisecond), local.Round(time.Millisecond))
	if bound := dbrouter.DefaultIdleInterval + 2*dbrouter.DefaultProbeTimeout + time.Second; all > bound {
		t.Errorf("idle fleet routers on the new writer %v after the kill, want within %v", all, bound)
	}
}
