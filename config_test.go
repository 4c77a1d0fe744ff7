package dbrouter

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigValid(t *testing.T) {
	t.Setenv("DBROUTER_TEST_PASSWORD", "pa:ss#word")
	cfg, err := LoadConfig("testdata/config/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Defaults.Password; got != "pa:ss#word" {
		t.Errorf("password = %q, want the environment's value", got)
	}
	c1 := cfg.effective("cust-1")
	if c1.User != "app" || c1.Database != "shop" || c1.ConnectTimeout != 500*time.Millisecond || c1.MaxIdleConns != 4 ||
		c1.Failback != FailbackNever || c1.ReadPolicy != ReadRoundRobin {
		t.Errorf("cust-1 effective = %v", c1)
	}
	c2 := cfg.effective("cust-2")
	if c2.Failback != FailbackAuto || c2.ReadPolicy != ReadWriter {
		t.Errorf("cust-2 effective failback %q, read policy %q: want the defaults", c2.Failback, c2.ReadPolicy)
	}
	if c1.TxAttempts != DefaultTxAttempts || c2.TxAttempts != 3 {
		t.Errorf("tx_attempts: cust-1 %d, cust-2 %d; want %d (the default) and 3", c1.TxAttempts, c2.TxAttempts, DefaultTxAttempts)
	}
	if c2.User != "app2" || c2.ReadTimeout != 5*time.Second || c2.Params["parseTime"] != "false" || c2.Params["interpolateParams"] != "true" {
		t.Errorf("cust-2 effective = %v", c2)
	}
	if c2.TLS == nil || c2.TLS.ServerName != "db.example" {
		t.Errorf("cust-2 TLS = %+v", c2.TLS)
	}
	p, err := cfg.compile(nil, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	mc := p.clusters["cust-2"].nodeDriver(0)
	if mc.ParseTime || !mc.InterpolateParams || mc.TLS == nil || mc.Timeout != DefaultConnectTimeout && mc.Timeout != 500*time.Millisecond {
		t.Errorf("driver config = parseTime %v interpolate %v tls %v timeout %v", mc.ParseTime, mc.InterpolateParams, mc.TLS, mc.Timeout)
	}
	if addr, _ := normalizeAddr(cfg.Clusters["cust-1"].Nodes[2]); addr != "10.0.1.3:3306" {
		t.Errorf("default port: %s", addr)
	}
}

func TestLoadConfigDefaultFromEnvFallback(t *testing.T) {
	// DBROUTER_TEST_PASSWORD unset: ${VAR:-default} gives the default.
	os.Unsetenv("DBROUTER_TEST_PASSWORD")
	cfg, err := LoadConfig("testdata/config/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Defaults.Password != "s3cret-default" {
		t.Errorf("password = %q", cfg.Defaults.Password)
	}
}

// TestLoadConfigErrors loads every testdata/config/bad-*.yaml; the first line
// of each says the error it must produce.
func TestLoadConfigErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/config/bad-*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := firstLineWant(t, f)
			_, err := LoadConfig(f)
			if err == nil {
				t.Fatalf("loaded, want error containing %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n\t%v\nwant it to contain:\n\t%s", err, want)
			}
			if !strings.Contains(err.Error(), f) {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

func firstLineWant(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	want, ok := strings.CutPrefix(sc.Text(), "# error: ")
	if !ok {
		t.Fatalf("%s: first line must be '# error: <text>'", path)
	}
	return want
}

func TestConfigErrorType(t *testing.T) {
	cfg := &Config{
		Defaults: Settings{User: "app"},
		Clusters: map[string]ClusterConfig{"c1": {Nodes: []string{"db1:0"}}},
	}
	err := cfg.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "clusters.c1.nodes[0]" || ce.Value != "db1:0" {
		t.Fatalf("err = %#v, want *ConfigError for clusters.c1.nodes[0] db1:0", err)
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "1", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct{ in, want, err string }{
		{in: "x${A}y", want: "x1y"},
		{in: "${A}${A}", want: "11"},
		{in: "${EMPTY:-d}", want: ""},
		{in: "${MISSING:-d:e}", want: "d:e"},
		{in: "$${A}", want: "${A}"},
		{in: "cost $5", want: "cost $5"},
		{in: "${MISSING}", err: "environment variable MISSING is not set"},
		{in: "${A", err: "unterminated"},
		{in: "${1A}", err: "invalid environment variable name"},
		{in: "${}", err: "invalid environment variable name"},
	} {
		got, err := expandEnv(tc.in, lookup)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("expandEnv(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("expandEnv(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestEnvValueStaysString(t *testing.T) {
	// A password that YAML would read as a number or bool stays a string.
	t.Setenv("DBROUTER_TEST_PW", "0123")
	cfg, err := ParseConfig([]byte("defaults:\n  user: app\n  password: ${DBROUTER_TEST_PW}\nclusters: {c: {nodes: [a]}}"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Defaults.Password != "0123" {
		t.Errorf("password = %q", cfg.Defaults.Password)
	}
}

// TestPasswordNeverPrinted formats configurations holding a password in
// every way a program may print them: fmt with every verb and common flags,
// slog's text and JSON handlers, json.Marshal, for Config, ClusterConfig and
// Settings as values, pointers and nested in structs, maps and slices. The
// password must appear in none, as is or hex-encoded.
func TestPasswordNeverPrinted(t *testing.T) {
	const pw = "hunter2-very-secret"
	cfg := &Config{
		Defaults: Settings{User: "app", Password: pw, TLS: &TLSConfig{ServerName: "db"}},
		Clusters: map[string]ClusterConfig{"c1": {Nodes: []string{"127.0.0.1:1"}, Settings: Settings{Password: pw}}},
		OnEvent:  func(Event) {},
	}
	cc := cfg.Clusters["c1"]
	leaks := func(s string) bool {
		return strings.Contains(s, pw) || strings.Contains(s, hex.EncodeToString([]byte(pw))) ||
			strings.Contains(s, strings.ToUpper(hex.EncodeToString([]byte(pw))))
	}
	for name, s := range map[string]string{
		"Config.String":        cfg.String(),
		"%v Config":            fmt.Sprintf("%v", *cfg),
		"%+v *Config":          fmt.Sprintf("%+v", cfg),
		"%#v *Config":          fmt.Sprintf("%#v", cfg),
		"%#v ClusterConfig":    fmt.Sprintf("%#v", cc),
		"%#v Settings":         fmt.Sprintf("%#v", cfg.Defaults),
		"ClusterConfig.String": cc.String(),
		"Settings.String":      cfg.Defaults.String(),
	} {
		if leaks(s) {
			t.Errorf("%s shows the password: %s", name, s)
		}
		if !strings.Contains(s, "REDACTED") {
			t.Errorf("%s does not say REDACTED: %s", name, s)
		}
	}

	values := map[string]any{
		"*Config":                   cfg,
		"Config":                    *cfg,
		"Settings":                  cfg.Defaults,
		"*Settings":                 &cfg.Defaults,
		"ClusterConfig":             cc,
		"*ClusterConfig":            &cc,
		"Config in a struct":        struct{ Cfg Config }{*cfg},
		"*Config in a struct":       struct{ Cfg *Config }{cfg},
		"Config in a map":           map[string]Config{"a": *cfg},
		"*Config in a map":          map[string]*Config{"a": cfg},
		"Settings in a slice":       []Settings{cfg.Defaults},
		"ClusterConfig in a struct": struct{ C ClusterConfig }{cc},
		"Config in an interface":    struct{ V any }{*cfg},
	}
	// Every verb but %p and %w: fmt prints their operand, if it is not a
	// pointer or an error, without calling any of its methods (go vet
	// reports both uses), so no method can redact it.
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%+q", "%#q", "%x", "%X", "% x", "%#x", "%d", "%+d",
		"%o", "%O", "%b", "%c", "%U", "%e", "%f", "%g", "%t", "%T", "%10v", "%-40s", "%.3s", "%08v", "%z"}
	for name, v := range values {
		for _, verb := range verbs {
			if s := fmt.Sprintf(verb, v); leaks(s) {
				t.Errorf("fmt %s of %s shows the password: %s", verb, name, s)
			}
		}
		if s := fmt.Sprint(v); leaks(s) {
			t.Errorf("fmt.Sprint of %s shows the password: %s", name, s)
		}
		if s := fmt.Sprintln(v); leaks(s) {
			t.Errorf("fmt.Sprintln of %s shows the password: %s", name, s)
		}
		for hname, h := range map[string]func(io.Writer) slog.Handler{
			"text": func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
			"JSON": func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
		} {
			var b strings.Builder
			slog.New(h(&b)).Info("config", "cfg", v, slog.Group("g", "cfg", v))
			if leaks(b.String()) {
				t.Errorf("slog %s handler shows the password of %s: %s", hname, name, b.String())
			}
			if strings.Contains(b.String(), "LogValue panicked") || strings.Contains(b.String(), "!ERROR") {
				t.Errorf("slog %s handler could not log %s: %s", hname, name, b.String())
			}
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Errorf("json.Marshal of %s: %v", name, err)
		}
		if leaks(string(out)) {
			t.Errorf("json.Marshal of %s shows the password: %s", name, out)
		}
	}

	// json.Marshal keeps every other field; a ClusterConfig keeps its
	// nodes although the Settings it embeds marshals itself.
	out, err := json.Marshal(cc)
	if err != nil || !strings.Contains(string(out), `"Nodes":["127.0.0.1:1"]`) || !strings.Contains(string(out), `"Password":"REDACTED"`) {
		t.Errorf("json.Marshal(ClusterConfig) = %s, %v; want Nodes and a redacted Password", out, err)
	}
	out, err = json.Marshal(cfg)
	if err != nil || !strings.Contains(string(out), `"User":"app"`) || !strings.Contains(string(out), `"ServerName":"db"`) {
		t.Errorf("json.Marshal(*Config) = %s, %v; want the other fields", out, err)
	}
	// Formatting does not change the Config.
	if cfg.Defaults.Password != pw || cfg.Clusters["c1"].Password != pw {
		t.Error("formatting changed the passwords")
	}
}

// TestDSNAsNodeHidesPassword: a DSN given as a node is rejected, naming the
// field, without its password.
func TestDSNAsNodeHidesPassword(t *testing.T) {
	const pw = "S3cr3t-in-a-dsn"
	for _, node := range []string{
		"app:" + pw + "@tcp(10.0.0.1:3306)/shop",
		"app:" + pw + "@10.0.0.1:3306",
		"mysql://app:" + pw + "@10.0.0.1:3306/shop",
		"app:p@ss:" + pw + "@tcp(10.0.0.1)/",
	} {
		_, err := ParseConfig([]byte("defaults: {user: app}\nclusters: {c1: {nodes: ['" + node + "']}}"))
		if err == nil || strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "p@ss") ||
			!strings.Contains(err.Error(), "clusters.c1.nodes[0]") || !strings.Contains(err.Error(), "not a DSN") {
			t.Errorf("node %q: err = %v; want the field named, the password not shown", node, err)
		}
	}
	cfg := &Config{Defaults: Settings{User: "app"}, Clusters: map[string]ClusterConfig{
		"c1": {Nodes: []string{"app:" + pw + "@tcp(10.0.0.1:3306)/shop"}}}}
	want := `dbrouter: config: clusters.c1.nodes[0]: "app:REDACTED@tcp(10.0.0.1:3306)/shop": node address must be host:port, not a DSN`
	if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Validate = %v, want %s...", err, want)
	}
}

// TestNormalizeAddr covers node addresses, among them unbracketed IPv6
// addresses: "::1:3306" was taken as the address ::1:3306 on port 3306.
func TestNormalizeAddr(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "db1", want: "db1:3306"},
		{in: "db1:3307", want: "db1:3307"},
		{in: "db1:03307", want: "db1:3307"},
		{in: "db1:+3307", want: "db1:3307"},
		{in: "10.0.0.1", want: "10.0.0.1:3306"},
		{in: "[::1]", want: "[::1]:3306"},
		{in: "[::1]:3307", want: "[::1]:3307"},
		{in: "[fe80::1%eth0]:3306", want: "[fe80::1%eth0]:3306"},
		{in: "::1:3306", err: "more than one colon: an IPv6 address must be in brackets; write [::1]:3306 for port 3306 of ::1, or [::1:3306] for the address ::1:3306"},
		{in: "2001:db8::7:3306", err: "write [2001:db8::7]:3306 for port 3306 of 2001:db8::7, or [2001:db8::7:3306]"},
		{in: "::ffff:10.0.0.1:3306", err: "in brackets; write [::ffff:10.0.0.1]:3306"},
		{in: "fe80::1", err: "in brackets; write [fe80::1] or [fe80::1]:3306"},
		{in: "::1", err: "in brackets; write [::1] or [::1]:3306"},
		{in: "a:b:c", err: "in brackets, e.g. [::1]:3306"},
		{in: "[::1", err: "brackets must enclose the whole host"},
		{in: "::1]", err: "more than one colon"},
		{in: "db1]", err: "brackets must enclose the whole host"},
		{in: ":3306", err: "node address has no host"},
		{in: "db1:99999", err: "port must be a number from 1 to 65535"},
		{in: "db1:", err: "port must be a number from 1 to 65535"},
		{in: "db!1:3306", err: `the host has a character that no host name or IP address has: '!'`},
		{in: " db1", err: "no spaces"},
	} {
		got, err := normalizeAddr(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("normalizeAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("normalizeAddr(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.err)
		}
	}
}

// TestEnvExpansionErrorHidesPassword: a ${ that cannot be expanded is an
// error naming the field's path; in a password, the text is never shown.
func TestEnvExpansionErrorHidesPassword(t *testing.T) {
	const secret = "S3cr3tPart"
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error
		hidden     []string // not in the error
	}{
		{"unterminated in defaults.password",
			"defaults: {user: app, password: \"" + secret + "${oops\"}\nclusters: {c1: {nodes: [a]}}",
			[]string{`defaults.password: has a "${" that starts no valid ${VAR} reference (line 1)`, "not shown"},
			[]string{secret, "oops"}},
		{"bad name in a cluster's password",
			"defaults: {user: app}\nclusters:\n  c1:\n    nodes: [a]\n    password: \"x${bad name}" + secret + "\"",
			[]string{`clusters.c1.password: has a "${" that starts no valid ${VAR} reference (line 5)`},
			[]string{secret, "bad name"}},
		{"unset variable inside a password",
			"defaults: {user: app, password: \"" + secret + "${DBROUTER_SURELY_UNSET}\"}\nclusters: {c1: {nodes: [a]}}",
			[]string{"defaults.password: refers to an environment variable that is not set (line 1)"},
			[]string{secret, "DBROUTER_SURELY_UNSET"}},
		{"unset variable as the whole password",
			"defaults: {user: app, password: \"${DBROUTER_SURELY_UNSET}\"}\nclusters: {c1: {nodes: [a]}}",
			[]string{"defaults.password: environment variable DBROUTER_SURELY_UNSET is not set (line 1); write ${DBROUTER_SURELY_UNSET:-default} for a default"},
			nil},
		{"password under a merge key",
			"base: &b {password: \"" + secret + "${\"}\ndefaults: {<<: *b, user: app}\nclusters: {c1: {nodes: [a]}}",
			[]string{"base.password: has a"},
			[]string{secret}},
		{"another field may be quoted",
			"defaults: {user: app}\nclusters: {c1: {nodes: [a, \"db${\"]}}",
			[]string{`clusters.c1.nodes[1]: unterminated ${ in "${" (line 2)`},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				t.Fatal("parsed, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, h := range tc.hidden {
				if strings.Contains(err.Error(), h) {
					t.Errorf("error %q shows %q", err, h)
				}
			}
		})
	}
}

// TestSecretInWrongFieldNotShown: ${DB_PASSWORD} written in a field other
// than password is an error that shows the field's text as written, never
// the password it expands to.
func TestSecretInWrongFieldNotShown(t *testing.T) {
	for _, secret := range []string{"S3cr3t!pw", "S3cr3t@pw/x", "S3:cr3t:pw", "fe80::5eC3", "S3cr3t:99999", "S3cr3t pw", "12345"} {
		t.Setenv("DB_PASSWORD", secret)
		for _, tc := range []struct{ name, yaml, want string }{
			{"node", "clusters: {c1: {nodes: [a, '${DB_PASSWORD}']}}", `clusters.c1.nodes[1]: "${DB_PASSWORD}": `},
			{"node with a port", "clusters: {c1: {nodes: ['${DB_PASSWORD}:3306']}}", `clusters.c1.nodes[0]: "${DB_PASSWORD}:3306": `},
			{"node through an alias", "defaults: {user: app, database: &p '${DB_PASSWORD}'}\nclusters: {c1: {nodes: [*p]}}", `clusters.c1.nodes[0]: "${DB_PASSWORD}": `},
			{"integer", "clusters: {c1: {nodes: [a], max_open_conns: '${DB_PASSWORD}'}}", `clusters.c1.max_open_conns: "${DB_PASSWORD}": want an integer`},
			{"duration", "clusters: {c1: {nodes: [a], connect_timeout: '${DB_PASSWORD}'}}", `clusters.c1.connect_timeout: "${DB_PASSWORD}": want a duration`},
			{"bool", "clusters: {c1: {nodes: [a], health: {disabled: '${DB_PASSWORD}'}}}", `clusters.c1.health.disabled: "${DB_PASSWORD}": want true or false`},
			{"failback", "clusters: {c1: {nodes: [a], failback: '${DB_PASSWORD}'}}", `clusters.c1.failback: "${DB_PASSWORD}": unknown failback`},
			{"shard map entry", "clusters: {c1: {nodes: [a]}}\nshard_maps: {m: {strategy: directory, entries: {k: '${DB_PASSWORD}'}}}", `shard_maps.m.entries.k: "${DB_PASSWORD}": unknown cluster`},
			{"TLS CA file", "clusters: {c1: {nodes: [a], tls: {ca_file: '${DB_PASSWORD}'}}}", `clusters.c1.tls.ca_file: "${DB_PASSWORD}": open: no such file or directory`},
			{"TLS cert file", "clusters: {c1: {nodes: [a], tls: {cert_file: '${DB_PASSWORD}', key_file: /nonexistent}}}", `clusters.c1.tls.cert_file: "${DB_PASSWORD}": open: no such file or directory`},
			{"TLS key file", "defaults: {user: app, tls: {cert_file: testdata/config/valid.yaml, key_file: '${DB_PASSWORD}'}}\nclusters: {c1: {nodes: [a]}}", `defaults.tls.key_file: "${DB_PASSWORD}": open: no such file or directory`},
			{"bool parameter", "clusters: {c1: {nodes: [a], params: {parseTime: '${DB_PASSWORD}'}}}", `clusters.c1.params.parseTime: "${DB_PASSWORD}": invalid bool value`},
			{"duration parameter", "defaults: {user: app, params: {timeout: '${DB_PASSWORD}'}}\nclusters: {c1: {nodes: [a]}}", `defaults.params.timeout: "${DB_PASSWORD}": `},
			{"time zone parameter", "clusters: {c1: {nodes: [a], params: {loc: '${DB_PASSWORD}'}}}", `clusters.c1.params.loc: "${DB_PASSWORD}": unknown time zone`},
		} {
			t.Run(secret+"/"+tc.name, func(t *testing.T) {
				yaml := tc.yaml
				if !strings.HasPrefix(yaml, "defaults:") {
					yaml = "defaults: {user: app}\n" + yaml
				}
				_, err := ParseConfig([]byte(yaml))
				if err == nil {
					if secret == "12345" && strings.HasPrefix(tc.name, "node") {
						return // a valid host name: accepted, nothing printed
					}
					t.Fatalf("parsed, want an error")
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q does not contain %q", err, tc.want)
				}
				for _, part := range strings.FieldsFunc(secret, func(r rune) bool { return strings.ContainsRune(":@/ !", r) }) {
					if len(part) >= 3 && strings.Contains(err.Error(), part) {
						t.Errorf("error %q shows %q of the password %q", err, part, secret)
					}
				}
			})
		}
	}
}

// TestTypeErrors: a value of the wrong kind is an error naming the field,
// what it wants and the value; merges and aliases still work.
func TestTypeErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, err string }{
		{"clusters: {c1: {nodes: [a], max_open_conns: ten}}", `clusters.c1.max_open_conns: "ten": want an integer (line 2)`},
		{"clusters: {c1: {nodes: [a], max_open_conns: [1]}}", `clusters.c1.max_open_conns: want an integer, not a list (line 2)`},
		{"clusters: {c1: {nodes: [a], read_timeout: 30}}", `clusters.c1.read_timeout: "30": want a duration with a unit, e.g. "5s" (line 2)`},
		{"clusters: {c1: {nodes: [a], health: {interval: 1 s}}}", `clusters.c1.health.interval: "1 s": want a duration with a unit`},
		{"clusters: {c1: {nodes: [a], health: {disabled: 1}}}", `clusters.c1.health.disabled: "1": want true or false (line 2)`},
		{"clusters: {c1: {nodes: [a], health: {disabled: 'true'}}}", `clusters.c1.health.disabled: "true": want true or false (remove the quotes) (line 2)`},
		{"clusters: {c1: {nodes: a}}", `clusters.c1.nodes: "a": want a list (line 2)`},
		{"clusters: {c1: {nodes: [[a]]}}", `clusters.c1.nodes[0]: want a string, not a list (line 2)`},
		{"clusters: {c1: {nodes: [a], tls: true}}", `clusters.c1.tls: "true": want a map of field: value (line 2)`},
		{"clusters: {c1: {nodes: [a], params: [a]}}", `clusters.c1.params: want a map, not a list (line 2)`},
		{"clusters: {c1: {nodes: [a], password: [x]}}", `clusters.c1.password: want a string, not a list (line 2)`},
		{"clusters: {c1: {nodes: [a], password: {x: y}}}", `clusters.c1.password: want a string, not a map (line 2)`},
		{"clusters: c1", `clusters: "c1": want a map (line 2)`},
		{"clusters: {c1: {nodes: [a], <<: [a]}}", `clusters.c1: a merge (<<) wants a map or a list of maps (line 2)`},
		{"clusters: {[c1]: {nodes: [a]}}", `clusters: a key must be a name, not a list or map (line 2)`},
		{"shard_maps: {m: {strategy: hash, buckets: many}}\nclusters: {c1: {nodes: [a]}}", `shard_maps.m.buckets: "many": want an integer (line 2)`},
	} {
		_, err := ParseConfig([]byte("defaults: {user: app}\n" + tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseConfig(%q):\n\t%v\nwant\n\t%s", tc.yaml, err, tc.err)
		}
	}
	for _, ok := range []string{
		"defaults: &d {user: u, max_open_conns: 5}\nclusters: {c: {<<: *d, nodes: ['[::1]:1']}}",
		"defaults: {user: u, health: {interval: ~, disabled: null}, tls: }\nclusters: {c: {nodes: [a], max_lag: 0s}}",
		"defaults: {user: u}\nclusters: {c: {nodes: [a], health: {disabled: yes}}}",
		"defaults: {user: u}\nclusters: {c: {nodes: [a]}, <<: {d: {nodes: [b]}}}",
		"defaults: {user: u}\nclusters: {c: {nodes: [a], <<: [{max_idle_conns: 2}, {read_timeout: 1s}]}}",
	} {
		if _, err := ParseConfig([]byte(ok)); err != nil {
			t.Errorf("ParseConfig(%q) = %v", ok, err)
		}
	}
}
