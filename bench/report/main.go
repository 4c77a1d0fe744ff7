// Command report runs every benchmark of the project and writes
// docs/performance.md from the results: the Go benchmarks of the root
// package (shard lookups, writer selection, routed versus bare queries on a
// real MariaDB server), bench/failover for each fault, and bench/scale. It
// also refreshes the headline numbers in README.md's Performance section
// (between the <!-- bench:begin --> and <!-- bench:end --> markers).
//
//	go run ./bench/report            # what `make bench` runs
//	go run ./bench/report -count 1 -faults kill -skip-scale   # a quick look
//
// Raw outputs go to bench/out (CSVs, JSON, the benchmark log); the charts
// that the document embeds go to docs/img.
package main

import (
	"bytes"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/dbrouter/dbrouter/bench/internal/results"
	"github.com/dbrouter/dbrouter/ringtest"
)

//go:embed performance.md.tmpl
var docTemplate string

type options struct {
	out, doc, img, readme string
	count                 int
	benchtime             string
	faults                []string
	skipGoBench           bool
	skipScale             bool
	skipFailover          bool
	goBin                 string
}

func main() {
	var o options
	var faults string
	flag.StringVar(&o.out, "out", "bench/out", "directory for raw results")
	flag.StringVar(&o.doc, "doc", "docs/performance.md", "document to write")
	flag.StringVar(&o.img, "img", "docs/img", "directory for the charts the document embeds")
	flag.StringVar(&o.readme, "readme", "README.md", "README whose bench markers get the headline numbers (\"\": leave it)")
	flag.IntVar(&o.count, "count", 5, "go test -count for the Go benchmarks")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "go test -benchtime")
	flag.StringVar(&faults, "faults", "kill,freeze,cut,readonly,switchover", "faults for bench/failover")
	flag.BoolVar(&o.skipGoBench, "skip-gobench", false, "reuse OUT/gobench.txt instead of running the Go benchmarks")
	flag.BoolVar(&o.skipScale, "skip-scale", false, "reuse OUT/scale.json instead of running bench/scale")
	flag.BoolVar(&o.skipFailover, "skip-failover", false, "reuse OUT/failover-FAULT.json (and the charts) instead of running bench/failover")
	flag.Parse()
	if faults != "" {
		o.faults = strings.Split(faults, ",")
	}
	o.goBin = goCommand()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/report:", err)
		os.Exit(1)
	}
}

// goCommand finds the go binary: on PATH, else the one that built us.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func run(o options) error {
	begin := time.Now()
	for _, d := range []string{o.out, o.img, filepath.Dir(o.doc)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	data := docData{Machine: machine(o.goBin), GoBenchCount: o.count, BenchTime: o.benchtime}
	if f := strings.Fields(data.Machine.LoadAvg); len(f) > 0 && atof(f[0]) >= 1.5 {
		data.LoadWarning = fmt.Sprintf("The load average was %s when this run started: other work shared the %s cores, so every figure below is noisier, and slower, than on an idle machine.",
			f[0], data.Machine.Cores)
		fmt.Println("note: " + data.LoadWarning)
	}

	// 1. Go benchmarks of the root package with -count, then PointQuery
	// (./integration: it starts a ring) once with its own interleaved rounds.
	benchLog := filepath.Join(o.out, "gobench.txt")
	data.Rounds = o.count
	goBench := []string{"test", "-run", "^$", "-bench", ".", "-skip", "^BenchmarkPointQuery$", "-benchmem",
		"-count", fmt.Sprint(o.count), "-benchtime", o.benchtime, "-timeout", "30m", "."}
	point := []string{"test", "-run", "^$", "-bench", "^BenchmarkPointQuery$", "-benchmem",
		"-count", "1", "-benchtime", o.benchtime, "-timeout", "30m", "./integration", "-args", fmt.Sprintf("-pointquery.rounds=%d", o.count)}
	data.GoBenchCmd, data.PointCmd = "go "+shellJoin(goBench), "go "+shellJoin(point)
	if !o.skipGoBench {
		var buf bytes.Buffer
		w := io.MultiWriter(os.Stdout, &buf)
		err := runCmd(data.GoBenchCmd, w, o.goBin, goBench...)
		if err == nil {
			err = runCmd(data.PointCmd, w, o.goBin, point...)
		}
		if werr := os.WriteFile(benchLog, buf.Bytes(), 0o644); werr != nil {
			return werr
		}
		if err != nil {
			return fmt.Errorf("go benchmarks: %w", err)
		}
	}
	logData, err := os.ReadFile(benchLog)
	if err != nil {
		return err
	}
	data.setGoBench(parseGoBench(bytes.NewReader(logData)), string(logData))

	// 2. Failover, each fault as often as failoverRuns says.
	for _, f := range o.faults {
		chart := filepath.Join(o.img, "failover-"+f+".png")
		args := append(failoverArgs(f), "-q", "-out", o.out, "-chart", chart)
		display := "go run ./bench/failover " + strings.Join(args, " ")
		if !o.skipFailover {
			if err := runCmd(display, os.Stdout, o.goBin, append([]string{"run", "./bench/failover"}, args...)...); err != nil {
				return fmt.Errorf("failover %s: %w", f, err)
			}
		}
		var fr results.Failover
		if err := results.Read(filepath.Join(o.out, "failover-"+f+".json"), &fr); err != nil {
			return err
		}
		fr.Command = display
		rel, err := filepath.Rel(filepath.Dir(o.doc), chart)
		if err != nil {
			rel = chart
		}
		data.Failovers = append(data.Failovers, failoverDoc{Failover: fr, ChartRel: filepath.ToSlash(rel)})
	}

	// 3. Scale.
	scaleJSON := filepath.Join(o.out, "scale.json")
	data.ScaleCmd = "go run ./bench/scale -up 1000 -json " + scaleJSON
	if !o.skipScale {
		if err := runCmd(data.ScaleCmd, os.Stdout, o.goBin, "run", "./bench/scale", "-up", "1000", "-json", scaleJSON); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	if err := results.Read(scaleJSON, &data.Scale); err != nil {
		return err
	}

	data.Elapsed = time.Since(begin).Round(time.Second)
	data.Generated = time.Now().UTC().Format("2006-01-02 15:04 UTC")
	data.summarize()

	var doc bytes.Buffer
	tmpl, err := template.New("doc").Funcs(funcs).Parse(docTemplate)
	if err != nil {
		return err
	}
	if err := tmpl.Execute(&doc, &data); err != nil {
		return err
	}
	if err := os.WriteFile(o.doc, doc.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s (%v)\n", o.doc, data.Elapsed)
	if o.readme != "" {
		if err := updateReadme(o.readme, data.headline()); err != nil {
			return err
		}
		fmt.Printf("updated the headline numbers in %s\n", o.readme)
	}
	return nil
}

// failoverRuns is how many times `make bench` injects a fault, each time at
// a random phase of the probe cycle (bench/failover -runs); a fault not
// listed is injected once. What a caller sees of a freeze or a cut depends
// on that phase (when the next probe or stall check notices): ten runs
// (design.md §10). A kill is refused at once whatever the phase, but one
// run is at the mercy of a single pause of the machine: its stall target is
// judged on the median of five.
var failoverRuns = map[string]int{"kill": 5, "freeze": 10, "cut": 10}

// failoverArgs returns bench/failover's -fault and -runs flags for fault.
func failoverArgs(fault string) []string {
	args := []string{"-fault", fault}
	if n := failoverRuns[fault]; n > 1 {
		args = append(args, "-runs", strconv.Itoa(n))
	}
	return args
}

// shellJoin quotes args for a POSIX shell where needed.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$^*?[]\\|&;<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// runCmd prints display, then runs the command with its output to w (and
// its standard error to ours).
func runCmd(display string, w io.Writer, name string, args ...string) error {
	fmt.Printf("\n$ %s\n", display)
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = w, os.Stderr
	return cmd.Run()
}

// Machine describes where the figures were taken.
type Machine struct {
	CPU, Cores, Memory, OS, Kernel, Go, MariaDB, Commit string
	// LoadAvg is /proc/loadavg's 1, 5 and 15 minute averages when the run
	// started: anything well above 0 means other work shared the cores.
	LoadAvg string
}

func machine(goBin string) Machine {
	m := Machine{Cores: fmt.Sprint(runtime.NumCPU()), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		for _, l := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
				m.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
				break
			}
		}
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(goBin, "version").Output(); err == nil {
		m.Go = strings.TrimSpace(strings.TrimPrefix(string(out), "go version "))
	}
	if p, err := ringtest.FindServer(); err == nil {
		if out, err := exec.Command(p, "--version").Output(); err == nil {
			m.MariaDB = strings.TrimSpace(string(out))
		}
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
			m.Commit += " with uncommitted changes"
		}
	}
	return m
}

func atof(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

const (
	readmeBegin = "<!-- bench:begin -->"
	readmeEnd   = "<!-- bench:end -->"
)

// updateReadme replaces the text between the bench markers.
func updateReadme(path, text string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, readmeBegin)
	j := strings.Index(s, readmeEnd)
	if i < 0 || j < i {
		return errors.New(path + ": no " + readmeBegin + " ... " + readmeEnd + " block to update")
	}
	s = s[:i+len(readmeBegin)] + "\n" + text + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
