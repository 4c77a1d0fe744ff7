// Command scale measures a router configured with many clusters: how long
// Open takes, what it costs in memory and goroutines, and what the health
// probers cost once every cluster is in use and every node is down.
//
// Every node is a 127.0.0.1 port that nothing listens on (a listener is
// bound to take a free port and closed again), so each probe is a refused
// connection. Nothing leaves the machine.
//
//	go run ./bench/scale
//	go run ./bench/scale -clusters 1000 -nodes 3 -probe-for 10s -json bench/out/scale.json
//	go run ./bench/scale -parse-open-only -parse-open 1000,10000,20000 -parse-open-cpuprofile /tmp/po.prof
//
// The router starts a cluster's probers on its first use, so the program
// reports the process right after Open (nothing started), then touches every
// cluster (WriterAddr starts its probers) and reports it again after the
// probers have run for -probe-for.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/bench/internal/results"
	"github.com/dbrouter/dbrouter/ringtest"
)

func main() {
	var (
		clusters = flag.Int("clusters", 1000, "clusters to configure")
		nodes    = flag.Int("nodes", 3, "nodes per cluster")
		opens    = flag.Int("opens", 5, "times to Open (and Close) the router to time Open")
		probeFor = flag.Duration("probe-for", 10*time.Second, "how long to let the probers run")
		jsonPath = flag.String("json", "", "write the results as JSON to this file")
		cpuProf  = flag.String("cpuprofile", "", "with -up: write a CPU profile of the probing with every node up to this file")
		up       = flag.Int("up", 0, "also measure probing with every node up: this many clusters, each of the same 3 live MariaDB servers (ringtest), in use for -probe-for (0: skip)")
		sizes    = flag.String("parse-open", "1000,10000,20000", "cluster counts at which to time ParseConfig + Open of a YAML file (\"\": skip)")
		poOnly   = flag.Bool("parse-open-only", false, "time only ParseConfig + Open (-parse-open), not Open and probing (-clusters, -up); no -json")
		poProf   = flag.String("parse-open-cpuprofile", "", "write a CPU profile of the -parse-open runs to this file")
	)
	flag.Parse()
	if *poOnly && *jsonPath != "" {
		fmt.Fprintln(os.Stderr, "bench/scale: -parse-open-only writes no -json: the results would be partial")
		os.Exit(2)
	}
	args := []string{"go run ./bench/scale"}
	args = append(args, os.Args[1:]...)
	var res results.Scale
	if !*poOnly {
		var err error
		if res, err = run(*clusters, *nodes, *opens, *probeFor); err != nil {
			fmt.Fprintln(os.Stderr, "bench/scale:", err)
			os.Exit(1)
		}
	}
	res.Command = strings.Join(args, " ")
	if *up > 0 && !*poOnly {
		pu, err := probeUp(*up, *probeFor, *cpuProf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/scale:", err)
			os.Exit(1)
		}
		res.Up = &pu
	}
	if *poProf != "" {
		f, err := os.Create(*poProf)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/scale:", err)
			os.Exit(1)
		}
	}
	for _, f := range strings.Split(*sizes, ",") {
		if f == "" {
			continue
		}
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench/scale: -parse-open: bad cluster count %q\n", f)
			os.Exit(2)
		}
		po, err := parseOpen(n, *nodes, 5)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/scale:", err)
			os.Exit(1)
		}
		res.ParseOpen = append(res.ParseOpen, po)
	}
	if *poProf != "" {
		pprof.StopCPUProfile()
	}
	if *poOnly {
		printParseOpen(res)
	} else {
		print(res)
	}
	if *jsonPath != "" {
		if err := os.MkdirAll(filepath.Dir(*jsonPath), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bench/scale:", err)
			os.Exit(1)
		}
		if err := results.Write(*jsonPath, res); err != nil {
			fmt.Fprintln(os.Stderr, "bench/scale:", err)
			os.Exit(1)
		}
	}
}

func run(clusters, nodes, opens int, probeFor time.Duration) (results.Scale, error) {
	res := results.Scale{Clusters: clusters, Nodes: nodes, ProbeFor: results.Dur(probeFor)}
	ports, err := deadPorts(clusters * nodes)
	if err != nil {
		return res, err
	}
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: "secret", Database: "shop"},
		Clusters: make(map[string]dbrouter.ClusterConfig, clusters),
		Logger:   slog.New(slog.DiscardHandler),
	}
	for c := range clusters {
		addrs := make([]string, nodes)
		for n := range addrs {
			addrs[n] = fmt.Sprintf("127.0.0.1:%d", ports[c*nodes+n])
		}
		cfg.Clusters[fmt.Sprintf("c%04d", c)] = dbrouter.ClusterConfig{Nodes: addrs}
	}
	res.Baseline = sample("before Open")

	// Time Open several times; keep the last router.
	var r *dbrouter.Router
	for i := range max(1, opens) {
		t0 := time.Now()
		rr, err := dbrouter.Open(cfg)
		d := time.Since(t0)
		if err != nil {
			return res, err
		}
		res.OpenRuns = append(res.OpenRuns, results.Dur(d))
		if i < max(1, opens)-1 {
			rr.Close()
		} else {
			r = rr
		}
	}
	sorted := slices.Clone(res.OpenRuns)
	slices.Sort(sorted)
	res.OpenMin, res.OpenMed = sorted[0], sorted[len(sorted)/2]
	res.AfterOpen = sample("after Open, no cluster used")

	// Use every cluster once: WriterAddr starts its probers.
	for _, name := range r.Clusters() {
		c, err := r.Cluster(name)
		if err != nil {
			return res, err
		}
		c.WriterAddr()
	}
	cpu0 := cpuTime()
	time.Sleep(probeFor)
	res.CPUWhileProbing = results.Dur(cpuTime() - cpu0)
	res.Probing = sample(fmt.Sprintf("every cluster used, probers running for %v", probeFor))
	for _, cs := range r.Stats() {
		for _, n := range cs.Nodes {
			if n.State == dbrouter.StateDown {
				res.NodesDown++
			}
		}
	}
	t0 := time.Now()
	if err := r.Close(); err != nil {
		return res, err
	}
	res.Close = results.Dur(time.Since(t0))
	res.AfterClose = sample("after Close")
	return res, nil
}

// deadPorts returns n distinct loopback ports that nothing listens on: each
// was bound and released, so a connect is refused.
func deadPorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l) // held until all are taken, so they are distinct
		p := l.Addr().(*net.TCPAddr).Port
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
		if len(lns) >= 500 { // stay well below the open-files limit
			for _, l := range lns {
				l.Close()
			}
			lns = lns[:0]
		}
	}
	return ports, nil
}

// sample takes a snapshot of the process after a garbage collection.
func sample(note string) results.Sample {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	s := results.Sample{
		HeapAlloc: m.HeapAlloc, HeapInuse: m.HeapInuse, Sys: m.Sys,
		Goroutines: runtime.NumGoroutine(), Note: note,
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.OpenFDs = len(ents)
		for _, e := range ents {
			if t, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(t, "socket:") {
				s.TCPConns++
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			var v uint64
			if _, err := fmt.Sscanf(line, "Threads: %d", &v); err == nil {
				s.Threads = int(v)
			}
			if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &v); err == nil {
				s.RSS = v * 1024
			}
		}
	}
	return s
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func print(r results.Scale) {
	fmt.Printf("%d clusters × %d nodes (every node a refused loopback port)\n\n", r.Clusters, r.Nodes)
	fmt.Printf("Open: min %v, median %v over %d runs (%v)\n\n", r.OpenMin.D(), r.OpenMed.D(), len(r.OpenRuns), r.OpenRuns)
	fmt.Printf("%-52s %10s %10s %10s %8s %8s %8s\n", "", "heap", "heap in use", "RSS", "goroutines", "threads", "sockets")
	for _, s := range []results.Sample{r.Baseline, r.AfterOpen, r.Probing, r.AfterClose} {
		fmt.Printf("%-52s %10s %10s %10s %8d %8d %8d\n", s.Note, mib(s.HeapAlloc), mib(s.HeapInuse), mib(s.RSS), s.Goroutines, s.Threads, s.TCPConns)
	}
	fmt.Printf("\nnodes Down after %v of probing: %d of %d\n", r.ProbeFor.D(), r.NodesDown, r.Clusters*r.Nodes)
	fmt.Printf("CPU time used while probing: %v (%.0f%% of one core)\n", r.CPUWhileProbing.D().Round(time.Millisecond),
		100*r.CPUWhileProbing.D().Seconds()/r.ProbeFor.D().Seconds())
	fmt.Printf("Close with every prober running: %v\n", r.Close.D().Round(time.Millisecond))
	fmt.Printf("goroutines added by probing (every cluster used minus right after Open): %d\n", r.Probing.Goroutines-r.AfterOpen.Goroutines)
	if u := r.Up; u != nil {
		fmt.Printf("\nevery node up: %d clusters × 3 nodes on %d live servers, %v per phase\n", u.Clusters, u.Servers, u.For.D())
		for _, ph := range []struct {
			name string
			p    results.ProbePhase
		}{{"idle (probes every " + u.IdleInterval.D().String() + ")", u.Idle}, {"idle rate off (probes every " + u.Interval.D().String() + ")", u.Busy}} {
			fmt.Printf("  %-40s CPU %v (%.0f%% of one core), %d probes (%d failed), %d nodes Up at the end, CPU per probe %v\n",
				ph.name, ph.p.CPU.D().Round(time.Millisecond), ph.p.CorePct(u.For.D()), ph.p.Probes, ph.p.FailedProbes, ph.p.NodesUp,
				ph.p.PerProbe().D().Round(100*time.Nanosecond))
		}
		g := u.Goroutines
		fmt.Printf("  goroutines added: %d (probe scheduler %d, go-sql-driver context watchers %d, database/sql pool openers %d)\n",
			g.Added, g.Scheduler, g.DriverWatchers, g.PoolOpeners)
	}
	printParseOpen(r)
}

// printParseOpen prints the -parse-open results, if any.
func printParseOpen(r results.Scale) {
	if len(r.ParseOpen) > 0 {
		fmt.Printf("\n%10s %10s %12s %12s %12s %14s %12s %14s\n", "clusters", "YAML", "ParseConfig", "Open", "both", "per cluster", "CPU", "CPU/cluster")
		for _, p := range r.ParseOpen {
			both := p.Parse.D() + p.Open.D()
			fmt.Printf("%10d %10s %12v %12v %12v %14v %12v %14v\n", p.Clusters, mib(uint64(p.Bytes)), p.Parse.D().Round(100*time.Microsecond),
				p.Open.D().Round(100*time.Microsecond), both.Round(100*time.Microsecond), (both / time.Duration(p.Clusters)).Round(10*time.Nanosecond),
				p.CPU.D().Round(100*time.Microsecond), (p.CPU.D() / time.Duration(p.Clusters)).Round(10*time.Nanosecond))
		}
		fmt.Printf("(medians of %d runs)\n", r.ParseOpen[0].Runs)
	}
}

// parseOpen times ParseConfig and Open of a YAML configuration of n
// clusters of nodes nodes each (runs times; medians), closing each router.
func parseOpen(n, nodes, runs int) (results.ParseOpen, error) {
	var sb strings.Builder
	sb.WriteString("defaults: {user: app, password: secret, database: shop}\nclusters:\n")
	for i := range n {
		fmt.Fprintf(&sb, "  c%d: {nodes: [", i)
		for k := range nodes {
			if k > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "10.%d.%d.%d:3306", k, i/250%250, i%250+1)
		}
		sb.WriteString("]}\n")
	}
	data := []byte(sb.String())
	var parses, opens, cpus []time.Duration
	for range runs {
		runtime.GC()
		c0 := cpuTime()
		t0 := time.Now()
		cfg, err := dbrouter.ParseConfig(data)
		t1 := time.Now()
		if err != nil {
			return results.ParseOpen{}, err
		}
		cfg.Logger = slog.New(slog.DiscardHandler)
		r, err := dbrouter.Open(cfg)
		t2 := time.Now()
		cpus = append(cpus, cpuTime()-c0)
		if err != nil {
			return results.ParseOpen{}, err
		}
		r.Close()
		parses, opens = append(parses, t1.Sub(t0)), append(opens, t2.Sub(t1))
		runtime.GC()
	}
	slices.Sort(parses)
	slices.Sort(opens)
	slices.Sort(cpus)
	return results.ParseOpen{Clusters: n, Bytes: len(data), Runs: runs,
		Parse: results.Dur(parses[runs/2]), Open: results.Dur(opens[runs/2]), CPU: results.Dur(cpus[runs/2])}, nil
}

// probeCounter counts the probes that ran (the router's Observer).
type probeCounter struct {
	dbrouter.NopObserver
	n, failed atomic.Int64
}

func (p *probeCounter) ProbeDone(pi dbrouter.ProbeInfo) {
	p.n.Add(1)
	if pi.Err != nil {
		p.failed.Add(1)
	}
}

// probeUp starts a ring of 3 MariaDB servers on loopback and a router with
// n clusters, each of the same 3 servers, uses every cluster once and
// measures the process's CPU while the probes run for d, in two phases:
//   - idle: default settings, no call after that first use: the Up nodes
//     are probed every Health.IdleInterval;
//   - at the interval: a second router with the idle rate off
//     (IdleInterval = Interval), so every node is probed every
//     Health.Interval, as the nodes of a cluster in use are (without the
//     calls' own cost mixed in).
func probeUp(n int, d time.Duration, profile string) (results.ProbeUp, error) {
	ctx := context.Background()
	h, err := ringtest.Start(ctx, ringtest.Options{Nodes: 3})
	if err != nil {
		return results.ProbeUp{}, err
	}
	defer h.Close()
	ring := h.Ring(0)
	for i := range 3 {
		// A probe connection per node of each cluster, for two routers.
		if _, err := ring.AdminDB(i).ExecContext(ctx, fmt.Sprintf("SET GLOBAL max_connections = %d", 4*n+50)); err != nil {
			return results.ProbeUp{}, err
		}
	}
	res := results.ProbeUp{Clusters: n, Servers: 3, For: results.Dur(d),
		Interval: results.Dur(dbrouter.DefaultProbeInterval), IdleInterval: results.Dur(dbrouter.DefaultIdleInterval)}
	phase := func(idleRate bool, prof string) (results.ProbePhase, results.Goroutines, error) {
		counter := &probeCounter{}
		cfg := &dbrouter.Config{
			Defaults: dbrouter.Settings{User: ringtest.DefaultUser, Password: ringtest.DefaultPassword, Database: ringtest.DefaultDatabase},
			Clusters: make(map[string]dbrouter.ClusterConfig, n),
			Logger:   slog.New(slog.DiscardHandler),
			Observer: counter,
		}
		if !idleRate {
			cfg.Defaults.Health.IdleInterval = dbrouter.DefaultProbeInterval
		}
		for c := range n {
			cfg.Clusters[fmt.Sprintf("c%04d", c)] = dbrouter.ClusterConfig{Nodes: ring.Addrs()}
		}
		g0 := countGoroutines()
		r, err := dbrouter.Open(cfg)
		if err != nil {
			return results.ProbePhase{}, results.Goroutines{}, err
		}
		defer r.Close()
		for _, name := range r.Clusters() {
			c, err := r.Cluster(name)
			if err != nil {
				return results.ProbePhase{}, results.Goroutines{}, err
			}
			c.WriterAddr()
		}
		// Connections made; then, for the idle rate, twice the idle
		// interval with no call and one idle interval for every node to
		// be on it.
		time.Sleep(2*time.Second + 3*dbrouter.DefaultIdleInterval)
		if prof != "" {
			f, err := os.Create(prof)
			if err != nil {
				return results.ProbePhase{}, results.Goroutines{}, err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return results.ProbePhase{}, results.Goroutines{}, err
			}
		}
		p0, f0 := counter.n.Load(), counter.failed.Load()
		cpu0 := cpuTime()
		time.Sleep(d)
		ph := results.ProbePhase{CPU: results.Dur(cpuTime() - cpu0), Probes: int(counter.n.Load() - p0),
			FailedProbes: int(counter.failed.Load() - f0)}
		if prof != "" {
			pprof.StopCPUProfile()
		}
		for _, cs := range r.Stats() {
			for _, nd := range cs.Nodes {
				if nd.State == dbrouter.StateUp {
					ph.NodesUp++
				}
			}
		}
		g := countGoroutines()
		return ph, results.Goroutines{Added: g.Added - g0.Added, Scheduler: g.Scheduler - g0.Scheduler,
			DriverWatchers: g.DriverWatchers - g0.DriverWatchers, PoolOpeners: g.PoolOpeners - g0.PoolOpeners}, nil
	}
	if res.Idle, res.Goroutines, err = phase(true, profile); err != nil {
		return res, err
	}
	if res.Busy, _, err = phase(false, ""); err != nil {
		return res, err
	}
	return res, nil
}

// countGoroutines counts the process's goroutines (Added: all of them)
// and sorts them by what runs them.
func countGoroutines() results.Goroutines {
	buf := make([]byte, 64<<20)
	buf = buf[:runtime.Stack(buf, true)]
	g := results.Goroutines{Added: runtime.NumGoroutine()}
	for _, st := range strings.Split(string(buf), "\n\n") {
		switch {
		case strings.Contains(st, "dbrouter.(*probeScheduler)"):
			g.Scheduler++
		case strings.Contains(st, "mysql.(*mysqlConn).startWatcher"):
			g.DriverWatchers++
		case strings.Contains(st, "database/sql.(*DB).connectionOpener"):
			g.PoolOpeners++
		}
	}
	return g
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
