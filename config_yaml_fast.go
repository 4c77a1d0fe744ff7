package dbrouter

import (
	"bytes"
	"strings"

	"go.yaml.in/yaml/v3"
)

// fastYAML parses data into the node tree that yaml.v3's Decoder gives
// for it, for the plain subset of YAML that large configurations are
// written in, at a fraction of yaml.v3's cost (building its tree was most
// of ParseConfig's time on a file of 10,000 clusters). ok is false when
// data is outside the subset, or may be: the caller then parses it with
// yaml.v3, whose tree, and errors, stay what they always were.
//
// The subset is one document of printable ASCII with no comment, no tab
// and no document marker, whose top level is a block mapping; block
// mappings and sequences nest by indentation (a sequence may sit at its
// key's indentation), and every value that is not a block collection is
// written on its key's or dash's line: a plain scalar, a single- or
// double-quoted one with no escape, or a flow mapping or sequence of
// those. Empty values, anchors, aliases, tags, merge keys, explicit keys,
// multi-line scalars and flow collections over several lines are left to
// yaml.v3. FuzzFastYAML checks the trees against yaml.v3's.
func fastYAML(data []byte) (root *yaml.Node, ok bool) {
	for _, b := range data {
		if (b < 0x20 && b != '\n') || b > 0x7e || b == '#' {
			return nil, false
		}
	}
	if bytes.Contains(data, []byte("---")) || bytes.Contains(data, []byte("...")) {
		return nil, false // maybe a document marker
	}
	p := &fastParser{data: data, text: string(data), line: 1}
	ind, ok := p.nextLine()
	if !ok || ind != 0 {
		return nil, false // empty, or an indented top level
	}
	m, ok := p.blockMapping(0, 0)
	if !ok {
		return nil, false
	}
	if _, more := p.nextLine(); more {
		return nil, false
	}
	doc := p.node(yaml.DocumentNode, "", m.Line, m.Column)
	doc.Content = []*yaml.Node{m}
	return doc, true
}

// fastParser is fastYAML's state: the data and the line being read.
type fastParser struct {
	data  []byte
	text  string // data, once: scalars are its substrings
	start int    // offset of the current line
	end   int    // offset of its newline, or len(data)
	line  int    // its number, from 1
	slab  []yaml.Node
	// stack holds the children of the collections being parsed, innermost
	// last, until each is complete and gets its Content from ptrs.
	stack []*yaml.Node
	ptrs  []*yaml.Node
}

// fastMaxDepth bounds nesting; deeper documents go to yaml.v3.
const fastMaxDepth = 32

// node returns a new node of kind with tag, at line and column; nodes are
// allocated in blocks.
func (p *fastParser) node(kind yaml.Kind, tag string, line, col int) *yaml.Node {
	if len(p.slab) == 0 {
		p.slab = make([]yaml.Node, 512)
	}
	n := &p.slab[0]
	p.slab = p.slab[1:]
	n.Kind, n.Tag, n.Line, n.Column = kind, tag, line, col
	return n
}

// content returns the children of a collection, stack[base:], as a
// slice of its own capacity, and pops them.
func (p *fastParser) content(base int) []*yaml.Node {
	k := len(p.stack) - base
	if k == 0 {
		return nil
	}
	if len(p.ptrs) < k {
		p.ptrs = make([]*yaml.Node, max(k, 2048))
	}
	c := p.ptrs[:k:k]
	p.ptrs = p.ptrs[k:]
	copy(c, p.stack[base:])
	clear(p.stack[base:])
	p.stack = p.stack[:base]
	return c
}

// nextLine moves to the next line that is not blank, from the current
// one, and returns its indentation; ok is false at the end of data.
func (p *fastParser) nextLine() (indent int, ok bool) {
	for p.start < len(p.data) {
		p.end = p.start + bytes.IndexByte(p.data[p.start:], '\n')
		if p.end < p.start {
			p.end = len(p.data)
		}
		i := p.start
		for i < p.end && p.data[i] == ' ' {
			i++
		}
		if i < p.end {
			return i - p.start, true
		}
		p.start = p.end + 1
		p.line++
	}
	return 0, false
}

// advance moves past the current line.
func (p *fastParser) advance() {
	p.start = p.end + 1
	p.line++
}

// isSeqEntry reports whether the current line, indented by indent, is a
// block sequence entry ("- value").
func (p *fastParser) isSeqEntry(indent int) bool {
	i := p.start + indent
	return p.data[i] == '-' && (i+1 == p.end || p.data[i+1] == ' ')
}

// blockMapping parses the block mapping whose first key is on the current
// line at indentation indent, depth levels deep.
func (p *fastParser) blockMapping(indent, depth int) (*yaml.Node, bool) {
	if depth > fastMaxDepth {
		return nil, false
	}
	m := p.node(yaml.MappingNode, "!!map", p.line, indent+1)
	base := len(p.stack)
	for {
		ind, more := p.nextLine()
		if !more || ind < indent {
			m.Content = p.content(base)
			return m, true
		}
		if ind > indent || p.isSeqEntry(indent) {
			return nil, false
		}
		key, i, ok := p.key(p.start + indent)
		if !ok {
			return nil, false
		}
		for i < p.end && p.data[i] == ' ' {
			i++
		}
		var val *yaml.Node
		if i == p.end {
			// The value is a block collection on the next lines.
			p.advance()
			ind, more := p.nextLine()
			switch {
			case more && ind == indent && p.isSeqEntry(ind):
				val, ok = p.blockSequence(ind, true, depth+1)
			case more && ind > indent && p.isSeqEntry(ind):
				val, ok = p.blockSequence(ind, false, depth+1)
			case more && ind > indent:
				val, ok = p.blockMapping(ind, depth+1)
			default:
				ok = false // an empty value
			}
		} else {
			val, ok = p.inlineValue(i, depth+1)
		}
		if !ok {
			return nil, false
		}
		p.stack = append(p.stack, key, val)
	}
}

// blockSequence parses the block sequence whose first entry is on the
// current line at indentation indent; indentless says it is a mapping's
// value at the key's indentation, which a line that is no entry ends.
func (p *fastParser) blockSequence(indent int, indentless bool, depth int) (*yaml.Node, bool) {
	if depth > fastMaxDepth {
		return nil, false
	}
	s := p.node(yaml.SequenceNode, "!!seq", p.line, indent+1)
	base := len(p.stack)
	for {
		ind, more := p.nextLine()
		if more && ind > indent {
			return nil, false
		}
		if !more || ind < indent || !p.isSeqEntry(indent) {
			if more && ind == indent && !indentless {
				return nil, false
			}
			s.Content = p.content(base)
			return s, true
		}
		i := p.start + indent + 1
		for i < p.end && p.data[i] == ' ' {
			i++
		}
		if i == p.end {
			return nil, false // a nested block or an empty entry
		}
		v, ok := p.inlineValue(i, depth+1)
		if !ok {
			return nil, false
		}
		p.stack = append(p.stack, v)
	}
}

// key parses the key of a block mapping entry at offset i of the current
// line, and its colon; it returns the offset after the colon.
func (p *fastParser) key(i int) (*yaml.Node, int, bool) {
	var k *yaml.Node
	var ok bool
	switch p.data[i] {
	case '\'', '"':
		k, i, ok = p.quoted(i)
		if !ok || i == p.end || p.data[i] != ':' || (i+1 < p.end && p.data[i+1] != ' ') {
			return nil, 0, false
		}
	default:
		if !plainStart(p.data[i]) {
			return nil, 0, false
		}
		j := i
		for j < p.end && !(p.data[j] == ':' && (j+1 == p.end || p.data[j+1] == ' ')) {
			j++
		}
		if j == p.end || p.data[j-1] == ' ' {
			return nil, 0, false
		}
		if k, ok = p.plain(i, j); !ok {
			return nil, 0, false
		}
		i = j
	}
	// yaml.v3 refuses a key longer than 1024 characters.
	if i-(p.start+k.Column-1) > 1000 {
		return nil, 0, false
	}
	return k, i + 1, true
}

// inlineValue parses the value at offset i of the current line, which must
// end it, and moves past the line.
func (p *fastParser) inlineValue(i, depth int) (*yaml.Node, bool) {
	var v *yaml.Node
	var ok bool
	switch c := p.data[i]; {
	case c == '\'' || c == '"':
		v, i, ok = p.quoted(i)
	case c == '[' || c == '{':
		v, i, ok = p.flow(i, depth)
	case plainStart(c):
		// A block plain scalar runs to the end of the line; ": " in it
		// would start a mapping that yaml.v3 refuses here.
		j := p.end
		for j > i && p.data[j-1] == ' ' {
			j--
		}
		if bytes.Contains(p.data[i:j], []byte(": ")) || p.data[j-1] == ':' {
			return nil, false
		}
		v, ok = p.plain(i, j)
		i = j
	}
	if !ok {
		return nil, false
	}
	for i < p.end && p.data[i] == ' ' {
		i++
	}
	if i != p.end {
		return nil, false
	}
	p.advance()
	return v, true
}

// flow parses the flow mapping or sequence at offset i of the current
// line; it returns the offset after its closing bracket.
func (p *fastParser) flow(i, depth int) (*yaml.Node, int, bool) {
	if depth > fastMaxDepth {
		return nil, 0, false
	}
	isMap := p.data[i] == '{'
	closer := byte(']')
	n := p.node(yaml.SequenceNode, "!!seq", p.line, i-p.start+1)
	if isMap {
		closer = '}'
		n.Kind, n.Tag = yaml.MappingNode, "!!map"
	}
	n.Style = yaml.FlowStyle
	base := len(p.stack)
	i++
	for {
		i = p.skipSpaces(i)
		if i == p.end {
			return nil, 0, false // continued on the next line
		}
		if p.data[i] == closer {
			n.Content = p.content(base)
			return n, i + 1, true
		}
		var ok bool
		if isMap {
			var k *yaml.Node
			start := i
			if k, i, ok = p.flowScalar(i); !ok || i == p.end || p.data[i] != ':' || i+1 == p.end || p.data[i+1] != ' ' {
				return nil, 0, false
			}
			// yaml.v3 refuses a key longer than 1024 characters, in a
			// flow mapping too.
			if i-start > 1000 {
				return nil, 0, false
			}
			p.stack = append(p.stack, k)
			i = p.skipSpaces(i + 1)
			if i == p.end {
				return nil, 0, false
			}
		}
		var v *yaml.Node
		switch p.data[i] {
		case '[', '{':
			v, i, ok = p.flow(i, depth+1)
		default:
			v, i, ok = p.flowScalar(i)
		}
		if !ok {
			return nil, 0, false
		}
		p.stack = append(p.stack, v)
		i = p.skipSpaces(i)
		switch {
		case i == p.end:
			return nil, 0, false
		case p.data[i] == ',':
			i++
		case p.data[i] != closer:
			return nil, 0, false
		}
	}
}

// flowScalar parses the scalar at offset i of the current line inside a
// flow collection; it returns the offset after it.
func (p *fastParser) flowScalar(i int) (*yaml.Node, int, bool) {
	switch c := p.data[i]; {
	case c == '\'' || c == '"':
		return p.quoted(i)
	case !plainStart(c):
		return nil, 0, false
	}
	j := i
	for ; j < p.end; j++ {
		c := p.data[j]
		if c == ',' || c == ']' || c == '}' {
			break
		}
		if c == '[' || c == '{' || c == '?' {
			return nil, 0, false
		}
		if c == ':' {
			if j+1 == p.end || p.data[j+1] == ' ' {
				break
			}
			if next := p.data[j+1]; next == ',' || next == ']' || next == '}' || next == '[' || next == '{' || next == '?' {
				return nil, 0, false
			}
		}
	}
	end := j
	for end > i && p.data[end-1] == ' ' {
		end--
	}
	if j < p.end && p.data[j] == ':' && end != j {
		return nil, 0, false // "a :": a space before the colon
	}
	n, ok := p.plain(i, end)
	return n, end, ok
}

// plain returns the plain scalar data[i:j] of the current line, tagged as
// yaml.v3 resolves it.
func (p *fastParser) plain(i, j int) (*yaml.Node, bool) {
	v := p.text[i:j]
	if v == "<<" {
		return nil, false // a merge key
	}
	n := p.node(yaml.ScalarNode, "", p.line, i-p.start+1)
	n.Value = v
	if surelyString(v) {
		n.Tag = "!!str"
	} else {
		n.Tag = n.ShortTag() // as yaml.v3's parser resolves it
	}
	return n, true
}

// surelyString reports whether yaml.v3 surely resolves v, a plain scalar of
// fastYAML's subset, to a string, as it does most scalars of a large
// configuration: names and addresses. Resolving costs an allocation per
// scalar, and an address ("10.0.0.1:3306") several: its first digit
// makes yaml.v3 try it as an integer, a float and a timestamp. A false
// result leaves v to yaml.v3.
func surelyString(v string) bool {
	switch c := v[0]; {
	case c >= '0' && c <= '9':
		// A colon is in no number of yaml.v3's; a timestamp starts
		// with four digits and a dash.
		if strings.IndexByte(v, ':') < 0 {
			return false
		}
		return !(len(v) > 4 && v[4] == '-' && strings.Trim(v[:4], "0123456789") == "")
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '/', c == '$', c == '_', c == '(', c == '=':
		// Words that yaml.v3 resolves to something else than a
		// string start with a letter: booleans and nulls.
		switch v {
		case "true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL":
			return false
		}
		return true
	}
	return false
}

// quoted parses the single- or double-quoted scalar at offset i of the
// current line; it returns the offset after its closing quote. A double-
// quoted scalar with an escape is left to yaml.v3.
func (p *fastParser) quoted(i int) (*yaml.Node, int, bool) {
	q := p.data[i]
	n := p.node(yaml.ScalarNode, "!!str", p.line, i-p.start+1)
	n.Style = yaml.DoubleQuotedStyle
	if q == '\'' {
		n.Style = yaml.SingleQuotedStyle
	}
	var b []byte
	j := i + 1
	for ; ; j++ {
		if j == p.end {
			return nil, 0, false // continued on the next line
		}
		c := p.data[j]
		if c == '\\' && q == '"' {
			return nil, 0, false
		}
		if c != q {
			continue
		}
		if q == '\'' && j+1 < p.end && p.data[j+1] == '\'' {
			b = append(b, p.data[i+1:j+1]...)
			i = j + 1 // the second quote: the text goes on after it
			j++
			continue
		}
		break
	}
	if b == nil {
		n.Value = p.text[i+1 : j]
	} else {
		n.Value = string(append(b, p.data[i+1:j]...))
	}
	return n, j + 1, true
}

// skipSpaces returns the offset of the first byte from i on the current
// line that is not a space.
func (p *fastParser) skipSpaces(i int) int {
	for i < p.end && p.data[i] == ' ' {
		i++
	}
	return i
}

// plainStart reports whether a plain scalar of the subset may start with
// c: a letter, a digit or one of a few characters that are no indicator.
func plainStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '/' || c == '$' || c == '(' || c == '+' || c == '=' || c == '~'
}
