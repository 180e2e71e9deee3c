package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"reflect"
	"syscall"
	"time"
	"unsafe"

	"github.com/pingora-go/pingora/config"
)

// TLS termination. A TLS listener's connection, once its PROXY header (if
// any) is read, becomes a crypto/tls server connection, which the HTTP/1
// side reads and writes like any net.Conn (crypto/tls itself reads and
// writes the socket with raw system calls: sockConn). Idle, they wait
// without their buffers and park like plain ones, their TLS state with
// them (awaitTLS) but without crypto/tls's input buffers (dropTLSInput).
// The handshake runs first, under client_header_timeout like a request
// head.
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

// tlsInputFields is where crypto/tls.Conn keeps its input buffers:
// rawInput (records as read from the socket), input (the plaintext of the
// last application data record, a slice of rawInput's memory) and hand
// (handshake messages). Both buffers grow to the largest record and
// message the connection has seen, which on an idle connection is its
// ClientHello, and keep that capacity for good: 3.5 kB of an idle TLS
// connection's 6.8 kB of heap (2 kB and 1.5 kB; 4 kB after a resumption,
// whose ClientHello carries the ticket; up to 17 kB each after a
// full-size record), where the rest is the connection's state proper. No
// API releases them, so dropTLSInput does, through these offsets; ok is
// false, and nothing is dropped, should a Go release rename or retype the
// fields (TestTLSInputFieldsFound says so).
type tlsInputFields struct {
	rawInput, input, hand uintptr
	ok                    bool
}

// tlsInput is found once; it is never written afterwards.
var tlsInput = findTLSInputFields()

func findTLSInputFields() tlsInputFields {
	t := reflect.TypeFor[tls.Conn]()
	buf, rd := reflect.TypeFor[bytes.Buffer](), reflect.TypeFor[bytes.Reader]()
	raw, ok1 := t.FieldByName("rawInput")
	in, ok2 := t.FieldByName("input")
	hand, ok3 := t.FieldByName("hand")
	if !ok1 || !ok2 || !ok3 || raw.Type != buf || in.Type != rd || hand.Type != buf {
		return tlsInputFields{}
	}
	return tlsInputFields{rawInput: raw.Offset, input: in.Offset, hand: hand.Offset, ok: true}
}

// dropTLSInput gives tc's input buffers back to the garbage collector
// when they hold nothing (crypto/tls makes new ones as the next record
// comes: bytes.Buffer's zero value is an empty buffer). It must run while
// nothing else uses tc: on a connection that is parking, whose last read
// timed out. A buffer that still holds something (part of a record) is
// kept, and so is rawInput while input, which points into it, has
// plaintext left.
func dropTLSInput(tc *tls.Conn) {
	f := tlsInput
	if !f.ok {
		return
	}
	p := unsafe.Pointer(tc)
	raw := (*bytes.Buffer)(unsafe.Add(p, f.rawInput))
	in := (*bytes.Reader)(unsafe.Add(p, f.input))
	hand := (*bytes.Buffer)(unsafe.Add(p, f.hand))
	if raw.Len() == 0 && in.Len() == 0 {
		*raw, *in = bytes.Buffer{}, bytes.Reader{}
	}
	if hand.Len() == 0 {
		*hand = bytes.Buffer{}
	}
}
