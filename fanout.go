package dbrouter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// DefaultFanOut is the concurrency of Router.Each when its limit is zero.
const DefaultFanOut = 8

// Each runs fn once for every cluster of shard map mapName, or of the whole
// router when mapName is "", with at most limit calls running at a time
// (zero or less means DefaultFanOut), and waits for all of them. Use it for
// questions every shard must answer, such as "how many hits today across
// all web servers".
//
// fn gets ctx; when ctx ends before a cluster's turn, fn is not called for
// it and its error is ctx's. Each returns nil when every call returned nil,
// otherwise a *FanOutError holding each failed cluster's error. The map
// must list its clusters (ClusterLister, as every built-in map does);
// otherwise, and for an unknown map, Each returns an error before calling
// fn at all. The clusters are those of the configuration current when Each
// starts.
func (r *Router) Each(ctx context.Context, mapName string, limit int, fn func(ctx context.Context, c *Cluster) error) error {
	t := r.table.Load()
	names := t.names
	if mapName != "" {
		m, ok := t.maps[mapName]
		if !ok {
			return fmt.Errorf("%w %q (configured: %s)", ErrUnknownShardMap, mapName, strings.Join(t.mapNames, ", "))
		}
		l, ok := m.(ClusterLister)
		if !ok {
			return fmt.Errorf("dbrouter: Each: shard map %q (%T) cannot list its clusters: implement ClusterLister", mapName, m)
		}
		names = slices.Sorted(slices.Values(l.Clusters()))
		names = slices.Compact(names)
	}
	if limit <= 0 {
		limit = DefaultFanOut
	}
	var (
		mu   sync.Mutex
		errs = map[string]error{}
		wg   sync.WaitGroup
		sem  = make(chan struct{}, limit)
	)
	fail := func(name string, err error) {
		mu.Lock()
		errs[name] = err
		mu.Unlock()
	}
	for _, name := range names {
		c, ok := t.clusters[name]
		if !ok {
			fail(name, fmt.Errorf("%w %q", ErrUnknownCluster, name))
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			fail(name, ctx.Err())
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := ctx.Err(); err != nil {
				fail(name, err)
				return
			}
			if err := fn(ctx, c); err != nil {
				fail(name, err)
			}
		})
	}
	wg.Wait()
	if len(errs) == 0 {
		return nil
	}
	return &FanOutError{Map: mapName, Errs: errs}
}

// FanOutError reports the clusters whose call failed in Router.Each. Errs
// maps each failed cluster's name to its error; errors.Is and errors.As look
// into all of them.
type FanOutError struct {
	Map  string // the shard map, "" for every cluster
	Errs map[string]error
}

// Error lists each failed cluster and its error, in name order.
func (e *FanOutError) Error() string {
	var b strings.Builder
	what := "every cluster"
	if e.Map != "" {
		what = fmt.Sprintf("shard map %q", e.Map)
	}
	fmt.Fprintf(&b, "dbrouter: Each over %s: %d cluster(s) failed", what, len(e.Errs))
	for _, name := range sortedKeys(e.Errs) {
		fmt.Fprintf(&b, "\n\t%s: %v", name, e.Errs[name])
	}
	return b.String()
}

// Unwrap returns the clusters' errors in name order.
func (e *FanOutError) Unwrap() []error {
	out := make([]error, 0, len(e.Errs))
	for _, name := range sortedKeys(e.Errs) {
		out = append(out, e.Errs[name])
	}
	return out
}
