// Package results holds the JSON shapes that the programs under bench/
// write and that bench/report reads to fill in docs/performance.md.
package results

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Failover is the result of one bench/failover run: one fault, injected on
// the writer of the same ring, once for each side.
type Failover struct {
	Fault   string `json:"fault"`   // kill, freeze, cut or readonly
	Command string `json:"command"` // the command line that produced it
	Nodes   int    `json:"nodes"`
	Callers int    `json:"callers"`
	// Rate is the target write rate of all callers together, per second; 0
	// means as fast as the callers can go.
	Rate   float64 `json:"rate"`
	Before Dur     `json:"before"` // load before the fault
	After  Dur     `json:"after"`  // load after the fault (the summary window)
	// Sequential is true: the sides ran one after the other on one ring,
	// with the fault undone and the ring converged in between.
	Sequential bool   `json:"sequential"`
	CSV        string `json:"csv"`   // path of the per-call CSV
	Chart      string `json:"chart"` // path of the chart
	Sides      []Side `json:"sides"`
	Started    string `json:"started"` // RFC 3339
	// Runs, when the fault was injected more than once (-runs), holds
	// each run's figures, side by side, in order; Sides, CSV and Chart are
	// then those of the first run.
	Runs []Run `json:"runs,omitempty"`
	// Phase is the spread of the random delay added to Before in each run,
	// so that the fault hits a random phase of the probe cycle.
	Phase Dur `json:"phase,omitempty"`
}

// Run is one injection of the fault, for one side, with -runs.
type Run struct {
	Side                  string `json:"side"`
	Before                Dur    `json:"before"` // load before the fault in this run
	FirstSuccessElsewhere Dur    `json:"first_success_elsewhere"`
	Stall                 Dur    `json:"stall"`
	Unknown               int    `json:"unknown"`
	Lost                  int    `json:"lost"`
	Doubled               int    `json:"doubled"`
}

// Side is what one way of calling the ring saw around the fault.
type Side struct {
	Name        string `json:"name"`        // "dbrouter" or "naive"
	Description string `json:"description"` // settings, in words
	Calls       int    `json:"calls"`
	// FaultNode is the address of the node the fault hit.
	FaultNode string `json:"fault_node"`
	// FirstSuccessElsewhere is the time from the fault to the first write
	// acknowledged by another node; -1 if none was.
	FirstSuccessElsewhere Dur `json:"first_success_elsewhere"`
	// Stall is the longest gap between two acknowledged writes from the
	// last one before the fault to the end of the window.
	Stall Dur `json:"stall"`
	// PreMaxGap is the same measure in the 2 s before the fault: the
	// load's own rhythm, for comparison.
	PreMaxGap Dur `json:"pre_max_gap"`
	// Latency of calls started before the fault (the last 2 s) and in the
	// window after it, all outcomes.
	PreP50  Dur `json:"pre_p50"`
	PreP99  Dur `json:"pre_p99"`
	PostP50 Dur `json:"post_p50"`
	PostP99 Dur `json:"post_p99"`
	PostMax Dur `json:"post_max"`
	// PreRate and PostRate are acknowledged writes per second in the last
	// 2 s before the fault and over the window after it.
	PreRate  float64 `json:"pre_rate"`
	PostRate float64 `json:"post_rate"`
	// PerSecond is acknowledged writes in each whole second of the window
	// after the fault (by acknowledgement time).
	PerSecond []int `json:"per_second"`
	// Outcomes counts calls by outcome class, for the whole run.
	Outcomes map[string]int `json:"outcomes"`
	// PostOutcomes counts calls started in the window after the fault.
	PostOutcomes map[string]int `json:"post_outcomes"`
	// Checked on every node after the fault was undone and the ring had
	// converged: acknowledged writes missing from some node, ids present
	// more than once on some node, and unacknowledged writes (outcome
	// unknown or failed) that were applied anyway.
	Lost              int    `json:"lost"`
	Doubled           int    `json:"doubled"`
	UnknownApplied    int    `json:"unknown_applied"`
	Unknown           int    `json:"unknown"`
	FailedApplied     int    `json:"failed_applied"`
	Failed            int    `json:"failed"`
	VerifyError       string `json:"verify_error,omitempty"`
	RowsPerNode       []int  `json:"rows_per_node"`
	WriterAtFault     string `json:"writer_at_fault"`
	ServedAfterWindow string `json:"served_after_window"` // node of the last acknowledged write
}

// Scale is the result of bench/scale.
type Scale struct {
	Command  string `json:"command"`
	Clusters int    `json:"clusters"`
	Nodes    int    `json:"nodes"` // per cluster
	// OpenRuns are the durations of each Open, the first one included.
	OpenRuns []Dur `json:"open_runs"`
	OpenMin  Dur   `json:"open_min"`
	OpenMed  Dur   `json:"open_median"`
	// Baseline is before Open; AfterOpen right after it; Probing after
	// every cluster was touched and its probers ran for ProbeFor.
	Baseline  Sample `json:"baseline"`
	AfterOpen Sample `json:"after_open"`
	Probing   Sample `json:"probing"`
	ProbeFor  Dur    `json:"probe_for"`
	// NodesDown is how many nodes the probers had marked Down by the end.
	NodesDown int `json:"nodes_down"`
	// CPUWhileProbing is the process's user+system CPU time during the
	// probing period.
	CPUWhileProbing Dur `json:"cpu_while_probing"`
	// Close is how long Router.Close took with every prober running.
	Close      Dur    `json:"close"`
	AfterClose Sample `json:"after_close"`
	// Up, when measured (-up), is the probing cost with every node up.
	Up *ProbeUp `json:"up,omitempty"`
	// ParseOpen times ParseConfig of a YAML file and Open of the result, by
	// number of clusters, to show that the cost grows linearly.
	ParseOpen []ParseOpen `json:"parse_open,omitempty"`
}

// ParseOpen is the cost of ParseConfig and Open for one size of
// configuration: medians over Runs runs.
type ParseOpen struct {
	Clusters int `json:"clusters"`
	Bytes    int `json:"bytes"` // of the YAML
	Runs     int `json:"runs"`
	Parse    Dur `json:"parse"`
	Open     Dur `json:"open"`
	// CPU is the process's CPU time (user + system, all threads, the
	// garbage collector's included) for ParseConfig and Open together,
	// median: on a shared machine a steadier measure than the wall clock.
	CPU Dur `json:"cpu"`
}

// Sample is a snapshot of the process, taken after a garbage collection.
type Sample struct {
	HeapAlloc  uint64 `json:"heap_alloc"` // bytes of live heap objects
	HeapInuse  uint64 `json:"heap_inuse"` // bytes in in-use heap spans
	Sys        uint64 `json:"sys"`        // bytes obtained from the OS
	Goroutines int    `json:"goroutines"` // runtime.NumGoroutine
	OpenFDs    int    `json:"open_fds"`   // entries in /proc/self/fd
	TCPConns   int    `json:"tcp_conns"`  // sockets among them
	Threads    int    `json:"os_threads"` // from /proc/self/status
	RSS        uint64 `json:"rss"`        // resident set size, bytes
	Note       string `json:"note,omitempty"`
}

// Dur is a time.Duration that marshals as a string ("1.5ms").
type Dur time.Duration

// D returns the duration.
func (d Dur) D() time.Duration { return time.Duration(d) }

// String formats the duration like time.Duration.
func (d Dur) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string.
func (d Dur) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Dur) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Dur(v)
	return nil
}

// Write writes v as indented JSON to path.
func Write(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Read reads JSON from path into v.
func Read(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ProbeUp is the cost of probing live nodes: Clusters clusters of the same
// Servers live servers, every cluster in use, each phase For long.
type ProbeUp struct {
	Clusters     int `json:"clusters"`
	Servers      int `json:"servers"`
	For          Dur `json:"for"`
	Interval     Dur `json:"interval"`
	IdleInterval Dur `json:"idle_interval"`
	// Idle: every cluster used once, then no call (probes at the idle
	// rate); Busy: the same with the idle rate off, every node probed
	// every Interval as the nodes of a cluster in use are.
	Idle ProbePhase `json:"idle"`
	Busy ProbePhase `json:"at_interval"`
	// Goroutines is what the router added, counted after the idle phase.
	Goroutines Goroutines `json:"goroutines"`
}

// ProbePhase is one phase of ProbeUp.
type ProbePhase struct {
	CPU          Dur `json:"cpu"`    // the process's CPU time in the phase
	Probes       int `json:"probes"` // counted by an Observer
	FailedProbes int `json:"failed_probes"`
	NodesUp      int `json:"nodes_up"` // at the end
}

// CorePct is the phase's CPU as a percentage of one core over d.
func (p ProbePhase) CorePct(d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return 100 * p.CPU.D().Seconds() / d.Seconds()
}

// PerProbe is the phase's CPU divided by its probes.
func (p ProbePhase) PerProbe() Dur { return Dur(p.CPU.D() / time.Duration(max(1, p.Probes))) }

// Goroutines sorts the goroutines a router added by what runs them.
type Goroutines struct {
	Added          int `json:"added"`
	Scheduler      int `json:"probe_scheduler"`
	DriverWatchers int `json:"driver_watchers"` // go-sql-driver: one per open connection
	PoolOpeners    int `json:"pool_openers"`    // database/sql: one per *sql.DB
}
