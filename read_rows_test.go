package dbrouter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// The rows of a plain read made with Cluster.QueryContext (SELECT, SHOW,
// ...) are read in a read-only session after the call has returned: a
// connection lost while they are read is typed as a read's lost
// connection is everywhere else (the rows of Router.OpenReadDB, a read
// whose context ended during the call, a NoNodeError of reads), an
// *OutcomeUnknownError of OpQuery — the query ran, and being a read it
// applied nothing: safe to run again — reported to the node's health;
// and each read waits on the node counted in with its stall watch, so that
// a frozen server releases a reader as fast as it releases a writer.

// TestReadRowsLostTyped loses the connection while the rows of a plain
// read are read.
func TestReadRowsLostTyped(t *testing.T) {
	c, srv := newFakeCluster(t, 2, Settings{})
	ctx := testCtx(t)
	rows, err := c.QueryContext(ctx, "SELECT id FROM t")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	srv[0].set(func(s *fakeServer) { s.nextFn = func() error { return mysql.ErrInvalidConn } })
	if rows.Next() {
		t.Fatal("a row from a lost connection")
	}
	err = rows.Err()
	var ou *OutcomeUnknownError
	if !errors.As(err, &ou) || ou.Op != OpQuery || ou.Node != "a:3306" || ou.Cluster != "fake" ||
		!errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, ErrNotSent) {
		t.Errorf("rows.Err() = %v (%T), want an *OutcomeUnknownError of %q on a:3306 wrapping mysql.ErrInvalidConn", err, err, OpQuery)
	}
	if st := c.pick.Load().nodes[0].state; st != StateSuspect {
		t.Errorf("a:3306 is %v after a read lost its connection, want suspect (reported, as a failed read is)", st)
	}

	// The same through QueryRowContext's Scan (on b now: a is Suspect).
	next := func(fn func() error) {
		for _, s := range srv {
			s.set(func(s *fakeServer) { s.nextFn = fn })
		}
	}
	next(nil)
	row := c.QueryRowContext(ctx, "SELECT id FROM t")
	next(func() error { return mysql.ErrInvalidConn })
	var v string
	if err := row.Scan(&v); !errors.As(err, &ou) || ou.Op != OpQuery {
		t.Errorf("Row.Scan = %v (%T), want an *OutcomeUnknownError of %q", err, err, OpQuery)
	}

	// A server error met while reading is the server's, as it is.
	next(nil)
	rows, err = c.QueryContext(ctx, "SELECT id FROM t")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	killed := &mysql.MySQLError{Number: 1317, Message: "Query execution was interrupted"}
	next(func() error { return killed })
	for rows.Next() {
	}
	if err := rows.Err(); err != killed {
		t.Errorf("rows.Err() = %v (%T), want the server's error as it is", err, err)
	}
}

// TestReadRowsContextEndTyped ends the context of a plain read while its
// rows are read: an *OutcomeUnknownError matching the context's error, as
// a read whose context ends during the call; the node is not reported.
func TestReadRowsContextEndTyped(t *testing.T) {
	c, srv := newFakeCluster(t, 2, Settings{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rows, err := c.QueryContext(ctx, "SELECT id FROM t")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	srv[0].set(func(s *fakeServer) { s.nextFn = func() error { <-ctx.Done(); return ctx.Err() } })
	time.AfterFunc(30*time.Millisecond, cancel)
	if rows.Next() {
		t.Fatal("a row after the context ended")
	}
	err = rows.Err()
	var ou *OutcomeUnknownError
	if !errors.As(err, &ou) || ou.Op != OpQuery || !errors.Is(err, context.Canceled) {
		t.Errorf("rows.Err() = %v (%T), want an *OutcomeUnknownError of %q matching context.Canceled", err, err, OpQuery)
	}
	if st := c.pick.Load().nodes[0].state; st != StateUp {
		t.Errorf("a:3306 is %v after the caller's context ended, want up", st)
	}
}

// TestStallReadRowsWatched freezes the node a plain read's rows are read
// from: the stall check must release the reader well before the probes'
// verdict (FailAfter 3 at 2 s), typed, and the next read go to b.
func TestStallReadRowsWatched(t *testing.T) {
	r := newStallRig(t)
	ctx := testCtx(t)
	rows, err := r.c.QueryContext(ctx, "SELECT id FROM t")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	r.freeze()
	start := time.Now()
	if rows.Next() {
		t.Fatal("a row from a frozen server")
	}
	err = rows.Err()
	took := time.Since(start)
	t.Logf("stuck read of a plain read's rows released after %v: %v", took, err)
	if took > 1500*time.Millisecond {
		t.Errorf("stuck read released after %v: the stall check did not act", took)
	}
	var ou *OutcomeUnknownError
	if !errors.As(err, &ou) || ou.Op != OpQuery || ou.Node != "a:3306" {
		t.Errorf("stuck read: err = %v (%T), want an *OutcomeUnknownError of %q on a:3306", err, err, OpQuery)
	}
	var node string
	if err := r.c.QueryRowContext(ctx, "SELECT @@hostname").Scan(&node); err != nil || node != "b:3306" {
		t.Errorf("next read: %q, %v; want it served by b:3306", node, err)
	}
}
