package dbrouter

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDecodeConfigMatchesYAML checks that the linear decode of the big
// mappings (decodeConfig) gives exactly what yaml.v3's own Decode gives, on
// every fixture and on shapes chosen to trip it: anchors and aliases at
// each level, merge keys, nulls, empty maps, numeric keys.
func TestDecodeConfigMatchesYAML(t *testing.T) {
	docs := map[string]string{
		"aliases": `
defaults: &d {user: app, database: shop}
clusters:
  c1: &c1 {nodes: [db1, db2], user: u1}
  c2: *c1
  3: {nodes: [db3]}
shard_maps:
  m1: &m {strategy: directory, entries: &e {k1: c1, 2: c2}, default: c1}
  m2: {strategy: initial, ranges: {A-M: c1, N-Z: c2}, other: c2}
  m3: {strategy: directory, entries: *e}
  m4: *m
`,
		"merges": `
base: &b {nodes: [db1]}
clusters:
  <<: {x: {nodes: [dbx]}}
  c1: {<<: *b, user: u}
shard_maps:
  m: {strategy: directory, entries: {<<: {a: c1}, b: c1}}
`,
		"nulls and empties": `
clusters:
  c1:
  c2: {}
shard_maps:
  m1: {strategy: directory, entries: {}}
  m2: {strategy: directory, entries: }
  m3:
`,
		"direct shapes": `
clusters:
  c1: {nodes: []}
  c2: {nodes: [db1, "db2", !!str 3306, 'db4']}
  c3: {nodes: [db1, 3306]}
  c4: {nodes: [db1, ~]}
  c5: {nodes: [&a db1, *a]}
  "c6": {"nodes": [db6]}
  7: {nodes: [db7]}
  c8: {nodes: [db8], user: u}
shard_maps:
  m: {strategy: directory, entries: {a: c1, b: "c2", c: 7, d: ~, e: !!str c8, 8: c8}}
`,
		"clusters alias": `
x: &cl {c1: {nodes: [db1]}}
clusters: *cl
`,
	}
	files, _ := filepath.Glob("testdata/config/*.yaml")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[f] = string(b)
	}
	for name, doc := range docs {
		var root yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &root); err != nil || len(root.Content) == 0 {
			continue // not YAML: ParseConfig stops before decoding
		}
		var want, got Config
		errWant := root.Decode(&want)
		errGot := decodeConfig(&root, &got)
		if errWant != nil && strings.Contains(errWant.Error(), "already defined") {
			continue // duplicate keys: the checker rejects them before decoding
		}
		if (errWant == nil) != (errGot == nil) {
			t.Errorf("%s: yaml.v3 err %v, decodeConfig err %v", name, errWant, errGot)
			continue
		}
		if errWant == nil && !reflect.DeepEqual(want, got) {
			t.Errorf("%s: decodeConfig differs from yaml.v3:\n got %+v\nwant %+v", name, got, want)
		}
	}
}

// BenchmarkParseConfig measures ParseConfig by the number of clusters, each
// with three nodes, and one directory map with an entry per cluster: its
// cost must grow linearly.
func BenchmarkParseConfig(b *testing.B) {
	for _, n := range []int{1000, 10000, 20000} {
		var sb strings.Builder
		sb.WriteString("defaults: {user: app}\nclusters:\n")
		for i := range n {
			fmt.Fprintf(&sb, "  c%d: {nodes: [10.0.%d.%d, 10.1.%d.%d, 10.2.%d.%d]}\n", i, i/250, i%250, i/250, i%250, i/250, i%250)
		}
		sb.WriteString("shard_maps:\n  m:\n    strategy: directory\n    entries:\n")
		for i := range n {
			fmt.Fprintf(&sb, "      k%d: c%d\n", i, i)
		}
		data := []byte(sb.String())
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := ParseConfig(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestEnvErrorPaths checks the YAML path that an unset variable's error
// names, in keys (as expanded), lists and lists of lists: the walks build
// paths only for errors.
func TestEnvErrorPaths(t *testing.T) {
	t.Setenv("DBR_TEST_K", "kk")
	for doc, want := range map[string]string{
		"clusters:\n  c1:\n    nodes:\n      - db1\n      - ${DBR_TEST_UNSET}\n":            "clusters.c1.nodes[1]: environment variable DBR_TEST_UNSET is not set (line 5)",
		"clusters:\n  ${DBR_TEST_K}:\n    nodes:\n      - db1\n      - ${DBR_TEST_UNSET}\n": "clusters.kk.nodes[1]: environment variable",
		"clusters:\n  ${DBR_TEST_UNSET}: {nodes: [db1]}\n":                                  "clusters.${DBR_TEST_UNSET}: environment variable",
		"- ${DBR_TEST_UNSET}\n":                               "config: [0]: environment variable",
		"${DBR_TEST_UNSET}\n":                                 "config: (document): environment variable",
		"a:\n  - - x\n    - - y\n      - ${DBR_TEST_UNSET}\n": "a[0][1][1]: environment variable DBR_TEST_UNSET is not set (line 4)",
	} {
		if _, err := ParseConfig([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", doc, err, want)
		}
	}
}
