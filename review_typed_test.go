package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Adversarial review of the typed-edges changes (23f8b44, 1185571,
// 8998bf4, 0fa5d4e, 39829c9): each test below failed on the code it
// attacks.

// exactlyOne reports which of ErrNotSent and ErrOutcomeUnknown err
// matches, as a string for messages, and whether it matches exactly one.
func exactlyOne(err error) (string, bool) {
	ns, ou := errors.Is(err, ErrNotSent), errors.Is(err, ErrOutcomeUnknown)
	switch {
	case ns && ou:
		return "both", false
	case ns:
		return "ErrNotSent", true
	case ou:
		return "ErrOutcomeUnknown", true
	}
	return "neither", false
}

// TestReviewTypedRowsCloseLostTyped loses the connection while the rows'
// Close reads what is left of them (go-sql-driver's Close reads every row
// not read yet: QueryRowContext of a query with more than one row, or rows
// closed early). Row.Scan returns Close's error: it must be typed as a
// read's lost connection is (an *OutcomeUnknownError), not the bare
// driver error that matches neither ErrNotSent nor ErrOutcomeUnknown.
func TestReviewTypedRowsCloseLostTyped(t *testing.T) {
	c, srv := newFakeCluster(t, 2, Settings{})
	ctx := testCtx(t)
	for _, s := range srv {
		s.set(func(s *fakeServer) { s.rowsCloseFn = func() error { return mysql.ErrInvalidConn } })
	}

	// A read's row.
	var v string
	err := c.QueryRowContext(ctx, "SELECT id FROM t").Scan(&v)
	if got, ok := exactlyOne(err); !ok || !errors.Is(err, mysql.ErrInvalidConn) {
		t.Errorf("read: Row.Scan = %v (%T): matches %s, want an *OutcomeUnknownError wrapping mysql.ErrInvalidConn", err, err, got)
	}

	// A write's rows (INSERT ... RETURNING) closed early: the write may
	// or may not be applied.
	rows, err := c.QueryContext(ctx, "INSERT INTO t VALUES (1) RETURNING id")
	if err != nil {
		t.Fatal(err)
	}
	err = rows.Close()
	if got, ok := exactlyOne(err); !ok || got != "ErrOutcomeUnknown" {
		t.Errorf("write: rows.Close = %v (%T): matches %s, want an *OutcomeUnknownError", err, err, got)
	}
}

// TestReviewTypedRetireWaitsForReadRows retires a cluster (Router.Reload
// changed or removed it) while the rows of a plain read are open. The
// design (§8) says rows not yet closed finish on the retired cluster; a
// read's rows hold no place among the calls in flight, so the cluster
// closes at once: its pools are closed and every tracked connection, the
// one the rows are read from included, is closed under the reader.
func TestReviewTypedRetireWaitsForReadRows(t *testing.T) {
	c, _ := newFakeCluster(t, 2, Settings{})
	ctx := testCtx(t)
	rows, err := c.QueryContext(ctx, "SELECT id FROM t")
	if err != nil {
		t.Fatal(err)
	}
	retired := make(chan struct{})
	go func() {
		c.retire()
		close(retired)
	}()
	select {
	case <-retired:
		t.Errorf("the retired cluster closed while a read's rows were open (cluster closed: %v)", c.closed.Load())
	case <-time.After(200 * time.Millisecond):
	}
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		t.Errorf("rows.Err() = %v", err)
	}
	rows.Close()
	select {
	case <-retired:
	case <-time.After(5 * time.Second):
		t.Fatal("the retired cluster did not close once the read's rows were closed")
	}
}

// TestReviewTypedPinnedSkipNotTyped: a driver that answers a statement
// with driver.ErrSkip (go-sql-driver does for a statement with arguments
// when interpolateParams is off: database/sql then prepares it) sent
// nothing. When the statement's context ends at that moment, the ErrSkip
// must still reach database/sql as it is — not wrapped in an
// *OutcomeUnknownError claiming the statement may have been applied.
func TestReviewTypedPinnedSkipNotTyped(t *testing.T) {
	c, srv := newFakeCluster(t, 2, Settings{})
	conn, err := c.Conn(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv[0].set(func(s *fakeServer) {
		s.execFn = func(_ context.Context, q string) error {
			if q == "INSERT INTO t VALUES (?)" {
				cancel() // the context ends while the driver returns ErrSkip
				return driver.ErrSkip
			}
			return nil
		}
	})
	_, err = conn.ExecContext(ctx, "INSERT INTO t VALUES (?)", 1)
	if errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("ExecContext = %v (%T): outcome unknown for a statement the driver skipped (nothing sent)", err, err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ExecContext = %v, want it to match context.Canceled", err)
	}
}

// TestReviewTypedUnknownThenContextEnd: a write marked idempotent fails
// outcome unknown on a (it may be applied there) and is tried on b, where
// the caller's context ends before anything is sent. NoNodeError's rule —
// ErrOutcomeUnknown as soon as one attempt's outcome is unknown — must
// hold for this ending too: ErrNotSent ("provably never reached any
// server") is false, the write may be on a. Also for a read (whose
// NoNodeError matches ErrOutcomeUnknown in the same case).
func TestReviewTypedUnknownThenContextEnd(t *testing.T) {
	for _, read := range []bool{false, true} {
		c, srv := newFakeCluster(t, 2, Settings{})
		srv[0].set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
		srv[1].set(func(s *fakeServer) {
			s.connectFn = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
		})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		var err error
		if read {
			_, err = c.QueryContext(ctx, "SELECT id FROM t")
		} else {
			_, err = c.ExecContext(WithIdempotent(ctx), "UPDATE t SET v = 1 WHERE id = 1")
		}
		cancel()
		got, _ := exactlyOne(err)
		if got != "ErrOutcomeUnknown" {
			t.Errorf("read %v: err = %v (%T): matches %s, want ErrOutcomeUnknown (a:3306's attempt may have been applied)", read, err, err, got)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("read %v: err = %v, want it to match context.DeadlineExceeded", read, err)
		}
	}
}

// TestReviewTypedNameBrailleBlank: U+2800 BRAILLE PATTERN BLANK shows as
// nothing (it is the usual "invisible name" character) but is a symbol
// (So), neither a format character nor default-ignorable, nor a space for
// strings.TrimSpace: a cluster named by it alone passes the empty-name
// check and printableName, and shows as an empty name in every error,
// log line and metric label (%q keeps it: strconv.IsPrint says it
// prints). 23f8b44's rule refuses what shows as nothing.
func TestReviewTypedNameBrailleBlank(t *testing.T) {
	for _, name := range []string{"\u2800", "pro\u2800d"} {
		cfg := planTestConfig()
		cfg.Clusters[name] = ClusterConfig{Nodes: []string{"db9"}}
		var ce *ConfigError
		if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != "clusters" {
			t.Errorf("cluster %q: Validate = %v, want a *ConfigError on clusters", name, err)
		}
	}
}

// TestReviewTypedPinnedBeginAfterImplicitTransaction: on a Cluster.Conn
// (for session state) with autocommit off, an INSERT leaves a transaction
// open; a BeginTx then sends START TRANSACTION, which commits that
// transaction implicitly before it begins the new one. When its context
// ends while the BEGIN is in flight (or its connection is lost), go-sql-
// driver closes the connection: the INSERT is committed if the BEGIN
// reached the server, rolled back if not. ErrNotSent ("provably never
// reached any server", safe to retry) is then false: a caller that runs
// its unit of work again doubles the INSERT when the BEGIN had committed
// it. The same holds for an explicit START TRANSACTION run with
// ExecContext before BeginTx, and for Cluster.BeginTx on a pooled session
// someone set autocommit off on.
func TestReviewTypedPinnedBeginAfterImplicitTransaction(t *testing.T) {
	t.Skip("defect: a pinned BEGIN whose context ends in flight (or whose connection is lost) is typed ErrNotSent even when it may have committed the session's open implicit transaction (autocommit=0, or START TRANSACTION by ExecContext); telling needs the session's SERVER_STATUS_IN_TRANS, which go-sql-driver does not expose — not a small fix")
	c, srv := newFakeCluster(t, 2, Settings{})
	conn, err := c.Conn(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"SET autocommit = 0", "INSERT INTO t VALUES (1)"} {
		if _, err := conn.ExecContext(testCtx(t), q); err != nil {
			t.Fatal(err)
		}
	}
	srv[0].set(func(s *fakeServer) {
		s.beginCtxFn = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = conn.BeginTx(ctx, nil)
	if errors.Is(err, ErrNotSent) {
		t.Errorf("BeginTx = %v: matches ErrNotSent, but the START TRANSACTION may have committed the INSERT of the open implicit transaction", err)
	}
}
