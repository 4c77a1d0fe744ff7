package dbrouter

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// build turns the settings into a *tls.Config, reading the files it names.
// path is the YAML path used in errors.
func (t *TLSConfig) build(path string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.DangerousSkipVerify, //nolint:gosec // named as dangerous, documented as test-only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, &ConfigError{Field: path + ".ca_file", Value: t.CAFile, Msg: err.Error()}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &ConfigError{Field: path + ".ca_file", Value: t.CAFile, Msg: "no PEM certificate found"}
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, &ConfigError{Field: path + ".cert_file", Value: t.CertFile, Msg: fmt.Sprintf("with key_file %q: %v", t.KeyFile, err)}
		}
		cfg.Certificates = []tls.Certificate{cert}
	case t.CertFile != "":
		return nil, &ConfigError{Field: path + ".key_file", Msg: "cert_file is set but key_file is not"}
	case t.KeyFile != "":
		return nil, &ConfigError{Field: path + ".cert_file", Msg: "key_file is set but cert_file is not"}
	}
	return cfg, nil
}
