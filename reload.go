package dbrouter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Reload replaces the router's clusters and shard maps with those of cfg,
// atomically: every Route, Cluster and Each call sees either the old
// configuration or the new one, never a mix. cfg is validated first; an
// invalid cfg is rejected whole, with the validation error, and the old
// configuration stays in force.
//
// A cluster whose nodes and effective settings are unchanged is kept as it
// is, with its pools, health and writer. They are compared as compiled, not
// as written: "db1" and "db1:3306" are the same node, and driver parameters
// in another order or with their defaults spelled out are the same
// settings; a TLS file whose content changed is a change.
//
// A cluster that is removed or whose configuration changed is retired:
// calls already running on it (and open transactions) finish there, new
// calls on a *Cluster value obtained before the Reload return an error
// matching both ErrClosed and ErrNotSent (nothing was sent: route again and
// retry), and its pools are closed once its calls in flight have ended. Get
// clusters from the router per request (Route and Cluster are cheap) to
// follow reloads.
//
// Reload validates and keeps a deep copy of cfg (see Config.Clone), as Open
// does: the same *Config may be edited in place and passed to Reload again.
// cfg.Logger, cfg.OnEvent, cfg.WriterSource and cfg.Observer are ignored:
// those of Open stay in force (a Config read from YAML cannot carry a WriterSource, and
// a cluster the reload replaces must stay under the same source).
// Each Reload, accepted or rejected, is reported to Open's Observer.
// Reload is safe for concurrent use; reloads are serialised.
func (r *Router) Reload(cfg *Config) error {
	err := r.reload(cfg, os.ReadFile)
	if r.obs != nil {
		func() {
			defer func() {
				if p := recover(); p != nil {
					logObserverPanic(r.log, "ReloadDone", p)
				}
			}()
			r.obs.ReloadDone(err)
		}()
	}
	return err
}

// reload is Reload with the function that reads TLS files.
func (r *Router) reload(cfg *Config, readFile func(name string) ([]byte, error)) error {
	if cfg == nil {
		return errors.New("dbrouter: Reload: nil *Config")
	}
	p, err := cfg.Clone().compile(nil, readFile)
	if err != nil {
		return fmt.Errorf("dbrouter: Reload rejected, configuration unchanged: %w", err)
	}
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	if r.closed {
		return ErrClosed
	}
	old := r.table.Load()
	t, retired, err := r.buildTable(p, old)
	if err != nil {
		return fmt.Errorf("dbrouter: Reload rejected, configuration unchanged: %w", err)
	}
	r.table.Store(t)
	for _, c := range retired {
		r.retiring.Add(1)
		if r.draining == nil {
			r.draining = make(map[*Cluster]struct{})
		}
		r.draining[c] = struct{}{}
		go func() {
			defer r.retiring.Done()
			c.retire()
			r.reloadMu.Lock()
			delete(r.draining, c)
			r.reloadMu.Unlock()
		}()
	}
	r.log.Info("dbrouter: configuration reloaded", "clusters", len(t.names), "shard_maps", len(t.mapNames), "retired", len(retired))
	return nil
}

// DefaultWatchInterval is how often WatchConfigFile reads the file when its
// interval is zero.
const DefaultWatchInterval = time.Second

// WatchConfigFile reads the YAML file at path every interval (zero means
// DefaultWatchInterval) and, when its content differs from the content it
// last applied and has stayed the same for one more interval (so that a file
// caught mid-write is not applied; writing it atomically with a rename is
// better still), parses it as LoadConfig does and applies it with Reload.
// The first content it reads is applied too, so a change made between Open
// and the watch is not missed; reloading an unchanged configuration keeps
// every cluster as it is. A file that cannot be read or parsed, or a
// rejected reload, is reported to onError (nil: logged at error level by the
// router's logger) and the router keeps its current configuration; the same
// content is not retried until it changes again. WatchConfigFile blocks
// until ctx is done or the router is closed, and then returns at once, even
// while it waits for the next interval; run it in its own goroutine. After
// Close, onError is not called again, except for a report the watch had
// already begun when Close was called.
func (r *Router) WatchConfigFile(ctx context.Context, path string, interval time.Duration, onError func(error)) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if onError == nil {
		onError = func(err error) { r.log.Error("dbrouter: config watch", "path", path, "err", err) }
	}
	// stopped reports whether the watch must end. It is checked again
	// before each report: select picks a ready tick as readily as a
	// closed router, and a read may take a while.
	stopped := func() bool {
		select {
		case <-r.done:
			return true
		default:
			return ctx.Err() != nil
		}
	}
	var last, pending []byte
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-r.done:
				return
			case <-tick.C:
			}
		}
		if stopped() {
			return
		}
		data, err := os.ReadFile(path)
		if err != nil {
			if stopped() {
				return
			}
			onError(fmt.Errorf("dbrouter: config watch: %w", err))
			continue
		}
		if bytes.Equal(data, last) {
			pending = nil
			continue
		}
		if !bytes.Equal(data, pending) {
			// Changed since the last read: wait until it stays the same
			// for one interval, so a file caught mid-write is not applied.
			pending = data
			continue
		}
		last, pending = data, nil
		cfg, err := ParseConfig(data)
		if err == nil {
			err = r.Reload(cfg)
		}
		if errors.Is(err, ErrClosed) || stopped() {
			return
		}
		if err != nil {
			onError(fmt.Errorf("%w (in %s)", err, path))
		}
	}
}

// inheritPlanned carries the planned moves of old, the cluster of the same
// name that a Reload replaces with c, over to c before c is used: nodes
// drained there (Cluster.Drain) stay drained here, and the writer a
// switchover chose there stays the preferred first writer here, provided
// the node is still configured (by address, as Nodes spells it). c's first
// probe round still decides: a pinned node that is not Up and writable, or
// is behind another node, is not chosen, and the pin is then dropped.
// old is marked replaced in the same step, so that a Drain or Undrain that
// reaches it afterwards fails rather than change a cluster no call uses.
func (c *Cluster) inheritPlanned(old *Cluster) {
	old.mu.Lock()
	old.replaced = true
	drained := map[string]drainOrigin{}
	for i, by := range old.state.drained {
		if by != 0 {
			drained[old.state.addrs[i]] = by
		}
	}
	pinned := ""
	if p := old.state.pinned; p >= 0 && p == old.state.writer {
		pinned = old.state.addrs[p]
	}
	old.mu.Unlock()
	if len(drained) == 0 && pinned == "" {
		return
	}
	c.mu.Lock()
	defer c.unlock()
	p := c.state.inherit(drained, pinned, time.Now())
	if p != nil {
		c.pick.Store(p) // before first use: no call waits on the old picker
	}
}

// inherit drains the nodes at the given addresses (for the same origins)
// and pins the node at pinned ("" or an unknown address: none), for a
// cluster not yet probed (see Cluster.inheritPlanned). Without probes the
// writer was chosen at creation: it is chosen again. It returns the new
// picker, or nil when nothing changed.
func (s *clusterState) inherit(drained map[string]drainOrigin, pinned string, now time.Time) *picker {
	changed := false
	for i, a := range s.addrs {
		if by := drained[a]; by != 0 {
			s.drained[i], changed = s.drained[i]|by, true
		}
		if a == pinned {
			s.pinned, changed = i, true
		}
	}
	if !changed {
		return nil
	}
	if s.ready && s.probed == 0 {
		s.writer, s.lastWriter = -1, -1
		if s.writer, _ = s.chooseWriter(); s.writer >= 0 {
			s.lastWriter = s.writer
		}
		if s.writer != s.pinned {
			s.pinned = -1
		}
	}
	return s.buildPicker(now)
}
