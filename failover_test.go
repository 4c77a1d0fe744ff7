package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// timeoutError is a net.Error that timed out, like a read deadline.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var (
	errDialRefused = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	errDialTimeout = &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}
	errReadTimeout = &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}
)

func blockUntilDone(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestExecFailover(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// breakA programs node A's failure.
		breakA func(s *fakeServer)
		// wantClass is how A's failure is classified.
		wantClass ErrorClass
		// wantOnB: the statement is retried on B and succeeds there.
		wantOnB bool
		// check inspects the error when !wantOnB.
		check func(t *testing.T, err error)
	}{
		{
			name:      "dial refused is not sent",
			breakA:    func(s *fakeServer) { s.connectErr = errDialRefused },
			wantClass: ClassNotSent, wantOnB: true,
		},
		{
			name:      "dial timeout is not sent",
			breakA:    func(s *fakeServer) { s.connectErr = errDialTimeout },
			wantClass: ClassNotSent, wantOnB: true,
		},
		{
			name:      "handshake that never answers is cut by connect_timeout",
			breakA:    func(s *fakeServer) { s.connectFn = blockUntilDone },
			wantClass: ClassNotSent, wantOnB: true,
		},
		{
			name:      "driver.ErrBadConn is not sent",
			breakA:    func(s *fakeServer) { s.execErr = driver.ErrBadConn },
			wantClass: ClassNotSent, wantOnB: true,
		},
		{
			name:      "read-only refusal 1290 moves the writer",
			breakA:    func(s *fakeServer) { s.execErr = &mysql.MySQLError{Number: 1290, Message: "read-only"} },
			wantClass: ClassReadOnly, wantOnB: true,
		},
		{
			name:      "read-only refusal 1836 moves the writer",
			breakA:    func(s *fakeServer) { s.execErr = &mysql.MySQLError{Number: 1836, Message: "read-only mode"} },
			wantClass: ClassReadOnly, wantOnB: true,
		},
		{
			name:   "mysql.ErrInvalidConn is outcome unknown",
			breakA: func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn },
			check: func(t *testing.T, err error) {
				assertOutcomeUnknown(t, err, "a:3306")
				if !errors.Is(err, mysql.ErrInvalidConn) {
					t.Errorf("driver error lost from chain: %v", err)
				}
			},
		},
		{
			name:   "read i/o timeout is outcome unknown",
			breakA: func(s *fakeServer) { s.execErr = errReadTimeout },
			check: func(t *testing.T, err error) {
				assertOutcomeUnknown(t, err, "a:3306")
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("net.Error lost from chain: %v", err)
				}
			},
		},
		{
			name:   "EOF mid-result is outcome unknown",
			breakA: func(s *fakeServer) { s.execErr = io.ErrUnexpectedEOF },
			check:  func(t *testing.T, err error) { assertOutcomeUnknown(t, err, "a:3306") },
		},
		{
			name:   "server error passes through",
			breakA: func(s *fakeServer) { s.execErr = &mysql.MySQLError{Number: 1062, Message: "Duplicate entry"} },
			check: func(t *testing.T, err error) {
				var me *mysql.MySQLError
				if !errors.As(err, &me) || me.Number != 1062 {
					t.Fatalf("err = %v, want the *mysql.MySQLError 1062 as is", err)
				}
				if errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrNotSent) {
					t.Errorf("server error misclassified: %v", err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, srv := newFakeCluster(t, 3, Settings{ConnectTimeout: 100 * time.Millisecond})
			srv[0].set(tc.breakA)
			var tr Trace
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := c.ExecContext(WithTrace(ctx, &tr), "INSERT INTO t VALUES (1)")
			if tc.wantOnB {
				if err != nil {
					t.Fatalf("ExecContext: %v, want success on b", err)
				}
				if tr.Node != "b:3306" || len(tr.Attempts) != 1 || tr.Attempts[0].Class != tc.wantClass {
					t.Fatalf("trace = %s, want served by b:3306 after one %s failure on a", fmtTrace(tr), tc.wantClass)
				}
				if got := srv[1].execs.Load(); got != 1 {
					t.Errorf("b ran %d statements, want 1", got)
				}
				// The next call goes straight to b.
				tr = Trace{}
				if _, err := c.ExecContext(WithTrace(ctx, &tr), "INSERT INTO t VALUES (2)"); err != nil || tr.Node != "b:3306" || len(tr.Attempts) != 0 {
					t.Errorf("second call: err=%v trace=%s, want b:3306 directly", err, fmtTrace(tr))
				}
				if c.WriterAddr() != "b:3306" {
					t.Errorf("WriterAddr = %s, want b:3306", c.WriterAddr())
				}
				return
			}
			if err == nil {
				t.Fatal("ExecContext succeeded, want an error")
			}
			tc.check(t, err)
			if got := srv[1].execs.Load() + srv[2].execs.Load(); got != 0 {
				t.Errorf("statement was retried on another node (%d times): a write whose outcome is unknown must not be", got)
			}
		})
	}
}

func assertOutcomeUnknown(t *testing.T, err error, node string) {
	t.Helper()
	var ou *OutcomeUnknownError
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.As(err, &ou) {
		t.Fatalf("err = %v, want *OutcomeUnknownError", err)
	}
	if ou.Cluster != "fake" || ou.Node != node || ou.Op != "exec" {
		t.Errorf("OutcomeUnknownError = %+v, want cluster fake node %s op exec", ou, node)
	}
	if errors.Is(err, ErrNotSent) {
		t.Errorf("outcome-unknown error also matches ErrNotSent: %v", err)
	}
}

func fmtTrace(tr Trace) string {
	var b strings.Builder
	b.WriteString("{node=" + tr.Node)
	for _, a := range tr.Attempts {
		b.WriteString(" [" + a.Error() + "]")
	}
	return b.String() + "}"
}

func TestExecDeadlineMidStatementIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 2, Settings{})
	srv[0].set(func(s *fakeServer) {
		s.execFn = func(ctx context.Context, _ string) error { return blockUntilDone(ctx) }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.ExecContext(ctx, "UPDATE t SET x = 1")
	assertOutcomeUnknown(t, err, "a:3306")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to match context.DeadlineExceeded too", err)
	}
	if srv[1].execs.Load() != 0 {
		t.Error("retried on b")
	}
}

func TestExecDeadlineBeforeConnectionIsNotSent(t *testing.T) {
	t.Parallel()
	// connect_timeout (5 s) is longer than the caller's deadline (100 ms).
	c, srv := newFakeCluster(t, 2, Settings{ConnectTimeout: 5 * time.Second})
	srv[0].set(func(s *fakeServer) { s.connectFn = blockUntilDone })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)")
	if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrNotSent and context.DeadlineExceeded", err)
	}
	if errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("err matches ErrOutcomeUnknown: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v, want about the caller's 100ms deadline", d)
	}
	if srv[0].execs.Load()+srv[1].execs.Load() != 0 {
		t.Error("a statement reached a server")
	}
}

// TestNoNodeErrorForReadsAndWrites: a read that no node can serve returns
// the same *NoNodeError as a write, and the deprecated names ErrNoWriter
// and NoWriterError still match it.
func TestNoNodeErrorForReadsAndWrites(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 2, Settings{})
	for _, s := range srv {
		s.set(func(s *fakeServer) { s.connectErr = errDialRefused })
	}
	ctx := context.Background()
	_, readErr := c.QueryContext(ctx, "SELECT 1")
	_, writeErr := c.ExecContext(ctx, "INSERT INTO t VALUES (1)")
	for _, tc := range []struct {
		name string
		err  error
		op   Op
	}{{"read", readErr, OpQuery}, {"write", writeErr, OpExec}} {
		var nn *NoNodeError
		if !errors.As(tc.err, &nn) || !errors.Is(tc.err, ErrNoNode) || !errors.Is(tc.err, ErrNotSent) {
			t.Fatalf("%s: err = %v, want *NoNodeError matching ErrNoNode and ErrNotSent", tc.name, tc.err)
		}
		if nn.Cluster != "fake" || nn.Op != tc.op || len(nn.Attempts) != 2 {
			t.Errorf("%s: %+v, want cluster fake, op %q, 2 attempts", tc.name, nn, tc.op)
		}
		var old *NoWriterError
		if !errors.Is(tc.err, ErrNoWriter) || !errors.As(tc.err, &old) || old != nn {
			t.Errorf("%s: the deprecated names do not match %v", tc.name, tc.err)
		}
	}
}

func TestAllNodesDownThenRecovery(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 3, Settings{})
	for _, s := range srv {
		s.set(func(s *fakeServer) { s.connectErr = errDialRefused })
	}
	ctx := context.Background()
	_, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)")
	var nw *NoNodeError
	if !errors.As(err, &nw) || !errors.Is(err, ErrNoNode) || !errors.Is(err, ErrNotSent) {
		t.Fatalf("err = %v, want *NoNodeError matching ErrNoNode and ErrNotSent", err)
	}
	if len(nw.Attempts) != 3 {
		t.Fatalf("attempts = %d, want 3", len(nw.Attempts))
	}
	for i, a := range nw.Attempts {
		if a.Node != srv[i].addr || a.Class != ClassNotSent || !errors.Is(a, syscall.ECONNREFUSED) {
			t.Errorf("attempt %d = %v, want %s not sent, connection refused", i, a, srv[i].addr)
		}
		if !strings.Contains(err.Error(), srv[i].addr) {
			t.Errorf("error text does not name %s: %v", srv[i].addr, err)
		}
	}
	// c comes back: the next call finds it.
	srv[2].set(func(s *fakeServer) { s.connectErr = nil })
	var tr Trace
	if _, err := c.ExecContext(WithTrace(ctx, &tr), "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatalf("after c:3306 recovered: %v", err)
	}
	if tr.Node != "c:3306" {
		t.Errorf("served by %s, want c:3306", tr.Node)
	}
}

func TestQueryRetriesReadsOnly(t *testing.T) {
	t.Parallel()
	t.Run("read is retried after outcome unknown", func(t *testing.T) {
		t.Parallel()
		c, srv := newFakeCluster(t, 2, Settings{})
		srv[0].set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
		var node string
		if err := c.QueryRowContext(context.Background(), "SELECT node FROM t WHERE id = ?", 1).Scan(&node); err != nil {
			t.Fatal(err)
		}
		if node != "b:3306" {
			t.Errorf("read served by %s, want b:3306", node)
		}
	})
	t.Run("write through Query is not retried", func(t *testing.T) {
		t.Parallel()
		c, srv := newFakeCluster(t, 2, Settings{})
		srv[0].set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
		_, err := c.QueryContext(context.Background(), "INSERT INTO t VALUES (1) RETURNING id")
		if !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
		}
		if srv[1].execs.Load() != 0 {
			t.Error("INSERT ... RETURNING was retried on b")
		}
	})
	t.Run("no rows", func(t *testing.T) {
		t.Parallel()
		c, _ := newFakeCluster(t, 1, Settings{})
		var s string
		if err := c.QueryRowContext(context.Background(), "SHOW nothing").Scan(&s, &s); err == nil {
			t.Error("Scan with wrong arity succeeded")
		}
	})
}

func TestCommitClassification(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		commitErr error
		want      error
	}{
		{"lost answer is outcome unknown", mysql.ErrInvalidConn, ErrOutcomeUnknown},
		{"read timeout is outcome unknown", errReadTimeout, ErrOutcomeUnknown},
		{"commit never sent", driver.ErrBadConn, ErrNotSent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, srv := newFakeCluster(t, 2, Settings{})
			ctx := context.Background()
			tx, err := c.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tx.Node() != "a:3306" {
				t.Errorf("tx on %s, want a:3306", tx.Node())
			}
			if _, err := tx.ExecContext(ctx, "UPDATE acct SET bal = bal - 1"); err != nil {
				t.Fatal(err)
			}
			srv[0].set(func(s *fakeServer) { s.commitErr = tc.commitErr })
			err = tx.Commit()
			if !errors.Is(err, tc.want) {
				t.Fatalf("Commit: %v, want %v", err, tc.want)
			}
			if !errors.Is(err, tc.commitErr) {
				t.Errorf("Commit error lost the driver's error: %v", err)
			}
		})
	}
}

func TestBeginTxFailsOver(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 2, Settings{})
	srv[0].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	tx, err := c.BeginTx(context.Background(), &sql.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if tx.Node() != "b:3306" {
		t.Errorf("tx on %s, want b:3306", tx.Node())
	}
}

func TestConnFailsOver(t *testing.T) {
	t.Parallel()
	c, srv := newFakeCluster(t, 2, Settings{})
	srv[0].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	conn, err := c.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if srv[1].connects.Load() != 1 {
		t.Errorf("b connects = %d, want 1", srv[1].connects.Load())
	}
}

func TestClosedCluster(t *testing.T) {
	t.Parallel()
	c, _ := newFakeCluster(t, 1, Settings{})
	c.close()
	if _, err := c.ExecContext(context.Background(), "SELECT 1"); !errors.Is(err, ErrClosed) {
		t.Errorf("err = %v, want ErrClosed", err)
	}
}

func TestIsReadStatement(t *testing.T) {
	t.Parallel()
	for q, want := range map[string]bool{
		"SELECT 1":                      true,
		"  select * from t":             true,
		"(SELECT 1) UNION (SELECT 2)":   true,
		"SHOW TABLES":                   true,
		"EXPLAIN SELECT 1":              true,
		"INSERT INTO t VALUES (1)":      false,
		"DELETE FROM t RETURNING id":    false,
		"WITH x AS (SELECT 1) SELECT 1": false, // conservative
		"":                              false,
		"SELECTX":                       false,
		// sqlc starts every query with its name in a comment.
		"-- name: GetOrder :one\nSELECT id FROM orders WHERE id = ?": true,
		"/* app */ SELECT 1":                                        true,
		"# note\nSHOW TABLES":                                       true,
		"/*! INSERT INTO t VALUES (1) */ SELECT 1":                  false, // executable comment
		"/*M! INSERT INTO t VALUES (1) */ SELECT 1":                 false,
		"-- name: CreateOrder :exec\nINSERT INTO orders VALUES (?)": false,
		"-- only a comment":                                         false,
	} {
		if got := isReadStatement(q); got != want {
			t.Errorf("isReadStatement(%q) = %v, want %v", q, got, want)
		}
	}
}
