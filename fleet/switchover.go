package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrSwitchoverRefused is matched by the error of a Switchover that
// published nothing: the fleet has no decision for the cluster yet, the
// target is not Up and writable in a majority of the live routers' views,
// it already is the writer, or another decision was published meanwhile.
var ErrSwitchoverRefused = errors.New("fleet switchover refused")

// Switchover moves a cluster's writer to node to for the whole fleet, on
// purpose: it publishes a decision naming to, with the next epoch (one
// more than the stored decision's and than every live router's), by a
// compare-and-swap on the cluster's writer key, so that it cannot
// overwrite a decision published meanwhile. Every router follows it through
// its fence (dbrouter.WriterDecision): new writes wait, writes in flight
// end, and the new writer gets up to one second to reach the old writer's
// position before the switch. The decider keeps the decision: it moves a
// writer only when the fleet sees it fail.
//
// It refuses (an error matching ErrSwitchoverRefused, nothing published)
// when the fleet has no decision for the cluster yet, when to is already
// the writer or is drained (DrainKey), or when to is not Up and writable
// in a majority of the views of live routers that have probed every node,
// or is read-only in any of them. by names who asks, for the
// decision's cause and Decider fields.
func Switchover(ctx context.Context, cli *clientv3.Client, prefix, cluster, to, by string) (Decision, error) {
	if err := checkNames(cluster, to); err != nil {
		return Decision{}, err
	}
	prefix = cleanPrefix(prefix)
	refuse := func(format string, args ...any) (Decision, error) {
		return Decision{}, fmt.Errorf("%w: cluster %q: %s", ErrSwitchoverRefused, cluster, fmt.Sprintf(format, args...))
	}
	wkey := WriterKey(prefix, cluster)
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(wkey),
		clientv3.OpGet(prefix+"routers/", clientv3.WithPrefix()),
		clientv3.OpGet(ViewsPrefix(prefix, cluster), clientv3.WithPrefix()),
		clientv3.OpGet(DrainKey(prefix, cluster, to)),
	).Commit()
	if err != nil {
		return Decision{}, fmt.Errorf("fleet: switchover of cluster %q: reading etcd: %w", cluster, err)
	}
	wr := resp.Responses[0].GetResponseRange().Kvs
	if len(wr) == 0 {
		return refuse("the fleet has not decided its writer yet (each router uses its local rule)")
	}
	var cur Decision
	if err := json.Unmarshal(wr[0].Value, &cur); err != nil {
		return Decision{}, fmt.Errorf("fleet: switchover of cluster %q: the decision at %s is not valid JSON: %w", cluster, wkey, err)
	}
	if cur.Writer == to {
		return refuse("%s is already the writer (epoch %d)", to, cur.Epoch)
	}
	if len(resp.Responses[3].GetResponseRange().Kvs) > 0 {
		return refuse("%s is drained (dbrouter undrain first)", to)
	}
	views := liveViews(ViewsPrefix(prefix, cluster), resp.Responses[1].GetResponseRange().Kvs, resp.Responses[2].GetResponseRange().Kvs)
	known := slices.ContainsFunc(views, func(v View) bool {
		return slices.ContainsFunc(v.Nodes, func(n NodeView) bool { return n.Addr == to })
	})
	if !known {
		return refuse("no live router's view names a node %q", to)
	}
	t := countViews(views)
	if t.voters == 0 || 2*t.upRW[to] <= t.voters {
		return refuse("%s is up and writable in %d of %d views that count (a majority is needed)", to, t.upRW[to], t.voters)
	}
	if r := t.readOnly[to]; r != "" {
		// The decider would move the writer off it at once (and demote it).
		return refuse("%s is read-only for router %s", to, r)
	}
	// Above the epochs the live routers applied too, as the decider does:
	// they refuse a lower one (the key may have been rewritten by hand).
	epoch := cur.Epoch
	for _, v := range views {
		epoch = max(epoch, v.Epoch)
	}
	if epoch == math.MaxUint64 {
		return refuse("epoch %d cannot be raised", epoch)
	}
	d := Decision{
		Writer:  to,
		Epoch:   epoch + 1,
		Cause:   fmt.Sprintf("switchover from %s requested by %s", cur.Writer, by),
		Decider: by,
		At:      time.Now().UTC(),
	}
	val, err := json.Marshal(d)
	if err != nil {
		return Decision{}, err
	}
	put, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(wkey), "=", wr[0].ModRevision)).
		Then(clientv3.OpPut(wkey, string(val))).
		Commit()
	if err != nil {
		return Decision{}, fmt.Errorf("fleet: switchover of cluster %q: writing the decision: %w", cluster, err)
	}
	if !put.Succeeded {
		return refuse("another decision was published meanwhile; look at it (dbrouter status) and try again")
	}
	return d, nil
}
