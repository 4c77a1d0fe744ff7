package dbrouter

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// BenchmarkCallOverheadProbed is BenchmarkCallOverhead with health probes
// on (a long interval keeps them out of the figures): the cost of the stall
// watch that every attempt on a probed cluster arms (health.go,
// watchStall), which BenchmarkCallOverhead, probes off, does not see.
func BenchmarkCallOverheadProbed(b *testing.B) {
	c, _ := newFakeClusterWithProbes(b, 3, Settings{Health: HealthConfig{Interval: time.Hour, Timeout: 200 * time.Millisecond}}, nil)
	ctx := context.Background()
	attempt := func(context.Context, *node) (bool, error) { return true, nil }
	if err := c.call(ctx, OpExec, false, false, attempt); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.call(ctx, OpExec, false, false, attempt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecFakeProbed is BenchmarkExecFake's routed case with health
// probes on.
func BenchmarkExecFakeProbed(b *testing.B) {
	c, _ := newFakeClusterWithProbes(b, 3, Settings{Health: HealthConfig{Interval: time.Hour, Timeout: 200 * time.Millisecond}}, nil)
	ctx := context.Background()
	if _, err := c.ExecContext(ctx, "INSERT INTO t (id) VALUES (?)", 1); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.ExecContext(ctx, "INSERT INTO t (id) VALUES (?)", 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallOverheadProbedParallel is BenchmarkCallOverheadProbed from
// every P at once (the stall watch's timers under contention).
func BenchmarkCallOverheadProbedParallel(b *testing.B) {
	c, _ := newFakeClusterWithProbes(b, 3, Settings{Health: HealthConfig{Interval: time.Hour, Timeout: 200 * time.Millisecond}}, nil)
	ctx := context.Background()
	attempt := func(context.Context, *node) (bool, error) { return true, nil }
	if err := c.call(ctx, OpExec, false, false, attempt); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.call(ctx, OpExec, false, false, attempt); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkOpenDBFakeProbed is BenchmarkExecFake's and BenchmarkQueryFake's
// Router.OpenDB cases with health probes on: the cost of the stall watch on
// each statement, and each read of rows, of a routed connection.
func BenchmarkOpenDBFakeProbed(b *testing.B) {
	ctx := context.Background()
	open := func(b *testing.B) *sql.DB {
		c, _ := newFakeClusterWithProbes(b, 3, Settings{Health: HealthConfig{Interval: time.Hour, Timeout: 200 * time.Millisecond}}, nil)
		db := sql.OpenDB(&clusterConnector{resolve: func() (*Cluster, error) { return c, nil }})
		b.Cleanup(func() { db.Close() })
		db.SetMaxIdleConns(DefaultMaxIdleConns)
		return db
	}
	b.Run("exec", func(b *testing.B) {
		db := open(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := db.ExecContext(ctx, "INSERT INTO t (id) VALUES (?)", 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("query", func(b *testing.B) {
		db := open(b)
		b.ReportAllocs()
		var v string
		for b.Loop() {
			if err := db.QueryRowContext(ctx, "SELECT @@global.gtid_current_pos").Scan(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
