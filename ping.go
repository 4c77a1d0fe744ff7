package dbrouter

import (
	"context"
	"time"
)

// PingContext checks that the cluster has a writer that answers, as
// sql.DB.PingContext checks a database. It pings the writer and, should
// that fail, the next nodes in write order, with the failover rules of a
// read: a ping writes nothing, so whatever its failure it moves on to the
// next node, and the failure counts against the node's health as a failed
// call does. It returns nil once a node answered.
//
// Its errors all match ErrNotSent (a ping applies nothing): a *NoNodeError
// (Op OpPing) when no node answered, listing each node's failure; an error
// that also matches ctx's error when ctx ended first; one that also matches
// ErrClosed on a closed or retired cluster. A ping does not wait for a
// failback in progress. Like any call it starts the cluster's probes.
func (c *Cluster) PingContext(ctx context.Context) (err error) {
	if c.observer != nil {
		var t *Trace
		var start time.Time
		ctx, t, start = c.observeStart(ctx)
		defer func() { c.observeDone(ctx, OpPing, t, start, err) }()
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.leave()
	return c.attempts(ctx, OpPing, false, true, func(ctx context.Context, n *node) (bool, error) {
		return false, n.db().PingContext(ctx) // not sent: a ping applies nothing
	})
}
