package dbrouter

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// LoadConfig reads and parses a YAML configuration file; see ParseConfig.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dbrouter: config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return cfg, nil
}

// ParseConfig parses a YAML configuration, expands ${VAR} and ${VAR:-default}
// references to environment variables in every value ("$${" is a literal
// "${"), rejects unknown fields and values of the wrong kind, and validates
// the result. An error about a field is a *ConfigError that names it by its
// YAML path and shows a value from ${VAR} as written, not expanded. An
// unset variable without a default is such an error, naming the variable;
// the error of a password quotes none of its text other than a lone
// "${NAME}". Input with more than one YAML document is refused.
func ParseConfig(data []byte) (*Config, error) {
	root, err := parseYAML(data)
	if err != nil {
		return nil, err
	}
	expanded := make(map[*yaml.Node]string)
	if err := expandNode(root, new(yamlPath), os.LookupEnv, expanded); err != nil {
		return nil, err
	}
	cfg := new(Config)
	if len(root.Content) == 0 { // empty document
		return cfg, cfg.Validate()
	}
	c := &checker{budget: checkBudget, expanded: expanded, origins: make(map[string]string),
		seen: make(map[aliasUse]bool), hasExp: make(map[*yaml.Node]bool)}
	if err := c.check(root.Content[0], reflect.TypeFor[Config]()); err != nil {
		return nil, err
	}
	if err := decodeConfig(root, cfg); err != nil {
		// The walk above checks what Decode checks; should Decode still
		// fail, its text may quote an expanded value: name lines only.
		return nil, fmt.Errorf("dbrouter: config: invalid value (%s)", yamlErrorLines(err))
	}
	src := &srcCopy{alone: true}
	p, err := cfg.compileKeeping(c.origins, os.ReadFile, src)
	if err != nil {
		return nil, err
	}
	keepParsed(cfg, p, src)
	return cfg, nil
}

// parseYAML parses data into a node tree: with fastYAML when data is in
// its subset, else with yaml.v3's Decoder, which refuses a second
// document.
func parseYAML(data []byte) (*yaml.Node, error) {
	if root, ok := fastYAML(data); ok {
		return root, nil
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && err != io.EOF {
		return nil, fmt.Errorf("dbrouter: config: invalid YAML: %w", err)
	}
	// yaml.Unmarshal reads the first document only: a second one (after
	// "---") would be ignored without a word.
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("dbrouter: config: invalid YAML: %w", err)
		}
		if len(extra.Content) > 0 && extra.Content[0].ShortTag() != "!!null" {
			return nil, fmt.Errorf("dbrouter: config: more than one YAML document (the second starts at line %d): write one configuration", extra.Line)
		}
	}
	return &root, nil
}

// expandNode replaces ${VAR} references in every scalar of the tree; path
// is the YAML path of n, written out only for an error. expanded receives
// the original text of every scalar it changes, so that errors can show a
// value as written rather than its expansion, which may be a secret.
func expandNode(n *yaml.Node, path *yamlPath, lookup func(string) (string, bool), expanded map[*yaml.Node]string) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return expandScalar(n, path, lookup, expanded)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			path.pushKey(key.Value)
			err := expandScalar(key, path, lookup, expanded)
			path.pop()
			if err == nil {
				path.pushKey(key.Value) // as expanded
				err = expandNode(val, path, lookup, expanded)
				path.pop()
			}
			if err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			path.pushIndex(i)
			err := expandNode(c, path, lookup, expanded)
			path.pop()
			if err != nil {
				return err
			}
		}
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := expandNode(c, path, lookup, expanded); err != nil {
				return err
			}
		}
	}
	return nil // an alias is expanded where its anchor is
}

// expandScalar expands one scalar; see expandNode. The error of a field
// named password does not quote its text.
func expandScalar(n *yaml.Node, at *yamlPath, lookup func(string) (string, bool), expanded map[*yaml.Node]string) error {
	if n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "$") {
		return nil
	}
	v, err := expandEnv(n.Value, lookup)
	if err != nil {
		path := at.String()
		if path == "" {
			path = "(document)"
		}
		ee := err.(*envError)
		// A password made of references alone ("${DB_PASSWORD}") may
		// name its variable; any other text of it may be the secret.
		if isPasswordPath(path) && !(ee.kind == envUnset && onlyReferences(n.Value)) {
			problem := `has a "${" that starts no valid ${VAR} reference`
			if ee.kind == envUnset {
				problem = "refers to an environment variable that is not set"
			}
			return &ConfigError{Field: path, Msg: fmt.Sprintf(`%s (line %d); write "$${" for a literal "${" (the value is not shown: it is a password)`, problem, n.Line)}
		}
		return &ConfigError{Field: path, Msg: fmt.Sprintf("%s (line %d); %s", ee.problem(), n.Line, ee.advice())}
	}
	if v != n.Value {
		expanded[n] = n.Value
		n.Value = v
		// A value that came from the environment is a string even if
		// it looks like a number or a boolean to YAML.
		if n.Tag == "" || n.Tag == "!!str" || n.Style != 0 {
			n.Style = yaml.DoubleQuotedStyle
		}
	}
	return nil
}

// isPasswordPath reports whether a YAML path names a password, or a value
// inside one: its text must not appear in errors.
func isPasswordPath(path string) bool {
	for _, seg := range strings.Split(path, ".") {
		if i := strings.IndexByte(seg, '['); i >= 0 {
			seg = seg[:i]
		}
		if strings.EqualFold(seg, "password") {
			return true
		}
	}
	return false
}

// onlyReferences reports whether s is made of ${...} references alone,
// with no text of its own around them.
func onlyReferences(s string) bool {
	for s != "" {
		end := strings.IndexByte(s, '}')
		if !strings.HasPrefix(s, "${") || end < 0 {
			return false
		}
		s = s[end+1:]
	}
	return true
}

// checker walks a YAML tree against the Go type it decodes into, before
// Decode, so that a misspelt field or a value of the wrong kind is an error
// that names the field by its path, what it wants, and the value as
// written. Decode stays as a fallback for what the walk does not check
// (duplicate keys, excessive aliasing).
type checker struct {
	budget   int                   // nodes left to visit
	expanded map[*yaml.Node]string // original text of the scalars expandNode changed
	origins  map[string]string     // YAML path → original text of an expanded scalar decoded there
	seen     map[aliasUse]bool     // anchored nodes already checked as a type
	hasExp   map[*yaml.Node]bool   // whether a node's subtree holds an expanded scalar
	// path is the YAML path of the node being checked.
	path yamlPath
	// fields caches yamlFields by struct type.
	fields map[reflect.Type]map[string]reflect.Type
}

// yamlPath is a YAML path as steps, written out (String) only for an error
// or an origin, so that walking a tree allocates nothing per value.
type yamlPath []pathSeg

// pathSeg is one step of a YAML path: a key, or an index in a list.
type pathSeg struct {
	key   string
	index int // -1: a key
}

func (p *yamlPath) pushKey(key string) { *p = append(*p, pathSeg{key: key, index: -1}) }
func (p *yamlPath) pushIndex(i int)    { *p = append(*p, pathSeg{index: i}) }
func (p *yamlPath) pop()               { *p = (*p)[:len(*p)-1] }

// String writes out the path as joinPath and "%s[%d]" would have built it.
func (p *yamlPath) String() string {
	var b strings.Builder
	for _, s := range *p {
		if s.index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

func (c *checker) pushKey(key string) { c.path.pushKey(key) }
func (c *checker) pushIndex(i int)    { c.path.pushIndex(i) }
func (c *checker) pop()               { c.path.pop() }
func (c *checker) pathString() string { return c.path.String() }

// structFields is yamlFields(t), computed once per type.
func (c *checker) structFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := c.fields[t]; ok {
		return f
	}
	if c.fields == nil {
		c.fields = make(map[reflect.Type]map[string]reflect.Type)
	}
	f := yamlFields(t)
	c.fields[t] = f
	return f
}

// aliasUse is an anchored node checked against a type. An anchor used many
// times (merge keys, "<<: [*e, *e, ...]") is checked once per type, so
// that the walk costs the size of the document, not of its expansion;
// unless it holds a ${VAR}, whose original text must be recorded at every
// path it is used at.
type aliasUse struct {
	n *yaml.Node
	t reflect.Type
}

// checkBudget bounds the nodes the walk visits: far more than any real
// configuration has once repeated anchors are checked once.
const checkBudget = 10_000_000

// holdsExpanded reports whether n's subtree holds a scalar that expandNode
// changed.
func (c *checker) holdsExpanded(n *yaml.Node) bool {
	if v, ok := c.hasExp[n]; ok {
		return v
	}
	c.hasExp[n] = false // cycles (an alias to an ancestor) count as none
	_, v := c.expanded[n]
	for _, k := range n.Content {
		v = v || c.holdsExpanded(k)
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		v = v || c.holdsExpanded(n.Alias)
	}
	c.hasExp[n] = v
	return v
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// check checks n, at the YAML path c.path, against t: a struct wants a
// mapping of its fields, a map a mapping, a slice a sequence, and a scalar
// type a scalar that decodes into it. Null is the zero value of any type.
func (c *checker) check(n *yaml.Node, t reflect.Type) error {
	if c.budget--; c.budget < 0 {
		return &ConfigError{Field: c.pathString(), Msg: "the configuration is too large to check (more than 10,000,000 values)"}
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil
		}
		use := aliasUse{n.Alias, t}
		if c.seen[use] && !c.holdsExpanded(n.Alias) {
			return nil
		}
		c.seen[use] = true
		return c.check(n.Alias, t)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode {
		if orig, ok := c.expanded[n]; ok {
			c.origins[c.pathString()] = orig
		}
		if n.ShortTag() == "!!null" {
			return nil
		}
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil // it decodes itself
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return c.mismatch(n, t)
		}
		fields := c.structFields(t)
		return c.entries(n, t, func(key, val *yaml.Node) error {
			ft, ok := fields[key.Value]
			if !ok {
				known := make([]string, 0, len(fields))
				for k := range fields {
					known = append(known, k)
				}
				slices.Sort(known)
				return &ConfigError{Field: joinPath(c.pathString(), key.Value),
					Msg: fmt.Sprintf("unknown field (line %d); known fields here: %s", key.Line, strings.Join(known, ", "))}
			}
			c.pushKey(key.Value)
			defer c.pop()
			return c.check(val, ft)
		})
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return c.mismatch(n, t)
		}
		return c.entries(n, t, func(key, val *yaml.Node) error {
			if k := resolveAlias(key); k.Kind != yaml.ScalarNode {
				return &ConfigError{Field: c.pathString(), Msg: fmt.Sprintf("a key must be a name, not a list or map (line %d)", key.Line)}
			}
			c.pushKey(resolveAlias(key).Value)
			defer c.pop()
			return c.check(val, t.Elem())
		})
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return c.mismatch(n, t)
		}
		for i, e := range n.Content {
			c.pushIndex(i)
			err := c.check(e, t.Elem())
			c.pop()
			if err != nil {
				return err
			}
		}
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || !decodesInto(n, t) {
			return c.mismatch(n, t)
		}
	}
	return nil
}

// entries calls fn for each key and value of the mapping n, at c.path, of
// type t, once it has checked that the key is not a duplicate; the value of
// a merge key is checked against t instead.
func (c *checker) entries(n *yaml.Node, t reflect.Type, fn func(key, val *yaml.Node) error) error {
	keys := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if err := dupKey(keys, key, c.pathString); err != nil {
			return err
		}
		if isMergeKey(key) {
			if err := c.checkMerge(val, t); err != nil {
				return err
			}
			continue
		}
		if err := fn(key, val); err != nil {
			return err
		}
	}
	return nil
}

// checkMerge checks the value of a merge key ("<<: *defaults") against t,
// the type of the mapping it merges into: a mapping or a list of them.
func (c *checker) checkMerge(n *yaml.Node, t reflect.Type) error {
	maps := []*yaml.Node{n} // an alias stays one, so that check sees it once
	if r := resolveAlias(n); r.Kind == yaml.SequenceNode {
		maps = r.Content
	}
	for _, m := range maps {
		if resolveAlias(m).Kind != yaml.MappingNode {
			return &ConfigError{Field: c.pathString(), Msg: fmt.Sprintf("a merge (<<) wants a map or a list of maps (line %d)", m.Line)}
		}
		if err := c.check(m, t); err != nil {
			return err
		}
	}
	return nil
}

// mismatch is the error for n, at c.path, that does not decode into t. It
// shows a scalar as written (a ${VAR} reference, not its value) unless it
// is a password.
func (c *checker) mismatch(n *yaml.Node, t reflect.Type) error {
	path := c.pathString()
	ce := &ConfigError{Field: path}
	msg := want(t)
	switch n.Kind {
	case yaml.MappingNode:
		msg += ", not a map"
	case yaml.SequenceNode:
		msg += ", not a list"
	case yaml.ScalarNode:
		orig, fromEnv := c.expanded[n]
		if !fromEnv {
			orig = n.Value
		}
		if !isPasswordPath(path) {
			ce.Value = orig
		}
		// A number or boolean written in quotes, or coming from the
		// environment, is a string.
		plain := *n
		plain.Style, plain.Tag = 0, ""
		if plain.Value != "" && decodesInto(&plain, t) {
			if fromEnv {
				msg += " (a value from ${VAR} is always a string)"
			} else {
				msg += " (remove the quotes)"
			}
		}
	}
	ce.Msg = fmt.Sprintf("%s (line %d)", msg, n.Line)
	return ce
}

// want says what a value of type t is written as.
func want(t reflect.Type) string {
	switch {
	case t == durationType:
		return `want a duration with a unit, e.g. "5s"`
	case t.Kind() == reflect.Bool:
		return "want true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "want an integer"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		return "want a non-negative integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "want a number"
	case t.Kind() == reflect.String:
		return "want a string"
	case t.Kind() == reflect.Slice:
		return "want a list"
	case t.Kind() == reflect.Struct:
		return "want a map of field: value"
	case t.Kind() == reflect.Map:
		return "want a map"
	}
	return "want a " + t.String()
}

// decodesInto reports whether scalar n decodes into a value of type t.
func decodesInto(n *yaml.Node, t reflect.Type) bool {
	if t.Kind() == reflect.String && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		return true // any string does: spare a decoder per value
	}
	return n.Decode(reflect.New(t).Interface()) == nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// isMergeKey reports whether key is "<<" as YAML's merge key, as yaml's
// decoder decides it.
func isMergeKey(key *yaml.Node) bool {
	return key.Kind == yaml.ScalarNode && key.Value == "<<" && key.ShortTag() == "!!merge"
}

// yamlFields maps the YAML names of t's fields, inline ones included, to
// their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case name == "-" || !f.IsExported():
		case opts == "inline":
			for k, v := range yamlFields(f.Type) {
				fields[k] = v
			}
		case name == "":
			fields[strings.ToLower(f.Name)] = f.Type
		default:
			fields[name] = f.Type
		}
	}
	return fields
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// expandEnv expands ${VAR} and ${VAR:-default} in s. Its error is an
// *envError.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' { // "$${" is a literal "${"
			b.WriteString(s[:i])
			b.WriteString("{")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", &envError{kind: envUnterminated, text: s[i:]}
		}
		expr := s[i+2 : i+end]
		s = s[i+end+1:]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", &envError{kind: envBadName, text: name}
		}
		v, ok := lookup(name)
		switch {
		case ok:
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		default:
			return "", &envError{kind: envUnset, text: name}
		}
	}
}

// envError is a ${VAR} reference that expandEnv cannot expand.
type envError struct {
	kind int    // envUnterminated, envBadName or envUnset
	text string // from the "${" on, the name, or the variable
}

const (
	envUnterminated = iota
	envBadName
	envUnset
)

func (e *envError) Error() string { return e.problem() + " (" + e.advice() + ")" }

// problem says what is wrong, quoting the text.
func (e *envError) problem() string {
	switch e.kind {
	case envUnterminated:
		return fmt.Sprintf("unterminated ${ in %q", e.text)
	case envBadName:
		return fmt.Sprintf("invalid environment variable name %q", e.text)
	}
	return fmt.Sprintf("environment variable %s is not set", e.text)
}

// advice says how to fix it.
func (e *envError) advice() string {
	if e.kind == envUnset {
		return fmt.Sprintf("write ${%s:-default} for a default", e.text)
	}
	return `write "$${" for a literal "${"`
}

func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// yamlErrorLines returns the "line N" parts of a yaml error, without the
// values it quotes.
func yamlErrorLines(err error) string {
	var lines []string
	for _, f := range strings.Fields(err.Error()) {
		if n, ok := strings.CutSuffix(f, ":"); ok {
			if _, e := strconv.Atoi(n); e == nil && len(lines) < 5 {
				lines = append(lines, "line "+n)
			}
		}
	}
	if len(lines) == 0 {
		return "the YAML decoder refused it"
	}
	return strings.Join(lines, ", ")
}

// dupKey reports a key that the mapping holding it already has (keys maps
// each key seen to its line), as yaml's decoder would, but in linear time
// and naming the field; path gives the mapping's path.
func dupKey(keys map[string]int, key *yaml.Node, path func() string) error {
	k := resolveAlias(key)
	if k.Kind != yaml.ScalarNode || isMergeKey(key) {
		return nil
	}
	if line, dup := keys[k.Value]; dup {
		return &ConfigError{Field: joinPath(path(), k.Value), Msg: fmt.Sprintf("defined twice (lines %d and %d)", line, key.Line)}
	}
	keys[k.Value] = key.Line
	return nil
}

// decodeConfig decodes the checked tree into cfg. yaml.v3 checks every
// mapping it decodes for duplicate keys pair by pair, in quadratic time (a
// file of 63,000 clusters took 19 s), so the mappings that grow with a
// configuration — clusters, shard maps, and a shard map's ranges and
// entries — are decoded entry by entry instead; the checker has already
// rejected duplicate keys, in linear time. A mapping with a merge key
// ("<<") is left to yaml.v3 as a whole.
func decodeConfig(root *yaml.Node, cfg *Config) error {
	// Decoded in parts, a merge of many aliases can trip yaml.v3's limit
	// on the share of aliases in one decode, which the whole document
	// passes: then decode the whole document, as yaml.v3 would.
	if err := decodeConfigLinear(root, cfg); err != nil {
		*cfg = Config{}
		return root.Decode(cfg)
	}
	return nil
}

// decodeConfigLinear is decodeConfig's linear path.
func decodeConfigLinear(root *yaml.Node, cfg *Config) error {
	doc := root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	rest, big, ok := splitMapping(doc, "clusters", "shard_maps")
	if !ok {
		return root.Decode(cfg)
	}
	if err := rest.Decode(cfg); err != nil {
		return err
	}
	if err := decodeMapLinear(big[0], &cfg.Clusters, decodeClusterConfig); err != nil {
		return err
	}
	return decodeMapLinear(big[1], &cfg.ShardMaps, decodeShardMapConfig)
}

// decodeShardMapConfig decodes one shard map, its ranges and entries entry
// by entry (see decodeConfig).
func decodeShardMapConfig(n *yaml.Node, m *ShardMapConfig) error {
	rest, big, ok := splitMapping(n, "ranges", "entries")
	if !ok {
		return n.Decode(m)
	}
	if err := rest.Decode(m); err != nil {
		return err
	}
	if err := decodeMapLinear(big[0], &m.Ranges, decodeString); err != nil {
		return err
	}
	return decodeMapLinear(big[1], &m.Entries, decodeString)
}

// plainString returns the text of n if it is a scalar that yaml.v3 decodes
// into a string as it is (a string, not an alias, a null or a number).
func plainString(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return "", false
	}
	return n.Value, true
}

// decodeString decodes n into *v: a plain string directly, anything else
// with yaml.v3, which a decoder per value makes slow (see decodeConfig).
func decodeString(n *yaml.Node, v *string) error {
	if s, ok := plainString(n); ok {
		*v = s
		return nil
	}
	return n.Decode(v)
}

// decodeClusterConfig decodes one cluster. The usual shape at scale,
// "{nodes: [a, b, c]}" with plain strings, is decoded directly; any other
// goes to yaml.v3.
func decodeClusterConfig(n *yaml.Node, v *ClusterConfig) error {
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[1].Kind == yaml.SequenceNode {
		if k, ok := plainString(n.Content[0]); ok && k == "nodes" {
			seq := n.Content[1].Content
			nodes := make([]string, len(seq))
			direct := true
			for i, e := range seq {
				if nodes[i], direct = plainString(e); !direct {
					break
				}
			}
			if direct {
				*v = ClusterConfig{Nodes: nodes}
				return nil
			}
		}
	}
	return n.Decode(v)
}

// splitMapping splits mapping n into the values of the given keys (nil
// when absent) and a mapping of the rest. ok is false when n is not a
// mapping, or has a merge key: yaml.v3 must decode it whole.
func splitMapping(n *yaml.Node, keys ...string) (rest *yaml.Node, values []*yaml.Node, ok bool) {
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode || hasMergeKey(n) {
		return nil, nil, false
	}
	r := *n
	r.Content = nil
	values = make([]*yaml.Node, len(keys))
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := slices.Index(keys, resolveAlias(n.Content[i]).Value); k >= 0 {
			values[k] = n.Content[i+1]
			continue
		}
		r.Content = append(r.Content, n.Content[i], n.Content[i+1])
	}
	return &r, values, true
}

// decodeMapLinear decodes mapping node n (nil: absent) into *out entry by
// entry with decode, as yaml.v3 would decode the whole mapping but without
// its quadratic duplicate-key check. A null leaves *out nil; a mapping with
// a merge key goes to yaml.v3 whole.
func decodeMapLinear[V any](n *yaml.Node, out *map[string]V, decode func(*yaml.Node, *V) error) error {
	if n == nil {
		return nil
	}
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode || hasMergeKey(n) {
		return n.Decode(out)
	}
	m := make(map[string]V, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		var key string
		if err := decodeString(resolveAlias(n.Content[i]), &key); err != nil {
			return err
		}
		var v V
		if err := decode(n.Content[i+1], &v); err != nil {
			return err
		}
		m[key] = v
	}
	*out = m
	return nil
}

// hasMergeKey reports whether mapping n has a merge key ("<<").
func hasMergeKey(n *yaml.Node) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if isMergeKey(n.Content[i]) {
			return true
		}
	}
	return false
}
