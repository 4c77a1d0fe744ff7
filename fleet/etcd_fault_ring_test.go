package fleet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
)

// Faults of etcd itself under a fleet writing on a real ring: the etcd
// leader killed mid-run (a 3-member etcd cluster), and every member of
// etcd stopped at once.

// writeLoad is a write loop per router: each inserts rows tagged
// "<router>-<n>" (at most 300 ms per write) until stopped, and keeps the
// tags of the writes acknowledged.
type writeLoad struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	res   map[string]*loadResult
}

// loadResult counts one router's writes.
type loadResult struct {
	ok, notSent, unknown, other int
	lastErr                     error
	acked                       []string
}

// startLoad starts a write loop on each router.
func startLoad(routers ...*ringRouter) *writeLoad {
	l := &writeLoad{stopc: make(chan struct{}), res: map[string]*loadResult{}}
	for _, r := range routers {
		res := &loadResult{}
		l.res[r.user] = res
		l.wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-l.stopc:
					return
				default:
				}
				tag := fmt.Sprintf("%s-%d", r.user, n)
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				_, err := r.cluster.ExecContext(ctx, "INSERT INTO t (router, tag, server) VALUES (?, ?, @@server_id)", r.user, tag)
				cancel()
				l.mu.Lock()
				switch {
				case err == nil:
					res.ok++
					res.acked = append(res.acked, tag)
				case errors.Is(err, dbrouter.ErrNotSent):
					res.notSent++
				case errors.Is(err, dbrouter.ErrOutcomeUnknown):
					res.unknown++
				default:
					res.other++
				}
				if err != nil {
					res.lastErr = err
				}
				l.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // pace the failures
				}
			}
		})
	}
	return l
}

// counts returns a copy of each router's counts (without the tags).
func (l *writeLoad) counts() map[string]loadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]loadResult{}
	for u, r := range l.res {
		out[u] = loadResult{ok: r.ok, notSent: r.notSent, unknown: r.unknown, other: r.other, lastErr: r.lastErr}
	}
	return out
}

// stop ends the loops and waits for them.
func (l *writeLoad) stop() {
	close(l.stopc)
	l.wg.Wait()
}

// checkRows checks, on node i, that every acknowledged write is there
// once and that no write is there twice; it returns the numbers of rows,
// acknowledged writes lost and writes doubled.
func checkRows(t *testing.T, db *sql.DB, l *writeLoad) (rows, lost, doubled int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res, err := db.QueryContext(ctx, "SELECT tag, COUNT(*) FROM ringtest.t WHERE tag <> '' GROUP BY tag")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	count := map[string]int{}
	for res.Next() {
		var tag string
		var n int
		if err := res.Scan(&tag, &n); err != nil {
			t.Fatal(err)
		}
		count[tag] = n
		rows += n
		if n > 1 {
			doubled++
			t.Errorf("write %s is there %d times", tag, n)
		}
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range l.res {
		for _, tag := range r.acked {
			if count[tag] == 0 {
				lost++
				t.Errorf("acknowledged write %s lost", tag)
			}
		}
	}
	return rows, lost, doubled
}

// TestRingEtcdLeaderKilled: three fleet routers write on a ring through a
// 3-member etcd cluster; the etcd leader is killed mid-run. The routers
// keep the decision and their writes go on; no acknowledged write is lost
// or doubled; once etcd has a new leader the fleet still decides: the
// MariaDB writer is killed and every router moves to the new writer.
func TestRingEtcdLeaderKilled(t *testing.T) {
	f := startFleetRing(t, ringOptions{etcdMembers: 3})
	leader := f.etcd.Leader()
	if leader < 0 {
		t.Fatal("no etcd leader")
	}
	load := startLoad(f.routers...)
	time.Sleep(500 * time.Millisecond) // load before the kill
	before := load.counts()
	killed := time.Now()
	f.etcd.crash(leader)
	newLeader := -1
	eventually(t, "a new etcd leader", func() bool {
		newLeader = f.etcd.Leader()
		return newLeader >= 0 && newLeader != leader
	})
	elected := time.Since(killed)
	time.Sleep(3 * time.Second) // longer than a lease: sessions must survive
	during := load.counts()
	load.stop()
	var d Decision
	getJSON(t, f.cl, WriterKey(f.prefix, "ring"), &d)
	if d.Writer != f.addrs[0] || d.Epoch != f.epoch {
		t.Errorf("decision after the etcd leader was killed: %+v, want node 0 at epoch %d", d, f.epoch)
	}
	for _, r := range f.routers {
		b, a := before[r.user], during[r.user]
		t.Logf("%s: %d writes ok before the kill, %d in the %v after it (not sent %d, outcome unknown %d, other %d; last error %v)",
			r.user, b.ok, a.ok-b.ok, 3*time.Second+elected.Round(time.Millisecond), a.notSent, a.unknown, a.other, a.lastErr)
		if a.ok-b.ok == 0 {
			t.Errorf("%s: no write went through after the etcd leader was killed", r.user)
		}
		if w := r.cluster.Stats().Writer; w != f.addrs[0] {
			t.Errorf("%s: writer %q, want node 0", r.user, w)
		}
	}
	rows, lost, doubled := checkRows(t, f.ring.AdminDB(0), load)
	t.Logf("etcd leader m%d killed; m%d elected %v later; %d rows on the writer, %d acknowledged writes lost, %d doubled",
		leader, newLeader, elected.Round(time.Millisecond), rows, lost, doubled)

	// The fleet still decides, with two etcd members of three.
	if err := f.ring.Kill(0); err != nil {
		t.Fatal(err)
	}
	dbKilled := time.Now()
	eventually(t, "every router on the new writer", func() bool {
		getJSON(t, f.cl, WriterKey(f.prefix, "ring"), &d)
		return d.Epoch == f.epoch+1 && d.Writer != f.addrs[0] && f.allOn(d.Writer)
	})
	t.Logf("MariaDB writer killed with one etcd member down: every router on %s (epoch %d) %v later",
		d.Writer, d.Epoch, time.Since(dbKilled).Round(time.Millisecond))
	for _, r := range f.routers {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if _, err := r.cluster.ExecContext(ctx, "INSERT INTO t (router, server) VALUES (?, @@server_id)", r.user); err != nil {
			t.Errorf("%s: write after the failover: %v", r.user, err)
		}
		cancel()
	}
}

// TestRingEtcdOutage: every etcd member is stopped for longer than the
// lease while three fleet routers write: r1 and r2 with the default
// policy (KeepLastDecision) keep writing to the last writer, r3
// (RefuseWrites) has its writes refused, not sent. Once etcd is back,
// every router follows the fleet's decision again and r3 writes again. No
// acknowledged write is lost or doubled.
func TestRingEtcdOutage(t *testing.T) {
	f := startFleetRing(t, ringOptions{etcdMembers: 3,
		policies: []EtcdLostPolicy{KeepLastDecision, KeepLastDecision, RefuseWrites}})
	load := startLoad(f.routers...)
	time.Sleep(500 * time.Millisecond) // load before the outage
	stopped := time.Now()
	for i := range f.etcd.Len() {
		f.etcd.crash(i)
	}
	t.Logf("3 etcd members killed in %v", time.Since(stopped).Round(time.Millisecond))
	lost := func(r *ringRouter) bool {
		r.coord.mu.Lock()
		defer r.coord.mu.Unlock()
		return r.coord.lost
	}
	eventually(t, "every router to count etcd as lost", func() bool {
		return lost(f.routers[0]) && lost(f.routers[1]) && lost(f.routers[2])
	})
	applied := time.Since(stopped)
	// r3 refuses writes from when its policy applied: wait for the writes
	// in flight then, and count from there.
	time.Sleep(400 * time.Millisecond)
	from := load.counts()
	time.Sleep(2 * time.Second)
	to := load.counts()
	for i := range f.etcd.Len() {
		f.etcd.restart(i)
	}
	f.etcd.WaitReady()
	restarted := time.Now()
	eventually(t, "every router back on the fleet's decision", func() bool {
		for _, r := range f.routers {
			if lost(r) || r.cluster.Stats().Writer != f.addrs[0] {
				return false
			}
		}
		return true
	})
	back := time.Since(restarted)
	r3ok := to["r3"].ok
	eventually(t, "r3 writing again", func() bool { return load.counts()["r3"].ok > r3ok })
	time.Sleep(300 * time.Millisecond) // load after the outage
	after := load.counts()
	load.stop()

	t.Logf("etcd stopped (3 members): policies applied %v later; etcd restarted: every router back on the decision %v later",
		applied.Round(time.Millisecond), back.Round(time.Millisecond))
	for i, r := range f.routers {
		a, b := from[r.user], to[r.user]
		t.Logf("%s (%s): in 2 s of the outage %d writes ok, %d not sent (last error: %v); in all %d ok, %d not sent, %d outcome unknown, %d other",
			r.user, r.coord.opts.EtcdLost, b.ok-a.ok, b.notSent-a.notSent, b.lastErr, after[r.user].ok, after[r.user].notSent, after[r.user].unknown, after[r.user].other)
		if i < 2 && b.ok-a.ok == 0 {
			t.Errorf("%s (KeepLastDecision): no write went through during the outage", r.user)
		}
		if i == 2 {
			if b.ok != a.ok || b.notSent == a.notSent {
				t.Errorf("%s (RefuseWrites): %d writes ok and %d not sent during the outage, want 0 ok and some not sent", r.user, b.ok-a.ok, b.notSent-a.notSent)
			}
			if err := b.lastErr; !errors.Is(err, dbrouter.ErrNotSent) || !errors.Is(err, dbrouter.ErrNoNode) || !strings.Contains(err.Error(), "refused") {
				t.Errorf("%s (RefuseWrites): error %v, want a refusal matching ErrNotSent and ErrNoNode", r.user, err)
			}
		}
		if after[r.user].other > 0 {
			t.Errorf("%s: %d errors neither not sent nor outcome unknown (last %v)", r.user, after[r.user].other, after[r.user].lastErr)
		}
	}
	var d Decision
	getJSON(t, f.cl, WriterKey(f.prefix, "ring"), &d)
	if d.Writer != f.addrs[0] || d.Epoch != f.epoch {
		t.Errorf("decision after the outage: %+v, want node 0 at epoch %d", d, f.epoch)
	}
	rows, lostRows, doubled := checkRows(t, f.ring.AdminDB(0), load)
	t.Logf("%d rows on the writer, %d acknowledged writes lost, %d doubled", rows, lostRows, doubled)
}

// TestRingStartWithEtcdDown: a real router that opens with its
// coordinator's etcd down refuses writes — not sent, a *dbrouter.NoNodeError
// matching ErrNotSent and ErrNoNode, as under RefuseWrites — for about a
// lease, while reads go on; then its EtcdLost policy (KeepLastDecision,
// with no decision to keep: the local rule) lets writes through. Once etcd
// is back, the fleet decides and the router follows.
func TestRingStartWithEtcdDown(t *testing.T) {
	ring := ringtest.New(t, ringtest.Options{Nodes: 2, Password: ringPassword}).Ring(0)
	te := startEtcd(t)
	te.crash()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const pfx = "/ring-start-down/"
	c, err := New(newClient(t, te.endpoints[0]), Options{Prefix: pfx, RouterID: "r1", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	start := time.Now()
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults:     dbrouter.Settings{User: "app", Password: ringPassword, Database: "ringtest"},
		Clusters:     map[string]dbrouter.ClusterConfig{"ring": {Nodes: ring.Addrs()}},
		WriterSource: c,
		Logger:       testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	cl, err := r.Cluster("ring")
	if err != nil {
		t.Fatal(err)
	}
	write := func() error {
		_, err := cl.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS s (x INT)")
		return err
	}
	err = write()
	if !errors.Is(err, dbrouter.ErrNotSent) || !errors.Is(err, dbrouter.ErrNoNode) || !strings.Contains(err.Error(), "not been read from etcd") {
		t.Fatalf("first write with etcd down: %v, want refused (ErrNotSent, ErrNoNode) until the decision is read", err)
	}
	var id int
	if err := cl.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id); err != nil {
		t.Errorf("read while writes are refused: %v", err)
	}
	refused := 1
	for err != nil {
		if !errors.Is(err, dbrouter.ErrNotSent) {
			t.Fatalf("write %v after the start: %v, want refused (not sent) or done", time.Since(start).Round(time.Millisecond), err)
		}
		if time.Since(start) > testTTL+10*time.Second {
			t.Fatalf("writes still refused %v after the start (lease %v)", time.Since(start).Round(time.Millisecond), testTTL)
		}
		time.Sleep(tick)
		refused++
		err = write()
	}
	open := time.Since(start)
	t.Logf("writes refused (not sent) for %v after Open with etcd down (%d attempts), then the local rule (lease %v)", open.Round(time.Millisecond), refused, testTTL)
	if open < testTTL-100*time.Millisecond || open > testTTL+5*time.Second {
		t.Errorf("writes refused for %v, want about one lease (%v)", open.Round(time.Millisecond), testTTL)
	}
	te.restart()
	cli := newClient(t, te.endpoints[0])
	eventually(t, "the fleet's first decision, followed", func() bool {
		var d Decision
		return getJSON(t, cli, WriterKey(pfx, "ring"), &d) && d.Epoch == 1 && cl.Stats().Writer == d.Writer
	})
	if err := write(); err != nil {
		t.Errorf("write on the fleet's decision: %v", err)
	}
}
