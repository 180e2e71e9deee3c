package proxy_test

import (
	"bufio"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// tlsBackend is an HTTPS server (net/http's test certificate, valid for
// 127.0.0.1) that answers "tls <host>" and counts its connections and
// health checks; caFile is its certificate as a PEM file.
type tlsBackend struct {
	srv           *httptest.Server
	addr, caFile  string
	conns, checks atomic.Int64
}

func startTLSBackend(t *testing.T) *tlsBackend {
	t.Helper()
	b := &tlsBackend{}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			b.checks.Add(1)
			return
		}
		fmt.Fprintf(w, "tls=%v host=%s", r.TLS != nil, r.Host)
	}))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.srv.StartTLS()
	t.Cleanup(b.srv.Close)
	b.addr = b.srv.Listener.Addr().String()
	b.caFile = filepath.Join(t.TempDir(), "backend-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.srv.Certificate().Raw})
	if err := os.WriteFile(b.caFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func httpsUpstreamProxy(t *testing.T, be *tlsBackend, tlsBlock, extra string) *proxy.Running {
	t.Helper()
	return startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "secure" {
  server "@BE@" {}
  tls {
    @TLS@
  }
  @EXTRA@
}
route "all" { upstream = "secure" }
`, map[string]string{"BE": be.addr, "TLS": tlsBlock, "EXTRA": extra}), proxy.Options{})
}

// An upstream with a tls block is reached over HTTPS, its certificate
// verified against ca_file, and its connections pooled: the session
// tickets a TLS 1.3 server sends on an idle connection do not make it look
// unusable.
func TestE2EUpstreamTLS(t *testing.T) {
	be := startTLSBackend(t)
	rp := httpsUpstreamProxy(t, be, `ca_file = "`+be.caFile+`"`, "")
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	for i := 0; i < 5; i++ {
		resp, body := rc.Do("GET /x HTTP/1.1\r\nHost: app.example\r\n\r\n")
		if resp.StatusCode != http.StatusOK || body != "tls=true host=app.example" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond) // the pooled connection sits idle a moment
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("backend saw %d connections for 5 requests, want 1 (pooled)", n)
	}
}

// Without the server's CA the certificate is refused (502);
// insecure_skip_verify accepts it.
func TestE2EUpstreamTLSVerification(t *testing.T) {
	be := startTLSBackend(t)
	strict := httpsUpstreamProxy(t, be, `server_name = "127.0.0.1"`, "")
	resp, _ := proxy.DialRaw(t, strict.Addr("pub")).Do("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("an untrusted upstream certificate: status %d, want 502", resp.StatusCode)
	}
	lax := httpsUpstreamProxy(t, be, `insecure_skip_verify = true`, "")
	resp, body := proxy.DialRaw(t, lax.Addr("pub")).Do("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != http.StatusOK || body != "tls=true host=a" {
		t.Errorf("insecure_skip_verify: %d %q", resp.StatusCode, body)
	}
}

// Active health checks of an HTTPS upstream speak TLS too.
func TestE2EUpstreamTLSHealthChecks(t *testing.T) {
	be := startTLSBackend(t)
	rp := httpsUpstreamProxy(t, be, `ca_file = "`+be.caFile+`"`, `health_check {
    path     = "/healthz"
    interval = "50ms"
  }`)
	proxy.WaitFor(t, 5*time.Second, "three health checks over TLS", func() bool { return be.checks.Load() >= 3 })
	resp, _ := proxy.DialRaw(t, rp.Addr("pub")).Do("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after TLS health checks: status %d", resp.StatusCode)
	}
}

// Bytes a TLS upstream sends after a complete response (here a whole
// second response, 50 ms later) make its pooled connection unusable: the
// next request, from another client, never reads them.
func TestE2EUpstreamTLSStrayBytesNotReused(t *testing.T) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(testCerts(t), "a.pem"), filepath.Join(testCerts(t), "a.key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	poisoned := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					body := fmt.Sprintf("conn %d", n)
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
					if req.URL.Path == "/poison" {
						time.Sleep(50 * time.Millisecond)
						io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Poison: 1\r\nContent-Length: 14\r\n\r\nattacker-owned")
						close(poisoned)
					}
				}
			}()
		}
	}()
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "secure" {
  server "@BE@" {}
  tls {
    server_name = "a.example"
    ca_file     = "@CERTS@/a.pem"
  }
}
route "all" { upstream = "secure" }
`, map[string]string{"BE": ln.Addr().String(), "CERTS": testCerts(t)}), proxy.Options{})
	if resp, body := proxy.DialRaw(t, rp.Addr("pub")).Do("GET /poison HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != http.StatusOK || body != "conn 1" {
		t.Fatalf("first request: %d %q", resp.StatusCode, body)
	}
	// Written: on loopback the write puts the bytes in the proxy's
	// receive queue before it returns.
	<-poisoned
	resp, body := proxy.DialRaw(t, rp.Addr("pub")).Do("GET /account HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.Header.Get("X-Poison") != "" || body != "conn 2" {
		t.Errorf("another client got %q (X-Poison %q): want a fresh connection's answer \"conn 2\"", body, resp.Header.Get("X-Poison"))
	}
}
