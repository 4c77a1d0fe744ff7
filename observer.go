package dbrouter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Observer receives the router's measurements as they happen, for a
// metrics or tracing system: the adapters in the modules
// github.com/dbrouter/dbrouter/prometheus and github.com/dbrouter/dbrouter/otel
// implement it (docs/observability.md). What is a level rather than an
// event — the writer, each node's state, read_only flag, lag and pool
// statistics — is not reported here: read it from Router.Stats when
// scraped.
//
// Set it as Config.Observer. Its methods are called synchronously, never
// under a lock of the router, and concurrently: CallDone on the caller's
// goroutine as the call returns, ProbeDone on the node's prober, TxRerun
// in RunInTx, FenceWaited on the write that waited (the write is then past
// the fence, so a slow FenceWaited holds up a failback as a slow write
// does), ReloadDone in Reload, and Event and EventDropped on the goroutine
// of the change once the cluster's lock is released, one goroutine at a
// time per cluster, in the order of the changes. They may read the router
// (Stats, WriterAddr) but should not make calls through it. They must be
// fast and must not block: a blocked CallDone holds up its caller, a
// blocked ProbeDone that node's probes, a blocked Event the events after
// it. A panic in a method is recovered and logged ("dbrouter: Observer
// panicked", with the method's name) and goes no further: the call,
// probe or reload goes on as if the method had returned. Embed
// NopObserver to implement only some of them.
type Observer interface {
	// CallDone reports a call of a Cluster (ExecContext, QueryContext,
	// BeginTx, Conn, PingContext, and the connects and statements of
	// Router.OpenDB's *sql.DB) when it returns. ctx is the call's context.
	CallDone(ctx context.Context, c CallInfo)

	// Event reports every event of Config.OnEvent — each writer change
	// once, each node state or read_only change — when it happens, before
	// it is queued for OnEvent and the log. It is never dropped.
	Event(ev Event)

	// ProbeDone reports one health probe of a node.
	ProbeDone(p ProbeInfo)

	// TxRerun reports that Cluster.RunInTx runs a transaction again, and
	// why: one of the TxRerun... reasons.
	TxRerun(cluster string, reason string)

	// FenceWaited reports that a write waited at the failback fence of a
	// cluster (a fenced failback or switchover held it) for d, whether it
	// then passed or its context ended.
	FenceWaited(cluster string, d time.Duration)

	// EventDropped reports an event that the OnEvent queue had no room for
	// (the callback is too slow). The event itself reached Event.
	EventDropped(ev Event)

	// ReloadDone reports the end of Router.Reload, with its error (nil when
	// the new configuration is in force).
	ReloadDone(err error)
}

// The reasons TxRerun reports.
const (
	// TxRerunConnectionLost: the node lost the transaction's connection
	// before its COMMIT was sent.
	TxRerunConnectionLost = "connection_lost"
	// TxRerunReadOnly: the node refused the transaction as read-only.
	TxRerunReadOnly = "read_only"
	// TxRerunDeadlock: the server rolled the transaction back as a
	// deadlock victim.
	TxRerunDeadlock = "deadlock"
	// TxRerunCommitNotSent: the COMMIT provably was not sent.
	TxRerunCommitNotSent = "commit_not_sent"
)

// NopObserver is an Observer that does nothing: embed it in a type to
// implement only some of Observer's methods.
type NopObserver struct{}

// CallDone does nothing.
func (NopObserver) CallDone(context.Context, CallInfo) {}

// Event does nothing.
func (NopObserver) Event(Event) {}

// ProbeDone does nothing.
func (NopObserver) ProbeDone(ProbeInfo) {}

// TxRerun does nothing.
func (NopObserver) TxRerun(string, string) {}

// FenceWaited does nothing.
func (NopObserver) FenceWaited(string, time.Duration) {}

// EventDropped does nothing.
func (NopObserver) EventDropped(Event) {}

// ReloadDone does nothing.
func (NopObserver) ReloadDone(error) {}

// Outcome is the class of a call's result, as CallInfo reports it.
type Outcome string

// The outcomes, in the order OutcomeOf tests them.
const (
	// OutcomeOK: the call succeeded.
	OutcomeOK Outcome = "ok"
	// OutcomeNoNode: no node could take the call (*NoNodeError).
	OutcomeNoNode Outcome = "no_node"
	// OutcomeUnknown: the statement may or may not have been applied
	// (ErrOutcomeUnknown).
	OutcomeUnknown Outcome = "outcome_unknown"
	// OutcomeNotSent: nothing was sent (ErrNotSent): the context ended
	// first, the cluster was closed, a node refused the connection.
	OutcomeNotSent Outcome = "not_sent"
	// OutcomeServerError: a server answered with an error (duplicate key,
	// syntax, ...), or any other error.
	OutcomeServerError Outcome = "server_error"
)

// OutcomeOf returns the outcome class of an error returned by the router:
// OutcomeOK for nil.
func OutcomeOf(err error) Outcome {
	if err == nil {
		return OutcomeOK
	}
	var nn *NoNodeError
	switch {
	case errors.As(err, &nn):
		return OutcomeNoNode
	case errors.Is(err, ErrOutcomeUnknown):
		return OutcomeUnknown
	case errors.Is(err, ErrNotSent):
		return OutcomeNotSent
	}
	return OutcomeServerError
}

// CallInfo describes one call, for Observer.CallDone.
type CallInfo struct {
	Cluster string
	Op      Op
	Outcome Outcome
	// Node is the address of the node that answered (successfully or with
	// a server error), or of the node whose outcome is unknown; "" when
	// no node did.
	Node string
	// Start is when the call began; Duration how long it took, waiting
	// at the failback fence included.
	Start    time.Time
	Duration time.Duration
	// Attempts lists the failed attempts on other nodes, in order, as
	// Trace.Attempts does. Each was retried transparently on the next
	// node, but the last one when Outcome is OutcomeNoNode; a call whose
	// context ended during a retry (OutcomeNotSent, Node "") lists the
	// attempts before it, each retried.
	Attempts []*NodeError
	// Err is the error the call returned, nil on success.
	Err error
}

// ProbeInfo describes one health probe, for Observer.ProbeDone.
type ProbeInfo struct {
	Cluster  string
	Node     string
	Duration time.Duration
	// Server is "mariadb" or "mysql" once the probe has read the server's
	// version, else "".
	Server string
	// Err is the probe's failure, nil when it succeeded.
	Err error
}

// observeStart prepares the observation of a call: when an Observer is
// set, it makes sure ctx carries a Trace for the failover loop to fill in.
// It costs a nil check when no Observer is set.
func (c *Cluster) observeStart(ctx context.Context) (context.Context, *Trace, time.Time) {
	if c.observer == nil {
		return ctx, nil, time.Time{}
	}
	t := traceOf(ctx)
	if t == nil {
		tc := &traceCtx{Context: ctx}
		ctx, t = tc, &tc.t
	}
	return ctx, t, time.Now()
}

// traceCtx is WithTrace's context and its Trace in one allocation, for
// calls observed without a Trace of the caller's.
type traceCtx struct {
	context.Context
	t Trace
}

// Value returns the Trace for traceKey, else the parent's value.
func (c *traceCtx) Value(key any) any {
	if key == (traceKey{}) {
		return &c.t
	}
	return c.Context.Value(key)
}

// observeDone reports a call prepared by observeStart.
func (c *Cluster) observeDone(ctx context.Context, op Op, t *Trace, start time.Time, err error) {
	if c.observer == nil || t == nil {
		return
	}
	defer c.recoverObserver("CallDone")
	node := t.Node
	if node == "" && err != nil {
		node = outcomeUnknownNode(err)
	}
	c.observer.CallDone(ctx, CallInfo{Cluster: c.name, Op: op, Outcome: OutcomeOf(err), Node: node,
		Start: start, Duration: time.Since(start), Attempts: t.Attempts, Err: err})
}

// outcomeUnknownNode returns the node of an *OutcomeUnknownError in err's
// chain, or "".
func outcomeUnknownNode(err error) string {
	var ou *OutcomeUnknownError
	if errors.As(err, &ou) {
		return ou.Node
	}
	return ""
}

// obsItem is an event for Observer.Event, or, when dropped, for
// Observer.EventDropped.
type obsItem struct {
	ev      Event
	dropped bool
}

// unlock releases c.mu and then delivers to the Observer the events that
// the transitions published under it, in the order of the transitions, so
// that an Observer method never runs under c.mu: it may read the router
// (Stats, WriterAddr) without deadlock, and one that panics leaves the
// cluster usable. One goroutine at a time delivers; a goroutine that finds
// another delivering leaves its events to it. c.mu must be held.
func (c *Cluster) unlock() {
	if c.obsFlushing || len(c.obsPending) == 0 {
		c.mu.Unlock()
		return
	}
	c.obsFlushing = true
	for {
		items := c.obsPending
		c.obsPending = nil
		c.mu.Unlock()
		for _, it := range items {
			c.observeEvent(it)
		}
		c.mu.Lock()
		if len(c.obsPending) == 0 {
			c.obsFlushing = false
			c.mu.Unlock()
			return
		}
	}
}

// observeEvent passes one item to the Observer.
func (c *Cluster) observeEvent(it obsItem) {
	if it.dropped {
		defer c.recoverObserver("EventDropped")
		c.observer.EventDropped(it.ev)
	} else {
		defer c.recoverObserver("Event")
		c.observer.Event(it.ev)
	}
}

// recoverObserver, deferred around a call of an Observer method, logs a
// panic of the method and stops it there: the router calls its Observer
// where a panic would leave a write counted in flight, a transaction or a
// pinned connection the caller never got, or events undelivered, or would
// end the program from a prober.
func (c *Cluster) recoverObserver(method string) {
	if p := recover(); p != nil {
		logObserverPanic(c.log, method, p)
	}
}

// logObserverPanic logs a recovered panic of an Observer method.
func logObserverPanic(log *slog.Logger, method string, p any) {
	log.Error("dbrouter: Observer panicked", "method", method, "panic", fmt.Sprint(p))
}

// observeProbe reports a probe of node i.
func (c *Cluster) observeProbe(i int, d time.Duration, mysqlFlavor, flavorKnown bool, err error) {
	if c.observer == nil {
		return
	}
	defer c.recoverObserver("ProbeDone")
	server := ""
	if flavorKnown || err == nil {
		server = "mariadb"
		if mysqlFlavor {
			server = "mysql"
		}
	}
	c.observer.ProbeDone(ProbeInfo{Cluster: c.name, Node: c.nodes[i].addr, Duration: d, Server: server, Err: err})
}

// txRerun reports that run attempt of RunInTx failed with err and, unless
// it was the last, that the transaction runs again.
func (c *Cluster) txRerun(attempt int, err error) {
	if c.observer == nil || attempt >= c.settings.TxAttempts {
		return
	}
	reason := TxRerunConnectionLost
	switch {
	case isDeadlock(err):
		reason = TxRerunDeadlock
	case classify(err, true) == ClassReadOnly:
		reason = TxRerunReadOnly
	case errors.Is(err, ErrNotSent):
		var ne *notSentError
		if errors.As(err, &ne) && ne.op == OpCommit {
			reason = TxRerunCommitNotSent
		}
	}
	defer c.recoverObserver("TxRerun")
	c.observer.TxRerun(c.name, reason)
}

// JoinObservers returns an Observer that passes every measurement to each
// of obs in turn (the nil ones left out), so that the Prometheus and
// OpenTelemetry adapters can be used together; nil when none is left. One
// that panics does not keep the measurement from the others.
func JoinObservers(obs ...Observer) Observer {
	var list multiObserver
	for _, o := range obs {
		if o != nil {
			list = append(list, o)
		}
	}
	switch len(list) {
	case 0:
		return nil
	case 1:
		return list[0]
	}
	return list
}

// multiObserver is JoinObservers' Observer.
type multiObserver []Observer

// each calls f with every Observer in turn; when some panic, the others
// are still called, and the first panic is raised again at the end (the
// router recovers and logs it).
func (m multiObserver) each(f func(o Observer)) {
	var first any
	for _, o := range m {
		func() {
			defer func() {
				if p := recover(); p != nil && first == nil {
					first = p
				}
			}()
			f(o)
		}()
	}
	if first != nil {
		panic(first)
	}
}

func (m multiObserver) CallDone(ctx context.Context, c CallInfo) {
	m.each(func(o Observer) { o.CallDone(ctx, c) })
}

func (m multiObserver) Event(ev Event) { m.each(func(o Observer) { o.Event(ev) }) }

func (m multiObserver) ProbeDone(p ProbeInfo) { m.each(func(o Observer) { o.ProbeDone(p) }) }

func (m multiObserver) TxRerun(cluster, reason string) {
	m.each(func(o Observer) { o.TxRerun(cluster, reason) })
}

func (m multiObserver) FenceWaited(cluster string, d time.Duration) {
	m.each(func(o Observer) { o.FenceWaited(cluster, d) })
}

func (m multiObserver) EventDropped(ev Event) { m.each(func(o Observer) { o.EventDropped(ev) }) }

func (m multiObserver) ReloadDone(err error) { m.each(func(o Observer) { o.ReloadDone(err) }) }
