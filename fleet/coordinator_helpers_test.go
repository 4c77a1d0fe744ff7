package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/dbrouter/dbrouter/fleet/internal/etcdtest"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// What the coordinator's tests share: an embedded etcd server on loopback
// ports in a temporary directory, clients (direct or through a proxy the
// test can blackhole), and fake routers: a Coordinator watching one
// cluster with a fake WriterSink whose view the test sets.

// testTTL is the lease of the tests' coordinators: etcd's minimum with
// the test server's timing (50 ms ticks), doubled for slow machines.
const testTTL = 2 * time.Second

// Every wait for a state polls its condition every tick for at most
// waitFor; no test sleeps to wait for a state.
const (
	tick    = 10 * time.Millisecond
	waitFor = 30 * time.Second
)

// eventually waits until cond holds, failing the test after waitFor.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(tick)
	}
}

// testEtcd is an embedded single-member etcd server that a test can stop
// and start again (same data, same ports). Clients reach it through a
// proxy (endpoints), so that stopping it drops their connections at once,
// as a crash does (etcd's own Close drains them gracefully for seconds).
type testEtcd struct {
	*etcdtest.Server
	front     *blackhole
	endpoints []string
}

// startEtcd starts an embedded etcd on free loopback ports, stopped when
// the test ends, behind a front that can cut its clients off at once.
func startEtcd(t testing.TB) *testEtcd {
	t.Helper()
	te := &testEtcd{Server: etcdtest.Start(t)}
	te.front = newBlackhole(t, te.Endpoint())
	te.endpoints = []string{te.front.addr()}
	return te
}

// crash makes the server unreachable at once (clients' connections
// dropped, new ones closed), then stops it.
func (te *testEtcd) crash() {
	te.front.setDown(true)
	te.Stop()
}

// restart starts the server again after crash and lets clients in.
func (te *testEtcd) restart() {
	te.Start()
	te.front.setDown(false)
}

// testCluster is an embedded etcd cluster of several members, each behind
// a front that drops its clients' connections at once when it is killed.
type testCluster struct {
	*etcdtest.Cluster
	fronts    []*blackhole
	endpoints []string // the fronts' addresses, one per member
}

// startCluster starts an embedded etcd cluster of n members, killed when
// the test ends, each behind a front.
func startCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	tc := &testCluster{Cluster: etcdtest.StartCluster(t, n)}
	for i := range n {
		f := newBlackhole(t, tc.Endpoint(i))
		tc.fronts = append(tc.fronts, f)
		tc.endpoints = append(tc.endpoints, f.addr())
	}
	return tc
}

// crash makes member i unreachable at once and kills it.
func (tc *testCluster) crash(i int) {
	tc.fronts[i].setDown(true)
	tc.Kill(i)
}

// restart starts member i again and lets clients in.
func (tc *testCluster) restart(i int) {
	tc.Start(i)
	tc.fronts[i].setDown(false)
}

func freeAddr(t testing.TB) string { return etcdtest.FreeLoopbackAddr(t) }

// newClient returns a client of the servers at endpoints (a server's own
// or a proxy's), closed when the test ends.
func newClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		// Reconnect within half a second of etcd coming back (gRPC's
		// default backoff grows to two minutes).
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// testLogger logs to the test's output at level Info (Debug with -v is
// too much for two cores).
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fakeSink is a cluster's WriterSink: it records the decisions applied
// (refusing older epochs, as a router does) and returns the view the test
// sets.
type fakeSink struct {
	mu        sync.Mutex
	stats     dbrouter.ClusterStats
	decisions []dbrouter.WriterDecision
	epoch     uint64
}

func (s *fakeSink) Decide(d dbrouter.WriterDecision) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.Epoch < s.epoch {
		return fmt.Errorf("epoch %d older than %d", d.Epoch, s.epoch)
	}
	s.epoch = d.Epoch
	s.decisions = append(s.decisions, d)
	return nil
}

func (s *fakeSink) Stats() dbrouter.ClusterStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Nodes = slices.Clone(st.Nodes)
	return st
}

// set sets the view: the writer this router uses and each node's health.
func (s *fakeSink) set(writer string, nodes ...dbrouter.NodeStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = dbrouter.ClusterStats{Name: "c", Writer: writer, Nodes: nodes}
}

// last returns the last decision applied.
func (s *fakeSink) last() (dbrouter.WriterDecision, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.decisions) == 0 {
		return dbrouter.WriterDecision{}, false
	}
	return s.decisions[len(s.decisions)-1], true
}

// all returns the decisions applied, in order.
func (s *fakeSink) all() []dbrouter.WriterDecision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.decisions)
}

// count returns how many decisions were applied.
func (s *fakeSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.decisions)
}

// has reports whether the last decision names writer at epoch.
func (s *fakeSink) has(writer string, epoch uint64) bool {
	d, ok := s.last()
	return ok && d.Writer == writer && d.Epoch == epoch && !d.Refuse
}

// Node views for fakeSink.set: probed (a latency), at a position.
func up(addr, gtid string) dbrouter.NodeStats {
	return dbrouter.NodeStats{Addr: addr, State: dbrouter.StateUp, LastProbeLatency: time.Millisecond, GTIDPosition: gtid}
}

func readOnly(addr, gtid string) dbrouter.NodeStats {
	n := up(addr, gtid)
	n.ReadOnly = true
	return n
}

func down(addr string) dbrouter.NodeStats {
	return dbrouter.NodeStats{Addr: addr, State: dbrouter.StateDown, LastProbeLatency: time.Millisecond,
		ConsecutiveFailures: 2, LastError: "connection refused"}
}

func unprobed(addr string) dbrouter.NodeStats {
	return dbrouter.NodeStats{Addr: addr, State: dbrouter.StateUp}
}

var testNodes = []string{"n0:3306", "n1:3306", "n2:3306"}

// fakeRouter is a Coordinator watching cluster "c" (testNodes) for a fake
// router.
type fakeRouter struct {
	id    string
	coord *Coordinator
	sink  *fakeSink
	stop  func()
}

// newFakeRouter starts a coordinator on cl with the given view of "c",
// closed when the test ends.
func newFakeRouter(t testing.TB, cl *clientv3.Client, prefix, id string, opts Options, view ...dbrouter.NodeStats) *fakeRouter {
	t.Helper()
	opts.Prefix, opts.RouterID = prefix, id
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = testTTL
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	c, err := New(cl, opts)
	if err != nil {
		t.Fatal(err)
	}
	c.viewPoll = 20 * time.Millisecond
	r := &fakeRouter{id: id, coord: c, sink: &fakeSink{}}
	r.sink.set("", view...)
	r.stop = c.Watch("c", testNodes, r.sink)
	t.Cleanup(func() {
		r.stop()
		c.Close()
	})
	return r
}

// mustJSON encodes v.
func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// getJSON reads key into v; it reports whether the key exists.
func getJSON(t testing.TB, cl *clientv3.Client, key string, v any) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cl.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return false
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return true
}

// decision reads cluster c's decision (zero when absent) and its key's mod
// revision.
func decision(t testing.TB, cl *clientv3.Client, prefix string) (Decision, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cl.Get(ctx, WriterKey(prefix, "c"))
	if err != nil {
		t.Fatal(err)
	}
	var d Decision
	if len(resp.Kvs) == 0 {
		return d, 0
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &d); err != nil {
		t.Fatal(err)
	}
	return d, resp.Kvs[0].ModRevision
}

// deciders returns the routers that think they are the decider.
func deciders(rs ...*fakeRouter) []string {
	var ids []string
	for _, r := range rs {
		if r.coord.IsDecider() {
			ids = append(ids, r.id)
		}
	}
	return ids
}

// blackhole is a TCP proxy to one address that the test can cut: while
// cut, connections (open or new) hang, nothing is relayed or closed, as on
// a network partition; healing resumes relaying.
type blackhole struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool // drop every connection: the target is gone
	cut    bool
	healed chan struct{}
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newBlackhole(t testing.TB, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target, healed: make(chan struct{}), conns: map[net.Conn]bool{}}
	close(b.healed)
	b.wg.Go(b.accept)
	t.Cleanup(b.close)
	return b
}

func (b *blackhole) addr() string { return b.ln.Addr().String() }

func (b *blackhole) setCut(cut bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cut == b.cut {
		return
	}
	b.cut = cut
	if cut {
		b.healed = make(chan struct{})
	} else {
		close(b.healed)
	}
}

// pass waits while cut; false once closed.
func (b *blackhole) pass() bool {
	b.mu.Lock()
	healed, conns := b.healed, b.conns
	b.mu.Unlock()
	<-healed
	return conns != nil
}

// setDown drops every connection and, while down, closes new ones at
// once, as a host whose server process died.
func (b *blackhole) setDown(down bool) {
	b.mu.Lock()
	b.down = down
	var conns []net.Conn
	if down {
		for c := range b.conns {
			conns = append(conns, c)
		}
	}
	b.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (b *blackhole) track(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conns == nil || b.down {
		return false
	}
	b.conns[c] = true
	return true
}

func (b *blackhole) accept() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		if !b.track(c) {
			c.Close()
			b.mu.Lock()
			closed := b.conns == nil
			b.mu.Unlock()
			if closed {
				return
			}
			continue
		}
		b.wg.Go(func() { b.serve(c) })
	}
}

func (b *blackhole) serve(client net.Conn) {
	defer b.untrack(client)
	if !b.pass() {
		return
	}
	server, err := net.DialTimeout("tcp", b.target, 2*time.Second)
	if err != nil {
		return
	}
	if !b.track(server) {
		server.Close()
		return
	}
	defer b.untrack(server)
	done := make(chan struct{}, 2)
	relay := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if !b.pass() {
					break
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				b.pass()
				break
			}
		}
		done <- struct{}{}
	}
	go relay(server, client)
	go relay(client, server)
	<-done
	client.Close()
	server.Close()
	<-done
}

func (b *blackhole) untrack(c net.Conn) {
	b.mu.Lock()
	if b.conns != nil {
		delete(b.conns, c)
	}
	b.mu.Unlock()
	c.Close()
}

func (b *blackhole) close() {
	b.mu.Lock()
	conns := b.conns
	b.conns = nil
	if b.cut {
		b.cut = false
		close(b.healed)
	}
	b.mu.Unlock()
	b.ln.Close()
	for c := range conns {
		c.Close()
	}
	b.wg.Wait()
}
