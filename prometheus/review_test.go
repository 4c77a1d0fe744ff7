package prometheus

// Review 7: two routers in one registry, a Collector whose router was
// closed, scrapes racing Reload, and the label values an error can put in
// a series.

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// openRouter opens a router on loopback addresses nothing listens on, with
// probes off: nothing is sent anywhere.
func openRouter(t *testing.T, obs dbrouter.Observer, clusters ...string) (*dbrouter.Router, *dbrouter.Config) {
	t.Helper()
	cfg := &dbrouter.Config{Logger: slog.New(slog.DiscardHandler), Defaults: dbrouter.Settings{User: "app", Password: "pw-Secret-9",
		Health: dbrouter.HealthConfig{Disabled: true}}, Clusters: map[string]dbrouter.ClusterConfig{}, Observer: obs}
	for i, name := range clusters {
		cfg.Clusters[name] = dbrouter.ClusterConfig{Nodes: []string{"127.0.0.1:" + string(rune('1'+i))}}
	}
	r, err := dbrouter.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, cfg
}

// TestTwoRoutersOneRegistry: two Collectors (one per router) cannot be
// registered in one registry as they are: the second registration fails
// with prometheus.AlreadyRegisteredError naming the first Collector, so
// the common idiom "on AlreadyRegisteredError, use ExistingCollector"
// would silently drop the second router's metrics. Registering each under
// a const label (prometheus.WrapRegistererWith, as docs/observability.md
// says) works and lints clean.
func TestTwoRoutersOneRegistry(t *testing.T) {
	t.Parallel()
	a, b := New(), New()
	ra, _ := openRouter(t, a, "orders")
	rb, _ := openRouter(t, b, "orders")
	a.SetRouter(ra)
	b.SetRouter(rb)
	reg := prom.NewPedanticRegistry()
	reg.MustRegister(a)
	err := reg.Register(b)
	var are prom.AlreadyRegisteredError
	if !errors.As(err, &are) || are.ExistingCollector != a {
		t.Fatalf("second Collector in the same registry: err %v; want AlreadyRegisteredError naming the first", err)
	}
	reg = prom.NewPedanticRegistry()
	prom.WrapRegistererWith(prom.Labels{"router": "a"}, reg).MustRegister(a)
	prom.WrapRegistererWith(prom.Labels{"router": "b"}, reg).MustRegister(b)
	if n, err := testutil.GatherAndCount(reg, "dbrouter_writer"); err != nil || n != 2 {
		t.Fatalf("dbrouter_writer series: %d, %v; want 2 (one per router)", n, err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

// TestCollectAfterClose: a scrape after the router was closed (a process
// shutting down while /metrics is still served) neither panics nor hangs.
func TestCollectAfterClose(t *testing.T) {
	t.Parallel()
	c := New()
	r, _ := openRouter(t, c, "orders")
	c.SetRouter(r)
	r.Close()
	done := make(chan int)
	go func() { done <- testutil.CollectAndCount(c, "dbrouter_writer") }()
	select {
	case n := <-done:
		t.Logf("dbrouter_writer series after Close: %d", n)
	case <-time.After(5 * time.Second):
		t.Fatal("Collect after Close hung")
	}
	c.SetRouter(r) // again, after Close: harmless
}

// TestScrapeDuringReload scrapes while Reload adds and removes a cluster
// and calls fail on it (run with -race).
func TestScrapeDuringReload(t *testing.T) {
	t.Parallel()
	c := New()
	r, cfg := openRouter(t, c, "orders")
	c.SetRouter(r)
	two := cfg.Clone()
	two.Clusters["billing"] = dbrouter.ClusterConfig{Nodes: []string{"127.0.0.1:9"}}
	reg := prom.NewPedanticRegistry()
	reg.MustRegister(c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil && i < 50; i++ {
			next := cfg
			if i%2 == 0 {
				next = two
			}
			if err := r.Reload(next); err != nil {
				t.Errorf("Reload: %v", err)
				return
			}
		}
	})
	wg.Go(func() {
		for i := 0; ctx.Err() == nil && i < 50; i++ {
			if cl, err := r.Cluster("billing"); err == nil {
				cctx, ccancel := context.WithTimeout(ctx, 50*time.Millisecond)
				cl.ExecContext(cctx, "INSERT x")
				ccancel()
			}
		}
	})
	for i := 0; i < 50; i++ {
		if _, err := reg.Gather(); err != nil {
			t.Fatalf("scrape %d: %v", i, err)
		}
	}
	wg.Wait()
	if n := testutil.ToFloat64(c.reloads.WithLabelValues("success")); n == 0 {
		t.Errorf("no reload counted")
	}
}

// TestLabelsAreBounded: a failed call's error text (which names the node,
// the driver's message, the SQL server's message with literal values) is
// never a label value: only the cluster, the node address, the op and the
// classes are.
func TestLabelsAreBounded(t *testing.T) {
	t.Parallel()
	c := New()
	secret := "Duplicate entry 'alice@example.com' for key 'email'"
	for i := range 20 {
		c.CallDone(context.Background(), dbrouter.CallInfo{Cluster: "orders", Op: dbrouter.OpExec,
			Outcome: dbrouter.OutcomeNoNode, Duration: time.Millisecond,
			Err:      errors.New(secret + string(rune('a'+i))),
			Attempts: []*dbrouter.NodeError{{Node: "a:3306", Class: dbrouter.ClassNotSent, Err: errors.New(secret + string(rune('a'+i)))}}})
	}
	reg := prom.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			series++
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "alice") || len(l.GetValue()) > 64 {
					t.Errorf("%s has label %s=%q", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
	if series > 6 {
		t.Errorf("%d series for 20 calls that differ only by error text", series)
	}
}

// TestRetriesOfContextEndedCall: the Collector's retries_total against the
// root's CallInfo for each way a call with failed attempts ends. A call
// that no node answered because the caller's context ended after a
// retry lists the attempts that were each retried on the next node; only
// a no_node call's last attempt was not retried.
func TestRetriesOfContextEndedCall(t *testing.T) {
	t.Parallel()
	a := &dbrouter.NodeError{Node: "a:1", Class: dbrouter.ClassNotSent, Err: errors.New("refused")}
	b := &dbrouter.NodeError{Node: "b:1", Class: dbrouter.ClassNotSent, Err: errors.New("refused")}
	for _, tc := range []struct {
		name string
		ci   dbrouter.CallInfo
		want float64
	}{
		{"answered by b after a", dbrouter.CallInfo{Outcome: dbrouter.OutcomeOK, Node: "b:1", Attempts: []*dbrouter.NodeError{a}}, 1},
		{"no node: a then b", dbrouter.CallInfo{Outcome: dbrouter.OutcomeNoNode, Attempts: []*dbrouter.NodeError{a, b}}, 1},
		{"context ended on b after a", dbrouter.CallInfo{Outcome: dbrouter.OutcomeNotSent, Err: context.DeadlineExceeded,
			Attempts: []*dbrouter.NodeError{a}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			tc.ci.Cluster, tc.ci.Op = "ring", dbrouter.OpExec
			c.CallDone(context.Background(), tc.ci)
			if got := testutil.ToFloat64(c.retries.WithLabelValues("ring", "not_sent")); got != tc.want {
				t.Errorf("retries_total = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestInvalidUTF8ClusterName: a cluster name that is not valid UTF-8 made
// every scrape fail ("label value "bad\xff" is not valid UTF-8", the
// Collector's panic recovered by the registry), hiding every other
// cluster's metrics. dbrouter.Open now refuses such a name, but the
// Collector is an Observer that any code may call (a wrapper, a fan-out to
// several observers, a test): its invalid bytes are still replaced.
func TestInvalidUTF8ClusterName(t *testing.T) {
	t.Parallel()
	c := New()
	cfg := &dbrouter.Config{Defaults: dbrouter.Settings{User: "app"},
		Clusters: map[string]dbrouter.ClusterConfig{"bad\xff": {Nodes: []string{"127.0.0.1:1"}}}}
	if _, err := dbrouter.Open(cfg); err == nil {
		t.Error(`dbrouter.Open accepted cluster name "bad\xff"`)
	}
	r, _ := openRouter(t, c, "good")
	c.SetRouter(r)
	c.CallDone(context.Background(), dbrouter.CallInfo{Cluster: "bad\xff", Op: dbrouter.OpExec, Outcome: dbrouter.OutcomeOK, Node: "127.0.0.1:1"})
	c.Event(dbrouter.Event{Kind: dbrouter.EventWriter, Cluster: "bad\xff", To: "127.0.0.1:1", Cause: "first up and writable node in order"})
	reg := prom.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("scrape: %v", err)
	}
	if got := testutil.ToFloat64(c.calls.WithLabelValues("bad\uFFFD", "exec", string(dbrouter.OutcomeOK))); got != 1 {
		t.Errorf(`calls_total{cluster="bad\uFFFD"} = %v, want 1`, got)
	}
	if n, err := testutil.GatherAndCount(reg, "dbrouter_writer_changes_total"); err != nil || n != 1 {
		t.Errorf("dbrouter_writer_changes_total series %d, %v; want 1", n, err)
	}
}
