package main

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// apply replays an edit script on a and checks it against a and b.
func apply(t *testing.T, a, b []string, script []edit) {
	t.Helper()
	var got []string
	ai, bi := 0, 0
	for _, e := range script {
		switch e.kind {
		case ' ':
			if e.ai != ai || e.bi != bi || a[ai] != b[bi] {
				t.Fatalf("bad equal edit %+v at a[%d] b[%d]", e, ai, bi)
			}
			got = append(got, a[ai])
			ai, bi = ai+1, bi+1
		case '-':
			if e.ai != ai {
				t.Fatalf("bad delete edit %+v at a[%d]", e, ai)
			}
			ai++
		case '+':
			if e.bi != bi {
				t.Fatalf("bad insert edit %+v at b[%d]", e, bi)
			}
			got = append(got, b[bi])
			bi++
		}
	}
	if ai != len(a) || bi != len(b) || strings.Join(got, "\n") != strings.Join(b, "\n") {
		t.Fatalf("script does not turn a into b: consumed a %d/%d, b %d/%d", ai, len(a), bi, len(b))
	}
}

func TestDiffLines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a, b  string
		edits int // the shortest edit script's length
	}{
		{"same", "a b c", "a b c", 0},
		{"both empty", "", "", 0},
		{"from empty", "", "a b", 2},
		{"to empty", "a b", "", 2},
		{"one changed", "a b c", "a x c", 2},
		{"insert", "a c", "a b c", 1},
		{"move", "a b c d", "b c d a", 2},
		{"classic", "a b c a b b a", "c b a b a c", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := strings.Fields(tc.a), strings.Fields(tc.b)
			script := diffLines(a, b)
			apply(t, a, b, script)
			n := 0
			for _, e := range script {
				if e.kind != ' ' {
					n++
				}
			}
			if n != tc.edits {
				t.Errorf("%d edits, want %d", n, tc.edits)
			}
		})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "b", "c", "d"}
	for range 500 {
		a := make([]string, rng.IntN(30))
		b := make([]string, rng.IntN(30))
		for i := range a {
			a[i] = words[rng.IntN(len(words))]
		}
		for i := range b {
			b[i] = words[rng.IntN(len(words))]
		}
		apply(t, a, b, diffLines(a, b))
	}
}

// Texts too far apart for the Myers search are shown as one replaced by
// the other, still a valid script.
func TestDiffLinesFarApart(t *testing.T) {
	a := make([]string, maxEditDistance+10)
	b := make([]string, maxEditDistance+10)
	for i := range a {
		a[i], b[i] = "a"+strings.Repeat("x", i%7), "b"
	}
	a[0], b[0] = "same", "same"
	apply(t, a, b, diffLines(a, b))
}

func TestWriteUnified(t *testing.T) {
	a := splitLines([]byte("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n"))
	b := splitLines([]byte("1\n2\n3\nfour\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17\n"))
	var out bytes.Buffer
	same := func(_ int, s string) string { return s }
	if !writeUnified(&out, "a", "b", a, b, same, same) {
		t.Fatal("no difference found")
	}
	// As diff -u prints it.
	want := `--- a
+++ b
@@ -1,7 +1,7 @@
 1
 2
 3
-4
+four
 5
 6
 7
@@ -14,3 +14,4 @@
 14
 15
 16
+17
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	if writeUnified(&out, "a", "b", a, a, same, same) {
		t.Error("a difference between a text and itself")
	}
}
