package main

import (
	"net"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// configEtcd is a single-member etcd server embedded in the test, on
// loopback ports, with its data in a temporary directory. It can be
// stopped and started again on the same ports and data.
type configEtcd struct {
	t                  *testing.T
	dir                string
	clientURL, peerURL url.URL
	e                  *embed.Etcd
}

// startConfigEtcd starts an embedded etcd, stopped when the test ends.
func startConfigEtcd(t *testing.T) *configEtcd {
	t.Helper()
	s := &configEtcd{t: t, dir: t.TempDir(),
		clientURL: url.URL{Scheme: "http", Host: freeLoopbackAddr(t)},
		peerURL:   url.URL{Scheme: "http", Host: freeLoopbackAddr(t)}}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// freeLoopbackAddr returns a loopback address with a port free now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start starts the server and waits until it serves.
func (s *configEtcd) start() {
	s.t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "fleet-test"
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Quiet: its shutdown logs errors that are none.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true // a test's data need not survive a crash
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		s.t.Fatalf("starting etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		s.t.Fatal("etcd did not become ready within 30s")
	}
	s.e = e
}

// stop stops the server; stopping a stopped server does nothing.
func (s *configEtcd) stop() {
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

// endpoint returns the server's client address, host:port.
func (s *configEtcd) endpoint() string { return s.clientURL.Host }

// client returns a client of the server, closed when the test ends.
func (s *configEtcd) client() *clientv3.Client {
	s.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{s.endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cli.Close() })
	return cli
}
