package integration

// The cost of the Prometheus Collector on real calls: a point SELECT and
// INSERT through a Cluster whose router has the Collector as Observer
// (prometheus), through a Cluster of a router without Observer (routed),
// and on a bare *sql.DB (bare), on a one-node ring, as BenchmarkPointQuery
// does. The target (docs/observability.md) is prometheus/bare ≥ 0.97 with
// 8 callers. Runs only with -bench; -pointquery.rounds (router_bench_test.go)
// alternates the three.

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/dbrouter/dbrouter"
	dbprom "github.com/dbrouter/dbrouter/prometheus"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/go-sql-driver/mysql"
	prom "github.com/prometheus/client_golang/prometheus"
)

// BenchmarkPointQueryPrometheus is named op/callers=N/{bare,routed,prometheus}, with
// #NN suffixes for later rounds; the ring starts once.
func BenchmarkPointQueryPrometheus(b *testing.B) {
	h := ringtest.New(b, ringtest.Options{Nodes: 1, Logf: func(string, ...any) {}})
	ring := h.Ring(0)
	ctx := context.Background()
	const user, password, database = ringtest.DefaultUser, ringtest.DefaultPassword, ringtest.DefaultDatabase
	metrics := dbprom.New()
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: user, Password: password, Database: database},
		Clusters: map[string]dbrouter.ClusterConfig{"bench": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.DiscardHandler),
		Observer: metrics,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	metrics.SetRouter(r)
	prom.NewRegistry().MustRegister(metrics)
	withProm, err := r.Cluster("bench")
	if err != nil {
		b.Fatal(err)
	}
	// The same router without an Observer, to tell the Collector's cost
	// from the router's.
	plain, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: user, Password: password, Database: database},
		Clusters: map[string]dbrouter.ClusterConfig{"bench": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { plain.Close() })
	routed, err := plain.Cluster("bench")
	if err != nil {
		b.Fatal(err)
	}
	mc := mysql.NewConfig()
	mc.User, mc.Passwd, mc.DBName = user, password, database
	mc.Net, mc.Addr = "tcp", ring.Addr(0)
	mc.Timeout = dbrouter.DefaultConnectTimeout
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		b.Fatal(err)
	}
	bare := sql.OpenDB(connector)
	bare.SetMaxIdleConns(dbrouter.DefaultMaxIdleConns)
	b.Cleanup(func() { bare.Close() })
	for _, stmt := range []string{
		"CREATE TABLE point (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL)",
		"INSERT INTO point (id, v) SELECT seq, CONCAT('value-', seq) FROM seq_0_to_999",
		"CREATE TABLE ins (pk BIGINT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64) NOT NULL)",
	} {
		if _, err := bare.ExecContext(ctx, stmt); err != nil {
			b.Fatal(err)
		}
	}
	routed.WriterAddr() // the first probe rounds, outside the measurements
	withProm.WriterAddr()

	var seq atomic.Int64
	type target struct {
		name        string
		query, exec func(q string, args ...any) error
	}
	targets := []target{
		{"bare", func(q string, args ...any) error {
			var v string
			return bare.QueryRowContext(ctx, q, args...).Scan(&v)
		}, func(q string, args ...any) error { _, err := bare.ExecContext(ctx, q, args...); return err }},
		{"routed", func(q string, args ...any) error {
			var v string
			return routed.QueryRowContext(ctx, q, args...).Scan(&v)
		}, func(q string, args ...any) error { _, err := routed.ExecContext(ctx, q, args...); return err }},
		{"prometheus", func(q string, args ...any) error {
			var v string
			return withProm.QueryRowContext(ctx, q, args...).Scan(&v)
		}, func(q string, args ...any) error { _, err := withProm.ExecContext(ctx, q, args...); return err }},
	}
	ops := []struct {
		name string
		run  func(t target) error
	}{
		{"select", func(t target) error { return t.query("SELECT v FROM point WHERE id = ?", seq.Add(1)%1000) }},
		{"insert", func(t target) error { return t.exec("INSERT INTO ins (k, v) VALUES (?, ?)", seq.Add(1), "inserted") }},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			for _, callers := range []int{1, 8} {
				b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
					for range *pointRounds {
						for _, t := range targets {
							b.Run(t.name, func(b *testing.B) {
								b.ReportAllocs()
								procs := runtime.GOMAXPROCS(0)
								b.SetParallelism((callers + procs - 1) / procs)
								if callers == 1 {
									for b.Loop() {
										if err := op.run(t); err != nil {
											b.Fatal(err)
										}
									}
									return
								}
								b.RunParallel(func(pb *testing.PB) {
									for pb.Next() {
										if err := op.run(t); err != nil {
											b.Error(err)
											return
										}
									}
								})
							})
						}
					}
				})
			}
		})
	}
}
