package integration

// Routed versus bare: the same point SELECT and INSERT through a
// dbrouter.Cluster and through a plain *sql.DB built with the same driver
// settings, against the same MariaDB server, in one process, so that the
// ratio of the two is fair (docs/design.md §10: ≥ 0.97× with 8 callers). The
// server is a one-node ringtest ring started once for the whole benchmark.
// Runs only with -bench; `make bench` reports it in docs/performance.md.

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/stretchr/testify/require"
)

// benchRows is the number of rows the point SELECT picks from.
const benchRows = 1000

// pointRounds interleaves the bare and routed sub-benchmarks: with N
// rounds each runs N times, alternating (bare, routed, bare#01, ...), so
// that a change in the machine's load hits both sides alike. `make bench`
// runs it with -args -pointquery.rounds=5 and -count 1.
var pointRounds = flag.Int("pointquery.rounds", 1, "BenchmarkPointQuery: alternate bare and routed this many times")

// BenchmarkPointQuery compares a routed point SELECT and INSERT with the
// same statement on a bare *sql.DB, with 1 and 8 concurrent callers, through
// a Cluster (routed) and through Router.OpenDB's *sql.DB (opendb). Its
// sub-benchmarks are named op/callers=N/{bare,routed,opendb}, with #NN suffixes for
// later rounds (see -pointquery.rounds); the ring starts once.
func BenchmarkPointQuery(b *testing.B) {
	h := ringtest.New(b, ringtest.Options{Nodes: 1, Logf: func(string, ...any) {}})
	ring := h.Ring(0)
	ctx := context.Background()

	const user, password, database = ringtest.DefaultUser, ringtest.DefaultPassword, ringtest.DefaultDatabase
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: user, Password: password, Database: database},
		Clusters: map[string]dbrouter.ClusterConfig{"bench": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	require.NoError(b, err)
	b.Cleanup(func() { r.Close() })
	routed, err := r.Cluster("bench")
	require.NoError(b, err)
	// The *sql.DB that fails over, as an ORM gets it.
	opendb, err := r.OpenDB("bench")
	require.NoError(b, err)
	b.Cleanup(func() { opendb.Close() })

	// The bare pool: the driver configuration dbrouter builds for its
	// nodes (default settings), and the same pool sizes.
	mc := mysql.NewConfig()
	mc.User, mc.Passwd, mc.DBName = user, password, database
	mc.Net, mc.Addr = "tcp", ring.Addr(0)
	mc.Timeout = dbrouter.DefaultConnectTimeout
	connector, err := mysql.NewConnector(mc)
	require.NoError(b, err)
	bare := sql.OpenDB(connector)
	bare.SetMaxIdleConns(dbrouter.DefaultMaxIdleConns)
	b.Cleanup(func() { bare.Close() })

	for _, stmt := range []string{
		"CREATE TABLE point (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL)",
		"CREATE TABLE ins (pk BIGINT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64) NOT NULL)",
	} {
		_, err := bare.ExecContext(ctx, stmt)
		require.NoError(b, err)
	}
	for i := 0; i < benchRows; i += 100 {
		q := "INSERT INTO point (id, v) VALUES "
		for j := i; j < i+100; j++ {
			if j > i {
				q += ","
			}
			q += fmt.Sprintf("(%d, 'value-%d')", j, j)
		}
		_, err := bare.ExecContext(ctx, q)
		require.NoError(b, err)
	}

	type target struct {
		name  string
		query func(ctx context.Context, q string, args ...any) error
		exec  func(ctx context.Context, q string, args ...any) error
	}
	targets := []target{
		{
			name: "bare",
			query: func(ctx context.Context, q string, args ...any) error {
				var v string
				return bare.QueryRowContext(ctx, q, args...).Scan(&v)
			},
			exec: func(ctx context.Context, q string, args ...any) error {
				_, err := bare.ExecContext(ctx, q, args...)
				return err
			},
		},
		{
			name: "routed",
			query: func(ctx context.Context, q string, args ...any) error {
				var v string
				return routed.QueryRowContext(ctx, q, args...).Scan(&v)
			},
			exec: func(ctx context.Context, q string, args ...any) error {
				_, err := routed.ExecContext(ctx, q, args...)
				return err
			},
		},
		{
			name: "opendb",
			query: func(ctx context.Context, q string, args ...any) error {
				var v string
				return opendb.QueryRowContext(ctx, q, args...).Scan(&v)
			},
			exec: func(ctx context.Context, q string, args ...any) error {
				_, err := opendb.ExecContext(ctx, q, args...)
				return err
			},
		},
	}
	// Let the router's first probe finish so that its one-off version
	// query does not land inside a measurement.
	routed.WriterAddr() // starts the probers
	require.Eventually(b, func() bool { return r.Stats()[0].Nodes[0].LastProbeLatency > 0 }, 5*time.Second, tick, "the router's first probe")

	var seq atomic.Int64
	ops := []struct {
		name string
		run  func(t target, ctx context.Context) error
	}{
		{"select", func(t target, ctx context.Context) error {
			id := seq.Add(1) % benchRows
			return t.query(ctx, "SELECT v FROM point WHERE id = ?", id)
		}},
		{"insert", func(t target, ctx context.Context) error {
			k := seq.Add(1)
			return t.exec(ctx, "INSERT INTO ins (k, v) VALUES (?, ?)", k, "inserted")
		}},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			for _, callers := range []int{1, 8} {
				b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
					for range *pointRounds {
						for _, t := range targets {
							// Repeated names get #01, #02, ... from testing.
							b.Run(t.name, func(b *testing.B) {
								b.ReportAllocs()
								if callers == 1 {
									for b.Loop() {
										require.NoError(b, op.run(t, ctx))
									}
									return
								}
								// RunParallel starts parallelism × GOMAXPROCS
								// goroutines.
								procs := runtime.GOMAXPROCS(0)
								b.SetParallelism((callers + procs - 1) / procs)
								b.RunParallel(func(pb *testing.PB) {
									for pb.Next() {
										if err := op.run(t, ctx); err != nil {
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
