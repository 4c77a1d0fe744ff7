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
// without a default is an error that names it.
func ParseConfig(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("dbrouter: config: invalid YAML: %w", err)
	}
	if err := expandNode(&root, os.LookupEnv); err != nil {
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

// expandNode replaces ${VAR} references in every scalar of the tree.
func expandNode(n *yaml.Node, lookup func(string) (string, bool)) error {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "$") {
		v, err := expandEnv(n.Value, lookup)
		if err != nil {
			return &ConfigError{Field: fmt.Sprintf("line %d", n.Line), Msg: err.Error()}
		}
		if v != n.Value {
			n.Value = v
			// A value that came from the environment is a string even if
			// it looks like a number or a boolean to YAML.
			if n.Tag == "" || n.Tag == "!!str" || n.Style != 0 {
				n.Style = yaml.DoubleQuotedStyle
			}
		}
	}
	for _, c := range n.Content {
		if err := expandNode(c, lookup); err != nil {
			return err
		}
	}
	return nil
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

// expandEnv expands ${VAR} and ${VAR:-default} in s.
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
			return "", fmt.Errorf("unterminated ${ in %q", s[i:])
		}
		expr := s[i+2 : i+end]
		s = s[i+end+1:]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("invalid environment variable name %q", name)
		}
		v, ok := lookup(name)
		switch {
		case ok:
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		default:
			return "", fmt.Errorf("environment variable %s is not set (write ${%s:-default} for a default)", name, name)
		}
	}
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
