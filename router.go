package dbrouter

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

// Router routes calls to named clusters. Open one with Open; it is safe for
// concurrent use.
type Router struct {
	clusters map[string]*Cluster
	names    []string
	log      *slog.Logger
	events   *dispatcher

	closeOnce sync.Once
	closeErr  error
}

// Open validates cfg and builds a Router with one connection pool per node.
// It does no network I/O: connections are made when first used, so Open
// succeeds while servers are down. The caller must Close the router.
func Open(cfg *Config) (*Router, error) {
	if cfg == nil {
		return nil, errors.New("dbrouter: Open: nil *Config")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Router{clusters: make(map[string]*Cluster, len(cfg.Clusters)), log: log, events: newDispatcher(log, cfg.OnEvent)}
	for _, name := range cfg.clusterNames() {
		c, err := newCluster(name, cfg, log, r.events)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.clusters[name] = c
		r.names = append(r.names, name)
	}
	return r, nil
}

func newCluster(name string, cfg *Config, log *slog.Logger, events *dispatcher) (*Cluster, error) {
	cc := cfg.effective(name)
	mc, err := cc.driverConfig()
	if err != nil {
		return nil, fmt.Errorf("dbrouter: cluster %q: %w", name, err)
	}
	c := &Cluster{name: name, settings: cc, log: log.With("cluster", name), events: events}
	for _, a := range cfg.Clusters[name].Nodes {
		addr, err := normalizeAddr(a)
		if err != nil {
			return nil, err // unreachable: Validate checked it
		}
		n, err := newNode(addr, mc, cc, c.log)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	c.initHealth()
	return c, nil
}

// Cluster returns the named cluster, or an error matching ErrUnknownCluster
// that names it.
func (r *Router) Cluster(name string) (*Cluster, error) {
	c, ok := r.clusters[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (configured: %v)", ErrUnknownCluster, name, r.names)
	}
	return c, nil
}

// Clusters returns the configured cluster names, sorted.
func (r *Router) Clusters() []string { return slices.Clone(r.names) }

// Stats returns a snapshot of every cluster's health, in name order.
func (r *Router) Stats() []ClusterStats {
	out := make([]ClusterStats, 0, len(r.names))
	for _, name := range r.names {
		out = append(out, r.clusters[name].Stats())
	}
	return out
}

// Close stops the health probes, closes every node's connection pool and
// delivers the events already queued. Calls made afterwards return
// ErrClosed. Close is idempotent and safe for concurrent use.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		for _, name := range r.names {
			if c := r.clusters[name]; c != nil {
				errs = append(errs, c.close())
			}
		}
		r.events.close()
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}
