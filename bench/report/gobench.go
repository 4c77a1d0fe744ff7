package main

import (
	"bufio"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// benchResult is one benchmark's results over -count runs.
type benchResult struct {
	Name   string // without the Benchmark prefix and the -GOMAXPROCS suffix
	NsOp   []float64
	BOp    []float64
	Allocs []float64
}

// Med returns the median of ns/op.
func (b *benchResult) Med() float64 { return median(b.NsOp) }

// MedB returns the median of B/op.
func (b *benchResult) MedB() float64 { return median(b.BOp) }

// MedAllocs returns the median of allocs/op.
func (b *benchResult) MedAllocs() float64 { return median(b.Allocs) }

// Min and Max of ns/op.
func (b *benchResult) Min() float64 { return slices.Min(b.NsOp) }

// Max returns the largest ns/op.
func (b *benchResult) Max() float64 { return slices.Max(b.NsOp) }

var (
	benchLine = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op(.*)$`)
	// repeat is the suffix testing gives a repeated sub-benchmark name.
	repeat = regexp.MustCompile(`#\d+$`)
)

// parseGoBench reads `go test -bench` output, in order of first appearance.
func parseGoBench(r io.Reader) []*benchResult {
	var out []*benchResult
	byName := map[string]*benchResult{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		name := repeat.ReplaceAllString(m[1], "")
		b := byName[name]
		if b == nil {
			b = &benchResult{Name: name}
			byName[name] = b
			out = append(out, b)
		}
		ns, _ := strconv.ParseFloat(m[3], 64)
		b.NsOp = append(b.NsOp, ns)
		fields := strings.Fields(m[4])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			switch fields[i+1] {
			case "B/op":
				b.BOp = append(b.BOp, v)
			case "allocs/op":
				b.Allocs = append(b.Allocs, v)
			}
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pairedRatio is the median over runs i of bare.NsOp[i] / routed.NsOp[i]:
// the throughput of routed relative to bare, each run compared with the one
// next to it in time. With unequal run counts it compares the medians.
func pairedRatio(bare, routed *benchResult) float64 {
	if len(bare.NsOp) != len(routed.NsOp) {
		return bare.Med() / routed.Med()
	}
	r := make([]float64, len(bare.NsOp))
	for i := range r {
		r[i] = bare.NsOp[i] / routed.NsOp[i]
	}
	return median(r)
}

// ratioRange is the smallest and largest of the per-run ratios.
func ratioRange(bare, routed *benchResult) (lo, hi float64) {
	if len(bare.NsOp) != len(routed.NsOp) {
		return bare.Med() / routed.Med(), bare.Med() / routed.Med()
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for i := range bare.NsOp {
		v := bare.NsOp[i] / routed.NsOp[i]
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	return lo, hi
}
