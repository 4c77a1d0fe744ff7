package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// errDeposed: a publication was refused because the decider's election
// key is gone or was recreated (its lease expired: another decider may
// have taken over).
var errDeposed = errors.New("fleet: no longer the decider")

// errDecisionMoved: a publication was refused because the writer key
// changed since the decider read it.
var errDecisionMoved = errors.New("fleet: the writer decision changed since it was read")

// leaderTerm is one term of this coordinator as the decider: its key in
// the election and that key's create revision. Every publication is
// conditional on both.
type leaderTerm struct {
	key string
	rev int64
}

// campaign runs for the decider election with sess and, once elected,
// decides until its term ends — sess ends, Close, or its election key is
// gone while sess lives (deleted by hand, or expired by etcd before the
// client learnt it) — and then stands again while sess lives.
func (c *Coordinator) campaign(sess *concurrency.Session) {
	ctx, cancel := sessionContext(c.ctx, sess)
	defer cancel()
	for ctx.Err() == nil {
		e := concurrency.NewElection(sess, ElectionKey(c.opts.Prefix))
		for {
			err := campaignOnce(ctx, e, c.opts.RouterID)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			c.log.Debug("fleet: campaigning", "err", err)
			if !sleepCtx(ctx, retryInterval) {
				return
			}
		}
		if c.serve(ctx, leaderTerm{key: e.Key(), rev: e.Rev()}) {
			// Stepped down: resign, so that the coordinators standing
			// behind it decide, and stand again behind them.
			rctx, cancel := context.WithTimeout(ctx, opTimeout)
			if err := e.Resign(rctx); err != nil && ctx.Err() == nil {
				c.log.Warn("fleet: resigning as decider", "err", err)
			}
			cancel()
		}
	}
}

// campaignOnce runs e.Campaign, but returns when ctx ends even if Campaign
// has not: once its ctx ends, etcd's Campaign resigns with its client's own
// context, which has no deadline, so with etcd unreachable it would hold
// Close (which waits for campaign) until etcd answers. The call left
// behind ends when that context does: the session's client's (see
// sessionClient), which ends with the session or Close; the candidacy it
// may still create lives on the router's lease, which Close revokes (or
// which expires).
func campaignOnce(ctx context.Context, e *concurrency.Election, id string) error {
	done := make(chan error, 1)
	go func() { done <- e.Campaign(ctx, id) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serve is one term as the decider: it decides until ctx ends or the term
// is found deposed, or it steps down (it reports so): it could not read
// the fleet for a lease while another coordinator stands.
func (c *Coordinator) serve(ctx context.Context, term leaderTerm) (stepDown bool) {
	c.log.Info("fleet: elected decider", "key", term.key, "rev", term.rev)
	c.mu.Lock()
	c.term = &term
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.term = nil
		c.mu.Unlock()
		c.log.Info("fleet: no longer the decider")
	}()
	ctx, end := context.WithCancel(ctx)
	defer end()
	d := &decider{c: c, term: term, notes: map[string]string{}, unreadable: map[string]int64{}, end: end}
	d.run(ctx)
	return d.stepDown
}

// decider is the state of one term as decider: a mirror of the fleet's
// views, routers and decisions, kept by a watch.
type decider struct {
	c       *Coordinator
	term    leaderTerm
	views   map[string]map[string]View // cluster → router → view
	routers map[string]bool            // live routers
	writers map[string]writerKV        // cluster → decision
	drained map[string]map[string]bool // cluster → nodes drained (DrainKey)
	// switching: cluster → the SwitchoverWith under way (SwitchoverKey).
	switching map[string]SwitchoverRecord
	notes     map[string]string // cluster → the last "stuck" logged
	// unreadable: writer key → the mod revision of the value that is no
	// decision last warned about (one warning per value, not per read).
	unreadable map[string]int64
	end        context.CancelFunc // ends the term: the election key is gone
	stepDown   bool               // the term ends by resigning (see run)
}

// writerKV is a decision and the mod revision of its key.
type writerKV struct {
	d      Decision
	modRev int64
}

// run keeps the mirror and decides every cluster it knows of, after each
// change and every third of the lease, until ctx ends.
func (d *decider) run(ctx context.Context) {
	c := d.c
	pfx := c.opts.Prefix
	var failingSince, warned time.Time // reads of the fleet that fail
	var watchWarned time.Time          // the last warning about a watch that fails at once
	for ctx.Err() == nil {
		rev, err := d.load(ctx)
		if err != nil {
			// Nothing is decided meanwhile. A failure that lasts while
			// the term does (etcd answers: keepalives go through) is no
			// outage, e.g. permission denied under the prefix: warn.
			now := time.Now()
			if failingSince.IsZero() {
				failingSince = now
			}
			if ctx.Err() == nil && now.Sub(failingSince) >= c.opts.LeaseTTL && now.Sub(warned) >= readWarnEvery {
				warned = now
				c.log.Warn("fleet: the decider cannot read the fleet: no writer is decided meanwhile", "prefix", pfx, "err", err,
					"failing_for", now.Sub(failingSince).Round(time.Millisecond))
			} else {
				c.log.Debug("fleet: decider reading the fleet", "err", err)
			}
			// The whole fleet waits for this decider: no first decision,
			// failover or drain while it cannot read (its role denied the
			// writer keys, say). Another coordinator standing in the
			// election may be able to: step down for it
			// (TestReviewEdges2DeciderThatCannotReadStepsDown).
			if ctx.Err() == nil && now.Sub(failingSince) >= c.opts.LeaseTTL && d.othersStanding(ctx) {
				c.log.Warn("fleet: the decider cannot read the fleet: stepping down for another coordinator", "prefix", pfx, "err", err,
					"failing_for", now.Sub(failingSince).Round(time.Millisecond))
				d.stepDown = true
				return
			}
			if !sleepCtx(ctx, retryInterval) {
				return
			}
			continue
		}
		if !warned.IsZero() {
			c.log.Info("fleet: the decider reads the fleet again", "failed_for", time.Since(failingSince).Round(time.Millisecond))
		}
		failingSince, warned = time.Time{}, time.Time{}
		d.decideAll(ctx, nil)
		watched := time.Now()
		wch := c.client.Watch(clientv3.WithRequireLeader(ctx), pfx, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		tick := time.NewTicker(c.opts.LeaseTTL / 3)
		var watchErr error
	events:
		for {
			select {
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil {
					watchErr = wr.Err()
					break events // read everything again
				}
				dirty, all := map[string]bool{}, false
				for _, ev := range wr.Events {
					cluster, routers := d.applyEvent(ev)
					all = all || routers
					if cluster != "" {
						dirty[cluster] = true
					}
				}
				if all {
					dirty = nil
				}
				if all || len(dirty) > 0 {
					d.decideAll(ctx, dirty)
				}
			case <-tick.C:
				d.decideAll(ctx, nil)
			case <-ctx.Done():
				break events
			}
		}
		tick.Stop()
		if ctx.Err() != nil {
			return
		}
		// A watch refused at once (permission denied: a role that may
		// read the keys the decider reads, not the whole prefix) would
		// have it read everything again without a pause
		// (TestReviewEdges2DeciderWatchDeniedNoHotLoop): read again at
		// most every retryInterval, and say why.
		if lasted := time.Since(watched); lasted < retryInterval {
			if watchErr != nil && time.Since(watchWarned) >= readWarnEvery {
				watchWarned = time.Now()
				c.log.Warn("fleet: the decider's watch of the fleet fails at once: it reads the fleet every 250 ms instead", "prefix", pfx, "err", watchErr)
			} else {
				c.log.Debug("fleet: the decider's watch of the fleet ended", "err", watchErr)
			}
			if !sleepCtx(ctx, retryInterval-lasted) {
				return
			}
		}
	}
}

// othersStanding reports whether another coordinator than this one
// stands in the decider election (false when that cannot be read).
func (d *decider) othersStanding(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := d.c.client.Get(ctx, ElectionKey(d.c.opts.Prefix)+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	return err == nil && resp.Count > 1
}

// load reads the views, routers and decisions at one revision.
func (d *decider) load(ctx context.Context) (int64, error) {
	pfx := d.c.opts.Prefix
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := d.c.client.Txn(ctx).Then(
		clientv3.OpGet(pfx+"views/", clientv3.WithPrefix()),
		clientv3.OpGet(pfx+"routers/", clientv3.WithPrefix()),
		clientv3.OpGet(pfx+"writers/", clientv3.WithPrefix()),
		clientv3.OpGet(pfx+"drained/", clientv3.WithPrefix()),
		clientv3.OpGet(pfx+"switchovers/", clientv3.WithPrefix()),
		clientv3.OpGet(d.term.key),
	).Commit()
	if err != nil {
		return 0, err
	}
	if kvs := resp.Responses[5].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != d.term.rev {
		d.deposed(fmt.Errorf("%w: election key %s (revision %d) is gone", errDeposed, d.term.key, d.term.rev))
		return 0, errDeposed
	}
	resp.Responses = resp.Responses[:5]
	d.views, d.routers, d.writers = map[string]map[string]View{}, map[string]bool{}, map[string]writerKV{}
	d.drained = map[string]map[string]bool{}
	d.switching = map[string]SwitchoverRecord{}
	for _, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().Kvs {
			d.put(string(kv.Key), kv.Value, kv.ModRevision)
		}
	}
	return resp.Header.Revision, nil
}

// applyEvent applies a watched change to the mirror; it returns the
// cluster it concerns, or whether it changed the live routers.
func (d *decider) applyEvent(ev *clientv3.Event) (cluster string, routers bool) {
	key := string(ev.Kv.Key)
	if key == d.term.key && (ev.Type == clientv3.EventTypeDelete || ev.Kv.CreateRevision != d.term.rev) {
		d.deposed(fmt.Errorf("%w: election key %s (revision %d) is gone", errDeposed, d.term.key, d.term.rev))
		return "", false
	}
	if ev.Type == clientv3.EventTypeDelete {
		return d.remove(key)
	}
	return d.put(key, ev.Kv.Value, ev.Kv.ModRevision)
}

// deposed ends the term: this coordinator is no longer the decider,
// whatever its session says; campaign stands again.
func (d *decider) deposed(err error) {
	d.c.log.Warn("fleet: deposed as decider", "err", err)
	d.end()
}

// splitKey tells a key of the mirror: its kind ("views", "routers",
// "writers"), cluster and router.
func (d *decider) splitKey(key string) (kind, cluster, router string) {
	rel, ok := strings.CutPrefix(key, d.c.opts.Prefix)
	if !ok {
		return "", "", ""
	}
	kind, rest, _ := strings.Cut(rel, "/")
	switch kind {
	case "views", "drained": // drained: the node in the router's place
		i := strings.LastIndex(rest, "/")
		if i <= 0 {
			return "", "", ""
		}
		return kind, rest[:i], rest[i+1:]
	case "routers":
		return kind, "", rest
	case "writers", "switchovers":
		return kind, rest, ""
	}
	return "", "", ""
}

func (d *decider) put(key string, value []byte, modRev int64) (string, bool) {
	kind, cluster, router := d.splitKey(key)
	switch kind {
	case "views":
		var v View
		if err := json.Unmarshal(value, &v); err != nil {
			d.c.log.Warn("fleet: unreadable view", "key", key, "err", err)
			return "", false
		}
		v.Router = router
		if d.views[cluster] == nil {
			d.views[cluster] = map[string]View{}
		}
		d.views[cluster][router] = v
		return cluster, false
	case "routers":
		d.routers[router] = true
		return "", true
	case "writers":
		dec, err := parseDecision(value)
		if err != nil {
			// As the routers read it: no decision, which the rule
			// replaces (a first decision, above every live router's
			// epoch).
			if d.unreadable[key] != modRev {
				d.c.log.Warn("fleet: unreadable writer decision: treated as none", "key", key, "err", err)
			}
			d.unreadable[key] = modRev
			dec = Decision{}
		}
		d.writers[cluster] = writerKV{dec, modRev}
		return cluster, false
	case "drained":
		if d.drained[cluster] == nil {
			d.drained[cluster] = map[string]bool{}
		}
		d.drained[cluster][router] = true
		return cluster, false
	case "switchovers":
		var r SwitchoverRecord
		if err := json.Unmarshal(value, &r); err != nil {
			d.c.log.Warn("fleet: unreadable switchover record", "key", key, "err", err)
			return "", false
		}
		d.switching[cluster] = r
		return cluster, false
	}
	return "", false
}

func (d *decider) remove(key string) (string, bool) {
	kind, cluster, router := d.splitKey(key)
	switch kind {
	case "views":
		delete(d.views[cluster], router)
		return cluster, false
	case "routers":
		delete(d.routers, router)
		return "", true
	case "writers":
		delete(d.writers, cluster)
		return cluster, false
	case "drained":
		delete(d.drained[cluster], router)
		return cluster, false
	case "switchovers":
		delete(d.switching, cluster)
		return cluster, false
	}
	return "", false
}

// decideAll decides the clusters in dirty (nil: every cluster known: those
// this router watches, and those any live router publishes a view of).
func (d *decider) decideAll(ctx context.Context, dirty map[string]bool) {
	own := d.c.clusterNodes()
	names := map[string]bool{}
	for name := range own {
		names[name] = true
	}
	for name := range d.views {
		names[name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		if dirty != nil && !dirty[name] {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		d.decide(ctx, name, own[name])
	}
}

// decide applies the rule to one cluster and publishes its verdict.
func (d *decider) decide(ctx context.Context, cluster string, nodes []string) {
	c := d.c
	var views []View
	for _, r := range slices.Sorted(maps.Keys(d.views[cluster])) {
		if d.routers[r] {
			views = append(views, d.views[cluster][r])
		}
	}
	if nodes == nil {
		// A cluster this router does not watch: the node order of the
		// first live router's view (routers sorted by name).
		if len(views) == 0 {
			return
		}
		for _, n := range views[0].Nodes {
			nodes = append(nodes, n.Addr)
		}
	}
	var cur *Decision
	wkv, have := d.writers[cluster]
	if have {
		cur = &wkv.d
	}
	if cur != nil && d.restore(ctx, cluster, cur, wkv.modRev, views) {
		return
	}
	v := decideWriter(nodes, cur, views, d.drained[cluster])
	if c.opts.onVerdict != nil {
		c.opts.onVerdict(cluster, views, v)
	}
	if r, ok := d.switching[cluster]; ok && v.change && cur != nil && r.From == cur.Writer {
		// SwitchoverWith made the writer read-only on purpose and will
		// publish: left to it unless the writer is Down for a majority
		// (the record's lease bounds the wait if it never does).
		if t := countViews(views); t.down[cur.Writer] <= t.voters/2 {
			v = verdict{stuck: fmt.Sprintf("switchover from %s to %s by %s under way: the writer is left to it", r.From, r.To, r.By)}
		}
	}
	if !v.change {
		if v.stuck != "" && d.notes[cluster] != v.stuck {
			c.log.Warn("fleet: writer decision stuck", "cluster", cluster, "why", v.stuck)
		}
		d.notes[cluster] = v.stuck
		return
	}
	// One more than the current decision's epoch and than any live
	// router's: after the writer key was deleted (or overwritten with a
	// lower epoch) the routers that applied a higher one would refuse the
	// decision as older. At the top of the range there is no next epoch:
	// a wrapped one (0) would be refused by every router.
	var top uint64
	if cur != nil {
		top = cur.Epoch
	}
	for _, v := range views {
		top = max(top, v.Epoch)
	}
	if top == math.MaxUint64 {
		stuck := fmt.Sprintf("epoch %d cannot be raised: write a decision with a lower epoch and restart the routers", top)
		if d.notes[cluster] != stuck {
			c.log.Error("fleet: writer decision stuck", "cluster", cluster, "why", stuck, "wanted", v.next.Writer)
		}
		d.notes[cluster] = stuck
		return
	}
	d.notes[cluster] = ""
	next := v.next
	if v.demote != "" && c.opts.Demote != nil {
		if err := c.stillDeciding(ctx, d.term, cluster, wkv.modRev); err != nil {
			if errors.Is(err, errDeposed) {
				d.deposed(err)
				return
			}
			if ctx.Err() == nil {
				c.log.Warn("fleet: writer decision abandoned before demoting the old writer", "cluster", cluster, "node", v.demote, "err", err)
			}
			return
		}
		err := c.demote(ctx, cluster, v.demote)
		if err != nil {
			c.log.Warn("fleet: could not make the old writer read-only", "cluster", cluster, "node", v.demote, "err", err)
			next.Cause += fmt.Sprintf("; %s not made read-only: %v", v.demote, err)
		} else {
			next.Cause += fmt.Sprintf("; %s made read-only", v.demote)
		}
	}
	next.Epoch = top + 1
	next.Decider = c.opts.RouterID
	next.At = time.Now().UTC()
	rev, err := c.publishDecision(ctx, d.term, cluster, wkv.modRev, next)
	switch {
	case err == nil:
		// The mirror has it now, not only when the watch brings it: an
		// event in between must not decide (and demote) again.
		d.writers[cluster] = writerKV{next, rev}
		c.log.Info("fleet: writer decided", "cluster", cluster, "writer", next.Writer, "epoch", next.Epoch, "cause", next.Cause)
	case errors.Is(err, errDeposed):
		d.deposed(err)
	case ctx.Err() == nil:
		c.log.Warn("fleet: writer decision not published", "cluster", cluster, "writer", next.Writer, "epoch", next.Epoch, "err", err)
	}
}

// demote calls Options.Demote for addr and waits for it at most
// DemoteTimeout, even if the hook does not honour its context (a driver
// call without one, a connect to a blackholed host): the decider and
// Close must not wait for it. A hook still running then is left to end
// by itself.
func (c *Coordinator) demote(ctx context.Context, cluster, addr string) error {
	dctx, cancel := context.WithTimeout(ctx, c.opts.DemoteTimeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.opts.Demote(dctx, cluster, addr) }()
	select {
	case err := <-errc:
		return err
	case <-dctx.Done():
		return fmt.Errorf("no answer within %v: %w", c.opts.DemoteTimeout, dctx.Err())
	}
}

// restore handles a stored decision older than the epoch some live
// router applied (etcd restored from a backup, or the key rewritten by
// hand): the routers that applied the newer one refuse it and keep their
// writer, while routers started later would follow it — two writers. It
// re-publishes, above every live router's epoch, the writer that most of
// the routers at the highest epoch use, and reports whether it acted (the
// normal rule applies from the next round on).
func (d *decider) restore(ctx context.Context, cluster string, cur *Decision, modRev int64, views []View) bool {
	var top uint64
	for _, v := range views {
		top = max(top, v.Epoch)
	}
	if top <= cur.Epoch {
		return false
	}
	c := d.c
	users := map[string]int{}
	best := ""
	for _, v := range views {
		if v.Epoch != top || v.Writer == "" {
			continue
		}
		users[v.Writer]++
		if best == "" || users[v.Writer] > users[best] {
			best = v.Writer
		}
	}
	if best == "" || top == math.MaxUint64 {
		stuck := fmt.Sprintf("the stored decision (epoch %d) is older than epoch %d, which live routers applied, and none of them names its writer", cur.Epoch, top)
		if d.notes[cluster] != stuck {
			c.log.Error("fleet: writer decision stuck", "cluster", cluster, "why", stuck)
		}
		d.notes[cluster] = stuck
		return true
	}
	next := Decision{Writer: best, Epoch: top + 1, Decider: c.opts.RouterID, At: time.Now().UTC(), Cause: fmt.Sprintf(
		"the stored decision (%s, epoch %d) is older than epoch %d, which %d live routers applied and use %s with (etcd restored from a backup, or the key rewritten?): %s re-published above it",
		cur.Writer, cur.Epoch, top, users[best], best, best)}
	rev, err := c.publishDecision(ctx, d.term, cluster, modRev, next)
	switch {
	case err == nil:
		d.writers[cluster] = writerKV{next, rev}
		d.notes[cluster] = ""
		c.log.Warn("fleet: writer decision restored", "cluster", cluster, "writer", next.Writer, "epoch", next.Epoch, "cause", next.Cause)
	case errors.Is(err, errDeposed):
		d.deposed(err)
	case ctx.Err() == nil:
		c.log.Warn("fleet: writer decision not published", "cluster", cluster, "writer", next.Writer, "epoch", next.Epoch, "err", err)
	}
	return true
}

// publishDecision publishes a cluster's decision with a compare-and-swap:
// it succeeds only while term's election key still exists with its create
// revision (this coordinator is still the decider: its lease has not
// expired) and the writer key's mod revision is still modRev (0: absent),
// the one the decision was based on. It returns the key's new mod
// revision, or an error matching errDeposed or errDecisionMoved when a
// condition fails.
func (c *Coordinator) publishDecision(ctx context.Context, term leaderTerm, cluster string, modRev int64, d Decision) (int64, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return 0, err
	}
	key := WriterKey(c.opts.Prefix, cluster)
	rev, err := c.guarded(ctx, term, key, modRev, clientv3.OpPut(key, string(b)))
	if err != nil {
		return 0, fmt.Errorf("fleet: publishing the writer of %s: %w", cluster, err)
	}
	return rev, nil
}

// stillDeciding checks, without writing, what publishDecision will check:
// that term is current and the writer key still at modRev. The decider
// checks it before Demote, so that a decider that was frozen for a while
// (its stale verdict in hand) does not make a node read-only for nothing.
func (c *Coordinator) stillDeciding(ctx context.Context, term leaderTerm, cluster string, modRev int64) error {
	_, err := c.guarded(ctx, term, WriterKey(c.opts.Prefix, cluster), modRev)
	return err
}

// guarded runs ops in a transaction conditional on term's election key and
// key's mod revision; it returns the transaction's revision, or an error
// matching errDeposed or errDecisionMoved.
func (c *Coordinator) guarded(ctx context.Context, term leaderTerm, key string, modRev int64, ops ...clientv3.Op) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := c.client.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(term.key), "=", term.rev),
		clientv3.Compare(clientv3.ModRevision(key), "=", modRev),
	).Then(ops...).Else(
		clientv3.OpGet(term.key),
		clientv3.OpGet(key),
	).Commit()
	if err != nil {
		return 0, err
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != term.rev {
		return 0, fmt.Errorf("%w: election key %s (revision %d) is gone", errDeposed, term.key, term.rev)
	}
	now := int64(0)
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		now = kvs[0].ModRevision
	}
	return 0, fmt.Errorf("%w: %s at revision %d, read at %d", errDecisionMoved, key, now, modRev)
}
