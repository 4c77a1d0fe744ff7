package dbrouter

import (
	"fmt"
	"time"
)

// WriterSource decides the writer of clusters from outside the router, for
// a fleet of routers that must agree on one writer per cluster (an etcd
// implementation is planned as a separate module). Without one, each router
// decides alone by the local rule (docs/design.md §5).
//
// When Config.WriterSource is set, the router calls Watch once for each
// cluster it opens, and the stop function it returns when the cluster
// closes (Router.Close, or a Reload that retires the cluster). A Reload
// keeps an unchanged cluster, with its watch; new and changed clusters are
// watched by the same source (the one given to Open: a reloaded Config's
// WriterSource is ignored, as YAML cannot carry one). Until the source's
// first decision for a cluster, and after a decision with an empty Writer,
// the local rule applies.
type WriterSource interface {
	// Watch starts deciding the writer of the named cluster, whose nodes
	// are given in configured order. It must not block: it reports
	// decisions through sink, from any goroutine, and may read the
	// router's own view of the nodes with sink.Stats to publish it.
	Watch(cluster string, nodes []string, sink WriterSink) (stop func())
}

// WriterSink is a cluster's side of a WriterSource.
type WriterSink interface {
	// Decide applies a decision. It returns an error, and changes
	// nothing, when the decision names a node the cluster does not have or
	// its epoch is lower than that of the last decision applied.
	Decide(WriterDecision) error

	// Stats returns this router's view of the cluster's nodes.
	Stats() ClusterStats
}

// WriterDecision is a WriterSource's decision of a cluster's writer.
//
// While a decision names a writer the router sends writes to that node
// only: it does not fail a write over to another node on its own. When the
// decision changes while the current writer is healthy, the router moves
// the writer role behind its fence (docs/design.md §6): new writes wait,
// writes in flight end, and the new writer gets up to one second to reach
// the old writer's position.
type WriterDecision struct {
	// Writer is the address of the node that is the writer, as
	// Cluster.Nodes spells it; "" hands the decision back to the router's
	// local rule. A node drained on this router (Cluster.Drain, or
	// through NodeDrainer) becomes the writer all the same: the routers of
	// a fleet must write to the same node, and the source's decision wins
	// (a warning is logged; under a read policy that spreads reads, reads
	// still avoid it; under ReadWriter they go to the writer).
	Writer string

	// Epoch orders decisions: one with a lower epoch than the last one
	// applied is refused.
	Epoch uint64

	// Cause says why, for events and logs.
	Cause string

	// Refuse, with an empty Writer, says that no node is the writer: the
	// router sends no write anywhere (writes, BeginTx and Conn fail at
	// once with a *NoNodeError matching ErrNoNode and ErrNotSent, each
	// node listed as refused; statements on a Writer pool or an earlier
	// Conn are refused as not sent) while reads go on as before. A source
	// uses it when it cannot tell which node is the writer and must not
	// let the router guess, e.g. a fleet coordinator that lost its
	// coordination service. The next decision with a Writer, or with
	// neither (the local rule), ends it. A refusal naming a Writer is
	// itself refused with an error.
	Refuse bool
}

// sink is the WriterSink of a cluster.
type sink struct{ c *Cluster }

// Decide applies a WriterSource's decision.
func (s sink) Decide(d WriterDecision) error {
	c := s.c
	i := -1
	if d.Refuse && d.Writer != "" {
		return fmt.Errorf("dbrouter: cluster %q: a writer decision that refuses writes names a writer (%q)", c.name, d.Writer)
	}
	if d.Writer != "" {
		if i = c.nodeIndexByAddr(d.Writer); i < 0 {
			return fmt.Errorf("dbrouter: cluster %q: writer decision names %q, not a node of the cluster (nodes: %v)", c.name, d.Writer, c.Nodes())
		}
	}
	now := time.Now()
	c.mu.Lock()
	if last := c.state.epoch; d.Epoch < last {
		c.unlock()
		return fmt.Errorf("dbrouter: cluster %q: writer decision of epoch %d is older than the last one applied (epoch %d)", c.name, d.Epoch, last)
	}
	drained := i >= 0 && c.state.isDrained(i)
	out := c.state.decideExternal(i, d.Refuse, d.Epoch, d.Cause, now)
	c.publish(out)
	c.unlock()
	c.carryOut(out)
	if drained {
		c.log.Warn("dbrouter: the writer source decided a drained node: it takes the writes all the same (the source decides)",
			"writer", d.Writer, "epoch", d.Epoch)
	}
	return nil
}

// Stats returns the cluster's health as this router sees it.
func (s sink) Stats() ClusterStats { return s.c.Stats() }

// nodeIndexByAddr returns the position of the node with address addr, or
// -1.
func (c *Cluster) nodeIndexByAddr(addr string) int {
	for i, n := range c.nodes {
		if n.addr == addr {
			return i
		}
	}
	return -1
}

// NodeDrainer is implemented by the WriterSink that a router hands to a
// WriterSource: through it a source that coordinates several routers
// drains a node of the cluster (no new call goes to it and it never
// becomes the writer, as with Cluster.Drain, without waiting for the calls
// in flight) or puts it back in service. The source must first move the
// writer role off the node with a decision: SetDrained(addr, true) on the
// current writer returns an error and changes nothing (try again once the
// decision has been applied). The source's drain and the application's
// (Cluster.Drain) are kept apart: a node stays drained until each that
// drained it has undrained it, so SetDrained(addr, false) never puts back
// in service a node the application drained, and a Router.Reload that
// replaces the cluster carries both over. It is safe for concurrent use.
type NodeDrainer interface {
	SetDrained(addr string, on bool) error
}

// SetDrained drains or undrains a node for a WriterSource (NodeDrainer).
func (s sink) SetDrained(addr string, on bool) error {
	verb := "undrain"
	if on {
		verb = "drain"
	}
	return s.c.setDrained(addr, on, drainSource, verb)
}
