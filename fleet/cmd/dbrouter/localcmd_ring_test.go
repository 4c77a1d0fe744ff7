package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter/ringtest"
)

// localRingPassword is the ring user's password, written literally in the
// configuration: no output may show it.
const localRingPassword = "local-ring-Pw-7q"

// TestLocalStatusRing: dbrouter status -config and route on a real 3-node
// ring with node 0 killed and node 1 read-only: the table shows node 0 down
// with its error, node 1 up, read-only, a replica, and node 2 the writer;
// the exit status is 1 (a node does not answer); route names the cluster
// and node 2. The table's layout is checked against
// testdata/local-status.golden with addresses, positions and durations
// masked.
func TestLocalStatusRing(t *testing.T) {
	h := ringtest.New(t, ringtest.Options{Nodes: 3, Password: localRingPassword})
	ring := h.Ring(0)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := ring.AdminDB(0).ExecContext(ctx, "CREATE TABLE ringtest.t (pk INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if err := ring.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ring.SetReadOnly(1, true); err != nil {
		t.Fatal(err)
	}
	if err := ring.Kill(0); err != nil {
		t.Fatal(err)
	}
	a := ring.Addrs()
	cfg := writeConfig(t, fmt.Sprintf(`defaults:
  user: app
  password: %s
  database: ringtest
clusters:
  ring: {nodes: [%q, %q, %q]}
shard_maps:
  customers: {strategy: initial, ranges: {A-Z: ring}}
`, localRingPassword, a[0], a[1], a[2]))

	start := time.Now()
	r := runCLI(t, "status", "-config", cfg)
	t.Logf("status took %v\n%v", time.Since(start), r)
	if r.code != exitFail {
		t.Errorf("exit %d with a node killed, want %d", r.code, exitFail)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && f[0] == "ring" {
			rows[f[1]] = f
		}
	}
	// CLUSTER NODE STATE ROLE READ_ONLY GTID LAG PROBE [ERROR...]
	check := func(addr, state, role, ro string) {
		t.Helper()
		f := rows[addr]
		if len(f) < 8 || f[2] != state || f[3] != role || f[4] != ro {
			t.Errorf("row of %s = %q, want state %s, role %s, read_only %s", addr, f, state, role, ro)
		}
	}
	check(a[0], "down", "-", "-")
	check(a[1], "up", "replica", "yes")
	check(a[2], "up", "writer", "no")
	// Natively the killed node refuses the connection; on Docker rings the
	// host's docker-proxy accepts it and then drops it, which the driver
	// reports as an invalid connection.
	if f := rows[a[0]]; len(f) < 9 || !regexp.MustCompile(`connection refused|invalid connection|EOF|connection reset`).MatchString(strings.Join(f[8:], " ")) {
		t.Errorf("row of the killed node has no connection error: %q", f)
	}
	for _, i := range []int{1, 2} {
		if f := rows[a[i]]; len(f) != 8 || !regexp.MustCompile(`^\d+-\d+-\d+`).MatchString(f[5]) {
			t.Errorf("row of node %d: want a GTID position and no error: %q", i, f)
		}
	}
	if f := rows[a[2]]; len(f) >= 7 && f[6] != "0s" {
		t.Errorf("the writer's lag is %s, want 0s", f[6])
	}
	if f := rows[a[1]]; len(f) >= 7 {
		if _, err := time.ParseDuration(f[6]); err != nil {
			t.Errorf("the replica's lag is %q, want a duration", f[6])
		}
	}
	if !strings.Contains(r.stderr, "node "+a[0]+" is down") {
		t.Errorf("stderr does not name the killed node:\n%s", r.stderr)
	}

	// The layout, with what changes from run to run masked.
	masked := r.stdout
	for i, addr := range a {
		masked = strings.ReplaceAll(masked, addr, fmt.Sprintf("NODE%d", i))
	}
	masked = strings.ReplaceAll(masked, cfg, "CONFIG")
	masked = regexp.MustCompile(`\d+-\d+-\d+(,\d+-\d+-\d+)*`).ReplaceAllString(masked, "GTID")
	masked = regexp.MustCompile(`\b[\d.]+(µs|ms|s)\b`).ReplaceAllString(masked, "DUR")
	masked = regexp.MustCompile(`connect: .*`).ReplaceAllString(masked, "ERROR")
	masked = regexp.MustCompile(` +`).ReplaceAllString(masked, " ")
	compareGolden(t, "testdata/local-status.golden", masked)

	r = runCLI(t, "route", "-config", cfg, "customers", "Smith")
	t.Logf("%v", r)
	if r.code != exitOK || !strings.Contains(r.stdout, `map customers, key "Smith": cluster ring`) ||
		!strings.Contains(r.stdout, "writer: "+a[2]) {
		t.Errorf("route: %v", r)
	}
	for _, out := range []string{r.stdout, r.stderr} {
		if strings.Contains(out, localRingPassword) {
			t.Error("the password is in the output")
		}
	}
}

// compareGolden compares got with the golden file (rewritten with -update).
func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("%s differs (masked output below; -update rewrites it):\n%s", path, got)
	}
}
