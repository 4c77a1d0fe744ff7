// Package otel reports a dbrouter Router's calls to OpenTelemetry, following
// the database client semantic conventions: each call is recorded in the
// histogram db.client.operation.duration (seconds) with db.system.name
// ("mariadb" or "mysql"), db.namespace, server.address, server.port and,
// when it failed, error.type; and each call is a client span with one
// event per failed attempt (node and error class), so that a trace shows a
// failover: the write that failed on the old writer and succeeded on the
// next node. docs/observability.md describes the attributes.
package otel

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/dbrouter/dbrouter"
	otelapi "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/dbrouter/dbrouter/otel"

// The attribute keys the Observer sets — those of the semantic conventions
// and the router's own —, the name of a span event of a failed attempt, and
// the name of the histogram. Each failed attempt's event carries the
// node, the error class and exception.message; its time is the end of
// the call, as the router does not time attempts one by one.
const (
	AttrDBSystemName   = attribute.Key("db.system.name")
	AttrDBNamespace    = attribute.Key("db.namespace")
	AttrServerAddress  = attribute.Key("server.address")
	AttrServerPort     = attribute.Key("server.port")
	AttrErrorType      = attribute.Key("error.type")
	AttrCluster        = attribute.Key("dbrouter.cluster")
	AttrOperation      = attribute.Key("dbrouter.operation")
	AttrOutcome        = attribute.Key("dbrouter.outcome")
	AttrNode           = attribute.Key("dbrouter.node")
	AttrErrorClass     = attribute.Key("dbrouter.error.class")
	EventAttemptFailed = "dbrouter.attempt_failed"
	MetricCallDuration = "db.client.operation.duration"
	defaultSystemName  = "mariadb"
)

// Options configures an Observer. The zero value uses the global providers
// of go.opentelemetry.io/otel, which do nothing until the program sets
// them.
type Options struct {
	// TracerProvider makes the spans; nil means otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the histogram; nil means otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Namespace is db.namespace: the database the router's connections
	// use (Settings.Database). Empty leaves it out.
	Namespace string
	// SystemName is db.system.name until a probe has told a node's
	// server: "mariadb" (the default) or "mysql".
	SystemName string
}

// Observer is a dbrouter.Observer that reports calls to OpenTelemetry. Set
// it as Config.Observer. It is safe for concurrent use.
type Observer struct {
	dbrouter.NopObserver // the other measurements are the Prometheus adapter's

	tracer    trace.Tracer
	duration  metric.Float64Histogram
	namespace string
	system    string
	servers   sync.Map // node address → "mariadb" or "mysql", from probes
}

// New returns an Observer that uses the providers of opts.
func New(opts Options) (*Observer, error) {
	tp, mp := opts.TracerProvider, opts.MeterProvider
	if tp == nil {
		tp = otelapi.GetTracerProvider()
	}
	if mp == nil {
		mp = otelapi.GetMeterProvider()
	}
	switch opts.SystemName {
	case "":
		opts.SystemName = defaultSystemName
	case "mariadb", "mysql":
	default:
		return nil, fmt.Errorf("dbrouter/otel: Options.SystemName %q: want \"mariadb\" or \"mysql\"", opts.SystemName)
	}
	h, err := mp.Meter(ScopeName).Float64Histogram(MetricCallDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Duration of database client operations."),
		// The buckets the semantic conventions recommend.
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))
	if err != nil {
		return nil, fmt.Errorf("dbrouter/otel: %w", err)
	}
	return &Observer{tracer: tp.Tracer(ScopeName), duration: h, namespace: opts.Namespace, system: opts.SystemName}, nil
}

// CallDone records the call's duration and its span, with one event per
// failed attempt, for dbrouter.Observer.
func (o *Observer) CallDone(ctx context.Context, c dbrouter.CallInfo) {
	attrs := make([]attribute.KeyValue, 0, 9)
	attrs = append(attrs, AttrDBSystemName.String(o.systemOf(c.Node)), AttrCluster.String(c.Cluster),
		AttrOperation.String(string(c.Op)), AttrOutcome.String(string(c.Outcome)))
	if o.namespace != "" {
		attrs = append(attrs, AttrDBNamespace.String(o.namespace))
	}
	if c.Node != "" {
		if host, port, err := net.SplitHostPort(c.Node); err == nil {
			attrs = append(attrs, AttrServerAddress.String(host))
			if p, err := strconv.Atoi(port); err == nil {
				attrs = append(attrs, AttrServerPort.Int(p))
			}
		}
	}
	if c.Err != nil {
		attrs = append(attrs, AttrErrorType.String(string(c.Outcome)))
	}
	o.duration.Record(ctx, c.Duration.Seconds(), metric.WithAttributes(attrs...))

	_, span := o.tracer.Start(ctx, string(c.Op)+" "+c.Cluster, trace.WithTimestamp(c.Start),
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	if !span.IsRecording() {
		span.End()
		return
	}
	for _, a := range c.Attempts {
		span.AddEvent(EventAttemptFailed, trace.WithTimestamp(c.Start.Add(c.Duration)), trace.WithAttributes(
			AttrNode.String(a.Node), AttrErrorClass.String(a.Class.String()), attribute.String("exception.message", a.Err.Error())))
	}
	if c.Outcome == dbrouter.OutcomeUnknown && c.Node != "" {
		span.AddEvent(EventAttemptFailed, trace.WithTimestamp(c.Start.Add(c.Duration)), trace.WithAttributes(
			AttrNode.String(c.Node), AttrErrorClass.String(dbrouter.ClassOutcomeUnknown.String())))
	}
	if c.Err != nil {
		span.SetStatus(codes.Error, c.Err.Error())
	}
	span.End(trace.WithTimestamp(c.Start.Add(c.Duration)))
}

// ProbeDone learns each node's server (MariaDB or MySQL) for
// db.system.name, for dbrouter.Observer.
func (o *Observer) ProbeDone(p dbrouter.ProbeInfo) {
	if p.Server == "" {
		return
	}
	if v, ok := o.servers.Load(p.Node); !ok || v.(string) != p.Server {
		o.servers.Store(p.Node, p.Server)
	}
}

// systemOf returns db.system.name for a node.
func (o *Observer) systemOf(node string) string {
	if v, ok := o.servers.Load(node); ok {
		return v.(string)
	}
	return o.system
}

var _ dbrouter.Observer = (*Observer)(nil)
