package proxy_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/proxy"
)

// testCerts is where the test certificates are (see its README).
func testCerts(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "config", "testdata", "tls"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// tlsProxy is a proxy with one TLS listener "https" serving certificates
// a (a.example, *.a.example; the default) and b (b.example), routing to be.
func tlsProxy(t *testing.T, be *backend, minVersion string) *proxy.Running {
	t.Helper()
	return startProxy(t, expand(`
listener "https" {
  address = "127.0.0.1:1"
  tls {
    certificate {
      cert_file = "@CERTS@/a.pem"
      key_file  = "@CERTS@/a.key"
    }
    certificate {
      cert_file = "@CERTS@/b.pem"
      key_file  = "@CERTS@/b.key"
    }
    min_version = "@MIN@"
  }
}
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"CERTS": testCerts(t), "BE": be.Addr, "MIN": minVersion}), proxy.Options{})
}

// oneCertProxy is a proxy with one TLS listener "https" serving certificate
// a, its listener block extended by listenerExtra and its tls block by
// tlsExtra, routing to be.
func oneCertProxy(t *testing.T, be *backend, listenerExtra, tlsExtra string, opts proxy.Options) *proxy.Running {
	t.Helper()
	return startProxy(t, expand(`
listener "https" {
  address = "127.0.0.1:1"
  @LISTENER@
  tls {
    certificate {
      cert_file = "@CERTS@/a.pem"
      key_file  = "@CERTS@/a.key"
    }
    @TLS@
  }
}
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"CERTS": testCerts(t), "BE": be.Addr, "LISTENER": listenerExtra, "TLS": tlsExtra}), opts)
}

// certPool trusts the test certificates.
func certPool(t *testing.T) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, f := range []string{"a.pem", "b.pem"} {
		b, err := os.ReadFile(filepath.Join(testCerts(t), f))
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(b)
	}
	return pool
}

// serialOf is the serial number of the certificate a handshake with
// serverName gets.
func serialOf(t *testing.T, addr, serverName string) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake for %q: %v", serverName, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// A TLS listener terminates TLS and proxies as a plain one does; the
// upstream learns that the client used https.
func TestE2ETLSTerminates(t *testing.T) {
	be := startBackend(t, "be")
	rp := tlsProxy(t, be, "1.2")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certPool(t), ServerName: "a.example", NextProtos: []string{"http/1.1"}}}}
	defer client.CloseIdleConnections()
	for i := 0; i < 3; i++ { // keep-alive: the same TLS connection
		resp, err := client.Get("https://" + rp.Addr("https") + "/tls?i=1")
		if err != nil {
			t.Fatal(err)
		}
		var seen struct {
			Header http.Header `json:"header"`
		}
		err = json.NewDecoder(resp.Body).Decode(&seen)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		if got := seen.Header.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("X-Forwarded-Proto %q, want https", got)
		}
		if resp.TLS == nil || resp.TLS.NegotiatedProtocol != "http/1.1" {
			t.Errorf("connection state %+v: want ALPN http/1.1", resp.TLS)
		}
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("backend saw %d connections, want 1 (pooled)", n)
	}
}

// The certificate is chosen by the client's server name, wildcards
// included; an unknown or missing name gets the first one.
func TestE2ETLSChoosesCertificateBySNI(t *testing.T) {
	rp := tlsProxy(t, startBackend(t, "be"), "1.2")
	addr := rp.Addr("https")
	for name, want := range map[string]int64{"a.example": 1001, "www.a.example": 1001, "b.example": 2001, "c.example": 1001, "": 1001} {
		if got := serialOf(t, addr, name); got != want {
			t.Errorf("server name %q: certificate %d, want %d", name, got, want)
		}
	}
}

// min_version refuses older clients; TLS 1.1 never gets in.
func TestE2ETLSMinVersion(t *testing.T) {
	be := startBackend(t, "be")
	for _, c := range []struct {
		min    string
		client uint16
		ok     bool
	}{
		{"1.2", tls.VersionTLS11, false},
		{"1.2", tls.VersionTLS12, true},
		{"1.3", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS13, true},
	} {
		rp := tlsProxy(t, be, c.min)
		conn, err := tls.Dial("tcp", rp.Addr("https"), &tls.Config{InsecureSkipVerify: true, MinVersion: c.client, MaxVersion: c.client})
		if err == nil {
			conn.Close()
		}
		if (err == nil) != c.ok {
			t.Errorf("min_version %s, client at 0x%x: handshake error %v, want success %v", c.min, c.client, err, c.ok)
		}
	}
}

// A client that connects and never completes the handshake is dropped
// at client_header_timeout, as one that sends no request head.
func TestE2ETLSHandshakeTimeout(t *testing.T) {
	be := startBackend(t, "be")
	rp := oneCertProxy(t, be, `client_header_timeout = "300ms"`, "", proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("https"))
	if closed, _ := rc.ClosedWithin(5 * time.Second); !closed {
		t.Fatal("a silent TLS client is still connected")
	}
}

// curl and openssl, clients nobody here wrote, get the page over TLS with
// the right certificate.
func TestE2ETLSWithCurlAndOpenSSL(t *testing.T) {
	be := startBackend(t, "be")
	rp := tlsProxy(t, be, "1.2")
	_, port, _ := strings.Cut(rp.Addr("https"), ":")
	certs := testCerts(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	out, err := exec.Command("curl", "-sS", "--http1.1", "--cacert", filepath.Join(certs, "b.pem"),
		"--resolve", "b.example:"+port+":127.0.0.1", "https://b.example:"+port+"/curl").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"uri":"/curl"`) {
		t.Errorf("curl: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	cmd := exec.Command("openssl", "s_client", "-connect", rp.Addr("https"), "-servername", "b.example", "-brief")
	cmd.Stdin = strings.NewReader("")
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "b.example") {
		t.Errorf("openssl s_client: %v\n%s", err, out)
	}
	// And the certificate curl saw is the file's.
	pemBytes, _ := os.ReadFile(filepath.Join(certs, "b.pem"))
	blk, _ := pem.Decode(pemBytes)
	leaf, _ := x509.ParseCertificate(blk.Bytes)
	if got := serialOf(t, rp.Addr("https"), "b.example"); got != leaf.SerialNumber.Int64() {
		t.Errorf("serial %d, want the file's %d", got, leaf.SerialNumber.Int64())
	}
}

// Session tickets follow the keys the master hands over: a ticket issued
// under a key resumes while that key is among the current ones, and no
// longer once rotations have dropped it.
func TestE2ETLSSessionTicketKeys(t *testing.T) {
	be := startBackend(t, "be")
	k1, k2, k3 := [32]byte{1}, [32]byte{2}, [32]byte{3}
	rp := oneCertProxy(t, be, "", "", proxy.Options{SessionTicketKeys: [][32]byte{k1}})
	cache := tls.NewLRUClientSessionCache(1)
	resumed := func() bool {
		t.Helper()
		c, err := tls.Dial("tcp", rp.Addr("https"), &tls.Config{ServerName: "a.example", InsecureSkipVerify: true, ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rc := &proxy.RawConn{T: t, Conn: c, BR: bufio.NewReader(c)}
		rc.Do("GET /t HTTP/1.1\r\nHost: a.example\r\n\r\n") // takes in the ticket
		return c.ConnectionState().DidResume
	}
	resumed() // a ticket under k1
	rp.P.SetSessionTicketKeys([][32]byte{k2, k1})
	if !resumed() {
		t.Error("a ticket under the previous key did not resume")
	}
	// That connection got a new ticket, under k2; drop k2 and k1.
	rp.P.SetSessionTicketKeys([][32]byte{k3})
	if resumed() {
		t.Error("a ticket under a dropped key resumed")
	}
}

// Handshakes are counted by outcome and version: full, resumed, and
// failures by reason (a client that is not speaking TLS, one that goes
// away, one that stays silent past client_header_timeout).
func TestE2ETLSHandshakeCounts(t *testing.T) {
	be := startBackend(t, "be")
	rp := oneCertProxy(t, be, `client_header_timeout = "300ms"`, "", proxy.Options{})
	addr := rp.Addr("https")
	cache := tls.NewLRUClientSessionCache(1)
	for i, v := range []uint16{tls.VersionTLS13, tls.VersionTLS13, tls.VersionTLS12} {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache, MaxVersion: v})
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		rc := &proxy.RawConn{T: t, Conn: c, BR: bufio.NewReader(c)}
		rc.Do("GET /n HTTP/1.1\r\nHost: a.example\r\n\r\n")
		c.Close()
	}
	plain := proxy.DialRaw(t, addr) // not TLS at all
	plain.Send("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
	gone := proxy.DialRaw(t, addr) // connects and leaves
	gone.Conn.Close()
	silent := proxy.DialRaw(t, addr) // stays silent
	silent.Closed()

	want := [config.TLSCounterCount]uint64{}
	want[config.TLSHandshakeFull] = 2    // the first TLS 1.3 one and the TLS 1.2 one (a 1.3 ticket does not resume 1.2)
	want[config.TLSHandshakeResumed] = 1 // the second TLS 1.3 one
	want[config.TLSHandshakeFailedProtocol] = 1
	want[config.TLSHandshakeFailedClosed] = 1
	want[config.TLSHandshakeFailedTimeout] = 1
	want[config.TLSVersion13] = 2
	want[config.TLSVersion12] = 1
	want[config.TLSALPNHTTP1] = 3 // no ALPN offered: HTTP/1.1
	proxy.WaitFor(t, 5*time.Second, "every handshake counted", func() bool { return rp.P.Stats().TLS == want })
}

// client_auth: "require" refuses a handshake without a client certificate
// chaining to client_ca_file, "request" accepts none but not a bad one;
// session_tickets = false resumes nothing.
func TestE2ETLSClientAuthAndTickets(t *testing.T) {
	be := startBackend(t, "be")
	certs := testCerts(t)
	start := func(settings string) string {
		return oneCertProxy(t, be, "", settings, proxy.Options{}).Addr("https")
	}
	pair := func(name string) []tls.Certificate {
		c, err := tls.LoadX509KeyPair(filepath.Join(certs, name+".pem"), filepath.Join(certs, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{c}
	}
	// get does one request; the error is the handshake's or the request's.
	get := func(addr string, cert []tls.Certificate, cache tls.ClientSessionCache) (resumed bool, err error) {
		cfg := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache}
		if cert != nil {
			// Sent whatever CAs the server names: a client with the
			// wrong certificate must be refused, not merely send none.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert[0], nil }
		}
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return false, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("GET /m HTTP/1.1\r\nHost: a.example\r\n\r\n")); err != nil {
			return false, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false, err // TLS 1.3: a refused certificate shows here
		}
		resp.Body.Close()
		return c.ConnectionState().DidResume, nil
	}
	ca := `client_ca_file = "` + certs + `/client-ca.pem"`
	require := start(ca + "\n    client_auth = \"require\"")
	request := start(ca + "\n    client_auth = \"request\"")
	for _, c := range []struct {
		name, addr string
		cert       []tls.Certificate
		ok         bool
	}{
		{"require, the CA's client", require, pair("client"), true},
		{"require, no certificate", require, nil, false},
		{"require, another issuer's", require, pair("a"), false},
		{"request, no certificate", request, nil, true},
		{"request, the CA's client", request, pair("client"), true},
		{"request, another issuer's", request, pair("a"), false},
	} {
		if _, err := get(c.addr, c.cert, nil); (err == nil) != c.ok {
			t.Errorf("%s: error %v, want success %v", c.name, err, c.ok)
		}
	}

	noTickets := start(`session_tickets = false`)
	cache := tls.NewLRUClientSessionCache(1)
	get(noTickets, nil, cache)
	if resumed, err := get(noTickets, nil, cache); err != nil || resumed {
		t.Errorf("session_tickets = false: resumed %v (%v)", resumed, err)
	}
}
