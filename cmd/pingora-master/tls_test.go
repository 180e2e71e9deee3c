package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// installCert puts a test certificate and its key (../../config/testdata/tls)
// where the instance's config names them, as certbot's deploy hook would:
// site.pem, and site.key with mode 0600.
func (in *instance) installCert(name string) {
	in.tb.Helper()
	src := filepath.Join("..", "..", "config", "testdata", "tls")
	if err := copyFile(filepath.Join(src, name+".pem"), filepath.Join(in.Dir, "site.pem"), 0o644); err != nil {
		in.tb.Fatal(err)
	}
	if err := copyFile(filepath.Join(src, name+".key"), filepath.Join(in.Dir, "site.key"), 0o600); err != nil {
		in.tb.Fatal(err)
	}
}

// tlsListener is a listener block serving site.pem/site.key on port.
func tlsListener(dir string, port int) string {
	return fmt.Sprintf(`
listener "secure" {
  address = "127.0.0.1:%d"
  tls {
    certificate {
      cert_file = "%s/site.pem"
      key_file  = "%s/site.key"
    }
  }
}
`, port, dir, dir)
}

// addTLSListener gives the instance's config a TLS listener "secure" on a
// free port serving certificate a, and returns its address.
func (in *instance) addTLSListener() string {
	in.tb.Helper()
	in.installCert("a")
	port := freePort(in.tb)
	in.Params.Extra += tlsListener(in.Dir, port)
	in.WriteConfig(in.Params)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// tlsServes returns the serial of the certificate a new connection to addr
// gets and the body of GET /gen over it.
func tlsServes(t *testing.T, addr string) (int64, string) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example", InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer c.Close()
	serial := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	return serial, tlsGet(t, c, bufio.NewReader(c))
}

func tlsGet(t *testing.T, c net.Conn, br *bufio.Reader) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /gen HTTP/1.1\r\nHost: a.example\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET /gen over TLS: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b)
}

// TestTLSCertificateRenewedByReload: the master reads the certificate
// files; a reload after they were replaced (certbot's deploy hook runs
// `-s reload`) serves the new certificate to new connections while a
// connection of the old generation finishes on the old one; a renewal
// whose key does not match is a reload error naming the file, and the
// serving generation keeps its certificate.
func TestTLSCertificateRenewedByReload(t *testing.T) {
	in := newInstance(t, 2)
	addr := in.addTLSListener()
	in.Start()
	p := in.Params

	if serial, body := tlsServes(t, addr); serial != 1001 || body != "gen 0" {
		t.Fatalf("before renewal: certificate %d, answer %q; want 1001, \"gen 0\"", serial, body)
	}
	// A keep-alive connection of generation 0.
	old, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldBR := bufio.NewReader(old)
	if body := tlsGet(t, old, oldBR); body != "gen 0" {
		t.Fatalf("old connection: %q", body)
	}

	in.installCert("a-renewed")
	p.Gen = 1
	in.WriteConfig(p)
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload after renewal: %s", r)
	}
	if serial, body := tlsServes(t, addr); serial != 1002 || body != "gen 1" {
		t.Errorf("after renewal: certificate %d, answer %q; want 1002, \"gen 1\"", serial, body)
	}
	if body := tlsGet(t, old, oldBR); body != "gen 0" {
		t.Errorf("the old generation's connection answered %q, want \"gen 0\"", body)
	}
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 1001 {
		t.Errorf("old connection's certificate %d, want 1001", got)
	}

	// A broken renewal: the key of another certificate.
	if err := copyFile(filepath.Join("..", "..", "config", "testdata", "tls", "b.key"), filepath.Join(in.Dir, "site.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Gen = 2
	in.WriteConfig(p)
	r := in.Ctl("reload")
	if r.Code != 1 || !strings.Contains(r.Output(), filepath.Join(in.Dir, "site.key")) || !strings.Contains(r.Output(), "does not match") {
		t.Errorf("-s reload with a mismatched key: want exit 1 naming site.key and the mismatch\n%s", r)
	}
	if serial, body := tlsServes(t, addr); serial != 1002 || body != "gen 1" {
		t.Errorf("after the failed reload: certificate %d, answer %q; want 1002, \"gen 1\"", serial, body)
	}
}

// TestTLSSessionResumesAcrossWorkersAndReloads: the master's session-ticket
// keys are every worker's, and survive a reload, so a client that has a
// ticket resumes its session on whichever worker it reaches, before and
// after the reload.
func TestTLSSessionResumesAcrossWorkersAndReloads(t *testing.T) {
	in := newInstance(t, 2)
	addr := in.addTLSListener()
	in.Start()
	p := in.Params

	cache := tls.NewLRUClientSessionCache(8)
	connect := func() (resumed bool, body string) {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example", InsecureSkipVerify: true, ClientSessionCache: cache})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer c.Close()
		// Reading the answer also takes in the ticket for the next time.
		body = tlsGet(t, c, bufio.NewReader(c))
		return c.ConnectionState().DidResume, body
	}
	if resumed, _ := connect(); resumed {
		t.Fatal("the first connection resumed a session it never had")
	}
	for i := 0; i < 10; i++ { // new connections spread over both workers
		if resumed, body := connect(); !resumed || body != "gen 0" {
			t.Fatalf("connection %d: resumed %v, answer %q; want a resumed session on either worker", i, resumed, body)
		}
	}
	p.Gen = 1
	in.WriteConfig(p)
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload: %s", r)
	}
	if resumed, body := connect(); !resumed || body != "gen 1" {
		t.Errorf("after the reload: resumed %v, answer %q; want a resumed session on the new generation", resumed, body)
	}
}
