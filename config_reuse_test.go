package dbrouter

import (
	"log/slog"
	"os"
	"reflect"
	"slices"
	"testing"
)

const reuseYAML = `
defaults: {user: app, password: pw, params: {parseTime: 'true'}}
clusters:
  a: {nodes: [db1, db2]}
  b: {nodes: [db3], max_open_conns: 5, params: {x: y}}
shard_maps:
  m: {strategy: directory, entries: {k1: a, k2: b}}
`

// reuseEdits are edits of a parsed Config between ParseConfig and Open;
// reuse says whether Open may still take ParseConfig's cluster plans.
var reuseEdits = []struct {
	name  string
	reuse bool
	edit  func(*Config)
}{
	{"none", true, func(*Config) {}},
	{"logger", true, func(c *Config) { c.Logger = slog.New(slog.DiscardHandler) }},
	{"shard map entry", true, func(c *Config) { c.ShardMaps["m"].Entries["k1"] = "b" }},
	{"shard map to an unknown cluster", true, func(c *Config) { c.ShardMaps["m"].Entries["k1"] = "zz" }},
	{"node in place", false, func(c *Config) { c.Clusters["a"].Nodes[0] = "db9" }},
	{"node appended", false, func(c *Config) {
		cc := c.Clusters["a"]
		cc.Nodes = append(cc.Nodes, "db8")
		c.Clusters["a"] = cc
	}},
	{"own settings added", false, func(c *Config) {
		cc := c.Clusters["a"]
		cc.MaxIdleConns = 3
		c.Clusters["a"] = cc
	}},
	{"own settings removed", false, func(c *Config) {
		cc := c.Clusters["b"]
		cc.Settings = Settings{}
		c.Clusters["b"] = cc
	}},
	{"own params in place", false, func(c *Config) { c.Clusters["b"].Params["x"] = "z" }},
	{"cluster added", false, func(c *Config) { c.Clusters["c"] = ClusterConfig{Nodes: []string{"db7"}} }},
	{"cluster renamed", false, func(c *Config) {
		c.Clusters["c"] = c.Clusters["b"]
		delete(c.Clusters, "b")
	}},
	{"defaults user", false, func(c *Config) { c.Defaults.User = "other" }},
	{"defaults params in place", false, func(c *Config) { c.Defaults.Params["loc"] = "UTC" }},
	{"defaults TLS", false, func(c *Config) { c.Defaults.TLS = &TLSConfig{CAFile: "testdata/no-such-ca.pem"} }},
	{"invalid node", false, func(c *Config) { c.Clusters["a"].Nodes[1] = "db1" }},
}

// TestOpenReusesParsedPlans checks that Open takes ParseConfig's cluster
// plans only while the Config is as parsed, and that what it compiles is
// then what compiling a copy gives, edited or not.
func TestOpenReusesParsedPlans(t *testing.T) {
	for _, e := range reuseEdits {
		t.Run(e.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(reuseYAML))
			if err != nil {
				t.Fatal(err)
			}
			e.edit(cfg)
			if got := parsedPlan(cfg) != nil; got != e.reuse {
				t.Errorf("parsedPlan: reused = %v, want %v", got, e.reuse)
			}

			cfg, err = ParseConfig([]byte(reuseYAML))
			if err != nil {
				t.Fatal(err)
			}
			e.edit(cfg)
			want, wantErr := cfg.Clone().compile(nil, os.ReadFile)
			got, gotErr := compileForOpen(cfg, os.ReadFile)
			if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
				t.Fatalf("compileForOpen: error %v, want %v", gotErr, wantErr)
			}
			if gotErr == nil {
				samePlans(t, got, want)
			}
			if lastParsed.cfg.Value() == cfg {
				t.Error("ParseConfig's plans are kept after Open")
			}
		})
	}
}

// samePlans fails t unless a and b are the same compile.
func samePlans(t *testing.T, a, b *plan) {
	t.Helper()
	if !slices.Equal(a.names, b.names) || !slices.Equal(a.mapNames, b.mapNames) {
		t.Fatalf("names %v %v, want %v %v", a.names, a.mapNames, b.names, b.mapNames)
	}
	for _, name := range a.names {
		ca, cb := a.clusters[name], b.clusters[name]
		if !ca.sameAs(cb) || !reflect.DeepEqual(ca.settings, cb.settings) || !reflect.DeepEqual(ca.base, cb.base) {
			t.Errorf("cluster %s: %+v, want %+v", name, ca, cb)
		}
	}
	for _, name := range a.mapNames {
		if !reflect.DeepEqual(a.maps[name], b.maps[name]) {
			t.Errorf("shard map %s: %+v, want %+v", name, a.maps[name], b.maps[name])
		}
	}
	if a.cfg.Logger != b.cfg.Logger || a.cfg.Observer != b.cfg.Observer || a.cfg.WriterSource != b.cfg.WriterSource {
		t.Error("Logger, Observer or WriterSource differ")
	}
}

// TestOpenOfParsedConfigOwnsItsPlans checks that a router opened from
// ParseConfig's plans shares nothing that editing the Config afterwards
// changes, as one opened from a copy.
func TestOpenOfParsedConfigOwnsItsPlans(t *testing.T) {
	cfg, err := ParseConfig([]byte(reuseYAML))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	want, err := cfg.Clone().compile(nil, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg.Clusters["a"].Nodes[0] = "db9"
	cfg.Clusters["b"].Params["x"] = "z"
	cfg.Defaults.Params["parseTime"] = "false"
	cfg.ShardMaps["m"].Entries["k1"] = "b"
	delete(cfg.Clusters, "a")
	samePlans(t, r.table.Load().plan, want)
	if c, err := r.Route("m", "k1"); err != nil || c.Name() != "a" {
		t.Errorf("Route(m, k1) = %v, %v; want cluster a", c, err)
	}
}

// TestParsedPlanNotKeptForTLS checks that a configuration whose compile
// reads TLS files or the driver's registrations is compiled again by Open.
func TestParsedPlanNotKeptForTLS(t *testing.T) {
	for _, y := range []string{
		"defaults: {user: u, params: {tls: skip-verify}}\nclusters: {a: {nodes: [db1]}}",
		"defaults: {user: u}\nclusters: {a: {nodes: [db1], params: {serverPubKey: k}}}",
		"defaults: {user: u, params: {}}\nclusters: {a: {nodes: [db1]}}",
	} {
		cfg, err := ParseConfig([]byte(y))
		if err != nil {
			t.Logf("%s: %v", y, err)
			continue
		}
		if parsedPlan(cfg) != nil {
			t.Errorf("%s: ParseConfig's plans reused", y)
		}
	}
}
