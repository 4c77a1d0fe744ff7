package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"
)

// A statement on Cluster.Conn or Cluster.Writer whose own context ends
// (cancelled, or its deadline passed) while the statement is in flight is
// typed as Cluster.ExecContext types it: outcome unknown for a statement
// (it may have reached the server; go-sql-driver closes the connection
// and returns the context's error), not sent for a BEGIN (nothing
// applied), and, when the context had ended before the statement was
// handed to the driver, not sent; errors.Is(err, context.Canceled) (or
// DeadlineExceeded) stays true.

// slowQuery is what the fake server answers only when the statement's
// context ends, with the context's error (as go-sql-driver returns it).
const slowQuery = "INSERT INTO t VALUES (42)"

func newPinnedCtxCluster(t *testing.T) (*Cluster, []*fakeServer) {
	c, srv := newFakeCluster(t, 2, Settings{})
	for _, s := range srv {
		s.set(func(s *fakeServer) {
			s.execFn = func(ctx context.Context, q string) error {
				if strings.HasPrefix(q, slowQuery) || q == "SELECT 42" {
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			}
		})
	}
	return c, srv
}

// ending returns a context that ends 30 ms from now, by a cancel or by
// its deadline, and the error it ends with.
func ending(t *testing.T, deadline bool) (context.Context, error) {
	if deadline {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		t.Cleanup(cancel)
		return ctx, context.DeadlineExceeded
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	time.AfterFunc(30*time.Millisecond, cancel)
	return ctx, context.Canceled
}

func TestPinnedContextEndTyped(t *testing.T) {
	outcomeUnknown := func(op Op) func(t *testing.T, err, ctxErr error) {
		return func(t *testing.T, err, ctxErr error) {
			t.Helper()
			var ou *OutcomeUnknownError
			if !errors.As(err, &ou) || ou.Op != op || ou.Node != "a:3306" || ou.Cluster != "fake" ||
				!errors.Is(err, ctxErr) || errors.Is(err, ErrNotSent) {
				t.Errorf("err = %v (%T), want an *OutcomeUnknownError of %q on a:3306 matching %v", err, err, op, ctxErr)
			}
		}
	}
	notSent := func(t *testing.T, err, ctxErr error) {
		t.Helper()
		if !errors.Is(err, ErrNotSent) || !errors.Is(err, ctxErr) || errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("err = %v (%T), want one matching ErrNotSent and %v", err, err, ctxErr)
		}
	}
	conn := func(t *testing.T, c *Cluster) *sql.Conn {
		conn, err := c.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	cases := []struct {
		name  string
		call  func(t *testing.T, c *Cluster, srv []*fakeServer, ctx context.Context) error
		check func(t *testing.T, err, ctxErr error)
	}{
		{"Conn exec", func(t *testing.T, c *Cluster, _ []*fakeServer, ctx context.Context) error {
			_, err := conn(t, c).ExecContext(ctx, slowQuery)
			return err
		}, outcomeUnknown(OpExec)},
		{"Writer exec", func(t *testing.T, c *Cluster, _ []*fakeServer, ctx context.Context) error {
			_, err := c.Writer().ExecContext(ctx, slowQuery)
			return err
		}, outcomeUnknown(OpExec)},
		{"Conn query", func(t *testing.T, c *Cluster, _ []*fakeServer, ctx context.Context) error {
			rows, err := conn(t, c).QueryContext(ctx, slowQuery+" RETURNING id")
			if err == nil {
				rows.Close()
			}
			return err
		}, outcomeUnknown(OpQuery)},
		{"Writer select", func(t *testing.T, c *Cluster, _ []*fakeServer, ctx context.Context) error {
			// A pinned connection does not tell reads from writes.
			rows, err := c.Writer().QueryContext(ctx, "SELECT 42")
			if err == nil {
				rows.Close()
			}
			return err
		}, outcomeUnknown(OpQuery)},
		{"Conn tx exec", func(t *testing.T, c *Cluster, _ []*fakeServer, ctx context.Context) error {
			tx, err := conn(t, c).BeginTx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			_, err = tx.ExecContext(ctx, slowQuery)
			return err
		}, outcomeUnknown(OpTxExec)},
		{"Conn begin", func(t *testing.T, c *Cluster, srv []*fakeServer, ctx context.Context) error {
			cn := conn(t, c)
			srv[0].set(func(s *fakeServer) {
				s.beginCtxFn = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
			})
			tx, err := cn.BeginTx(ctx, nil)
			if err == nil {
				tx.Rollback()
			}
			return err
		}, notSent},
		{"Conn rows", func(t *testing.T, c *Cluster, srv []*fakeServer, ctx context.Context) error {
			rows, err := conn(t, c).QueryContext(ctx, "SELECT 1")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			srv[0].set(func(s *fakeServer) {
				s.nextFn = func() error { <-ctx.Done(); return ctx.Err() }
			})
			if rows.Next() {
				t.Fatal("a row from a server that answers nothing")
			}
			return rows.Err()
		}, outcomeUnknown(OpQuery)},
	}
	for _, tc := range cases {
		for _, deadline := range []bool{false, true} {
			name := tc.name + "/cancelled"
			if deadline {
				name = tc.name + "/deadline"
			}
			t.Run(name, func(t *testing.T) {
				c, srv := newPinnedCtxCluster(t)
				ctx, ctxErr := ending(t, deadline)
				tc.check(t, tc.call(t, c, srv, ctx), ctxErr)
			})
		}
	}

	// A context that has ended before the statement reaches the driver:
	// nothing is sent.
	for _, tc := range []struct {
		name string
		call func(ctx context.Context, conn *sql.Conn) error
	}{
		{"exec", func(ctx context.Context, conn *sql.Conn) error {
			_, err := conn.ExecContext(ctx, "INSERT INTO t VALUES (1)")
			return err
		}},
		{"query", func(ctx context.Context, conn *sql.Conn) error {
			rows, err := conn.QueryContext(ctx, "INSERT INTO t VALUES (1) RETURNING id")
			if err == nil {
				rows.Close()
			}
			return err
		}},
	} {
		t.Run("ended before "+tc.name, func(t *testing.T) {
			c, srv := newPinnedCtxCluster(t)
			cn := conn(t, c)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			before := srv[0].execs.Load()
			notSent(t, tc.call(ctx, cn), context.Canceled)
			if n := srv[0].execs.Load() - before; n != 0 {
				t.Errorf("%d statements reached the server", n)
			}
		})
	}
}
