package dbrouter

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
)

// tlsPlan is a TLSConfig loaded once: the *tls.Config its files give, and
// what decides whether two loads are the same TLS (see sameAs).
type tlsPlan struct {
	config *tls.Config // shared by the nodes of every cluster using it: clone before changing

	serverName             string
	skipVerify             bool
	caPEM, certPEM, keyPEM []byte // the files' contents as read
}

// sameAs reports whether p and q make the same TLS connections: both nil,
// or the same server name and verification and the same bytes in their
// files, wherever the files are. A file rewritten in place (a rotated
// certificate) makes a different TLS.
func (p *tlsPlan) sameAs(q *tlsPlan) bool {
	if p == nil || q == nil {
		return p == q
	}
	return p.serverName == q.serverName && p.skipVerify == q.skipVerify &&
		bytes.Equal(p.caPEM, q.caPEM) && bytes.Equal(p.certPEM, q.certPEM) && bytes.Equal(p.keyPEM, q.keyPEM)
}

// tlsLoader loads the TLS settings of one configuration: each file once,
// however many settings name it, and each distinct TLSConfig once, however
// many clusters use it.
type tlsLoader struct {
	readFile func(name string) ([]byte, error)
	files    map[string][]byte
	loaded   map[TLSConfig]*tlsPlan
}

func newTLSLoader(readFile func(name string) ([]byte, error)) *tlsLoader {
	return &tlsLoader{readFile: readFile, files: make(map[string][]byte), loaded: make(map[TLSConfig]*tlsPlan)}
}

// load returns t loaded. path is the YAML path of t, used in errors, which
// name a file only in ConfigError.Value.
func (l *tlsLoader) load(t TLSConfig, path string) (*tlsPlan, error) {
	if p, ok := l.loaded[t]; ok {
		return p, nil
	}
	p := &tlsPlan{
		config: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         t.ServerName,
			InsecureSkipVerify: t.DangerousSkipVerify, //nolint:gosec // named as dangerous, documented as test-only
		},
		serverName: t.ServerName,
		skipVerify: t.DangerousSkipVerify,
	}
	if t.CAFile != "" {
		pem, err := l.read(path+".ca_file", t.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &ConfigError{Field: path + ".ca_file", Value: t.CAFile, Msg: "no PEM certificate found"}
		}
		p.config.RootCAs, p.caPEM = pool, pem
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		certPEM, err := l.read(path+".cert_file", t.CertFile)
		if err != nil {
			return nil, err
		}
		keyPEM, err := l.read(path+".key_file", t.KeyFile)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, &ConfigError{Field: path + ".cert_file", Value: t.CertFile, Msg: fmt.Sprintf("with key_file: %v", err)}
		}
		p.config.Certificates = []tls.Certificate{cert}
		p.certPEM, p.keyPEM = certPEM, keyPEM
	case t.CertFile != "":
		return nil, &ConfigError{Field: path + ".key_file", Msg: "cert_file is set but key_file is not"}
	case t.KeyFile != "":
		return nil, &ConfigError{Field: path + ".cert_file", Msg: "key_file is set but cert_file is not"}
	}
	l.loaded[t] = p
	return p, nil
}

// read reads the file name of field, once per loader. Its error's message
// does not repeat the name, which ConfigError.Value shows: a name from
// ${VAR} must appear only as written.
func (l *tlsLoader) read(field, name string) ([]byte, error) {
	if data, ok := l.files[name]; ok {
		return data, nil
	}
	data, err := l.readFile(name)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Op + ": " + pe.Err.Error()
		}
		return nil, &ConfigError{Field: field, Value: name, Msg: msg}
	}
	l.files[name] = data
	return data, nil
}
