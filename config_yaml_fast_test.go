package dbrouter

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// yamlv3Tree parses data as ParseConfig did before fastYAML: yaml.v3's
// Decoder, one document. ok is false when yaml.v3 refuses it or finds a
// second document.
func yamlv3Tree(data []byte) (*yaml.Node, bool) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, false
	}
	return &root, true
}

// sameTree returns where a and b differ, in any field, or "".
func sameTree(a, b *yaml.Node, path string) string {
	if (a == nil) != (b == nil) {
		return path + ": one is nil"
	}
	if a == nil {
		return ""
	}
	sa := fmt.Sprintf("%d/%d/%q/%q/%q/%d:%d/%q/%q/%q/%v/%d", a.Kind, a.Style, a.Tag, a.Value, a.Anchor, a.Line, a.Column,
		a.HeadComment, a.LineComment, a.FootComment, a.Alias != nil, len(a.Content))
	sb := fmt.Sprintf("%d/%d/%q/%q/%q/%d:%d/%q/%q/%q/%v/%d", b.Kind, b.Style, b.Tag, b.Value, b.Anchor, b.Line, b.Column,
		b.HeadComment, b.LineComment, b.FootComment, b.Alias != nil, len(b.Content))
	if sa != sb {
		return fmt.Sprintf("%s: fast %s, yaml.v3 %s", path, sa, sb)
	}
	for i := range a.Content {
		if d := sameTree(a.Content[i], b.Content[i], fmt.Sprintf("%s[%d]", path, i)); d != "" {
			return d
		}
	}
	return ""
}

// checkFastYAML fails t when fastYAML accepts data and its tree differs
// from yaml.v3's in any field, or yaml.v3 refuses data; it reports whether
// fastYAML accepted it.
func checkFastYAML(t *testing.T, data []byte) bool {
	t.Helper()
	fast, ok := fastYAML(data)
	if !ok {
		return false
	}
	want, wok := yamlv3Tree(data)
	if !wok {
		t.Fatalf("fastYAML accepted what yaml.v3 refuses:\n%s", data)
	}
	if d := sameTree(fast, want, "doc"); d != "" {
		t.Fatalf("fastYAML differs from yaml.v3 at %s; input:\n%s", d, data)
	}
	return true
}

// fastYAMLSamples are inputs in and around fastYAML's subset.
var fastYAMLSamples = []string{
	"a: b",
	"a: b\n",
	"\n\n  \na: b\n\n",
	"a: 1\nb: true\nc: ~\nd: null\ne: 1.5\nf: 0x1F\ng: 2001-12-14\nh: .inf\ni: 5s\nj: '5'\nk: \"x\"\nl: 1_000\nm: +1\nn: =x\no: /x\np: $x\nq: ${X:-y}\n",
	"a: 10.0.0.1:3306\nb: 1:2\nc: 12:30\nd: 2001-12-14t21:59:43.10-05:00\ne: 2001-12-14 21:59:43.10 -5\nf: 1_0:3\ng: 0x1:2\nh: 9:\ni: 1234-:5\nj: 123-4:5\nk: +1:2\nl: .1:2\nm: 1e3\nn: 0b101\no: 0o17\n",
	"a: true\nb: True\nc: TRUE\nd: tRUE\ne: false\nf: False\ng: FALSE\nh: null\ni: Null\nj: NULL\nk: nULL\nl: yes\nm: no\nn: on\no: off\np: y\nq: n\nr: Y\ns: ~x\nt: _x\nu: (x)\nv: =\nw: /\nx: $\ny: .nan\nz: .NaN\n",
	"a: 'it''s'\nb: ''\nc: \"\"\nd: 'x''''y'\ne: \"a'b\"\nf: 'a\"b'\n",
	"a: \"a\\tb\"\n",
	"a: 'x\n  y'\n",
	"a: x y  z  \nb: x:y\nc: x :y\nd: x,y]{}\ne: x: y\nf: x:\n",
	"a:\n  b: c\n  d:\n    e: f\ng: h\n",
	"a:\n- x\n- y\nb: c\n",
	"a:\n  - x\n  -   y\nb:\n    - {c: d}\n    - [e, f]\n",
	"a:\n  - x\n   y\n",
	"a:\n  - x\n y: z\n",
	"a:\n  b: c\n d: e\n",
	"a: b\n  c\n",
	"a:\nb: c\n",
	"a:\n",
	"a:\n  -\n    b: c\n",
	"a:\n  - b: c\n",
	"a:\n  - - b\n",
	"- a\n- b\n",
	" a: b\n",
	"{a: b}\n",
	"a: {b: c, d: [e, 'f', \"g\"], h: {}, i: []}\n",
	"a: {b: c,}\nd: [e,]\n",
	"a: [b,,c]\n",
	"a: [,]\n",
	"a: {b:c}\n",
	"a: {b: c:d}\n",
	"a: {b: c:}\n",
	"a: {b :c}\n",
	"a: {b : c}\n",
	"a: {'b': c, \"d\": e}\n",
	"a: {'b':c}\n",
	"a: [b: c]\n",
	"a: [b c, d  e ]\n",
	"a: [b?c]\n",
	"a: [b\n  , c]\n",
	"a: {b: c} d\n",
	"a: [b] \n",
	"'a': b\n\"c\": d\n'e':f\n",
	"a b: c\n",
	"a : b\n",
	"a:b: c\n",
	"1: a\ntrue: b\n~: c\n",
	"<<: {a: b}\n",
	"a: <<\n",
	"a: &x b\nc: *x\n",
	"a: !!str 1\n",
	"a: |\n  x\n",
	"a: >\n  x\n",
	"---\na: b\n",
	"a: b\n---\nc: d\n",
	"a: b\n...\n",
	"a: b # c\n",
	"# c\na: b\n",
	"a: b\r\n",
	"a:\tb\n",
	"a: \u00e9\n",
	"? a\n: b\n",
	"a: -1\nb: -x\nc: - x\n",
	"a: @x\nb: `x`\nc: %x\n",
	"a: b\na: c\n",
	"a: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n",
	strings.Repeat("x", 1100) + ": y\n",
	"defaults: {user: app, password: secret, database: shop}\nclusters:\n  c0: {nodes: [10.0.0.1:3306, 10.1.0.1:3306, 10.2.0.1:3306]}\n  c1: {nodes: ['[::1]:3306', db1]}\n",
	"defaults:\n  user: app\n  password: ${DB_PASSWORD}\n  connect_timeout: 2s\n  params: {parseTime: 'true'}\n  health:\n    interval: 250ms\n    disabled: false\nclusters:\n  shop:\n    nodes:\n      - db1:3306\n      - db2\n    max_open_conns: 20\nshard_maps:\n  m:\n    strategy: directory\n    entries:\n      k1: shop\n",
}

// TestFastYAMLMatchesYAMLv3 checks fastYAML against yaml.v3 on inputs in
// and around its subset, on the test configurations and on the large
// configurations of the benchmarks, and that it takes the latter.
func TestFastYAMLMatchesYAMLv3(t *testing.T) {
	for _, s := range fastYAMLSamples {
		checkFastYAML(t, []byte(s))
		for _, line := range strings.Split(s, "\n") { // each alone too
			checkFastYAML(t, []byte(line))
		}
	}
	files, _ := filepath.Glob("testdata/config/*.yaml")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		checkFastYAML(t, data)
	}
	for _, withMap := range []bool{false, true} {
		if !checkFastYAML(t, scaleYAML(2000, withMap)) {
			t.Errorf("fastYAML refused scaleYAML(2000, %v)", withMap)
		}
	}
	if !checkFastYAML(t, []byte(fastYAMLSamples[len(fastYAMLSamples)-1])) {
		t.Error("fastYAML refused the block-style sample")
	}
}

// FuzzFastYAML checks that whatever fastYAML accepts, yaml.v3 parses into
// the same tree, field by field.
func FuzzFastYAML(f *testing.F) {
	for _, s := range fastYAMLSamples {
		f.Add([]byte(s))
		for _, line := range strings.Split(s, "\n") {
			f.Add([]byte(line))
		}
	}
	f.Add(scaleYAML(3, true))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFastYAML(t, data)
	})
}
