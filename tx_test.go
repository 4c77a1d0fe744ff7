package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TestRunInTx checks when RunInTx re-runs a transaction and when it must
// not, each failure forced on node a by the fake driver.
func TestRunInTx(t *testing.T) {
	userErr := errors.New("insufficient funds")
	tests := []struct {
		name      string
		arrange   func(a *fakeServer)
		fnErr     error // returned by fn on its first run
		wantRuns  int   // times fn ran
		wantErr   error // nil: success
		wantOn    string
		wantCommA int64 // commits that reached a
	}{
		{name: "ok", wantRuns: 1, wantOn: "a:3306", wantCommA: 1},
		{name: "connection lost mid-transaction → re-run on b",
			arrange:  func(a *fakeServer) { a.execErr = mysql.ErrInvalidConn },
			wantRuns: 2, wantOn: "b:3306"},
		{name: "read-only refusal → re-run on b",
			arrange:  func(a *fakeServer) { a.execErr = &mysql.MySQLError{Number: 1290, Message: "read-only"} },
			wantRuns: 2, wantOn: "b:3306"},
		{name: "COMMIT answer lost → outcome unknown, no re-run",
			arrange:  func(a *fakeServer) { a.commitErr = mysql.ErrInvalidConn },
			wantRuns: 1, wantErr: ErrOutcomeUnknown},
		{name: "COMMIT provably not sent → re-run on b",
			arrange:  func(a *fakeServer) { a.commitErr = fmt.Errorf("wrapped: %w", errBadConnForTest) },
			wantRuns: 2, wantOn: "b:3306"},
		{name: "server error (duplicate key) → returned, no re-run",
			arrange:  func(a *fakeServer) { a.execErr = &mysql.MySQLError{Number: 1062, Message: "Duplicate entry"} },
			wantRuns: 1, wantErr: &mysql.MySQLError{Number: 1062}},
		{name: "caller's own error → returned, no re-run",
			fnErr: userErr, wantRuns: 1, wantErr: userErr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := newFakeCluster(t, 2, Settings{})
			if tc.arrange != nil {
				srv[0].set(tc.arrange)
			}
			runs, on := 0, ""
			err := c.RunInTx(context.Background(), nil, func(ctx context.Context, tx *Tx) error {
				runs++
				on = tx.Node()
				if runs == 1 && tc.fnErr != nil {
					return tc.fnErr
				}
				_, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance - 5 WHERE id = 1")
				return err
			})
			if runs != tc.wantRuns {
				t.Errorf("fn ran %d times, want %d", runs, tc.wantRuns)
			}
			var me *mysql.MySQLError
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("RunInTx: %v", err)
			case tc.wantErr == nil:
				if on != tc.wantOn {
					t.Errorf("committed on %s, want %s", on, tc.wantOn)
				}
			case errors.As(tc.wantErr, &me):
				var got *mysql.MySQLError
				if !errors.As(err, &got) || got.Number != me.Number {
					t.Errorf("err = %v, want MySQL error %d", err, me.Number)
				}
			case !errors.Is(err, tc.wantErr):
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if got := srv[0].commits.Load(); got != tc.wantCommA {
				t.Errorf("%d commits reached a, want %d", got, tc.wantCommA)
			}
		})
	}
}

// Tx.QueryRowContext and Cluster.QueryRowContext return the same row type,
// so that code reading one row can take either (checked at compile time).
var (
	_ func(*Cluster, context.Context, string, ...any) *Row = (*Cluster).QueryRowContext
	_ func(*Tx, context.Context, string, ...any) *Row      = (*Tx).QueryRowContext
)

// errBadConnForTest is what go-sql-driver returns when it finds the
// connection dead before writing.
var errBadConnForTest = driver.ErrBadConn

// TestRunInTxGivesUp checks that a transaction failing on every node stops
// after Settings.TxAttempts runs (DefaultTxAttempts when zero) with an error
// matching ErrNotSent, naming the node and giving the runs in Runs.
func TestRunInTxGivesUp(t *testing.T) {
	for _, tc := range []struct {
		setting, want int
	}{{0, DefaultTxAttempts}, {1, 1}, {3, 3}} {
		t.Run(fmt.Sprint("tx_attempts ", tc.setting), func(t *testing.T) {
			c, srv := newFakeCluster(t, 2, Settings{TxAttempts: tc.setting})
			for _, s := range srv {
				s.set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
			}
			runs := 0
			err := c.RunInTx(context.Background(), nil, func(ctx context.Context, tx *Tx) error {
				runs++
				_, err := tx.ExecContext(ctx, "UPDATE t SET x = x + 1")
				return err
			})
			if runs != tc.want || !errors.Is(err, ErrNotSent) || !strings.Contains(err.Error(), ":3306") {
				t.Fatalf("after %d runs (want %d): %v", runs, tc.want, err)
			}
			var nn *NoNodeError
			if !errors.As(err, &nn) || nn.Op != OpTransaction || nn.Runs != runs || nn.Cluster != "fake" {
				t.Errorf("err = %#v, want a *NoNodeError with Op %q and Runs %d", err, OpTransaction, runs)
			}
		})
	}
}

// TestTxErrorOps: the errors of a transaction's statements and of its
// COMMIT name the operation in Op, a constant, and the node in Node.
func TestTxErrorOps(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		arrange func(a *fakeServer)
		run     func(tx *Tx) error
		want    Op
	}{
		{"exec", func(a *fakeServer) { a.execErr = mysql.ErrInvalidConn },
			func(tx *Tx) error { _, err := tx.ExecContext(ctx, "UPDATE t SET x = 1"); return err }, OpTxExec},
		{"query", func(a *fakeServer) { a.execErr = mysql.ErrInvalidConn },
			func(tx *Tx) error { _, err := tx.QueryContext(ctx, "SELECT x FROM t"); return err }, OpTxQuery},
		{"commit", func(a *fakeServer) { a.commitErr = mysql.ErrInvalidConn },
			func(tx *Tx) error { return tx.Commit() }, OpCommit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := newFakeCluster(t, 1, Settings{})
			tx, err := c.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			srv[0].set(tc.arrange)
			err = tc.run(tx)
			var ou *OutcomeUnknownError
			if !errors.As(err, &ou) || ou.Op != tc.want || ou.Node != "a:3306" || ou.Cluster != "fake" {
				t.Fatalf("err = %v, want an *OutcomeUnknownError with Op %q on a:3306", err, tc.want)
			}
		})
	}
}

// TestWithIdempotent checks that only a marked Exec is retried after an
// outcome-unknown failure.
func TestWithIdempotent(t *testing.T) {
	c, srv := newFakeCluster(t, 2, Settings{})
	srv[0].set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.ExecContext(ctx, "DELETE FROM sessions WHERE id = 7"); !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("unmarked: %v, want outcome unknown", err)
	}
	ctx = WithTrace(WithIdempotent(ctx), new(Trace))
	if _, err := c.ExecContext(ctx, "DELETE FROM sessions WHERE id = 7"); err != nil {
		t.Fatalf("marked idempotent: %v", err)
	}
	if srv[1].execs.Load() == 0 {
		t.Fatal("the idempotent statement did not reach b")
	}
}
