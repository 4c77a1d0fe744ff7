package otel

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// newTestObserver returns an Observer over the SDK's in-memory span
// recorder and manual metric reader.
func newTestObserver(t *testing.T) (*Observer, *tracetest.SpanRecorder, *sdkmetric.ManualReader) {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		tp.Shutdown(context.Background())
		mp.Shutdown(context.Background())
	})
	o, err := New(Options{TracerProvider: tp, MeterProvider: mp, Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	return o, spans, reader
}

// histogram returns the data points of db.client.operation.duration.
func histogram(t *testing.T, reader *sdkmetric.ManualReader) []metricdata.HistogramDataPoint[float64] {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == MetricCallDuration {
				if m.Unit != "s" {
					t.Errorf("unit %q, want s", m.Unit)
				}
				return m.Data.(metricdata.Histogram[float64]).DataPoints
			}
		}
	}
	t.Fatalf("no %s", MetricCallDuration)
	return nil
}

func TestCallDone(t *testing.T) {
	t.Parallel()
	o, spans, reader := newTestObserver(t)
	o.ProbeDone(dbrouter.ProbeInfo{Cluster: "ring", Node: "b:3307", Server: "mysql"})
	start := time.Now()
	o.CallDone(context.Background(), dbrouter.CallInfo{Cluster: "ring", Op: dbrouter.OpExec, Outcome: dbrouter.OutcomeOK,
		Node: "b:3307", Start: start, Duration: 3 * time.Millisecond,
		Attempts: []*dbrouter.NodeError{{Node: "a:3306", Class: dbrouter.ClassNotSent, Err: errors.New("connection refused")}}})
	o.CallDone(context.Background(), dbrouter.CallInfo{Cluster: "ring", Op: dbrouter.OpExec, Outcome: dbrouter.OutcomeUnknown,
		Node: "a:3306", Start: start, Duration: time.Millisecond, Err: errors.New("invalid connection")})

	ended := spans.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans, want 2", len(ended))
	}
	s := ended[0]
	if s.Name() != "exec ring" || len(s.Events()) != 1 || s.Events()[0].Name != EventAttemptFailed {
		t.Fatalf("span %q with events %v", s.Name(), s.Events())
	}
	ev := attribute.NewSet(s.Events()[0].Attributes...)
	if v, _ := ev.Value(AttrNode); v.AsString() != "a:3306" {
		t.Errorf("event node %v", v)
	}
	if v, _ := ev.Value(AttrErrorClass); v.AsString() != "not sent" {
		t.Errorf("event class %v", v)
	}
	attrs := attribute.NewSet(s.Attributes()...)
	for k, want := range map[attribute.Key]string{AttrDBSystemName: "mysql", AttrDBNamespace: "shop", AttrServerAddress: "b"} {
		if v, _ := attrs.Value(k); v.AsString() != want {
			t.Errorf("span %s = %v, want %s", k, v, want)
		}
	}
	if v, _ := attrs.Value(AttrServerPort); v.AsInt64() != 3307 {
		t.Errorf("server.port %v", v)
	}
	if got := s.EndTime().Sub(s.StartTime()); got != 3*time.Millisecond {
		t.Errorf("span lasts %v, want 3ms", got)
	}
	u := ended[1]
	if len(u.Events()) != 1 || u.Status().Code.String() != "Error" {
		t.Errorf("outcome-unknown span: events %v status %v", u.Events(), u.Status())
	}

	points := histogram(t, reader)
	if len(points) != 2 {
		t.Fatalf("%d data points, want 2 (ok, outcome unknown)", len(points))
	}
	var sawError bool
	for _, p := range points {
		if v, ok := p.Attributes.Value(AttrErrorType); ok {
			sawError = v.AsString() == "outcome_unknown"
			if sys, _ := p.Attributes.Value(AttrDBSystemName); sys.AsString() != "mariadb" {
				t.Errorf("node a db.system.name %v, want the default mariadb", sys)
			}
		}
	}
	if !sawError {
		t.Errorf("no data point with error.type outcome_unknown: %v", points)
	}
}

func TestNewRejectsUnknownSystem(t *testing.T) {
	t.Parallel()
	if _, err := New(Options{SystemName: "postgresql"}); err == nil {
		t.Fatal("New accepted SystemName postgresql")
	}
}
