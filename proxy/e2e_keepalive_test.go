package proxy_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// TestE2EUpstreamKeepalive: the proxy reuses upstream connections, so the
// backend sees far fewer TCP connections than requests, even when every
// client request comes on a new client connection; keepalive_conns = 0 turns
// reuse off.
func TestE2EUpstreamKeepalive(t *testing.T) {
	t.Parallel()
	pooled, unpooled := startBackend(t, "pooled"), startBackend(t, "unpooled")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "pooled" {
  server "@P@" {}
}
upstream "unpooled" {
  keepalive_conns = 0
  server "@U@" {}
}
route "pooled" {
  path_prefix = "/p/"
  upstream    = "pooled"
}
route "unpooled" {
  path_prefix = "/u/"
  upstream    = "unpooled"
}
`, map[string]string{"P": pooled.Addr, "U": unpooled.Addr}), proxy.Options{})

	const n = 30
	for i := 0; i < n; i++ {
		// A fresh client connection per request, half of them explicitly
		// closing: the upstream side must still be reused.
		rc := proxy.DialRaw(t, rp.Addr("pub"))
		conn := "keep-alive"
		if i%2 == 1 {
			conn = "close"
		}
		rc.Send(fmt.Sprintf("GET /p/%d HTTP/1.1\r\nHost: x\r\nConnection: %s\r\n\r\n", i, conn))
		if resp, body := rc.MustRead("GET"); resp.StatusCode != 200 {
			t.Fatalf("pooled request %d: status %d %q", i, resp.StatusCode, clip(body))
		}
		rc.Conn.Close()
	}
	if got := pooled.conns.Load(); got > 2 {
		t.Errorf("backend saw %d connections for %d sequential requests: upstream connections are not reused", got, n)
	}

	c := newClient()
	for i := 0; i < 10; i++ {
		if r := do(t, c, "GET", rp.URL("pub")+fmt.Sprintf("/u/%d", i), "x", nil, nil); r.Status != 200 {
			t.Fatalf("unpooled request %d: status %d", i, r.Status)
		}
	}
	if got := unpooled.conns.Load(); got != 10 {
		t.Errorf("with keepalive_conns = 0 the backend saw %d connections for 10 requests, want 10", got)
	}
}

// TestE2EClientKeepalive: several requests on one client connection, one
// after another and pipelined, are all answered in order on it.
func TestE2EClientKeepalive(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "cka")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	for i := 0; i < 3; i++ {
		rc.Send(fmt.Sprintf("GET /seq/%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
		resp, body := rc.MustRead("GET")
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("request %d: status %d close %v", i, resp.StatusCode, resp.Close)
		}
		if s := seenByBackend(t, body); s.URI != fmt.Sprintf("/seq/%d", i) {
			t.Fatalf("request %d answered with %s", i, s.URI)
		}
	}
	rc.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirstGET /pipe/2 HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nthi\r\n2\r\nrd\r\n0\r\n\r\n")
	if resp, body := rc.MustRead("POST"); resp.StatusCode != 200 || body != "first" {
		t.Errorf("pipelined 1: %d %q", resp.StatusCode, clip(body))
	}
	if resp, body := rc.MustRead("GET"); resp.StatusCode != 200 || seenByBackend(t, body).URI != "/pipe/2" {
		t.Errorf("pipelined 2: %d %q", resp.StatusCode, clip(body))
	}
	if resp, body := rc.MustRead("POST"); resp.StatusCode != 200 || body != "third" {
		t.Errorf("pipelined 3: %d %q", resp.StatusCode, clip(body))
	}
	rc.Send("GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, _ := rc.MustRead("GET")
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("Connection: close request: status %d, close %v; want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	if closed, _ := rc.ClosedWithin(3 * time.Second); !closed {
		t.Errorf("connection not closed after a Connection: close exchange")
	}
}

// TestE2EHalfClosedClient: a client that sends its request and then shuts
// down its sending side (as `nc -N` or a script piping one request does)
// gets the whole response, and then the proxy closes at once: the FIN that
// came with the request means no next request, so the connection does not
// wait out keepalive_timeout. The same holds when request and FIN arrive
// in one batch, whose readiness the poller reports only once.
func TestE2EHalfClosedClient(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "half")
	rp := startProxy(t, expand(`
listener "pub" {
  address           = "127.0.0.1:1"
  keepalive_timeout = "60s"
}
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})
	for i := range 3 {
		rc := proxy.DialRaw(t, rp.Addr("pub"))
		rc.Send("GET /half HTTP/1.1\r\nHost: x\r\n\r\n")
		if err := rc.Conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		resp, body := rc.MustRead("GET")
		if resp.StatusCode != 200 || !strings.Contains(body, `"uri":"/half"`) {
			t.Fatalf("try %d: status %d body %q", i, resp.StatusCode, clip(body))
		}
		start := time.Now()
		if closed, extra := rc.ClosedWithin(5 * time.Second); !closed || extra != "" {
			t.Fatalf("try %d: after the response to a half-closed client: closed %v (after %v), extra %q; want closed at once (keepalive_timeout 60s)",
				i, closed, time.Since(start), extra)
		}
	}
}
