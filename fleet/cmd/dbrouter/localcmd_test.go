package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes a YAML configuration to a temporary file.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dbrouter.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLocalCommandErrors: status -config and route fail clearly, without
// etcd and without printing the password, on an unreadable or invalid
// configuration, an unknown map or cluster, an empty key and nodes that do
// not answer (127.0.0.1:1 and :2 refuse connections). Probes turned off in
// the file are turned on: the nodes are probed all the same.
func TestLocalCommandErrors(t *testing.T) {
	const secret = "s3cret-Local-Pw"
	cfg := writeConfig(t, `defaults: {user: app, password: "`+secret+`", health: {interval: 50ms, disabled: true}}
clusters:
  c1: {nodes: ["127.0.0.1:1", "127.0.0.1:2"]}
shard_maps:
  m: {strategy: initial, ranges: {A-Z: c1}}
`)
	bad := writeConfig(t, "defaults: {user: app, password: \""+secret+"\"}\nclusters: {c1: {nodes: ['127.0.0.1:99999']}}\n")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // in stdout+stderr
	}{
		{"status: no such file", []string{"status", "-config", "/nonexistent/db.yaml"}, exitFail, []string{"/nonexistent/db.yaml", "no such file"}},
		{"status: invalid config", []string{"status", "-config", bad}, exitFail, []string{"99999"}},
		{"status: unknown cluster", []string{"status", "-config", cfg, "--cluster", "c9"}, exitFail, []string{`no cluster "c9"`, "configured: c1"}},
		{"status: nodes not answering", []string{"status", "-config", cfg, "--timeout", "10s"}, exitFail, []string{
			"CLUSTER  NODE         STATE  ROLE  READ_ONLY  GTID  LAG  PROBE",
			"c1       127.0.0.1:1  down   -     -          -     -",
			"connection refused", "cluster c1: no writer", "node 127.0.0.1:2 is down"}},
		{"route: no -config", []string{"route", "m", "k"}, exitFail, []string{"-config FILE is required"}},
		{"route: unknown map", []string{"route", "-config", cfg, "nomap", "Smith"}, exitFail, []string{`unknown shard map "nomap"`, "configured: m"}},
		{"route: empty key", []string{"route", "-config", cfg, "m", ""}, exitFail, []string{"empty"}},
		{"route: no writer", []string{"route", "-config", cfg, "m", "Smith", "--timeout", "10s"}, exitFail, []string{
			`map m, key "Smith": cluster c1`, "writer: none", "127.0.0.1:1: connect: dial tcp 127.0.0.1:1: connect: connection refused"}},
		{"route: missing key", []string{"route", "-config", cfg, "m"}, exitUsage, []string{"want 2 argument(s), got 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.args...)
			all := r.stdout + r.stderr
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if strings.Contains(all, secret) {
				t.Errorf("the password is in the output")
			}
			if t.Failed() {
				t.Logf("%v", r)
			}
		})
	}
}
