// Package etcdtest runs etcd embedded in a test — a single-member server
// (Start) or a cluster of several members (StartCluster) — on loopback
// ports, with its data in the test's temporary directory: for the fleet
// module's tests and its demo.
package etcdtest

import (
	"fmt"
	"math/rand"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is a single-member etcd server embedded in the test, on
// loopback ports, with its data in a temporary directory. It can be
// stopped and started again on the same ports and data.
type Server struct {
	t                  testing.TB
	dir                string
	clientURL, peerURL url.URL
	mu                 sync.Mutex
	e                  *embed.Etcd
}

// Start starts an embedded etcd, stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir(),
		clientURL: url.URL{Scheme: "http", Host: FreeLoopbackAddr(t)},
		peerURL:   url.URL{Scheme: "http", Host: FreeLoopbackAddr(t)}}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// FreeLoopbackAddr returns a loopback address with a port free now, below
// the kernel's ephemeral range, and never the same twice in one process.
// A port from the ephemeral range (what "127.0.0.1:0" gives) can be taken,
// between this call and etcd's bind, by the local end of any outgoing
// connection or by a port Docker publishes: a fresh-clone CI run failed
// that way ("bind: address already in use").
func FreeLoopbackAddr(t testing.TB) string {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	low := ephemeralLow()
	const first = 10000
	if low > first+1000 {
		for range 200 {
			port := first + portRand.Intn(low-first)
			if portsGiven[port] {
				continue
			}
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				continue
			}
			l.Close()
			portsGiven[port] = true
			return l.Addr().String()
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var (
	portMu     sync.Mutex
	portsGiven = map[int]bool{}
	portRand   = rand.New(rand.NewSource(time.Now().UnixNano()))
)

// ephemeralLow returns the first port of the kernel's ephemeral range
// (32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var low, high int
	if _, err := fmt.Sscan(string(b), &low, &high); err != nil || low <= 0 {
		return 32768
	}
	return low
}

// Start starts the server (again, after Stop, on the same ports and data)
// and waits until it serves.
func (s *Server) Start() {
	s.t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "fleet-test"
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.TickMs, cfg.ElectionMs = 50, 500 // leases down to about 1 s
	e := startEmbed(s.t, cfg)
	waitReady(s.t, e)
	s.mu.Lock()
	s.e = e
	s.mu.Unlock()
}

// startEmbed starts an embedded etcd on cfg, quiet and without fsync,
// retrying while its ports are still held by a server just stopped; it
// does not wait until the server serves.
func startEmbed(t testing.TB, cfg *embed.Config) *embed.Etcd {
	t.Helper()
	// Quiet: its shutdown logs errors that are none.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true // a test's data need not survive a crash
	var e *embed.Etcd
	var err error
	for range 20 { // the ports of a server just stopped may take a moment
		if e, err = embed.StartEtcd(cfg); err == nil {
			return e
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("starting etcd %s: %v", cfg.Name, err)
	return nil
}

// waitReady waits until e serves, failing the test after 30 s.
func waitReady(t testing.TB, e *embed.Etcd) {
	t.Helper()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatalf("etcd %s did not become ready within 30s", e.Config().Name)
	}
}

// Stop stops the server; stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	e := s.e
	s.e = nil
	s.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Endpoint returns the server's client address, host:port.
func (s *Server) Endpoint() string { return s.clientURL.Host }

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client() *clientv3.Client {
	s.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{s.Endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cli.Close() })
	return cli
}
