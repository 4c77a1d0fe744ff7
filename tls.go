package dbrouter

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// build turns the settings into a *tls.Config, reading the files it names.
// path is the YAML path used in errors, which name the file only in
// ConfigError.Value.
func (t *TLSConfig) build(path string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.DangerousSkipVerify, //nolint:gosec // named as dangerous, documented as test-only
	}
	if t.CAFile != "" {
		pem, err := readTLSFile(path+".ca_file", t.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &ConfigError{Field: path + ".ca_file", Value: t.CAFile, Msg: "no PEM certificate found"}
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		certPEM, err := readTLSFile(path+".cert_file", t.CertFile)
		if err != nil {
			return nil, err
		}
		keyPEM, err := readTLSFile(path+".key_file", t.KeyFile)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, &ConfigError{Field: path + ".cert_file", Value: t.CertFile, Msg: fmt.Sprintf("with key_file: %v", err)}
		}
		cfg.Certificates = []tls.Certificate{cert}
	case t.CertFile != "":
		return nil, &ConfigError{Field: path + ".key_file", Msg: "cert_file is set but key_file is not"}
	case t.KeyFile != "":
		return nil, &ConfigError{Field: path + ".cert_file", Msg: "key_file is set but cert_file is not"}
	}
	return cfg, nil
}

// readTLSFile reads the file name of field. Its error's message does not
// repeat the name, which ConfigError.Value shows: a name from ${VAR} must
// appear only as written.
func readTLSFile(field, name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Op + ": " + pe.Err.Error()
		}
		return nil, &ConfigError{Field: field, Value: name, Msg: msg}
	}
	return data, nil
}
