// Package fleet makes a fleet of dbrouter routers — one per app server —
// agree on one writer per cluster, and share their configuration, through
// etcd.
//
// Without it each router decides alone by the local rule (see the root
// package's WriterSource), and under a one-sided partition two routers can
// write to two different nodes of one ring. With it, every router
// publishes its view of each node under a lease of its own; one decider
// at a time (an etcd election) changes a cluster's writer, only on
// evidence that the writer is gone for the fleet; the decision is
// published with a compare-and-swap; and every router follows it through
// its failback fence.
package fleet
