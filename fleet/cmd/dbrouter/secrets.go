package main

import (
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A configuration in etcd may hold literal passwords. show-config prints it
// as stored, as etcdctl would; every other output of this command (diff,
// warnings, errors) shows a password as "REDACTED", found by two rules:
// the value of every YAML key named "password" (any case, at any depth),
// and, on every line, the text after "password:" (so that a comment, a
// key like db_password, or a file that is not YAML is covered too). A
// value that is only ${VAR} references is shown: it names a variable, not
// a secret.

// redacted stands for a password wherever one would be printed: the word
// the root package's fmt, slog and JSON redaction uses.
const redacted = "REDACTED"

// varsOnly matches a value made of ${NAME} references alone, without
// defaults (a default, ${NAME:-text}, may be a secret).
var varsOnly = regexp.MustCompile(`^(\$\{[A-Za-z_][A-Za-z0-9_]*\})+$`)

// passwordOnLine finds "password:" on a line (also "db_password:" and
// quoted keys); what follows it is redacted unless safeRest matches it.
var (
	passwordOnLine = regexp.MustCompile(`(?i)password["']?[ \t]*:[ \t]*`)
	safeRest       = regexp.MustCompile(`^(["']?)(\$\{[A-Za-z_][A-Za-z0-9_]*\})+(["']?)[ \t]*([,}\]].*)?([ \t]#.*)?$`)
)

// secret is a literal password in a YAML text.
type secret struct {
	line, col int    // where its value starts: line 1-based, col 0-based in runes
	endLine   int    // the last line it may extend to (block scalars, multi-line values)
	value     string // the value as parsed
}

// literalPasswords returns the literal passwords of a YAML text, in the
// order they appear, and whether the text is YAML at all. A password that
// is an alias is found at its anchor.
func literalPasswords(data []byte) ([]secret, bool) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, false
	}
	var lines []int // the line of every node, sorted: where a value ends
	var collect func(n *yaml.Node)
	collect = func(n *yaml.Node) {
		lines = append(lines, n.Line)
		for _, c := range n.Content {
			collect(c)
		}
	}
	collect(&root)
	slices.Sort(lines)
	total := strings.Count(string(data), "\n") + 1
	// endOf returns the last line a value whose last node is on line
	// last may extend to: the line before the next node, or the end.
	endOf := func(last int) int {
		i, _ := slices.BinarySearch(lines, last+1)
		if i < len(lines) {
			return max(last, lines[i]-1)
		}
		return total
	}
	var maxLine func(n *yaml.Node) int
	maxLine = func(n *yaml.Node) int {
		m := n.Line
		for _, c := range n.Content {
			m = max(m, maxLine(c))
		}
		return m
	}

	var out []secret
	seen := make(map[*yaml.Node]bool)
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				key, val := n.Content[i], n.Content[i+1]
				if !strings.EqualFold(key.Value, "password") {
					continue
				}
				if val.Kind == yaml.AliasNode && val.Alias != nil {
					val = val.Alias
				}
				if seen[val] || (val.Kind == yaml.ScalarNode && (val.Value == "" || varsOnly.MatchString(val.Value))) {
					continue
				}
				seen[val] = true
				out = append(out, secret{line: val.Line, col: val.Column - 1, endLine: endOf(maxLine(val)), value: val.Value})
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	slices.SortFunc(out, func(a, b secret) int { return a.line - b.line })
	return out, true
}

// redactions says, for each line of a text (1-based) that holds a
// password, the rune column from which it is hidden.
type redactions map[int]int

// findRedactions applies both rules above to text.
func findRedactions(text []byte) redactions {
	r := make(redactions)
	hide := func(line, col int) {
		if c, ok := r[line]; !ok || col < c {
			r[line] = col
		}
	}
	secrets, _ := literalPasswords(text)
	for _, s := range secrets {
		hide(s.line, s.col)
		for l := s.line + 1; l <= s.endLine; l++ {
			hide(l, 0)
		}
	}
	for i, line := range strings.Split(string(text), "\n") {
		m := passwordOnLine.FindStringIndex(line)
		if m == nil {
			continue
		}
		if rest := line[m[1]:]; rest == "" || safeRest.MatchString(rest) {
			continue
		}
		hide(i+1, len([]rune(line[:m[1]])))
	}
	return r
}

// apply returns line number n (1-based), text s, with its password hidden.
func (r redactions) apply(n int, s string) string {
	col, ok := r[n]
	if !ok {
		return s
	}
	rs := []rune(s)
	if strings.TrimSpace(string(rs[min(col, len(rs)):])) == "" {
		return s // nothing there to hide (a blank line of a block scalar)
	}
	return string(rs[:col]) + redacted
}
