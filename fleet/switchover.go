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
// when the fleet has no decision for the cluster yet, when a
// SwitchoverWith of the cluster is under way (SwitchoverKey), when to is
// already the writer or is drained (DrainKey), or when to is not Up and writable
// in a majority of the views of live routers that have probed every node,
// or is read-only in any of them. by names who asks, for the
// decision's cause and Decider fields.
//
// Switchover itself does not touch the nodes: nothing makes the old writer
// read-only, and a router whose new writer cannot reach the old writer's
// position within its fence's second switches anyway. SwitchoverWith adds
// those steps.
func Switchover(ctx context.Context, cli *clientv3.Client, prefix, cluster, to, by string) (Decision, error) {
	return SwitchoverWith(ctx, cli, prefix, cluster, to, by, nil)
}

// DefaultSwitchoverCatchUpTimeout bounds, by default, SwitchoverOptions.CatchUp,
// as dbrouter.DefaultCatchUpTimeout bounds a single router's switchover.
const DefaultSwitchoverCatchUpTimeout = 5 * time.Second

// DefaultSwitchoverDemoteTimeout bounds, by default, SwitchoverOptions.Demote
// (SET GLOBAL read_only waits for the tables locked and the writing
// statements running on the node).
const DefaultSwitchoverDemoteTimeout = 5 * time.Second

// SwitchoverOptions adds to a fleet switchover (SwitchoverWith) the steps
// that touch the nodes. Every hook is optional; SQLHooks returns the three
// for MariaDB and MySQL, from a dbrouter configuration. The zero value (or
// nil) is Switchover's behaviour.
type SwitchoverOptions struct {
	// Demote, when set, is called before the decision is published to make
	// the old writer (addr) refuse writes: SET GLOBAL read_only = ON. The
	// writes routers still send there until they apply the decision are
	// then refused as read-only, with nothing applied (a router with
	// dbrouter's FailoverWait retries them on the new writer once it has
	// switched), instead of landing on a node that is about to stop being
	// the writer. It is bounded by DemoteTimeout and ctx. An error refuses
	// the switchover, after Promote (it does not say whether read_only
	// was set).
	Demote func(ctx context.Context, cluster, addr string) error

	// Promote, when set, undoes Demote (SET GLOBAL read_only = OFF) when
	// the switchover is refused after Demote was called: Demote or CatchUp
	// failed, or the decision could not be published while the old writer
	// still holds the role. It is not called when the stored decision
	// names another writer by then (the decider moved the writer off a
	// node Down for a majority): the old writer stays read-only. Its error
	// is added to the refusal.
	Promote func(ctx context.Context, cluster, addr string) error

	// CatchUp, when set, is called after Demote and before the decision is
	// published: it returns nil once node to holds every transaction of
	// node from (MASTER_GTID_WAIT on MariaDB), within its ctx, which ends
	// after CatchUpTimeout. An error refuses the switchover: the writer
	// stays, and Promote undoes Demote.
	CatchUp func(ctx context.Context, cluster, from, to string) error

	// CatchUpTimeout bounds CatchUp; zero means
	// DefaultSwitchoverCatchUpTimeout.
	CatchUpTimeout time.Duration

	// DemoteTimeout bounds Demote and Promote; zero means
	// DefaultSwitchoverDemoteTimeout.
	DemoteTimeout time.Duration
}

// SwitchoverWith is Switchover with the steps of opts: after the checks
// (the same refusals as Switchover), opts.Demote makes the old writer
// read-only, opts.CatchUp waits until the target holds the old writer's
// position, and only then is the decision published by its compare-and-swap.
// This is the single router's fence (dbrouter.Cluster.Switchover) applied
// to the whole fleet: once the old writer is read-only, no router can get a
// write applied on it while the routers move one by one, and no router
// moves to a target that lacks a write the old writer acknowledged. While
// the hooks run it holds the cluster's SwitchoverKey under a lease, so
// that the decider, seeing the writer read-only, leaves it to the
// switchover (if the caller never finishes, the lease ends a few seconds
// after the longest the steps may take: twice DemoteTimeout and twice
// the 2 s SQLHooks may take beyond it to kill a statement that outlived
// it, plus CatchUpTimeout, plus 5 s). The key is created only if absent: while
// another SwitchoverWith of the cluster holds it, this one is refused
// before any hook runs.
//
// When Demote or CatchUp fails (or panics: the panic goes on after the
// undo), or the decision cannot be published while
// the stored decision still names the old writer, opts.Promote undoes the
// demotion and SwitchoverWith refuses (ErrSwitchoverRefused, saying why):
// the writer stays. Before it returns, it waits (up to 5 s) until no live
// router's view shows the old writer read-only any more: the decider,
// free again, would otherwise move the writer off it on those views. When the decision was replaced meanwhile by one naming
// to (the decider saw the old writer read-only and chose to itself), that
// decision is returned with a nil error; when it names another node, the
// old writer is left read-only (the fleet moved off it) and the switchover
// is refused. A nil opts is Switchover.
func SwitchoverWith(ctx context.Context, cli *clientv3.Client, prefix, cluster, to, by string, opts *SwitchoverOptions) (Decision, error) {
	if opts == nil {
		opts = &SwitchoverOptions{}
	}
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
		clientv3.OpGet(SwitchoverKey(prefix, cluster)),
	).Commit()
	if err != nil {
		return Decision{}, fmt.Errorf("fleet: switchover of cluster %q: reading etcd: %w", cluster, err)
	}
	wr := resp.Responses[0].GetResponseRange().Kvs
	if len(wr) == 0 {
		return refuse("the fleet has not decided its writer yet (each router uses its local rule)")
	}
	// As the routers and the decider read it: a value that is not the
	// JSON of a decision, or has no epoch, is no decision — the routers
	// keep the writer they use, which is not the one it may name: that
	// one is not the old writer to demote and wait for
	// (TestReviewEdges2SwitchoverOverDecisionWithoutEpoch).
	cur, err := parseDecision(wr[0].Value)
	if errors.Is(err, errUnreadable) {
		return refuse("the value at %s is no writer decision (%v): the routers do not follow it, and the decider replaces it with one; switch over once it has", wkey, err)
	}
	if err != nil {
		return Decision{}, fmt.Errorf("fleet: switchover of cluster %q: the decision at %s: %w", cluster, wkey, err)
	}
	if cur.Writer == to {
		return refuse("%s is already the writer (epoch %d)", to, cur.Epoch)
	}
	if len(resp.Responses[3].GetResponseRange().Kvs) > 0 {
		return refuse("%s is drained (dbrouter undrain first)", to)
	}
	if kvs := resp.Responses[4].GetResponseRange().Kvs; len(kvs) > 0 {
		// A SwitchoverWith is under way: publishing now would move the
		// writer under its hooks (its undo could then be skipped or wrong).
		var other SwitchoverRecord
		json.Unmarshal(kvs[0].Value, &other)
		return refuse("another switchover is under way (%s to %s, by %s at %s)", other.From, other.To, other.By, other.At.Format(time.RFC3339))
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
	demoted := false
	// undo promotes the old writer back, when it was demoted, and says
	// how that went, for the refusal.
	undo := func() string {
		if !demoted || opts.Promote == nil {
			if demoted {
				return fmt.Sprintf("; %s may still be read-only (no Promote hook)", cur.Writer)
			}
			return ""
		}
		// The caller's ctx may be what ended: the undo gets its own bound.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), demoteBound(opts))
		defer cancel()
		// The decider may have moved the writer meanwhile (the old one
		// Down for a majority): the old writer must then stay read-only,
		// or two nodes take writes. Unreadable, the decision is taken to
		// be unchanged (nothing was published by this call).
		if resp, err := cli.Get(uctx, wkey); err == nil && len(resp.Kvs) > 0 {
			if now, err := parseDecision(resp.Kvs[0].Value); err == nil && now.Writer != cur.Writer {
				return fmt.Sprintf("; the writer is now %s (epoch %d, %s): %s stays read-only", now.Writer, now.Epoch, now.Cause, cur.Writer)
			}
		}
		if err := opts.Promote(uctx, cluster, cur.Writer); err != nil {
			return fmt.Sprintf("; making %s writable again failed, it may still be read-only: %v", cur.Writer, err)
		}
		// Routers that probed it meanwhile publish it read-only: the
		// switchover key is held until they see it writable again, or
		// the decider, once it is gone, would move the writer off it.
		if n := awaitWritableInViews(context.WithoutCancel(ctx), cli, prefix, cluster, cur.Writer, undoSettle); n > 0 {
			return fmt.Sprintf("; %s is writable again, but %d routers still saw it read-only after %v: the decider may move the writer", cur.Writer, n, undoSettle)
		}
		return fmt.Sprintf("; %s is writable again", cur.Writer)
	}
	if opts.Demote != nil || opts.CatchUp != nil {
		// The decider would move a read-only writer on its own: it is
		// told, under a lease that ends it if this call never does.
		release, err := holdSwitchover(ctx, cli, prefix, cluster, SwitchoverRecord{From: cur.Writer, To: to, By: by, At: time.Now().UTC()}, opts)
		if errors.Is(err, errSwitchoverBusy) {
			return refuse("%v", err)
		}
		if err != nil {
			return Decision{}, fmt.Errorf("fleet: switchover of cluster %q: storing %s: %w", cluster, SwitchoverKey(prefix, cluster), err)
		}
		defer release()
		// A hook that panics still has the demotion undone (while the key
		// is held) before the panic goes on.
		defer func() {
			if p := recover(); p != nil {
				undo()
				panic(p)
			}
		}()
	}
	if opts.Demote != nil {
		dctx, cancel := context.WithTimeout(ctx, demoteBound(opts))
		demoted = true // neither an error nor a panic says whether read_only was set
		err := opts.Demote(dctx, cluster, cur.Writer)
		cancel()
		if err != nil {
			return refuse("making the writer %s read-only: %v%s", cur.Writer, err, undo())
		}
	}
	if opts.CatchUp != nil {
		bound := opts.CatchUpTimeout
		if bound <= 0 {
			bound = DefaultSwitchoverCatchUpTimeout
		}
		cctx, cancel := context.WithTimeout(ctx, bound)
		err := opts.CatchUp(cctx, cluster, cur.Writer, to)
		cancel()
		if err != nil {
			return refuse("%s did not catch up with %s within %v: %v%s", to, cur.Writer, bound, err, undo())
		}
	}
	put, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(wkey), "=", wr[0].ModRevision)).
		Then(clientv3.OpPut(wkey, string(val))).
		Commit()
	if err != nil {
		// Perhaps written: only a stored decision still naming the old
		// writer may have the demotion undone.
		return afterFailedPut(ctx, cli, wkey, cluster, cur, to, fmt.Sprintf("writing the decision: %v", err), undo)
	}
	if !put.Succeeded {
		return afterFailedPut(ctx, cli, wkey, cluster, cur, to, "another decision was published meanwhile", undo)
	}
	return d, nil
}

// holdSwitchover stores rec at the cluster's SwitchoverKey under a new
// lease that outlives every step of the switchover by a few seconds; the
// function it returns revokes it (the key goes with it).
func holdSwitchover(ctx context.Context, cli *clientv3.Client, prefix, cluster string, rec SwitchoverRecord, opts *SwitchoverOptions) (func(), error) {
	bound := opts.CatchUpTimeout
	if bound <= 0 {
		bound = DefaultSwitchoverCatchUpTimeout
	}
	// Demote, CatchUp, and on a refusal Promote and the wait for the
	// views, with a few seconds to spare; SQLHooks' Demote and Promote may
	// each outlast DemoteTimeout by killBound (killConn).
	ttl := int64((2*(demoteBound(opts)+killBound)+bound+undoSettle)/time.Second) + 5
	lease, err := cli.Grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		cli.Revoke(rctx, lease.ID) // failing that, the lease ends on its own
	}
	val, _ := json.Marshal(rec)
	// Create-only: a second switchover of the cluster while one holds the
	// key would demote the writer again, and the first one's undo could
	// make it writable while the second publishes.
	key := SwitchoverKey(prefix, cluster)
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease.ID))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		release()
		return nil, err
	}
	if !resp.Succeeded {
		release()
		var other SwitchoverRecord
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			json.Unmarshal(kvs[0].Value, &other)
		}
		return nil, fmt.Errorf("%w: another switchover is under way (%s to %s, by %s at %s)", errSwitchoverBusy,
			other.From, other.To, other.By, other.At.Format(time.RFC3339))
	}
	return release, nil
}

// errSwitchoverBusy is holdSwitchover's error when the key is held.
var errSwitchoverBusy = errors.New("switchover key held")

// undoSettle bounds how long a refused SwitchoverWith, after Promote,
// waits for the live routers' views to show the old writer writable again.
const undoSettle = 5 * time.Second

// awaitWritableInViews waits, for at most bound, until no live router's
// view of cluster shows node addr read-only; it returns how many still
// do (0: none).
func awaitWritableInViews(ctx context.Context, cli *clientv3.Client, prefix, cluster, addr string, bound time.Duration) int {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	prefix = cleanPrefix(prefix)
	n := -1
	for {
		resp, err := cli.Txn(ctx).Then(
			clientv3.OpGet(prefix+"routers/", clientv3.WithPrefix()),
			clientv3.OpGet(ViewsPrefix(prefix, cluster), clientv3.WithPrefix()),
		).Commit()
		if err == nil {
			n = 0
			for _, v := range liveViews(ViewsPrefix(prefix, cluster), resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs) {
				if slices.ContainsFunc(v.Nodes, func(nv NodeView) bool { return nv.Addr == addr && nv.ReadOnly }) {
					n++
				}
			}
			if n == 0 {
				return 0
			}
		}
		select {
		case <-ctx.Done():
			return max(n, 1)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// demoteBound is opts.DemoteTimeout or its default.
func demoteBound(opts *SwitchoverOptions) time.Duration {
	if opts.DemoteTimeout > 0 {
		return opts.DemoteTimeout
	}
	return DefaultSwitchoverDemoteTimeout
}

// afterFailedPut ends a switchover whose compare-and-swap did not succeed
// (or whose outcome is unknown): it reads the stored decision and returns it
// when it names to (ours written after all, or the decider's, made after the
// old writer became read-only); refuses, undoing the demotion, when it still
// names the old writer; and refuses, leaving the old writer read-only,
// when it names another node or cannot be read.
func afterFailedPut(ctx context.Context, cli *clientv3.Client, wkey, cluster string, cur Decision, to, why string, undo func() string) (Decision, error) {
	refuse := func(format string, args ...any) (Decision, error) {
		return Decision{}, fmt.Errorf("%w: cluster %q: %s", ErrSwitchoverRefused, cluster, fmt.Sprintf(format, args...))
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(rctx, wkey)
	if err != nil || len(resp.Kvs) == 0 {
		return refuse("%s, and the stored decision cannot be read (%v): %s may be read-only; look at dbrouter status", why, err, cur.Writer)
	}
	now, err := parseDecision(resp.Kvs[0].Value)
	if err != nil {
		return refuse("%s, and the stored value is no decision (%v): %s may be read-only", why, err, cur.Writer)
	}
	switch now.Writer {
	case to:
		return now, nil
	case cur.Writer:
		return refuse("%s (epoch %d, writer %s); try again%s", why, now.Epoch, now.Writer, undo())
	}
	return refuse("%s: the writer is now %s (epoch %d, %s); %s stays read-only", why, now.Writer, now.Epoch, now.Cause, cur.Writer)
}
