package main

import (
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
