package dbrouter

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

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
// "${"), rejects unknown fields, and validates the result. An unset variable
// without a default is an error that names the field (by its YAML path, as
// ConfigError.Field does) and the variable; the error of a password does not
// quote any of its text other than a lone "${NAME}".
func ParseConfig(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("dbrouter: config: invalid YAML: %w", err)
	}
	expanded := make(map[*yaml.Node]string)
	if err := expandNode(&root, "", os.LookupEnv, expanded); err != nil {
		return nil, err
	}
	cfg := new(Config)
	if len(root.Content) == 0 { // empty document
		return cfg, cfg.Validate()
	}
	budget := 100000 // nodes visited; bounds alias bombs, which Decode rejects
	if err := checkKnownFields(root.Content[0], reflect.TypeOf(cfg).Elem(), "", &budget); err != nil {
		return nil, err
	}
	if err := root.Decode(cfg); err != nil {
		return nil, fmt.Errorf("dbrouter: config: %s", strings.ReplaceAll(err.Error(), "\n ", ""))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// expandNode replaces ${VAR} references in every scalar of the tree; path
// is the YAML path of n, named by errors. expanded receives the original
// text of every scalar it changes, so that errors can show a value as
// written rather than its expansion, which may be a secret.
func expandNode(n *yaml.Node, path string, lookup func(string) (string, bool), expanded map[*yaml.Node]string) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return expandScalar(n, path, lookup, expanded)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if err := expandScalar(key, joinPath(path, key.Value), lookup, expanded); err != nil {
				return err
			}
			if err := expandNode(val, joinPath(path, key.Value), lookup, expanded); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := expandNode(c, fmt.Sprintf("%s[%d]", path, i), lookup, expanded); err != nil {
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
func expandScalar(n *yaml.Node, path string, lookup func(string) (string, bool), expanded map[*yaml.Node]string) error {
	if n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "$") {
		return nil
	}
	v, err := expandEnv(n.Value, lookup)
	if err != nil {
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

// checkKnownFields rejects a mapping key that names no field of t, so that a
// misspelt setting is an error rather than silently ignored. path is the
// YAML path of n.
func checkKnownFields(n *yaml.Node, t reflect.Type, path string, budget *int) error {
	if *budget--; *budget < 0 {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.AliasNode && n.Alias != nil:
		return checkKnownFields(n.Alias, t, path, budget)
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if key.Value == "<<" { // merge key
				if err := checkKnownFields(val, t, path, budget); err != nil {
					return err
				}
				continue
			}
			ft, ok := fields[key.Value]
			if !ok {
				known := make([]string, 0, len(fields))
				for k := range fields {
					known = append(known, k)
				}
				slices.Sort(known)
				return &ConfigError{Field: joinPath(path, key.Value),
					Msg: fmt.Sprintf("unknown field (line %d); known fields here: %s", key.Line, strings.Join(known, ", "))}
			}
			if err := checkKnownFields(val, ft, joinPath(path, key.Value), budget); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKnownFields(n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value), budget); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			if err := checkKnownFields(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), budget); err != nil {
				return err
			}
		}
	}
	return nil // type mismatches are reported by Decode
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
