package proxy_test

import (
	"net"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// drainConfig has a long keep-alive timeout so that only draining, not the
// idle timer, can explain a connection being closed.
const drainConfig = `
listener "pub" {
  address           = "127.0.0.1:1"
  keepalive_timeout = "30s"
}
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`

// TestE2EDrainInFlight: a request in flight when draining starts completes
// with 200 (and Connection: close, being that connection's next response);
// Serve returns once it is done, well before the deadline.
func TestE2EDrainInFlight(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "inflight")
	rp := startProxy(t, expand(drainConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	rc.Send("GET /sleep?d=1s HTTP/1.1\r\nHost: x\r\n\r\n")
	be.waitArrival(t, "/sleep?d=1s", 5*time.Second)
	rp.P.Drain(time.Now().Add(20 * time.Second))
	resp, body, err := rc.Read("GET")
	if err != nil {
		t.Fatalf("in-flight request cut by Drain: %v", err)
	}
	if resp.StatusCode != 200 || body != "slept inflight" {
		t.Errorf("in-flight request: status %d %q, want 200 %q", resp.StatusCode, clip(body), "slept inflight")
	}
	if !resp.Close {
		t.Errorf("response during drain lacks Connection: close: %v", resp.Header)
	}
	if closed, _ := rc.ClosedWithin(3 * time.Second); !closed {
		t.Errorf("connection not closed after its response during drain")
	}
	if !rp.Served(5 * time.Second) {
		t.Errorf("Serve did not return within 5s of the last connection closing (deadline 20s away)")
	}
}

// TestE2EDrainIdleKeepalive: a keep-alive connection idle when draining
// starts is not cut at once (a client may be sending on it right then): the
// next request on it is served, with Connection: close, and then the
// connection is closed.
func TestE2EDrainIdleKeepalive(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "idle")
	rp := startProxy(t, expand(drainConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	rc.Send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := rc.MustRead("GET"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: status %d close %v, want a kept-alive 200", resp.StatusCode, resp.Close)
	}
	rp.P.Drain(time.Now().Add(20 * time.Second))
	// A POST, which no client would retry if the connection were cut under it.
	rc.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nnot lost!!!")
	resp, body, err := rc.Read("POST")
	if err != nil {
		t.Fatalf("request on a connection idle when Drain started was lost: %v", err)
	}
	if resp.StatusCode != 200 || body != "not lost!!!" {
		t.Errorf("status %d %q, want 200 %q", resp.StatusCode, clip(body), "not lost!!!")
	}
	if !resp.Close {
		t.Errorf("response after Drain lacks Connection: close: %v", resp.Header)
	}
	if closed, _ := rc.ClosedWithin(3 * time.Second); !closed {
		t.Errorf("connection still open after its Connection: close response")
	}
	if !rp.Served(5 * time.Second) {
		t.Errorf("Serve did not return within 5s of the last connection closing")
	}
}

// TestE2EDrainIdleTimeout: an idle keep-alive connection that never sends
// another request is closed after the keep-alive timeout, not kept until the
// deadline, so draining ends early.
func TestE2EDrainIdleTimeout(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "idle-timeout")
	rp := startProxy(t, expand(`
listener "pub" {
  address           = "127.0.0.1:1"
  keepalive_timeout = "500ms"
}
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	rc.Send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	rc.MustRead("GET")
	start := time.Now()
	rp.P.Drain(start.Add(20 * time.Second))
	if closed, _ := rc.ClosedWithin(100 * time.Millisecond); closed {
		t.Fatalf("idle connection closed %v after Drain: a request on its way would be lost", time.Since(start))
	}
	closed, extra := rc.ClosedWithin(5 * time.Second)
	if !closed || extra != "" {
		t.Fatalf("idle connection during drain: closed %v after %v, extra %q; want closed after ~500ms idle", closed, time.Since(start), extra)
	}
	if !rp.Served(5 * time.Second) {
		t.Errorf("Serve did not return within 5s once the idle connection was closed")
	}
}

// TestE2EDrainStopsAccepting: once Drain has returned, this proxy accepts no
// new connection (the listener is closed); Serve returns promptly when there
// is nothing in flight.
func TestE2EDrainStopsAccepting(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "accept")
	rp := startProxy(t, expand(drainConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	addr := rp.Addr("pub")
	rc := proxy.DialRaw(t, addr)
	rc.Send("GET /before HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp, _ := rc.MustRead("GET"); resp.StatusCode != 200 {
		t.Fatalf("before drain: status %d", resp.StatusCode)
	}
	if closed, _ := rc.ClosedWithin(3 * time.Second); !closed {
		t.Fatalf("Connection: close exchange left the connection open")
	}
	rp.P.Drain(time.Now().Add(20 * time.Second))
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		// Connected: it must not be served by this proxy.
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("GET /after HTTP/1.1\r\nHost: x\r\n\r\n"))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		t.Errorf("a connection opened after Drain returned was accepted (listener still open); read %q", buf[:n])
	}
	for _, rq := range be.requests() {
		if rq.URI == "/after" {
			t.Errorf("a request sent after Drain reached the backend")
		}
	}
	if !rp.Served(3 * time.Second) {
		t.Errorf("Serve did not return within 3s of Drain with no connection open")
	}
}

// TestE2EDrainDeadline: a request still running at the deadline is cut and
// Serve returns then.
func TestE2EDrainDeadline(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "stuck")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  response_header_timeout = "60s"
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	rc.Send("GET /sleep?d=30s HTTP/1.1\r\nHost: x\r\n\r\n")
	be.waitArrival(t, "/sleep?d=30s", 5*time.Second)
	deadline := time.Now().Add(700 * time.Millisecond)
	rp.P.Drain(deadline)
	if rp.Served(300 * time.Millisecond) {
		t.Errorf("Serve returned while a request was in flight, %v before the deadline", time.Until(deadline))
	}
	if !rp.Served(time.Until(deadline) + 2*time.Second) {
		t.Fatalf("Serve still running 2s after the drain deadline")
	}
	if late := rp.ServedAt().Sub(deadline); late < -50*time.Millisecond {
		t.Errorf("Serve returned %v before the deadline with a request in flight", -late)
	}
	resp, body, err := rc.Read("GET")
	if err == nil && resp.StatusCode == 200 {
		t.Errorf("stuck request got 200 %q; it should have been cut at the deadline", clip(body))
	}
	if closed, _ := rc.ClosedWithin(2 * time.Second); !closed {
		t.Errorf("client connection of the stuck request still open after the deadline")
	}
}
