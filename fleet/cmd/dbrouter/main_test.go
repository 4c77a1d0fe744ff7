package main

import (
	"bytes"
	"fmt"
	"github.com/dbrouter/dbrouter/fleet/internal/etcdtest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
)

// result is what one run of the command gave.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// testNow is the clock of the status tests.
var testNow = time.Date(2026, 11, 25, 20, 30, 0, 0, time.UTC)

// runCLI runs the command in-process with args.
func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env{stdout: &out, stderr: &errOut, now: func() time.Time { return testNow }}
	code := e.run(args)
	return result{code, out.String(), errOut.String()}
}

// etcdArgs are the flags that point a command at srv, under prefix.
func etcdArgs(srv *etcdtest.Server, prefix string) []string {
	return []string{"--endpoints", srv.Endpoint(), "--prefix", prefix, "--timeout", "10s"}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stdout+stderr
	}{
		{"no command", nil, exitUsage, "usage: dbrouter COMMAND"},
		{"help", []string{"help"}, exitOK, "show-config"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"missing file", []string{"validate"}, exitUsage, "want 1 argument(s), got 0"},
		{"extra argument", []string{"show-config", "x"}, exitUsage, "want 0 argument(s), got 1"},
		{"unknown flag", []string{"status", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{"command help", []string{"push", "-h"}, exitOK, "-expect-rev"},
		{"zero timeout", []string{"status", "--timeout", "0s"}, exitUsage, "--timeout must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Errorf("want exit %d and %q; got %v", tc.code, tc.want, r)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Setenv("DB_PASSWORD", "s3cret")
	for _, tc := range []struct {
		file   string
		code   int
		stdout string
	}{
		{"testdata/fleet.yaml", exitOK, "testdata/fleet.yaml: valid: 2 clusters (cust-1, cust-2), 1 shard map (customers)\n"},
		{"testdata/bad-overlap.yaml", exitFail, ""},
		{"testdata/bad-unknown-cluster.yaml", exitFail, ""},
		{"testdata/no-such-file.yaml", exitFail, ""},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			r := runCLI(t, "validate", tc.file)
			if r.code != tc.code || r.stdout != tc.stdout {
				t.Fatalf("want exit %d and stdout %q; got %v", tc.code, tc.stdout, r)
			}
			if tc.code == exitFail {
				// The error is LoadConfig's, word for word.
				_, err := dbrouter.LoadConfig(tc.file)
				if r.stderr != err.Error()+"\n" {
					t.Errorf("stderr %q, want LoadConfig's error %q", r.stderr, err)
				}
			}
		})
	}
	r := runCLI(t, "validate", "testdata/bad-unknown-cluster.yaml")
	for _, w := range []string{"shard_maps.customers.ranges.N-Z", `"cust-9"`, "unknown cluster"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr %q does not name %q", r.stderr, w)
		}
	}
}

// literalSecrets are the passwords of testdata/literal-password.yaml.
var literalSecrets = []string{"hunter2-literal", "other-literal-secret", "flow-literal-secret"}

// noSecrets fails the test if r shows a password of literalSecrets.
func noSecrets(t *testing.T, r result) {
	t.Helper()
	for _, s := range literalSecrets {
		if strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("output shows the password %q:\n%v", s, r)
		}
	}
}

func TestValidateWarnsOfLiteralPasswords(t *testing.T) {
	r := runCLI(t, "validate", "testdata/literal-password.yaml")
	if r.code != exitOK {
		t.Fatalf("%v", r)
	}
	noSecrets(t, r)
	for _, line := range []int{3, 8, 9} {
		w := fmt.Sprintf("warning: testdata/literal-password.yaml:%d: a literal password", line)
		if !strings.Contains(r.stderr, w) {
			t.Errorf("no warning %q in\n%s", w, r.stderr)
		}
	}
}

func TestPushShowDiff(t *testing.T) {
	t.Setenv("DB_PASSWORD", "s3cret")
	srv := etcdtest.Start(t)
	flags := etcdArgs(srv, "/cli") // a trailing / is added
	args := func(a ...string) []string { return append(a, flags...) }
	v1, _ := os.ReadFile("testdata/fleet.yaml")

	r := runCLI(t, args("show-config")...)
	if r.code != exitFail || !strings.Contains(r.stderr, "no configuration in etcd at /cli/config") {
		t.Fatalf("show-config of nothing: %v", r)
	}
	r = runCLI(t, args("diff", "testdata/fleet.yaml")...)
	if r.code != exitFail || !strings.HasPrefix(r.stdout, "--- etcd /cli/config (none)\n+++ testdata/fleet.yaml\n@@ -0,0 +1,14 @@\n+# The fleet") {
		t.Fatalf("diff against nothing: %v", r)
	}

	r = runCLI(t, args("push", "testdata/fleet.yaml")...)
	m := regexp.MustCompile(`^pushed testdata/fleet.yaml to /cli/config: revision (\d+) \(created\)\n$`).FindStringSubmatch(r.stdout)
	if r.code != exitOK || m == nil {
		t.Fatalf("first push: %v", r)
	}
	rev1 := m[1]

	r = runCLI(t, args("show-config")...)
	if r.code != exitOK || r.stdout != string(v1) || r.stderr != "# /cli/config, revision "+rev1+"\n" {
		t.Fatalf("show-config: %v", r)
	}
	r = runCLI(t, args("push", "testdata/fleet.yaml")...)
	if r.code != exitOK || r.stdout != "testdata/fleet.yaml unchanged: it is the configuration at /cli/config, revision "+rev1+"\n" {
		t.Fatalf("pushing the same again: %v", r)
	}
	r = runCLI(t, args("diff", "testdata/fleet.yaml")...)
	if r.code != exitOK || r.stdout != "" {
		t.Fatalf("diff of the same: %v", r)
	}

	r = runCLI(t, args("diff", "testdata/fleet-v2.yaml")...)
	wantDiff := `--- etcd /cli/config (revision ` + rev1 + `)
+++ testdata/fleet-v2.yaml
@@ -8,7 +8,8 @@
 clusters:
   cust-1: { nodes: ["127.0.0.1:33061", "127.0.0.1:33062"] }
   cust-2: { nodes: ["127.0.0.1:33063", "127.0.0.1:33064"] }
+  cust-3: { nodes: ["127.0.0.1:33065", "127.0.0.1:33066"] }
 shard_maps:
   customers:
     strategy: initial
-    ranges: { A-M: cust-1, N-Z: cust-2 }
+    ranges: { A-M: cust-1, N-Z: cust-3 }
`
	if r.code != exitFail || r.stdout != wantDiff {
		t.Fatalf("diff v2: got %v\nwant stdout:\n%s", r, wantDiff)
	}
	if !strings.Contains(r.stderr, "dbrouter push testdata/fleet-v2.yaml --expect-rev "+rev1) {
		t.Errorf("diff does not say how to push: %q", r.stderr)
	}

	// Someone else pushes in between: a push expecting rev1 conflicts.
	r = runCLI(t, args("push", "testdata/fleet-v2.yaml", "--expect-rev", rev1)...)
	if r.code != exitOK {
		t.Fatalf("push --expect-rev %s: %v", rev1, r)
	}
	r = runCLI(t, args("push", "--expect-rev", rev1, "testdata/fleet.yaml")...)
	if r.code != exitFail || !strings.Contains(r.stderr, "changed by someone else: expected revision "+rev1+", found revision") {
		t.Fatalf("push on a stale revision: %v", r)
	}
	r = runCLI(t, args("push", "testdata/fleet.yaml", "--expect-rev", "0")...)
	if r.code != exitFail || !strings.Contains(r.stderr, "expected no configuration") {
		t.Fatalf("push --expect-rev 0 over an existing one: %v", r)
	}

	// An invalid file is not pushed.
	r = runCLI(t, args("push", "testdata/bad-overlap.yaml")...)
	if r.code != exitFail || !strings.Contains(r.stderr, "not pushed") || !strings.Contains(r.stderr, "shard_maps.customers.ranges") {
		t.Fatalf("push of an invalid file: %v", r)
	}
	v2, _ := os.ReadFile("testdata/fleet-v2.yaml")
	if r := runCLI(t, args("show-config")...); r.stdout != string(v2) {
		t.Fatalf("after the refused pushes etcd holds:\n%s", r.stdout)
	}
}

func TestLiteralPasswordsHidden(t *testing.T) {
	srv := etcdtest.Start(t)
	args := func(a ...string) []string { return append(a, etcdArgs(srv, "/pw/")...) }
	r := runCLI(t, args("push", "testdata/literal-password.yaml")...)
	if r.code != exitOK || !strings.Contains(r.stderr, "warning: testdata/literal-password.yaml:3: a literal password") {
		t.Fatalf("push: %v", r)
	}
	noSecrets(t, r)

	// Every password changed, and one line beside it: the diff shows the
	// changed lines with REDACTED.
	data, _ := os.ReadFile("testdata/literal-password.yaml")
	changed := string(data)
	for _, s := range literalSecrets {
		changed = strings.ReplaceAll(changed, s, s+"-new")
	}
	file := filepath.Join(t.TempDir(), "changed.yaml")
	os.WriteFile(file, []byte(changed), 0o600)
	r = runCLI(t, args("diff", file)...)
	noSecrets(t, r)
	for _, w := range []string{
		"@@ -1,9 +1,9 @@\n defaults:\n   user: app\n-  password: REDACTED\n+  password: REDACTED\n   health:",
		"-    password: REDACTED\n-  cust-2: { nodes: [\"127.0.0.1:33063\"], user: ops, password: REDACTED\n" +
			"+    password: REDACTED\n+  cust-2: { nodes: [\"127.0.0.1:33063\"], user: ops, password: REDACTED\n",
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("diff has no %q:\n%s", w, r.stdout)
		}
	}
	if r.code != exitFail {
		t.Errorf("diff exit %d, want 1", r.code)
	}

	// A password copied from redacted output is refused.
	redactedFile := filepath.Join(t.TempDir(), "redacted.yaml")
	os.WriteFile(redactedFile, []byte(strings.Replace(string(data), "hunter2-literal", "REDACTED", 1)), 0o600)
	r = runCLI(t, args("push", redactedFile)...)
	if r.code != exitFail || !strings.Contains(r.stderr, `the password is "REDACTED"`) {
		t.Fatalf("push of a REDACTED password: %v", r)
	}
}

func TestEtcdEndpoints(t *testing.T) {
	t.Setenv("DB_PASSWORD", "s3cret")
	srv := etcdtest.Start(t)
	t.Setenv("DBROUTER_ETCD_ENDPOINTS", srv.Endpoint())
	if r := runCLI(t, "push", "testdata/fleet.yaml"); r.code != exitOK {
		t.Fatalf("push with $DBROUTER_ETCD_ENDPOINTS: %v", r)
	}
	if r := runCLI(t, "show-config"); r.code != exitOK || !strings.Contains(r.stderr, "/dbrouter/config") {
		t.Fatalf("show-config with the default prefix: %v", r)
	}

	// Nothing listens on port 1 of loopback.
	start := time.Now()
	r := runCLI(t, "show-config", "--endpoints", "127.0.0.1:1", "--timeout", "500ms")
	if r.code != exitFail || !strings.Contains(r.stderr, "etcd at 127.0.0.1:1 did not answer within 500ms") {
		t.Fatalf("show-config with no etcd: %v", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("--timeout 500ms took %v", d)
	}
}
