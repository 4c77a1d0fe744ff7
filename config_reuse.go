package dbrouter

import (
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"weak"
)

// ParseConfig compiles the configuration it returns (validation, every
// cluster's plan), and Open compiles it again, on its own copy: on a file
// of 10,000 clusters the second compile and the copy were about a third
// of Open. So ParseConfig keeps the cluster plans of the last Config it
// returned, with a copy of what they were compiled from (the defaults,
// each cluster's nodes and settings), and Open uses them if that Config
// is still the same: opened as it was parsed, Open then compiles only its
// shard maps, on its own copy, as before. A Config edited in between, or
// opened a second time, is compiled in full, as are configurations whose
// compile reads something else than the Config, which may have changed
// meanwhile: TLS files, and the driver's registered TLS configurations
// and server keys (params tls and serverPubKey).
var lastParsed struct {
	mu       sync.Mutex
	cfg      weak.Pointer[Config] // the Config ParseConfig returned; zero: none
	p        *plan
	defaults Settings // a copy of cfg.Defaults
}

// srcCopy collects, during ParseConfig's compile, the copy of each
// cluster's nodes and own settings that its plan keeps (see lastParsed).
type srcCopy struct {
	flat  []string // the nodes of several clusters, in one allocation
	alone bool     // false: some cluster's own settings need more than the Config (settingsAlone)
}

// keep keeps in cp a copy of cc, compiled into it; own says whether cc has
// settings of its own.
func (s *srcCopy) keep(cp *clusterPlan, cc ClusterConfig, own bool) {
	if len(s.flat)+len(cc.Nodes) > cap(s.flat) {
		s.flat = make([]string, 0, max(4096, len(cc.Nodes)))
	}
	start := len(s.flat)
	s.flat = append(s.flat, cc.Nodes...)
	cp.srcNodes = s.flat[start:len(s.flat):len(s.flat)]
	if own {
		own := cc.Settings.clone()
		cp.srcOwn = &own
		s.alone = s.alone && settingsAlone(&cc.Settings)
	}
}

// keepParsed keeps plan p of cfg, which ParseConfig returns, for Open
// (see lastParsed), if src, the copy that compiling cfg kept, says that
// cfg's compile reads nothing but cfg.
func keepParsed(cfg *Config, p *plan, src *srcCopy) {
	if !src.alone || !settingsAlone(&cfg.Defaults) {
		return
	}
	w := weak.Make(cfg)
	kept := &plan{clusters: p.clusters, names: p.names} // not p.cfg: cfg must stay collectable
	lastParsed.mu.Lock()
	lastParsed.cfg, lastParsed.p, lastParsed.defaults = w, kept, cfg.Defaults.clone()
	lastParsed.mu.Unlock()
	// Once cfg is unreachable, nothing can open it: let go of its plan.
	runtime.AddCleanup(cfg, func(w weak.Pointer[Config]) {
		lastParsed.mu.Lock()
		defer lastParsed.mu.Unlock()
		if lastParsed.cfg == w {
			lastParsed.cfg, lastParsed.p, lastParsed.defaults = weak.Pointer[Config]{}, nil, Settings{}
		}
	}, w)
}

// settingsAlone reports whether compiling settings s reads nothing but s
// — no TLS file, and no TLS configuration or server key registered with
// the driver — and gives plans that share nothing with s: an empty Params
// map is not copied into the effective settings (Config.effective).
func settingsAlone(s *Settings) bool {
	if s.TLS != nil || (s.Params != nil && len(s.Params) == 0) {
		return false
	}
	for k := range s.Params {
		if strings.EqualFold(k, "tls") || strings.EqualFold(k, "serverPubKey") {
			return false
		}
	}
	return true
}

// parsedPlan returns the cluster plans that ParseConfig compiled cfg's
// clusters into, as a plan without shard maps, if cfg is the Config it
// returned last and its defaults and clusters are still what they were
// compiled from; nil otherwise. It gives them once: a second Open of cfg
// compiles it.
func parsedPlan(cfg *Config) *plan {
	lastParsed.mu.Lock()
	if lastParsed.cfg.Value() != cfg {
		lastParsed.mu.Unlock()
		return nil
	}
	p, defaults := lastParsed.p, lastParsed.defaults
	lastParsed.cfg, lastParsed.p, lastParsed.defaults = weak.Pointer[Config]{}, nil, Settings{}
	lastParsed.mu.Unlock()
	// Equal to what passed settingsAlone, cfg passes it too.
	if len(cfg.Clusters) != len(p.clusters) || !reflect.DeepEqual(cfg.Defaults, defaults) {
		return nil
	}
	for name, cc := range cfg.Clusters {
		cp := p.clusters[name]
		if cp == nil || !slices.Equal(cc.Nodes, cp.srcNodes) {
			return nil
		}
		if cp.srcOwn == nil {
			if !reflect.ValueOf(cc.Settings).IsZero() {
				return nil
			}
		} else if !reflect.DeepEqual(cc.Settings, *cp.srcOwn) {
			return nil
		}
	}
	// The copy has served: the router that takes the plans would hold
	// it for its lifetime.
	for _, cp := range p.clusters {
		cp.srcNodes, cp.srcOwn = nil, nil
	}
	return &plan{clusters: p.clusters, names: p.names}
}
