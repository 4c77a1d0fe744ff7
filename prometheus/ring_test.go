package prometheus

// A real-ring failover scraped through promhttp: the counters must move as
// the calls the test made say they should.

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
	"github.com/dbrouter/dbrouter/ringtest"
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const ringPassword = "app-secret-Pm4"

// scrape returns the text of one scrape of url.
func scrape(t *testing.T, url string) string {
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

// sum adds the values of the samples of metric name whose labels contain
// every one of labels (each written as in the exposition: node="a:1").
func sum(text, name string, labels ...string) float64 {
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

// excerpt returns the lines of text that are samples of the named metrics.
func excerpt(text string, names ...string) string {
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
	metrics := New()
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
	before := scrape(t, srv.URL)
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
	waitFor(t, func() bool { return done.Load() >= 100 }, "100 writes before the kill")
	if err := ring.Kill(0); err != nil {
		t.Fatal(err)
	}
	killed.Store(true)
	waitFor(t, func() bool { return c.WriterAddr() == ring.Addr(1) }, "the writer role on node 1")
	afterKill := scrape(t, srv.URL)
	t.Logf("/metrics right after the kill (writer moved to %s):\n%s", ring.Addr(1), excerpt(afterKill,
		"dbrouter_writer", "dbrouter_node_state", "dbrouter_writer_changes_total", "dbrouter_calls_total",
		"dbrouter_retries_total", "dbrouter_failed_attempts_total", "dbrouter_probe_failures_total",
		"dbrouter_node_state_changes_total", "dbrouter_replication_lag_seconds"))
	waitFor(t, func() bool { return afterOK.Load() >= 100 }, "100 writes after the kill")
	close(stop)
	wg.Wait()
	// The last writes' metrics are recorded before their calls return.
	after := scrape(t, srv.URL)

	mu.Lock()
	defer mu.Unlock()
	t.Logf("client side: outcomes %v, transparent retries %d", outcomes, retries)
	delta := func(name string, labels ...string) float64 {
		return sum(after, name, labels...) - sum(before, name, labels...)
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
		if got := sum(after, check.name, check.labels...); got != check.want {
			t.Errorf("%s%v = %v, want %v", check.name, check.labels, got, check.want)
		}
	}
	if sum(after, "dbrouter_probe_failures_total", `node="`+ring.Addr(0)+`"`) < 1 {
		t.Errorf("no probe failure counted for the killed node")
	}
	if sum(after, "dbrouter_pool_open_connections", `node="`+ring.Addr(1)+`"`, `pool="write"`) < 1 {
		t.Errorf("no open connection in node 1's write pool")
	}
}

// waitFor polls cond every 10 ms for at most 30 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
