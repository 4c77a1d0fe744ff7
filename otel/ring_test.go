package otel

// A real-ring failover seen by a tracer: the write that the router moved
// from the killed writer to the next node is one span, with an event for
// the attempt that failed.

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

const ringPassword = "app-secret-Ot3"

// TestRingFailoverSpan kills the idle writer of a real ring and writes in
// a parent span: the router finds the writer's pooled connection dead
// before sending anything, fails to reconnect, and retries on the next
// node. Probes are slow (every 5 s) so that the call, not a probe, finds
// the kill.
func TestRingFailoverSpan(t *testing.T) {
	h := ringtest.New(t, ringtest.Options{Nodes: 3, Password: ringPassword})
	ring := h.Ring(0)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	obs, err := New(Options{TracerProvider: tp, Namespace: "ringtest"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: ringPassword, Database: "ringtest",
			Health: dbrouter.HealthConfig{Interval: 5 * time.Second}},
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
		Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := r.Cluster("ring")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := c.ExecContext(ctx, "CREATE TABLE t (id VARCHAR(64) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if err := ring.Kill(0); err != nil {
		t.Fatal(err)
	}
	pctx, parent := tp.Tracer("test").Start(ctx, "handle request")
	var tr dbrouter.Trace
	_, err = c.ExecContext(dbrouter.WithTrace(pctx, &tr), "INSERT INTO t (id) VALUES ('after-kill')")
	parent.End()
	if err != nil {
		t.Fatalf("write after the kill: %v", err)
	}
	if tr.Node != ring.Addr(1) || len(tr.Attempts) != 1 {
		t.Fatalf("served by %s after %v; want %s after one failure on %s", tr.Node, tr.Attempts, ring.Addr(1), ring.Addr(0))
	}
	var span sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.Name() == "exec ring" && s.Parent().SpanID() == parent.SpanContext().SpanID() {
			span = s
		}
	}
	if span == nil {
		t.Fatal("no span of the write under the parent span")
	}
	for _, ev := range span.Events() {
		t.Logf("span %q event %s %v", span.Name(), ev.Name, ev.Attributes)
	}
	attrs := attribute.NewSet(span.Attributes()...)
	t.Logf("span %q attributes %v", span.Name(), attrs.ToSlice())
	if len(span.Events()) != 1 || span.Events()[0].Name != EventAttemptFailed {
		t.Fatalf("span events %v, want one %s", span.Events(), EventAttemptFailed)
	}
	ev := attribute.NewSet(span.Events()[0].Attributes...)
	if v, _ := ev.Value(AttrNode); v.AsString() != ring.Addr(0) {
		t.Errorf("failed attempt on %v, want %s", v, ring.Addr(0))
	}
	if v, _ := ev.Value(AttrErrorClass); v.AsString() != dbrouter.ClassNotSent.String() {
		t.Errorf("failed attempt class %v, want not sent", v)
	}
	if v, _ := attrs.Value(AttrDBSystemName); v.AsString() != "mariadb" {
		t.Errorf("db.system.name %v, want mariadb", v)
	}
	if v, _ := attrs.Value(AttrOutcome); v.AsString() != "ok" {
		t.Errorf("outcome %v, want ok", v)
	}
}
