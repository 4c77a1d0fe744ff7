package dbrouter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unicode"
	"unicode/utf8"
)

const shardYAML = `
defaults: {user: app}
clusters:
  cust-1: {nodes: ["127.0.0.1:1"]}
  cust-2: {nodes: ["127.0.0.1:2"]}
  cust-3: {nodes: ["127.0.0.1:3"]}
  cust-other: {nodes: ["127.0.0.1:4"]}
  cust-intl: {nodes: ["127.0.0.1:5"]}
  logs-1: {nodes: ["127.0.0.1:6"]}
  logs-2: {nodes: ["127.0.0.1:7"]}
shard_maps:
  customers:
    strategy: initial
    ranges: {A-F: cust-1, G-P: cust-2, Q-Z: cust-3, А-Я: cust-intl}
    other: cust-other
    default: cust-intl
  strict:
    strategy: initial
    ranges: {a-m: cust-1, n-z: cust-2}
  weblogs:
    strategy: directory
    entries: {web1: logs-1, web2: logs-2, web3: logs-2}
  weblogs-default:
    strategy: directory
    entries: {web1: logs-1}
    default: logs-2
  sessions:
    strategy: hash
    buckets: 1024
    clusters: [cust-1, cust-2]
  sessions-explicit:
    strategy: hash
    buckets: 8
    ranges: {"0-2": cust-1, "3": cust-2, "4-7": cust-3}
`

func openShardRouter(t testing.TB) *Router {
	t.Helper()
	cfg, err := ParseConfig([]byte(shardYAML))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRoute(t *testing.T) {
	r := openShardRouter(t)
	tests := []struct {
		m, key, want string
		err          error
	}{
		{"customers", "Smith", "cust-3", nil},
		{"customers", "smith", "cust-3", nil},
		{"customers", "Adams", "cust-1", nil},
		{"customers", "Élodie", "cust-1", nil}, // É folds to E
		{"customers", "ßmith", "cust-3", nil},  // ß folds to S
		{"customers", "Øberg", "cust-2", nil},  // Ø folds to O
		{"customers", "Łukasz", "cust-2", nil}, // Ł folds to L
		{"customers", "Ångström", "cust-1", nil},
		{"customers", "123 Corp", "cust-other", nil},
		{"customers", " Smith", "cust-other", nil}, // keys are not trimmed
		{"customers", "_x", "cust-other", nil},
		{"customers", "\xff\xfe", "cust-other", nil}, // invalid UTF-8 is not a letter
		{"customers", "иванов", "cust-intl", nil},    // folded to И, in А-Я
		{"customers", "Ωmega", "cust-intl", nil},     // a letter in no range: default
		{"customers", "東京", "cust-intl", nil},
		{"customers", "", "", ErrEmptyKey},
		{"strict", "zed", "cust-2", nil},
		{"strict", "Zed", "cust-2", nil},
		{"strict", "123", "", ErrNoShard},
		{"strict", "Ωmega", "", ErrNoShard},
		{"weblogs", "web3", "logs-2", nil},
		{"weblogs", "WEB3", "", ErrNoShard}, // exact, case-sensitive
		{"weblogs", "web9", "", ErrNoShard},
		{"weblogs-default", "web9", "logs-2", nil},
		{"weblogs-default", "", "", ErrEmptyKey},
		{"sessions", "", "", ErrEmptyKey},
		{"nosuchmap", "x", "", ErrUnknownShardMap},
	}
	for _, tc := range tests {
		t.Run(tc.m+"/"+tc.key, func(t *testing.T) {
			c, err := r.Route(tc.m, tc.key)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Route(%q, %q) = %v, %v; want error %v", tc.m, tc.key, c, err, tc.err)
				}
				if tc.err != ErrUnknownShardMap && !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.m)) {
					t.Errorf("error does not name the map: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Route(%q, %q): %v", tc.m, tc.key, err)
			}
			if c.Name() != tc.want {
				t.Errorf("Route(%q, %q) = %s, want %s", tc.m, tc.key, c.Name(), tc.want)
			}
		})
	}
}

func TestHashMapBuckets(t *testing.T) {
	r := openShardRouter(t)
	// The hash is FNV-1a 64: its published test vector pins it.
	if got := HashKey("a"); got != 0xaf63dc4c8601ec8c {
		t.Fatalf("HashKey(a) = %#x, want FNV-1a 0xaf63dc4c8601ec8c", got)
	}
	counts := map[string]int{}
	for i := range 10000 {
		key := fmt.Sprintf("session-%d", i)
		c, err := r.Route("sessions", key)
		if err != nil {
			t.Fatal(err)
		}
		want := "cust-1"
		if HashKey(key)%1024 >= 512 {
			want = "cust-2"
		}
		if c.Name() != want {
			t.Fatalf("%s: bucket %d routed to %s, want %s", key, HashKey(key)%1024, c.Name(), want)
		}
		counts[c.Name()]++
	}
	if counts["cust-1"] < 4500 || counts["cust-2"] < 4500 {
		t.Errorf("uneven split over 10000 keys: %v", counts)
	}
	for i := range 1000 {
		key := fmt.Sprint(i)
		c, _ := r.Route("sessions-explicit", key)
		want := map[uint64]string{0: "cust-1", 1: "cust-1", 2: "cust-1", 3: "cust-2"}[HashKey(key)%8]
		if want == "" {
			want = "cust-3"
		}
		if c.Name() != want {
			t.Fatalf("%s: bucket %d → %s, want %s", key, HashKey(key)%8, c.Name(), want)
		}
	}
}

// TestInitialFoldLatin checks that every letter of U+00C0–U+017F folds to
// an ASCII base letter that matches its own first letter when decomposed.
func TestInitialFoldLatin(t *testing.T) {
	for r := rune(latinFirst); r <= latinLast; r++ {
		f, ok := InitialFold(r)
		if unicode.IsLetter(r) != ok {
			t.Errorf("%c (%U): letter = %v, IsLetter = %v", r, r, ok, unicode.IsLetter(r))
		}
		if ok && (f < 'A' || f > 'Z') {
			t.Errorf("%c (%U) folds to %c, want A-Z", r, r, f)
		}
	}
	for in, want := range map[rune]rune{'é': 'E', 'Ç': 'C', 'ñ': 'N', 'ÿ': 'Y', 'ž': 'Z', 'ı': 'I', 'Þ': 'T', 'ð': 'D'} {
		if f, _ := InitialFold(in); f != want {
			t.Errorf("InitialFold(%c) = %c, want %c", in, f, want)
		}
	}
	if _, ok := InitialFold('×'); ok {
		t.Error("× is not a letter")
	}
}

func TestRouteUserMap(t *testing.T) {
	cfg, err := ParseConfig([]byte(shardYAML))
	if err != nil {
		t.Fatal(err)
	}
	// A ready Go value of the caller's own type.
	cfg.ShardMaps["mine"] = ShardMapConfig{Map: lengthMap{"cust-1", "nope"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `shard_maps.mine.clusters: "nope": unknown cluster`) {
		t.Fatalf("Validate with a listed unknown cluster: %v", err)
	}
	cfg.ShardMaps["mine"] = ShardMapConfig{Map: unlistedMap{}}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if c, err := r.Route("mine", "short"); err != nil || c.Name() != "logs-1" {
		t.Fatalf("Route(mine, short) = %v, %v", c, err)
	}
	// A map that is not a ClusterLister is checked at Route time.
	if _, err := r.Route("mine", "a longer key"); !errors.Is(err, ErrUnknownCluster) || !strings.Contains(err.Error(), `"ghost"`) {
		t.Fatalf("Route to an unconfigured cluster: %v", err)
	}
	if err := r.Each(context.Background(), "mine", 0, func(context.Context, *Cluster) error { return nil }); err == nil || !strings.Contains(err.Error(), "ClusterLister") {
		t.Fatalf("Each over a map that cannot list its clusters: %v", err)
	}
	cfg.ShardMaps["both"] = ShardMapConfig{Map: unlistedMap{}, Strategy: "hash"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "shard_maps.both.map") {
		t.Fatalf("Map with Strategy: %v", err)
	}
}

type lengthMap [2]string

func (m lengthMap) Lookup(key string) (string, error) { return m[len(key)%2], nil }
func (m lengthMap) Clusters() []string                { return m[:] }

type unlistedMap struct{}

func (unlistedMap) Lookup(key string) (string, error) {
	if len(key) < 10 {
		return "logs-1", nil
	}
	return "ghost", nil
}

// zoneStrategy is a user-defined strategy registered for YAML: the key's
// prefix before ":" names a zone, params map zones to clusters.
func zoneStrategy(cfg ShardMapConfig) (ShardMap, error) {
	if len(cfg.Params) == 0 {
		return nil, &ConfigError{Field: "params", Msg: "at least one zone is required"}
	}
	return zoneMap(cfg.Params), nil
}

type zoneMap map[string]string

func (z zoneMap) Lookup(key string) (string, error) {
	zone, _, _ := strings.Cut(key, ":")
	if c, ok := z[zone]; ok {
		return c, nil
	}
	return "", ErrNoShard
}

func (z zoneMap) Clusters() []string {
	return slices.Collect(func(yield func(string) bool) {
		for _, c := range z {
			if !yield(c) {
				return
			}
		}
	})
}

var registerZone = func() bool { RegisterStrategy("zone", zoneStrategy); return true }()

func TestRegisterStrategy(t *testing.T) {
	_ = registerZone
	cfg, err := ParseConfig([]byte(shardYAML + `
  zones:
    strategy: zone
    params: {eu: cust-1, us: cust-2}
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if c, err := r.Route("zones", "us:1234"); err != nil || c.Name() != "cust-2" {
		t.Fatalf("Route(zones, us:1234) = %v, %v", c, err)
	}
	if _, err := r.Route("zones", "ap:1"); !errors.Is(err, ErrNoShard) || !strings.Contains(err.Error(), `key "ap:1"`) {
		t.Fatalf("Route(zones, ap:1): %v", err)
	}
	_, err = ParseConfig([]byte(shardYAML + "\n  zones: {strategy: zone}\n"))
	if err == nil || !strings.Contains(err.Error(), "shard_maps.zones.params: at least one zone") {
		t.Fatalf("registered strategy's own error: %v", err)
	}
	_, err = ParseConfig([]byte(shardYAML + "\n  zones: {strategy: zone, params: {eu: cust-9}}\n"))
	if err == nil || !strings.Contains(err.Error(), `shard_maps.zones.clusters: "cust-9": unknown cluster`) {
		t.Fatalf("registered strategy naming an unknown cluster: %v", err)
	}
	for _, name := range []string{"", "hash", "zone"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterStrategy(%q) did not panic", name)
				}
			}()
			RegisterStrategy(name, zoneStrategy)
		}()
	}
}

func TestShardLookupAllocs(t *testing.T) {
	r := openShardRouter(t)
	for _, tc := range []struct{ m, key string }{
		{"customers", "Smith"}, {"customers", "Élodie"}, {"customers", "иванов"}, {"customers", "123"},
		{"weblogs", "web2"}, {"sessions", "session-42"},
	} {
		if n := testing.AllocsPerRun(100, func() { r.Route(tc.m, tc.key) }); n != 0 {
			t.Errorf("Route(%q, %q) allocates %v times per call", tc.m, tc.key, n)
		}
	}
}

func TestEach(t *testing.T) {
	r := openShardRouter(t)
	var seen atomic.Int32
	var running, peak atomic.Int32
	err := r.Each(context.Background(), "customers", 2, func(ctx context.Context, c *Cluster) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer running.Add(-1)
		seen.Add(1)
		if c.Name() == "cust-2" {
			return fmt.Errorf("boom on %s", c.Name())
		}
		return nil
	})
	if seen.Load() != 5 { // cust-1, -2, -3, -intl, -other
		t.Errorf("fn ran %d times, want 5", seen.Load())
	}
	if peak.Load() > 2 {
		t.Errorf("%d calls ran at once, limit 2", peak.Load())
	}
	var fe *FanOutError
	if !errors.As(err, &fe) || len(fe.Errs) != 1 || fe.Errs["cust-2"] == nil || !strings.Contains(err.Error(), "cust-2: boom") {
		t.Fatalf("Each error = %v", err)
	}
	// Every cluster of the router.
	seen.Store(0)
	if err := r.Each(context.Background(), "", 0, func(context.Context, *Cluster) error { seen.Add(1); return nil }); err != nil || seen.Load() != 7 {
		t.Fatalf("Each over all: %v, %d calls", err, seen.Load())
	}
	// A cancelled context: fn is not called, each cluster reports ctx's error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	seen.Store(0)
	err = r.Each(ctx, "weblogs", 1, func(context.Context, *Cluster) error { seen.Add(1); return nil })
	if !errors.Is(err, context.Canceled) || seen.Load() != 0 {
		t.Fatalf("Each with a cancelled ctx: %v, %d calls", err, seen.Load())
	}
	if err := r.Each(context.Background(), "nope", 0, nil); !errors.Is(err, ErrUnknownShardMap) {
		t.Fatalf("Each over an unknown map: %v", err)
	}
}

// BenchmarkLookup measures each built-in strategy's Lookup, and Route
// (map lookup + Lookup + cluster lookup).
func BenchmarkLookup(b *testing.B) {
	r := openShardRouter(b)
	t := r.table.Load()
	for _, bc := range []struct{ name, m, key string }{
		{"initial/ascii", "customers", "Smith"},
		{"initial/latin", "customers", "Élodie"},
		{"initial/cyrillic", "customers", "иванов"},
		{"directory", "weblogs", "web2"},
		{"hash/short", "sessions", "session-42"},
		{"hash/36B", "sessions", "0f8fad5b-d9cb-469f-a165-70867728950e"},
	} {
		m := t.maps[bc.m]
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Lookup(bc.key); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Route/"+bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Route(bc.m, bc.key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzShardMap builds shard maps from fuzzed YAML and keys: no input may
// panic, and Lookup on a validated map returns only clusters the
// configuration has.
func FuzzShardMap(f *testing.F) {
	f.Add("initial", "A-M: c1\nN-Z: c2", "c3", "Smith")
	f.Add("initial", "A-Z: c1\nА-Я: c2", "", "иванов")
	f.Add("directory", "web1: c1\nweb2: c2", "c3", "web2")
	f.Add("hash", "0-3: c1\n4-7: c2", "", "key")
	f.Add("initial", "A-F: c1\nG-Z: c2\nЁ: c3", "c3", "\xff")
	f.Fuzz(func(t *testing.T, strategy, table, def, key string) {
		field := "ranges"
		extra := ""
		switch strategy {
		case "directory":
			field = "entries"
		case "hash":
			extra = "\n    buckets: 8"
		}
		indented := "      " + strings.ReplaceAll(table, "\n", "\n      ")
		doc := fmt.Sprintf("defaults: {user: u}\nclusters: {c1: {nodes: [a]}, c2: {nodes: [b]}, c3: {nodes: [c]}}\nshard_maps:\n  m:\n    strategy: %q%s\n    %s:\n%s\n", strategy, extra, field, indented)
		if def != "" {
			doc += fmt.Sprintf("    default: %q\n", def)
		}
		cfg, err := ParseConfig([]byte(doc))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		maps, err := cfg.buildShardMaps()
		if err != nil {
			t.Fatalf("validated config failed to build: %v", err)
		}
		m := maps["m"]
		for _, k := range []string{key, strings.ToUpper(key), strings.ToLower(key)} {
			c, err := m.Lookup(k)
			if err != nil {
				if !errors.Is(err, ErrEmptyKey) && !errors.Is(err, ErrNoShard) {
					t.Fatalf("Lookup(%q): unexpected error %v", k, err)
				}
				if k != "" && errors.Is(err, ErrEmptyKey) {
					t.Fatalf("Lookup(%q): ErrEmptyKey for a non-empty key", k)
				}
				continue
			}
			if _, ok := cfg.Clusters[c]; !ok {
				t.Fatalf("Lookup(%q) = %q, not a configured cluster", k, c)
			}
			if strategy == "initial" && utf8.ValidString(k) && k != "" {
				// Case must not matter for ASCII letters.
				r, _ := utf8.DecodeRuneInString(k)
				if r < 0x80 && unicode.IsLetter(r) {
					c2, _ := m.Lookup(swapCase(r) + k[1:])
					if c2 != c {
						t.Fatalf("Lookup(%q) = %s but its other case gives %s", k, c, c2)
					}
				}
			}
		}
	})
}

func swapCase(r rune) string {
	if unicode.IsUpper(r) {
		return string(unicode.ToLower(r))
	}
	return string(unicode.ToUpper(r))
}
