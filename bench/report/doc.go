package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/dbrouter/dbrouter/bench/internal/results"
)

// docData is what performance.md.tmpl is rendered from.
type docData struct {
	Machine      Machine
	LoadWarning  string // set when the machine was busy at the start
	Generated    string
	Elapsed      time.Duration
	GoBenchCmd   string
	PointCmd     string
	Rounds       int
	GoBenchCount int
	BenchTime    string
	GoBenchLog   string

	RoutedTable string // routed vs bare on MariaDB
	FakeTable   string // router overhead on the fake driver
	WriterTable string // writer selection
	ShardTable  string // shard lookups (and any other benchmark)
	Targets     string // the targets (docs/design.md §10) against the measurements

	Failovers []failoverDoc
	ScaleCmd  string
	Scale     results.Scale

	bench map[string]*benchResult
}

type failoverDoc struct {
	results.Failover
	ChartRel string
}

// spread returns min, median and max over the runs of a side (-runs) of
// the time to the first write acknowledged elsewhere and of the stall, and
// the number of runs; with a single run, that run's figures.
func (f failoverDoc) spread(name string) (first, stall [3]results.Dur, n int) {
	var fs, ss []time.Duration
	for _, r := range f.Runs {
		if r.Side == name {
			fs, ss = append(fs, r.FirstSuccessElsewhere.D()), append(ss, r.Stall.D())
		}
	}
	if len(fs) == 0 {
		if s := f.Side(name); s != nil {
			fs, ss = []time.Duration{s.FirstSuccessElsewhere.D()}, []time.Duration{s.Stall.D()}
		}
	}
	if len(fs) == 0 {
		return first, stall, 0
	}
	slices.Sort(fs)
	slices.Sort(ss)
	pick := func(d []time.Duration) [3]results.Dur {
		return [3]results.Dur{results.Dur(d[0]), results.Dur(d[(len(d)-1)/2]), results.Dur(d[len(d)-1])}
	}
	return pick(fs), pick(ss), len(fs)
}

// ParseOpenTable is the cost of ParseConfig and Open by number of
// clusters, or "" when bench/scale did not measure it.
func (d *docData) ParseOpenTable() string {
	if len(d.Scale.ParseOpen) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| clusters (3 nodes each) | YAML | `ParseConfig` | `Open` | both | per cluster | CPU, both | CPU per cluster |\n|---|---|---|---|---|---|---|---|\n")
	for _, p := range d.Scale.ParseOpen {
		both := p.Parse.D() + p.Open.D()
		fmt.Fprintf(&b, "| %d | %s | %s | %s | **%s** | %s | %s | %s |\n", p.Clusters, mib(uint64(p.Bytes)), fmtDur(p.Parse), fmtDur(p.Open),
			fmtDur(results.Dur(both)), fmtDur(results.Dur(both/time.Duration(p.Clusters))), fmtDur(p.CPU), fmtDur(results.Dur(p.CPU.D()/time.Duration(p.Clusters))))
	}
	fmt.Fprintf(&b, "\nMedians of %d runs each of `ParseConfig` on a YAML file and `Open` of the result (then `Close`).\n", d.Scale.ParseOpen[0].Runs)
	return b.String()
}

// RunsTable is the distribution over the runs (-runs), or "" for one run.
func (f failoverDoc) RunsTable() string {
	if len(f.Runs) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Over the runs, each with the fault at a random phase of the probe cycle (after the load's first %s plus 0–%s):\n\n", fmtDur(f.Before), fmtDur(f.Phase))
	b.WriteString("| side | runs | fault → first write acknowledged by another node, min / median / max | stall, min / median / max |\n|---|---|---|---|\n")
	// In bold, the median the fault's target is judged on (see summarize).
	firstFmt, stallFmt := "%s / **%s** / %s", "%s / %s / %s"
	if f.Fault == "kill" {
		firstFmt, stallFmt = stallFmt, firstFmt
	}
	for _, s := range f.Sides {
		first, stall, n := f.spread(s.Name)
		fmt.Fprintf(&b, "| %s | %d | "+firstFmt+" | "+stallFmt+" |\n", s.Name, n,
			fmtDur(first[0]), fmtDur(first[1]), fmtDur(first[2]), fmtDur(stall[0]), fmtDur(stall[1]), fmtDur(stall[2]))
	}
	b.WriteString("\nThe table above and the chart are those of the first run.\n")
	return b.String()
}

// Side returns the named side, or nil.
func (f failoverDoc) Side(name string) *results.Side {
	for i := range f.Sides {
		if f.Sides[i].Name == name {
			return &f.Sides[i]
		}
	}
	return nil
}

// Table is the failover summary as a markdown table, one column per side.
func (f failoverDoc) Table() string {
	var b strings.Builder
	b.WriteString("| |")
	for _, s := range f.Sides {
		fmt.Fprintf(&b, " %s |", s.Name)
	}
	b.WriteString("\n|---|")
	for range f.Sides {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	row := func(label string, fn func(s results.Side) string) {
		fmt.Fprintf(&b, "| %s |", label)
		for _, s := range f.Sides {
			fmt.Fprintf(&b, " %s |", fn(s))
		}
		b.WriteString("\n")
	}
	row("calls (whole run)", func(s results.Side) string { return fmt.Sprint(s.Calls) })
	row("fault → first write acknowledged by another node", func(s results.Side) string { return fmtDur(s.FirstSuccessElsewhere) })
	row("stall: longest gap between two acknowledged writes (window)", func(s results.Side) string { return fmtDur(s.Stall) })
	row("same, in the 2 s before the fault (the load's own rhythm)", func(s results.Side) string { return fmtDur(s.PreMaxGap) })
	row("latency p50 / p99 before the fault", func(s results.Side) string { return fmtDur(s.PreP50) + " / " + fmtDur(s.PreP99) })
	row("latency p50 / p99 / max, calls started in the 10 s after", func(s results.Side) string {
		return fmtDur(s.PostP50) + " / " + fmtDur(s.PostP99) + " / **" + fmtDur(s.PostMax) + "**"
	})
	row("acknowledged writes/s: before → 10 s after", func(s results.Side) string { return fmt.Sprintf("%.0f → %.0f", s.PreRate, s.PostRate) })
	row("acknowledged writes in the 1st / 2nd / slowest second after the fault", func(s results.Side) string { return perSecond(s) })
	row("calls after the fault, by outcome", func(s results.Side) string { return outcomes(s.PostOutcomes) })
	row("**acknowledged writes lost** (must be 0)", func(s results.Side) string { return fmt.Sprintf("**%d**", s.Lost) })
	row("ids written twice", func(s results.Side) string { return fmt.Sprint(s.Doubled) })
	row("outcome-unknown writes that were applied", func(s results.Side) string { return fmt.Sprintf("%d of %d", s.UnknownApplied, s.Unknown) })
	row("failed (not acknowledged, not unknown) writes applied anyway", func(s results.Side) string {
		return fmt.Sprintf("%d of %d", s.FailedApplied, s.Failed)
	})
	row("rows per node after convergence", func(s results.Side) string { return intsText(s.RowsPerNode) })
	for _, s := range f.Sides {
		if s.VerifyError != "" {
			fmt.Fprintf(&b, "\n%s: verification failed: `%s`\n", s.Name, s.VerifyError)
		}
	}
	return b.String()
}

func outcomes(m map[string]int) string {
	var parts []string
	for _, c := range []string{"ok", "ok-retried", "outcome-unknown", "not-sent", "server-error", "deadline", "failed"} {
		if m[c] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c, m[c]))
		}
	}
	return strings.Join(parts, ", ")
}

func intsText(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, " / ")
}

// setGoBench files the Go benchmark results into the tables.
func (d *docData) setGoBench(rs []*benchResult, log string) {
	d.GoBenchLog = log
	d.bench = map[string]*benchResult{}
	for _, r := range rs {
		d.bench[r.Name] = r
	}
	mine := map[string]bool{}

	// Routed vs bare.
	var b strings.Builder
	b.WriteString("| statement | callers | bare `*sql.DB` | dbrouter `Cluster` | routed ÷ bare throughput (median; range) | allocs/op bare → routed | B/op bare → routed |\n|---|---|---|---|---|---|---|\n")
	for _, op := range []string{"select", "insert"} {
		for _, callers := range []string{"1", "8"} {
			base := "PointQuery/" + op + "/callers=" + callers
			bare, routed := d.bench[base+"/bare"], d.bench[base+"/routed"]
			if bare == nil || routed == nil {
				continue
			}
			mine[bare.Name], mine[routed.Name] = true, true
			stmt := "point `SELECT v FROM point WHERE id = ?`"
			if op == "insert" {
				stmt = "`INSERT INTO ins (k, v) VALUES (?, ?)`"
			}
			lo, hi := ratioRange(bare, routed)
			fmt.Fprintf(&b, "| %s | %s | %s | %s | **%.3f×**; %.2f–%.2f | %.0f → %.0f | %.0f → %.0f |\n", stmt, callers,
				opsText(bare), opsText(routed), pairedRatio(bare, routed), lo, hi,
				bare.MedAllocs(), routed.MedAllocs(), bare.MedB(), routed.MedB())
		}
	}
	d.RoutedTable = b.String()

	// The router's own overhead on a fake driver.
	b.Reset()
	b.WriteString("| benchmark | what it measures | ns/op (median; min–max) | B/op | allocs/op |\n|---|---|---|---|---|\n")
	for _, r := range []struct{ name, what string }{
		{"ExecFake/bare", "`ExecContext` on a bare `*sql.DB` over the fake driver"},
		{"ExecFake/routed", "`Cluster.ExecContext` over the same fake driver (3 nodes)"},
		{"CallOverhead", "the failover loop around one attempt that does nothing"},
	} {
		if x := d.bench[r.name]; x != nil {
			mine[r.name] = true
			fmt.Fprintf(&b, "| `%s` | %s | %s | %.0f | %.0f |\n", r.name, r.what, nsText(x), x.MedB(), x.MedAllocs())
		}
	}
	if bare, routed := d.bench["ExecFake/bare"], d.bench["ExecFake/routed"]; bare != nil && routed != nil {
		if diff := routed.Med() - bare.Med(); diff > 0 {
			fmt.Fprintf(&b, "\nThe router adds **%.0f ns and %.0f allocations** to a write (difference of the medians), before any network or server time.\n",
				diff, routed.MedAllocs()-bare.MedAllocs())
		} else {
			fmt.Fprintf(&b, "\nThe router adds **%.0f allocations** to a write; in this run its time was lost in the noise (routed median %.0f ns below bare).\n",
				routed.MedAllocs()-bare.MedAllocs(), -diff)
		}
	}
	d.FakeTable = b.String()

	// Writer selection.
	b.Reset()
	b.WriteString("| benchmark | what it measures | ns/op (median; min–max) | B/op | allocs/op |\n|---|---|---|---|---|\n")
	for _, r := range rs {
		var what string
		switch {
		case r.Name == "WriterPick":
			what = "per call: load the immutable picker and take its first write node"
		case r.Name == "WriterAddr":
			what = "`Cluster.WriterAddr`"
		case strings.HasPrefix(r.Name, "WriterChoice/"):
			what = "per health change: choose the writer (convergent rule) and build a new picker, " + strings.TrimPrefix(r.Name, "WriterChoice/")
		default:
			continue
		}
		mine[r.Name] = true
		fmt.Fprintf(&b, "| `%s` | %s | %s | %.0f | %.0f |\n", r.Name, what, nsText(r), r.MedB(), r.MedAllocs())
	}
	d.WriterTable = b.String()

	// Everything else: the shard maps' benchmarks (and any added later).
	b.Reset()
	b.WriteString("| benchmark | ns/op (median; min–max) | B/op | allocs/op | ≤ 50 ns and 0 allocs |\n|---|---|---|---|---|\n")
	n := 0
	for _, r := range rs {
		if mine[r.Name] {
			continue
		}
		n++
		check := "—"
		if isLookup(r.Name) {
			check = yesNo(r.Med() <= 50 && r.MedAllocs() == 0)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %.0f | %.0f | %s |\n", r.Name, nsText(r), r.MedB(), r.MedAllocs(), check)
	}
	if n == 0 {
		b.Reset()
		b.WriteString("_No other benchmark in the root package produced results in this run._\n")
	}
	d.ShardTable = b.String()
}

// isLookup reports whether a benchmark is a bare shard map Lookup (the
// docs/design.md §10 target), as opposed to Route or something else.
func isLookup(name string) bool {
	return strings.HasPrefix(name, "Lookup/") && !strings.Contains(name, "Route")
}

func opsText(r *benchResult) string {
	return fmt.Sprintf("%s ops/s (%s/op)", thousands(1e9/r.Med()), durText(r.Med()))
}

func nsText(r *benchResult) string {
	if len(r.NsOp) == 1 {
		return fmt.Sprintf("%s", trimFloat(r.Med()))
	}
	return fmt.Sprintf("%s; %s–%s", trimFloat(r.Med()), trimFloat(r.Min()), trimFloat(r.Max()))
}

func trimFloat(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return thousands(v)
}

func durText(ns float64) string {
	switch {
	case ns < 1e3:
		return fmt.Sprintf("%.0f ns", ns)
	case ns < 1e6:
		return fmt.Sprintf("%.0f µs", ns/1e3)
	}
	return fmt.Sprintf("%.1f ms", ns/1e6)
}

func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", math.Round(v))
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// fmtDur formats a duration for tables: negative is "never".
func fmtDur(d results.Dur) string {
	switch v := d.D(); {
	case v < 0:
		return "never"
	case v == 0:
		return "0"
	case v < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(v)/1e6)
	case v < 10*time.Second:
		return fmt.Sprintf("%.0f ms", float64(v)/1e6)
	default:
		return fmt.Sprintf("%.1f s", v.Seconds())
	}
}

func (d *docData) failover(fault string) *failoverDoc {
	for i := range d.Failovers {
		if d.Failovers[i].Fault == fault {
			return &d.Failovers[i]
		}
	}
	return nil
}

// summarize builds the table of the targets of docs/design.md §10.
func (d *docData) summarize() {
	var b strings.Builder
	b.WriteString("| docs/design.md §10 target (default settings) | measured here | met |\n|---|---|---|\n")
	side := func(fault, name string) *results.Side {
		if f := d.failover(fault); f != nil {
			return f.Side(name)
		}
		return nil
	}
	if f := d.failover("kill"); f != nil && f.Side("dbrouter") != nil {
		// One run is at the mercy of one pause of the machine: the target
		// is judged on the median over the runs at random phases.
		first, stall, n := f.spread("dbrouter")
		runs := plural(n, "run")
		if n > 1 {
			runs += " at random phases"
		}
		fmt.Fprintf(&b, "| crash (SIGKILL of the writer): stall ≤ 10 ms, judged on the median over the runs | over %s: stall %s / **%s** / %s, first write acknowledged by B %s / %s / %s after the kill (min / median / max; stall: the longest gap between acknowledged writes; the load's own gaps before the fault, first run: up to %s)%s | %s |\n",
			runs, fmtDur(stall[0]), fmtDur(stall[1]), fmtDur(stall[2]), fmtDur(first[0]), fmtDur(first[1]), fmtDur(first[2]),
			fmtDur(f.Side("dbrouter").PreMaxGap), naiveMedians(f), yesNo(stall[1].D() <= 10*time.Millisecond))
	}
	for _, fault := range []string{"freeze", "cut"} {
		f := d.failover(fault)
		if f == nil || f.Side("dbrouter") == nil {
			continue
		}
		first, stall, n := f.spread("dbrouter")
		what := "freeze (SIGSTOP)"
		if fault == "cut" {
			what = "cut path (nothing refused, everything hangs)"
		}
		fmt.Fprintf(&b, "| %s: first write acknowledged by the next node ≤ 300 ms after the fault, at every phase of the probe cycle | over %d run(s) at random phases: first write acknowledged by B %s / %s / %s (min / median / max); stall %s / %s / %s | %s |\n",
			what, n, fmtDur(first[0]), fmtDur(first[1]), fmtDur(first[2]), fmtDur(stall[0]), fmtDur(stall[1]), fmtDur(stall[2]),
			yesNo(n >= 10 && first[2].D() <= 300*time.Millisecond))
	}
	if s := side("freeze", "dbrouter"); s != nil {
		n := side("freeze", "naive")
		ok := len(s.PerSecond) > 1 && float64(s.PerSecond[1]) >= 0.9*s.PreRate
		fmt.Fprintf(&b, "| freeze: write throughput back to ≥ 90 %% of its pre-fault rate within 1 s | acknowledged writes in the second second after the freeze: %s of the pre-fault rate (naive: %s) | %s |\n",
			secondPct(s), secondPct(n), yesNo(ok))
	}
	if s := side("switchover", "dbrouter"); s != nil {
		failed := s.PostOutcomes["failed"] + s.PostOutcomes["not-sent"] + s.PostOutcomes["deadline"] + s.PostOutcomes["server-error"]
		unknown := s.PostOutcomes["outcome-unknown"]
		fmt.Fprintf(&b, "| planned switchover (`Cluster.Switchover`): 0 failed calls, 0 outcome unknown, stall ≤ 100 ms | %d failed, %d outcome unknown; stall %s (first write acknowledged by B %s after the switchover began) | %s |\n",
			failed, unknown, fmtDur(s.Stall), fmtDur(s.FirstSuccessElsewhere), yesNo(failed == 0 && unknown == 0 && s.Stall.D() <= 100*time.Millisecond))
	}
	lost, doubled, failedApplied, runs := 0, 0, 0, 0
	var naiveDoubled []string
	for _, f := range d.Failovers {
		if s := f.Side("dbrouter"); s != nil {
			lost += s.Lost
			doubled += s.Doubled
			failedApplied += s.FailedApplied
			runs++
		}
		if n := f.Side("naive"); n != nil && (n.Doubled > 0 || n.Lost > 0) {
			naiveDoubled = append(naiveDoubled, fmt.Sprintf("%s: %d doubled, %d lost", f.Fault, n.Doubled, n.Lost))
		}
	}
	if runs > 0 {
		note := "naive: none lost or doubled in these runs"
		if len(naiveDoubled) > 0 {
			note = "naive: " + strings.Join(naiveDoubled, "; ")
		}
		fmt.Fprintf(&b, "| zero acknowledged writes lost, zero written twice | dbrouter over %d faults: %d lost, %d doubled (%s) | %s |\n",
			runs, lost, doubled, note, yesNo(lost == 0 && doubled == 0))
		fmt.Fprintf(&b, "| a write whose fate is unknown is reported as outcome unknown, never as a plain failure | dbrouter writes reported as failed or not sent that were applied anyway: %d | %s |\n",
			failedApplied, yesNo(failedApplied == 0))
	}
	maxNs, maxAllocs, lookups := d.slowestLookup()
	if lookups > 0 {
		fmt.Fprintf(&b, "| shard lookup ≤ 50 ns/op and 0 allocs/op, every built-in strategy | slowest of %d `Lookup` benchmarks: %.1f ns/op, at most %.0f allocs/op | %s |\n",
			lookups, maxNs, maxAllocs, yesNo(maxNs <= 50 && maxAllocs == 0))
	} else {
		b.WriteString("| shard lookup ≤ 50 ns/op and 0 allocs/op | no `Lookup` benchmark found | — |\n")
	}
	for _, op := range []string{"select", "insert"} {
		bare, routed := d.bench["PointQuery/"+op+"/callers=8/bare"], d.bench["PointQuery/"+op+"/callers=8/routed"]
		if bare == nil || routed == nil {
			continue
		}
		ratio := pairedRatio(bare, routed)
		label := "routed point query vs bare `*sql.DB`: ≥ 0.97× the throughput, 8 callers"
		if op == "insert" {
			label = "(same, for a point INSERT; not a §5 target)"
		}
		fmt.Fprintf(&b, "| %s | %s: %.3f× (1 caller: %s) | %s |\n", label, strings.ToUpper(op), ratio, ratioText(d.bench, op, "1"), yesNo(ratio >= 0.97))
	}
	if s := d.Scale; s.Clusters > 0 {
		fmt.Fprintf(&b, "| %d clusters × %d nodes: Open ≤ 100 ms, no connections opened until used | Open %s (median of %d); sockets after Open: %d | %s |\n",
			s.Clusters, s.Nodes, fmtDur(s.OpenMed), len(s.OpenRuns), s.AfterOpen.TCPConns, yesNo(s.OpenMed.D() <= 100*time.Millisecond && s.AfterOpen.TCPConns == 0))
		g := s.Probing.Goroutines - s.AfterOpen.Goroutines
		if u := s.Up; u != nil {
			probing := u.Goroutines.Scheduler + u.Goroutines.DriverWatchers + u.Goroutines.PoolOpeners
			fmt.Fprintf(&b, "| %d clusters × %d nodes in use: ≤ 200 goroutines for probing | every node refusing: %d added; every node up: %d added (probe scheduler %d, go-sql-driver goroutines %d, pool openers %d) | %s |\n",
				s.Clusters, s.Nodes, g, u.Goroutines.Added, u.Goroutines.Scheduler, u.Goroutines.DriverWatchers, u.Goroutines.PoolOpeners,
				yesNo(g <= 200 && probing <= 200 && u.Goroutines.Added <= 200))
			idle, busy := u.Idle.CorePct(u.For.D()), u.Busy.CorePct(u.For.D())
			verdict := yesNo(idle <= 25)
			if busy > 25 {
				verdict += " (idle); **no** (every node at the interval)"
			}
			fmt.Fprintf(&b, "| probing CPU ≤ 25 %% of one core with every node up | %d clusters × 3 nodes up, in use but idle (probes every %s): **%.0f %%** (%.1f µs per probe); every node probed every %s (the rate of a cluster in use): %.0f %% | %s |\n",
				u.Clusters, fmtDur(u.IdleInterval), idle, float64(u.Idle.PerProbe().D().Nanoseconds())/1000, fmtDur(u.Interval), busy, verdict)
		} else {
			fmt.Fprintf(&b, "| %d clusters × %d nodes in use: ≤ 200 goroutines for probing | %d goroutines added once every cluster is in use | %s |\n",
				s.Clusters, s.Nodes, g, yesNo(g <= 200))
			fmt.Fprintf(&b, "| probing CPU ≤ 25 %% of one core with every node up | %s of one core with every node **refusing** connections (every node up is not measured) | %s |\n",
				pct(s.CPUWhileProbing, s.ProbeFor), "not measured")
		}
		for _, p := range s.ParseOpen {
			if p.Clusters == 10000 {
				both := p.Parse.D() + p.Open.D()
				fmt.Fprintf(&b, "| `ParseConfig` + `Open` of 10,000 clusters ≤ 150 ms, linear in clusters | %s (ParseConfig %s, Open %s; medians of %d; other sizes in §5) | %s |\n",
					fmtDur(results.Dur(both)), fmtDur(p.Parse), fmtDur(p.Open), p.Runs, yesNo(both <= 150*time.Millisecond))
			}
		}
	}
	b.WriteString("| no demotion of a healthy node while both cores are saturated | not measured by `make bench`; checked by `TestNoDemotionUnderCPUSaturation` in `make test` (10 s of spinning goroutines on both cores plus a query load: no node may go Down) | test |\n")
	d.Targets = b.String()
}

// naiveMedians is the naive side's median stall and first write elsewhere
// over the runs of f, as a note, or "" when the naive side did not run.
func naiveMedians(f *failoverDoc) string {
	first, stall, n := f.spread("naive")
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (naive, median: stall %s, first write %s)", fmtDur(stall[1]), fmtDur(first[1]))
}

// plural is n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// secondPct is the acknowledgements in the second second after the fault,
// [1 s, 2 s), as a share of the pre-fault rate.
func secondPct(s *results.Side) string {
	if s == nil {
		return "not run"
	}
	if len(s.PerSecond) < 2 || s.PreRate == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f %%", 100*float64(s.PerSecond[1])/s.PreRate)
}

// perSecond is the acknowledgements in the first, second and slowest second
// after the fault.
func perSecond(s results.Side) string {
	if len(s.PerSecond) < 2 {
		return "—"
	}
	return fmt.Sprintf("%d / %d / %d", s.PerSecond[0], s.PerSecond[1], slices.Min(s.PerSecond))
}

func ratioText(bench map[string]*benchResult, op, callers string) string {
	bare, routed := bench["PointQuery/"+op+"/callers="+callers+"/bare"], bench["PointQuery/"+op+"/callers="+callers+"/routed"]
	if bare == nil || routed == nil {
		return "—"
	}
	return fmt.Sprintf("%.3f×", pairedRatio(bare, routed))
}

// headline is the README's short version.
func (d *docData) headline() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Last run %s on %s cores (%s), load average %s at the start; every figure with its\ncommand, and the charts: [docs/performance.md](docs/performance.md).\n\n",
		d.Generated, d.Machine.Cores, d.Machine.CPU, strings.SplitN(d.Machine.LoadAvg, " ", 2)[0])
	if len(d.Failovers) > 0 {
		b.WriteString("| the writer of a 3-node ring, under 200 writes/s, is ... | dbrouter, default settings: next node's first write · slowest call · writes/s after · acknowledged writes lost | naive loop (each master in turn, 1 s timeouts): the same · ids written twice |\n|---|---|---|\n")
		cell := func(s *results.Side, dbrouter bool) string {
			if s == nil {
				return "—"
			}
			t := fmt.Sprintf("**%s** · %s · %.0f/s · %d lost", fmtDur(s.FirstSuccessElsewhere), fmtDur(s.PostMax), s.PostRate, s.Lost)
			if !dbrouter {
				t += fmt.Sprintf(" · %d twice", s.Doubled)
			}
			return t
		}
		for _, fault := range []string{"kill", "freeze", "cut", "readonly", "switchover"} {
			f := d.failover(fault)
			if f == nil {
				continue
			}
			what := map[string]string{"kill": "killed (SIGKILL)", "freeze": "frozen (SIGSTOP)",
				"cut": "network path cut", "readonly": "made read-only",
				"switchover": "switched over (naive: by hand)"}[fault]
			fmt.Fprintf(&b, "| %s | %s | %s |\n", what, cell(f.Side("dbrouter"), true), cell(f.Side("naive"), false))
		}
		b.WriteString("\n")
	}
	if bare, routed := d.bench["PointQuery/select/callers=8/bare"], d.bench["PointQuery/select/callers=8/routed"]; bare != nil && routed != nil {
		fmt.Fprintf(&b, "- **Overhead**: a routed point SELECT runs at %.3f× the throughput of the same query on a bare `*sql.DB` to the same server (8 callers; INSERT: %s).\n",
			pairedRatio(bare, routed), ratioText(d.bench, "insert", "8"))
	}
	maxNs, maxAllocs, lookups := d.slowestLookup()
	if lookups > 0 {
		fmt.Fprintf(&b, "- **Shard lookups**: at most %.0f ns/op and %.0f allocations per lookup, every built-in strategy.\n", maxNs, maxAllocs)
	}
	if s := d.Scale; s.Clusters > 0 {
		fmt.Fprintf(&b, "- **Scale**: %d clusters × %d nodes: `Open` in %s; %d goroutines before any use, %d once every cluster is in use.\n",
			s.Clusters, s.Nodes, fmtDur(s.OpenMed), s.AfterOpen.Goroutines, s.Probing.Goroutines)
	}
	return b.String()
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// pct is cpu as a percentage of one core over wall.
func pct(cpu, wall results.Dur) string {
	if wall <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f %%", 100*cpu.D().Seconds()/wall.D().Seconds())
}

var funcs = template.FuncMap{
	"dur": fmtDur,
	"mul": func(a, b int) int { return a * b },
	"mib": mib,
	"pct": pct,
	"title": func(fault string) string {
		return map[string]string{
			"kill":       "Kill: SIGKILL of the writer",
			"freeze":     "Freeze: SIGSTOP of the writer",
			"cut":        "Cut: the path to the writer blackholed",
			"readonly":   "Read-only: `SET GLOBAL read_only = 1` on the writer",
			"switchover": "Switchover: `Cluster.Switchover` to B (naive: A made read-only by hand)",
		}[fault]
	},
	"rate": func(r float64) string {
		if r <= 0 {
			return "as fast as they can"
		}
		return fmt.Sprintf("%g writes/s in all", r)
	},
}

// slowestLookup returns the largest median ns/op and allocs/op over the
// shard Lookup benchmarks, and how many there were.
func (d *docData) slowestLookup() (maxNs, maxAllocs float64, lookups int) {
	for name, r := range d.bench {
		if isLookup(name) {
			lookups++
			maxNs, maxAllocs = math.Max(maxNs, r.Med()), math.Max(maxAllocs, r.MedAllocs())
		}
	}
	return maxNs, maxAllocs, lookups
}
