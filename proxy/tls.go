package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/pingora-go/pingora/config"
)

// TLS termination. A TLS listener's connection, once its PROXY header (if
// any) is read, becomes a crypto/tls server connection, which the HTTP/1
// side reads and writes like any net.Conn (crypto/tls itself reads and
// writes the socket with raw system calls: sockConn). Idle, they wait
// without their buffers and park like plain ones, their TLS state with
// them (awaitTLS). The handshake runs first, under client_header_timeout
// like a request head.
//
// The certificates come in the config as PEM (the master read the files;
// see config.TLS): crypto/tls picks one per handshake by the client's
// server name among their names, the first one otherwise. ALPN offers the
// listener's alpn list; a client that chooses h2 is served by h2.go.

// serverTLS builds a listener's tls.Config.
func serverTLS(name string, t *config.TLS) (*tls.Config, error) {
	certs := make([]tls.Certificate, 0, len(t.Certificates))
	for i, c := range t.Certificates {
		pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("listener %q: certificate %d: %w", name, i+1, err)
		}
		certs = append(certs, pair)
	}
	cfg := &tls.Config{
		Certificates:           certs,
		MinVersion:             config.TLSVersion(t.MinVersion),
		NextProtos:             t.ALPN,
		SessionTicketsDisabled: !t.SessionTickets,
	}
	if t.ClientAuth != "none" {
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(t.ClientCAPEM) {
			return nil, fmt.Errorf("listener %q: client_ca_file: no certificate", name)
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if t.ClientAuth == "require" {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

// SetSessionTicketKeys makes every TLS listener issue session tickets
// under keys[0] and accept tickets under any of keys (the master's, shared
// by all workers and generations: a client resumes wherever it lands).
// Without keys each listener keeps crypto/tls's own, per process.
func (p *Proxy) SetSessionTicketKeys(keys [][32]byte) {
	if len(keys) == 0 {
		return
	}
	for _, ls := range p.listeners {
		if ls.tls != nil {
			ls.tls.SetSessionTicketKeys(keys)
		}
	}
}

// handshake makes the new connection a TLS server connection, runs its
// handshake under client_header_timeout and counts the outcome; !ok: it
// failed, and the connection ends. h2: the client chose HTTP/2.
func (cc *clientConn) handshake() (ok, h2 bool) {
	// TLS writes go through crypto/tls, not sockIO, which sets
	// TCP_NODELAY lazily: set it now, or Nagle's algorithm holds small
	// records back until the peer's ACK.
	cc.io.noDelay()
	tc := tls.Server(rawSock(cc.c), cc.ls.tls)
	cc.p.mu.Lock() // cut reads c under the lock
	cc.c = tc
	cc.p.mu.Unlock()
	cc.io.reset(tc)
	to := cc.ls.cfg.ClientHeaderTimeout
	setDeadlines(cc.c, &cc.rdl, &cc.wdl, time.Now().Add(to), to)
	err := tc.Handshake()
	counts := &cc.p.stats.tls
	if err != nil {
		switch {
		case isTimeout(err):
			counts[config.TLSHandshakeFailedTimeout].Add(1)
		case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
			counts[config.TLSHandshakeFailedClosed].Add(1)
		default:
			counts[config.TLSHandshakeFailedProtocol].Add(1)
		}
		return false, false
	}
	cs := tc.ConnectionState()
	if cs.DidResume {
		counts[config.TLSHandshakeResumed].Add(1)
	} else {
		counts[config.TLSHandshakeFull].Add(1)
	}
	if cs.Version == tls.VersionTLS13 {
		counts[config.TLSVersion13].Add(1)
	} else {
		counts[config.TLSVersion12].Add(1)
	}
	if cs.NegotiatedProtocol == config.ALPNHTTP2 {
		counts[config.TLSALPNHTTP2].Add(1)
		return true, true
	}
	counts[config.TLSALPNHTTP1].Add(1)
	return true, false
}
