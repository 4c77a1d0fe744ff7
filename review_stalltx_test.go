package dbrouter

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Review of the stall watch beyond the Cluster methods (i17-stalltx).

// TestReviewStallClusterWriteRowsWatched freezes the writer while the rows
// of a write made through Cluster.QueryContext (INSERT ... RETURNING,
// which holds the call's pass until the rows are closed) are read: the
// read waits on the node as much as a read of a transaction's rows does,
// so the stall check must release it well before the probes' verdict
// (FailAfter 3 at 2 s), typed as outcome unknown, as on the pinned pool
// and on Router.OpenDB.
func TestReviewStallClusterWriteRowsWatched(t *testing.T) {
	r := newStallRig(t)
	ctx := testCtx(t)
	rows, err := r.c.QueryContext(ctx, "INSERT INTO t VALUES (2) RETURNING id")
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
	t.Logf("stuck read of a Cluster write's rows released after %v: %v", took, err)
	if took > 1500*time.Millisecond {
		t.Errorf("stuck read released after %v: the stall check did not act", took)
	}
	var ou *OutcomeUnknownError
	if !errors.As(err, &ou) || ou.Op != OpQuery || ou.Node != "a:3306" {
		t.Errorf("stuck read: err = %v, want an *OutcomeUnknownError of %q on a:3306", err, OpQuery)
	}
	if _, err := r.c.ExecContext(context.Background(), "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatalf("next call: %v", err)
	}
	if n := r.onB.Load(); n != 1 {
		t.Errorf("next call: %d statements on b, want 1", n)
	}
}

// TestReviewNamesRefuseBidiAndLineSeparators checks the names rule of
// i17-fixes against the characters it exists to keep out of log lines and
// errors: a bidi override (U+202E, "Trojan Source") reorders what follows
// it on screen, and U+2028/U+2029 break a line in many viewers; neither is
// a control character to unicode.IsControl (they are Cf, Zl, Zp). Names of
// other scripts stay accepted (an emoji joined by U+200D ZERO WIDTH JOINER
// no longer is: see TestNamesRefuseInvisibleCharacters).
func TestReviewNamesRefuseBidiAndLineSeparators(t *testing.T) {
	for _, name := range []string{"prod\u202ekcab", "a\u2066b\u2069", "c\u2028x", "c\u2029x", "c\u200fx", "c\u061cx"} {
		cfg := planTestConfig()
		cfg.Clusters[name] = ClusterConfig{Nodes: []string{"db9"}}
		var ce *ConfigError
		if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != "clusters" {
			t.Errorf("cluster name %q: Validate = %v, want a *ConfigError on clusters", name, err)
		}
		cfg = planTestConfig()
		cfg.ShardMaps = map[string]ShardMapConfig{name: {Strategy: StrategyDirectory, Entries: map[string]string{"k": "c"}}}
		if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != "shard_maps" {
			t.Errorf("shard map name %q: Validate = %v, want a *ConfigError on shard_maps", name, err)
		}
	}
	for _, name := range []string{"kunden 2 – Zürich/東京", "עברית", "مرحبا", "💻 team"} {
		cfg := planTestConfig()
		cfg.Clusters[name] = ClusterConfig{Nodes: []string{"db9"}}
		if err := cfg.Validate(); err != nil {
			t.Errorf("cluster name %q refused: %v", name, err)
		}
	}
}

// TestReviewStallPinnedBeginTyped freezes the writer under a BeginTx on
// Cluster.Conn: the stall check releases it, and the error must say what
// happened — nothing applied (START TRANSACTION changes nothing), so
// ErrNotSent, as the routed connections of Router.OpenDB and
// Cluster.BeginTx type it — not the driver's bare "invalid connection",
// which matches neither ErrNotSent nor ErrOutcomeUnknown.
func TestReviewStallPinnedBeginTyped(t *testing.T) {
	r := newStallRig(t)
	ctx := testCtx(t)
	conn, err := r.c.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r.srv[0].set(func(s *fakeServer) {
		s.beginFn = func() error {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return r.frozen(c)
		}
	})
	r.freeze()
	start := time.Now()
	tx, err := conn.BeginTx(ctx, nil)
	took := time.Since(start)
	if err == nil {
		tx.Rollback()
		t.Fatal("BeginTx on a frozen writer succeeded")
	}
	t.Logf("stuck BeginTx on Cluster.Conn released after %v: %v", took, err)
	if took > 1500*time.Millisecond {
		t.Errorf("stuck BeginTx released after %v: the stall check did not act", took)
	}
	if !errors.Is(err, ErrNotSent) {
		t.Errorf("stuck BeginTx: err = %v (%T), want one matching ErrNotSent", err, err)
	}
}

// TestReviewStallTxRowsTyped freezes the writer while the rows of a query
// in a Cluster.BeginTx transaction are read: the stall check releases the
// read, and rows.Err must match ErrOutcomeUnknown (the query may have
// written, INSERT ... RETURNING), as for the rows of Cluster.Conn,
// Cluster.Writer and Router.OpenDB, not be the driver's bare "invalid
// connection" (the caller had to run it through Tx's typing by hand).
func TestReviewStallTxRowsTyped(t *testing.T) {
	r := newStallRig(t)
	ctx := testCtx(t)
	tx, err := r.c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, "INSERT INTO t VALUES (2) RETURNING id")
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
	t.Logf("stuck read of a transaction's rows released after %v: %v", took, err)
	if took > 1500*time.Millisecond {
		t.Errorf("stuck read released after %v: the stall check did not act", took)
	}
	var ou *OutcomeUnknownError
	if !errors.As(err, &ou) || ou.Op != OpTxQuery || ou.Node != "a:3306" {
		t.Errorf("stuck read: err = %v, want an *OutcomeUnknownError of %q on a:3306", err, OpTxQuery)
	}
}
