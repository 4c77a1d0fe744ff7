package dbrouter

// Benchmarks of writer selection and of the router's own per-call cost,
// with no server: the nodes are the fake driver of fakedriver_test.go, so
// the figures are the router's CPU and allocations alone (docs/design.md §10).
// They run only with -bench; `make bench` reports them in
// docs/performance.md.

import (
	"context"
	"database/sql"
	"strconv"
	"testing"
	"time"
)

// BenchmarkWriterPick measures what every call does to find its node: load
// the immutable picker and take the first node of its write order.
func BenchmarkWriterPick(b *testing.B) {
	c, _ := newFakeCluster(b, 3, Settings{})
	b.ReportAllocs()
	var sink int
	for b.Loop() {
		p := c.pick.Load()
		sink += p.writes[0]
	}
	_ = sink
}

// BenchmarkWriterAddr measures Cluster.WriterAddr, the public way to ask
// which node is the writer.
func BenchmarkWriterAddr(b *testing.B) {
	c, _ := newFakeCluster(b, 3, Settings{})
	b.ReportAllocs()
	for b.Loop() {
		if c.WriterAddr() == "" {
			b.Fatal("no writer")
		}
	}
}

// BenchmarkWriterChoice measures a health change: choosing the writer by
// the convergent rule and building a new picker, as a probe result or a
// failed call does (under the cluster's lock). Sub-benchmarks vary the
// cluster size; in each, the first node is Down so the choice moves on.
func BenchmarkWriterChoice(b *testing.B) {
	for _, n := range []int{3, 9} {
		b.Run(sizeName(n), func(b *testing.B) {
			c, _ := newFakeCluster(b, n, Settings{})
			c.mu.Lock()
			c.state.health[0].state = StateDown
			c.mu.Unlock()
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				c.mu.Lock()
				c.publish(c.state.decide(stateOutput{}, now))
				c.mu.Unlock()
			}
			if w := c.pick.Load().writer; w != 1 {
				b.Fatalf("writer %d, want 1", w)
			}
		})
	}
}

// BenchmarkCallOverhead measures the failover loop around one attempt
// (closed check, picker, attempt, success bookkeeping) with an attempt that
// does nothing: the fixed cost the router adds to every call.
func BenchmarkCallOverhead(b *testing.B) {
	c, _ := newFakeCluster(b, 3, Settings{})
	ctx := context.Background()
	attempt := func(context.Context, *node) (bool, error) { return true, nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := c.call(ctx, OpExec, false, false, attempt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecFake compares Cluster.ExecContext, and ExecContext on
// Router.OpenDB's *sql.DB, with ExecContext on a bare *sql.DB over the same
// fake connector: the difference is the router's overhead per write, free
// of network and server noise.
func BenchmarkExecFake(b *testing.B) {
	const stmt = "INSERT INTO t (id) VALUES (?)"
	ctx := context.Background()
	b.Run("bare", func(b *testing.B) {
		db := sql.OpenDB(&fakeServer{addr: "a:3306"})
		b.Cleanup(func() { db.Close() })
		db.SetMaxIdleConns(DefaultMaxIdleConns)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := db.ExecContext(ctx, stmt, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("routed", func(b *testing.B) {
		c, _ := newFakeCluster(b, 3, Settings{})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.ExecContext(ctx, stmt, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Router.OpenDB's *sql.DB: a fence pass and a check of the node per
	// statement, on connections it keeps.
	b.Run("opendb", func(b *testing.B) {
		c, _ := newFakeCluster(b, 3, Settings{})
		db := sql.OpenDB(&clusterConnector{resolve: func() (*Cluster, error) { return c, nil }})
		b.Cleanup(func() { db.Close() })
		db.SetMaxIdleConns(DefaultMaxIdleConns)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := db.ExecContext(ctx, stmt, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func sizeName(n int) string { return "nodes=" + strconv.Itoa(n) }

// BenchmarkQueryFake is BenchmarkExecFake for a one-row query read with
// QueryRowContext and Scan: bare *sql.DB against Router.OpenDB's, over the
// same fake connector (the router's cost per read, rows included).
func BenchmarkQueryFake(b *testing.B) {
	const query = "SELECT @@global.gtid_current_pos" // one row, one column
	ctx := context.Background()
	run := func(b *testing.B, db *sql.DB) {
		b.Cleanup(func() { db.Close() })
		db.SetMaxIdleConns(DefaultMaxIdleConns)
		b.ReportAllocs()
		var v string
		for b.Loop() {
			if err := db.QueryRowContext(ctx, query).Scan(&v); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("bare", func(b *testing.B) {
		run(b, sql.OpenDB(&fakeServer{addr: "a:3306", gtid: "0-1-1"}))
	})
	b.Run("opendb", func(b *testing.B) {
		c, _ := newFakeCluster(b, 3, Settings{})
		run(b, sql.OpenDB(&clusterConnector{resolve: func() (*Cluster, error) { return c, nil }}))
	})
}
