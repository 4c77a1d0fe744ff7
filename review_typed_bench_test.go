package dbrouter

import (
	"context"
	"database/sql/driver"
	"io"
	"log/slog"
	"strconv"
	"testing"
)

// manyRowsQuery is the read whose rows manyRowsConn makes: manyRowsN rows
// of one column, read without any lock.
const (
	manyRowsQuery = "SELECT n FROM many"
	manyRowsN     = 1000
)

type manyRowsServer struct{ *fakeServer }

func (s manyRowsServer) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := s.fakeServer.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &manyRowsConn{c.(*fakeConn)}, nil
}

type manyRowsConn struct{ *fakeConn }

func (c *manyRowsConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	if q == manyRowsQuery {
		return &manyRows{}, nil
	}
	return c.fakeConn.QueryContext(ctx, q, args)
}

type manyRows struct{ i int }

func (r *manyRows) Columns() []string { return []string{"n"} }
func (r *manyRows) Close() error      { return nil }
func (r *manyRows) Next(dest []driver.Value) error {
	if r.i == manyRowsN {
		return io.EOF
	}
	r.i++
	dest[0] = int64(r.i)
	return nil
}

// BenchmarkReviewTypedReadRows reads the 1,000 rows of a Cluster read, on
// a cluster with probes on (each read of a row counts in with the stall
// watch since 0fa5d4e): ns/op is per read of 1,000 rows.
func BenchmarkReviewTypedReadRows(b *testing.B) {
	cfg := &Config{Clusters: map[string]ClusterConfig{"fake": {Nodes: []string{"x"}}}}
	log := slog.New(slog.DiscardHandler)
	c := &Cluster{name: "fake", settings: cfg.effective("fake"), log: log, events: newDispatcher(log, nil)}
	for i := range 2 {
		s := &fakeServer{addr: string(rune('a'+i)) + ":3306", gtid: "0-1-1", serverID: strconv.Itoa(i + 1)}
		c.nodes = append(c.nodes, newNodeWithConnector(s.addr, manyRowsServer{s}, c.settings))
	}
	c.initHealth()
	b.Cleanup(func() {
		c.close()
		c.events.close()
	})
	ctx := context.Background()
	read := func(b *testing.B) {
		rows, err := c.QueryContext(ctx, manyRowsQuery)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		var v int64
		for rows.Next() {
			if err := rows.Scan(&v); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if err := rows.Err(); err != nil || n != manyRowsN {
			b.Fatalf("%d rows, %v", n, err)
		}
		rows.Close()
	}
	read(b)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			read(b)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				read(b)
			}
		})
	})
}
