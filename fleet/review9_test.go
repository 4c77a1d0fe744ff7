package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
)

// TestReview9ConcurrentSwitchoversExclusive: while one SwitchoverWith of a
// cluster holds its switchover key (its hooks running), a second one of the
// same cluster is refused before any hook: before, both demoted the writer,
// and the first one's refusal (Promote) made the old writer writable again
// while the second published its decision — a switchover without its fence.
func TestReview9ConcurrentSwitchoversExclusive(t *testing.T) {
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pfx = DefaultPrefix
	put := seedSwitchoverFleet(t, ctx, cli, pfx)
	put(WriterKey(pfx, "c1"), Decision{Writer: "a:3306", Epoch: 4})

	var mu sync.Mutex
	var calls []string
	rec := func(s string) { mu.Lock(); calls = append(calls, s); mu.Unlock() }
	inCatchUp, release := make(chan struct{}), make(chan struct{})
	first := &SwitchoverOptions{
		Demote:  func(_ context.Context, _, addr string) error { rec("1 demote " + addr); return nil },
		Promote: func(_ context.Context, _, addr string) error { rec("1 promote " + addr); return nil },
		CatchUp: func(ctx context.Context, _, _, _ string) error {
			close(inCatchUp)
			<-release
			return errors.New("boom") // the first one is refused: it promotes a:3306 back
		},
	}
	second := &SwitchoverOptions{
		Demote:  func(_ context.Context, _, addr string) error { rec("2 demote " + addr); return nil },
		Promote: func(_ context.Context, _, addr string) error { rec("2 promote " + addr); return nil },
		CatchUp: func(context.Context, string, string, string) error { rec("2 catchup"); return nil },
	}
	done := make(chan error, 1)
	go func() {
		_, err := SwitchoverWith(ctx, cli, pfx, "c1", "b:3306", "op1", first)
		done <- err
	}()
	<-inCatchUp
	d, err2 := SwitchoverWith(ctx, cli, pfx, "c1", "c:3306", "op2", second)
	close(release)
	err1 := <-done
	if err1 == nil {
		t.Fatalf("the first switchover succeeded")
	}
	mu.Lock()
	got := strings.Join(calls, ", ")
	mu.Unlock()
	if !errors.Is(err2, ErrSwitchoverRefused) || !strings.Contains(err2.Error(), "switchover") || strings.Contains(got, "2 ") {
		t.Fatalf("second switchover while the first held the key: decision %+v, err %v; hooks called: %s", d, err2, got)
	}
	t.Logf("second refused: %v", err2)
	// The key is gone once the first returns: a third may run.
	resp, err := cli.Get(ctx, SwitchoverKey(pfx, "c1"))
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("switchover key after both returned: %v %v", resp, err)
	}
}

// TestReview9PanicInHookUndoesDemote: a hook that panics after Demote
// (here CatchUp) still has the demotion undone (Promote) before the panic
// goes on to the caller: before, the old writer stayed read-only with no
// decision moving the writer off it.
func TestReview9PanicInHookUndoesDemote(t *testing.T) {
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pfx = DefaultPrefix
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := cli.Put(ctx, key, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []string{"web1", "web2", "web3"} {
		put(RouterKey(pfx, r), RouterInfo{ID: r})
		put(ViewKey(pfx, "c1", r), View{Router: r, At: time.Now(), Writer: "a:3306", Epoch: 4, Nodes: []NodeView{
			{Addr: "a:3306", State: "up", Probed: true},
			{Addr: "b:3306", State: "up", Probed: true},
		}})
	}
	put(WriterKey(pfx, "c1"), Decision{Writer: "a:3306", Epoch: 4})
	for _, where := range []string{"demote", "catchup"} {
		t.Run(where, func(t *testing.T) {
			var mu sync.Mutex
			var calls []string
			rec := func(s string) { mu.Lock(); calls = append(calls, s); mu.Unlock() }
			opts := &SwitchoverOptions{
				Demote: func(_ context.Context, _, addr string) error {
					rec("demote " + addr)
					if where == "demote" {
						panic("hook bug")
					}
					return nil
				},
				Promote: func(_ context.Context, _, addr string) error { rec("promote " + addr); return nil },
				CatchUp: func(context.Context, string, string, string) error {
					rec("catchup")
					panic("hook bug")
				},
			}
			var p any
			func() {
				defer func() { p = recover() }()
				SwitchoverWith(ctx, cli, pfx, "c1", "b:3306", "op", opts)
			}()
			mu.Lock()
			got := strings.Join(calls, ", ")
			mu.Unlock()
			if p == nil || !strings.Contains(got, "promote a:3306") {
				t.Fatalf("panic %v; calls: %s (want the demotion undone)", p, got)
			}
			resp, err := cli.Get(ctx, SwitchoverKey(pfx, "c1"))
			if err != nil || len(resp.Kvs) != 0 {
				t.Fatalf("switchover key after the panic: %v %v", resp, err)
			}
		})
	}
}

// TestReview9SQLHooksNormalisedAddress: the routers (and so the fleet's
// decisions and the hooks' addr) name a node by its normalised address,
// "db1" being "db1:3306"; SQLHooks must find the node of a configuration
// that spells it without the port. Before, every hook refused it as "not a
// node of cluster", so `dbrouter switchover -config` could never demote a
// node configured as "db1". The host does not resolve (.invalid): the
// hook fails at the dial, after the node was found.
func TestReview9SQLHooksNormalisedAddress(t *testing.T) {
	cfg := &dbrouter.Config{Clusters: map[string]dbrouter.ClusterConfig{
		"c1": {Settings: dbrouter.Settings{User: "u", Password: "s3cret-pw", ConnectTimeout: time.Second}, Nodes: []string{"db1.invalid", "[::1]:1", "db3.invalid:03306"}},
	}}
	h, err := SQLHooks(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"db1.invalid:3306", "db3.invalid:3306"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := h.Demote(ctx, "c1", addr)
		cancel()
		if err == nil || strings.Contains(err.Error(), "not a node") || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("Demote(%s) with the node configured without its port: %v", addr, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.Demote(ctx, "c1", "db2.invalid:3306"); err == nil || !strings.Contains(err.Error(), "not a node") {
		t.Fatalf("Demote of a node not in the cluster: %v", err)
	}
}

// TestReview9UndoLeavesMovedWriter: when the decider moved the writer to
// another node while the switchover's hooks ran (the old writer Down for a
// majority), a failing CatchUp must not make the old writer writable again:
// the fleet writes to the new one. Before, undo promoted it regardless of
// the stored decision (two writable nodes).
func TestReview9UndoLeavesMovedWriter(t *testing.T) {
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pfx = DefaultPrefix
	put := seedSwitchoverFleet(t, ctx, cli, pfx)
	put(WriterKey(pfx, "c1"), Decision{Writer: "a:3306", Epoch: 4})
	var mu sync.Mutex
	var calls []string
	rec := func(s string) { mu.Lock(); calls = append(calls, s); mu.Unlock() }
	opts := &SwitchoverOptions{
		Demote:  func(_ context.Context, _, addr string) error { rec("demote " + addr); return nil },
		Promote: func(_ context.Context, _, addr string) error { rec("promote " + addr); return nil },
		CatchUp: func(context.Context, string, string, string) error {
			put(WriterKey(pfx, "c1"), Decision{Writer: "c:3306", Epoch: 5, Cause: "a:3306 is down"})
			return errors.New("a:3306 unreachable")
		},
	}
	_, err := SwitchoverWith(ctx, cli, pfx, "c1", "b:3306", "op", opts)
	mu.Lock()
	got := strings.Join(calls, ", ")
	mu.Unlock()
	if !errors.Is(err, ErrSwitchoverRefused) || strings.Contains(got, "promote") || !strings.Contains(err.Error(), "c:3306") {
		t.Fatalf("err %v; calls %s (want no promote: the writer is now c:3306)", err, got)
	}
	t.Logf("%v", err)
}

// Defect (found by reading, proven here on a ring): SQLHooks' Demote
// (SET GLOBAL read_only = ON) waiting beyond DemoteTimeout for a lock on
// the old writer ended only the client's side; the server kept waiting
// and set read_only once the lock went — after the switchover was refused
// and Promote had run — leaving the writer read-only with no switchover
// (the fleet's routers then see it read-only, and the decider moves the
// writer off it). Checked by hand on MariaDB 10.11 before the fix: with
// LOCK TABLES t WRITE held in one session, a SET GLOBAL read_only = ON
// whose client gave up after 300 ms took effect when UNLOCK TABLES came,
// 500 ms later. An idle transaction with uncommitted writes does not make
// it wait there (read_only is set at once); a table locked, or a writing
// statement still running, does. exec now bounds the wait on the server
// (lock_wait_timeout) and sends KILL QUERY when its ctx ends.
func TestReview9DemoteTimeoutKillsPendingReadOnly(t *testing.T) {
	f := startFleetRing(t, ringOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, q := range []string{
		fmt.Sprintf("CREATE USER IF NOT EXISTS 'swadmin'@'%%' IDENTIFIED BY '%s'", ringPassword),
		"GRANT ALL PRIVILEGES ON *.* TO 'swadmin'@'%'",
	} {
		if _, err := f.ring.AdminDB(0).ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := f.ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	readOnly := func() int {
		t.Helper()
		var ro int
		if err := f.ring.AdminDB(0).QueryRowContext(ctx, "SELECT @@global.read_only").Scan(&ro); err != nil {
			t.Fatal(err)
		}
		return ro
	}
	// A transaction on the old writer that holds table t locked, with a
	// write not committed: what SET GLOBAL read_only = ON waits for.
	lock, err := f.ring.AdminDB(0).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	for _, q := range []string{
		"SET SESSION autocommit = 0",
		"LOCK TABLES ringtest.t WRITE",
		"INSERT INTO ringtest.t (router, tag, server) VALUES ('test', 'locked', @@server_id)",
	} {
		if _, err := lock.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	locked := true
	unlock := func() {
		if locked {
			locked = false
			for _, q := range []string{"COMMIT", "UNLOCK TABLES"} {
				if _, err := lock.ExecContext(ctx, q); err != nil {
					t.Errorf("%s: %v", q, err)
				}
			}
		}
	}
	defer unlock()
	hooks, err := SQLHooks(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "swadmin", Password: ringPassword},
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: f.addrs}},
	})
	if err != nil {
		t.Fatal(err)
	}
	hooks.DemoteTimeout = 300 * time.Millisecond
	var before Decision
	getJSON(t, f.cl, WriterKey(f.prefix, "ring"), &before)
	start := time.Now()
	_, err = SwitchoverWith(ctx, f.cl, f.prefix, "ring", f.addrs[1], "test", hooks)
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, ErrSwitchoverRefused) || !strings.Contains(err.Error(), "making the writer") || !strings.Contains(err.Error(), "is writable again") {
		t.Fatalf("err = %v, want refused: making the writer read-only failed, writable again", err)
	}
	if ro := readOnly(); ro != 0 {
		t.Fatalf("node 0 read_only = %d right after the refusal, want 0", ro)
	}
	// The lock goes well within the server's own bound (lock_wait_timeout,
	// 1 s here): only KILL QUERY stops the statement before it.
	unlock()
	released := time.Now()
	time.Sleep(time.Second)
	if ro := readOnly(); ro != 0 {
		t.Errorf("node 0 read_only = %d one second after the lock went (%v after the refusal): the refused Demote took effect", ro, released.Sub(start).Round(time.Millisecond))
	}
	var after Decision
	getJSON(t, f.cl, WriterKey(f.prefix, "ring"), &after)
	if after.Writer != f.addrs[0] || after.Epoch != before.Epoch {
		t.Errorf("decision %+v after the refused switchover, want %+v (node 0)", after, before)
	}
	var n int
	if err := f.ring.AdminDB(0).QueryRowContext(ctx, "SELECT COUNT(*) FROM ringtest.t WHERE tag = 'locked'").Scan(&n); err != nil || n != 1 {
		t.Errorf("the locked transaction's write: %d rows (%v), want 1", n, err)
	}
	for _, r := range f.routers {
		if _, err := r.cluster.ExecContext(ctx, "INSERT INTO t (router, server) VALUES (?, @@server_id)", r.user); err != nil {
			t.Errorf("%s: write after the refusal: %v", r.user, err)
		}
	}
}

// TestReview9PlainSwitchoverWaitsForFenced: a plain Switchover while a
// SwitchoverWith of the cluster holds its key is refused; before, it
// published under the other's hooks.
func TestReview9PlainSwitchoverWaitsForFenced(t *testing.T) {
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pfx = DefaultPrefix
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := cli.Put(ctx, key, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []string{"web1", "web2", "web3"} {
		put(RouterKey(pfx, r), RouterInfo{ID: r})
		put(ViewKey(pfx, "c1", r), View{Router: r, At: time.Now(), Writer: "a:3306", Epoch: 4, Nodes: []NodeView{
			{Addr: "a:3306", State: "up", Probed: true},
			{Addr: "b:3306", State: "up", Probed: true},
		}})
	}
	put(WriterKey(pfx, "c1"), Decision{Writer: "a:3306", Epoch: 4})
	put(SwitchoverKey(pfx, "c1"), SwitchoverRecord{From: "a:3306", To: "b:3306", By: "op1", At: time.Now()})
	d, err := Switchover(ctx, cli, pfx, "c1", "b:3306", "op2")
	if !errors.Is(err, ErrSwitchoverRefused) || !strings.Contains(err.Error(), "another switchover is under way") {
		t.Fatalf("plain Switchover while the key is held: %+v, %v", d, err)
	}
}
