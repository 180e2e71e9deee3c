package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// TLS terminates TLS on a listener. The master reads the certificate and
// key files when it loads the config (and again on every reload); what
// travels to the workers is the PEM material, never a path: a worker has
// nothing to open and no key file it could name.
type TLS struct {
	// Certificates are served by SNI: the first whose names match the
	// client's server name, else the first one (the default).
	Certificates []Certificate `json:"certificates"`
	// MinVersion is the oldest protocol accepted: "1.2" (default) or
	// "1.3". Cipher suites and key exchanges are Go's defaults (which
	// include X25519MLKEM768); nothing Go considers insecure can be
	// turned on.
	MinVersion string `json:"min_version"`
	// ClientAuth asks clients for a certificate (mutual TLS): "none"
	// (default), "request" (verified against ClientCAPEM when one is
	// sent) or "require" (a handshake without a valid one fails).
	ClientAuth string `json:"client_auth"`
	// ClientCAFile stays in the master; ClientCAPEM is what it read:
	// the CA certificates client certificates must chain to.
	ClientCAFile string `json:"-"`
	ClientCAPEM  []byte `json:"client_ca_pem,omitempty"`
	// SessionTickets: resumption by session tickets (under the master's
	// keys, shared by every worker). Default true.
	SessionTickets bool `json:"session_tickets"`
	// ALPN is what the listener offers a client by ALPN, in order of
	// preference: "h2" and "http/1.1" (default both, h2 first; h2 only
	// when the listener's http2 is on). A client that offers nothing the
	// list has is refused in the handshake; one that uses no ALPN at all
	// speaks HTTP/1.1.
	ALPN []string `json:"alpn"`
}

// Certificate is one certificate chain and its key.
type Certificate struct {
	// CertFile and KeyFile are where they were read, for messages; they
	// stay in the master.
	CertFile string `json:"-"`
	KeyFile  string `json:"-"`
	// CertPEM is the chain, leaf first; KeyPEM its private key.
	CertPEM []byte `json:"cert_pem"`
	KeyPEM  []byte `json:"key_pem"`
	// Names are the leaf's DNS names (SNI matches them, "*.example.com"
	// included); NotAfter is when it expires.
	Names    []string  `json:"names"`
	NotAfter time.Time `json:"not_after"`
}

// The protocol names a TLS listener may offer by ALPN.
const (
	ALPNHTTP2 = "h2"
	ALPNHTTP1 = "http/1.1"
)

// alpn checks an ALPN list: known protocols, each once, at least one.
func (s scope) alpn(attr string, v []string) []string {
	if len(v) == 0 {
		s.errorf(attr, "Empty value", "must name at least one protocol (%q or %q); leave it out for both", ALPNHTTP2, ALPNHTTP1)
		return []string{ALPNHTTP2, ALPNHTTP1}
	}
	for i, p := range v {
		if p != ALPNHTTP2 && p != ALPNHTTP1 {
			s.errorf(attr, "Invalid value", "%q is not one of %q, %q", p, ALPNHTTP2, ALPNHTTP1)
		} else if slices.Contains(v[:i], p) {
			s.errorf(attr, "Invalid value", "%q is listed twice", p)
		}
	}
	return v
}

// TLSVersion is the crypto/tls constant of a min_version value.
func TLSVersion(v string) uint16 {
	if v == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

type rawTLS struct {
	Certificates   []*rawCertificate `hcl:"certificate,block"`
	MinVersion     *string           `hcl:"min_version,optional"`
	ClientAuth     *string           `hcl:"client_auth,optional"`
	ClientCAFile   *string           `hcl:"client_ca_file,optional"`
	SessionTickets *bool             `hcl:"session_tickets,optional"`
	ALPN           []string          `hcl:"alpn,optional"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawCertificate struct {
	CertFile string `hcl:"cert_file"`
	KeyFile  string `hcl:"key_file"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

func (b *builder) listenerTLS(listener string, r *rawTLS) *TLS {
	s := b.scope(fmt.Sprintf("listener %q tls", listener), r.Body)
	t := &TLS{
		MinVersion:     s.enum("min_version", r.MinVersion, "1.2", "1.2", "1.3"),
		ClientAuth:     s.enum("client_auth", r.ClientAuth, "none", "none", "request", "require"),
		ClientCAFile:   s.path("client_ca_file", r.ClientCAFile, "", false),
		SessionTickets: r.SessionTickets == nil || *r.SessionTickets,
		ALPN:           []string{ALPNHTTP2, ALPNHTTP1},
	}
	if r.ALPN != nil {
		t.ALPN = s.alpn("alpn", r.ALPN)
	}
	if len(r.Certificates) == 0 {
		b.errorf(r.DefRange, "Missing certificate", "listener %q: tls needs at least one certificate block", listener)
	}
	switch {
	case t.ClientAuth != "none" && t.ClientCAFile == "":
		s.errorf("client_auth", "Missing client_ca_file", "client_auth = %q needs client_ca_file, the CA client certificates must chain to", t.ClientAuth)
	case t.ClientCAFile != "" && t.ClientAuth == "none":
		b.warnf(valueRange(r.Body, "client_ca_file"), "Unused client_ca_file",
			"listener %q: client_ca_file has no effect with client_auth = \"none\" (the default)", listener)
	case t.ClientCAFile != "":
		t.ClientCAPEM = b.clientCAs(s, t.ClientCAFile, "client_ca_file")
	}
	for _, rc := range r.Certificates {
		if c, ok := b.certificate(fmt.Sprintf("listener %q tls certificate", listener), rc); ok {
			t.Certificates = append(t.Certificates, c)
		}
	}
	return t
}

// certificate reads and checks one certificate and key (a listener's, or
// an upstream's client certificate: what names the block), reporting what
// is wrong at the attribute that names the file.
func (b *builder) certificate(what string, r *rawCertificate) (Certificate, bool) {
	s := b.scope(what, r.Body)
	c := Certificate{CertFile: s.path("cert_file", &r.CertFile, "", false), KeyFile: s.path("key_file", &r.KeyFile, "", false)}
	if c.CertFile == "" || c.KeyFile == "" {
		return c, false
	}
	var err error
	if c.CertPEM, err = os.ReadFile(c.CertFile); err != nil {
		s.errorf("cert_file", "Cannot read certificate", "%s", err)
		return c, false
	}
	if c.KeyPEM, err = os.ReadFile(c.KeyFile); err != nil {
		s.errorf("key_file", "Cannot read key", "%s", err)
		return c, false
	}
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		s.errorf("key_file", "Invalid certificate or key", "%s and %s: %s", c.CertFile, c.KeyFile, err)
		return c, false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		s.errorf("cert_file", "Invalid certificate", "%s: %s", c.CertFile, err)
		return c, false
	}
	c.Names, c.NotAfter = leaf.DNSNames, leaf.NotAfter
	if len(c.Names) == 0 && leaf.Subject.CommonName != "" {
		c.Names = []string{leaf.Subject.CommonName}
	}
	if time.Now().After(leaf.NotAfter) {
		b.warnf(valueRange(r.Body, "cert_file"), "Expired certificate",
			"%s expired on %s; peers will refuse it", c.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if fi, err := os.Stat(c.KeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		b.warnf(valueRange(r.Body, "key_file"), "Key readable by others",
			"%s has mode %v; a private key should be readable by its owner only (chmod 600)", c.KeyFile, fi.Mode().Perm())
	}
	return c, true
}

// clientCAs reads CA certificates (client_ca_file, an upstream's ca_file).
func (b *builder) clientCAs(s scope, path, attr string) []byte {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		s.errorf(attr, "Cannot read CA", "%s", err)
		return nil
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pemBytes) {
		s.errorf(attr, "Invalid CA", "%s holds no PEM certificate", path)
		return nil
	}
	return pemBytes
}

// UpstreamTLS makes an upstream's connections TLS (HTTPS backends), health
// checks included. Files are read by the master; workers get PEM.
type UpstreamTLS struct {
	// ServerName is the name verified in the servers' certificates and
	// sent as SNI; "" (default): each server's host.
	ServerName string `json:"server_name"`
	// CAPEM is the CA certificates servers' chains must lead to; nil
	// (default): the system's.
	CAFile string `json:"-"`
	CAPEM  []byte `json:"ca_pem,omitempty"`
	// InsecureSkipVerify accepts any certificate (warned at load).
	InsecureSkipVerify bool `json:"insecure_skip_verify"`
	// ClientCert is a client certificate for servers that ask; nil: none.
	ClientCert *Certificate `json:"client_cert,omitempty"`
}

// ClientConfig is the crypto/tls configuration for connecting to the
// upstream's server at addr (host:port). Only HTTP/1.1 is offered.
func (t *UpstreamTLS) ClientConfig(addr string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, NextProtos: []string{"http/1.1"}}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("server %s: %w", addr, err)
		}
		cfg.ServerName = host
	}
	if len(t.CAPEM) > 0 {
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(t.CAPEM) {
			return nil, errors.New("ca_file: no certificate")
		}
	}
	if c := t.ClientCert; c != nil {
		pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

type rawUpstreamTLS struct {
	ServerName         *string `hcl:"server_name,optional"`
	CAFile             *string `hcl:"ca_file,optional"`
	InsecureSkipVerify *bool   `hcl:"insecure_skip_verify,optional"`
	CertFile           *string `hcl:"cert_file,optional"`
	KeyFile            *string `hcl:"key_file,optional"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

func (b *builder) upstreamTLS(upstream string, r *rawUpstreamTLS) *UpstreamTLS {
	s := b.scope(fmt.Sprintf("upstream %q tls", upstream), r.Body)
	t := &UpstreamTLS{
		ServerName:         s.str("server_name", r.ServerName, ""),
		CAFile:             s.path("ca_file", r.CAFile, "", false),
		InsecureSkipVerify: r.InsecureSkipVerify != nil && *r.InsecureSkipVerify,
	}
	if t.InsecureSkipVerify {
		b.warnf(valueRange(r.Body, "insecure_skip_verify"), "Certificates not verified",
			"upstream %q: insecure_skip_verify accepts any certificate: anyone on the path can pose as the servers", upstream)
	}
	if t.CAFile != "" {
		t.CAPEM = b.clientCAs(s, t.CAFile, "ca_file")
	}
	switch {
	case (r.CertFile == nil) != (r.KeyFile == nil):
		b.errorf(r.DefRange, "Incomplete client certificate", "upstream %q: tls needs both cert_file and key_file, or neither", upstream)
	case r.CertFile != nil:
		rc := &rawCertificate{CertFile: *r.CertFile, KeyFile: *r.KeyFile, Body: r.Body, DefRange: r.DefRange}
		if c, ok := b.certificate(fmt.Sprintf("upstream %q tls", upstream), rc); ok {
			t.ClientCert = &c
		}
	}
	return t
}
