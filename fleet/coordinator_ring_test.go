package fleet

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/fleet/internal/userproxy"
	"github.com/dbrouter/dbrouter/ringtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Tests of a fleet on a real MariaDB ring (ringtest, native) and an
// embedded etcd: three routers, each a dbrouter.Router with its own
// Coordinator and etcd client, and a fourth router without a coordinator
// (local mode) for comparison.
//
// A one-sided cut must cut one router from a node while the others still
// reach it. ringtest's proxy (Options.Proxy, Ring.Cut) is one per node,
// shared by every caller, and the routers must name the nodes alike (a
// decision names a node by its address), so the ring is put behind
// userProxy: one proxy per node that reads the MySQL user from each
// connection's handshake and blackholes the connections of the users cut;
// every router logs in as a user of its own.

const ringPassword = "fleet-secret-Xy3"

// fleetRing is a ring with three fleet routers and one local router.
type fleetRing struct {
	ring    *ringtest.Ring
	proxies []*userProxy
	addrs   []string // the proxies' addresses: the nodes as every router names them
	etcd    *testCluster
	cl      *clientv3.Client // the test's own etcd client
	routers []*ringRouter    // r1, r2, r3
	local   *ringRouter      // user "app", no WriterSource
	local2  *ringRouter      // user "app2", no WriterSource, never cut
	prefix  string
	epoch   uint64 // the decision's epoch once the fleet is on node 0 (1 unless moved there)
}

// ringOptions are startFleetRing's settings.
type ringOptions struct {
	etcdMembers  int              // default 1
	policies     []EtcdLostPolicy // r1, r2, r3's EtcdLost; default the default
	failoverWait time.Duration    // r1, r2, r3's Settings.FailoverWait; default none
}

// ringRouter is one router of the test.
type ringRouter struct {
	user    string
	router  *dbrouter.Router
	cluster *dbrouter.Cluster
	coord   *Coordinator // nil for the local router
}

// startFleetRing starts a 3-node ring, its proxies, an etcd (a cluster of
// opts.etcdMembers), and the five routers; it waits until the fleet has
// decided node 0 and every router uses it. Table t records each write's
// router, tag, the server that accepted it and when (the server's clock,
// to the microsecond).
func startFleetRing(t *testing.T, opts ringOptions) *fleetRing {
	t.Helper()
	if opts.etcdMembers == 0 {
		opts.etcdMembers = 1
	}
	h := ringtest.New(t, ringtest.Options{Nodes: 3, Password: ringPassword})
	f := &fleetRing{ring: h.Ring(0), etcd: startCluster(t, opts.etcdMembers), prefix: "/ring/"}
	f.cl = newClient(t, f.etcd.endpoints...)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, u := range []string{"r1", "r2", "r3", "app2"} {
		for _, q := range []string{
			fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s'", u, ringPassword),
			fmt.Sprintf("GRANT ALL PRIVILEGES ON ringtest.* TO '%s'@'%%'", u),
			fmt.Sprintf("GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO '%s'@'%%'", u),
		} {
			if _, err := f.ring.AdminDB(0).ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	if _, err := f.ring.AdminDB(0).ExecContext(ctx, `CREATE TABLE ringtest.t (
		pk BIGINT AUTO_INCREMENT PRIMARY KEY,
		router VARCHAR(16) NOT NULL,
		tag VARCHAR(32) NOT NULL DEFAULT '',
		server INT NOT NULL,
		at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
		KEY (tag))`); err != nil {
		t.Fatal(err)
	}
	if err := f.ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range f.ring.Len() {
		p := newUserProxy(t, f.ring.ServerAddr(i))
		f.proxies = append(f.proxies, p)
		f.addrs = append(f.addrs, p.addr())
	}
	demote := func(ctx context.Context, cluster, addr string) error {
		i := slices.Index(f.addrs, addr)
		if i < 0 {
			return fmt.Errorf("no node %s", addr)
		}
		_, err := f.ring.AdminDB(i).ExecContext(ctx, "SET GLOBAL read_only = ON")
		return err
	}
	for i, u := range []string{"r1", "r2", "r3"} {
		o := Options{Prefix: f.prefix, RouterID: u, LeaseTTL: testTTL, Demote: demote, Logger: testLogger(t)}
		if i < len(opts.policies) {
			o.EtcdLost = opts.policies[i]
		}
		c, err := New(newClient(t, f.etcd.endpoints...), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		f.routers = append(f.routers, f.open(t, u, c, opts.failoverWait))
	}
	f.local = f.open(t, "app", nil, 0)
	f.local2 = f.open(t, "app2", nil, 0)
	for _, r := range append(slices.Clone(f.routers), f.local, f.local2) {
		r.cluster.WriterAddr() // starts the probers
	}
	deadline := time.Now().Add(20 * time.Second)
	var lastTry time.Time
	eventually(t, "the fleet on node 0", func() bool {
		if time.Now().After(deadline) { // say what was decided and seen instead
			var d Decision
			getJSON(t, f.cl, WriterKey(f.prefix, "ring"), &d)
			t.Logf("decision %+v; nodes %v", d, f.addrs)
			for _, r := range f.routers {
				t.Logf("%s: %+v", r.user, r.cluster.Stats())
			}
			t.FailNow()
		}
		var d Decision
		if !getJSON(t, f.cl, WriterKey(f.prefix, "ring"), &d) {
			return false
		}
		if d.Writer != f.addrs[0] {
			if time.Since(lastTry) < 500*time.Millisecond {
				return false
			}
			lastTry = time.Now()
			// On a loaded machine a router's first probe round may miss
			// node 0, and the first decision name another node (the
			// fleet never fails back on its own): move it to node 0 as
			// an operator would.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			_, err := Switchover(ctx, f.cl, f.prefix, "ring", f.addrs[0], "test")
			cancel()
			t.Logf("first decision %s (epoch %d), not node 0: switchover to node 0: %v", d.Writer, d.Epoch, err)
			return false
		}
		f.epoch = d.Epoch
		return f.allOn(f.addrs[0])
	})
	return f
}

// open opens a router logging in as user, with a WriterSource when c is
// set, and the FailoverWait given.
func (f *fleetRing) open(t *testing.T, user string, c *Coordinator, failoverWait time.Duration) *ringRouter {
	t.Helper()
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: user, Password: ringPassword, Database: "ringtest", FailoverWait: failoverWait},
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: f.addrs}},
		Logger:   testLogger(t).With("user", user),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("user", user)
	}
	if c != nil {
		cfg.WriterSource = c
	}
	r, err := dbrouter.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	cl, err := r.Cluster("ring")
	if err != nil {
		t.Fatal(err)
	}
	return &ringRouter{user: user, router: r, cluster: cl, coord: c}
}

// allOn reports whether every fleet router writes to addr.
func (f *fleetRing) allOn(addr string) bool {
	for _, r := range f.routers {
		if r.cluster.Stats().Writer != addr {
			return false
		}
	}
	return true
}

// serverID returns node i's @@server_id.
func (f *fleetRing) serverID(t *testing.T, i int) int {
	t.Helper()
	var id int
	if err := f.ring.AdminDB(i).QueryRowContext(t.Context(), "SELECT @@server_id").Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRingKillWriter: the writer of a ring is killed; the three fleet
// routers end on the same new writer, decided once. The time from the kill
// to every router on the new writer is logged, with the local router's
// time to its own new writer for comparison.
func TestRingKillWriter(t *testing.T) {
	f := startFleetRing(t, ringOptions{})
	cl := f.cl
	if err := f.ring.Kill(0); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	on := make([]time.Duration, len(f.routers))
	var local time.Duration
	var d Decision
	eventually(t, "every router on the decided new writer", func() bool {
		if local == 0 {
			if w := f.local.cluster.Stats().Writer; w != "" && w != f.addrs[0] {
				local = time.Since(killed)
			}
		}
		getJSON(t, cl, WriterKey(f.prefix, "ring"), &d)
		done := d.Epoch == f.epoch+1
		for i, r := range f.routers {
			if on[i] == 0 && d.Epoch == f.epoch+1 && r.cluster.Stats().Writer == d.Writer {
				on[i] = time.Since(killed)
			}
			done = done && on[i] > 0
		}
		return done && local > 0
	})
	all := slices.Max(on)
	t.Logf("writer killed: fleet decision epoch %d → %s (%s) by %s", d.Epoch, d.Writer, d.Cause, d.Decider)
	t.Logf("kill → each fleet router on the new writer: %v; all three: %v; local-mode router: %v (fleet adds %v)",
		on, all.Round(time.Millisecond), local.Round(time.Millisecond), (all - local).Round(time.Millisecond))
	if d.Writer == f.addrs[0] {
		t.Fatalf("decision kept the killed writer: %+v", d)
	}
	// Writes go through on every fleet router, to the new writer.
	want := f.serverID(t, slices.Index(f.addrs, d.Writer))
	for _, r := range f.routers {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		var server int
		if _, err := r.cluster.ExecContext(ctx, "INSERT INTO t (router, server) VALUES (?, @@server_id)", r.user); err != nil {
			t.Errorf("%s: write after the failover: %v", r.user, err)
		} else if err := r.cluster.QueryRowContext(ctx, "SELECT server FROM t WHERE router = ? ORDER BY pk DESC LIMIT 1", r.user).Scan(&server); err != nil || server != want {
			t.Errorf("%s: last write on server %d (%v), want %d", r.user, server, err, want)
		}
		cancel()
	}
}

// TestRingOneSidedCut: router r1 is cut from the writer (node 0) while r2
// and r3 still reach it, for 3 s under a write load on every router. The
// fleet keeps node 0 (no unnecessary failover, r1's writes fail) and no
// write of a fleet router lands anywhere else; the local router "app",
// cut likewise, fails over to node 1 on its own while "app2", another
// local router that is not cut, stays on node 0, for contrast. The
// split-brain window is measured as issue 14 states it: the 100 ms
// windows (of the servers' clocks) in which two different servers
// accepted rows of the same group of routers.
func TestRingOneSidedCut(t *testing.T) {
	f := startFleetRing(t, ringOptions{})
	cl := f.cl
	type result struct{ ok, failed int }
	results := map[string]*result{}
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range append(slices.Clone(f.routers), f.local, f.local2) {
		res := &result{}
		results[r.user] = res
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				_, err := r.cluster.ExecContext(ctx, "INSERT INTO t (router, server) VALUES (?, @@server_id)", r.user)
				cancel()
				mu.Lock()
				if err == nil {
					res.ok++
				} else {
					res.failed++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // pace the failures
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond) // load before the cut
	f.proxies[0].setCut("r1", true)
	f.proxies[0].setCut("app", true)
	cut := time.Now()
	time.Sleep(3 * time.Second) // the cut lasts 3 s: several probe rounds, a lease and more
	var during Decision
	getJSON(t, cl, WriterKey(f.prefix, "ring"), &during)
	var r1View View
	getJSON(t, cl, ViewKey(f.prefix, "ring", "r1"), &r1View)
	f.proxies[0].setCut("r1", false)
	f.proxies[0].setCut("app", false)
	healed := time.Since(cut)
	time.Sleep(500 * time.Millisecond) // load after the heal
	close(stop)
	wg.Wait()

	if during.Writer != f.addrs[0] || during.Epoch != f.epoch {
		t.Errorf("decision during the cut: %+v, want node 0 at epoch %d (r1 alone saw it down)", during, f.epoch)
	}
	if r1View.Nodes[0].State != "down" {
		t.Errorf("r1's view of node 0 during the cut: %+v, want down", r1View.Nodes[0])
	}
	// Where did the rows go? Every node holds every row once the ring has
	// converged.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := f.ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := f.ring.AdminDB(0).QueryContext(ctx, "SELECT router, server, COUNT(*) FROM ringtest.t GROUP BY router, server")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	writer := f.serverID(t, 0)
	byRouter := map[string]map[int]int{}
	for rows.Next() {
		var router string
		var server, n int
		if err := rows.Scan(&router, &server, &n); err != nil {
			t.Fatal(err)
		}
		if byRouter[router] == nil {
			byRouter[router] = map[int]int{}
		}
		byRouter[router][server] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.routers {
		res := results[r.user]
		t.Logf("%s: %d writes ok, %d failed; rows by server id: %v", r.user, res.ok, res.failed, byRouter[r.user])
		for server, n := range byRouter[r.user] {
			if server != writer {
				t.Errorf("%s: %d rows written on server %d, not the writer %d: a second writer", r.user, n, server, writer)
			}
		}
		if byRouter[r.user][writer] == 0 {
			t.Errorf("%s: no write at all on the writer", r.user)
		}
	}
	if results["r1"].failed == 0 {
		t.Error("r1 wrote through a cut")
	}
	second := 0
	for server, n := range byRouter["app"] {
		if server != writer {
			second += n
		}
	}
	t.Logf("cut %v: local-mode router (cut likewise) wrote %d rows on a second writer; rows by server id: %v (writer %d)",
		healed.Round(time.Millisecond), second, byRouter["app"], writer)
	fw, fr := splitBrain(t, f.ring.AdminDB(0), "r1", "r2", "r3")
	lw, lr := splitBrain(t, f.ring.AdminDB(0), "app", "app2")
	t.Logf("split brain in 100 ms windows: etcd mode (r1, r2, r3) %d windows, %d rows; local mode (app, app2) %d windows (%v), %d rows",
		fw, fr, lw, time.Duration(lw)*100*time.Millisecond, lr)
	if fw != 0 {
		t.Errorf("etcd mode: %d windows of 100 ms with rows on two writers, want 0", fw)
	}
}

// splitBrain returns, over the rows written by the routers named, the
// number of 100 ms windows in which two servers or more accepted rows,
// and the number of rows in those windows.
func splitBrain(t *testing.T, db *sql.DB, routers ...string) (windows, rows int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	q := `SELECT COUNT(*), COALESCE(SUM(n), 0) FROM (
		SELECT FLOOR(UNIX_TIMESTAMP(at) * 10) AS w, COUNT(*) AS n FROM ringtest.t
		WHERE router IN ('` + strings.Join(routers, "','") + `')
		GROUP BY w HAVING COUNT(DISTINCT server) > 1) AS split`
	if err := db.QueryRowContext(ctx, q).Scan(&windows, &rows); err != nil {
		t.Fatal(err)
	}
	return windows, rows
}

// userProxy is a userproxy.Proxy closed when the test ends.
type userProxy struct{ *userproxy.Proxy }

func newUserProxy(t testing.TB, target string) *userProxy {
	t.Helper()
	p, err := userproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &userProxy{p}
}

func (p *userProxy) addr() string { return p.Addr() }

// setCut cuts (true) or heals (false) the connections of user.
func (p *userProxy) setCut(user string, cut bool) { p.SetCut(user, cut) }
