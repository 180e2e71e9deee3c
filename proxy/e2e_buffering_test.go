package proxy_test

// End-to-end tests of request body buffering (request_buffering,
// client_body_buffer_size, request_timeout): a slow upload must not hold
// an upstream connection while it trickles in.

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

const bufferingConfig = `
listener "pub" {
  address                 = "127.0.0.1:1"
  client_body_buffer_size = "1k"
  @EXTRA@
}
upstream "app" {
  server "@BE@" {}
}
route "all" {
  upstream = "app"
  @ROUTE@
}
`

// startBuffering runs bufferingConfig with extra listener and route
// settings.
func startBuffering(t *testing.T, be *backend, listener, route string) *proxy.Running {
	t.Helper()
	return startProxy(t, expand(bufferingConfig, map[string]string{"BE": be.Addr, "EXTRA": listener, "ROUTE": route}), proxy.Options{})
}

// TestE2EBufferingSlowUploadsHoldNoUpstream: five clients trickle small
// bodies (one byte every 100 ms, fixed length and chunked); the backend
// gets no connection until a body is complete, and then every request is
// answered.
func TestE2EBufferingSlowUploadsHoldNoUpstream(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "buffered")
	rp := startBuffering(t, be, "", "")
	const clients = 5
	const body = "0123456789"

	conns := make([]*proxy.RawConn, clients)
	chunked := func(i int) bool { return i%2 == 1 }
	for i := range conns {
		conns[i] = proxy.DialRaw(t, rp.Addr("pub"))
		framing := fmt.Sprintf("Content-Length: %d", len(body))
		if chunked(i) {
			framing = "Transfer-Encoding: chunked"
		}
		conns[i].Send(fmt.Sprintf("POST /echo?c=%d HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n", i, framing))
	}
	// What each client sends, byte by byte: the body, or its chunks of
	// one byte each.
	wire := make([][]string, clients)
	for i := range wire {
		for _, b := range body {
			if chunked(i) {
				wire[i] = append(wire[i], "1\r\n"+string(b)+"\r\n")
			} else {
				wire[i] = append(wire[i], string(b))
			}
		}
		if chunked(i) {
			wire[i] = append(wire[i], "0\r\n\r\n")
		}
	}
	steps, firstDone := 0, len(wire[0])
	for i := range wire {
		steps, firstDone = max(steps, len(wire[i])), min(firstDone, len(wire[i]))
	}
	for step := 0; step < steps; step++ {
		time.Sleep(100 * time.Millisecond) // the trickle itself, not a synchronisation
		if step == firstDone-1 {
			// About to complete the first body: by now the proxy has
			// had every head for about a second.
			if n := be.conns.Load(); n != 0 {
				t.Fatalf("the backend has %d connection(s) while no body is complete yet", n)
			}
		}
		for i, rc := range conns {
			if step < len(wire[i]) {
				rc.Send(wire[i][step])
			}
		}
	}
	for i, rc := range conns {
		resp, got := rc.MustRead("POST")
		if resp.StatusCode != 200 || got != body {
			t.Errorf("client %d: status %d body %q, want 200 %q", i, resp.StatusCode, clip(got), body)
		}
	}
	if n := be.hits(); n != clients {
		t.Errorf("backend saw %d requests, want %d", n, clients)
	}
}

// TestE2EBufferingLargeBodyStreams: a body larger than
// client_body_buffer_size reaches the backend while the client is still
// sending it, fixed length or chunked.
func TestE2EBufferingLargeBodyStreams(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "large")
	rp := startBuffering(t, be, "", "")
	first := strings.Repeat("a", 2048) // twice client_body_buffer_size
	rest := strings.Repeat("b", 2048)
	for _, chunked := range []bool{false, true} {
		rc := proxy.DialRaw(t, rp.Addr("pub"))
		if chunked {
			rc.Send(fmt.Sprintf("POST /progress HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(first), first))
		} else {
			rc.Send(fmt.Sprintf("POST /progress HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(first)+len(rest), first))
		}
		deadline := time.After(5 * time.Second)
	wait:
		for {
			select {
			case n := <-be.progress:
				if n == len(first) {
					break wait
				}
			case <-deadline:
				t.Fatalf("chunked %v: the first %d body bytes did not reach the backend within 5s while the client was still sending", chunked, len(first))
			}
		}
		if chunked {
			rc.Send(fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(rest), rest))
		} else {
			rc.Send(rest)
		}
		want := fmt.Sprintf("received %d", len(first)+len(rest))
		if resp, body := rc.MustRead("POST"); resp.StatusCode != 200 || body != want {
			t.Errorf("chunked %v: status %d %q, want 200 %q", chunked, resp.StatusCode, clip(body), want)
		}
		for len(be.progress) > 0 {
			<-be.progress
		}
	}
}

// TestE2EBufferingRequestTimeout: a body trickling in slower than
// request_timeout allows gets 408 (each read being well within
// client_body_timeout), and the backend never sees a connection.
func TestE2EBufferingRequestTimeout(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "slow")
	rp := startBuffering(t, be, `request_timeout = "1s"`, "")
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	const size = 40 // 4 s at the trickle's pace
	start := time.Now()
	rc.Send(fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < size; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			rc.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := rc.Conn.Write([]byte("x")); err != nil {
				return // the proxy answered and closed
			}
		}
	}()
	resp, _, err := rc.Read("POST")
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("no response to a body trickling past request_timeout: %v", err)
	}
	if resp.StatusCode != 408 {
		t.Errorf("status %d after %v, want 408", resp.StatusCode, time.Since(start))
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("408 came after %v, want about request_timeout (1s)", took)
	}
	if n := be.conns.Load(); n != 0 {
		t.Errorf("the backend got %d connection(s) for a body that never completed", n)
	}
}

// TestE2EBufferingOffStreams: with request_buffering off (on the listener,
// or on a route), a small body reaches the backend as it arrives, as
// before buffering existed.
func TestE2EBufferingOffStreams(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "off")
	for _, c := range []struct {
		what, listener, route string
	}{
		{"listener request_buffering = false", "request_buffering = false", ""},
		{"route request_buffering = false", "", "request_buffering = false"},
	} {
		rp := startBuffering(t, be, c.listener, c.route)
		rc := proxy.DialRaw(t, rp.Addr("pub"))
		rc.Send("POST /progress HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
		select {
		case n := <-be.progress:
			if n != 5 {
				t.Errorf("%s: backend received %d bytes, want the 5 sent so far", c.what, n)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("%s: the first 5 body bytes did not reach the backend within 3s while the client was still sending", c.what)
		}
		rc.Send("world")
		if resp, body := rc.MustRead("POST"); resp.StatusCode != 200 || body != "received 10" {
			t.Errorf("%s: status %d %q, want 200 %q", c.what, resp.StatusCode, clip(body), "received 10")
		}
		for len(be.progress) > 0 {
			<-be.progress
		}
	}
}
