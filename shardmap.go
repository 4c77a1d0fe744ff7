package dbrouter

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// ShardMap maps the key of a data set ("Smith", "web3") to the name of the
// cluster that holds it. Lookup must be safe for concurrent use and must not
// keep key. A map returns ErrEmptyKey for an empty key and ErrNoShard (or an
// error wrapping it) for a key it has no cluster for.
//
// Any Go type with this method can be used as a shard map: set it as
// ShardMapConfig.Map, or register a strategy with RegisterStrategy to build
// it from YAML.
type ShardMap interface {
	Lookup(key string) (cluster string, err error)
}

// ClusterLister is implemented by shard maps that can list every cluster
// their Lookup may return. The built-in maps implement it. The router uses
// it to check at load that each listed cluster is configured, and
// Router.Each uses it to find the clusters of a map.
type ClusterLister interface {
	Clusters() []string
}

// Names of the built-in shard map strategies.
const (
	StrategyInitial   = "initial"
	StrategyDirectory = "directory"
	StrategyHash      = "hash"
)

// MaxHashBuckets is the largest bucket count of a hash map.
const MaxHashBuckets = 1 << 20

// ShardMapConfig configures one shard map. Strategy picks how it is built;
// each strategy reads only the fields documented for it, and a field set for
// the wrong strategy is an error.
//
//   - "initial" routes by the key's first letter: Ranges maps letter ranges
//     ("A-F", "G", "a-m") to clusters and must cover A to Z without gaps or
//     overlaps. Other is the cluster of keys that do not start with a
//     letter ("123 Corp", "_x"); Default the cluster of every key no range
//     or Other matches (letters of other scripts, and non-letters when
//     Other is empty). See InitialFold for how a first letter is folded.
//   - "directory" routes exact keys: Entries maps each key (case-sensitive)
//     to its cluster; Default, when set, takes every other key.
//   - "hash" hashes the key with 64-bit FNV-1a into Buckets buckets
//     (bucket = hash % Buckets) and assigns bucket ranges to clusters,
//     either evenly in order with Clusters, or explicitly with Ranges
//     ("0-511": cust-1), which must cover every bucket exactly once. Moving
//     one bucket range to another cluster later moves only its keys.
//   - any name given to RegisterStrategy: the registered function builds
//     the map from this configuration (Params is for its own settings).
//
// From Go, Map may be set to a ready ShardMap of the caller's own type;
// Strategy and the other fields must then be empty.
type ShardMapConfig struct {
	Strategy string            `yaml:"strategy"`
	Ranges   map[string]string `yaml:"ranges"`
	Entries  map[string]string `yaml:"entries"`
	Buckets  int               `yaml:"buckets"`
	Clusters []string          `yaml:"clusters"`
	Default  string            `yaml:"default"`
	Other    string            `yaml:"other"`
	Params   map[string]string `yaml:"params"`

	// Map is a shard map built by the caller. It cannot be set from YAML,
	// and Config.MarshalJSON leaves it out.
	Map ShardMap `yaml:"-" json:"-"`
}

// StrategyFunc builds a shard map from its configuration. It returns a
// *ConfigError (Field relative to the map, e.g. "params.zones") for invalid
// settings.
type StrategyFunc func(cfg ShardMapConfig) (ShardMap, error)

var (
	strategiesMu sync.RWMutex
	strategies   = map[string]StrategyFunc{}
)

// RegisterStrategy makes a shard map strategy available by name to YAML
// configurations ("strategy: NAME"), like sql.Register does for drivers. It
// panics if name is empty, is a built-in strategy or is already registered,
// or if f is nil. Call it from an init function or before ParseConfig.
func RegisterStrategy(name string, f StrategyFunc) {
	strategiesMu.Lock()
	defer strategiesMu.Unlock()
	switch {
	case f == nil:
		panic("dbrouter: RegisterStrategy: nil StrategyFunc for " + strconv.Quote(name))
	case name == "" || name == StrategyInitial || name == StrategyDirectory || name == StrategyHash:
		panic("dbrouter: RegisterStrategy: reserved strategy name " + strconv.Quote(name))
	case strategies[name] != nil:
		panic("dbrouter: RegisterStrategy: strategy " + strconv.Quote(name) + " registered twice")
	}
	strategies[name] = f
}

func registeredStrategy(name string) StrategyFunc {
	strategiesMu.RLock()
	defer strategiesMu.RUnlock()
	return strategies[name]
}

func registeredNames() []string {
	strategiesMu.RLock()
	defer strategiesMu.RUnlock()
	names := []string{StrategyInitial, StrategyDirectory, StrategyHash}
	for n := range strategies {
		names = append(names, n)
	}
	slices.Sort(names[3:])
	return names
}

// NewShardMap builds the shard map that cfg describes, checking it as
// Config.Validate does except that it does not know which clusters exist.
// Errors are *ConfigError values whose Field is relative to the map
// ("ranges.A-F").
func NewShardMap(cfg ShardMapConfig) (ShardMap, error) {
	if cfg.Map != nil {
		if cfg.Strategy != "" || cfg.Ranges != nil || cfg.Entries != nil || cfg.Buckets != 0 ||
			cfg.Clusters != nil || cfg.Default != "" || cfg.Other != "" || cfg.Params != nil {
			return nil, &ConfigError{Field: "map", Msg: "a ready Map excludes every other field"}
		}
		return cfg.Map, nil
	}
	switch cfg.Strategy {
	case StrategyInitial:
		return newInitialMap(cfg)
	case StrategyDirectory:
		return newDirectoryMap(cfg)
	case StrategyHash:
		return newHashMap(cfg)
	case "":
		return nil, &ConfigError{Field: "strategy", Msg: "missing; one of " + strings.Join(registeredNames(), ", ")}
	}
	f := registeredStrategy(cfg.Strategy)
	if f == nil {
		return nil, &ConfigError{Field: "strategy", Value: cfg.Strategy, Msg: "unknown strategy; known: " + strings.Join(registeredNames(), ", ")}
	}
	m, err := f(cfg)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, &ConfigError{Field: "strategy", Value: cfg.Strategy, Msg: "the registered strategy returned a nil map"}
	}
	return m, nil
}

// unused returns a *ConfigError for the first field set that strategy does
// not read.
func (cfg *ShardMapConfig) unused(strategy string, ranges, entries, buckets, clusters, other, params bool) error {
	bad := ""
	switch {
	case !ranges && cfg.Ranges != nil:
		bad = "ranges"
	case !entries && cfg.Entries != nil:
		bad = "entries"
	case !buckets && cfg.Buckets != 0:
		bad = "buckets"
	case !clusters && cfg.Clusters != nil:
		bad = "clusters"
	case !other && cfg.Other != "":
		bad = "other"
	case !params && cfg.Params != nil:
		bad = "params"
	}
	if bad != "" {
		return &ConfigError{Field: bad, Msg: "not used by strategy " + strconv.Quote(strategy)}
	}
	return nil
}

// clusterTable interns cluster names so lookups return shared strings.
type clusterTable struct {
	names []string
	index map[string]uint16
}

func (t *clusterTable) add(field, name string) (uint16, error) {
	if strings.TrimSpace(name) == "" {
		return 0, &ConfigError{Field: field, Msg: "empty cluster name"}
	}
	if i, ok := t.index[name]; ok {
		return i, nil
	}
	if len(t.names) >= 1<<16-1 {
		return 0, &ConfigError{Field: field, Value: name, Msg: "too many clusters in one map"}
	}
	if t.index == nil {
		t.index = map[string]uint16{}
	}
	t.names = append(t.names, name)
	t.index[name] = uint16(len(t.names)) // 1-based: 0 means none
	return uint16(len(t.names)), nil
}

// list returns the clusters in first-use order.
func (t *clusterTable) list() []string { return slices.Clone(t.names) }

// sortedKeys returns m's keys in order, so errors are deterministic.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ---- initial ----

// InitialFold returns the letter that a key starting with r is routed by in
// an "initial" map, and whether r is a letter at all:
//
//   - ASCII letters are upper-cased: 's' → 'S'.
//   - Latin letters with diacritics and ligatures of Latin-1 Supplement and
//     Latin Extended-A (U+00C0–U+017F) fold to their base letter: 'É' → 'E',
//     'ß' → 'S', 'Ø' → 'O', 'Æ' → 'A', 'Œ' → 'O', 'Þ' → 'T', 'Ł' → 'L'.
//   - Other letters (Greek, Cyrillic, CJK, ...) are upper-cased with
//     unicode.ToUpper and matched by code point, so a range "А-Я" can
//     route Cyrillic names.
//   - Anything else (digits, punctuation, spaces, invalid UTF-8) is not a
//     letter: such keys go to the map's Other cluster, else its Default.
//
// Keys are used as given: " Smith" starts with a space, not an S.
func InitialFold(r rune) (rune, bool) {
	switch {
	case r >= 'a' && r <= 'z':
		return r - ('a' - 'A'), true
	case r >= 'A' && r <= 'Z':
		return r, true
	case r < 0x80:
		return r, false
	case r >= latinFirst && r <= latinLast:
		if b := latinBase[r-latinFirst]; b != 0 {
			return rune(b), true
		}
		return r, false // × and ÷
	case unicode.IsLetter(r):
		return unicode.ToUpper(r), true
	}
	return r, false
}

const (
	latinFirst = 0x00C0
	latinLast  = 0x017F
)

// latinBase maps U+00C0–U+017F to base letters; 0 for non-letters.
var latinBase = func() (t [latinLast - latinFirst + 1]byte) {
	for base, letters := range map[byte]string{
		'A': "ÀÁÂÃÄÅÆàáâãäåæĀāĂăĄą",
		'C': "ÇçĆćĈĉĊċČč",
		'D': "ÐðĎďĐđ",
		'E': "ÈÉÊËèéêëĒēĔĕĖėĘęĚě",
		'G': "ĜĝĞğĠġĢģ",
		'H': "ĤĥĦħ",
		'I': "ÌÍÎÏìíîïĨĩĪīĬĭĮįİıĲĳ",
		'J': "Ĵĵ",
		'K': "Ķķĸ",
		'L': "ĹĺĻļĽľĿŀŁł",
		'N': "ÑñŃńŅņŇňŉŊŋ",
		'O': "ÒÓÔÕÖØòóôõöøŌōŎŏŐőŒœ",
		'R': "ŔŕŖŗŘř",
		'S': "ßŚśŜŝŞşŠšſ",
		'T': "ÞþŢţŤťŦŧ",
		'U': "ÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲų",
		'W': "Ŵŵ",
		'Y': "ÝýÿŶŷŸ",
		'Z': "ŹźŻżŽž",
	} {
		for _, r := range letters {
			t[r-latinFirst] = base
		}
	}
	return t
}()

type runeRange struct {
	lo, hi  rune
	cluster uint16
	spec    string // as written, for errors
}

// initialMap is the "initial" strategy.
type initialMap struct {
	ascii    [26]uint16  // A–Z → cluster (1-based)
	extra    []runeRange // folded ranges outside A–Z, sorted
	other    uint16      // non-letters; 0: none
	def      uint16      // everything else; 0: none
	clusters clusterTable
}

func newInitialMap(cfg ShardMapConfig) (*initialMap, error) {
	if err := cfg.unused(StrategyInitial, true, false, false, false, true, false); err != nil {
		return nil, err
	}
	if len(cfg.Ranges) == 0 {
		return nil, &ConfigError{Field: "ranges", Msg: `at least one letter range is required, e.g. "A-M": cust-1`}
	}
	m := &initialMap{}
	var all []runeRange
	for _, spec := range sortedKeys(cfg.Ranges) {
		field := "ranges." + spec
		lo, hi, err := parseLetterRange(spec)
		if err != nil {
			return nil, &ConfigError{Field: field, Value: spec, Msg: err.Error()}
		}
		c, err := m.clusters.add(field, cfg.Ranges[spec])
		if err != nil {
			return nil, err
		}
		all = append(all, runeRange{lo: lo, hi: hi, cluster: c, spec: spec})
	}
	slices.SortFunc(all, func(a, b runeRange) int { return int(a.lo - b.lo) })
	for i := 1; i < len(all); i++ {
		if all[i].lo <= all[i-1].hi {
			return nil, &ConfigError{Field: "ranges." + all[i].spec, Value: all[i].spec,
				Msg: fmt.Sprintf("overlaps range %q", all[i-1].spec)}
		}
	}
	for _, r := range all {
		for l := max(r.lo, 'A'); l <= min(r.hi, 'Z'); l++ {
			m.ascii[l-'A'] = r.cluster
		}
		if r.lo < 'A' || r.hi > 'Z' {
			if r.lo <= 'Z' && r.hi >= 'A' {
				return nil, &ConfigError{Field: "ranges." + r.spec, Value: r.spec, Msg: "a range must lie within A-Z or entirely outside it"}
			}
			m.extra = append(m.extra, r)
		}
	}
	var gaps []string
	for l := 'A'; l <= 'Z'; l++ {
		if m.ascii[l-'A'] == 0 {
			start := l
			for l < 'Z' && m.ascii[l+1-'A'] == 0 {
				l++
			}
			if start == l {
				gaps = append(gaps, string(start))
			} else {
				gaps = append(gaps, string(start)+"-"+string(l))
			}
		}
	}
	if len(gaps) > 0 {
		return nil, &ConfigError{Field: "ranges", Msg: "letters " + strings.Join(gaps, ", ") + " are in no range; the ranges must cover A-Z"}
	}
	var err error
	if cfg.Other != "" {
		if m.other, err = m.clusters.add("other", cfg.Other); err != nil {
			return nil, err
		}
	}
	if cfg.Default != "" {
		if m.def, err = m.clusters.add("default", cfg.Default); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// parseLetterRange parses "A-F", "G" or "а-я" into folded bounds.
func parseLetterRange(spec string) (lo, hi rune, err error) {
	s := strings.TrimSpace(spec)
	from, to, isRange := strings.Cut(s, "-")
	if !isRange {
		to = from
	}
	from, to = strings.TrimSpace(from), strings.TrimSpace(to)
	letter := func(s string) (rune, error) {
		r, n := utf8.DecodeRuneInString(s)
		if s == "" || n != len(s) {
			return 0, fmt.Errorf(`want one letter or a range of letters such as "A-F"`)
		}
		f, ok := InitialFold(r)
		if !ok {
			return 0, fmt.Errorf("%q is not a letter; keys that do not start with a letter go to `other` or `default`", s)
		}
		return f, nil
	}
	if lo, err = letter(from); err != nil {
		return 0, 0, err
	}
	if hi, err = letter(to); err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("range runs backwards (%c > %c)", lo, hi)
	}
	return lo, hi, nil
}

// Lookup returns the cluster of key's first letter. It does not allocate.
func (m *initialMap) Lookup(key string) (string, error) {
	if key == "" {
		return "", ErrEmptyKey
	}
	r := rune(key[0])
	if r >= utf8.RuneSelf {
		r, _ = utf8.DecodeRuneInString(key)
	}
	f, letter := InitialFold(r)
	var c uint16
	switch {
	case !letter:
		c = m.other
	case f >= 'A' && f <= 'Z':
		c = m.ascii[f-'A']
	default:
		i, found := slices.BinarySearchFunc(m.extra, f, func(rr runeRange, f rune) int {
			switch {
			case rr.hi < f:
				return -1
			case rr.lo > f:
				return 1
			}
			return 0
		})
		if found {
			c = m.extra[i].cluster
		}
	}
	if c == 0 {
		c = m.def
	}
	if c == 0 {
		return "", ErrNoShard
	}
	return m.clusters.names[c-1], nil
}

// Clusters lists every cluster the map may return.
func (m *initialMap) Clusters() []string { return m.clusters.list() }

// ---- directory ----

// directoryMap is the "directory" strategy.
type directoryMap struct {
	entries  map[string]string
	def      string
	clusters clusterTable
}

func newDirectoryMap(cfg ShardMapConfig) (*directoryMap, error) {
	if err := cfg.unused(StrategyDirectory, false, true, false, false, false, false); err != nil {
		return nil, err
	}
	if len(cfg.Entries) == 0 && cfg.Default == "" {
		return nil, &ConfigError{Field: "entries", Msg: "at least one entry (key: cluster) or a default is required"}
	}
	m := &directoryMap{entries: make(map[string]string, len(cfg.Entries))}
	for _, k := range sortedKeys(cfg.Entries) {
		field := "entries." + k
		if k == "" {
			return nil, &ConfigError{Field: "entries", Msg: "empty key"}
		}
		c, err := m.clusters.add(field, cfg.Entries[k])
		if err != nil {
			return nil, err
		}
		m.entries[k] = m.clusters.names[c-1]
	}
	if cfg.Default != "" {
		c, err := m.clusters.add("default", cfg.Default)
		if err != nil {
			return nil, err
		}
		m.def = m.clusters.names[c-1]
	}
	return m, nil
}

// Lookup returns the cluster of exactly key, else the default. It does not
// allocate.
func (m *directoryMap) Lookup(key string) (string, error) {
	if key == "" {
		return "", ErrEmptyKey
	}
	if c, ok := m.entries[key]; ok {
		return c, nil
	}
	if m.def != "" {
		return m.def, nil
	}
	return "", ErrNoShard
}

// Clusters lists every cluster the map may return.
func (m *directoryMap) Clusters() []string { return m.clusters.list() }

// ---- hash ----

// hashMap is the "hash" strategy.
type hashMap struct {
	buckets  []uint16 // bucket → cluster (1-based)
	clusters clusterTable
}

// HashKey is the hash a "hash" shard map uses: 64-bit FNV-1a over the key's
// bytes. A key's bucket is HashKey(key) % buckets. It is stable across
// versions: changing it would move every key.
func HashKey(key string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime
	}
	return h
}

func newHashMap(cfg ShardMapConfig) (*hashMap, error) {
	if err := cfg.unused(StrategyHash, true, false, true, true, false, false); err != nil {
		return nil, err
	}
	if cfg.Default != "" {
		return nil, &ConfigError{Field: "default", Msg: `not used by strategy "hash": every key has a bucket`}
	}
	if cfg.Buckets <= 0 || cfg.Buckets > MaxHashBuckets {
		return nil, &ConfigError{Field: "buckets", Value: strconv.Itoa(cfg.Buckets), Msg: fmt.Sprintf("must be between 1 and %d", MaxHashBuckets)}
	}
	m := &hashMap{buckets: make([]uint16, cfg.Buckets)}
	switch {
	case len(cfg.Clusters) > 0 && len(cfg.Ranges) > 0:
		return nil, &ConfigError{Field: "clusters", Msg: "set clusters (even split) or ranges (explicit), not both"}
	case len(cfg.Clusters) > 0:
		if len(cfg.Clusters) > cfg.Buckets {
			return nil, &ConfigError{Field: "clusters", Value: strconv.Itoa(len(cfg.Clusters)), Msg: fmt.Sprintf("more clusters than the %d buckets", cfg.Buckets)}
		}
		for i, name := range cfg.Clusters {
			field := fmt.Sprintf("clusters[%d]", i)
			if _, dup := m.clusters.index[name]; dup {
				return nil, &ConfigError{Field: field, Value: name, Msg: "listed twice"}
			}
			c, err := m.clusters.add(field, name)
			if err != nil {
				return nil, err
			}
			lo, hi := i*cfg.Buckets/len(cfg.Clusters), (i+1)*cfg.Buckets/len(cfg.Clusters)
			for b := lo; b < hi; b++ {
				m.buckets[b] = c
			}
		}
	case len(cfg.Ranges) > 0:
		owner := make([]string, cfg.Buckets)
		for _, spec := range sortedKeys(cfg.Ranges) {
			field := "ranges." + spec
			lo, hi, err := parseBucketRange(spec, cfg.Buckets)
			if err != nil {
				return nil, &ConfigError{Field: field, Value: spec, Msg: err.Error()}
			}
			c, err := m.clusters.add(field, cfg.Ranges[spec])
			if err != nil {
				return nil, err
			}
			for b := lo; b <= hi; b++ {
				if m.buckets[b] != 0 {
					return nil, &ConfigError{Field: field, Value: spec, Msg: fmt.Sprintf("bucket %d is also in range %q", b, owner[b])}
				}
				m.buckets[b], owner[b] = c, spec
			}
		}
		for b := 0; b < cfg.Buckets; b++ {
			if m.buckets[b] == 0 {
				e := b
				for e+1 < cfg.Buckets && m.buckets[e+1] == 0 {
					e++
				}
				return nil, &ConfigError{Field: "ranges", Value: fmt.Sprintf("%d-%d", b, e),
					Msg: fmt.Sprintf("buckets in no range; the ranges must cover 0-%d", cfg.Buckets-1)}
			}
		}
	default:
		return nil, &ConfigError{Field: "clusters", Msg: "set clusters (even split) or ranges (bucket ranges such as \"0-511\")"}
	}
	return m, nil
}

// parseBucketRange parses "0-511" or "7" within [0, n).
func parseBucketRange(spec string, n int) (lo, hi int, err error) {
	from, to, isRange := strings.Cut(strings.TrimSpace(spec), "-")
	if !isRange {
		to = from
	}
	if lo, err = strconv.Atoi(strings.TrimSpace(from)); err != nil {
		return 0, 0, fmt.Errorf(`want a bucket number or a range such as "0-511"`)
	}
	if hi, err = strconv.Atoi(strings.TrimSpace(to)); err != nil {
		return 0, 0, fmt.Errorf(`want a bucket number or a range such as "0-511"`)
	}
	switch {
	case lo < 0 || hi >= n:
		return 0, 0, fmt.Errorf("outside buckets 0-%d", n-1)
	case lo > hi:
		return 0, 0, fmt.Errorf("range runs backwards (%d > %d)", lo, hi)
	}
	return lo, hi, nil
}

// Lookup returns the cluster of key's bucket. It does not allocate.
func (m *hashMap) Lookup(key string) (string, error) {
	if key == "" {
		return "", ErrEmptyKey
	}
	return m.clusters.names[m.buckets[HashKey(key)%uint64(len(m.buckets))]-1], nil
}

// Clusters lists every cluster the map may return.
func (m *hashMap) Clusters() []string { return m.clusters.list() }
