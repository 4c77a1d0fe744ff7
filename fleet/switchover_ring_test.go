package fleet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
)

// TestRingFleetSwitchover: an operator's Switchover moves every fleet
// router from node 0 to node 1 under a write load on each, through each
// router's fence: no write fails, none is outcome unknown, and after the
// switch every router's writes land on node 1.
func TestRingFleetSwitchover(t *testing.T) {
	f := startFleetRing(t, ringOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var (
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		ok      atomic.Int64
		mu      sync.Mutex
		failed  []error
		longest atomic.Int64
	)
	// "app", a local-mode router (no etcd), stands for the clients outside
	// the fleet: nothing moves it off node 0.
	for _, r := range append(slices.Clone(f.routers), f.local) {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				start := time.Now()
				_, err := r.cluster.ExecContext(cctx, "INSERT INTO t (router, server) VALUES (?, @@server_id)", r.user)
				cancel()
				if d := int64(time.Since(start)); d > longest.Load() {
					longest.Store(d)
				}
				if err != nil {
					mu.Lock()
					failed = append(failed, fmt.Errorf("%s: %w", r.user, err))
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	eventually(t, "writes on node 0", func() bool { return ok.Load() > 300 })
	start := time.Now()
	d, err := Switchover(ctx, f.cl, f.prefix, "ring", f.addrs[1], "test")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "every fleet router on node 1", func() bool { return f.allOn(f.addrs[1]) })
	all := time.Since(start)
	n := ok.Load()
	eventually(t, "writes on node 1", func() bool { return ok.Load() > n+300 })
	close(stop)
	wg.Wait()
	t.Logf("fleet switchover to node 1 (epoch %d): all three routers on it after %v; %d writes acknowledged, %d failed; longest write %v",
		d.Epoch, all.Round(time.Millisecond), ok.Load(), len(failed), time.Duration(longest.Load()).Round(time.Millisecond))
	for _, err := range failed {
		unknown := errors.Is(err, dbrouter.ErrOutcomeUnknown)
		t.Errorf("a write failed during the switchover (outcome unknown: %v): %v", unknown, err)
	}
	// Without the fleet's fence (SwitchoverWith) node 0 stays writable:
	// said for comparison with TestRingFleetSwitchoverFenced, not asserted.
	if err := f.ring.WaitConverged(ctx); err == nil {
		windows, wrows := splitBrain(t, f.ring.AdminDB(1), "r1", "r2", "r3")
		late := lateRows(t, f.ring.AdminDB(1), f.serverID(t, 0), f.serverID(t, 1), "r1", "r2", "r3")
		lateApp := lateRows(t, f.ring.AdminDB(1), f.serverID(t, 0), f.serverID(t, 1), "r1", "r2", "r3", "app")
		t.Logf("100 ms windows with rows of two servers: %d (%d rows); rows on node 0 at or after node 1's first: %d of the fleet routers, %d with the local router app's (still on node 0: the old writer stays writable)",
			windows, wrows, late, lateApp)
	}
	want := f.serverID(t, 1)
	for _, r := range f.routers {
		var server int
		if err := r.cluster.QueryRowContext(ctx, "SELECT server FROM t WHERE router = ? ORDER BY pk DESC LIMIT 1", r.user).Scan(&server); err != nil || server != want {
			t.Errorf("%s: last write on server %d (%v), want node 1's %d", r.user, server, err, want)
		}
	}
}

// TestRingFleetSwitchoverFenced: SwitchoverWith with SQLHooks moves every
// fleet router from node 0 to node 1 under a write load on each, through
// the fleet's fence: node 0 is made read-only, node 1 catches up, then the
// decision is published. No write fails (a write refused as read-only
// waits, with FailoverWait, for its router to switch, and goes to node 1),
// none is outcome unknown, every acknowledged row is there once, no row
// lands on node 0 after the first on node 1, and node 0 is read-only
// afterwards.
func TestRingFleetSwitchoverFenced(t *testing.T) {
	f := startFleetRing(t, ringOptions{failoverWait: 5 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// An account that may SET GLOBAL read_only, as an operator's would be.
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
	hooks, err := SQLHooks(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "swadmin", Password: ringPassword},
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: f.addrs}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	demote, catchUp := hooks.Demote, hooks.CatchUp
	var demoted, caughtUp time.Duration
	start := time.Now()
	hooks.Demote = func(ctx context.Context, cluster, addr string) error {
		calls = append(calls, "demote "+addr)
		err := demote(ctx, cluster, addr)
		demoted = time.Since(start)
		return err
	}
	hooks.CatchUp = func(ctx context.Context, cluster, from, to string) error {
		calls = append(calls, "catch-up "+from+" → "+to)
		err := catchUp(ctx, cluster, from, to)
		caughtUp = time.Since(start)
		return err
	}
	var (
		stop             = make(chan struct{})
		wg               sync.WaitGroup
		ok, notSent, unk atomic.Int64
		mu               sync.Mutex
		failed           []error
		longest          atomic.Int64
	)
	// "app", a local-mode router (no etcd), stands for the clients outside
	// the fleet: only node 0's read_only moves it.
	for _, r := range append(slices.Clone(f.routers), f.local) {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				t0 := time.Now()
				_, err := r.cluster.ExecContext(cctx, "INSERT INTO t (router, server) VALUES (?, @@server_id)", r.user)
				cancel()
				if d := int64(time.Since(t0)); d > longest.Load() {
					longest.Store(d)
				}
				if err != nil {
					switch {
					case errors.Is(err, dbrouter.ErrOutcomeUnknown):
						unk.Add(1)
					case errors.Is(err, dbrouter.ErrNotSent):
						notSent.Add(1)
					}
					mu.Lock()
					failed = append(failed, fmt.Errorf("%s: %w", r.user, err))
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	eventually(t, "writes on node 0", func() bool { return ok.Load() > 300 })
	start = time.Now()
	d, err := SwitchoverWith(ctx, f.cl, f.prefix, "ring", f.addrs[1], "test", hooks)
	published := time.Since(start)
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	eventually(t, "every fleet router on node 1", func() bool { return f.allOn(f.addrs[1]) })
	all := time.Since(start)
	n := ok.Load()
	eventually(t, "writes on node 1", func() bool { return ok.Load() > n+300 })
	close(stop)
	wg.Wait()
	t.Logf("fenced fleet switchover to node 1 (epoch %d, decided by %s: %s): %q; demoted after %v, caught up after %v, published after %v, all three routers on node 1 after %v",
		d.Epoch, d.Decider, d.Cause, calls, demoted.Round(time.Millisecond), caughtUp.Round(time.Millisecond),
		published.Round(time.Millisecond), all.Round(time.Millisecond))
	if w := f.local.cluster.Stats().Writer; w != f.addrs[1] {
		t.Errorf("the local router app writes to %s, want node 1 (node 0 is read-only)", w)
	}
	t.Logf("%d writes acknowledged, %d failed (%d not sent, %d outcome unknown); longest write %v",
		ok.Load(), len(failed), notSent.Load(), unk.Load(), time.Duration(longest.Load()).Round(time.Millisecond))
	for _, err := range failed {
		t.Errorf("a write failed during the switchover (outcome unknown: %v): %v", errors.Is(err, dbrouter.ErrOutcomeUnknown), err)
	}
	if d.Decider != "test" {
		t.Errorf("decision by %s (%s), want the switchover's: the decider moved the read-only writer itself", d.Decider, d.Cause)
	}
	if len(calls) != 2 || calls[0] != "demote "+f.addrs[0] || calls[1] != "catch-up "+f.addrs[0]+" → "+f.addrs[1] {
		t.Errorf("hooks called %q", calls)
	}
	var ro int
	if err := f.ring.AdminDB(0).QueryRowContext(ctx, "SELECT @@global.read_only").Scan(&ro); err != nil || ro != 1 {
		t.Errorf("node 0 read_only = %d (%v) after the switchover, want 1", ro, err)
	}
	if err := f.ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := f.ring.AdminDB(1).QueryRowContext(ctx, "SELECT COUNT(*) FROM ringtest.t WHERE router IN ('r1','r2','r3','app')").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != int(ok.Load()) {
		t.Errorf("%d rows of r1, r2, r3, app on node 1, %d writes acknowledged: lost or doubled", rows, ok.Load())
	}
	windows, wrows := splitBrain(t, f.ring.AdminDB(1), "r1", "r2", "r3", "app")
	late := lateRows(t, f.ring.AdminDB(1), f.serverID(t, 0), f.serverID(t, 1), "r1", "r2", "r3", "app")
	t.Logf("100 ms windows with rows of two servers: %d (%d rows; the changeover itself falls in one); rows on node 0 at or after node 1's first: %d", windows, wrows, late)
	if late != 0 {
		t.Errorf("%d rows accepted by node 0 at or after node 1's first: two writers at once", late)
	}
	if windows > 1 {
		t.Errorf("%d windows of 100 ms with rows on two servers, want at most the changeover's", windows)
	}
}

// lateRows returns the number of rows of the routers named that server
// old accepted at or after the first row that server new accepted (the
// servers' clocks: one machine's): a write on the old writer while the new
// one already took writes.
func lateRows(t *testing.T, db *sql.DB, old, new int, routers ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	in := "'" + strings.Join(routers, "','") + "'"
	q := `SELECT COUNT(*) FROM ringtest.t WHERE router IN (` + in + `) AND server = ? AND at >= (
		SELECT COALESCE(MIN(at), '2038-01-01') FROM ringtest.t WHERE router IN (` + in + `) AND server = ?)`
	var n int
	if err := db.QueryRowContext(ctx, q, old, new).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRingFleetSwitchoverFencedRefused: when the target cannot catch up
// (its replication is stopped), SwitchoverWith with SQLHooks refuses after
// CatchUpTimeout, makes the old writer writable again, and leaves the
// decision as it was; the fleet routers keep writing to the old writer.
func TestRingFleetSwitchoverFencedRefused(t *testing.T) {
	f := startFleetRing(t, ringOptions{failoverWait: 5 * time.Second})
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
	// Node 1 replicates from node 0: stopped, it cannot reach node 0's
	// position once node 0 has written more.
	if _, err := f.ring.AdminDB(1).ExecContext(ctx, "STOP SLAVE"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ring.AdminDB(1).ExecContext(context.Background(), "START SLAVE") })
	if _, err := f.routers[0].cluster.ExecContext(ctx, "INSERT INTO t (router, server) VALUES ('r1', @@server_id)"); err != nil {
		t.Fatal(err)
	}
	hooks, err := SQLHooks(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "swadmin", Password: ringPassword},
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: f.addrs}},
	})
	if err != nil {
		t.Fatal(err)
	}
	hooks.CatchUpTimeout = 500 * time.Millisecond
	var before Decision
	getJSON(t, f.cl, WriterKey(f.prefix, "ring"), &before)
	start := time.Now()
	_, err = SwitchoverWith(ctx, f.cl, f.prefix, "ring", f.addrs[1], "test", hooks)
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, ErrSwitchoverRefused) || !strings.Contains(err.Error(), "did not catch up") || !strings.Contains(err.Error(), "is writable again") {
		t.Fatalf("err = %v, want refused: did not catch up, writable again", err)
	}
	var ro int
	if err := f.ring.AdminDB(0).QueryRowContext(ctx, "SELECT @@global.read_only").Scan(&ro); err != nil || ro != 0 {
		t.Errorf("node 0 read_only = %d (%v) after the refusal, want 0", ro, err)
	}
	if resp, err := f.cl.Get(ctx, SwitchoverKey(f.prefix, "ring")); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("the switchover key outlived the refusal (%v)", err)
	}
	// The routers saw nothing read-only (no write came through them): the
	// decision stays, and writes still go to node 0.
	time.Sleep(500 * time.Millisecond)
	var after Decision
	getJSON(t, f.cl, WriterKey(f.prefix, "ring"), &after)
	if after.Writer != before.Writer || after.Epoch != before.Epoch {
		t.Errorf("decision %+v after a refused switchover, want %+v", after, before)
	}
	want := f.serverID(t, 0)
	for _, r := range f.routers {
		var server int
		if _, err := r.cluster.ExecContext(ctx, "INSERT INTO t (router, server) VALUES (?, @@server_id)", r.user); err != nil {
			t.Errorf("%s: write after the refusal: %v", r.user, err)
		} else if err := r.cluster.QueryRowContext(ctx, "SELECT server FROM t WHERE router = ? ORDER BY pk DESC LIMIT 1", r.user).Scan(&server); err != nil || server != want {
			t.Errorf("%s: last write on server %d (%v), want node 0's %d", r.user, server, err, want)
		}
	}
}
