package dbrouter

import (
	"crypto/tls"
	"os"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// TestTLSParamsVerifyEachNodeHost checks TLS asked for through the driver's
// own tls parameter (params: {tls: ...}) rather than a tls section: each
// node verifies its own host, not the driver's default address, which the
// driver fills in when it parses the parameters, before any node address is
// known. skip-verify and preferred keep their meaning, and a registered TLS
// configuration keeps its own server name.
func TestTLSParamsVerifyEachNodeHost(t *testing.T) {
	if err := mysql.RegisterTLSConfig("dbrouter-test-unnamed", &tls.Config{MinVersion: tls.VersionTLS12}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mysql.DeregisterTLSConfig("dbrouter-test-unnamed") })
	if err := mysql.RegisterTLSConfig("dbrouter-test-named", &tls.Config{MinVersion: tls.VersionTLS12, ServerName: "db.example"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mysql.DeregisterTLSConfig("dbrouter-test-named") })

	cfg, err := ParseConfig([]byte(`
defaults:
  user: app
  params: {tls: "true"}
clusters:
  verified:
    nodes: [db1.example:3306, "10.0.0.5", "[::1]:3307"]
  skip:
    nodes: [db2.example]
    params: {tls: skip-verify}
  preferred:
    nodes: [db3.example]
    params: {tls: preferred}
  registered:
    nodes: [db4.example, db5.example]
    params: {tls: dbrouter-test-unnamed}
  registered-named:
    nodes: [db6.example]
    params: {tls: dbrouter-test-named}
  plain:
    nodes: [db7.example]
    params: {tls: "false"}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := cfg.compile(nil, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		serverName string
		skip       bool
		fallback   bool
	}
	for name, wants := range map[string][]want{
		"verified":         {{serverName: "db1.example"}, {serverName: "10.0.0.5"}, {serverName: "::1"}},
		"skip":             {{skip: true}},
		"preferred":        {{skip: true, fallback: true}},
		"registered":       {{serverName: "db4.example"}, {serverName: "db5.example"}},
		"registered-named": {{serverName: "db.example"}}, // its own
	} {
		for i, w := range wants {
			mc := p.clusters[name].nodeDriver(i)
			if mc.TLS == nil {
				t.Errorf("%s node %d: no TLS", name, i)
				continue
			}
			if mc.TLS.ServerName != w.serverName || mc.TLS.InsecureSkipVerify != w.skip || mc.AllowFallbackToPlaintext != w.fallback {
				t.Errorf("%s node %d (%s): ServerName %q, InsecureSkipVerify %v, AllowFallbackToPlaintext %v; want %q, %v, %v",
					name, i, mc.Addr, mc.TLS.ServerName, mc.TLS.InsecureSkipVerify, mc.AllowFallbackToPlaintext, w.serverName, w.skip, w.fallback)
			}
		}
	}
	if mc := p.clusters["plain"].nodeDriver(0); mc.TLS != nil {
		t.Errorf("plain: TLS %+v, want none", mc.TLS)
	}
	// The nodes of one cluster share their base configuration: building
	// one node's must not change another's.
	if a, b := p.clusters["verified"].nodeDriver(0), p.clusters["verified"].nodeDriver(1); a.TLS == b.TLS {
		t.Error("nodes share one *tls.Config")
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}
