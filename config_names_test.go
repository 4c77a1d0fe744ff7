package dbrouter

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestNamesMustBePrintableUTF8 checks that a cluster or shard map name that
// is not valid UTF-8 or holds a control character is refused, from YAML and
// from a Go struct literal, by a *ConfigError naming the field and quoting
// the value; node addresses too.
func TestNamesMustBePrintableUTF8(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		yaml string // "": no YAML form
		edit func(cfg *Config)
		want string
	}{
		{"cluster name with a tab", `clusters: {"c\tx": {nodes: [db1]}}`,
			func(cfg *Config) { cfg.Clusters["c\tx"] = ClusterConfig{Nodes: []string{"db9"}} },
			`dbrouter: config: clusters: "c\tx": cluster name must be valid UTF-8 without control characters`},
		{"cluster name with a newline", `clusters: {"c\nx": {nodes: [db1]}}`,
			func(cfg *Config) { cfg.Clusters["c\nx"] = ClusterConfig{Nodes: []string{"db9"}} },
			`dbrouter: config: clusters: "c\nx": cluster name must be valid UTF-8 without control characters`},
		{"cluster name with NUL", `clusters: {"c\0": {nodes: [db1]}}`,
			func(cfg *Config) { cfg.Clusters["c\x00"] = ClusterConfig{Nodes: []string{"db9"}} },
			`dbrouter: config: clusters: "c\x00": cluster name must be valid UTF-8 without control characters`},
		{"cluster name with DEL", `clusters: {"c\x7f": {nodes: [db1]}}`,
			func(cfg *Config) { cfg.Clusters["c\x7f"] = ClusterConfig{Nodes: []string{"db9"}} },
			`dbrouter: config: clusters: "c\x7f": cluster name must be valid UTF-8 without control characters`},
		{"cluster name with a C1 control", `clusters: {"c\x85": {nodes: [db1]}}`,
			func(cfg *Config) { cfg.Clusters["c\u0085"] = ClusterConfig{Nodes: []string{"db9"}} },
			`dbrouter: config: clusters: "c\u0085": cluster name must be valid UTF-8 without control characters`},
		{"cluster name not UTF-8", "",
			func(cfg *Config) { cfg.Clusters["c\xff"] = ClusterConfig{Nodes: []string{"db9"}} },
			`dbrouter: config: clusters: "c\xff": cluster name must be valid UTF-8 without control characters`},
		{"shard map name with an escape", "clusters: {c: {nodes: [db1]}}\n" + `shard_maps: {"m\e[31m": {strategy: directory, entries: {k: c}}}`,
			func(cfg *Config) {
				cfg.ShardMaps = map[string]ShardMapConfig{"m\x1b[31m": {Strategy: StrategyDirectory, Entries: map[string]string{"k": "c"}}}
			},
			`dbrouter: config: shard_maps: "m\x1b[31m": shard map name must be valid UTF-8 without control characters`},
		{"shard map name not UTF-8", "",
			func(cfg *Config) {
				cfg.ShardMaps = map[string]ShardMapConfig{"m\xc3": {Strategy: StrategyDirectory, Entries: map[string]string{"k": "c"}}}
			},
			`dbrouter: config: shard_maps: "m\xc3": shard map name must be valid UTF-8 without control characters`},
		{"node address with a control character", `clusters: {c: {nodes: ["db\x01"]}}`,
			func(cfg *Config) { cfg.Clusters["c"] = ClusterConfig{Nodes: []string{"db\x01"}} },
			`dbrouter: config: clusters.c.nodes[0]: "db\x01": the host has a character that no host name or IP address has`},
		{"node address not UTF-8", "",
			func(cfg *Config) { cfg.Clusters["c"] = ClusterConfig{Nodes: []string{"db\xff:3306"}} },
			`dbrouter: config: clusters.c.nodes[0]: "db\xff:3306": the host has a character that no host name or IP address has`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			check := func(what string, err error) {
				t.Helper()
				var ce *ConfigError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v\nwant a *ConfigError containing %s", what, err, tc.want)
				}
			}
			cfg := planTestConfig()
			tc.edit(cfg)
			check("Validate", cfg.Validate())
			_, err := Open(cfg)
			check("Open", err)
			if tc.yaml != "" {
				_, err := ParseConfig([]byte("defaults: {user: app}\n" + tc.yaml))
				check("ParseConfig", err)
			}
		})
	}
	// Names of any script, with spaces and punctuation, are still accepted.
	cfg := planTestConfig()
	cfg.Clusters["kunden 2 – Zürich/東京"] = ClusterConfig{Nodes: []string{"db9"}}
	if err := cfg.Validate(); err != nil {
		t.Errorf("printable UTF-8 name refused: %v", err)
	}
}

// TestNamesRefuseInvisibleCharacters checks that a cluster or shard map
// name holding a character that shows as nothing is refused, as control
// and bidi characters are: "prod" and "pro\u200bd" print the same in a
// log line, an error or a metric label, so one could pass for the other.
// Each is refused from a Go literal, by ParseConfig (YAML's "\u" escapes)
// and by Open, with a *ConfigError naming the field and quoting the value.
func TestNamesRefuseInvisibleCharacters(t *testing.T) {
	t.Parallel()
	for _, r := range []rune{
		'\u200b',     // ZERO WIDTH SPACE
		'\u200c',     // ZERO WIDTH NON-JOINER
		'\u200d',     // ZERO WIDTH JOINER
		'\u2060',     // WORD JOINER
		'\ufeff',     // ZERO WIDTH NO-BREAK SPACE (BOM)
		'\u180e',     // MONGOLIAN VOWEL SEPARATOR
		'\u00ad',     // SOFT HYPHEN
		'\u2061',     // FUNCTION APPLICATION (invisible operator)
		'\u034f',     // COMBINING GRAPHEME JOINER
		'\u3164',     // HANGUL FILLER
		'\ufe00',     // VARIATION SELECTOR-1
		'\U000e0041', // TAG LATIN CAPITAL LETTER A
	} {
		name := "pro" + string(r) + "d"
		t.Run(fmt.Sprintf("U+%04X", r), func(t *testing.T) {
			t.Parallel()
			check := func(what, field string, err error) {
				t.Helper()
				want := fmt.Sprintf("dbrouter: config: %s: %q: ", field, name)
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Field != field || ce.Value != name || !strings.HasPrefix(err.Error(), want) {
					t.Errorf("%s: %v\nwant a *ConfigError on %s starting %s", what, err, field, want)
				}
			}
			cfg := planTestConfig()
			cfg.Clusters[name] = ClusterConfig{Nodes: []string{"db9"}}
			check("cluster: Validate", "clusters", cfg.Validate())
			_, err := Open(cfg)
			check("cluster: Open", "clusters", err)
			esc := fmt.Sprintf(`pro\U%08Xd`, r)
			_, err = ParseConfig([]byte("defaults: {user: app}\nclusters: {\"" + esc + "\": {nodes: [db1]}}"))
			check("cluster: ParseConfig", "clusters", err)

			cfg = planTestConfig()
			cfg.ShardMaps = map[string]ShardMapConfig{name: {Strategy: StrategyDirectory, Entries: map[string]string{"k": "c"}}}
			check("shard map: Validate", "shard_maps", cfg.Validate())
			_, err = Open(cfg)
			check("shard map: Open", "shard_maps", err)
			_, err = ParseConfig([]byte("defaults: {user: app}\nclusters: {c: {nodes: [db1]}}\nshard_maps: {\"" + esc + "\": {strategy: directory, entries: {k: c}}}"))
			check("shard map: ParseConfig", "shard_maps", err)
		})
	}
	// Visible characters around them stay accepted: other scripts,
	// combining accents, emoji that need no joiner.
	for _, name := range []string{"prod-2", "kunden 2 – Zürich/東京", "cafe\u0301", "💻 team", "עברית"} {
		cfg := planTestConfig()
		cfg.Clusters[name] = ClusterConfig{Nodes: []string{"db9"}}
		if err := cfg.Validate(); err != nil {
			t.Errorf("cluster name %q refused: %v", name, err)
		}
	}
}
