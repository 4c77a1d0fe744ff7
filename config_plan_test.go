package dbrouter

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// planTestConfig is a configuration that Open accepts without network I/O
// (no call is made, so no prober starts and no node is dialled).
func planTestConfig() *Config {
	return &Config{
		Defaults: Settings{User: "app", Password: "pw", Database: "shop",
			Params: map[string]string{"parseTime": "true", "time_zone": "'+00:00'"}},
		Clusters: map[string]ClusterConfig{
			"c":     {Nodes: []string{"db1", "db2:3306", "[::1]"}},
			"other": {Nodes: []string{"db7"}},
		},
		Logger: slog.New(slog.DiscardHandler),
	}
}

// reloadKeeps opens base, reloads it edited by edit and reports whether
// cluster c is the same *Cluster afterwards; cluster "other" must always be
// kept.
func reloadKeeps(t *testing.T, base *Config, edit func(cfg *Config)) bool {
	t.Helper()
	r, err := Open(base)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before, _ := r.Cluster("c")
	other, _ := r.Cluster("other")
	cfg := base.Clone()
	edit(cfg)
	if err := r.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	after, err := r.Cluster("c")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := r.Cluster("other"); o != other {
		t.Error("cluster other, unchanged, was replaced")
	}
	return after == before
}

// TestReloadKeepsEquivalentCluster: Reload compares the compiled plans, so
// a cluster written differently but meaning the same — a node with or
// without its default port, driver parameters spelled differently or with
// their defaults spelled out, router defaults spelled out — keeps its
// pools, health and writer.
func TestReloadKeepsEquivalentCluster(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(cfg *Config)
	}{
		{"unchanged", func(cfg *Config) {}},
		{"default port spelled out or left out", func(cfg *Config) {
			cfg.Clusters["c"] = ClusterConfig{Nodes: []string{"db1:3306", "db2", "[::1]:3306"}}
		}},
		{"params spelled differently", func(cfg *Config) {
			cfg.Defaults.Params = map[string]string{"time_zone": "'+00:00'", "parseTime": "1"}
		}},
		{"driver defaults spelled out", func(cfg *Config) {
			for k, v := range map[string]string{"loc": "UTC", "maxAllowedPacket": "67108864", "allowNativePasswords": "true",
				"checkConnLiveness": "true", "interpolateParams": "false", "tls": "false",
				"rejectReadOnly": "true"} { // rejectReadOnly: the router turns it off anyway
				cfg.Defaults.Params[k] = v
			}
		}},
		{"router defaults spelled out", func(cfg *Config) {
			cfg.Defaults.ConnectTimeout = DefaultConnectTimeout
			cfg.Defaults.MaxIdleConns = DefaultMaxIdleConns
			cfg.Defaults.ReadPolicy = ReadWriter
			cfg.Defaults.Failback = FailbackAuto
			cfg.Defaults.Health = HealthConfig{Interval: DefaultProbeInterval, Timeout: DefaultProbeTimeout,
				FailAfter: DefaultFailAfter, RecoverAfter: DefaultRecoverAfter}
			cfg.Defaults.TxAttempts = DefaultTxAttempts
		}},
		{"settings moved from the defaults to the cluster", func(cfg *Config) {
			cfg.Defaults.Database = ""
			cfg.Clusters["other"] = ClusterConfig{Nodes: []string{"db7"}, Settings: Settings{Database: "shop"}}
			cfg.Clusters["c"] = ClusterConfig{Nodes: []string{"db1", "db2", "[::1]"},
				Settings: Settings{Database: "shop", Params: map[string]string{"parseTime": "true"}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !reloadKeeps(t, planTestConfig(), tc.edit) {
				t.Error("Reload replaced cluster c, whose configuration means the same")
			}
		})
	}
}

// TestReloadReplacesChangedCluster: a change that makes different
// connections or a different cluster still retires the cluster.
func TestReloadReplacesChangedCluster(t *testing.T) {
	t.Parallel()
	c := func(cfg *Config, f func(cc *ClusterConfig)) {
		cc := cfg.Clusters["c"]
		f(&cc)
		cfg.Clusters["c"] = cc
	}
	for _, tc := range []struct {
		name string
		edit func(cfg *Config)
	}{
		{"other host", func(cfg *Config) { c(cfg, func(cc *ClusterConfig) { cc.Nodes[0] = "db9" }) }},
		{"other port", func(cfg *Config) { c(cfg, func(cc *ClusterConfig) { cc.Nodes[0] = "db1:3307" }) }},
		{"failover order", func(cfg *Config) {
			c(cfg, func(cc *ClusterConfig) { cc.Nodes[0], cc.Nodes[1] = cc.Nodes[1], cc.Nodes[0] })
		}},
		{"node added", func(cfg *Config) { c(cfg, func(cc *ClusterConfig) { cc.Nodes = append(cc.Nodes, "db4") }) }},
		{"user", func(cfg *Config) { c(cfg, func(cc *ClusterConfig) { cc.User = "app2" }) }},
		{"password", func(cfg *Config) { c(cfg, func(cc *ClusterConfig) { cc.Password = "pw2" }) }},
		{"database", func(cfg *Config) { c(cfg, func(cc *ClusterConfig) { cc.Database = "shop2" }) }},
		{"driver parameter", func(cfg *Config) {
			c(cfg, func(cc *ClusterConfig) { cc.Params = map[string]string{"parseTime": "false"} })
		}},
		{"session variable", func(cfg *Config) {
			c(cfg, func(cc *ClusterConfig) { cc.Params = map[string]string{"time_zone": "'+01:00'"} })
		}},
		{"TLS", func(cfg *Config) {
			c(cfg, func(cc *ClusterConfig) { cc.TLS = &TLSConfig{DangerousSkipVerify: true} })
		}},
		{"connect timeout", func(cfg *Config) { c(cfg, func(cc *ClusterConfig) { cc.ConnectTimeout = 2 * time.Second }) }},
		{"pool size", func(cfg *Config) { c(cfg, func(cc *ClusterConfig) { cc.MaxOpenConns = 5 }) }},
		{"read policy", func(cfg *Config) { c(cfg, func(cc *ClusterConfig) { cc.ReadPolicy = ReadAnyUp }) }},
		{"health", func(cfg *Config) { c(cfg, func(cc *ClusterConfig) { cc.Health.FailAfter = 4 }) }},
		{"tx attempts", func(cfg *Config) { c(cfg, func(cc *ClusterConfig) { cc.TxAttempts = 1 }) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if reloadKeeps(t, planTestConfig(), tc.edit) {
				t.Error("Reload kept cluster c although its configuration changed")
			}
		})
	}
}

// countingReader is a readFile that counts the reads of each file.
type countingReader struct {
	mu    sync.Mutex
	reads map[string]int
}

func (c *countingReader) readFile(name string) ([]byte, error) {
	c.mu.Lock()
	if c.reads == nil {
		c.reads = make(map[string]int)
	}
	c.reads[name]++
	c.mu.Unlock()
	return os.ReadFile(name)
}

func (c *countingReader) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads[name]
}

// TestTLSFilesReadOncePerOpenAndReload: Open and Reload each read every TLS
// file once, however many clusters and nodes use it; a Reload with the same
// files keeps the clusters, and one whose file changed in place (a rotated
// certificate) or whose server name changed replaces them.
func TestTLSFilesReadOncePerOpenAndReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, _ := writeCert(t, dir, "ca")
	cert, key := writeCert(t, dir, "client")
	cfg := &Config{
		Defaults: Settings{User: "app", TLS: &TLSConfig{CAFile: ca, CertFile: cert, KeyFile: key}},
		Clusters: map[string]ClusterConfig{
			"a": {Nodes: []string{"a1", "a2", "a3"}},
			"b": {Nodes: []string{"b1", "b2", "b3"}},
			// Its own TLS, with the same CA file.
			"c": {Nodes: []string{"c1", "c2"}, Settings: Settings{TLS: &TLSConfig{CAFile: ca, ServerName: "db.example"}}},
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	files := &countingReader{}
	want := func(when string, n int) {
		t.Helper()
		for _, f := range []string{ca, cert, key} {
			if got := files.count(f); got != n {
				t.Errorf("%s: %s read %d times, want %d", when, filepath.Base(f), got, n)
			}
		}
	}
	r, err := open(cfg, files.readFile)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want("after Open", 1)
	clusters := func() map[string]*Cluster {
		m := make(map[string]*Cluster)
		for _, name := range r.Clusters() {
			m[name], _ = r.Cluster(name)
		}
		return m
	}
	before := clusters()

	if err := r.reload(cfg, files.readFile); err != nil {
		t.Fatal(err)
	}
	want("after Reload", 2)
	after := clusters()
	for name, c := range before {
		if after[name] != c {
			t.Errorf("Reload with the same TLS files replaced cluster %s", name)
		}
	}

	// The CA rewritten in place: same path, new content.
	writeCert(t, dir, "ca")
	cfg.Clusters["c"].TLS.ServerName = "db2.example"
	if err := r.reload(cfg, files.readFile); err != nil {
		t.Fatal(err)
	}
	want("after the second Reload", 3)
	for name, c := range clusters() {
		if after[name] == c {
			t.Errorf("Reload after the CA file changed kept cluster %s", name)
		}
	}
}

// TestCompileErrorsNameFieldAndValue: errors found while compiling a
// configuration name the field by its YAML path and show the value, from
// Validate, Open and Reload alike.
func TestCompileErrorsNameFieldAndValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(cfg *Config)
		want string
	}{
		{"the same node twice, once with its default port", func(cfg *Config) {
			cfg.Clusters["c"] = ClusterConfig{Nodes: []string{"db1", "db1:3306"}}
		}, `dbrouter: config: clusters.c.nodes[1]: "db1:3306": same node as clusters.c.nodes[0]`},
		{"unreadable CA file in the defaults", func(cfg *Config) {
			cfg.Defaults.TLS = &TLSConfig{CAFile: "/nonexistent/ca.pem"}
		}, `dbrouter: config: defaults.tls.ca_file: "/nonexistent/ca.pem": open: no such file or directory`},
		{"bad driver parameter of a cluster", func(cfg *Config) {
			cc := cfg.Clusters["c"]
			cc.Params = map[string]string{"parseTime": "maybe"}
			cfg.Clusters["c"] = cc
		}, `dbrouter: config: clusters.c.params.parseTime: "maybe": `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := planTestConfig()
			tc.edit(cfg)
			check := func(what string, err error) {
				t.Helper()
				var ce *ConfigError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v\nwant a *ConfigError containing %s", what, err, tc.want)
				}
			}
			check("Validate", cfg.Validate())
			_, err := Open(cfg)
			check("Open", err)
			r, err := Open(planTestConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			check("Reload", r.Reload(cfg))
		})
	}
}
