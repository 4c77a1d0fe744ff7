package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dbrouter/dbrouter"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WatchOptions configures WatchConfig. The zero value is ready to use.
type WatchOptions struct {
	// Base holds what a configuration in YAML cannot carry, merged into
	// every revision before Reload: its Logger, OnEvent and WriterSource
	// (Reload keeps those of Open anyway; pass the Config given to Open),
	// and its shard maps built in Go (ShardMapConfig.Map set), added to
	// those of etcd. A revision with a shard map of the same name as one of
	// these is rejected. Base's clusters, defaults and other shard maps are
	// not used: etcd's configuration replaces them. Nil means none.
	Base *dbrouter.Config

	// OnUpdate, when set, is called with the outcome of each revision of
	// the configuration WatchConfig handles, in revision order, on
	// WatchConfig's goroutine: it must not block for long. Every outcome
	// is logged too, by Base.Logger (slog.Default() when nil).
	OnUpdate func(ConfigUpdate)
}

// ConfigUpdate is the outcome of one revision of the configuration in etcd.
type ConfigUpdate struct {
	// Rev is the key's mod revision; for a deleted or absent key, the
	// revision at which it was found so.
	Rev int64

	// Err is nil when the revision was applied. Otherwise the router kept
	// the configuration it had, and Err says why: ParseConfig's error (a
	// *dbrouter.ConfigError names the field and its value), Reload's, or
	// ErrNoConfig when the key was deleted or is absent.
	Err error
}

// Backoff between two attempts to read the configuration while etcd does
// not answer.
const (
	watchMinBackoff = 100 * time.Millisecond
	watchMaxBackoff = 5 * time.Second
)

// WatchConfig applies the configuration stored at ConfigKey(prefix) to r
// with r.Reload, then every later revision of it, until ctx is done. Each
// revision is parsed with dbrouter.ParseConfig, which expands ${VAR} from
// this process's environment, and merged with opts.Base. A revision that
// does not parse or validate, or that Reload rejects, is reported (see
// WatchOptions.OnUpdate) and r keeps its configuration; the same revision
// is not tried again, a later one is. A deleted key is reported too, and r
// keeps its configuration until the key is written again.
//
// Only the latest revision is applied when several arrive at once. When
// the watch breaks (etcd restarted, its leader lost, the revision
// compacted) WatchConfig reads the key again, retrying with a backoff
// while etcd does not answer, and applies it if it changed: no revision
// is missed for longer than etcd is unreachable, and r keeps its last
// configuration meanwhile.
//
// WatchConfig blocks: run it in its own goroutine. It returns ctx.Err()
// once ctx is done, or an error matching dbrouter.ErrClosed when it finds
// r closed on applying a revision. Do not run two watches, or a
// WatchConfigFile, on the same router: each would undo the other's
// reloads.
func WatchConfig(ctx context.Context, cli *clientv3.Client, prefix string, r *dbrouter.Router, opts WatchOptions) error {
	w := &configWatch{cli: cli, key: ConfigKey(prefix), r: r, opts: opts, log: slog.Default()}
	if opts.Base != nil && opts.Base.Logger != nil {
		w.log = opts.Base.Logger
	}
	backoff := watchMinBackoff
	for {
		rev, err := w.sync(ctx)
		if err == nil {
			backoff = watchMinBackoff
			err = w.follow(ctx, rev+1)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, dbrouter.ErrClosed) {
			return err
		}
		if err != nil {
			w.log.Warn("fleet: config watch interrupted; reading the configuration again", "key", w.key, "err", err, "retry_in", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, watchMaxBackoff)
	}
}

// configWatch is the state of one WatchConfig.
type configWatch struct {
	cli  *clientv3.Client
	key  string
	r    *dbrouter.Router
	opts WatchOptions
	log  *slog.Logger

	handled int64 // mod revision of the last value handled, applied or not
	absent  bool  // whether the absence of the key was reported last
}

// sync reads the key, handles its value if it changed, and returns the
// revision of the read, after which follow watches.
func (w *configWatch) sync(ctx context.Context) (int64, error) {
	resp, err := w.cli.Get(ctx, w.key)
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		w.gone(resp.Header.Revision)
		return resp.Header.Revision, nil
	}
	return resp.Header.Revision, w.apply(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

// follow watches the key from revision from and handles each change, until
// the watch ends; it returns why.
func (w *configWatch) follow(ctx context.Context, from int64) error {
	// WithRequireLeader ends the watch when the member it is on loses its
	// leader, rather than letting it wait, perhaps for ever, behind a
	// partition: sync then reads the key through a member that has one.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range w.cli.Watch(wctx, w.key, clientv3.WithRev(from)) {
		if err := resp.Err(); err != nil {
			return err
		}
		if len(resp.Events) == 0 {
			continue // a progress notification
		}
		ev := resp.Events[len(resp.Events)-1] // the latest is enough
		switch ev.Type {
		case mvccpb.PUT:
			if err := w.apply(ev.Kv.Value, ev.Kv.ModRevision); err != nil {
				return err
			}
		case mvccpb.DELETE:
			w.gone(ev.Kv.ModRevision)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("fleet: the etcd watch ended")
}

// apply parses, merges and applies the value of revision rev, unless that
// revision was handled already, and reports the outcome. Its error is
// ErrClosed's when the router is closed; any other failure is reported,
// not returned.
func (w *configWatch) apply(yaml []byte, rev int64) error {
	if rev == w.handled {
		return nil // handled already: read again after the watch broke
	}
	w.handled, w.absent = rev, false
	cfg, err := parseMerged(yaml, w.opts.Base)
	if err == nil {
		err = w.r.Reload(cfg)
	}
	if errors.Is(err, dbrouter.ErrClosed) {
		return err
	}
	if err != nil {
		err = fmt.Errorf("fleet: configuration %s at revision %d rejected, the router keeps its configuration: %w", w.key, rev, err)
		w.log.Error("fleet: configuration rejected", "key", w.key, "rev", rev, "err", err)
	} else {
		w.log.Info("fleet: configuration applied", "key", w.key, "rev", rev)
	}
	w.report(ConfigUpdate{Rev: rev, Err: err})
	return nil
}

// gone reports that the key is absent at revision rev, once until it is
// written again.
func (w *configWatch) gone(rev int64) {
	if w.absent {
		return
	}
	w.absent = true
	err := fmt.Errorf("%w at %s (revision %d): the router keeps its configuration", ErrNoConfig, w.key, rev)
	w.log.Warn("fleet: no configuration in etcd", "key", w.key, "rev", rev)
	w.report(ConfigUpdate{Rev: rev, Err: err})
}

func (w *configWatch) report(u ConfigUpdate) {
	if w.opts.OnUpdate != nil {
		w.opts.OnUpdate(u)
	}
}
