package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbrouter/dbrouter"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// watch is a router's side of one cluster in the fleet: it publishes the
// router's view of the cluster's nodes and applies the fleet's writer
// decisions to the cluster (through its WriterSink).
type watch struct {
	c       *Coordinator
	cluster string
	nodes   []string
	sink    dbrouter.WriterSink
	ctx     context.Context // ends with stop or Close
	cancel  context.CancelFunc
	done    chan struct{} // closed when run has returned

	mu      sync.Mutex // serialises what is handed to sink.Decide
	gen     uint64     // the session whose decisions may be applied; 0: none
	epoch   uint64     // of the last decision applied
	decided bool       // a decision read from etcd has been applied
	last    *Decision  // the last decision read from etcd and applied (nil: none)
	// inherited is the last decision the cluster's previous watch (a
	// Reload's rebuilt cluster) applied: under KeepLastDecision, the
	// decision kept when etcd is lost before this watch read one.
	inherited *Decision
	pending   bool                    // the start-up refusal (Watch) is in force
	started   time.Time               // when Watch began: the start-up refusal's window (LeaseTTL) runs from it
	handed    dbrouter.WriterDecision // the last decision the sink accepted (Coordinator.Status)

	// Reads of the writer key that fail while etcd answers — an etcd
	// error, or a value that is no decision — as readFailed records them.
	readErr      string    // the last failure; "" once a read succeeds
	readErrSince time.Time // the first failure since the last read that succeeded
	readWarned   time.Time // the last warning about them
	unreadable   bool      // the start-up refusal outlasted its window
	// readRefused: under RefuseWrites, writes are refused because reads
	// failed for longer than the lease after a decision was applied; the
	// next decision applied, or a read that finds none (readOK: the last
	// one again), ends it.
	readRefused bool

	// lostUndecided: the EtcdLost policy applied while no decision had
	// been applied (KeepLastDecision's local rule, or RefuseWrites); the
	// next session starts with the start-up refusal again (follow).
	lostUndecided bool

	drains    map[string]bool // nodes followDrains drained (drain.go); its goroutine only
	reconcile bool            // followDrains has yet to undrain the nodes no key names; likewise

	viewRev atomic.Int64 // mod revision of the view this watch last published; 0: none
}

// run follows the coordinator's sessions: with each, it publishes the view
// and applies the decisions, until the session or the watch ends.
func (w *watch) run() {
	for {
		sess, gen, changed := w.c.current()
		if sess != nil {
			select {
			case <-sess.Done(): // ended: wait for the next
			default:
				w.follow(sess, gen)
			}
		}
		select {
		case <-w.ctx.Done():
			return
		case <-changed:
		}
	}
}

// follow publishes the view and applies the decisions of the cluster while
// sess lasts.
func (w *watch) follow(sess *concurrency.Session, gen uint64) {
	ctx, cancel := sessionContext(w.ctx, sess)
	w.mu.Lock()
	w.gen = gen
	if w.lostUndecided {
		// Back in the fleet after the EtcdLost policy applied with no
		// decision read: as at start-up, the fleet's word is unknown (it
		// may have decided meanwhile) until the writer key is read, under
		// every policy: live, the router must not stay on its local rule
		// while the others follow etcd
		// (TestReviewEdges2KeepLastUnreadableAfterEtcdLoss: it stayed on
		// the local rule, the key unreadable).
		w.lostUndecided = false
		if !w.decided {
			w.pending, w.started, w.unreadable = true, time.Now(), false
			w.refuseLocked(startCause)
		}
	}
	w.mu.Unlock()
	var views sync.WaitGroup
	views.Go(func() { w.publishViews(ctx, sess) })
	views.Go(func() { w.followDrains(ctx) })
	defer func() {
		cancel()
		views.Wait()
	}()

	key := WriterKey(w.c.opts.Prefix, w.cluster)
	for ctx.Err() == nil {
		get, cancelGet := context.WithTimeout(ctx, opTimeout)
		resp, err := w.c.client.Get(get, key)
		cancelGet()
		if err != nil {
			if ctx.Err() == nil {
				w.readFailed(gen, key, err)
			}
			if !sleepCtx(ctx, retryInterval) {
				return
			}
			continue
		}
		var bad error
		for _, kv := range resp.Kvs {
			bad = w.apply(gen, kv.Value)
		}
		if len(resp.Kvs) == 0 {
			w.noDecision(gen)
		}
		if bad != nil {
			w.readFailed(gen, key, bad)
			if w.isPending() {
				// Read again until the value is a decision (the decider
				// may replace it, or an operator), for the refusal's
				// window: a watch would wait for the next change.
				if !sleepCtx(ctx, retryInterval) {
					return
				}
				continue
			}
		} else {
			w.readOK()
		}
		// From the revision read on: every later change, in order. The
		// channel closes (or reports an error) on compaction, a lost etcd
		// leader or the end of ctx: read again, then watch again.
		wch := w.c.client.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				switch ev.Type {
				case clientv3.EventTypePut:
					if err := w.apply(gen, ev.Kv.Value); err != nil {
						w.readFailed(gen, key, err)
					} else {
						w.readOK()
					}
				case clientv3.EventTypeDelete:
					w.readOK() // an unreadable value is gone with it
					w.c.log.Warn("fleet: writer decision deleted: keeping the last one applied", "cluster", w.cluster, "epoch", w.lastEpoch())
				}
			}
		}
		if !sleepCtx(ctx, retryInterval/5) {
			return
		}
	}
}

// apply hands a published decision to the cluster, unless the session it
// was read in is no longer the one the watch follows (the EtcdLost policy
// may have applied since). A value that is no decision is not applied:
// apply returns why (an errUnreadable).
func (w *watch) apply(gen uint64, value []byte) error {
	d, err := parseDecision(value)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gen != gen || gen == 0 {
		return nil
	}
	w.applyLocked(d)
	return nil
}

// errUnreadable: a writer key's value is no decision.
var errUnreadable = errors.New("unreadable writer decision")

// parseDecision decodes the value of a writer key. A value that is not the
// JSON of a Decision, or has no epoch (the fleet publishes none below 1:
// "{}" or "null" decode to an empty decision, which would hand the cluster
// to the local rule while the other routers keep the fleet's writer), is
// no decision: the error matches errUnreadable.
func parseDecision(value []byte) (Decision, error) {
	var d Decision
	if err := json.Unmarshal(value, &d); err != nil {
		return d, fmt.Errorf("%w: %w", errUnreadable, err)
	}
	if d.Epoch == 0 {
		return d, fmt.Errorf("%w %.200q: no epoch (the fleet publishes none below 1)", errUnreadable, value)
	}
	return d, nil
}

// readWarnEvery is how often a watch repeats its warning while reads of
// the writer key go on failing.
const readWarnEvery = 30 * time.Second

// readFailed records a read of the writer key that failed while the
// session lasts: an etcd error (permission denied, a request timed out)
// or a value that is no decision. It warns at once while the start-up
// refusal is in force, or for a value that is no decision; otherwise (a
// router that keeps the decision it applied) once the failures have lasted
// the lease; then every readWarnEvery. While the start-up refusal is in
// force, the refusal's cause says why, and once LeaseTTL has passed since
// Watch (the window after which the EtcdLost policy applies to a router
// without etcd), unreadableTooLong applies. Once a decision was applied,
// only RefuseWrites acts on failures that last the lease: it refuses
// writes until a read succeeds (readRefused).
func (w *watch) readFailed(gen uint64, key string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	msg := err.Error()
	if w.readErr == "" {
		w.readErrSince, w.readWarned = now, time.Time{}
	}
	changed := msg != w.readErr
	w.readErr = msg
	undecodable := errors.Is(err, errUnreadable)
	since := now.Sub(w.readErrSince)
	if (w.pending || undecodable || since >= w.c.opts.LeaseTTL) && (w.readWarned.IsZero() || now.Sub(w.readWarned) >= readWarnEvery) {
		w.readWarned = now
		what := "fleet: cannot read the writer decision: decisions published meanwhile are not followed"
		switch {
		case w.pending:
			what = "fleet: cannot read the writer decision: writes refused until it is read"
		case undecodable:
			what = "fleet: cannot read the writer decision: the last decision applied stays"
		}
		w.c.log.Warn(what, "cluster", w.cluster, "key", key, "err", err, "failing_for", since.Round(time.Millisecond))
	} else {
		w.c.log.Debug("fleet: reading the writer decision", "cluster", w.cluster, "key", key, "err", err)
	}
	if w.gen != gen || gen == 0 {
		return
	}
	if !w.pending {
		// A decision was applied (or the local rule). Under RefuseWrites,
		// reads that fail for longer than the lease leave the router, live,
		// without the fleet's word, as etcd's loss does: the fleet may move
		// the writer meanwhile (TestReviewEdges2RefuseWritesDecidedThenUnreadable).
		if w.c.opts.EtcdLost == RefuseWrites && since >= w.c.opts.LeaseTTL && (!w.readRefused || changed) {
			if !w.readRefused {
				w.c.log.Error("fleet: writer decision unreadable for longer than the lease: writes refused until it is read (EtcdLost refuse)",
					"cluster", w.cluster, "key", key, "err", err)
			}
			w.readRefused = true
			w.refuseLocked(fmt.Sprintf("fleet: the writer decision at %s could not be read for longer than the lease (%v), etcd answering: %v: writes refused until it is read (EtcdLost refuse)",
				key, w.c.opts.LeaseTTL, err))
		}
		return
	}
	if time.Since(w.started) >= w.c.opts.LeaseTTL {
		w.unreadableTooLong(key, err, changed)
		return
	}
	if changed {
		w.refuseLocked(fmt.Sprintf("%s; reading %s: %s", startCause, key, msg))
	}
}

// unreadableTooLong ends the start-up refusal's window: the writer key
// could not be read for LeaseTTL since Watch, etcd answering. This router
// is live in the fleet and the other routers follow etcd: the local rule
// could make a second writer (a node the fleet moved off, back and
// writable) while they write to the fleet's writer. So, unlike for a
// router without etcd, no policy hands the cluster to the local rule
// (LocalDecisions did: two writers without any fault,
// TestReviewEdges2LocalDecisionsUnreadableKeyTwoWriters): KeepLastDecision
// and LocalDecisions keep the last decision if there is one (a cluster
// rebuilt by a Reload: the one its earlier watch applied) and otherwise,
// as RefuseWrites, keep refusing writes until a read succeeds. w.mu is
// held.
func (w *watch) unreadableTooLong(key string, err error, changed bool) {
	first := !w.unreadable
	w.unreadable = true
	policy := w.c.opts.EtcdLost
	why := fmt.Sprintf("fleet: the writer decision at %s could not be read for longer than the lease (%v), etcd answering: %v", key, w.c.opts.LeaseTTL, err)
	switch {
	case policy != RefuseWrites && w.inherited != nil:
		w.c.log.Warn("fleet: writer decision unreadable for longer than the lease: keeping the last decision (EtcdLost "+policy.String()+")",
			"cluster", w.cluster, "key", key, "err", err, "writer", w.inherited.Writer, "epoch", w.inherited.Epoch)
		w.applyLocked(*w.inherited)
	default:
		if first {
			w.c.log.Error("fleet: writer decision unreadable for longer than the lease: writes stay refused until it is read (EtcdLost "+policy.String()+")",
				"cluster", w.cluster, "key", key, "err", err)
		}
		if first || changed {
			tail := "writes refused until it is read (EtcdLost refuse)"
			if policy != RefuseWrites {
				tail = "writes refused until it is read (EtcdLost " + policy.String() + ": no decision to keep, and the other routers follow etcd)"
			}
			w.refuseLocked(why + ": " + tail)
		}
	}
}

// refuseLocked renews the start-up refusal with another cause; w.mu is
// held.
func (w *watch) refuseLocked(cause string) {
	if err := w.decideLocked(dbrouter.WriterDecision{Epoch: w.epoch, Refuse: true, Cause: cause}); err != nil {
		w.c.log.Error("fleet: start-up refusal not renewed", "cluster", w.cluster, "err", err)
	}
}

// readOK records a read of the writer key that succeeded.
func (w *watch) readOK() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.readRefused {
		// Read, but no decision applied since (the key deleted
		// meanwhile): the last one applied, as a deleted key keeps it.
		w.readRefused = false
		if w.last != nil {
			w.applyLocked(*w.last)
		}
	}
	if w.readErr == "" {
		return
	}
	if !w.readWarned.IsZero() {
		w.c.log.Info("fleet: writer decision read again", "cluster", w.cluster, "failed_for", time.Since(w.readErrSince).Round(time.Millisecond))
	}
	w.readErr, w.readErrSince, w.readWarned = "", time.Time{}, time.Time{}
}

// isPending reports whether the start-up refusal is in force.
func (w *watch) isPending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending
}

// decideLocked hands d to the cluster and records it; w.mu is held.
func (w *watch) decideLocked(d dbrouter.WriterDecision) error {
	if err := w.sink.Decide(d); err != nil {
		return err
	}
	w.handed = d
	return nil
}

// applyLocked hands decision d to the cluster; w.mu is held.
func (w *watch) applyLocked(d Decision) {
	cause := fmt.Sprintf("fleet decision of %s: %s", d.Decider, d.Cause)
	wd := dbrouter.WriterDecision{Writer: d.Writer, Epoch: d.Epoch, Cause: cause}
	if d.Writer != "" && !slices.Contains(w.nodes, d.Writer) {
		// This router's configuration of the cluster lacks the fleet's
		// writer (a configuration not rolled out everywhere yet): writing
		// to any node it has would make a second writer. Refuse writes
		// until the fleet decides a node it has.
		w.c.log.Error("fleet: the fleet's writer is not a node of this router's cluster: writes refused", "cluster", w.cluster, "writer", d.Writer, "epoch", d.Epoch, "nodes", w.nodes)
		wd = dbrouter.WriterDecision{Epoch: d.Epoch, Refuse: true, Cause: fmt.Sprintf(
			"fleet decision of %s names %s, not a node of the cluster in this router's configuration (%s): writes refused until the configurations agree",
			d.Decider, d.Writer, strings.Join(w.nodes, ", "))}
	}
	if err := w.decideLocked(wd); err != nil {
		w.c.log.Error("fleet: writer decision not applied", "cluster", w.cluster, "writer", d.Writer, "epoch", d.Epoch, "err", err)
		return
	}
	w.epoch = max(w.epoch, d.Epoch)
	w.decided, w.pending, w.last, w.readRefused = true, false, &d, false
}

// lastDecision returns the last decision read from etcd and applied (nil:
// none).
func (w *watch) lastDecision() *Decision {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// closed ends a start-up refusal still in force when the coordinator
// closes: nothing can end it any more (no read, no EtcdLost policy), and
// a Watch after Close leaves a cluster on its local rule.
func (w *watch) closed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.pending {
		return
	}
	w.pending = false
	if err := w.decideLocked(dbrouter.WriterDecision{Epoch: w.epoch, Cause: closedCause}); err != nil {
		w.c.log.Error("fleet: start-up refusal not ended", "cluster", w.cluster, "err", err)
	}
}

// closedCause is the cause of the local rule that a coordinator's Close
// hands a cluster still in its start-up refusal.
const closedCause = "fleet: coordinator closed before the writer decision was read: local rule"

// noDecision handles a read of the writer key that found none. While no
// decision was ever applied, the fleet has not decided the cluster's
// writer yet: the read ends the start-up refusal (Watch), or an EtcdLost
// refusal, and the local rule applies until the first decision. Once a
// decision was applied, it changes nothing (a deleted key keeps the last
// decision applied).
func (w *watch) noDecision(gen uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gen != gen || gen == 0 || w.decided {
		return
	}
	d := dbrouter.WriterDecision{Epoch: w.epoch, Cause: "fleet: no writer decision published yet: local rule"}
	if err := w.decideLocked(d); err != nil {
		w.c.log.Error("fleet: start-up refusal not ended", "cluster", w.cluster, "err", err)
		return
	}
	w.pending = false
}

// status returns the watch's part of Coordinator.Status.
func (w *watch) status() ClusterStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return ClusterStatus{Cluster: w.cluster, Writer: w.handed.Writer, Epoch: w.epoch, Refused: w.handed.Refuse,
		Cause: w.handed.Cause, ReadError: w.readErr, ReadErrorSince: w.readErrSince}
}

func (w *watch) lastEpoch() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epoch
}

// applyLost applies the coordinator's EtcdLost policy to the cluster; no
// decision read before is applied after it. It ends the start-up refusal
// (Watch) of a cluster that never had the fleet's word: under
// KeepLastDecision, with no last decision, the local rule applies.
func (w *watch) applyLost() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen = 0
	const why = "fleet: etcd unreachable for longer than the lease"
	var d dbrouter.WriterDecision
	switch w.c.opts.EtcdLost {
	case LocalDecisions:
		d = dbrouter.WriterDecision{Epoch: w.epoch, Cause: why + ": local rule"}
	case RefuseWrites:
		d = dbrouter.WriterDecision{Epoch: w.epoch, Refuse: true, Cause: why + ": writes refused"}
	default:
		if w.decided {
			return // KeepLastDecision: nothing changes
		}
		if in := w.inherited; in != nil {
			// A rebuilt cluster (Reload) whose earlier watch applied a
			// decision: that is the last decision to keep.
			w.applyLocked(*in)
			return
		}
		// No decision was ever read (etcd down since the start): there is
		// no last decision to keep, only the start-up refusal.
		d = dbrouter.WriterDecision{Epoch: w.epoch, Cause: why + ": no writer decision read yet: local rule"}
	}
	if err := w.decideLocked(d); err != nil {
		w.c.log.Error("fleet: EtcdLost policy not applied", "cluster", w.cluster, "policy", w.c.opts.EtcdLost.String(), "err", err)
		return
	}
	w.pending = false
	w.lostUndecided = !w.decided
}

// publishViews publishes the router's view of the cluster under the
// session's lease: at once, whenever a node's state, read_only flag, error
// or this router's writer changes, and at least every third of the lease
// (for fresh positions), while ctx lasts and the watch is the cluster's
// current one.
func (w *watch) publishViews(ctx context.Context, sess *concurrency.Session) {
	key := ViewKey(w.c.opts.Prefix, w.cluster, w.c.opts.RouterID)
	refresh := w.c.opts.LeaseTTL / 3
	var last *View
	var lastPut time.Time
	t := time.NewTicker(w.c.viewPoll)
	defer t.Stop()
	for {
		v := viewOf(w.c.opts.RouterID, w.sink.Stats(), time.Now())
		st := w.status()
		v.Epoch = st.Epoch
		if st.Refused {
			v.Refused = st.Cause
		}
		v.ReadError = st.ReadError
		if (last == nil || !sameView(v, *last) || time.Since(lastPut) >= refresh) && w.isCurrent() {
			b, _ := json.Marshal(v)
			put, cancel := context.WithTimeout(ctx, opTimeout)
			resp, err := w.c.client.Put(put, key, string(b), clientv3.WithLease(sess.Lease()))
			cancel()
			switch {
			case err == nil:
				last, lastPut = &v, time.Now()
				w.viewRev.Store(resp.Header.Revision)
			case ctx.Err() == nil:
				w.c.log.Debug("fleet: publishing the view", "cluster", w.cluster, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// isCurrent reports whether w is the cluster's current watch (not one that
// a later Watch of the same cluster replaced).
func (w *watch) isCurrent() bool {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.watches[w.cluster] == w
}

// stop ends the watch and, if it was the cluster's current one, removes
// the router's view of the cluster, in the background: stop does not wait
// for etcd, which may not answer (Router.Close would wait opTimeout per
// cluster). The removal is conditional on the view being the one this
// watch published, so that it cannot remove the view of a later Watch of
// the same cluster; Close abandons it (revoking the lease removes the
// view anyway).
func (w *watch) stop() {
	w.cancel()
	<-w.done
	c := w.c
	c.mu.Lock()
	defer c.mu.Unlock()
	current := c.watches[w.cluster] == w
	if current {
		delete(c.watches, w.cluster)
	}
	rev := w.viewRev.Load()
	if !current || c.sess == nil || c.closed || rev == 0 {
		return
	}
	key := ViewKey(c.opts.Prefix, w.cluster, c.opts.RouterID)
	c.wg.Add(1) // under c.mu, before Close's Wait: Close sets closed under c.mu first
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, opTimeout)
		defer cancel()
		_, err := c.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpDelete(key)).Commit()
		if err != nil && c.ctx.Err() == nil {
			c.log.Debug("fleet: removing the view", "cluster", w.cluster, "err", err)
		}
	}()
}

// sleepCtx waits for d or until ctx ends; it reports whether ctx lasts.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// viewOf turns a router's ClusterStats into the View it publishes.
func viewOf(router string, st dbrouter.ClusterStats, now time.Time) View {
	v := View{Router: router, At: now.UTC(), Writer: st.Writer, Nodes: make([]NodeView, len(st.Nodes))}
	for i, n := range st.Nodes {
		v.Nodes[i] = NodeView{
			Addr:     n.Addr,
			State:    n.State.String(),
			ReadOnly: n.ReadOnly,
			GTID:     n.GTIDPosition,
			Error:    n.LastError,
			Drained:  n.Drained,
			// A node the router has not probed yet (its probes start with
			// the cluster's first use) shows as Up with nothing else.
			Probed: n.LastProbeLatency > 0 || n.ConsecutiveFailures > 0 || n.LastError != "" || n.GTIDPosition != "",
		}
	}
	return v
}

// sameView reports whether v says the same as o about what the decider
// reads, positions aside (those are refreshed every third of the lease).
func sameView(v, o View) bool {
	if v.Writer != o.Writer || v.Epoch != o.Epoch || v.Refused != o.Refused || (v.ReadError == "") != (o.ReadError == "") || len(v.Nodes) != len(o.Nodes) {
		return false
	}
	for i, n := range v.Nodes {
		m := o.Nodes[i]
		if n.Addr != m.Addr || n.State != m.State || n.ReadOnly != m.ReadOnly || n.Probed != m.Probed || n.Drained != m.Drained || (n.Error == "") != (m.Error == "") {
			return false
		}
	}
	return true
}
