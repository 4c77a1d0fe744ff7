package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Adversarial review of the stall checks and the probe scheduler (issue 17,
// merge dc9c82b): each test names the failure mode it forces.

// review8Health is the health configuration of these tests: the default
// probe timeout (stall checks after 50 ms) and a probe interval long
// enough that only stall checks explain a quick verdict.
func review8Health() Settings {
	return Settings{Health: HealthConfig{Interval: 2 * time.Second, Timeout: 200 * time.Millisecond, FailAfter: 3}}
}

// TestStallFrozenWriterOutcomeUnknown freezes the writer of a fake cluster
// under a write (new connections and statements get no answer): the stall
// check must take it Down well before the probes would (FailAfter 3 at a
// 2 s interval), the stuck write must come back as ErrOutcomeUnknown and
// never be retried on the next node, and the next write must go there.
func TestStallFrozenWriterOutcomeUnknown(t *testing.T) {
	released := make(chan struct{})
	var once sync.Once
	onEvent := func(ev Event) {
		if ev.Kind == EventState && ev.Node == "a:3306" && ev.To == "down" {
			once.Do(func() { close(released) })
		}
	}
	c, srv := newFakeClusterWithProbes(t, 3, review8Health(), onEvent)
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	frozen := func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-released: // the router closed the connections: they break
			return mysql.ErrInvalidConn
		}
	}
	srv[0].set(func(s *fakeServer) {
		s.connectFn = frozen
		s.execFn = func(ctx context.Context, _ string) error { return frozen(ctx) }
	})
	var elsewhere atomic.Int64
	for _, o := range srv[1:] {
		o.set(func(s *fakeServer) {
			s.execFn = func(_ context.Context, q string) error {
				if q == "INSERT INTO t VALUES (2)" {
					elsewhere.Add(1)
				}
				return nil
			}
		})
	}
	start := time.Now()
	_, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)")
	took := time.Since(start)
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("stuck write: err = %v, want ErrOutcomeUnknown", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the stuck write was retried elsewhere: %d times on b and c", n)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("stuck write released after %v: the stall check did not act", took)
	}
	t.Logf("stuck write released after %v", took)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatalf("next write: %v", err)
	}
	if got := c.pick.Load().writer; got != 1 {
		t.Errorf("next write: writer %d, want 1 (b)", got)
	}
}

// TestStallStormBounded parks 1,000 calls at once on a writer that is
// healthy but slow to run them (600 ms each): every call must succeed on
// that writer (no false alarm, no write abandoned), and the stall checks
// must stay within their bounds: at most one new connection at a time per
// node, started at most every 50 ms (so about a dozen in 600 ms, not one
// per waiting call).
func TestStallStormBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 goroutines")
	}
	var events atomic.Int64
	c, srv := newFakeClusterWithProbes(t, 3, review8Health(), func(ev Event) {
		if ev.Node == "a:3306" && ev.Kind == EventState {
			events.Add(1)
			t.Logf("event on a: %s → %s (%s)", ev.From, ev.To, ev.Cause)
		}
	})
	// Count the connections opened through the probe connector: the
	// probe connection's own (once) and the stall checks' handshakes.
	hs := &countingConnector{Connector: c.nodes[0].probe.connector}
	c.nodes[0].probe.connector = hs
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var wrote [3]atomic.Int64
	for k, o := range srv {
		o.set(func(s *fakeServer) {
			s.execFn = func(context.Context, string) error { return nil }
			if k > 0 {
				s.execFn = func(_ context.Context, q string) error {
					if q == "UPDATE t SET v = v + 1" {
						wrote[k].Add(1)
					}
					return nil
				}
			}
		})
	}
	srv[0].set(func(s *fakeServer) {
		s.connectFn = func(context.Context) error {
			time.Sleep(5 * time.Millisecond)
			return nil
		}
		s.execFn = func(ctx context.Context, q string) error {
			if q == probeMariaDB || q == probeVersion {
				return nil
			}
			select {
			case <-time.After(600 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	hs0 := hs.connects.Load()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.ExecContext(ctx, "UPDATE t SET v = v + 1"); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	took := time.Since(start)
	handshakes := hs.connects.Load() - hs0
	t.Logf("1,000 calls in %v: %d stall handshakes, at most %d at once, %d state changes of a",
		took, handshakes, hs.max.Load(), events.Load())
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of 1,000 calls on a healthy slow writer failed; first: %v", n, firstErr.Load())
	}
	if n := wrote[1].Load() + wrote[2].Load(); n != 0 {
		t.Errorf("%d writes went to b or c: the slow writer was demoted", n)
	}
	if n := events.Load(); n != 0 {
		t.Errorf("%d state changes of a healthy slow writer", n)
	}
	if m := hs.max.Load(); m > 1 {
		t.Errorf("%d stall handshakes at once on one node, want at most 1", m)
	}
	// 600 ms of waiting (more with 1,000 goroutines on a loaded machine)
	// at one check per 50 ms: generous bound 4x.
	if limit := int64(4 * (took/(50*time.Millisecond) + 1)); handshakes > limit {
		t.Errorf("%d stall handshakes in %v, want at most %d", handshakes, took, limit)
	}
}

// TestStallClientLateNotDown is the client's fault, not the server's: the
// process was starved (a VM pause, cgroup CPU throttling, SIGSTOP of the
// client) so that the probe and the stall check's new connection both
// "timed out" together, each waking up long past its deadline although the
// server may have answered in time. A wait that ended far later than the
// probe timeout says the client was not running, not that the server is
// silent: it must not take a healthy writer Down (which would move the
// writer, or, in a fleet, report a healthy writer dead).
func TestStallClientLateNotDown(t *testing.T) {
	timeout := 200 * time.Millisecond
	m := newMachine(t, 3, Settings{Health: HealthConfig{Timeout: timeout, Interval: 250 * time.Millisecond}})
	m.round("1-1-5", "1-1-5", "1-1-5")
	m.wantWriter(0)
	base := m.now.Add(time.Second)
	errTimeout := context.DeadlineExceeded
	// The client stopped from +20 ms to +900 ms: both waits end at +900.
	m.now = base.Add(900 * time.Millisecond)
	m.record(m.s.probeResult(0, probeResult{err: errTimeout, started: base, noAnswer: true}, m.now))
	m.record(m.s.handshakeResult(0, base.Add(10*time.Millisecond), errTimeout, true, m.now))
	if got := m.s.health[0].state; got == StateDown {
		t.Fatalf("a writer whose probe and handshake ended 700 ms past their deadline (client starved) is Down; events %v", m.evs)
	}
	m.wantWriter(0)
	// Waits that ended on time still count: the rule is unchanged.
	base = m.now.Add(time.Second)
	m.now = base.Add(210 * time.Millisecond)
	m.record(m.s.probeResult(0, probeResult{err: errTimeout, started: base, noAnswer: true}, m.now))
	m.now = base.Add(260 * time.Millisecond)
	m.record(m.s.handshakeResult(0, base.Add(50*time.Millisecond), errTimeout, true, m.now))
	if got := m.s.health[0].state; got != StateDown {
		t.Fatalf("on-time unanswered probe and handshake: state %s, want down", got)
	}
}

// TestStallDogStopsWhenIdle checks the per-node stall watch: no timer runs
// on an idle node, however many calls it has run, and a Close leaves no
// goroutine behind.
func TestStallDogStopsWhenIdle(t *testing.T) {
	before := runtime.NumGoroutine()
	c, _ := newFakeClusterWithProbes(t, 3, review8Health(), nil)
	ctx := testCtx(t)
	for range 100 {
		if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for c.dogs[0].armed.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the stall watch of an idle node still ticks after 2 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.close()
	c.events.close()
	deadline = time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countingConnector counts the connections it opens and how many were
// being opened at once at most.
type countingConnector struct {
	driver.Connector
	connects, in, max atomic.Int64
}

func (cc *countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	cc.connects.Add(1)
	n := cc.in.Add(1)
	defer cc.in.Add(-1)
	for m := cc.max.Load(); n > m && !cc.max.CompareAndSwap(m, n); m = cc.max.Load() {
	}
	return cc.Connector.Connect(ctx)
}

// TestProbeWorkersShrink hangs 200 single-node clusters' probes on one
// scheduler, which then runs its maximum of workers, and lets the nodes
// answer again: the workers no longer needed must end, not stay parked
// for the router's lifetime.
func TestProbeWorkersShrink(t *testing.T) {
	sched := newProbeScheduler()
	t.Cleanup(sched.close) // after the clusters' own cleanups: registered first
	set := Settings{Health: HealthConfig{Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, FailAfter: 2}}
	var hanging atomic.Bool
	hanging.Store(true)
	hang := func(ctx context.Context, q string) error {
		if hanging.Load() {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	var clusters []*Cluster
	for range 200 {
		c, servers := newFakeClusterWithProbes(t, 1, set, nil)
		c.sched = sched
		servers[0].set(func(s *fakeServer) { s.execFn = hang })
		clusters = append(clusters, c)
	}
	for _, c := range clusters {
		c.startProbers()
	}
	deadline := time.Now().Add(10 * time.Second)
	for sched.goroutines() < maxProbeWorkers+1 {
		if time.Now().After(deadline) {
			t.Fatalf("scheduler reached %d goroutines, want %d while 200 nodes hang", sched.goroutines(), maxProbeWorkers+1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	hanging.Store(false)
	peak := sched.goroutines()
	deadline = time.Now().Add(5 * time.Second)
	for sched.goroutines() > 4*spareProbeWorkers {
		if time.Now().After(deadline) {
			t.Fatalf("scheduler still runs %d goroutines (peak %d) 5 s after every node answers quickly", sched.goroutines(), peak)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("goroutines: peak %d, then %d", peak, sched.goroutines())
	// The survivors keep every node probed.
	time.Sleep(300 * time.Millisecond)
	for _, c := range clusters {
		if st := c.Stats().Nodes[0]; st.State == StateDown || st.LastProbeLatency > 50*time.Millisecond && st.State != StateUp {
			t.Errorf("%s: %s after the nodes answer again (last error %q)", c.name, st.State, st.LastError)
		}
	}
}

// TestStallSaturatedWriterStays is a healthy writer too loaded to answer
// within the probe timeout (a MariaDB thread pool whose groups are all busy
// with CPU-bound statements: new connections and the probe wait for a
// thread up to thread_pool_stall_limit, 500 ms by default; a CPU-starved
// host): its handshakes and probes answer, but after 300 ms. A long write
// runs meanwhile. The writer should keep its role and the write should
// end well; the stall check instead finds "no answer at all" (both waits
// ran out of the 200 ms timeout together) and takes the writer Down: in a
// real ring its connections, the long write's included, are closed
// (outcome unknown on a healthy server) and the writer moves.
func TestStallSaturatedWriterStays(t *testing.T) {
	t.Skip("defect left: a writer slower than the probe timeout on both the probe and a new connection is taken Down by the stall check (docs/health.md, Stall checks)")
	var downs atomic.Int64
	c, srv := newFakeClusterWithProbes(t, 3, review8Health(), func(ev Event) {
		if ev.Kind == EventState && ev.Node == "a:3306" && ev.To == "down" {
			downs.Add(1)
			t.Logf("a down: %s", ev.Cause)
		}
	})
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	slow := func(ctx context.Context, d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	srv[0].set(func(s *fakeServer) {
		s.connectFn = func(ctx context.Context) error { return slow(ctx, 300*time.Millisecond) }
		s.execFn = func(ctx context.Context, q string) error {
			if q == probeMariaDB || q == probeVersion {
				return slow(ctx, 300*time.Millisecond)
			}
			return slow(ctx, 800*time.Millisecond)
		}
	})
	if _, err := c.ExecContext(ctx, "UPDATE t SET v = v + 1"); err != nil {
		t.Fatalf("long write on a loaded writer: %v", err)
	}
	if n := downs.Load(); n != 0 {
		t.Fatalf("a loaded but answering writer went Down %d time(s); stats %+v", n, c.Stats().Nodes[0])
	}
	if w := c.pick.Load().writer; w != 0 {
		t.Fatalf("writer %d, want 0", w)
	}
}

// silentServer is a loopback TCP server that accepts connections and never
// answers (a frozen server whose kernel still completes the TCP
// handshake). It counts the connections open on its side, and lists the
// peers it accepted, in the order it accepted them.
type silentServer struct {
	ln             net.Listener
	accepted, open atomic.Int64
	maxOpen        atomic.Int64
	wg             sync.WaitGroup

	mu    sync.Mutex
	peers []string // remote addresses, in the order accepted
}

// acceptedAfter returns the peers accepted after peer, and whether peer
// was accepted at all.
func (s *silentServer) acceptedAfter(peer string) ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.peers, peer)
	if i < 0 {
		return nil, false
	}
	return slices.Clone(s.peers[i+1:]), true
}

func newSilentServer(t *testing.T) *silentServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.peers = append(s.peers, conn.RemoteAddr().String())
			s.mu.Unlock()
			s.accepted.Add(1)
			n := s.open.Add(1)
			for m := s.maxOpen.Load(); n > m && !s.maxOpen.CompareAndSwap(m, n); m = s.maxOpen.Load() {
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				io.Copy(io.Discard, conn) // until the client closes
				conn.Close()
				s.open.Add(-1)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// TestStallSilentServerNoLeak sends 50 concurrent calls to a router whose
// only node accepts TCP connections and never answers: the stall checks'
// handshakes must be bounded (the connections open on the server at once
// stay within the pool's max_open_conns plus the probe and one
// handshake), every connection the router opened must be closed by
// Router.Close, no connection may be opened after it, and no goroutine may
// outlive it.
func TestStallSilentServerNoLeak(t *testing.T) {
	srv := newSilentServer(t)
	before := runtime.NumGoroutine()
	const maxOpen = 5
	r, err := Open(&Config{
		Defaults: Settings{User: "app", MaxOpenConns: maxOpen, ConnectTimeout: time.Second,
			Health: HealthConfig{Interval: time.Second, Timeout: 200 * time.Millisecond}},
		Clusters: map[string]ClusterConfig{"c": {Nodes: []string{srv.ln.Addr().String()}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := r.Cluster("c")
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			c.QueryContext(ctx, "SELECT 1")
		}()
	}
	wg.Wait()
	if m := srv.maxOpen.Load(); m > 2*maxOpen+3 {
		t.Errorf("%d connections open at once on a silent server, want at most %d (2 pools × max_open_conns, the probe, one stall handshake)", m, 2*maxOpen+3)
	}
	if err := r.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	// A dial that Close cut short may have completed in the kernel before
	// Close returned and reach the server's Accept later, much later on a
	// loaded machine. A connection the test opens now queues behind every
	// connection established before it: once the server has accepted it,
	// it has accepted all of the router's made before Close returned, and
	// any accepted after it was opened after Close.
	marker, err := net.Dial("tcp", srv.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer marker.Close()
	mark := marker.LocalAddr().String()
	// waitFor waits for cond, failing with what cond says when false.
	waitFor := func(cond func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for ok, what := cond(); !ok; ok, what = cond() {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Fatalf("%s after Router.Close; goroutines:\n%s", what, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(func() (bool, string) {
		_, ok := srv.acceptedAfter(mark)
		return ok, "the test's connection not accepted"
	})
	waitFor(func() (bool, string) {
		n := srv.open.Load() - 1 // the test's
		return n == 0, fmt.Sprintf("%d connections still open on the server", n)
	})
	time.Sleep(300 * time.Millisecond)
	if after, _ := srv.acceptedAfter(mark); len(after) != 0 {
		t.Errorf("%d connections opened after Router.Close", len(after))
	}
	accepted := srv.accepted.Load() - 1
	marker.Close()
	waitFor(func() (bool, string) {
		return srv.open.Load() == 0, "the test's connection still open on the server"
	})
	waitFor(func() (bool, string) {
		// +2: server copiers that have counted their connection closed
		// but not returned yet.
		n := runtime.NumGoroutine()
		return n <= before+2, fmt.Sprintf("%d goroutines, %d before", n, before)
	})
	t.Logf("accepted %d connections in all, at most %d open at once", accepted, srv.maxOpen.Load())
}

// TestStallQueuedCallsReleased parks 12 calls on a node that accepts TCP
// connections and never answers, with max_open_conns 2: two calls wait
// for their connection's handshake, ten wait in database/sql's queue for a
// connection. Once the stall check takes the node Down (about 250 ms),
// every call should be released soon after, not one wave of max_open_conns
// per connect_timeout (the queue opening new connections to the Down
// node, each waiting out connect_timeout).
func TestStallQueuedCallsReleased(t *testing.T) {
	srv := newSilentServer(t)
	r, err := Open(&Config{
		Defaults: Settings{User: "app", MaxOpenConns: 2, ConnectTimeout: time.Second,
			Health: HealthConfig{Interval: 5 * time.Second, Timeout: 200 * time.Millisecond}},
		Clusters: map[string]ClusterConfig{"c": {Nodes: []string{srv.ln.Addr().String()}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	c, _ := r.Cluster("c")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	// The first round: a probe that times out leaves the node Suspect.
	c.Stats()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var took []time.Duration
	start := time.Now()
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.QueryContext(ctx, "SELECT 1")
			mu.Lock()
			took = append(took, time.Since(start).Round(time.Millisecond))
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(took)
	t.Logf("calls returned after %v; node %s", took, c.Stats().Nodes[0].State)
	if last := took[len(took)-1]; last > 2*time.Second {
		t.Errorf("the last queued call returned after %v (calls returned after %v)", last, took)
	}
}
