package integration

// The observability adapters on real rings: a failover scraped through
// the Prometheus Collector and promhttp, and the same seen by the
// OpenTelemetry Observer's tracer. They live here, not in the adapters'
// modules, so that those modules do not require ringtest and its Docker
// client (docs/testing.md, "Module hygiene").

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	dbotel "github.com/dbrouter/dbrouter/otel"
	dbprom "github.com/dbrouter/dbrouter/prometheus"
	"github.com/dbrouter/dbrouter/ringtest"
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// promScrape returns the text of one scrape of url.
func promScrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s %v", resp.Status, err)
	}
	return string(b)
}

// promSum adds the values of the samples of metric name whose labels contain
// every one of labels (each written as in the exposition: node="a:1").
func promSum(text, name string, labels ...string) float64 {
	var total float64
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			total += v
		}
	}
	return total
}

// promExcerpt returns the lines of text that are samples of the named metrics.
func promExcerpt(text string, names ...string) string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		for _, n := range names {
			if strings.HasPrefix(line, n+"{") || strings.HasPrefix(line, n+" ") {
				b.WriteString(line)
				break
			}
		}
	}
	return b.String()
}

// TestRingFailoverMetrics kills the writer of a real ring under writes and
// checks the scraped counters against what the writers saw: the writer
// change counted once, every outcome-unknown write counted, every
// transparent retry counted.
func TestRingFailoverMetrics(t *testing.T) {
	h := ringtest.New(t, ringtest.Options{Nodes: 3, Password: ringPassword})
	ring := h.Ring(0)
	var writerEvents atomic.Int64
	metrics := dbprom.New()
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: ringPassword, Database: "ringtest"},
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
		OnEvent: func(ev dbrouter.Event) {
			if ev.Kind == dbrouter.EventWriter {
				writerEvents.Add(1)
			}
		},
		Observer: metrics,
	}
	r, err := dbrouter.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	metrics.SetRouter(r)
	reg := prom.NewRegistry()
	reg.MustRegister(metrics)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	c, err := r.Cluster("ring")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := c.ExecContext(ctx, "CREATE TABLE t (pk BIGINT AUTO_INCREMENT PRIMARY KEY, id VARCHAR(64) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if w := c.WriterAddr(); w != ring.Addr(0) {
		t.Fatalf("writer %s, want %s", w, ring.Addr(0))
	}
	before := promScrape(t, srv.URL)
	writersBefore := writerEvents.Load()

	const writers = 4
	var (
		mu       sync.Mutex
		outcomes = map[dbrouter.Outcome]int{}
		retries  int // failed attempts retried on the next node, as the Traces tell
		done     atomic.Int64
		afterOK  atomic.Int64
		killed   atomic.Bool
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				var tr dbrouter.Trace
				cctx, ccancel := context.WithTimeout(dbrouter.WithTrace(ctx, &tr), 5*time.Second)
				_, err := c.ExecContext(cctx, "INSERT INTO t (id) VALUES (?)", fmt.Sprintf("w%d-%d", w, seq))
				ccancel()
				o := dbrouter.OutcomeOf(err)
				if o == dbrouter.OutcomeServerError {
					t.Errorf("write: %v", err)
				}
				var nn *dbrouter.NoNodeError
				n := len(tr.Attempts)
				if tr.Node == "" && errors.As(err, &nn) && n > 0 {
					n-- // the last node tried was not retried
				}
				mu.Lock()
				outcomes[o]++
				retries += n
				mu.Unlock()
				done.Add(1)
				if err == nil && killed.Load() {
					afterOK.Add(1)
				}
			}
		})
	}
	require.Eventually(t, func() bool { return done.Load() >= 100 }, waitTimeout, tick, "100 writes before the kill")
	if err := ring.Kill(0); err != nil {
		t.Fatal(err)
	}
	killed.Store(true)
	require.Eventually(t, func() bool { return c.WriterAddr() == ring.Addr(1) }, waitTimeout, tick, "the writer role on node 1")
	afterKill := promScrape(t, srv.URL)
	t.Logf("/metrics right after the kill (writer moved to %s):\n%s", ring.Addr(1), promExcerpt(afterKill,
		"dbrouter_writer", "dbrouter_node_state", "dbrouter_writer_changes_total", "dbrouter_calls_total",
		"dbrouter_retries_total", "dbrouter_failed_attempts_total", "dbrouter_probe_failures_total",
		"dbrouter_node_state_changes_total", "dbrouter_replication_lag_seconds"))
	require.Eventually(t, func() bool { return afterOK.Load() >= 100 }, waitTimeout, tick, "100 writes after the kill")
	close(stop)
	wg.Wait()
	// The last writes' metrics are recorded before their calls return.
	after := promScrape(t, srv.URL)
	if strings.Contains(after, ringPassword) || strings.Contains(after, "INSERT") {
		t.Errorf("/metrics carries the password or SQL text")
	}

	mu.Lock()
	defer mu.Unlock()
	t.Logf("client side: outcomes %v, transparent retries %d", outcomes, retries)
	delta := func(name string, labels ...string) float64 {
		return promSum(after, name, labels...) - promSum(before, name, labels...)
	}
	if got, want := delta("dbrouter_writer_changes_total"), float64(writerEvents.Load()-writersBefore); got != want || got < 1 {
		t.Errorf("writer changes counted %v, want %v (one per writer event, at least one)", got, want)
	}
	if got := delta("dbrouter_writer_changes_total"); got != 1 {
		t.Errorf("writer changes counted %v during the failover, want 1 (node 0 to node 1)", got)
	}
	if got := delta("dbrouter_writer_changes_total", `cause="writer_suspect"`) + delta("dbrouter_writer_changes_total", `cause="writer_down"`); got != 1 {
		t.Errorf("writer changes with cause writer_suspect or writer_down: %v, want 1", got)
	}
	for _, o := range []dbrouter.Outcome{dbrouter.OutcomeOK, dbrouter.OutcomeUnknown, dbrouter.OutcomeNotSent, dbrouter.OutcomeNoNode} {
		if got, want := delta("dbrouter_calls_total", `op="exec"`, `outcome="`+string(o)+`"`), float64(outcomes[o]); got != want {
			t.Errorf("calls_total{outcome=%q} moved by %v, the writers saw %v", o, got, want)
		}
	}
	if got := delta("dbrouter_retries_total"); got != float64(retries) {
		t.Errorf("retries_total moved by %v, the writers' traces show %d", got, retries)
	}
	if outcomes[dbrouter.OutcomeUnknown]+retries == 0 {
		t.Errorf("no write noticed the kill")
	}
	for _, check := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"dbrouter_writer", []string{`node="` + ring.Addr(1) + `"`}, 1},
		{"dbrouter_writer", []string{`node="` + ring.Addr(0) + `"`}, 0},
		{"dbrouter_node_up", []string{`node="` + ring.Addr(0) + `"`}, 0},
	} {
		if got := promSum(after, check.name, check.labels...); got != check.want {
			t.Errorf("%s%v = %v, want %v", check.name, check.labels, got, check.want)
		}
	}
	if promSum(after, "dbrouter_probe_failures_total", `node="`+ring.Addr(0)+`"`) < 1 {
		t.Errorf("no probe failure counted for the killed node")
	}
	if promSum(after, "dbrouter_pool_open_connections", `node="`+ring.Addr(1)+`"`, `pool="write"`) < 1 {
		t.Errorf("no open connection in node 1's write pool")
	}
}

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
	obs, err := dbotel.New(dbotel.Options{TracerProvider: tp, Namespace: "ringtest"})
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
	if len(span.Events()) != 1 || span.Events()[0].Name != dbotel.EventAttemptFailed {
		t.Fatalf("span events %v, want one %s", span.Events(), dbotel.EventAttemptFailed)
	}
	ev := attribute.NewSet(span.Events()[0].Attributes...)
	if v, _ := ev.Value(dbotel.AttrNode); v.AsString() != ring.Addr(0) {
		t.Errorf("failed attempt on %v, want %s", v, ring.Addr(0))
	}
	if v, _ := ev.Value(dbotel.AttrErrorClass); v.AsString() != dbrouter.ClassNotSent.String() {
		t.Errorf("failed attempt class %v, want not sent", v)
	}
	if v, _ := attrs.Value(dbotel.AttrDBSystemName); v.AsString() != "mariadb" {
		t.Errorf("db.system.name %v, want mariadb", v)
	}
	if v, _ := attrs.Value(dbotel.AttrOutcome); v.AsString() != "ok" {
		t.Errorf("outcome %v, want ok", v)
	}
	// No span carries the password, nor a statement's literal values.
	for _, s := range spans.Ended() {
		text := fmt.Sprint(s.Name(), s.Attributes(), s.Events(), s.Status())
		if strings.Contains(text, ringPassword) || strings.Contains(text, "after-kill") {
			t.Errorf("span %q carries the password or the statement's values: %s", s.Name(), text)
		}
	}
}

// TestRingReloadWriterChanges reloads a real ring's router twice — once
// with the same configuration, once with a setting of the cluster
// changed (a new Cluster replaces the old one) — and reports what
// dbrouter_writer_changes_total counted: the writer stays on node 0 all
// along. docs/observability.md states the result.
func TestRingReloadWriterChanges(t *testing.T) {
	metrics := dbprom.New()
	var cfg *dbrouter.Config
	ring, r, c := startRing(t, 2, func(c *dbrouter.Config) { c.Observer = metrics; cfg = c })
	metrics.SetRouter(r)
	reg := prom.NewRegistry()
	reg.MustRegister(metrics)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	require.Equal(t, ring.Addr(0), c.WriterAddr())
	count := func() (float64, string) {
		text := promScrape(t, srv.URL)
		return promSum(text, "dbrouter_writer_changes_total"), promExcerpt(text, "dbrouter_writer_changes_total")
	}
	before, _ := count()
	require.NoError(t, r.Reload(cfg.Clone()))
	same, _ := count()
	require.Equal(t, before, same, "a Reload with the same configuration counted a writer change")

	changed := cfg.Clone()
	cc := changed.Clusters["ring"]
	cc.MaxOpenConns = 7
	changed.Clusters["ring"] = cc
	require.NoError(t, r.Reload(changed))
	c2, err := r.Cluster("ring")
	require.NoError(t, err)
	require.Equal(t, ring.Addr(0), c2.WriterAddr())
	after, text := count()
	t.Logf("writer changes: %v at start, %v after a Reload with the same configuration, %v after one with MaxOpenConns changed:\n%s", before, same, after, text)
	require.Equal(t, before, after, "a Reload that replaced the Cluster counted a writer change though the writer stayed on node 0")
}
