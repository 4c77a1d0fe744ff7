package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dbrouter/dbrouter"
)

// The local commands — status -config FILE and route -config FILE MAP KEY —
// need no etcd: they open a router from a YAML configuration, as an
// application would, probe its nodes and print what that router sees. They
// print no password: the configuration's passwords (after ${VAR}
// expansion) are replaced by REDACTED wherever they would appear, errors
// included.

// localRouter is a router opened from a configuration file, with what its
// output must hide.
type localRouter struct {
	*dbrouter.Router
	secrets []string // the configuration's passwords, longest first
}

// openLocal opens a router from the configuration file, with logging off
// (the table says what the probes found). It does no I/O but reading the
// file: probes start on a cluster's first use.
func openLocal(file string) (*localRouter, error) {
	if file == "" {
		return nil, errors.New("-config FILE is required")
	}
	cfg, err := dbrouter.LoadConfig(file)
	if err != nil {
		return nil, err
	}
	lr := &localRouter{secrets: configSecrets(cfg)}
	// Probing is the point: probes turned off in the file (nodes judged by
	// calls alone) are turned on here.
	cfg.Defaults.Health.Disabled = false
	for name, c := range cfg.Clusters {
		c.Health.Disabled = false
		cfg.Clusters[name] = c
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	r, err := dbrouter.Open(cfg)
	if err != nil {
		return nil, lr.scrubErr(fmt.Errorf("%s: %w", file, err))
	}
	lr.Router = r
	return lr, nil
}

// configSecrets returns the passwords of cfg (after ${VAR} expansion),
// longest first, for scrubbing.
func configSecrets(cfg *dbrouter.Config) []string {
	var secrets []string
	add := func(p string) {
		if p != "" && !slices.Contains(secrets, p) {
			secrets = append(secrets, p)
		}
	}
	add(cfg.Defaults.Password)
	for _, c := range cfg.Clusters {
		add(c.Password)
	}
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	return secrets
}

// scrubSecrets hides secrets in s.
func scrubSecrets(s string, secrets []string) string {
	for _, p := range secrets {
		s = strings.ReplaceAll(s, p, redacted)
	}
	return s
}

// scrub hides the configuration's passwords in s.
func (lr *localRouter) scrub(s string) string { return scrubSecrets(s, lr.secrets) }

// scrubErr is scrub for an error (nil stays nil).
func (lr *localRouter) scrubErr(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(lr.scrub(err.Error()))
}

// settle waits, within ctx, until cluster c's first probe round has ended,
// no node is Suspect after failed probes (its prober then probes again at
// once, and a dead node is Down after fail_after probes, so that the table
// shows a node that does not answer as down), and the lag of every Up node
// is known (for at most lagWait).
func settle(ctx context.Context, c *dbrouter.Cluster) dbrouter.ClusterStats {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.WriterAddr() // the first probe round: bounded by twice the probe timeout + 250ms
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return c.Stats()
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	// A replica's lag is known from its first probe after the writer was
	// chosen: wait up to lagWait for it (a replica that never holds the
	// writer's position keeps an unknown lag).
	lagBy := time.Now().Add(lagWait)
	for {
		st := c.Stats()
		waiting := slices.ContainsFunc(st.Nodes, func(n dbrouter.NodeStats) bool {
			return n.State == dbrouter.StateSuspect && n.ConsecutiveFailures > 0 ||
				st.Writer != "" && n.State == dbrouter.StateUp && n.Lag < 0 && time.Now().Before(lagBy)
		})
		if !waiting {
			return st
		}
		select {
		case <-ctx.Done():
			return st
		case <-tick.C:
		}
	}
}

// lagWait bounds how long status waits for the replicas' lag to be known.
const lagWait = time.Second

// cmdLocalStatus probes every node of every cluster (or of --cluster) of
// the configuration file and prints a table of what it found. The exit
// status is 1 when a node did not answer its probes or a cluster has no
// writer: the table is printed all the same, and stderr says which.
func cmdLocalStatus(e *env) int {
	lr, err := openLocal(e.config)
	if err != nil {
		return e.fail("status", err)
	}
	defer lr.Close()
	names := lr.Clusters()
	if e.cluster != "" {
		if !slices.Contains(names, e.cluster) {
			return e.fail("status", fmt.Errorf("no cluster %q in %s (configured: %s)", e.cluster, e.config, sortedList(names)))
		}
		names = []string{e.cluster}
	}
	start := time.Now()
	stats := make([]dbrouter.ClusterStats, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		c, err := lr.Cluster(name)
		if err != nil {
			return e.fail("status", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[i] = settle(e.ctx, c)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	fmt.Fprintf(e.stdout, "config %s: %s, probed in %v\n", e.config, plural(len(names), "cluster"), took.Round(time.Millisecond))
	problems := writeLocalStatus(e.stdout, lr, stats)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(e.stderr, "dbrouter status: %s\n", p) // errors scrubbed, names as configured
		}
		if e.ctx.Err() != nil {
			fmt.Fprintf(e.stderr, "dbrouter status: the probes did not all end within %v (--timeout)\n", e.timeout)
		}
		return exitFail
	}
	return exitOK
}

// writeLocalStatus prints the table of the clusters' stats and returns
// what is wrong: nodes that do not answer, clusters without a writer. Only
// error texts are scrubbed: the cluster and node names come from the
// configuration and are printed as they are, so that a short password
// ("1") does not turn "127.0.0.1" into "REDACTED27.0.0.REDACTED".
func writeLocalStatus(w io.Writer, lr *localRouter, stats []dbrouter.ClusterStats) []string {
	var problems []string
	tw := newTable(w)
	fmt.Fprintln(tw, "CLUSTER\tNODE\tSTATE\tROLE\tREAD_ONLY\tGTID\tLAG\tPROBE\tERROR")
	for _, cs := range stats {
		if cs.Writer == "" {
			problems = append(problems, fmt.Sprintf("cluster %s: no writer (no node is up and writable)", cs.Name))
		}
		for _, n := range cs.Nodes {
			probed := n.LastProbeLatency > 0 || n.ConsecutiveFailures > 0 || n.LastError != "" || n.GTIDPosition != ""
			state, role, ro := n.State.String(), "replica", yesNo(n.ReadOnly)
			switch {
			case !probed:
				state, role, ro = "unknown", "-", "-"
				problems = append(problems, fmt.Sprintf("cluster %s: node %s: no probe answer", cs.Name, n.Addr))
			case n.Role == dbrouter.RoleWriter:
				role = "writer"
			case n.State == dbrouter.StateDown:
				role = "-"
			}
			if n.Drained {
				state += " (drained)"
			}
			if probed && n.GTIDPosition == "" {
				ro = "-" // no good probe: read_only is not known
			}
			if n.LastError != "" {
				problems = append(problems, fmt.Sprintf("cluster %s: node %s is %s: %s", cs.Name, n.Addr, n.State, lr.scrub(oneLine(n.LastError))))
			}
			lag := "-"
			if n.Lag >= 0 {
				lag = n.Lag.Round(time.Millisecond).String()
			}
			probe := "-"
			if n.LastProbeLatency > 0 {
				probe = n.LastProbeLatency.Round(10 * time.Microsecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cs.Name, n.Addr, state, role, ro,
				orDash(n.GTIDPosition), lag, probe, lr.scrub(oneLine(n.LastError)))
		}
	}
	tw.Flush()
	return problems
}

// cmdRoute prints the cluster that a shard map puts a key in, and that
// cluster's writer now (after one probe round). The exit status is 1 when
// the key cannot be routed or the cluster has no writer.
func cmdRoute(e *env, args []string) int {
	mapName, key := args[0], args[1]
	if e.timeout <= 0 {
		fmt.Fprintln(e.stderr, "dbrouter route: --timeout must be positive")
		return exitUsage
	}
	lr, err := openLocal(e.config)
	if err != nil {
		return e.fail("route", err)
	}
	defer lr.Close()
	c, err := lr.Route(mapName, key)
	if err != nil {
		return e.fail("route", lr.scrubErr(err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	st := settle(ctx, c)
	fmt.Fprintf(e.stdout, "map %s, key %q: cluster %s\n", mapName, key, c.Name())
	if st.Writer == "" {
		fmt.Fprintf(e.stdout, "writer: none (no node is up and writable)\n")
		var down []string
		for _, n := range st.Nodes {
			if n.LastError != "" {
				down = append(down, fmt.Sprintf("%s: %s", n.Addr, lr.scrub(oneLine(n.LastError))))
			}
		}
		for _, d := range down {
			fmt.Fprintf(e.stderr, "dbrouter route: %s\n", d)
		}
		if ctx.Err() != nil {
			fmt.Fprintf(e.stderr, "dbrouter route: the probes did not all end within %v (--timeout)\n", e.timeout)
		}
		return exitFail
	}
	fmt.Fprintf(e.stdout, "writer: %s\n", st.Writer)
	return exitOK
}
