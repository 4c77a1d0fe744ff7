package main

import (
	"strings"
	"testing"
)

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
BenchmarkLookup/initial/ascii-2         	280138574	         4.210 ns/op	       0 B/op	       0 allocs/op
BenchmarkPointQuery/select/callers=8/bare-2    	   15528	     80000 ns/op	     725 B/op	      22 allocs/op
BenchmarkPointQuery/select/callers=8/routed-2  	   17214	    100000 ns/op	     726 B/op	      22 allocs/op
BenchmarkPointQuery/select/callers=8/bare#01-2 	   15528	     90000 ns/op	     725 B/op	      22 allocs/op
BenchmarkPointQuery/select/callers=8/routed#01-2         	   17214	     90000 ns/op	     726 B/op	      23 allocs/op
BenchmarkLookup/initial/ascii-2         	280138574	         4.410 ns/op	       0 B/op	       0 allocs/op
PASS
`
	rs := parseGoBench(strings.NewReader(out))
	if len(rs) != 3 {
		t.Fatalf("got %d benchmarks, want 3: %+v", len(rs), rs)
	}
	lookup, bare, routed := rs[0], rs[1], rs[2]
	if lookup.Name != "Lookup/initial/ascii" || len(lookup.NsOp) != 2 || lookup.Med() < 4.3099 || lookup.Med() > 4.3101 {
		t.Errorf("lookup: %+v, median %v", lookup, lookup.Med())
	}
	if bare.Name != "PointQuery/select/callers=8/bare" || len(bare.NsOp) != 2 {
		t.Errorf("bare: %+v", bare)
	}
	if got := routed.MedAllocs(); got != 22.5 {
		t.Errorf("routed allocs median %v, want 22.5", got)
	}
	// Per-round ratios 0.8 and 1.0: median 0.9.
	if got := pairedRatio(bare, routed); got < 0.8999 || got > 0.9001 {
		t.Errorf("pairedRatio = %v, want 0.9", got)
	}
	if lo, hi := ratioRange(bare, routed); lo != 0.8 || hi != 1 {
		t.Errorf("ratioRange = %v, %v", lo, hi)
	}
}
