package dbrouter

import (
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzParseConfig checks that no input makes ParseConfig panic, that a
// value of the wrong kind is reported by the type check (which names the
// field) rather than by yaml's Decode (which names a line), that a
// configuration it accepts can be opened and closed, and that it accepts
// no cluster or shard map name holding a control character, a line or
// paragraph separator or a character that shows as nothing (printableName).
func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/config/*.yaml")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("clusters: {c: {nodes: [a]}}\ndefaults: {user: u, password: '${X:-y}'}"))
	f.Add([]byte("defaults: &d {user: u}\nclusters: {c: {<<: *d, nodes: ['[::1]:1']}}"))
	f.Add([]byte("defaults: {user: u, max_open_conns: '1', connect_timeout: 5, health: {disabled: 1}}\nclusters: {c: {nodes: a}}"))
	f.Add([]byte("defaults: {user: u}\nclusters: {c: {nodes: [a], <<: [{max_idle_conns: 2}, *x]}, <<: {d: {nodes: [b]}}}"))
	f.Add([]byte("clusters: {c: {nodes: [a], params: [x], tls: true}}\nshard_maps: {m: {buckets: 1.5, clusters: x}}"))
	f.Add([]byte("defaults: {user: u}\nclusters: {\"pro\\u200bd\": {nodes: [a]}, \"\\ufeffc\": {nodes: [b]}}"))
	f.Add([]byte("defaults: {user: u}\nclusters: {c: {nodes: [a]}}\nshard_maps: {\"m\\u00ad\\u2060\": {strategy: directory, entries: {k: c}}}"))
	f.Add([]byte("defaults: {user: u}\nclusters: {\"a\u200db\": {nodes: [a]}, \"x\u180e\": {nodes: [b]}, \"\u3164\": {nodes: [c]}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			if strings.Contains(err.Error(), "cannot unmarshal") {
				t.Fatalf("type error not caught by the type check: %v", err)
			}
			return
		}
		names := slices.Collect(maps.Keys(cfg.Clusters))
		for name := range cfg.ShardMaps {
			names = append(names, name)
		}
		for _, name := range names {
			if i := strings.IndexFunc(name, func(r rune) bool {
				return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp,
					unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
			}); i >= 0 || !utf8.ValidString(name) {
				t.Fatalf("name %q accepted (at byte %d)", name, i)
			}
		}
		r, err := Open(cfg)
		if err != nil {
			// Open may still fail on what Validate cannot see (none
			// today): it must say why.
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		r.Close()
	})
}

// FuzzExpandEnv checks that env expansion never panics and leaves text
// without "${" unchanged.
func FuzzExpandEnv(f *testing.F) {
	for _, s := range []string{"${A}", "x$${A}", "${A:-b}", "${", "$", "${A}${B:-}", "}{$"} {
		f.Add(s)
	}
	lookup := func(k string) (string, bool) { return "v", k == "A" }
	f.Fuzz(func(t *testing.T, s string) {
		out, err := expandEnv(s, lookup)
		if err == nil && !strings.Contains(s, "${") && out != s {
			t.Fatalf("expandEnv(%q) = %q, want it unchanged", s, out)
		}
	})
}

// FuzzNormalizeAddr checks that an accepted node address has a host and a
// valid port and is stable under normalisation, and that an address with
// more than one colon is accepted only in brackets.
func FuzzNormalizeAddr(f *testing.F) {
	for _, s := range []string{"a", "a:1", "[::1]:3306", "::1", ":3306", "a:0", "a:99999", "a b", "u@tcp(a)/d",
		"::1:3306", "fe80::1", "[fe80::1%eth0]:3306", "[::1", "::ffff:10.0.0.1:3306", "a:b:c", "a:03306", "a:+3306", "db1:3306", "10.0.0.1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, err := normalizeAddr(s)
		if err != nil {
			var ae *addrError
			if !errors.As(err, &ae) {
				t.Fatalf("normalizeAddr(%q) error %T, want *addrError", s, err)
			}
			return
		}
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			t.Fatalf("normalizeAddr(%q) = %q: accepted an address with more than one colon and no brackets", s, addr)
		}
		again, err := normalizeAddr(addr)
		if err != nil || again != addr {
			t.Fatalf("normalizeAddr(%q) = %q, which normalises to %q, %v", s, addr, again, err)
		}
		if hostOf(addr) == "" {
			t.Fatalf("normalizeAddr(%q) = %q has no host", s, addr)
		}
		// What the fast path returns as it is must be what JoinHostPort
		// would write.
		if h, p, err := net.SplitHostPort(addr); err != nil || net.JoinHostPort(h, p) != addr {
			t.Fatalf("normalizeAddr(%q) = %q, not as JoinHostPort writes it (%v)", s, addr, err)
		}
	})
}
