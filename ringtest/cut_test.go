package ringtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter/ringtest"
)

// TestCutHeal checks that Cut blackholes the caller's path to a node (open
// and new connections hang, nothing is refused) while the node keeps
// replicating, and that Heal restores the path.
func TestCutHeal(t *testing.T) {
	h := newHarness(t, ringtest.Options{Nodes: 2, Proxy: true})
	r := h.Ring(0)
	if r.Addr(0) == r.ServerAddr(0) {
		t.Fatalf("Addr(0) = ServerAddr(0) = %s with Proxy set", r.Addr(0))
	}
	db0 := openApp(t, r, 0)
	db1 := openApp(t, r, 1)
	if _, err := db0.Exec("CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	insert(t, db0, "before")
	db0.SetMaxIdleConns(1)
	pooled, err := db0.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer pooled.Close()

	if err := r.Cut(0); err != nil {
		t.Fatal(err)
	}
	if !r.IsCut(0) {
		t.Fatal("IsCut(0) = false after Cut")
	}
	// An open connection hangs until its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	t0 := time.Now()
	err = pooled.PingContext(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) && time.Since(t0) < 250*time.Millisecond {
		t.Fatalf("ping on an open connection across a cut: %v after %v, want a hang until the deadline", err, time.Since(t0))
	}
	// A new connection is accepted but its handshake never comes.
	cut := openApp(t, r, 0)
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	t0 = time.Now()
	err = cut.PingContext(ctx)
	cancel()
	if err == nil || time.Since(t0) < 250*time.Millisecond {
		t.Fatalf("new connection across a cut: %v after %v, want a hang until the deadline", err, time.Since(t0))
	}
	// The node keeps replicating: a row written on node 1 reaches node 0.
	insert(t, db1, "during cut")
	converge(t, r)
	if got := ids(t, r, 0); len(got) != 2 {
		t.Fatalf("node 0 has ids %v during the cut, want 2 rows", got)
	}

	if err := r.Heal(0); err != nil {
		t.Fatal(err)
	}
	fresh := openApp(t, r, 0)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := fresh.PingContext(ctx); err != nil {
		t.Fatalf("ping after Heal: %v", err)
	}
	insert(t, fresh, "after heal")
	converge(t, r)
	if got := ids(t, r, 1); len(got) != 3 {
		t.Fatalf("node 1 has ids %v after heal, want 3 rows", got)
	}
	// Cut without a proxy is an error, not a silent no-op.
	h2 := newHarness(t, ringtest.Options{Nodes: 1})
	if err := h2.Ring(0).Cut(0); err == nil {
		t.Fatal("Cut without Options.Proxy returned nil")
	}
}
