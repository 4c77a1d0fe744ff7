package ringtest_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter/ringtest"
)

// ExampleNew shows the usual use in a test: New starts the rings, fails
// the test if they cannot be started, and closes them at t.Cleanup. It has
// no Output because New needs the testing.TB of a running test;
// ExampleStart is the same ring as a runnable program.
func ExampleNew() {
	testFailover := func(t *testing.T) {
		h := ringtest.New(t, ringtest.Options{Nodes: 3})
		ring := h.Ring(0)
		db, err := sql.Open("mysql", ring.DSN(0)) // the application user, database "ringtest"
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := ring.Kill(0); err != nil { // SIGKILL node 0; ring.Restart(0) brings it back
			t.Fatal(err)
		}
		// ... assert what the code under test does without node 0.
	}
	_ = testFailover
}

// ExampleStart starts one ring of three nodes outside a test, writes a row
// on node 0 and reads it back on node 2 once the ring has converged.
func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h, err := ringtest.Start(ctx, ringtest.Options{Nodes: 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	ring := h.Ring(0)
	fmt.Printf("ring of %d nodes started\n", ring.Len())

	first, err := sql.Open("mysql", ring.DSN(0))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer first.Close()
	for _, q := range []string{"CREATE TABLE greeting (id INT PRIMARY KEY, msg TEXT)", "INSERT INTO greeting VALUES (1, 'hello')"} {
		if _, err := first.ExecContext(ctx, q); err != nil {
			fmt.Println(err)
			return
		}
	}
	if err := ring.WaitConverged(ctx); err != nil {
		fmt.Println(err)
		return
	}
	last, err := sql.Open("mysql", ring.DSN(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer last.Close()
	var msg string
	if err := last.QueryRowContext(ctx, "SELECT msg FROM greeting WHERE id = 1").Scan(&msg); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("node 2 reads:", msg)
	// Output:
	// ring of 3 nodes started
	// node 2 reads: hello
}

// A Harness runs its servers on a Backend: Options.Backend, or when it is
// empty DefaultBackend(), which reads DBROUTER_RING_BACKEND.
func ExampleBackend() {
	opts := ringtest.Options{Nodes: 3, Backend: ringtest.DefaultBackend()}
	switch opts.Backend {
	case ringtest.BackendNative:
		fmt.Println("mariadbd processes on this machine")
	case ringtest.BackendDocker:
		fmt.Println("one Docker container per server")
	}
}
