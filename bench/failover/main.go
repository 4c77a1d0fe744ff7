// Command failover measures what callers see when the writer of a MariaDB
// ring fails, with dbrouter and with the naive approach it replaces.
//
// It starts a ring of -nodes MariaDB servers on loopback (ringtest), then,
// for each side in turn, runs a constant write load (-callers goroutines at
// -rate writes per second in all), injects one fault on the writer (node A)
// after -before, keeps the load on for -after, stops it, undoes the fault
// (restart, thaw, heal, read_only off), waits for the ring to converge and
// checks every node for lost and doubled writes. The sides:
//
//   - dbrouter: a dbrouter.Router with default settings (health probes
//     every 250 ms, 200 ms probe timeout, 1 s connect timeout).
//   - naive: what a PHP developer writes: for each call, try the masters in
//     order, each with a fresh connection (connect timeout
//     -naive-connect-timeout, read/write timeout -naive-io-timeout), run the
//     INSERT, and on any error try the next; no background probes.
//
// Every call is an INSERT of a unique, client-generated id into a table of
// its own per side, so that each acknowledged id can be looked up on every
// node afterwards. Outputs: a CSV of every call, a JSON summary, and a PNG
// chart of latency and throughput over time with the fault marked.
//
//	go run ./bench/failover -fault kill
//	go run ./bench/failover -fault freeze -callers 8 -rate 400 -chart /tmp/freeze.png
//
// Faults: kill (SIGKILL), freeze (SIGSTOP), cut (the path from callers to
// the node blackholed by a proxy while it keeps replicating; the ring then
// runs behind ringtest's proxy for both sides) and readonly (SET GLOBAL
// read_only=1). All traffic stays on 127.0.0.1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dbrouter/dbrouter/bench/internal/results"
	"github.com/dbrouter/dbrouter/ringtest"
)

// options are the command-line settings.
type options struct {
	fault         string
	nodes         int
	callers       int
	rate          float64
	before, after time.Duration
	callTimeout   time.Duration
	naiveConnect  time.Duration
	naiveIO       time.Duration
	sides         []string
	outDir        string
	chart         string
	converge      time.Duration
	quiet         bool
	commandLine   string
	runs          int
	phase         time.Duration
}

func main() {
	var o options
	var sides string
	flag.StringVar(&o.fault, "fault", "kill", "fault to inject on the writer: kill, freeze, cut, readonly or switchover (dbrouter: Cluster.Switchover to B with the read-only hook; naive: A made read-only by hand)")
	flag.IntVar(&o.nodes, "nodes", 3, "servers in the ring")
	flag.IntVar(&o.callers, "callers", 4, "concurrent callers")
	flag.Float64Var(&o.rate, "rate", 200, "target writes per second, all callers together (0: as fast as they can)")
	flag.DurationVar(&o.before, "before", 3*time.Second, "load before the fault")
	flag.DurationVar(&o.after, "after", 10*time.Second, "load after the fault (the summary window)")
	flag.DurationVar(&o.callTimeout, "call-timeout", 5*time.Second, "deadline of each call (both sides)")
	flag.DurationVar(&o.naiveConnect, "naive-connect-timeout", time.Second, "naive side: connect timeout per master (dial and handshake)")
	flag.DurationVar(&o.naiveIO, "naive-io-timeout", time.Second, "naive side: read and write timeout per master (0: none)")
	flag.StringVar(&sides, "sides", "dbrouter,naive", "sides to run, in order")
	flag.StringVar(&o.outDir, "out", "bench/out", "directory for the CSV and JSON results")
	flag.StringVar(&o.chart, "chart", "", "chart path (.png or .svg); default OUT/failover-FAULT.png")
	flag.DurationVar(&o.converge, "converge-timeout", 90*time.Second, "how long to wait for the ring to converge after undoing the fault")
	flag.BoolVar(&o.quiet, "q", false, "print only the summary")
	flag.IntVar(&o.runs, "runs", 1, "inject the fault this many times per side on the same ring, each after -before plus a random part of -phase, and report min/median/max")
	flag.DurationVar(&o.phase, "phase", 250*time.Millisecond, "with -runs > 1: spread of the random delay added to -before (one probe interval: the fault lands at a random phase of the probe cycle)")
	flag.Parse()
	o.sides = strings.Split(sides, ",")
	o.commandLine = commandLine()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/failover:", err)
		os.Exit(1)
	}
}

// commandLine reconstructs how the program was invoked, for the record.
func commandLine() string {
	args := []string{"go run ./bench/failover"}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"") {
			a = "'" + a + "'"
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

func run(ctx context.Context, o options) error {
	switch o.fault {
	case "kill", "freeze", "cut", "readonly", "switchover":
	default:
		return fmt.Errorf("-fault %q: want kill, freeze, cut, readonly or switchover", o.fault)
	}
	for _, s := range o.sides {
		if s != "dbrouter" && s != "naive" {
			return fmt.Errorf("-sides: unknown side %q", s)
		}
	}
	if o.runs < 1 || o.phase < 0 {
		return errors.New("-runs must be at least 1 and -phase not negative")
	}
	if o.callers < 1 || o.nodes < 2 {
		return errors.New("need at least 1 caller and 2 nodes")
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return err
	}
	if o.chart == "" {
		o.chart = filepath.Join(o.outDir, "failover-"+o.fault+".png")
	}
	logf := func(format string, args ...any) {
		if !o.quiet {
			fmt.Printf(format+"\n", args...)
		}
	}

	logf("starting a ring of %d MariaDB servers on loopback ...", o.nodes)
	h, err := ringtest.Start(ctx, ringtest.Options{Nodes: o.nodes, Proxy: o.fault == "cut"})
	if err != nil {
		return err
	}
	defer h.Close()
	ring := h.Ring(0)
	for i, a := range ring.Addrs() {
		logf("  %s = %s", nodeName(i), a)
	}
	res := results.Failover{
		Fault: o.fault, Command: o.commandLine, Nodes: o.nodes, Callers: o.callers, Rate: o.rate,
		Before: results.Dur(o.before), After: results.Dur(o.after), Sequential: true,
		Started: time.Now().UTC().Format(time.RFC3339),
	}
	var all []sideRun
	for k := range o.runs {
		ro := o
		if o.runs > 1 {
			ro.before += time.Duration(rand.Int64N(int64(o.phase) + 1))
			logf("\nrun %d of %d: fault after %v", k+1, o.runs, ro.before.Round(time.Millisecond))
		}
		for _, side := range o.sides {
			sr, err := runSide(ctx, ro, ring, side, k, logf)
			if err != nil {
				return fmt.Errorf("%s: %w", side, err)
			}
			if k == 0 {
				all = append(all, sr)
				res.Sides = append(res.Sides, sr.summary)
			}
			if o.runs > 1 {
				s := sr.summary
				res.Runs = append(res.Runs, results.Run{Side: side, Before: results.Dur(ro.before),
					FirstSuccessElsewhere: s.FirstSuccessElsewhere, Stall: s.Stall,
					Unknown: s.Unknown, Lost: s.Lost, Doubled: s.Doubled})
				logf("[%s] run %d: first write elsewhere %v, stall %v, %d outcome unknown, %d lost, %d doubled",
					side, k+1, s.FirstSuccessElsewhere.D(), s.Stall.D(), s.Unknown, s.Lost, s.Doubled)
			}
		}
	}
	if o.runs > 1 {
		res.Phase = results.Dur(o.phase)
	}

	res.CSV = filepath.Join(o.outDir, "failover-"+o.fault+".csv")
	if err := writeCSV(res.CSV, all); err != nil {
		return err
	}
	res.Chart = o.chart
	if err := os.MkdirAll(filepath.Dir(o.chart), 0o755); err != nil {
		return err
	}
	if err := drawChart(o.chart, o, all); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	jsonPath := filepath.Join(o.outDir, "failover-"+o.fault+".json")
	if err := results.Write(jsonPath, res); err != nil {
		return err
	}
	printSummary(os.Stdout, res)
	printRuns(os.Stdout, res)
	fmt.Printf("\ncalls: %s\nsummary: %s\nchart: %s\n", res.CSV, jsonPath, res.Chart)
	for _, r := range res.Runs {
		if r.Side == "dbrouter" && (r.Lost > 0 || r.Doubled > 0) {
			return fmt.Errorf("dbrouter lost %d and doubled %d acknowledged writes in a run", r.Lost, r.Doubled)
		}
	}
	for _, s := range res.Sides {
		if s.Name == "dbrouter" && (s.Lost > 0 || s.Doubled > 0 || s.VerifyError != "") {
			return fmt.Errorf("dbrouter lost %d and doubled %d acknowledged writes %s", s.Lost, s.Doubled, s.VerifyError)
		}
	}
	return nil
}

// nodeName names node i A, B, C, ...
func nodeName(i int) string { return string(rune('A' + i)) }

// runSide runs the load for one side, injects the fault, undoes it and
// checks the rows.
func runSide(ctx context.Context, o options, ring *ringtest.Ring, side string, run int, logf func(string, ...any)) (sideRun, error) {
	table := "t_" + side
	if run > 0 {
		table += fmt.Sprint("_", run+1)
	}
	if _, err := ring.AdminDB(0).ExecContext(ctx, "CREATE TABLE ringtest."+table+
		" (pk BIGINT AUTO_INCREMENT PRIMARY KEY, id VARCHAR(32) NOT NULL, KEY (id))"); err != nil {
		return sideRun{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, o.converge)
	err := ring.WaitConverged(cctx)
	cancel()
	if err != nil {
		return sideRun{}, err
	}

	var w writer
	if side == "dbrouter" {
		w, err = newRouterWriter(ring, table)
	} else {
		w, err = newNaiveWriter(ring, table, o.naiveConnect, o.naiveIO)
	}
	if err != nil {
		return sideRun{}, err
	}
	logf("\n[%s] %s", side, w.describe())
	logf("[%s] %d callers at %s for %v, then %s of A, then %v more", side, o.callers, rateText(o.rate), o.before, o.fault, o.after)

	l := newLoad(o, w, ring, side)
	fault := func() error { return inject(ring, o.fault) }
	if rw, ok := w.(*routerWriter); ok && o.fault == "switchover" {
		fault = func() error { return rw.switchover(ctx, ring) }
	}
	faultAt, writerAtFault, err := l.run(ctx, fault)
	w.close()
	if err != nil {
		return sideRun{}, err
	}
	logf("[%s] %d calls; undoing the %s and waiting for the ring to converge ...", side, len(l.calls), o.fault)
	if err := undo(ring, o.fault); err != nil {
		return sideRun{}, err
	}
	cctx, cancel = context.WithTimeout(ctx, o.converge)
	defer cancel()
	var v verdict
	if err := ring.WaitConverged(cctx); err != nil {
		v.err = err
	} else {
		v = verify(cctx, ring, table, l.calls)
	}
	sr := sideRun{name: side, calls: l.calls, faultAt: faultAt}
	sr.summary = summarize(o, side, w.describe(), ring.Addr(0), writerAtFault, l.calls, faultAt, v)
	return sr, nil
}

func rateText(rate float64) string {
	if rate <= 0 {
		return "full speed"
	}
	return fmt.Sprintf("%g writes/s", rate)
}

// inject applies the fault to node 0.
func inject(ring *ringtest.Ring, fault string) error {
	switch fault {
	case "kill":
		return ring.Kill(0)
	case "freeze":
		return ring.Freeze(0)
	case "cut":
		return ring.Cut(0)
	case "readonly", "switchover": // a switchover by hand
		return ring.SetReadOnly(0, true)
	}
	return fmt.Errorf("unknown fault %q", fault)
}

// undo reverses the fault on node 0.
func undo(ring *ringtest.Ring, fault string) error {
	switch fault {
	case "kill":
		return ring.Restart(0)
	case "freeze":
		return ring.Thaw(0)
	case "cut":
		return ring.Heal(0)
	case "readonly", "switchover":
		return ring.SetReadOnly(0, false)
	}
	return fmt.Errorf("unknown fault %q", fault)
}
