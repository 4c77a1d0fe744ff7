package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestSwitchoverWithHooks: SwitchoverWith calls Demote(old), then
// CatchUp(old → target), then publishes; when a step fails, or the decision
// changed meanwhile, it refuses, undoes the demotion when the old writer
// still holds the role, and leaves the stored decision as it was.
func TestSwitchoverWithHooks(t *testing.T) {
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pfx = DefaultPrefix
	put := seedSwitchoverFleet(t, ctx, cli, pfx)
	wkey := WriterKey(pfx, "c1")
	stored := func() (Decision, int64) {
		t.Helper()
		resp, err := cli.Get(ctx, wkey)
		if err != nil || len(resp.Kvs) == 0 {
			t.Fatalf("reading the decision: %v", err)
		}
		var d Decision
		if err := json.Unmarshal(resp.Kvs[0].Value, &d); err != nil {
			t.Fatal(err)
		}
		return d, resp.Kvs[0].ModRevision
	}

	type hooks struct {
		mu    sync.Mutex
		calls []string
	}
	record := func(h *hooks, s string) {
		h.mu.Lock()
		h.calls = append(h.calls, s)
		h.mu.Unlock()
	}
	boom := errors.New("boom")
	cases := []struct {
		name      string
		to        string
		demote    error
		catchUp   func(ctx context.Context) error // nil: succeeds
		noPromote bool
		wantCalls []string
		wantErr   string // "" success
		wantNow   Decision
	}{
		{name: "all steps in order", to: "b:3306",
			wantCalls: []string{"demote a:3306", "catchup a:3306>b:3306"},
			wantNow:   Decision{Writer: "b:3306", Epoch: 5}},
		{name: "check refused before any hook", to: "a:3306",
			wantErr: "already the writer", wantNow: Decision{Writer: "a:3306", Epoch: 4}},
		{name: "demote fails", to: "b:3306", demote: boom,
			wantCalls: []string{"demote a:3306", "promote a:3306"},
			wantErr:   "making the writer a:3306 read-only: boom; a:3306 is writable again",
			wantNow:   Decision{Writer: "a:3306", Epoch: 4}},
		{name: "catch-up fails", to: "b:3306", catchUp: func(context.Context) error { return boom },
			wantCalls: []string{"demote a:3306", "catchup a:3306>b:3306", "promote a:3306"},
			wantErr:   "b:3306 did not catch up with a:3306 within 5s: boom; a:3306 is writable again",
			wantNow:   Decision{Writer: "a:3306", Epoch: 4}},
		{name: "catch-up times out", to: "b:3306", catchUp: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
			wantCalls: []string{"demote a:3306", "catchup a:3306>b:3306", "promote a:3306"},
			wantErr:   "within 200ms: context deadline exceeded; a:3306 is writable again",
			wantNow:   Decision{Writer: "a:3306", Epoch: 4}},
		{name: "no promote hook", to: "b:3306", catchUp: func(context.Context) error { return boom }, noPromote: true,
			wantCalls: []string{"demote a:3306", "catchup a:3306>b:3306"},
			wantErr:   "a:3306 may still be read-only (no Promote hook)",
			wantNow:   Decision{Writer: "a:3306", Epoch: 4}},
		{name: "decision rewritten meanwhile, same writer", to: "b:3306", catchUp: func(context.Context) error {
			put(wkey, Decision{Writer: "a:3306", Epoch: 6})
			return nil
		},
			wantCalls: []string{"demote a:3306", "catchup a:3306>b:3306", "promote a:3306"},
			wantErr:   "another decision was published meanwhile (epoch 6, writer a:3306); try again; a:3306 is writable again",
			wantNow:   Decision{Writer: "a:3306", Epoch: 6}},
		{name: "decider moved to another node meanwhile", to: "b:3306", catchUp: func(context.Context) error {
			put(wkey, Decision{Writer: "c:3306", Epoch: 5, Cause: "a:3306 is read-only"})
			return nil
		},
			wantCalls: []string{"demote a:3306", "catchup a:3306>b:3306"},
			wantErr:   "the writer is now c:3306 (epoch 5, a:3306 is read-only); a:3306 stays read-only",
			wantNow:   Decision{Writer: "c:3306", Epoch: 5}},
		{name: "decider moved to the target meanwhile", to: "b:3306", catchUp: func(context.Context) error {
			put(wkey, Decision{Writer: "b:3306", Epoch: 5, Cause: "a:3306 is read-only"})
			return nil
		},
			wantCalls: []string{"demote a:3306", "catchup a:3306>b:3306"},
			wantNow:   Decision{Writer: "b:3306", Epoch: 5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			put(wkey, Decision{Writer: "a:3306", Epoch: 4, Decider: "web1"})
			before, beforeRev := stored()
			h := &hooks{}
			opts := &SwitchoverOptions{
				Demote: func(ctx context.Context, cluster, addr string) error {
					if cluster != "c1" {
						t.Errorf("Demote: cluster %q", cluster)
					}
					record(h, "demote "+addr)
					if r, err := cli.Get(ctx, SwitchoverKey(pfx, "c1")); err != nil || len(r.Kvs) == 0 || r.Kvs[0].Lease == 0 {
						t.Errorf("Demote called without the switchover key held under a lease (%v)", err)
					}
					return tc.demote
				},
				CatchUp: func(ctx context.Context, cluster, from, to string) error {
					record(h, fmt.Sprintf("catchup %s>%s", from, to))
					if tc.catchUp != nil {
						return tc.catchUp(ctx)
					}
					return nil
				},
			}
			if !tc.noPromote {
				opts.Promote = func(ctx context.Context, cluster, addr string) error {
					record(h, "promote "+addr)
					return nil
				}
			}
			if strings.Contains(tc.name, "times out") {
				opts.CatchUpTimeout = 200 * time.Millisecond
			}
			start := time.Now()
			d, err := SwitchoverWith(ctx, cli, pfx, "c1", tc.to, "ops", opts)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v", took)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if d.Writer != tc.wantNow.Writer || d.Epoch != tc.wantNow.Epoch {
					t.Errorf("returned decision %+v, want %+v", d, tc.wantNow)
				}
			} else if !errors.Is(err, ErrSwitchoverRefused) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want refused saying %q", err, tc.wantErr)
			}
			if !slices.Equal(h.calls, tc.wantCalls) {
				t.Errorf("calls %q, want %q", h.calls, tc.wantCalls)
			}
			if r, err := cli.Get(ctx, SwitchoverKey(pfx, "c1")); err != nil || len(r.Kvs) != 0 {
				t.Errorf("the switchover key outlived the call (%v)", err)
			}
			now, rev := stored()
			if now.Writer != tc.wantNow.Writer || now.Epoch != tc.wantNow.Epoch {
				t.Errorf("stored decision %+v, want writer %s epoch %d", now, tc.wantNow.Writer, tc.wantNow.Epoch)
			}
			if tc.wantNow == (Decision{Writer: before.Writer, Epoch: before.Epoch}) && rev != beforeRev {
				t.Errorf("the decision was rewritten (revision %d → %d)", beforeRev, rev)
			}
		})
	}
}

// TestSwitchoverWithPromoteGetsItsOwnBound: when the caller's ctx ends
// during CatchUp, the undo still runs, with its own bound.
func TestSwitchoverWithPromoteGetsItsOwnBound(t *testing.T) {
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	const pfx = DefaultPrefix
	bg := context.Background()
	b, _ := json.Marshal(Decision{Writer: "a:3306", Epoch: 1})
	ops := []clientv3.Op{clientv3.OpPut(WriterKey(pfx, "c1"), string(b))}
	for _, r := range []string{"web1"} {
		rb, _ := json.Marshal(RouterInfo{ID: r})
		vb, _ := json.Marshal(View{Router: r, At: time.Now(), Writer: "a:3306", Nodes: []NodeView{
			{Addr: "a:3306", State: "up", Probed: true}, {Addr: "b:3306", State: "up", Probed: true}}})
		ops = append(ops, clientv3.OpPut(RouterKey(pfx, r), string(rb)), clientv3.OpPut(ViewKey(pfx, "c1", r), string(vb)))
	}
	if _, err := cli.Txn(bg).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	promoted := make(chan error, 1)
	_, err := SwitchoverWith(ctx, cli, pfx, "c1", "b:3306", "ops", &SwitchoverOptions{
		Demote: func(context.Context, string, string) error { return nil },
		CatchUp: func(ctx context.Context, _, _, _ string) error {
			cancel()
			<-ctx.Done()
			return ctx.Err()
		},
		Promote: func(ctx context.Context, _, _ string) error { promoted <- ctx.Err(); return nil },
	})
	if !errors.Is(err, ErrSwitchoverRefused) {
		t.Fatalf("err = %v, want refused", err)
	}
	select {
	case err := <-promoted:
		if err != nil {
			t.Errorf("Promote ran with an ended ctx: %v", err)
		}
	default:
		t.Error("Promote was not called")
	}
}

// TestDeciderLeavesSwitchoverWriter: while a SwitchoverWith holds the
// cluster's SwitchoverKey, the decider does not move the writer it made
// read-only (SwitchoverWith publishes itself); once the key is gone, a
// read-only writer is moved as always. A writer Down for a majority is
// moved even while the key is held.
func TestDeciderLeavesSwitchoverWriter(t *testing.T) {
	t.Parallel()
	te := startEtcd(t)
	cl := newClient(t, te.endpoints[0])
	const pfx = "/sw-hold/"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rs []*fakeRouter
	for _, id := range []string{"r1", "r2", "r3"} {
		rs = append(rs, newFakeRouter(t, newClient(t, te.endpoints[0]), pfx, id, Options{},
			healthy("0-1-5", "0-1-5", "0-1-5")...))
	}
	eventually(t, "n0 decided", func() bool { return rs[2].sink.has(n0, 1) })
	rec := mustJSON(t, SwitchoverRecord{From: n0, To: n1, By: "ops"})
	if _, err := cl.Put(ctx, SwitchoverKey(pfx, "c"), rec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the decider's watch sees it
	for _, r := range rs {
		r.sink.set(n0, readOnly(n0, "0-1-5"), up(n1, "0-1-5"), up(n2, "0-1-5"))
	}
	time.Sleep(time.Second) // views published (every 20 ms), decider run
	if d, _ := decision(t, cl, pfx); d.Writer != n0 || d.Epoch != 1 {
		t.Fatalf("the decider moved the writer during a switchover: %+v", d)
	}
	if _, err := cl.Delete(ctx, SwitchoverKey(pfx, "c")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "read-only n0 moved off once the switchover key is gone", func() bool {
		d, _ := decision(t, cl, pfx)
		return d.Writer != n0 && d.Epoch == 2
	})

	// Down for a majority: moved even while a switchover holds the key.
	d, _ := decision(t, cl, pfx)
	if _, err := cl.Put(ctx, SwitchoverKey(pfx, "c"), mustJSON(t, SwitchoverRecord{From: d.Writer, To: n0, By: "ops"})); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	for _, r := range rs {
		nodes := []dbrouter.NodeStats{readOnly(n0, "0-1-5"), up(n1, "0-1-5"), up(n2, "0-1-5")}
		for i, n := range nodes {
			if n.Addr == d.Writer {
				nodes[i] = down(n.Addr)
			}
		}
		r.sink.set(d.Writer, nodes...)
	}
	eventually(t, "a writer Down for a majority moved during a switchover", func() bool {
		now, _ := decision(t, cl, pfx)
		return now.Writer != d.Writer && now.Epoch == 3
	})
}

// TestSQLHooksBadInput: SQLHooks refuses a nil configuration, and its hooks
// refuse a cluster or node the configuration does not name, saying which,
// without connecting anywhere.
func TestSQLHooksBadInput(t *testing.T) {
	if _, err := SQLHooks(nil); err == nil {
		t.Error("SQLHooks(nil): no error")
	}
	h, err := SQLHooks(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "admin", Password: "hooks-secret"},
		Clusters: map[string]dbrouter.ClusterConfig{"c1": {Nodes: []string{"127.0.0.1:1", "127.0.0.1:2"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"demote, unknown cluster", h.Demote(ctx, "c9", "127.0.0.1:1"), `cluster "c9" is not in the configuration`},
		{"promote, unknown node", h.Promote(ctx, "c1", "127.0.0.1:3"), `node "127.0.0.1:3" is not a node of cluster "c1"`},
		{"catch-up, unknown target", h.CatchUp(ctx, "c1", "127.0.0.1:1", "10.0.0.1:3306"), ""}, // the old writer is reached first: refused
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) || strings.Contains(tc.err.Error(), "hooks-secret") {
			t.Errorf("%s: err = %v, want one saying %q, without the password", tc.name, tc.err, tc.want)
		}
	}
}

// seedSwitchoverFleet stores what a switchover reads of a fleet: three live
// routers (web1..web3), each with a view of cluster c1 in which nodes a, b
// and c are up, probed and writable, a the writer at epoch 4. It returns a
// put that stores a value as JSON under a key.
func seedSwitchoverFleet(t *testing.T, ctx context.Context, cli *clientv3.Client, pfx string) func(key string, v any) {
	t.Helper()
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := cli.Put(ctx, key, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []string{"web1", "web2", "web3"} {
		put(RouterKey(pfx, r), RouterInfo{ID: r})
		put(ViewKey(pfx, "c1", r), View{Router: r, At: time.Now(), Writer: "a:3306", Epoch: 4, Nodes: []NodeView{
			{Addr: "a:3306", State: "up", Probed: true},
			{Addr: "b:3306", State: "up", Probed: true},
			{Addr: "c:3306", State: "up", Probed: true},
		}})
	}
	return put
}
