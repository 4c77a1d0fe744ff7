package prometheus

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeStats is a StatsSource with fixed stats.
type fakeStats []dbrouter.ClusterStats

func (f fakeStats) Stats() []dbrouter.ClusterStats { return f }

func TestCollectorLevels(t *testing.T) {
	t.Parallel()
	c := New()
	c.SetRouter(fakeStats{{Name: "ring", Writer: "b:3306", Nodes: []dbrouter.NodeStats{
		{Addr: "a:3306", State: dbrouter.StateDown, Lag: -1},
		{Addr: "b:3306", State: dbrouter.StateUp, Role: dbrouter.RoleWriter,
			Pools: []dbrouter.PoolStats{{Pool: "write", DBStats: sql.DBStats{OpenConnections: 3, InUse: 1, Idle: 2, WaitDuration: 1500 * time.Millisecond}}}},
		{Addr: "c:3306", State: dbrouter.StateUp, ReadOnly: true, Lag: 2 * time.Second},
	}}})
	reg := prom.NewPedanticRegistry()
	reg.MustRegister(c)
	want := `
# HELP dbrouter_writer 1 for the node that is the cluster's writer, 0 for every other node.
# TYPE dbrouter_writer gauge
dbrouter_writer{cluster="ring",node="a:3306"} 0
dbrouter_writer{cluster="ring",node="b:3306"} 1
dbrouter_writer{cluster="ring",node="c:3306"} 0
# HELP dbrouter_node_read_only The node's read_only flag at its last good probe (1 on, 0 off).
# TYPE dbrouter_node_read_only gauge
dbrouter_node_read_only{cluster="ring",node="a:3306"} 0
dbrouter_node_read_only{cluster="ring",node="b:3306"} 0
dbrouter_node_read_only{cluster="ring",node="c:3306"} 1
# HELP dbrouter_replication_lag_seconds Time since a probe last found the node holding every transaction of the writer (0 for the writer; absent when unknown).
# TYPE dbrouter_replication_lag_seconds gauge
dbrouter_replication_lag_seconds{cluster="ring",node="b:3306"} 0
dbrouter_replication_lag_seconds{cluster="ring",node="c:3306"} 2
# HELP dbrouter_pool_open_connections Established connections of the pool, in use and idle.
# TYPE dbrouter_pool_open_connections gauge
dbrouter_pool_open_connections{cluster="ring",node="b:3306",pool="write"} 3
# HELP dbrouter_pool_wait_duration_seconds_total Total time spent waiting for a connection of the pool.
# TYPE dbrouter_pool_wait_duration_seconds_total counter
dbrouter_pool_wait_duration_seconds_total{cluster="ring",node="b:3306",pool="write"} 1.5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "dbrouter_writer", "dbrouter_node_read_only",
		"dbrouter_replication_lag_seconds", "dbrouter_pool_open_connections", "dbrouter_pool_wait_duration_seconds_total"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

func TestCollectorCounters(t *testing.T) {
	t.Parallel()
	c := New()
	notSent := &dbrouter.NodeError{Node: "a:3306", Class: dbrouter.ClassNotSent}
	ctx := context.Background()
	// A write retried on b after a refused dial, an outcome-unknown write
	// on b, a call that found no node.
	c.CallDone(ctx, dbrouter.CallInfo{Cluster: "ring", Op: dbrouter.OpExec, Outcome: dbrouter.OutcomeOK, Node: "b:3306",
		Duration: time.Millisecond, Attempts: []*dbrouter.NodeError{notSent}})
	c.CallDone(ctx, dbrouter.CallInfo{Cluster: "ring", Op: dbrouter.OpExec, Outcome: dbrouter.OutcomeUnknown, Node: "b:3306", Duration: time.Millisecond})
	c.CallDone(ctx, dbrouter.CallInfo{Cluster: "ring", Op: dbrouter.OpTxExec, Outcome: dbrouter.OutcomeNoNode, Duration: time.Millisecond,
		Attempts: []*dbrouter.NodeError{notSent, {Node: "b:3306", Class: dbrouter.ClassNotSent}}})
	c.Event(dbrouter.Event{Cluster: "ring", Kind: dbrouter.EventWriter, From: "a:3306", To: "b:3306", Cause: "a:3306 is down, read_only off"})
	c.Event(dbrouter.Event{Cluster: "ring", Kind: dbrouter.EventState, Node: "a:3306", From: "up", To: "suspect"})
	c.ProbeDone(dbrouter.ProbeInfo{Cluster: "ring", Node: "a:3306", Duration: time.Millisecond, Err: errors.New("refused")})
	c.TxRerun("ring", dbrouter.TxRerunConnectionLost)
	c.FenceWaited("ring", 20*time.Millisecond)
	c.EventDropped(dbrouter.Event{})
	c.ReloadDone(nil)
	c.ReloadDone(errors.New("bad"))

	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"calls ok", testutil.ToFloat64(c.calls.WithLabelValues("ring", "exec", "ok")), 1},
		{"calls outcome unknown", testutil.ToFloat64(c.calls.WithLabelValues("ring", "exec", "outcome_unknown")), 1},
		{"calls no node", testutil.ToFloat64(c.calls.WithLabelValues("ring", "exec_in_a_transaction", "no_node")), 1},
		{"retries not sent", testutil.ToFloat64(c.retries.WithLabelValues("ring", "not_sent")), 2},
		{"failed attempts a", testutil.ToFloat64(c.failedAttempts.WithLabelValues("ring", "a:3306", "not_sent")), 2},
		{"failed attempts b unknown", testutil.ToFloat64(c.failedAttempts.WithLabelValues("ring", "b:3306", "outcome_unknown")), 1},
		{"writer changes", testutil.ToFloat64(c.writerChanges.WithLabelValues("ring", "writer_down")), 1},
		{"state changes", testutil.ToFloat64(c.stateChanges.WithLabelValues("ring", "a:3306", "suspect")), 1},
		{"probe failures", testutil.ToFloat64(c.probeFailures.WithLabelValues("ring", "a:3306")), 1},
		{"tx reruns", testutil.ToFloat64(c.txReruns.WithLabelValues("ring", "connection_lost")), 1},
		{"dropped", testutil.ToFloat64(c.eventsDropped), 1},
		{"reload success", testutil.ToFloat64(c.reloads.WithLabelValues("success")), 1},
		{"reload failure", testutil.ToFloat64(c.reloads.WithLabelValues("failure")), 1},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	reg := prom.NewPedanticRegistry()
	reg.MustRegister(c)
	if n, err := testutil.GatherAndCount(reg, "dbrouter_fence_wait_seconds", "dbrouter_probe_duration_seconds", "dbrouter_call_duration_seconds"); err != nil || n != 4 {
		t.Errorf("histograms: %d series, err %v; want 4", n, err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

func TestCauseLabel(t *testing.T) {
	t.Parallel()
	for cause, want := range map[string]string{
		"first up and writable node in order":                     "first_choice",
		"first probe round: a:1 is behind another node":           "first_choice",
		"a:1 is suspect, read_only off":                           "writer_suspect",
		"a:1 is down, read_only off":                              "writer_down",
		"a:1 is up, read_only on":                                 "writer_read_only",
		"no node is up and writable":                              "no_writer",
		"failback: a:1 recovered and caught up with b:1 at 0-1-5": "failback",
		"switchover: b:1 caught up with a:1 at 0-1-5":             "switchover",
		"decided by the writer source (epoch 3): lease":           "writer_source",
		"the writer source refuses writes (epoch 3): no quorum":   "writer_source",
		"something new": "other",
	} {
		if got := CauseLabel(dbrouter.Event{Kind: dbrouter.EventWriter, From: "x:1", Cause: cause}); got != want {
			t.Errorf("CauseLabel(%q) = %q, want %q", cause, got, want)
		}
	}
}

// TestWriterChangeAfterReload: a Reload that replaces a Cluster makes the
// new one report its first writer choice (from ""); the Collector counts
// it only when the writer moved, with cause reload. A writer chosen after
// a time with none is still a change.
func TestWriterChangeAfterReload(t *testing.T) {
	t.Parallel()
	c := New()
	ev := func(from, to, cause string) {
		c.Event(dbrouter.Event{Kind: dbrouter.EventWriter, Cluster: "ring", From: from, To: to, Cause: cause})
	}
	ev("", "a:1", "first up and writable node in order") // Open
	ev("", "a:1", "first up and writable node in order") // Reload replaced the Cluster: same writer
	ev("", "b:1", "first up and writable node in order") // Reload: another writer
	ev("b:1", "", "no node is up and writable")
	ev("", "a:1", "first up and writable node in order") // back from no writer
	for cause, want := range map[string]float64{"first_choice": 2, "reload": 1, "no_writer": 1} {
		if got := testutil.ToFloat64(c.writerChanges.WithLabelValues("ring", cause)); got != want {
			t.Errorf("writer_changes_total{cause=%q} = %v, want %v", cause, got, want)
		}
	}
}
