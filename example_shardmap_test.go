package dbrouter_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"sync/atomic"

	"github.com/dbrouter/dbrouter"
)

// Route picks a data set's cluster through a named shard map. Opening the
// router and routing need no server: connections are made on first use.
func ExampleRouter_Route() {
	cfg, err := dbrouter.ParseConfig([]byte(`
defaults: { user: app, database: shop }
clusters:
  cust-1: { nodes: [10.0.1.1, 10.0.1.2, 10.0.1.3] }
  cust-2: { nodes: [10.0.2.1, 10.0.2.2, 10.0.2.3] }
  cust-3: { nodes: [10.0.3.1, 10.0.3.2, 10.0.3.3] }
  logs-1: { nodes: [10.0.9.1, 10.0.9.2] }
  logs-2: { nodes: [10.0.9.3, 10.0.9.4] }
shard_maps:
  customers:                          # by first letter, case-insensitive
    strategy: initial
    ranges: { A-H: cust-1, I-Q: cust-2, R-Z: cust-3 }
    other: cust-3                     # names that start with no letter
  weblogs:                            # web server id → its log cluster
    strategy: directory
    entries: { web1: logs-1, web2: logs-2, web3: logs-2 }
  sessions:                           # FNV-1a hash into 1024 buckets
    strategy: hash
    buckets: 1024
    ranges: { "0-511": cust-1, "512-1023": cust-2 }
`))
	if err != nil {
		log.Fatal(err)
	}
	r, err := dbrouter.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	for _, q := range [][2]string{
		{"customers", "Smith"}, {"customers", "élodie"}, {"customers", "ßmith"}, {"customers", "123 Corp"},
		{"weblogs", "web3"}, {"sessions", "4f1c2a"},
	} {
		c, err := r.Route(q[0], q[1])
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %q → %s\n", q[0], q[1], c.Name())
	}
	_, err = r.Route("weblogs", "web9")
	fmt.Println(err)
	_, err = r.Route("customers", "")
	fmt.Println(err)
	// Output:
	// customers "Smith" → cust-3
	// customers "élodie" → cust-1
	// customers "ßmith" → cust-3
	// customers "123 Corp" → cust-3
	// weblogs "web3" → logs-2
	// sessions "4f1c2a" → cust-1
	// dbrouter: shard map "weblogs": key "web9": key is in no shard
	// dbrouter: shard map "customers": key "": empty shard key
}

// Each runs a function on every cluster of a shard map, a few at a time,
// and collects each cluster's error.
func ExampleRouter_Each() {
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Database: "logs"},
		Clusters: map[string]dbrouter.ClusterConfig{
			"logs-1": {Nodes: []string{"10.0.9.1", "10.0.9.2"}},
			"logs-2": {Nodes: []string{"10.0.9.3", "10.0.9.4"}},
		},
		ShardMaps: map[string]dbrouter.ShardMapConfig{
			"weblogs": {Strategy: dbrouter.StrategyDirectory, Entries: map[string]string{"web1": "logs-1", "web2": "logs-2"}},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	var clusters atomic.Int32
	err = r.Each(context.Background(), "weblogs", 4, func(ctx context.Context, c *dbrouter.Cluster) error {
		clusters.Add(1)
		// With servers: c.QueryRowContext(ctx, "SELECT COUNT(*) FROM access_log WHERE ...").Scan(&n)
		return nil
	})
	fmt.Println(clusters.Load(), "clusters, error:", err)
	// Output:
	// 2 clusters, error: <nil>
}

// Reload swaps clusters and shard maps atomically; an invalid configuration
// is rejected whole and the old one stays.
func ExampleRouter_Reload() {
	yaml := `
defaults: { user: app }
clusters:
  logs-1: { nodes: [10.0.9.1] }
  logs-2: { nodes: [10.0.9.3] }
shard_maps:
  weblogs: { strategy: directory, entries: { web1: logs-1, web2: WEB2 } }
`
	cfg, err := dbrouter.ParseConfig([]byte(strings.ReplaceAll(yaml, "WEB2", "logs-1")))
	if err != nil {
		log.Fatal(err)
	}
	r, err := dbrouter.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	next, _ := dbrouter.ParseConfig([]byte(strings.ReplaceAll(yaml, "WEB2", "logs-2")))
	if err := r.Reload(next); err != nil {
		log.Fatal(err)
	}
	c, _ := r.Route("weblogs", "web2")
	fmt.Println("web2 →", c.Name())

	bad := *next
	bad.ShardMaps = map[string]dbrouter.ShardMapConfig{"weblogs": {Strategy: "directory", Entries: map[string]string{"web2": "logs-9"}}}
	fmt.Println(r.Reload(&bad))
	c, _ = r.Route("weblogs", "web2")
	fmt.Println("web2 →", c.Name())
	// Output:
	// web2 → logs-2
	// dbrouter: Reload rejected, configuration unchanged: dbrouter: config: shard_maps.weblogs.entries.web2: "logs-9": unknown cluster (configured: logs-1, logs-2)
	// web2 → logs-2
}

// A user-defined strategy is any type with a Lookup method. Register it by
// name to use it from YAML; list its clusters (ClusterLister) so the router
// can check them at load and fan out over them.
func ExampleRegisterStrategy() {
	dbrouter.RegisterStrategy("tenant-prefix", func(cfg dbrouter.ShardMapConfig) (dbrouter.ShardMap, error) {
		if len(cfg.Params) == 0 {
			return nil, &dbrouter.ConfigError{Field: "params", Msg: "map each tenant prefix to a cluster"}
		}
		return prefixMap(cfg.Params), nil
	})
	cfg, err := dbrouter.ParseConfig([]byte(`
defaults: { user: app }
clusters: { eu: { nodes: [10.0.1.1] }, us: { nodes: [10.0.2.1] } }
shard_maps:
  tenants: { strategy: tenant-prefix, params: { acme: us, globex: eu } }
`))
	if err != nil {
		log.Fatal(err)
	}
	r, err := dbrouter.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	c, err := r.Route("tenants", "globex/order-42")
	fmt.Println(c.Name(), err)
	// Output:
	// eu <nil>
}

// prefixMap routes "tenant/anything" by its tenant prefix.
type prefixMap map[string]string

func (m prefixMap) Lookup(key string) (string, error) {
	tenant, _, _ := strings.Cut(key, "/")
	if c, ok := m[tenant]; ok {
		return c, nil
	}
	return "", dbrouter.ErrNoShard
}

func (m prefixMap) Clusters() []string {
	var out []string
	for _, c := range m {
		out = append(out, c)
	}
	return out
}
