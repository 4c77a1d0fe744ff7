package dbrouter

// Benchmarks of the Observer's cost on the hot path, beside those of
// failover_bench_test.go: the same call without an Observer (nil: a nil
// check) and with one that does nothing (the Trace and the CallInfo the
// router builds for it). docs/observability.md reports the figures.

import (
	"context"
	"testing"
)

// BenchmarkObserverCall measures the failover loop around one attempt that
// does nothing (BenchmarkCallOverhead), and ExecContext over the fake
// driver (BenchmarkExecFake's routed case), without and with an Observer.
func BenchmarkObserverCall(b *testing.B) {
	for _, obs := range []struct {
		name string
		o    Observer
	}{{"observer=nil", nil}, {"observer=nop", NopObserver{}}} {
		b.Run("call/"+obs.name, func(b *testing.B) {
			c, _ := newFakeCluster(b, 3, Settings{})
			c.observer = obs.o
			ctx := context.Background()
			attempt := func(context.Context, *node) (bool, error) { return true, nil }
			b.ReportAllocs()
			for b.Loop() {
				if err := c.call(ctx, OpExec, false, false, attempt); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("exec/"+obs.name, func(b *testing.B) {
			c, _ := newFakeCluster(b, 3, Settings{})
			c.observer = obs.o
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.ExecContext(ctx, "INSERT INTO t (id) VALUES (?)", 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
