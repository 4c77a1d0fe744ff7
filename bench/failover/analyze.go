package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dbrouter/dbrouter/bench/internal/results"
	"github.com/dbrouter/dbrouter/ringtest"
)

// sideRun is everything one side produced.
type sideRun struct {
	name    string
	calls   []call
	faultAt time.Duration
	summary results.Side
}

// verdict is what the converged ring holds of one side's writes.
type verdict struct {
	err                   error
	lost, doubled         int
	unknown, unknownAppl  int
	failed, failedApplied int
	rows                  []int
}

// verify looks up every id on every node of the converged ring.
func verify(ctx context.Context, ring *ringtest.Ring, table string, calls []call) verdict {
	var v verdict
	counts := make([]map[string]int, ring.Len())
	for i := range ring.Len() {
		rows, err := ring.AdminDB(i).QueryContext(ctx, "SELECT id, COUNT(*) FROM ringtest."+table+" GROUP BY id")
		if err != nil {
			v.err = fmt.Errorf("node %s: %w", nodeName(i), err)
			return v
		}
		m := map[string]int{}
		total := 0
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				v.err = err
				return v
			}
			m[id] = n
			total += n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			v.err = err
			return v
		}
		counts[i] = m
		v.rows = append(v.rows, total)
	}
	for _, c := range calls {
		minN, maxN := math.MaxInt, 0
		for _, m := range counts {
			minN, maxN = min(minN, m[c.id]), max(maxN, m[c.id])
		}
		if maxN > 1 {
			v.doubled++
		}
		switch {
		case acked(c.class):
			if minN == 0 {
				v.lost++
			}
		case c.class == classUnknown:
			v.unknown++
			if maxN > 0 {
				v.unknownAppl++
			}
		default:
			v.failed++
			if maxN > 0 {
				v.failedApplied++
			}
		}
	}
	return v
}

// summarize computes the figures of one side.
func summarize(o options, side, desc, faultNode, writerAtFault string, calls []call, faultAt time.Duration, v verdict) results.Side {
	s := results.Side{
		Name: side, Description: desc, Calls: len(calls), FaultNode: faultNode, WriterAtFault: writerAtFault,
		FirstSuccessElsewhere: -1,
		Outcomes:              map[string]int{}, PostOutcomes: map[string]int{},
		Lost: v.lost, Doubled: v.doubled, Unknown: v.unknown, UnknownApplied: v.unknownAppl,
		Failed: v.failed, FailedApplied: v.failedApplied, RowsPerNode: v.rows,
	}
	if v.err != nil {
		s.VerifyError = v.err.Error()
	}
	windowEnd := faultAt + o.after
	preStart := faultAt - min(2*time.Second, o.before)
	var pre, post []time.Duration
	var ackEnds []time.Duration
	for _, c := range calls {
		s.Outcomes[c.class]++
		if c.start >= preStart && c.start < faultAt {
			pre = append(pre, c.latency)
		}
		if c.start >= faultAt && c.start < windowEnd {
			post = append(post, c.latency)
			s.PostOutcomes[c.class]++
		}
		if acked(c.class) {
			ackEnds = append(ackEnds, c.end())
			if c.end() >= faultAt && c.node != "A" {
				if d := c.end() - faultAt; s.FirstSuccessElsewhere < 0 || d < s.FirstSuccessElsewhere.D() {
					s.FirstSuccessElsewhere = results.Dur(d)
				}
			}
		}
	}
	slices.Sort(ackEnds)
	s.PreP50, s.PreP99 = results.Dur(quantile(pre, 0.5)), results.Dur(quantile(pre, 0.99))
	s.PostP50, s.PostP99 = results.Dur(quantile(post, 0.5)), results.Dur(quantile(post, 0.99))
	s.PostMax = results.Dur(quantile(post, 1))

	// Stall: the longest gap between acknowledgements, from the last one
	// before the fault to the end of the window.
	prev := faultAt
	var preGap, lastPre time.Duration = 0, -1
	for _, e := range ackEnds {
		if e < faultAt {
			prev = e
		}
		if e >= preStart && e < faultAt {
			if lastPre >= 0 {
				preGap = max(preGap, e-lastPre)
			}
			lastPre = e
		}
	}
	s.PreMaxGap = results.Dur(preGap)
	var stall time.Duration
	for _, e := range ackEnds {
		if e < faultAt {
			continue
		}
		if e > windowEnd {
			break
		}
		stall = max(stall, e-prev)
		prev = e
	}
	stall = max(stall, windowEnd-prev)
	s.Stall = results.Dur(stall)

	// Throughput: before the fault, over the window, and per second of it.
	preAcks, postAcks := 0, 0
	s.PerSecond = make([]int, int(o.after/time.Second))
	for _, e := range ackEnds {
		if e >= preStart && e < faultAt {
			preAcks++
		}
		if e >= faultAt && e < windowEnd {
			postAcks++
			if k := int((e - faultAt) / time.Second); k < len(s.PerSecond) {
				s.PerSecond[k]++
			}
		}
	}
	if faultAt > preStart {
		s.PreRate = float64(preAcks) / (faultAt - preStart).Seconds()
	}
	s.PostRate = float64(postAcks) / o.after.Seconds()
	for i := len(calls) - 1; i >= 0; i-- {
		if acked(calls[i].class) {
			s.ServedAfterWindow = calls[i].node
			break
		}
	}
	return s
}

// quantile returns the q-quantile (nearest rank) of d; 0 for none.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	k := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

// writeCSV writes every call of every side, times relative to the side's
// fault.
func writeCSV(path string, runs []sideRun) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"side", "caller", "id", "start_s", "latency_ms", "class", "node", "failed_attempts", "maybe_sent", "error"})
	for _, r := range runs {
		for _, c := range r.calls {
			w.Write([]string{
				r.name, strconv.Itoa(c.caller), c.id,
				strconv.FormatFloat((c.start - r.faultAt).Seconds(), 'f', 6, 64),
				strconv.FormatFloat(float64(c.latency)/1e6, 'f', 3, 64),
				c.class, c.node, strconv.Itoa(c.attempts), strconv.FormatBool(c.sent),
				strings.ReplaceAll(c.err, "\n", " | "),
			})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// printSummary prints the sides next to each other.
func printSummary(out io.Writer, res results.Failover) {
	fmt.Fprintf(out, "\n%s of the writer (A) after %v; %d callers at %s; window %v after the fault\n\n",
		res.Fault, res.Before.D(), res.Callers, rateText(res.Rate), res.After.D())
	row := func(label string, f func(s results.Side) string) {
		fmt.Fprintf(out, "  %-44s", label)
		for _, s := range res.Sides {
			fmt.Fprintf(out, "  %22s", f(s))
		}
		fmt.Fprintln(out)
	}
	row("", func(s results.Side) string { return s.Name })
	row("calls", func(s results.Side) string { return strconv.Itoa(s.Calls) })
	row("writer at the fault", func(s results.Side) string { return s.WriterAtFault })
	row("fault → first write acknowledged elsewhere", func(s results.Side) string { return fmtDur(s.FirstSuccessElsewhere) })
	row("stall (longest gap between acks)", func(s results.Side) string { return fmtDur(s.Stall) })
	row("longest gap between acks before the fault", func(s results.Side) string { return fmtDur(s.PreMaxGap) })
	row("latency p50 / p99 before", func(s results.Side) string { return fmtDur(s.PreP50) + " / " + fmtDur(s.PreP99) })
	row("latency p50 / p99 / max, window", func(s results.Side) string {
		return fmtDur(s.PostP50) + " / " + fmtDur(s.PostP99) + " / " + fmtDur(s.PostMax)
	})
	row("acks/s before → window", func(s results.Side) string { return fmt.Sprintf("%.0f → %.0f", s.PreRate, s.PostRate) })
	row("acks in the 1st / 2nd / slowest second after", func(s results.Side) string { return perSecondText(s) })
	for _, c := range classes {
		row("window calls: "+c, func(s results.Side) string { return strconv.Itoa(s.PostOutcomes[c]) })
	}
	row("acknowledged writes lost (must be 0)", func(s results.Side) string { return strconv.Itoa(s.Lost) })
	row("ids written twice", func(s results.Side) string { return strconv.Itoa(s.Doubled) })
	row("outcome-unknown writes applied", func(s results.Side) string {
		return fmt.Sprintf("%d of %d", s.UnknownApplied, s.Unknown)
	})
	row("failed writes applied anyway", func(s results.Side) string {
		return fmt.Sprintf("%d of %d", s.FailedApplied, s.Failed)
	})
	for _, s := range res.Sides {
		if s.VerifyError != "" {
			fmt.Fprintf(out, "  %s: verification failed: %s\n", s.Name, s.VerifyError)
		}
	}
}

// perSecondText is the acknowledgements in the first, second and slowest
// second of the window.
func perSecondText(s results.Side) string {
	if len(s.PerSecond) < 2 {
		return "—"
	}
	return fmt.Sprintf("%d / %d / %d", s.PerSecond[0], s.PerSecond[1], slices.Min(s.PerSecond))
}

// fmtDur formats a duration for tables: -1 is "never".
func fmtDur(d results.Dur) string {
	switch v := d.D(); {
	case v < 0:
		return "never"
	case v < time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(v)/1e6)
	case v < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(v)/1e6)
	case v < 10*time.Second:
		return fmt.Sprintf("%.0fms", float64(v)/1e6)
	default:
		return v.Round(100 * time.Millisecond).String()
	}
}

// printRuns prints, for -runs > 1, each side's distribution over the runs:
// min, median and max of the time to the first write acknowledged elsewhere
// and of the stall.
func printRuns(w io.Writer, res results.Failover) {
	if len(res.Runs) == 0 {
		return
	}
	byName := map[string][]results.Run{}
	var names []string
	for _, r := range res.Runs {
		if _, ok := byName[r.Side]; !ok {
			names = append(names, r.Side)
		}
		byName[r.Side] = append(byName[r.Side], r)
	}
	fmt.Fprintf(w, "\n%s over %d runs at random phases (fault after -before + [0, %v)):\n", res.Fault, len(byName[names[0]]), res.Phase.D())
	fmt.Fprintln(w, "| side | runs | first write elsewhere min / median / max | stall min / median / max | outcome unknown | lost | doubled |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, name := range names {
		rs := byName[name]
		var first, stall []time.Duration
		unknown, lost, doubled := 0, 0, 0
		for _, r := range rs {
			first = append(first, r.FirstSuccessElsewhere.D())
			stall = append(stall, r.Stall.D())
			unknown += r.Unknown
			lost += r.Lost
			doubled += r.Doubled
		}
		mmm := func(d []time.Duration) string {
			return fmt.Sprintf("%s / %s / %s", fmtDur(results.Dur(quantile(d, 0))), fmtDur(results.Dur(quantile(d, 0.5))), fmtDur(results.Dur(quantile(d, 1))))
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %d | %d | %d |\n", name, len(rs), mmm(first), mmm(stall), unknown, lost, doubled)
	}
	fmt.Fprintln(w, "\nper run (before, first write elsewhere, stall):")
	for _, r := range res.Runs {
		fmt.Fprintf(w, "  %s %v %s %s\n", r.Side, r.Before.D().Round(time.Millisecond), fmtDur(r.FirstSuccessElsewhere), fmtDur(r.Stall))
	}
}
