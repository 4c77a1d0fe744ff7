package dbrouter

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		DNSNames:              []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	ca, _ := writeCert(t, dir, "ca")
	cert, key := writeCert(t, dir, "client")

	cfg := &Config{
		Defaults: Settings{User: "app", TLS: &TLSConfig{CAFile: ca, CertFile: cert, KeyFile: key}},
		Clusters: map[string]ClusterConfig{
			"verified": {Nodes: []string{"db1.example:3306"}},
			"named":    {Nodes: []string{"10.0.0.1"}, Settings: Settings{TLS: &TLSConfig{CAFile: ca, ServerName: "db.example"}}},
			"insecure": {Nodes: []string{"10.0.0.2"}, Settings: Settings{TLS: &TLSConfig{DangerousSkipVerify: true}}},
		},
	}
	p, err := cfg.compile(nil, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	// Each node verifies its own host name unless server_name is set.
	for name, want := range map[string]struct {
		serverName string
		certs      int
		rootCAs    bool
		skip       bool
	}{
		"verified": {serverName: "db1.example", certs: 1, rootCAs: true},
		"named":    {serverName: "db.example", certs: 0, rootCAs: true},
		"insecure": {serverName: "", certs: 0, rootCAs: false, skip: true},
	} {
		got := p.clusters[name].nodeDriver(0).TLS
		if got == nil || got.ServerName != want.serverName || len(got.Certificates) != want.certs ||
			(got.RootCAs != nil) != want.rootCAs || got.InsecureSkipVerify != want.skip || got.MinVersion != tls.VersionTLS12 {
			t.Errorf("%s: tls.Config = %+v", name, got)
		}
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if got := hostOf("db1.example:3306"); got != "db1.example" {
		t.Errorf("hostOf = %q", got)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	cert, _ := writeCert(t, dir, "client")
	for _, tc := range []struct {
		tls  TLSConfig
		want string
	}{
		{TLSConfig{CAFile: notPEM}, `dbrouter: config: clusters.c.tls.ca_file: "` + notPEM + `": no PEM certificate found`},
		{TLSConfig{CertFile: cert, KeyFile: cert}, `dbrouter: config: clusters.c.tls.cert_file: "` + cert + `": with key_file: tls: found a certificate rather than a key in the PEM for the private key`},
		{TLSConfig{CertFile: cert, KeyFile: "/nonexistent/key.pem"}, `dbrouter: config: clusters.c.tls.key_file: "/nonexistent/key.pem": open: no such file or directory`},
		{TLSConfig{KeyFile: cert}, `dbrouter: config: clusters.c.tls.cert_file: key_file is set but cert_file is not`},
	} {
		cfg := &Config{
			Defaults: Settings{User: "app"},
			Clusters: map[string]ClusterConfig{"c": {Nodes: []string{"a"}, Settings: Settings{TLS: &tc.tls}}},
		}
		if err := cfg.Validate(); err == nil || err.Error() != tc.want {
			t.Errorf("Validate:\n\t%v\nwant\n\t%s", err, tc.want)
		}
	}
}
