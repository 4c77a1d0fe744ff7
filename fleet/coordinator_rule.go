package fleet

import (
	"fmt"
	"slices"
)

// This file is the decider's rule, as a pure function of what etcd holds:
// the cluster's nodes, its current decision and the views of the live
// routers. docs/fleet.md states it for operators.

// verdict is what the rule says of a cluster.
type verdict struct {
	change bool     // publish next
	next   Decision // Writer, GTID and Cause; the decider sets the rest
	demote string   // the old writer, to make read-only before publishing ("" none)
	stuck  string   // why the writer must change but cannot ("" when not so)
}

// tally is what the live routers' views say of a cluster's nodes.
type tally struct {
	voters    int            // views in which the router has probed every node
	named     map[string]int // node → views that list it (their router's configuration has it)
	upRW      map[string]int // node → views in which it is Up and writable
	down      map[string]int // node → views in which it is Down
	readOnly  map[string]string
	writerOf  map[string]int      // node → views whose router writes to it
	positions map[string]position // node → the most advanced position any view saw
}

// countViews tallies the views of one cluster. A view counts only once
// its router has probed every node (its first probe round has ended):
// before that, a node it has not probed yet shows as Up.
func countViews(views []View) tally {
	t := tally{named: map[string]int{}, upRW: map[string]int{}, down: map[string]int{}, readOnly: map[string]string{},
		writerOf: map[string]int{}, positions: map[string]position{}}
	for _, v := range views {
		if len(v.Nodes) == 0 || slices.ContainsFunc(v.Nodes, func(n NodeView) bool { return !n.Probed }) {
			continue
		}
		t.voters++
		if v.Writer != "" {
			t.writerOf[v.Writer]++
		}
		for _, n := range v.Nodes {
			t.named[n.Addr]++
			switch {
			case n.State == "up" && n.ReadOnly:
				if _, seen := t.readOnly[n.Addr]; !seen {
					t.readOnly[n.Addr] = v.Router
				}
			case n.State == "up":
				t.upRW[n.Addr]++
			case n.State == "down":
				t.down[n.Addr]++
			}
			if n.GTID != "" {
				if p, err := parsePosition(n.GTID); err == nil {
					q := t.positions[n.Addr]
					q.merge(p)
					t.positions[n.Addr] = q
				}
			}
		}
	}
	return t
}

// decideWriter applies the decider's rule to a cluster with the given
// nodes (in configured order), current decision (nil: none yet) and views
// of live routers:
//
//   - With no decision yet, once some router has probed every node: the node
//     that the most views' routers write to by their local rule (ties: the
//     first in order), if it is Up and writable in a majority of views;
//     else the first such node in order.
//   - With a decision, the writer changes only when it is read-only in
//     some view (where it is Up: a fresh probe said so), or Down in a
//     majority of views, or no longer a node of the cluster for a majority
//     of views (their routers' configurations dropped it: the decider's
//     own node list alone is one router's opinion, perhaps not reloaded
//     yet). Suspect never counts: it is one failed probe or call.
//   - The new writer is the first node in order that is Up and writable in
//     a majority of views, read-only in none, and whose position (the most advanced any view
//     saw) contains the old writer's last known position (likewise, and
//     the decision's); if none does, the first Up and writable one in a
//     majority. With none, the decision stays (stuck says why).
//
// A majority is more than half of the views in which the router has probed
// every node of the cluster: a router that has not used the cluster yet (or
// whose first probe round has not ended) has no say.
//
// A drained node (drained, from the drain keys: see DrainKey) is never
// chosen, and a drained writer is moved off as one that failed, without
// demoting it (it is healthy: an operator takes it out of service) — except
// that when no candidate holds its position, the one that lacks the fewest
// of its transactions takes over (ties: the first in order).
func decideWriter(nodes []string, cur *Decision, views []View, drained map[string]bool) verdict {
	t := countViews(views)
	if t.voters == 0 {
		return verdict{}
	}
	maj := t.voters/2 + 1
	// A node read-only in one view (a fresh probe) is not writable, even
	// if older views of a majority still say it is: as the writer it
	// would be moved off again at once.
	eligible := func(a string) bool { return t.upRW[a] >= maj && t.readOnly[a] == "" && !drained[a] }
	if cur == nil || cur.Writer == "" {
		best := ""
		for _, a := range nodes {
			if eligible(a) && (best == "" || t.writerOf[a] > t.writerOf[best]) {
				best = a
			}
		}
		if best == "" {
			return verdict{stuck: fmt.Sprintf("no node is up and writable for a majority (%d) of %d routers", maj, t.voters)}
		}
		return verdict{change: true, next: Decision{Writer: best, GTID: t.positions[best].String(), Cause: fmt.Sprintf(
			"first decision: %s is up and writable for %d of %d routers, and the writer of %d",
			best, t.upRW[best], t.voters, t.writerOf[best])}}
	}

	w := cur.Writer
	var gone string
	switch {
	case t.named[w] < maj:
		gone = fmt.Sprintf("%s is no longer a node of the cluster (named by %d of %d routers)", w, t.named[w], t.voters)
	case t.readOnly[w] != "":
		gone = fmt.Sprintf("%s is read-only (router %s)", w, t.readOnly[w])
	case t.down[w] >= maj:
		gone = fmt.Sprintf("%s is down for %d of %d routers", w, t.down[w], t.voters)
	case drained[w]:
		gone = fmt.Sprintf("%s is drained (dbrouter drain)", w)
	default:
		return verdict{}
	}
	old := t.positions[w]
	if cur.GTID != "" {
		if p, err := parsePosition(cur.GTID); err == nil {
			old.merge(p)
		}
	}
	first, holder := "", ""
	for _, a := range nodes {
		if a == w || !eligible(a) {
			continue
		}
		if first == "" {
			first = a
		}
		if t.positions[a].contains(old) {
			holder = a
			break
		}
	}
	next := holder
	why := fmt.Sprintf("%s; %s holds its last known position %q", gone, holder, old.String())
	switch {
	case holder == "" && drained[w] && first != "":
		// A drained writer is healthy and goes on taking writes until
		// the routers switch, which give the new writer one second to
		// catch up: the candidate closest to it, not the first in order.
		best := first
		for _, a := range nodes {
			if a != w && eligible(a) && t.positions[a].lacks(old) < t.positions[best].lacks(old) {
				best = a
			}
		}
		next = best
		why = fmt.Sprintf("%s; no node up and writable for a majority holds its last known position %q: the one that lacks the fewest of its transactions (%d), %s",
			gone, old.String(), t.positions[best].lacks(old), best)
	case holder == "":
		next = first
		why = fmt.Sprintf("%s; no node up and writable for a majority holds its last known position %q: the first such node, %s", gone, old.String(), first)
	}
	if next == "" {
		return verdict{stuck: fmt.Sprintf("%s, but no other node is up and writable for a majority (%d) of %d routers", gone, maj, t.voters)}
	}
	v := verdict{change: true, next: Decision{Writer: next, GTID: t.positions[next].String(), Cause: why}}
	if slices.Contains(nodes, w) && !drained[w] {
		v.demote = w
	}
	return v
}
