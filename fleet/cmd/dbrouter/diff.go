package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// edit is one line of an edit script: kind ' ' (in both), '-' (only in
// a, line ai) or '+' (only in b, line bi). Indexes are 0-based.
type edit struct {
	kind   byte
	ai, bi int
}

// maxEditDistance bounds the Myers search (its memory grows with the
// square of the distance): two texts further apart than this are shown as
// all of one removed and all of the other added, between their common
// first and last lines.
const maxEditDistance = 2000

// diffLines returns an edit script that turns a into b: a shortest one
// (Myers' algorithm) once common first and last lines are set aside.
func diffLines(a, b []string) []edit {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var out []edit
	for i := range pre {
		out = append(out, edit{' ', i, i})
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	mid, ok := myers(ma, mb)
	if !ok {
		mid = nil
		for i := range ma {
			mid = append(mid, edit{'-', i, 0})
		}
		for j := range mb {
			mid = append(mid, edit{'+', len(ma), j})
		}
	}
	for _, e := range mid {
		out = append(out, edit{e.kind, e.ai + pre, e.bi + pre})
	}
	for i := range suf {
		out = append(out, edit{' ', len(a) - suf + i, len(b) - suf + i})
	}
	return out
}

// myers is Myers' O((N+M)D) diff; ok is false past maxEditDistance.
func myers(a, b []string) (script []edit, ok bool) {
	n, m := len(a), len(b)
	limit := n + m
	off := limit + 1
	v := make([]int, 2*limit+3) // v[off+k]: furthest x on diagonal k
	var trace [][]int           // trace[d]: v[k] for k in [-d-1, d+1] before step d
	for d := 0; d <= limit; d++ {
		if d > maxEditDistance {
			return nil, false
		}
		trace = append(trace, slices.Clone(v[off-d-1:off+d+2]))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: a line of b
			} else {
				x = v[off+k-1] + 1 // right: a line of a
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = x
			if x >= n && y >= m {
				return backtrack(trace, n, m), true
			}
		}
	}
	return nil, false // not reached: d = n+m always ends
}

// backtrack walks the trace of myers back from (n, m) to (0, 0).
func backtrack(trace [][]int, n, m int) []edit {
	var out []edit
	x, y := n, m
	for d := len(trace) - 1; d >= 0; d-- {
		w := trace[d]
		at := func(k int) int { return w[k+d+1] }
		k := x - y
		prevK := k - 1
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			prevK = k + 1
		}
		prevX := at(prevK)
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			out = append(out, edit{' ', x - 1, y - 1})
			x, y = x-1, y-1
		}
		if d > 0 {
			if x == prevX {
				out = append(out, edit{'+', x, y - 1})
			} else {
				out = append(out, edit{'-', x - 1, y})
			}
		}
		x, y = prevX, prevY
	}
	slices.Reverse(out)
	return out
}

// diffContext is the number of unchanged lines shown around a change.
const diffContext = 3

// writeUnified writes the differences between a and b in the unified
// format (hunks of changes with diffContext lines around them, "@@ -l,n
// +l,n @@" headers), each line passed through show first. It reports
// whether there was any difference.
func writeUnified(w io.Writer, nameA, nameB string, a, b []string, showA, showB func(i int, s string) string) bool {
	script := diffLines(a, b)
	var changes []int // indexes in script of its changes
	for i, e := range script {
		if e.kind != ' ' {
			changes = append(changes, i)
		}
	}
	if len(changes) == 0 {
		return false
	}
	fmt.Fprintf(w, "--- %s\n+++ %s\n", nameA, nameB)
	for i := 0; i < len(changes); {
		// A hunk: changes no more than 2*diffContext unchanged lines apart.
		j := i
		for j+1 < len(changes) && changes[j+1]-changes[j] <= 2*diffContext+1 {
			j++
		}
		lo := max(0, changes[i]-diffContext)
		hi := min(len(script), changes[j]+diffContext+1)
		hunk := script[lo:hi]
		startA, startB, countA, countB := -1, -1, 0, 0
		for _, e := range hunk {
			if e.kind != '+' {
				if startA < 0 {
					startA = e.ai
				}
				countA++
			}
			if e.kind != '-' {
				if startB < 0 {
					startB = e.bi
				}
				countB++
			}
		}
		if startA < 0 { // only additions: the line before them
			startA = hunk[0].ai - 1
		}
		if startB < 0 {
			startB = hunk[0].bi - 1
		}
		fmt.Fprintf(w, "@@ -%s +%s @@\n", hunkRange(startA, countA), hunkRange(startB, countB))
		for _, e := range hunk {
			switch e.kind {
			case ' ':
				fmt.Fprintf(w, " %s\n", showA(e.ai, a[e.ai]))
			case '-':
				fmt.Fprintf(w, "-%s\n", showA(e.ai, a[e.ai]))
			case '+':
				fmt.Fprintf(w, "+%s\n", showB(e.bi, b[e.bi]))
			}
		}
		i = j + 1
	}
	return true
}

// hunkRange formats the range of a hunk header: 1-based start and count,
// as diff -u does ("0,0" before the first line of an empty text).
func hunkRange(start, count int) string {
	if count == 1 {
		return fmt.Sprint(start + 1)
	}
	if count == 0 {
		return fmt.Sprintf("%d,0", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, count)
}

// splitLines splits a text into lines, without their "\n"; a final "\n"
// ends the last line rather than starting an empty one.
func splitLines(text []byte) []string {
	if len(text) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
}
