package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/dbrouter/dbrouter"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// mvccKV is a key-value pair as etcd returns it.
type mvccKV = mvccpb.KeyValue

// Fleet-wide drain. A drain key, <prefix>drained/<cluster>/<node>, takes a
// node out of service for every router of the fleet:
//
//   - the decider never picks a drained node as writer, and when the
//     writer is drained it publishes a decision that moves the role off it
//     (as for a writer that failed, without Demote): every router follows
//     through its fence;
//   - every router applies the key to its cluster (dbrouter.NodeDrainer,
//     as Cluster.Drain does: no new call goes to the node, reads
//     included) once the node is no longer its writer, and shows it in
//     its view (NodeView.Drained);
//   - deleting the key (Undrain) puts the node back in service for every
//     router; the writer stays where it is (the decider moves a writer
//     only when the fleet sees it fail).

// DrainKey returns the key that drains a node of a cluster for the whole
// fleet.
func DrainKey(prefix, cluster, node string) string {
	return path.Join(prefix, "drained", cluster, node)
}

// DrainedPrefix returns the prefix of a cluster's drain keys.
func DrainedPrefix(prefix, cluster string) string {
	return path.Join(prefix, "drained", cluster) + "/"
}

// checkNames refuses a cluster or node name that is not a plain key
// segment: DrainKey and WriterKey join names with path.Join, which would
// resolve ".." (or an empty name) to another key of the fleet — its
// configuration, a writer decision. A cluster name may contain "/" (its
// segments must then be plain too); a node address may not.
func checkNames(cluster, node string) error {
	bad := func(seg string) bool { return seg == "" || seg == "." || seg == ".." }
	for _, seg := range strings.Split(cluster, "/") {
		if bad(seg) {
			return fmt.Errorf("fleet: cluster name %q is not a plain key segment (empty, \".\" or \"..\" in it)", cluster)
		}
	}
	if bad(node) || strings.Contains(node, "/") {
		return fmt.Errorf("fleet: node %q of cluster %q is not an address (empty, \".\", \"..\" or a \"/\" in it)", node, cluster)
	}
	return nil
}

// DrainRecord is the value of a drain key.
type DrainRecord struct {
	By string    `json:"by"` // who drained the node
	At time.Time `json:"at"`
}

// ErrDrainRefused is matched by the error of a Drain that stored nothing:
// no live router's view names the node, or draining it would leave the
// cluster with no node Up, writable and undrained in a majority of the
// views.
var ErrDrainRefused = errors.New("fleet drain refused")

// Drain takes node out of service for every router of the fleet, by
// storing its drain key (see DrainKey): the decider moves the writer off
// it, and every router stops sending it calls. It returns once the key is
// stored; WaitDrained waits for the fleet to follow. Draining a drained
// node again changes nothing. It refuses (ErrDrainRefused, nothing stored)
// a node no live router's view names, and the writer when no other node is
// Up, writable and not drained in a majority of the views that count. by
// names who asks.
func Drain(ctx context.Context, cli *clientv3.Client, prefix, cluster, node, by string) error {
	if err := checkNames(cluster, node); err != nil {
		return err
	}
	prefix = cleanPrefix(prefix)
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: cluster %q: %s", ErrDrainRefused, cluster, fmt.Sprintf(format, args...))
	}
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(WriterKey(prefix, cluster)),
		clientv3.OpGet(prefix+"routers/", clientv3.WithPrefix()),
		clientv3.OpGet(ViewsPrefix(prefix, cluster), clientv3.WithPrefix()),
		clientv3.OpGet(DrainedPrefix(prefix, cluster), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return fmt.Errorf("fleet: drain of %s in cluster %q: reading etcd: %w", node, cluster, err)
	}
	views := liveViews(ViewsPrefix(prefix, cluster), resp.Responses[1].GetResponseRange().Kvs, resp.Responses[2].GetResponseRange().Kvs)
	if !slices.ContainsFunc(views, func(v View) bool {
		return slices.ContainsFunc(v.Nodes, func(n NodeView) bool { return n.Addr == node })
	}) {
		return refuse("no live router's view names a node %q", node)
	}
	drained := drainedSet(prefix, cluster, resp.Responses[3].GetResponseRange().Kvs)
	if drained[node] {
		return nil
	}
	drained[node] = true
	t := countViews(views)
	maj := t.voters/2 + 1
	var others []string
	for _, v := range views {
		for _, n := range v.Nodes {
			// As the decider's rule: read-only in no view.
			if !drained[n.Addr] && t.upRW[n.Addr] >= maj && t.readOnly[n.Addr] == "" && !slices.Contains(others, n.Addr) {
				others = append(others, n.Addr)
			}
		}
	}
	if len(others) == 0 {
		return refuse("no other node would be up, writable and not drained in a majority of %d views", t.voters)
	}
	val, err := json.Marshal(DrainRecord{By: by, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	if _, err := cli.Put(ctx, DrainKey(prefix, cluster, node), string(val)); err != nil {
		return fmt.Errorf("fleet: drain of %s in cluster %q: %w", node, cluster, err)
	}
	return nil
}

// Undrain deletes node's drain key: every router puts it back in service.
// It reports whether the node was drained. Drain, Undrain and WaitDrained
// refuse a cluster or node name that is not a plain key segment ("", "."
// or "..", a "/" in a node).
func Undrain(ctx context.Context, cli *clientv3.Client, prefix, cluster, node string) (bool, error) {
	if err := checkNames(cluster, node); err != nil {
		return false, err
	}
	resp, err := cli.Delete(ctx, DrainKey(prefix, cluster, node))
	if err != nil {
		return false, fmt.Errorf("fleet: undrain of %s in cluster %q: %w", node, cluster, err)
	}
	return resp.Deleted > 0, nil
}

// DrainState is how far the fleet has followed a drain.
type DrainState struct {
	Writer  string   // the writer decision's node ("" none)
	Pending []string // live routers whose view does not show the node drained yet

	// Read reports whether the state was read from etcd: false when no
	// read succeeded before WaitDrained's ctx ended, and nothing here is
	// known.
	Read bool
	// Epoch and DecidedBy are the writer decision's epoch and who
	// published it (Decision.Decider: the decider's RouterID, or who asked
	// for a switchover); 0 and "" when there is none.
	Epoch     uint64
	DecidedBy string
	// Decider is the elected decider (the RouterID it campaigned with),
	// which moves the writer role off a drained node; "" when none is.
	Decider string
	// DecisionError says why the writer key holds no decision — a value
	// that is not a decision's JSON, or has no epoch: the routers keep the
	// writer they use, or refuse writes, until the decider replaces it —
	// ("" when it is one, or absent); Writer is then "".
	DecisionError string
}

// Done reports whether the node is off the writer role and every live
// router shows it drained.
func (s DrainState) Done(node string) bool { return s.Writer != node && len(s.Pending) == 0 }

// WaitDrained waits until the writer decision names another node than node
// and every live router's view of the cluster shows node drained, or until
// ctx ends; it returns the last state seen, and ctx's error if it ended
// first.
func WaitDrained(ctx context.Context, cli *clientv3.Client, prefix, cluster, node string) (DrainState, error) {
	if err := checkNames(cluster, node); err != nil {
		return DrainState{}, err
	}
	prefix = cleanPrefix(prefix)
	var last DrainState // of the last read that succeeded: what ctx's end reports
	for {
		var st DrainState
		resp, err := cli.Txn(ctx).Then(
			clientv3.OpGet(WriterKey(prefix, cluster)),
			clientv3.OpGet(prefix+"routers/", clientv3.WithPrefix()),
			clientv3.OpGet(ViewsPrefix(prefix, cluster), clientv3.WithPrefix()),
			// concurrency.Election's keys, <election>/<lease>: the
			// oldest is the decider's.
			clientv3.OpGet(ElectionKey(prefix)+"/", clientv3.WithPrefix(),
				clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1)),
		).Commit()
		if err == nil {
			st.Read = true
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
				if d, err := parseDecision(kvs[0].Value); err == nil {
					st.Writer, st.Epoch, st.DecidedBy = d.Writer, d.Epoch, d.Decider
				} else {
					st.DecisionError = err.Error()
				}
			}
			if kvs := resp.Responses[3].GetResponseRange().Kvs; len(kvs) > 0 {
				st.Decider = string(kvs[0].Value)
			}
			for _, v := range liveViews(ViewsPrefix(prefix, cluster), resp.Responses[1].GetResponseRange().Kvs, resp.Responses[2].GetResponseRange().Kvs) {
				if i := slices.IndexFunc(v.Nodes, func(n NodeView) bool { return n.Addr == node }); i >= 0 && !v.Nodes[i].Drained {
					st.Pending = append(st.Pending, v.Router)
				}
			}
			if st.Done(node) {
				return st, nil
			}
			last = st
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			// Not st: a read cut short by ctx's end knows nothing.
			return last, ctx.Err()
		}
	}
}

// liveViews decodes the views whose router has a presence key, read
// under viewsPrefix (ViewsPrefix of one cluster): keys with a "/" after
// it are the views of another cluster, whose name extends this one's
// ("c1/x" beside "c1"), and are skipped.
func liveViews(viewsPrefix string, routers, views []*mvccKV) []View {
	live := map[string]bool{}
	for _, kv := range routers {
		k := string(kv.Key)
		live[k[strings.LastIndexByte(k, '/')+1:]] = true
	}
	var out []View
	for _, kv := range views {
		router, ok := strings.CutPrefix(string(kv.Key), viewsPrefix)
		if !ok || strings.Contains(router, "/") {
			continue
		}
		var v View
		if json.Unmarshal(kv.Value, &v) != nil || !live[router] {
			continue
		}
		v.Router = router
		out = append(out, v)
	}
	return out
}

// drainedSet returns the nodes drained by the given drain keys of cluster.
func drainedSet(prefix, cluster string, kvs []*mvccKV) map[string]bool {
	out := map[string]bool{}
	p := DrainedPrefix(prefix, cluster)
	for _, kv := range kvs {
		if node, ok := strings.CutPrefix(string(kv.Key), p); ok && node != "" {
			out[node] = true
		}
	}
	return out
}

// followDrains applies the cluster's drain keys to the router's cluster
// while ctx lasts: at once, on every change, and every view poll for a
// node it could not drain yet (the router's writer, until the decision
// that moves the role off it is applied). A node drained locally
// (Cluster.Drain) stays so: the cluster keeps the source's drain apart
// from the application's (NodeDrainer), and the source undrains only its
// own.
//
// The first time the watch reads the keys it also undrains, for the
// source, every node no key names: a cluster that a Reload built carries
// over the fleet's drains of the cluster it replaced, and a key deleted
// while this router could not reach etcd would otherwise leave its node
// drained for good, as this watch did not drain it itself.
func (w *watch) followDrains(ctx context.Context) {
	drainer, ok := w.sink.(dbrouter.NodeDrainer)
	if !ok {
		return
	}
	p := DrainedPrefix(w.c.opts.Prefix, w.cluster)
	want := map[string]bool{} // nodes the drain keys name
	if w.drains == nil {
		w.drains = map[string]bool{}
		w.reconcile = true
	}
	applied := w.drains // nodes this watch drained, across sessions
	sync := func() {
		if w.reconcile {
			ok := true
			for _, node := range w.nodes {
				if !want[node] && !applied[node] {
					ok = drainer.SetDrained(node, false) == nil && ok
				}
			}
			w.reconcile = !ok
		}
		for node := range want {
			if applied[node] || !slices.Contains(w.nodes, node) {
				continue
			}
			if err := drainer.SetDrained(node, true); err == nil {
				applied[node] = true
				w.c.log.Info("fleet: node drained", "cluster", w.cluster, "node", node)
			}
		}
		for node := range applied {
			if want[node] {
				continue
			}
			if err := drainer.SetDrained(node, false); err != nil {
				w.c.log.Warn("fleet: undrain failed", "cluster", w.cluster, "node", node, "err", err)
				continue
			}
			delete(applied, node)
			w.c.log.Info("fleet: node undrained", "cluster", w.cluster, "node", node)
		}
	}
	t := time.NewTicker(w.c.viewPoll)
	defer t.Stop()
	for ctx.Err() == nil {
		get, cancel := context.WithTimeout(ctx, opTimeout)
		resp, err := w.c.client.Get(get, p, clientv3.WithPrefix())
		cancel()
		if err != nil {
			if !sleepCtx(ctx, retryInterval) {
				return
			}
			continue
		}
		want = drainedSet(w.c.opts.Prefix, w.cluster, resp.Kvs)
		sync()
		wch := w.c.client.Watch(clientv3.WithRequireLeader(ctx), p, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	events:
		for {
			select {
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil {
					break events // read again, then watch again
				}
				for _, ev := range wr.Events {
					node := strings.TrimPrefix(string(ev.Kv.Key), p)
					want[node] = ev.Type == clientv3.EventTypePut
					if !want[node] {
						delete(want, node)
					}
				}
				sync()
			case <-t.C:
				sync()
			case <-ctx.Done():
				return
			}
		}
		if !sleepCtx(ctx, retryInterval/5) {
			return
		}
	}
}
