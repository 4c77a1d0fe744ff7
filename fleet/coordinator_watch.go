package fleet

import (
	"context"
	"encoding/json"
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
	pending   bool // the start-up refusal (Watch) is in force

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
				w.c.log.Debug("fleet: reading the writer decision", "cluster", w.cluster, "err", err)
			}
			if !sleepCtx(ctx, retryInterval) {
				return
			}
			continue
		}
		for _, kv := range resp.Kvs {
			w.apply(gen, kv.Value)
		}
		if len(resp.Kvs) == 0 {
			w.noDecision(gen)
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
					w.apply(gen, ev.Kv.Value)
				case clientv3.EventTypeDelete:
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
// may have applied since).
func (w *watch) apply(gen uint64, value []byte) {
	var d Decision
	if err := json.Unmarshal(value, &d); err != nil {
		w.c.log.Error("fleet: unreadable writer decision", "cluster", w.cluster, "err", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gen != gen || gen == 0 {
		return
	}
	w.applyLocked(d)
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
	if err := w.sink.Decide(wd); err != nil {
		w.c.log.Error("fleet: writer decision not applied", "cluster", w.cluster, "writer", d.Writer, "epoch", d.Epoch, "err", err)
		return
	}
	w.epoch = max(w.epoch, d.Epoch)
	w.decided, w.pending, w.last = true, false, &d
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
	if err := w.sink.Decide(dbrouter.WriterDecision{Epoch: w.epoch, Cause: closedCause}); err != nil {
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
	if err := w.sink.Decide(d); err != nil {
		w.c.log.Error("fleet: start-up refusal not ended", "cluster", w.cluster, "err", err)
		return
	}
	w.pending = false
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
	if err := w.sink.Decide(d); err != nil {
		w.c.log.Error("fleet: EtcdLost policy not applied", "cluster", w.cluster, "policy", w.c.opts.EtcdLost.String(), "err", err)
		return
	}
	w.pending = false
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
		v.Epoch = w.lastEpoch()
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
	if v.Writer != o.Writer || v.Epoch != o.Epoch || len(v.Nodes) != len(o.Nodes) {
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
