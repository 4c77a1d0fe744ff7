package main

import (
	"flag"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// frozenNode listens on loopback and accepts connections but never
// answers, as a SIGSTOPped server does; it is closed when the test ends.
func frozenNode(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// TestReview6LocalFrozenNodeBounded: status -config and route with a node
// that accepts connections and never answers (a frozen server) end within
// about --timeout, even when the file's probe and connect timeouts are far
// longer, and exit 1 saying so; no password printed.
//
// Finding: both were bounded, but route exited 1 with "writer: none (no
// node is up and writable)" and nothing on stderr: it now says, as status
// does, that the probes did not answer within --timeout.
func TestReview6LocalFrozenNodeBounded(t *testing.T) {
	const secret = "Frozen-Pw-7"
	addr := frozenNode(t)
	cfg := writeConfig(t, `defaults: {user: app, password: "`+secret+`", connect_timeout: 30s, read_timeout: 30s, health: {interval: 1s, timeout: 30s}}
clusters:
  c1: {nodes: ["`+addr+`"]}
shard_maps:
  m: {strategy: initial, ranges: {A-Z: c1}}
`)
	for _, args := range [][]string{
		{"status", "-config", cfg, "--timeout", "1s"},
		{"route", "-config", cfg, "m", "Smith", "--timeout", "1s"},
	} {
		t.Run(args[0], func(t *testing.T) {
			start := time.Now()
			r := runCLI(t, args...)
			took := time.Since(start)
			t.Logf("took %v, exit %d\n%s%s", took.Round(time.Millisecond), r.code, r.stdout, r.stderr)
			if took > 6*time.Second {
				t.Errorf("%s took %v with --timeout 1s", args[0], took)
			}
			if r.code != exitFail {
				t.Errorf("exit %d, want %d", r.code, exitFail)
			}
			if !strings.Contains(r.stderr, "did not all end within 1s (--timeout)") {
				t.Error("stderr does not say that the probes did not answer within --timeout")
			}
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Error("the password is in the output")
			}
		})
	}
}

// FuzzReview6ParseArgs: the command line of every command, parsed as run
// parses it, never panics, and the positional arguments it returns are
// arguments of the line, in order.
func FuzzReview6ParseArgs(f *testing.F) {
	for _, s := range []string{"status\x00-config\x00f.yaml", "route\x00m\x00--\x00-k", "push\x00f\x00--expect-rev\x00x",
		"drain\x00c\x00n\x00--timeout=-1s", "route\x00-config\x00\x00m\x00", "status\x00--\x00--", "diff\x00-h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		for i := range commands {
			cmd := &commands[i]
			e := &env{stdout: io.Discard, stderr: io.Discard}
			fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			if cmd.etcd {
				fs.StringVar(&e.endpoints, "endpoints", "", "")
				fs.StringVar(&e.prefix, "prefix", "", "")
				fs.DurationVar(&e.timeout, "timeout", time.Second, "")
			}
			if cmd.flags != nil {
				cmd.flags(fs, e)
			}
			pos, err := parseInterspersed(fs, args)
			if err != nil {
				continue
			}
			j := 0
			for _, p := range pos {
				for j < len(args) && args[j] != p {
					j++
				}
				if j == len(args) {
					t.Fatalf("%s: positional %q not among the arguments %q in order (all: %q)", cmd.name, p, args, pos)
				}
				j++
			}
		}
	})
}

// TestReview6ShortPasswordKeepsNames: a short password ("1") is still
// kept out of the output, but the cluster and node names printed beside
// the errors are not mangled by the scrubbing ("cluster cREDACTED", "node
// REDACTED27.0.0.REDACTED:REDACTED" before).
func TestReview6ShortPasswordKeepsNames(t *testing.T) {
	cfg := writeConfig(t, `defaults: {user: app, password: "1"}
clusters:
  c1: {nodes: ["127.0.0.1:1"]}
shard_maps:
  m: {strategy: initial, ranges: {A-Z: c1}}
`)
	r := runCLI(t, "status", "-config", cfg, "--timeout", "5s")
	for _, w := range []string{"cluster c1: no writer", "cluster c1: node 127.0.0.1:1 is down"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("status stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	r = runCLI(t, "route", "-config", cfg, "m", "Smith", "--timeout", "5s")
	if !strings.Contains(r.stderr, "dbrouter route: 127.0.0.1:1: ") {
		t.Errorf("route stderr does not name the node as configured:\n%s", r.stderr)
	}
}
