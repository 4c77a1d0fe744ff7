package fleet_test

import (
	"context"
	"errors"
	"github.com/dbrouter/dbrouter/fleet/internal/etcdtest"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/fleet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The routers of these tests are opened over loopback addresses with
// health probes off: Open, Reload, Route and Cluster do no I/O, and no
// node is ever dialled. Route and Cluster show which configuration is in
// force.

// configV1 routes customers A-M to cust-1 and N-Z to cust-2.
const configV1 = `
defaults:
  user: app
  password: ${FLEET_TEST_PASSWORD}
  health: { disabled: true }
clusters:
  cust-1: { nodes: ["127.0.0.1:33061", "127.0.0.1:33062"] }
  cust-2: { nodes: ["127.0.0.1:33063"] }
shard_maps:
  customers:
    strategy: initial
    ranges: { A-M: cust-1, N-Z: cust-2 }
`

// configV2 moves N-Z to a new cluster, cust-3.
const configV2 = `
defaults:
  user: app
  password: ${FLEET_TEST_PASSWORD}
  health: { disabled: true }
clusters:
  cust-1: { nodes: ["127.0.0.1:33061", "127.0.0.1:33062"] }
  cust-2: { nodes: ["127.0.0.1:33063"] }
  cust-3: { nodes: ["127.0.0.1:33064"] }
shard_maps:
  customers:
    strategy: initial
    ranges: { A-M: cust-1, N-Z: cust-3 }
`

// invalidConfigs are rejected by PutConfig and by WatchConfig, each with
// an error that names what is wrong.
var invalidConfigs = []struct {
	name, yaml string
	want       []string // substrings of the error
}{
	{"bad YAML", "clusters: [\n", []string{"invalid YAML"}},
	{"overlapping ranges", strings.Replace(configV2, "A-M: cust-1", "A-P: cust-1", 1),
		[]string{"shard_maps.customers.ranges"}},
	{"unknown cluster", strings.Replace(configV2, "N-Z: cust-3", "N-Z: cust-9", 1),
		[]string{"shard_maps.customers.ranges.N-Z", `"cust-9"`, "unknown cluster"}},
	{"unset variable", strings.Replace(configV2, "${FLEET_TEST_PASSWORD}", "${FLEET_TEST_UNSET}", 1),
		[]string{"defaults.password", "FLEET_TEST_UNSET"}},
	{"no cluster", "defaults: { user: app }\n", []string{"clusters", "at least one cluster"}},
}

func TestPutGetConfig(t *testing.T) {
	t.Setenv("FLEET_TEST_PASSWORD", "s3cret")
	cli := etcdtest.Start(t).Client()
	ctx := context.Background()
	const prefix = "/put-get/"

	if _, _, err := fleet.GetConfig(ctx, cli, prefix); !errors.Is(err, fleet.ErrNoConfig) {
		t.Fatalf("GetConfig of nothing: %v, want ErrNoConfig", err)
	}
	rev1, err := fleet.PutConfig(ctx, cli, prefix, []byte(configV1), 0)
	if err != nil {
		t.Fatal(err)
	}
	got, rev, err := fleet.GetConfig(ctx, cli, prefix)
	if err != nil || string(got) != configV1 || rev != rev1 {
		t.Fatalf("GetConfig = %q, %d, %v; want configV1 as written, %d", got, rev, err, rev1)
	}

	// Someone else created it: expectRev 0 conflicts.
	_, err = fleet.PutConfig(ctx, cli, prefix, []byte(configV2), 0)
	var ce *fleet.ConflictError
	if !errors.Is(err, fleet.ErrConfigConflict) || !errors.As(err, &ce) || ce.CurrentRev != rev1 || ce.ExpectedRev != 0 {
		t.Fatalf("PutConfig(expect 0) over an existing key: %v (%+v)", err, ce)
	}
	rev2, err := fleet.PutConfig(ctx, cli, prefix, []byte(configV2), rev1)
	if err != nil || rev2 <= rev1 {
		t.Fatalf("PutConfig(expect %d) = %d, %v", rev1, rev2, err)
	}
	// A stale revision conflicts, and names the current one.
	_, err = fleet.PutConfig(ctx, cli, prefix, []byte(configV1), rev1)
	if !errors.As(err, &ce) || ce.CurrentRev != rev2 || ce.ExpectedRev != rev1 || ce.Key != fleet.ConfigKey(prefix) {
		t.Fatalf("PutConfig(stale) = %v (%+v), want a conflict at %d", err, ce, rev2)
	}
	if !strings.Contains(err.Error(), "changed by someone else") {
		t.Errorf("conflict error %q does not say someone else changed it", err)
	}
	if got, _, _ := fleet.GetConfig(ctx, cli, prefix); string(got) != configV2 {
		t.Fatalf("a refused PutConfig changed the key: %q", got)
	}
	// A deleted key: expecting its old revision conflicts with "none".
	if _, err := cli.Delete(ctx, fleet.ConfigKey(prefix)); err != nil {
		t.Fatal(err)
	}
	_, err = fleet.PutConfig(ctx, cli, prefix, []byte(configV1), rev2)
	if !errors.As(err, &ce) || ce.CurrentRev != 0 || !strings.Contains(err.Error(), "found none") {
		t.Fatalf("PutConfig over a deleted key = %v, want a conflict with revision 0", err)
	}
	if _, err := fleet.PutConfig(ctx, cli, prefix, []byte(configV1), -1); err == nil {
		t.Fatal("PutConfig with a negative revision succeeded")
	}
}

func TestPutConfigRejectsInvalid(t *testing.T) {
	t.Setenv("FLEET_TEST_PASSWORD", "s3cret")
	cli := etcdtest.Start(t).Client()
	ctx := context.Background()
	for _, tc := range invalidConfigs {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "/invalid/" + strings.ReplaceAll(tc.name, " ", "-") + "/"
			_, err := fleet.PutConfig(ctx, cli, prefix, []byte(tc.yaml), 0)
			if err == nil {
				t.Fatal("PutConfig accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
			if _, _, err := fleet.GetConfig(ctx, cli, prefix); !errors.Is(err, fleet.ErrNoConfig) {
				t.Errorf("something was written: GetConfig: %v", err)
			}
		})
	}
	var ce *dbrouter.ConfigError
	_, err := fleet.PutConfig(ctx, cli, "/invalid/", []byte(invalidConfigs[2].yaml), 0)
	if !errors.As(err, &ce) || ce.Value != "cust-9" {
		t.Errorf("PutConfig error %v is not a *dbrouter.ConfigError with the value", err)
	}
}

// updates collects a WatchConfig's reports.
type updates chan fleet.ConfigUpdate

func (u updates) onUpdate(up fleet.ConfigUpdate) { u <- up }

// next waits for the report of revision rev (any revision if rev is 0),
// skipping earlier ones.
func (u updates) next(t *testing.T, rev int64) fleet.ConfigUpdate {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case up := <-u:
			if rev == 0 || up.Rev == rev {
				return up
			}
			if up.Rev > rev {
				t.Fatalf("report of revision %d came before that of %d: %+v", up.Rev, rev, up)
			}
		case <-deadline:
			t.Fatalf("no report of revision %d within 20s", rev)
		}
	}
}

// routeTo returns the name of the cluster that the customers map routes
// key to.
func routeTo(t *testing.T, r *dbrouter.Router, key string) string {
	t.Helper()
	c, err := r.Route("customers", key)
	if err != nil {
		t.Fatalf("Route(customers, %q): %v", key, err)
	}
	return c.Name()
}

// quietBase is a base configuration whose logger discards.
func quietBase() *dbrouter.Config {
	return &dbrouter.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// openFromEtcd opens a router on the configuration in etcd and starts
// WatchConfig on it; the watch's result arrives on done.
func openFromEtcd(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, base *dbrouter.Config) (*dbrouter.Router, updates, chan error) {
	t.Helper()
	cfg, _, err := fleet.LoadConfig(ctx, cli, prefix, base)
	if err != nil {
		t.Fatal(err)
	}
	r, err := dbrouter.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	u := make(updates, 64)
	done := make(chan error, 1)
	go func() {
		done <- fleet.WatchConfig(ctx, cli, prefix, r, fleet.WatchOptions{Base: base, OnUpdate: u.onUpdate})
	}()
	return r, u, done
}

func TestWatchConfig(t *testing.T) {
	t.Setenv("FLEET_TEST_PASSWORD", "s3cret")
	cli := etcdtest.Start(t).Client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const prefix = "/watch/"

	rev1, err := fleet.PutConfig(ctx, cli, prefix, []byte(configV1), 0)
	if err != nil {
		t.Fatal(err)
	}
	r, u, done := openFromEtcd(t, ctx, cli, prefix, quietBase())
	if up := u.next(t, 0); up.Rev != rev1 || up.Err != nil {
		t.Fatalf("first report: %+v, want revision %d applied", up, rev1)
	}
	if got := routeTo(t, r, "Smith"); got != "cust-2" {
		t.Fatalf("Smith on %s, want cust-2", got)
	}

	// A valid change is applied: Smith moves to the new cluster.
	rev2, err := fleet.PutConfig(ctx, cli, prefix, []byte(configV2), rev1)
	if err != nil {
		t.Fatal(err)
	}
	if up := u.next(t, rev2); up.Err != nil {
		t.Fatalf("revision %d rejected: %v", rev2, up.Err)
	}
	if got := routeTo(t, r, "Smith"); got != "cust-3" {
		t.Fatalf("after the change Smith is on %s, want cust-3", got)
	}
	if got := routeTo(t, r, "Adams"); got != "cust-1" {
		t.Fatalf("Adams on %s, want cust-1", got)
	}

	// Invalid changes, written behind PutConfig's back, are rejected and
	// reported; the router keeps configV2.
	for _, tc := range invalidConfigs {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := cli.Put(ctx, fleet.ConfigKey(prefix), tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			up := u.next(t, resp.Header.Revision)
			if up.Err == nil {
				t.Fatal("applied")
			}
			for _, w := range append(tc.want, "rejected", "keeps its configuration") {
				if !strings.Contains(up.Err.Error(), w) {
					t.Errorf("report %q does not contain %q", up.Err, w)
				}
			}
			if got := routeTo(t, r, "Smith"); got != "cust-3" {
				t.Errorf("after a rejected change Smith is on %s, want cust-3", got)
			}
			if _, err := r.Cluster("cust-3"); err != nil {
				t.Errorf("the rejected change removed cust-3: %v", err)
			}
		})
	}

	// A deleted key is reported; the router keeps its configuration.
	del, err := cli.Delete(ctx, fleet.ConfigKey(prefix))
	if err != nil {
		t.Fatal(err)
	}
	if up := u.next(t, del.Header.Revision); !errors.Is(up.Err, fleet.ErrNoConfig) {
		t.Fatalf("report of the deletion: %+v, want ErrNoConfig", up)
	}
	if got := routeTo(t, r, "Smith"); got != "cust-3" {
		t.Fatalf("after the deletion Smith is on %s, want cust-3", got)
	}

	// Written again: applied again.
	rev3, err := fleet.PutConfig(ctx, cli, prefix, []byte(configV1), 0)
	if err != nil {
		t.Fatal(err)
	}
	if up := u.next(t, rev3); up.Err != nil {
		t.Fatalf("revision %d rejected: %v", rev3, up.Err)
	}
	if got := routeTo(t, r, "Smith"); got != "cust-2" {
		t.Fatalf("Smith on %s, want cust-2", got)
	}
	if _, err := r.Cluster("cust-3"); !errors.Is(err, dbrouter.ErrUnknownCluster) {
		t.Fatalf("cust-3 still there: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("WatchConfig returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WatchConfig did not return within 10s of its context's end")
	}
}

// Routers may start before anything is pushed: the watch reports that
// there is no configuration, and applies the first one stored.
func TestWatchConfigCreatedLater(t *testing.T) {
	t.Setenv("FLEET_TEST_PASSWORD", "s3cret")
	cli := etcdtest.Start(t).Client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const prefix = "/later/"
	local, err := dbrouter.ParseConfig([]byte(configV1)) // say, from a local file
	if err != nil {
		t.Fatal(err)
	}
	local.Logger = quietBase().Logger
	r, err := dbrouter.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	u := make(updates, 64)
	done := make(chan error, 1)
	go func() {
		done <- fleet.WatchConfig(ctx, cli, prefix, r, fleet.WatchOptions{Base: local, OnUpdate: u.onUpdate})
	}()
	defer func() { cancel(); <-done }()
	if up := u.next(t, 0); !errors.Is(up.Err, fleet.ErrNoConfig) || up.Rev == 0 {
		t.Fatalf("first report on an empty prefix: %+v, want ErrNoConfig at a revision", up)
	}
	if got := routeTo(t, r, "Smith"); got != "cust-2" {
		t.Fatalf("Smith on %s, want cust-2 (the local configuration)", got)
	}
	rev, err := fleet.PutConfig(ctx, cli, prefix, []byte(configV2), 0)
	if err != nil {
		t.Fatal(err)
	}
	if up := u.next(t, rev); up.Err != nil {
		t.Fatal(up.Err)
	}
	if got := routeTo(t, r, "Smith"); got != "cust-3" {
		t.Fatalf("Smith on %s, want cust-3", got)
	}
}

// A router closed under the watch ends it, with ErrClosed, at the next
// revision.
func TestWatchConfigRouterClosed(t *testing.T) {
	t.Setenv("FLEET_TEST_PASSWORD", "s3cret")
	cli := etcdtest.Start(t).Client()
	ctx := context.Background()
	const prefix = "/closed/"
	rev1, err := fleet.PutConfig(ctx, cli, prefix, []byte(configV1), 0)
	if err != nil {
		t.Fatal(err)
	}
	r, u, done := openFromEtcd(t, ctx, cli, prefix, quietBase())
	u.next(t, rev1)
	r.Close()
	if _, err := fleet.PutConfig(ctx, cli, prefix, []byte(configV2), rev1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, dbrouter.ErrClosed) {
			t.Fatalf("WatchConfig returned %v, want ErrClosed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("WatchConfig did not return after the router closed")
	}
}

// tenantMap is a shard map built in Go: every key to one cluster.
type tenantMap struct{ cluster string }

func (m tenantMap) Lookup(string) (string, error) { return m.cluster, nil }
func (m tenantMap) Clusters() []string            { return []string{m.cluster} }

// The base configuration's Go shard maps are added to every revision; a
// revision with a shard map of the same name is rejected.
func TestWatchConfigBase(t *testing.T) {
	t.Setenv("FLEET_TEST_PASSWORD", "s3cret")
	cli := etcdtest.Start(t).Client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const prefix = "/base/"
	rev1, err := fleet.PutConfig(ctx, cli, prefix, []byte(configV1), 0)
	if err != nil {
		t.Fatal(err)
	}
	base := quietBase()
	base.ShardMaps = map[string]dbrouter.ShardMapConfig{
		"tenants":  {Map: tenantMap{"cust-1"}},
		"ignored":  {Strategy: dbrouter.StrategyDirectory, Entries: map[string]string{"x": "nowhere"}}, // not Go-built: not merged
		"customer": {Map: tenantMap{"cust-2"}},
	}
	r, u, _ := openFromEtcd(t, ctx, cli, prefix, base)
	if up := u.next(t, rev1); up.Err != nil {
		t.Fatal(up.Err)
	}
	if c, err := r.Route("tenants", "acme"); err != nil || c.Name() != "cust-1" {
		t.Fatalf("Route(tenants) = %v, %v; want the Go map's cust-1", c, err)
	}
	if _, err := r.Route("ignored", "x"); !errors.Is(err, dbrouter.ErrUnknownShardMap) {
		t.Fatalf("a YAML-like shard map of the base was merged: %v", err)
	}

	clash := configV2 + "  tenants: { strategy: directory, entries: { acme: cust-3 } }\n"
	rev2, err := fleet.PutConfig(ctx, cli, prefix, []byte(clash), rev1)
	if err != nil {
		t.Fatal(err) // valid alone: the clash is with the base
	}
	up := u.next(t, rev2)
	if up.Err == nil || !strings.Contains(up.Err.Error(), "shard_maps.tenants") {
		t.Fatalf("a revision redefining the base's Go shard map: %+v, want a rejection naming shard_maps.tenants", up)
	}
	if c, _ := r.Route("tenants", "acme"); c == nil || c.Name() != "cust-1" {
		t.Fatalf("after the rejection tenants routes to %v, want cust-1", c)
	}
}

// The watch survives a restart of etcd: a change made after it is applied.
func TestWatchConfigSurvivesEtcdRestart(t *testing.T) {
	t.Setenv("FLEET_TEST_PASSWORD", "s3cret")
	srv := etcdtest.Start(t)
	cli := srv.Client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const prefix = "/restart/"
	rev1, err := fleet.PutConfig(ctx, cli, prefix, []byte(configV1), 0)
	if err != nil {
		t.Fatal(err)
	}
	r, u, _ := openFromEtcd(t, ctx, cli, prefix, quietBase())
	u.next(t, rev1)

	srv.Stop() // about 7 s: etcd waits for the watch's stream to end
	// While etcd is down the router keeps its configuration.
	if got := routeTo(t, r, "Smith"); got != "cust-2" {
		t.Fatalf("Smith on %s while etcd is down, want cust-2", got)
	}
	srv.Start()

	pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
	defer pcancel()
	rev2, err := fleet.PutConfig(pctx, cli, prefix, []byte(configV2), rev1)
	if err != nil {
		t.Fatalf("PutConfig after the restart: %v", err)
	}
	if up := u.next(t, rev2); up.Err != nil {
		t.Fatal(up.Err)
	}
	if got := routeTo(t, r, "Smith"); got != "cust-3" {
		t.Fatalf("after the restart and the change Smith is on %s, want cust-3", got)
	}
}
