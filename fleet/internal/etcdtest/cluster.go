package etcdtest

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.etcd.io/etcd/server/v3/embed"
)

// Cluster is an etcd cluster of several members embedded in the test (one
// process, loopback ports, data in temporary directories). A member can be
// killed — stopped at once, without handing its leadership over, as a
// crash does — and started again on its ports and data.
type Cluster struct {
	t       testing.TB
	mu      sync.Mutex
	members []*member
}

type member struct {
	name               string
	dir                string
	clientURL, peerURL url.URL
	e                  *embed.Etcd // nil while stopped
}

// StartCluster starts an etcd cluster of n members and waits until every
// member serves; it is killed when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	dir := t.TempDir()
	for i := range n {
		c.members = append(c.members, &member{
			name:      fmt.Sprintf("m%d", i),
			dir:       filepath.Join(dir, fmt.Sprintf("m%d", i)),
			clientURL: url.URL{Scheme: "http", Host: FreeLoopbackAddr(t)},
			peerURL:   url.URL{Scheme: "http", Host: FreeLoopbackAddr(t)},
		})
	}
	// Every member first: a member is ready only once a quorum has
	// elected a leader.
	es := make([]*embed.Etcd, n)
	for i := range n {
		es[i] = startEmbed(t, c.config(i))
		c.members[i].e = es[i]
	}
	t.Cleanup(c.KillAll)
	for _, e := range es {
		waitReady(t, e)
	}
	return c
}

// config returns member i's configuration.
func (c *Cluster) config(i int) *embed.Config {
	m := c.members[i]
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cfg.ListenClientUrls = []url.URL{m.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{m.clientURL}
	cfg.ListenPeerUrls = []url.URL{m.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{m.peerURL}
	var peers []string
	for _, o := range c.members {
		peers = append(peers, o.name+"="+o.peerURL.String())
	}
	cfg.InitialCluster = strings.Join(peers, ",")
	cfg.InitialClusterToken = "fleet-test-cluster"
	cfg.TickMs, cfg.ElectionMs = 50, 500 // a new leader within about a second
	return cfg
}

// Len returns the number of members.
func (c *Cluster) Len() int { return len(c.members) }

// Endpoints returns every member's client address, host:port.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL.Host)
	}
	return eps
}

// Endpoint returns member i's client address, host:port.
func (c *Cluster) Endpoint(i int) string { return c.members[i].clientURL.Host }

// Leader returns the index of the member that a running member knows as
// the leader, or -1 when none is known (no quorum, or an election under
// way).
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.e == nil {
			continue
		}
		lead := m.e.Server.Lead()
		for j, o := range c.members {
			if o.e != nil && uint64(o.e.Server.MemberID()) == lead {
				return j
			}
		}
	}
	return -1
}

// Kill stops member i at once: its raft node stops without handing its
// leadership over (the others elect a leader after the election timeout,
// as after a crash), then its listeners close. Killing a stopped member
// does nothing.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	m := c.members[i]
	e := m.e
	m.e = nil
	c.mu.Unlock()
	if e != nil {
		e.Server.HardStop()
		e.Close()
	}
}

// KillAll kills every member.
func (c *Cluster) KillAll() {
	for i := range c.members {
		c.Kill(i)
	}
}

// Start starts member i again on its ports and data. It does not wait
// until the member serves, which needs a quorum: see WaitReady.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	c.mu.Lock()
	running := c.members[i].e != nil
	c.mu.Unlock()
	if running {
		return
	}
	e := startEmbed(c.t, c.config(i))
	c.mu.Lock()
	c.members[i].e = e
	c.mu.Unlock()
}

// WaitReady waits until every running member serves.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	c.mu.Lock()
	var es []*embed.Etcd
	for _, m := range c.members {
		if m.e != nil {
			es = append(es, m.e)
		}
	}
	c.mu.Unlock()
	for _, e := range es {
		waitReady(c.t, e)
	}
}
