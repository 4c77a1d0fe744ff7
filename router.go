package dbrouter

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"
)

// Router routes calls to named clusters, directly by name or through named
// shard maps. Open one with Open; it is safe for concurrent use, and
// Reload replaces its clusters and shard maps while calls go on.
type Router struct {
	table  atomic.Pointer[routeTable]
	log    *slog.Logger
	events *dispatcher
	source WriterSource    // Open's Config.WriterSource, for every cluster built
	obs    Observer        // Open's Config.Observer, nil for none
	probes *probeScheduler // runs every cluster's health probes

	reloadMu sync.Mutex            // serialises Reload and Close
	retiring sync.WaitGroup        // clusters draining after a Reload
	draining map[*Cluster]struct{} // those clusters; under reloadMu
	closed   bool                  // under reloadMu
	done     chan struct{}         // closed by Close, with closed; ends WatchConfigFile

	closeOnce sync.Once
	closeErr  error
}

// routeTable is an immutable snapshot of what the router routes to.
type routeTable struct {
	plan     *plan // the configuration compiled, to compare the next Reload with
	clusters map[string]*Cluster
	names    []string // sorted
	maps     map[string]ShardMap
	mapNames []string // sorted
}

// Open validates cfg and builds a Router with one connection pool per node.
// It does no network I/O: connections are made when first used, so Open
// succeeds while servers are down. The caller must Close the router. Open
// validates and keeps a deep copy of cfg (see Config.Clone): changes to cfg
// after Open returns have no effect until cfg is passed to Reload.
func Open(cfg *Config) (*Router, error) { return open(cfg, os.ReadFile) }

// open is Open with the function that reads TLS files.
func open(cfg *Config, readFile func(name string) ([]byte, error)) (*Router, error) {
	if cfg == nil {
		return nil, errors.New("dbrouter: Open: nil *Config")
	}
	p, err := compileForOpen(cfg, readFile)
	if err != nil {
		return nil, err
	}
	log := p.cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Router{log: log, events: newDispatcher(log, p.cfg.OnEvent), source: p.cfg.WriterSource, obs: p.cfg.Observer, done: make(chan struct{}),
		probes: newProbeScheduler()}
	t, _, err := r.buildTable(p, nil)
	if err != nil {
		r.events.close()
		return nil, err
	}
	r.table.Store(t)
	return r, nil
}

// compileForOpen compiles a copy of cfg, or, when cfg is as ParseConfig
// returned it, compiles a copy of its shard maps only and takes its
// cluster plans from ParseConfig (see lastParsed).
func compileForOpen(cfg *Config, readFile func(name string) ([]byte, error)) (*plan, error) {
	p := parsedPlan(cfg)
	if p == nil {
		return cfg.Clone().compile(nil, readFile)
	}
	// What compile would give for this copy: its clusters compiled as
	// ParseConfig compiled them, its shard maps built here.
	cp := &Config{Clusters: cfg.Clusters, ShardMaps: cloneShardMaps(cfg.ShardMaps),
		Logger: cfg.Logger, OnEvent: cfg.OnEvent, WriterSource: cfg.WriterSource, Observer: cfg.Observer}
	var err error
	if p.maps, err = cp.buildShardMaps(); err != nil {
		return nil, err
	}
	p.mapNames = sortedKeys(p.maps)
	cp.Clusters = nil // cfg's, read only during the call
	p.cfg = cp
	return p, nil
}

// buildTable builds the routing table for p, reusing the clusters of old
// whose plan is the same (clusterPlan.sameAs). It returns the clusters of
// old that are not reused.
func (r *Router) buildTable(p *plan, old *routeTable) (*routeTable, []*Cluster, error) {
	t := &routeTable{plan: p, clusters: make(map[string]*Cluster, len(p.names)),
		names: p.names, maps: p.maps, mapNames: p.mapNames}
	var created []*Cluster
	drivers := make(map[driverKey]error)
	for _, name := range p.names {
		cp := p.clusters[name]
		if old != nil {
			if c := old.clusters[name]; c != nil && old.plan.clusters[name].sameAs(cp) {
				t.clusters[name] = c
				continue
			}
		}
		// What go-sql-driver would refuse of a node's configuration, it
		// refuses of the cluster's: check it once per configuration, as
		// nodes build their connectors only when they first connect.
		key := driverKey{cp.base, cp.tls}
		err, checked := drivers[key]
		if !checked {
			err = checkDriver(cp)
			drivers[key] = err
		}
		if err != nil {
			for _, c := range created {
				c.close()
			}
			return nil, nil, fmt.Errorf("dbrouter: cluster %q: %w", cp.name, err)
		}
		c := newCluster(cp, r.log, r.events, r.source, r.obs, r.probes)
		created = append(created, c)
		t.clusters[name] = c
	}
	if old != nil {
		// Only now that nothing can fail: inheriting marks the old cluster
		// replaced (its Drain and Undrain are then refused).
		for _, c := range created {
			if o := old.clusters[c.name]; o != nil {
				c.inheritPlanned(o)
			}
		}
	}
	var retired []*Cluster
	if old != nil {
		for _, name := range old.names {
			if c := old.clusters[name]; t.clusters[name] != c {
				retired = append(retired, c)
			}
		}
	}
	return t, retired, nil
}

// driverKey is what a cluster's driver configuration is made of, bar node
// addresses (see checkDriver).
type driverKey struct {
	base *mysql.Config
	tls  *tlsPlan
}

// newCluster builds a cluster from its plan. It does no network I/O.
func newCluster(cp *clusterPlan, log *slog.Logger, events *dispatcher, source WriterSource, obs Observer, probes *probeScheduler) *Cluster {
	c := &Cluster{name: cp.name, settings: cp.settings, log: log.With("cluster", cp.name), events: events, source: source, observer: obs, sched: probes}
	c.nodes = make([]*node, len(cp.nodes))
	nodes := make([]node, len(cp.nodes)) // one allocation for all
	for i := range cp.nodes {
		nodes[i].init(cp, i, cp.settings, c.log)
		c.nodes[i] = &nodes[i]
	}
	c.initHealth()
	return c
}

// Cluster returns the named cluster, or an error matching ErrUnknownCluster
// that names it. It is cheap: call it per request rather than keeping the
// *Cluster across a Reload that may replace it.
func (r *Router) Cluster(name string) (*Cluster, error) {
	t := r.table.Load()
	c, ok := t.clusters[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (configured: %s)", ErrUnknownCluster, name, strings.Join(t.names, ", "))
	}
	return c, nil
}

// Route returns the cluster that shard map mapName assigns to key. An
// unknown map is an error matching ErrUnknownShardMap; a key that cannot be
// routed gives a *RouteError, matching ErrEmptyKey, ErrNoShard (the key is
// outside every range and the map has no default) or ErrUnknownCluster (a
// user-defined map returned a cluster that is not configured), naming the
// map and the key. Route does not allocate when it succeeds with a built-in
// map, and is safe for concurrent use, Reload included.
func (r *Router) Route(mapName, key string) (*Cluster, error) {
	t := r.table.Load()
	m, ok := t.maps[mapName]
	if !ok {
		return nil, fmt.Errorf("%w %q (configured: %s)", ErrUnknownShardMap, mapName, strings.Join(t.mapNames, ", "))
	}
	if key == "" {
		return nil, &RouteError{Map: mapName, Err: ErrEmptyKey}
	}
	name, err := m.Lookup(key)
	if err != nil {
		return nil, &RouteError{Map: mapName, Key: key, Err: err}
	}
	c, ok := t.clusters[name]
	if !ok {
		return nil, &RouteError{Map: mapName, Key: key,
			Err: fmt.Errorf("%w %q (configured: %s)", ErrUnknownCluster, name, strings.Join(t.names, ", "))}
	}
	return c, nil
}

// RouteError reports a key that Router.Route could not route. Err is the
// cause: it matches ErrEmptyKey, ErrNoShard, ErrUnknownCluster or a
// user-defined map's own error.
type RouteError struct {
	Map string // the shard map's name
	Key string // the key as given
	Err error
}

// Error names the map, the key and the cause.
func (e *RouteError) Error() string {
	return fmt.Sprintf("dbrouter: shard map %q: key %q: %s", e.Map, e.Key, strings.TrimPrefix(e.Err.Error(), "dbrouter: "))
}

// Unwrap returns the cause.
func (e *RouteError) Unwrap() error { return e.Err }

// Clusters returns the configured cluster names, sorted.
func (r *Router) Clusters() []string { return slices.Clone(r.table.Load().names) }

// ShardMaps returns the configured shard map names, sorted.
func (r *Router) ShardMaps() []string { return slices.Clone(r.table.Load().mapNames) }

// Stats returns a snapshot of every cluster's health, in name order.
func (r *Router) Stats() []ClusterStats {
	t := r.table.Load()
	out := make([]ClusterStats, 0, len(t.names))
	for _, name := range t.names {
		out = append(out, t.clusters[name].Stats())
	}
	return out
}

// Close stops the health probes, closes every node's connection pool and
// delivers the events already queued. Clusters retired by Reload that are
// still waiting for their calls in flight (rows not yet closed, a
// transaction not yet ended) are closed at once, as sql.DB.Close closes its
// connections. Calls made
// afterwards return ErrClosed, and WatchConfigFile returns. Close is
// idempotent and safe for concurrent use.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		r.reloadMu.Lock()
		r.closed = true
		close(r.done)
		t := r.table.Load()
		// Clusters retired by Reload close now, even with rows never
		// closed or a transaction never ended, as sql.DB.Close does.
		for c := range r.draining {
			c.stopWaiting()
		}
		r.reloadMu.Unlock()
		// Clusters close concurrently: each waits for its probers, which a
		// loaded machine may take a while to schedule.
		errs := make([]error, len(t.names))
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for i, name := range t.names {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				errs[i] = t.clusters[name].close()
			})
		}
		wg.Wait()
		r.retiring.Wait()
		r.probes.close()
		r.events.close()
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}
