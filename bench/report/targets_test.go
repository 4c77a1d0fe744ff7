package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter/bench/internal/results"
)

// TestFailoverArgsRunKillSeveralTimes checks that `make bench` injects the
// kill, like freeze and cut, several times at random phases of the probe
// cycle, and the other faults once.
func TestFailoverArgsRunKillSeveralTimes(t *testing.T) {
	for fault, least := range map[string]int{"kill": 5, "freeze": 10, "cut": 10, "readonly": 1, "switchover": 1} {
		args := failoverArgs(fault)
		runs := 1
		if i := slices.Index(args, "-runs"); i >= 0 && i+1 < len(args) {
			runs, _ = strconv.Atoi(args[i+1])
		}
		if runs < least || (least == 1 && runs != 1) {
			t.Errorf("%s: %v: %d runs, want %d", fault, args, runs, least)
		}
		if args[0] != "-fault" || args[1] != fault {
			t.Errorf("%s: args %v do not start with -fault %s", fault, args, fault)
		}
	}
}

// killDoc is a kill result whose first run stalled first, with the given
// dbrouter and naive stalls over the runs (none: a single run).
func killDoc(first time.Duration, dbrouter, naive []time.Duration) failoverDoc {
	ms := results.Dur(time.Millisecond)
	f := results.Failover{Fault: "kill", Before: results.Dur(3 * time.Second), Phase: results.Dur(250 * time.Millisecond),
		Sides: []results.Side{
			{Name: "dbrouter", FirstSuccessElsewhere: results.Dur(first), Stall: results.Dur(first), PreMaxGap: 12 * ms},
			{Name: "naive", FirstSuccessElsewhere: 6 * ms, Stall: 12 * ms},
		}}
	for i := range dbrouter {
		f.Runs = append(f.Runs, results.Run{Side: "dbrouter", FirstSuccessElsewhere: results.Dur(dbrouter[i] - time.Millisecond), Stall: results.Dur(dbrouter[i])})
		f.Runs = append(f.Runs, results.Run{Side: "naive", FirstSuccessElsewhere: results.Dur(naive[i] - time.Millisecond), Stall: results.Dur(naive[i])})
	}
	return failoverDoc{Failover: f}
}

// crashRow returns the crash target's row of the targets table.
func crashRow(t *testing.T, f failoverDoc) string {
	t.Helper()
	d := docData{Failovers: []failoverDoc{f}}
	d.summarize()
	for _, line := range strings.Split(d.Targets, "\n") {
		if strings.HasPrefix(line, "| crash") {
			return line
		}
	}
	t.Fatalf("no crash row in\n%s", d.Targets)
	return ""
}

// TestCrashTargetJudgedOnMedian checks that the crash target (stall ≤ 10
// ms) is judged on the median stall over the kill runs, not on the first
// run, and that the row shows min / median / max and says so.
func TestCrashTargetJudgedOnMedian(t *testing.T) {
	ms := time.Millisecond
	naive := []time.Duration{5 * ms, 6 * ms, 7 * ms, 8 * ms, 40 * ms}
	for _, tc := range []struct {
		name     string
		first    time.Duration
		dbrouter []time.Duration
		want     []string
	}{
		{"median met, first run not", 11 * ms, []time.Duration{11 * ms, 4 * ms, 30 * ms, 8 * ms, 6 * ms},
			[]string{"median", "over 5 runs", "stall 4.0 ms / **8.0 ms** / 30 ms", "naive", "7.0 ms", "| yes |"}},
		{"median missed", 9 * ms, []time.Duration{9 * ms, 12 * ms, 30 * ms, 15 * ms, 6 * ms},
			[]string{"median", "over 5 runs", "stall 6.0 ms / **12 ms** / 30 ms", "| **no** |"}},
		{"one run", 9 * ms, nil, []string{"over 1 run", "stall 9.0 ms / **9.0 ms** / 9.0 ms", "| yes |"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row := crashRow(t, killDoc(tc.first, tc.dbrouter, naive[:len(tc.dbrouter)]))
			for _, w := range tc.want {
				if !strings.Contains(row, w) {
					t.Errorf("crash row lacks %q:\n%s", w, row)
				}
			}
		})
	}
	// The per-fault section shows the spread of the kill runs too.
	f := killDoc(11*ms, []time.Duration{11 * ms, 4 * ms, 30 * ms, 8 * ms, 6 * ms}, naive)
	if rt := f.RunsTable(); !strings.Contains(rt, "| dbrouter | 5 |") || !strings.Contains(rt, "4.0 ms / **8.0 ms** / 30 ms") {
		t.Errorf("RunsTable:\n%s", rt)
	}
}
