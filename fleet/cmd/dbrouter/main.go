// Command dbrouter is the operator's tool for a fleet of dbrouter routers
// that share their configuration and writer decisions through etcd (see
// package github.com/dbrouter/dbrouter/fleet).
//
// Usage:
//
//	dbrouter validate FILE                 check a YAML configuration
//	dbrouter push FILE [--expect-rev N]    validate it and store it in etcd
//	dbrouter show-config                   print the configuration stored in etcd
//	dbrouter diff FILE                     compare etcd's configuration with FILE
//	dbrouter status [--cluster NAME]       writer, epoch and every router's view of every node
//	dbrouter switchover CLUSTER NODE       move CLUSTER's writer to NODE for the whole fleet
//	         [-config FILE]                with FILE's credentials: old writer read-only, NODE caught up first
//	dbrouter drain CLUSTER NODE            take NODE out of service for the whole fleet
//	dbrouter undrain CLUSTER NODE          put NODE back in service for the whole fleet
//	dbrouter status -config FILE           without etcd: probe every node of FILE once, print a table
//	dbrouter route -config FILE MAP KEY    without etcd: the cluster MAP puts KEY in, and its writer
//
// With -config, status and route talk to no etcd: they open a router from
// the YAML file, as an application would, and print what it sees after
// one probe round (bounded by --timeout); they exit 1 when a node does not
// answer or a cluster has no writer, the table printed all the same.
//
// switchover without -config only publishes the decision (each router then
// switches through its own fence, giving the new writer 1s to catch up, and
// nothing makes the old writer read-only); with -config FILE it first runs
// SET GLOBAL read_only = ON on the old writer and waits (MASTER_GTID_WAIT)
// until NODE holds the old writer's position, with FILE's credentials, and
// makes the old writer writable again if it then refuses (fleet.SQLHooks).
// --timeout bounds all of it: raise it when open transactions may make
// SET GLOBAL read_only wait.
//
// The commands that talk to etcd take --endpoints (comma-separated; default
// $DBROUTER_ETCD_ENDPOINTS, else 127.0.0.1:2379), --prefix (default
// /dbrouter/, the fleet's key prefix) and --timeout (default 5s, for the
// whole command). Flags may come before or after the file.
//
// The exit status is 0 on success, 1 when the command failed (an invalid
// configuration, a conflicting push, an etcd error), and 2 on a usage
// error; diff exits 0 when the two are the same, 1 when they differ and 2
// on trouble, as diff(1) does.
//
// No command prints a password except show-config, which prints the
// configuration exactly as stored: a literal password in etcd is visible
// to anyone who can read the key. Write ${VAR} instead and set VAR in each
// router's environment; validate and push warn about literal passwords.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dbrouter/dbrouter/fleet"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // the command failed; for diff: the two differ
	exitUsage = 2 // a usage error; for diff: trouble
)

// defaultEndpoints is the etcd endpoint when neither --endpoints nor
// $DBROUTER_ETCD_ENDPOINTS is set.
const defaultEndpoints = "127.0.0.1:2379"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one subcommand.
type command struct {
	name    string
	args    string // the synopsis of its arguments
	summary string
	etcd    bool // whether it talks to etcd (and takes the etcd flags)
	flags   func(fs *flag.FlagSet, e *env)
	nargs   int // positional arguments it takes
	run     func(e *env, args []string) int
}

// commands are the subcommands, in the order usage lists them.
var commands = []command{
	{name: "validate", args: "FILE", nargs: 1, run: cmdValidate,
		summary: "check a YAML configuration as every router would; print what is wrong"},
	{name: "push", args: "FILE [--expect-rev N]", nargs: 1, etcd: true, run: cmdPush,
		flags: func(fs *flag.FlagSet, e *env) {
			fs.Int64Var(&e.expectRev, "expect-rev", -1,
				"store FILE only if etcd's configuration is still at revision `N` (0: only if there is none; -1: at the revision read just before writing)")
		},
		summary: "validate FILE and store it in etcd with a compare-and-swap"},
	{name: "show-config", etcd: true, run: cmdShowConfig,
		summary: "print the configuration stored in etcd, as stored (its revision goes to stderr)"},
	{name: "diff", args: "FILE", nargs: 1, etcd: true, run: cmdDiff,
		summary: "line diff of etcd's configuration (-) and FILE (+); exit 1 if they differ"},
	{name: "status", args: "[--cluster NAME] [-config FILE]", etcd: true, run: cmdStatus,
		flags: func(fs *flag.FlagSet, e *env) {
			fs.StringVar(&e.cluster, "cluster", "", "show cluster `NAME` only")
			fs.StringVar(&e.config, "config", "", "no etcd: open a router from the YAML `FILE`, probe every node once and print a table")
		},
		summary: "each cluster's writer, epoch and every router's view of each node (-config FILE: probe FILE's nodes, no etcd)"},
	{name: "drain", args: "CLUSTER NODE", nargs: 2, etcd: true, run: cmdDrain,
		summary: "take NODE out of service for the whole fleet (the writer moves off it); wait until every router follows"},
	{name: "undrain", args: "CLUSTER NODE", nargs: 2, etcd: true, run: cmdUndrain,
		summary: "put NODE back in service for the whole fleet"},
	{name: "route", args: "-config FILE MAP KEY", nargs: 2, run: cmdRoute,
		flags: func(fs *flag.FlagSet, e *env) {
			fs.StringVar(&e.config, "config", "", "the YAML configuration `FILE` (required)")
			fs.DurationVar(&e.timeout, "timeout", 5*time.Second, "bound on the probe round that finds the writer")
		},
		summary: "the cluster shard map MAP puts KEY in, and that cluster's writer now (no etcd)"},
	{name: "switchover", args: "CLUSTER NODE [-config FILE]", nargs: 2, etcd: true, run: cmdSwitchover,
		flags: func(fs *flag.FlagSet, e *env) {
			fs.StringVar(&e.config, "config", "",
				"the YAML `FILE` with the nodes' credentials: make the old writer read-only and wait until NODE holds its position before publishing (without it, neither is done: routers switch with a 1s catch-up each, and the old writer stays writable)")
		},
		summary: "move CLUSTER's writer to NODE for the whole fleet (a compare-and-swap on its decision; -config FILE: old writer made read-only and NODE caught up first)"},
}

// env is what a subcommand runs with: its output, its flags, and the etcd
// client, made on first use.
type env struct {
	stdout, stderr io.Writer

	endpoints string
	prefix    string
	timeout   time.Duration
	expectRev int64  // push
	cluster   string // status
	config    string // status and route without etcd: the YAML file

	now func() time.Time // the clock of status's ages

	ctx context.Context
	cli *clientv3.Client

	afterDrain func() // tests: called by drain once the drain key is stored
}

// run runs the command line args (without the program name) and returns
// the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, now: time.Now}
	return e.run(args)
}

// run runs the command line args on e, whose output and clock are set.
func (e *env) run(args []string) int {
	stdout, stderr := e.stdout, e.stderr
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		w := stderr
		if len(args) > 0 {
			w = stdout // asked for
		}
		usage(w)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == args[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "dbrouter: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	fs := flag.NewFlagSet("dbrouter "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: dbrouter %s %s\n  %s\n", cmd.name, cmd.args, cmd.summary)
		if cmd.etcd || cmd.flags != nil {
			fmt.Fprintln(stderr, "flags:")
			fs.PrintDefaults()
		}
	}
	if cmd.etcd {
		endpoints := os.Getenv("DBROUTER_ETCD_ENDPOINTS")
		if endpoints == "" {
			endpoints = defaultEndpoints
		}
		fs.StringVar(&e.endpoints, "endpoints", endpoints, "etcd `endpoints`, comma-separated; $DBROUTER_ETCD_ENDPOINTS sets the default")
		fs.StringVar(&e.prefix, "prefix", fleet.DefaultPrefix, "the fleet's key `prefix` in etcd (a trailing / is added if missing)")
		fs.DurationVar(&e.timeout, "timeout", 5*time.Second, "bound on the whole command")
	}
	if cmd.flags != nil {
		cmd.flags(fs, e)
	}
	pos, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage // the flag package has printed why
	}
	if len(pos) != cmd.nargs {
		fmt.Fprintf(stderr, "dbrouter %s: want %d argument(s), got %d\n", cmd.name, cmd.nargs, len(pos))
		fs.Usage()
		return exitUsage
	}
	if cmd.etcd {
		if e.timeout <= 0 {
			fmt.Fprintf(stderr, "dbrouter %s: --timeout must be positive\n", cmd.name)
			return exitUsage
		}
		if !strings.HasSuffix(e.prefix, "/") {
			e.prefix += "/"
		}
		var cancel context.CancelFunc
		e.ctx, cancel = context.WithTimeout(context.Background(), e.timeout)
		defer cancel()
		defer func() {
			if e.cli != nil {
				e.cli.Close()
			}
		}()
	}
	return cmd.run(e, pos)
}

// parseInterspersed parses flags anywhere among the positional arguments,
// which it returns ("push f.yaml --expect-rev 3" as well as "push
// --expect-rev 3 f.yaml"). After "--" every argument is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil // Parse stopped after a "--"
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usage prints the commands and their synopses.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: dbrouter COMMAND [ARGS] [FLAGS]")
	fmt.Fprintln(w, "\nThe operator's tool for a fleet of dbrouter routers sharing a configuration and writer decisions through etcd.")
	fmt.Fprintln(w, "\ncommands:")
	width := 0
	for _, c := range commands {
		width = max(width, len(c.args))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %-*s %s\n", c.name, width, c.args, c.summary)
	}
	fmt.Fprintln(w, "\nflags of the commands that talk to etcd: --endpoints (default $DBROUTER_ETCD_ENDPOINTS or "+defaultEndpoints+"),")
	fmt.Fprintln(w, "--prefix (default "+fleet.DefaultPrefix+"), --timeout (default 5s). \"dbrouter COMMAND -h\" shows a command's flags.")
	fmt.Fprintln(w, "status and route with -config FILE need no etcd; they take --timeout (default 5s) for the probe round.")
	fmt.Fprintln(w, "exit status: 0 ok, 1 failed (diff: they differ; status/route -config: a node not answering, no writer), 2 usage error (diff: trouble).")
}

// etcd returns the etcd client, connecting on first use.
func (e *env) etcd() (*clientv3.Client, error) {
	if e.cli != nil {
		return e.cli, nil
	}
	var eps []string
	for _, ep := range strings.Split(e.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			eps = append(eps, ep)
		}
	}
	if len(eps) == 0 {
		return nil, errors.New("no etcd endpoint: set --endpoints or $DBROUTER_ETCD_ENDPOINTS")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: e.timeout,
		Context:     e.ctx,
		Logger:      zap.NewNop(), // the client's retries are not the operator's business
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd at %s: %w", e.endpoints, err)
	}
	e.cli = cli
	return cli, nil
}

// etcdErr explains an etcd error: a command that timed out names the
// endpoints and the timeout.
func (e *env) etcdErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(e.ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("etcd at %s did not answer within %v (--timeout): %w", e.endpoints, e.timeout, err)
	}
	return err
}

// fail prints the error of a command and returns exitFail.
func (e *env) fail(cmd string, err error) int {
	fmt.Fprintf(e.stderr, "dbrouter %s: %v\n", cmd, err)
	return exitFail
}
