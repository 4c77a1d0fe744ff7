package dbrouter

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// scaleYAML is a configuration of n clusters of three nodes each, written
// as bench/scale writes it, plus, with withMap, one directory map with an
// entry per cluster.
func scaleYAML(n int, withMap bool) []byte {
	var sb strings.Builder
	sb.WriteString("defaults: {user: app, password: secret, database: shop}\nclusters:\n")
	for i := range n {
		fmt.Fprintf(&sb, "  c%d: {nodes: [10.0.%d.%d:3306, 10.1.%d.%d:3306, 10.2.%d.%d:3306]}\n",
			i, i/250%250, i%250+1, i/250%250, i%250+1, i/250%250, i%250+1)
	}
	if withMap {
		sb.WriteString("shard_maps:\n  m:\n    strategy: directory\n    entries:\n")
		for i := range n {
			fmt.Fprintf(&sb, "      k%d: c%d\n", i, i)
		}
	}
	return []byte(sb.String())
}

// BenchmarkConfigPhases measures each step of ParseConfig and Open on a
// configuration of 10,000 clusters (scaleYAML, as bench/scale writes it
// and with a shard map): the YAML parse (parseYAML), ${VAR}
// expansion, the type check, the decode, the compile (validation and
// plan) and Open of the parsed Config, which compiles a copy again and
// builds the clusters, then closes the router.
func BenchmarkConfigPhases(b *testing.B) {
	for _, withMap := range []bool{false, true} {
		b.Run(fmt.Sprintf("map=%v", withMap), func(b *testing.B) { benchConfigPhases(b, scaleYAML(10000, withMap)) })
	}
}

func benchConfigPhases(b *testing.B, data []byte) {
	parse := func() *yaml.Node {
		root, err := parseYAML(data)
		if err != nil {
			b.Fatal(err)
		}
		return root
	}
	expand := func(root *yaml.Node) map[*yaml.Node]string {
		expanded := make(map[*yaml.Node]string)
		if err := expandNode(root, new(yamlPath), os.LookupEnv, expanded); err != nil {
			b.Fatal(err)
		}
		return expanded
	}
	newChecker := func(expanded map[*yaml.Node]string) *checker {
		return &checker{budget: checkBudget, expanded: expanded, origins: make(map[string]string),
			seen: make(map[aliasUse]bool), hasExp: make(map[*yaml.Node]bool)}
	}
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			parse()
		}
	})
	root := parse()
	b.Run("expand", func(b *testing.B) {
		for b.Loop() {
			expand(root)
		}
	})
	expanded := expand(root)
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if err := newChecker(expanded).check(root.Content[0], reflect.TypeFor[Config]()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			var cfg Config
			if err := decodeConfig(root, &cfg); err != nil {
				b.Fatal(err)
			}
		}
	})
	cfg, err := ParseConfig(data)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("compile", func(b *testing.B) {
		for b.Loop() {
			if _, err := cfg.compile(nil, os.ReadFile); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParseConfig", func(b *testing.B) {
		for b.Loop() {
			if _, err := ParseConfig(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	cfg.Logger = slog.New(slog.DiscardHandler)
	b.Run("Open", func(b *testing.B) {
		for b.Loop() {
			r, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			r.Close()
			b.StartTimer()
		}
	})
}

// BenchmarkParseConfig10k times ParseConfig of the file of 10,000
// clusters of three nodes that bench/scale -parse-open writes.
func BenchmarkParseConfig10k(b *testing.B) {
	data := scaleYAML(10000, false)
	for b.Loop() {
		if _, err := ParseConfig(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen10k times Open of that file just parsed, as bench/scale
// -parse-open does (ParseConfig and Close are not timed).
func BenchmarkOpen10k(b *testing.B) {
	benchParseOpen(b, false)
}

// BenchmarkParseConfigOpen10k times ParseConfig and Open of that file, the
// figure bench/scale -parse-open reports as "both" (Close is not timed).
func BenchmarkParseConfigOpen10k(b *testing.B) {
	benchParseOpen(b, true)
}

func benchParseOpen(b *testing.B, timeParse bool) {
	data := scaleYAML(10000, false)
	b.ResetTimer()
	for range b.N {
		if !timeParse {
			b.StopTimer()
		}
		cfg, err := ParseConfig(data)
		if err != nil {
			b.Fatal(err)
		}
		cfg.Logger = slog.New(slog.DiscardHandler)
		b.StartTimer()
		r, err := Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		r.Close()
		b.StartTimer()
	}
}
