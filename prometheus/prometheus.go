// Package prometheus exports a dbrouter Router's metrics to Prometheus: a
// Collector that is both the router's Observer (counters and histograms
// of calls, failed attempts, retries, transaction re-runs, writer and state
// changes, probes, fence waits, dropped events and reloads) and a
// prometheus.Collector that reads the levels — the writer, each node's
// state, read_only flag, replication lag and pool statistics — from
// Router.Stats when it is scraped. docs/observability.md lists every
// metric; docs/grafana-dashboard.json is a dashboard built on them.
package prometheus

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dbrouter/dbrouter"
	prom "github.com/prometheus/client_golang/prometheus"
)

// Namespace is the prefix of every metric name.
const Namespace = "dbrouter"

// StatsSource is what the Collector reads the levels from at each scrape:
// a *dbrouter.Router.
type StatsSource interface {
	Stats() []dbrouter.ClusterStats
}

// Collector collects a router's metrics. Set it as Config.Observer before
// dbrouter.Open, tell it the router with SetRouter, and register it with a
// prometheus.Registerer. A Collector serves one router; the Collectors of
// two routers registered in one registry collide (AlreadyRegisteredError):
// register each through prometheus.WrapRegistererWith with a label of its
// own. It is safe for concurrent use.
type Collector struct {
	dbrouter.NopObserver // for methods added to Observer later

	src atomic.Pointer[StatsSource]

	// The series of each cluster, operation and outcome, found without
	// hashing label values or allocating on every call.
	seriesMu sync.RWMutex
	byCall   map[callKey]callSeries

	calls          *prom.CounterVec
	callDuration   *prom.HistogramVec
	failedAttempts *prom.CounterVec
	retries        *prom.CounterVec
	txReruns       *prom.CounterVec
	writerChanges  *prom.CounterVec
	stateChanges   *prom.CounterVec
	probeDuration  *prom.HistogramVec
	probeFailures  *prom.CounterVec
	fenceWait      *prom.HistogramVec
	eventsDropped  prom.Counter
	reloads        *prom.CounterVec

	// writerOf is each cluster's writer as the last writer event said:
	// a Reload that replaces a Cluster makes the new one choose its first
	// writer again (an event from ""), which is no change when it picks
	// the same node.
	writerMu sync.Mutex
	writerOf map[string]string

	writer, nodeState, readOnly, lag, up *prom.Desc
	poolGauges                           []poolDesc
}

// poolDesc is one pool statistic: its description, its type and how to
// read it.
type poolDesc struct {
	desc *prom.Desc
	typ  prom.ValueType
	get  func(p dbrouter.PoolStats) float64
}

// New returns a Collector with no router yet: until SetRouter, a scrape
// reports only the counters and histograms.
func New() *Collector {
	ns := Namespace
	nodeLabels := []string{"cluster", "node"}
	c := &Collector{
		calls: prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "calls_total",
			Help: "Calls by cluster, operation and outcome (ok, server_error, not_sent, outcome_unknown, no_node)."},
			[]string{"cluster", "op", "outcome"}),
		callDuration: prom.NewHistogramVec(prom.HistogramOpts{Namespace: ns, Name: "call_duration_seconds",
			Help:    "Duration of calls, failover and fence waits included, by cluster and operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}},
			[]string{"cluster", "op"}),
		failedAttempts: prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "failed_attempts_total",
			Help: "Failed attempts of calls on a node, by error class (not_sent, outcome_unknown, read_only)."},
			[]string{"cluster", "node", "class"}),
		retries: prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "retries_total",
			Help: "Transparent retries: failed attempts after which the call was tried on the next node, by the class of the failure."},
			[]string{"cluster", "class"}),
		txReruns: prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "tx_reruns_total",
			Help: "Transactions that RunInTx ran again, by reason (connection_lost, read_only, deadlock, commit_not_sent)."},
			[]string{"cluster", "reason"}),
		writerChanges: prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "writer_changes_total",
			Help: "Changes of a cluster's writer, by cause (see CauseLabel)."},
			[]string{"cluster", "cause"}),
		stateChanges: prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "node_state_changes_total",
			Help: "Changes of a node's health state, by the state it entered (up, suspect, down)."},
			[]string{"cluster", "node", "state"}),
		probeDuration: prom.NewHistogramVec(prom.HistogramOpts{Namespace: ns, Name: "probe_duration_seconds",
			Help:    "Duration of health probes, good or bad.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
			nodeLabels),
		probeFailures: prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "probe_failures_total",
			Help: "Health probes that failed."}, nodeLabels),
		fenceWait: prom.NewHistogramVec(prom.HistogramOpts{Namespace: ns, Name: "fence_wait_seconds",
			Help:    "Time writes waited at the failback fence while a fenced failback or switchover held it.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5}},
			[]string{"cluster"}),
		eventsDropped: prom.NewCounter(prom.CounterOpts{Namespace: ns, Name: "events_dropped_total",
			Help: "Events the OnEvent queue had no room for (the callback is too slow)."}),
		reloads: prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "config_reloads_total",
			Help: "Router.Reload calls, by result (success, failure)."}, []string{"result"}),

		writer: prom.NewDesc(ns+"_writer", "1 for the node that is the cluster's writer, 0 for every other node.", nodeLabels, nil),
		nodeState: prom.NewDesc(ns+"_node_state", "1 for the node's current health state, 0 for the others.",
			[]string{"cluster", "node", "state"}, nil),
		up:       prom.NewDesc(ns+"_node_up", "1 when the node's state is up, 0 when suspect or down.", nodeLabels, nil),
		readOnly: prom.NewDesc(ns+"_node_read_only", "The node's read_only flag at its last good probe (1 on, 0 off).", nodeLabels, nil),
		lag: prom.NewDesc(ns+"_replication_lag_seconds",
			"Time since a probe last found the node holding every transaction of the writer (0 for the writer; absent when unknown).", nodeLabels, nil),
	}
	poolLabels := []string{"cluster", "node", "pool"}
	pd := func(name, help string, typ prom.ValueType, get func(p dbrouter.PoolStats) float64) poolDesc {
		return poolDesc{desc: prom.NewDesc(ns+"_pool_"+name, help, poolLabels, nil), typ: typ, get: get}
	}
	c.poolGauges = []poolDesc{
		pd("max_open_connections", "Maximum number of open connections of the pool (0: unlimited).", prom.GaugeValue,
			func(p dbrouter.PoolStats) float64 { return float64(p.MaxOpenConnections) }),
		pd("open_connections", "Established connections of the pool, in use and idle.", prom.GaugeValue,
			func(p dbrouter.PoolStats) float64 { return float64(p.OpenConnections) }),
		pd("in_use_connections", "Connections of the pool in use.", prom.GaugeValue,
			func(p dbrouter.PoolStats) float64 { return float64(p.InUse) }),
		pd("idle_connections", "Idle connections of the pool.", prom.GaugeValue,
			func(p dbrouter.PoolStats) float64 { return float64(p.Idle) }),
		pd("wait_count_total", "Connections waited for because the pool was at its maximum.", prom.CounterValue,
			func(p dbrouter.PoolStats) float64 { return float64(p.WaitCount) }),
		pd("wait_duration_seconds_total", "Total time spent waiting for a connection of the pool.", prom.CounterValue,
			func(p dbrouter.PoolStats) float64 { return p.WaitDuration.Seconds() }),
		pd("max_idle_closed_total", "Connections closed because of the pool's idle limit.", prom.CounterValue,
			func(p dbrouter.PoolStats) float64 { return float64(p.MaxIdleClosed) }),
		pd("max_idle_time_closed_total", "Connections closed because they were idle too long.", prom.CounterValue,
			func(p dbrouter.PoolStats) float64 { return float64(p.MaxIdleTimeClosed) }),
		pd("max_lifetime_closed_total", "Connections closed because of their maximum lifetime.", prom.CounterValue,
			func(p dbrouter.PoolStats) float64 { return float64(p.MaxLifetimeClosed) }),
	}
	c.eventsDropped.Add(0)
	return c
}

// SetRouter makes the Collector report the levels of src (a
// *dbrouter.Router) at each scrape.
func (c *Collector) SetRouter(src StatsSource) { c.src.Store(&src) }

// vecs are the Collector's own counters and histograms.
func (c *Collector) vecs() []prom.Collector {
	return []prom.Collector{c.calls, c.callDuration, c.failedAttempts, c.retries, c.txReruns, c.writerChanges,
		c.stateChanges, c.probeDuration, c.probeFailures, c.fenceWait, c.eventsDropped, c.reloads}
}

// Describe sends the descriptions of every metric, for
// prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prom.Desc) {
	for _, v := range c.vecs() {
		v.Describe(ch)
	}
	for _, d := range []*prom.Desc{c.writer, c.nodeState, c.up, c.readOnly, c.lag} {
		ch <- d
	}
	for _, p := range c.poolGauges {
		ch <- p.desc
	}
}

var states = []dbrouter.NodeState{dbrouter.StateUp, dbrouter.StateSuspect, dbrouter.StateDown}

// Collect sends the counters and histograms, and the levels read from the
// router's Stats, for prometheus.Collector.
func (c *Collector) Collect(ch chan<- prom.Metric) {
	for _, v := range c.vecs() {
		v.Collect(ch)
	}
	src := c.src.Load()
	if src == nil {
		return
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, cs := range (*src).Stats() {
		cs.Name, cs.Writer = labelValue(cs.Name), labelValue(cs.Writer)
		for _, n := range cs.Nodes {
			n.Addr = labelValue(n.Addr)
			ch <- prom.MustNewConstMetric(c.writer, prom.GaugeValue, b2f(n.Addr == cs.Writer && cs.Writer != ""), cs.Name, n.Addr)
			for _, s := range states {
				ch <- prom.MustNewConstMetric(c.nodeState, prom.GaugeValue, b2f(n.State == s), cs.Name, n.Addr, s.String())
			}
			ch <- prom.MustNewConstMetric(c.up, prom.GaugeValue, b2f(n.State == dbrouter.StateUp), cs.Name, n.Addr)
			ch <- prom.MustNewConstMetric(c.readOnly, prom.GaugeValue, b2f(n.ReadOnly), cs.Name, n.Addr)
			if n.Lag >= 0 {
				ch <- prom.MustNewConstMetric(c.lag, prom.GaugeValue, n.Lag.Seconds(), cs.Name, n.Addr)
			}
			for _, p := range n.Pools {
				for _, g := range c.poolGauges {
					ch <- prom.MustNewConstMetric(g.desc, g.typ, g.get(p), cs.Name, n.Addr, p.Pool)
				}
			}
		}
	}
}

// labelValue returns s as a label value: Prometheus refuses label values
// that are not valid UTF-8, and one such value made every scrape fail;
// invalid bytes become U+FFFD. dbrouter.Open refuses such cluster names,
// but any code may call the Collector's Observer methods.
func labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// classLabel is an error class as a label value.
func classLabel(c dbrouter.ErrorClass) string {
	switch c {
	case dbrouter.ClassNotSent:
		return "not_sent"
	case dbrouter.ClassOutcomeUnknown:
		return "outcome_unknown"
	case dbrouter.ClassServerError:
		return "server_error"
	case dbrouter.ClassReadOnly:
		return "read_only"
	}
	return "unknown"
}

// OpLabel is an operation as a label value: its name, with "_" for blanks
// ("exec", "query", "begin", "statement_on_a_pinned_connection", ...).
func OpLabel(op dbrouter.Op) string {
	switch op {
	case dbrouter.OpExec, dbrouter.OpQuery, dbrouter.OpBegin, dbrouter.OpConn, dbrouter.OpPing, dbrouter.OpConnect:
		return string(op)
	}
	b := []byte(op)
	for i, ch := range b {
		if ch == ' ' {
			b[i] = '_'
		}
	}
	return string(b)
}

// callKey names the series of a call.
type callKey struct {
	cluster string
	op      dbrouter.Op
	outcome dbrouter.Outcome
}

// callSeries are the series a call adds to.
type callSeries struct {
	calls    prom.Counter
	duration prom.Observer
}

// series returns the series of call ci, making them on first use.
func (c *Collector) series(ci dbrouter.CallInfo) callSeries {
	k := callKey{ci.Cluster, ci.Op, ci.Outcome}
	c.seriesMu.RLock()
	s, ok := c.byCall[k]
	c.seriesMu.RUnlock()
	if ok {
		return s
	}
	op := OpLabel(ci.Op)
	s = callSeries{calls: c.calls.WithLabelValues(labelValue(ci.Cluster), op, string(ci.Outcome)),
		duration: c.callDuration.WithLabelValues(labelValue(ci.Cluster), op)}
	c.seriesMu.Lock()
	if c.byCall == nil {
		c.byCall = make(map[callKey]callSeries)
	}
	c.byCall[k] = s
	c.seriesMu.Unlock()
	return s
}

// CallDone counts the call, its duration, its failed attempts and its
// transparent retries, for dbrouter.Observer.
func (c *Collector) CallDone(_ context.Context, ci dbrouter.CallInfo) {
	s := c.series(ci)
	s.calls.Inc()
	s.duration.Observe(ci.Duration.Seconds())
	if len(ci.Attempts) == 0 && ci.Outcome != dbrouter.OutcomeUnknown {
		return
	}
	for i, a := range ci.Attempts {
		class := classLabel(a.Class)
		c.failedAttempts.WithLabelValues(labelValue(ci.Cluster), labelValue(a.Node), class).Inc()
		// Each failed attempt was retried on the next node, but the last
		// one of a call no node could take.
		if ci.Outcome != dbrouter.OutcomeNoNode || i < len(ci.Attempts)-1 {
			c.retries.WithLabelValues(labelValue(ci.Cluster), class).Inc()
		}
	}
	if ci.Outcome == dbrouter.OutcomeUnknown && ci.Node != "" {
		c.failedAttempts.WithLabelValues(labelValue(ci.Cluster), labelValue(ci.Node), "outcome_unknown").Inc()
	}
}

// Event counts writer changes and node state changes, for
// dbrouter.Observer. A writer change is counted once: when a Reload
// replaces a Cluster, the new Cluster's first choice of the node that was
// the writer already is not counted, and that of another node is counted
// with cause "reload".
func (c *Collector) Event(ev dbrouter.Event) {
	switch ev.Kind {
	case dbrouter.EventWriter:
		c.writerMu.Lock()
		prev, known := c.writerOf[ev.Cluster]
		if c.writerOf == nil {
			c.writerOf = make(map[string]string)
		}
		c.writerOf[ev.Cluster] = ev.To
		c.writerMu.Unlock()
		cause := CauseLabel(ev)
		if known && ev.From == "" && prev != "" {
			// The first choice of a Cluster that a Reload put in place of
			// one that had a writer.
			if ev.To == prev {
				return // the same writer: no change
			}
			cause = "reload"
		}
		c.writerChanges.WithLabelValues(labelValue(ev.Cluster), cause).Inc()
	case dbrouter.EventState:
		c.stateChanges.WithLabelValues(labelValue(ev.Cluster), labelValue(ev.Node), ev.To).Inc()
	}
}

// CauseLabel returns the cause of a writer change (an Event of kind
// EventWriter) as one of a few label values, since Event.Cause is text
// that names nodes and positions: "first_choice" (the first writer, or
// one chosen when there was none), "writer_down", "writer_suspect",
// "writer_read_only" (the writer failed or became read-only),
// "no_writer" (no node is up and writable), "failback",
// "switchover", "writer_source" (a WriterSource decided or refuses),
// "drain" or "other". (Collector.Event counts one more cause, "reload".)
func CauseLabel(ev dbrouter.Event) string {
	c := ev.Cause
	switch {
	case strings.HasPrefix(c, "first "):
		return "first_choice"
	case strings.HasPrefix(c, "no node is up"):
		return "no_writer"
	case strings.HasPrefix(c, "failback:"):
		return "failback"
	case strings.HasPrefix(c, "switchover:"):
		if ev.From == "" {
			return "first_choice"
		}
		return "switchover"
	case strings.Contains(c, "writer source"):
		return "writer_source"
	case strings.Contains(c, "Drain"):
		return "drain"
	case strings.HasSuffix(c, "read_only on"):
		return "writer_read_only"
	case strings.Contains(c, " is down,"):
		return "writer_down"
	case strings.Contains(c, " is suspect,"):
		return "writer_suspect"
	}
	return "other"
}

// ProbeDone observes the probe's duration and counts its failure, for
// dbrouter.Observer.
func (c *Collector) ProbeDone(p dbrouter.ProbeInfo) {
	c.probeDuration.WithLabelValues(labelValue(p.Cluster), labelValue(p.Node)).Observe(p.Duration.Seconds())
	if p.Err != nil {
		c.probeFailures.WithLabelValues(labelValue(p.Cluster), labelValue(p.Node)).Inc()
	}
}

// TxRerun counts the re-run, for dbrouter.Observer.
func (c *Collector) TxRerun(cluster, reason string) {
	c.txReruns.WithLabelValues(labelValue(cluster), reason).Inc()
}

// FenceWaited observes the wait, for dbrouter.Observer.
func (c *Collector) FenceWaited(cluster string, d time.Duration) {
	c.fenceWait.WithLabelValues(labelValue(cluster)).Observe(d.Seconds())
}

// EventDropped counts the dropped event, for dbrouter.Observer.
func (c *Collector) EventDropped(dbrouter.Event) { c.eventsDropped.Inc() }

// ReloadDone counts the reload by result, for dbrouter.Observer.
func (c *Collector) ReloadDone(err error) {
	result := "success"
	if err != nil {
		result = "failure"
	}
	c.reloads.WithLabelValues(result).Inc()
}

var (
	_ dbrouter.Observer = (*Collector)(nil)
	_ prom.Collector    = (*Collector)(nil)
)
