package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pingora-go/pingora/proxy"
)

// timeoutConfig gives the client-side and upstream timeouts the same value,
// as the defaults do (60s each): an upstream timeout must still be answered
// although the client has been waiting as long as client_body_timeout.
const timeoutConfig = `
listener "pub" {
  address               = "127.0.0.1:1"
  client_header_timeout = "400ms"
  client_body_timeout   = "400ms"
  keepalive_timeout     = "400ms"
}
upstream "app" {
  retries                 = 0
  response_header_timeout = "400ms"
  read_timeout            = "400ms"
  server "@BE@" { max_fails = 0 }
}
route "all" { upstream = "app" }
`

// TestE2E504ResponseHeaderTimeout: an upstream slower than
// response_header_timeout gives 504, in about that time.
func TestE2E504ResponseHeaderTimeout(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "slow")
	rp := startProxy(t, expand(timeoutConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	c := newClient()
	start := time.Now()
	r := do(t, c, "GET", rp.URL("pub")+"/sleep?d=5s", "x", nil, nil)
	elapsed := time.Since(start)
	if r.Status != 504 {
		t.Fatalf("status %d %q after %v, want 504", r.Status, clip(r.Body), elapsed)
	}
	checkErrorBody(t, "504", r)
	if elapsed < 350*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("504 after %v, want about the 400ms response_header_timeout", elapsed)
	}
	// A fast request on the same upstream is unaffected.
	if r := do(t, c, "GET", rp.URL("pub")+"/sleep?d=50ms", "x", nil, nil); r.Status != 200 {
		t.Errorf("fast request: status %d", r.Status)
	}
}

// TestE2EUpstreamReadTimeout: an upstream that stops sending in the middle of
// a body is cut after read_timeout: the client sees a truncated response, not
// a hang.
func TestE2EUpstreamReadTimeout(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "stall")
	rp := startProxy(t, expand(timeoutConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	start := time.Now()
	rc.Send("GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body, err := rc.Read("GET")
	elapsed := time.Since(start)
	if resp == nil {
		t.Fatalf("no response head: %v", err)
	}
	if resp.StatusCode != 200 || err == nil {
		t.Fatalf("status %d body %q err %v: want the 200 head, then a cut body", resp.StatusCode, clip(body), err)
	}
	if elapsed > 3*time.Second {
		t.Errorf("stalled body cut after %v, want about the 400ms read_timeout", elapsed)
	}
}

// TestE2EClientHeaderTimeoutSlowloris: a client that trickles its header
// (one byte every 100ms) is disconnected once client_header_timeout has
// passed since the request started, even though it never stops sending.
func TestE2EClientHeaderTimeoutSlowloris(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "loris")
	rp := startProxy(t, expand(timeoutConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	start := time.Now()
	rc.Send("GET / HTTP/1.1\r\nHost: x\r\n")
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		rc.ClosedWithin(10 * time.Second)
	}()
	trickle := "X-Slow: " + strings.Repeat("a", 200)
	for i := 0; i < len(trickle); i++ {
		select {
		case <-closed:
			elapsed := time.Since(start)
			if elapsed < 350*time.Millisecond || elapsed > 2500*time.Millisecond {
				t.Errorf("slow header cut after %v, want about the 400ms client_header_timeout", elapsed)
			}
			if be.hits() != 0 {
				t.Errorf("the incomplete request reached the backend")
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		rc.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := rc.Conn.Write([]byte{trickle[i]}); err != nil {
			// A write error also means the proxy closed the connection.
			<-closed
			if elapsed := time.Since(start); elapsed > 2500*time.Millisecond {
				t.Errorf("slow header cut after %v, want about 400ms", elapsed)
			}
			return
		}
	}
	t.Fatalf("connection still open after %v of trickled header (client_header_timeout 400ms)", time.Since(start))
}

// TestE2EClientBodyTimeout: a client that sends headers announcing a body and
// then stalls is disconnected after client_body_timeout.
func TestE2EClientBodyTimeout(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "body")
	rp := startProxy(t, expand(timeoutConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	start := time.Now()
	rc.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
	closed, extra := rc.ClosedWithin(5 * time.Second)
	elapsed := time.Since(start)
	if !closed {
		t.Fatalf("connection with a stalled body still open after %v (client_body_timeout 400ms); got %q", elapsed, extra)
	}
	if elapsed < 350*time.Millisecond {
		t.Errorf("stalled body cut after %v, before the 400ms client_body_timeout", elapsed)
	}
	if !strings.HasPrefix(extra, "HTTP/1.1 408 ") {
		t.Errorf("stalled body answered with %q, want 408 Request Timeout", extra)
	}
}

// TestE2EKeepaliveIdleTimeout: an idle keep-alive connection is closed after
// keepalive_timeout, not before.
func TestE2EKeepaliveIdleTimeout(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "ka")
	rp := startProxy(t, expand(timeoutConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	rc.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := rc.MustRead("GET"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: status %d close %v, want a kept-alive 200", resp.StatusCode, resp.Close)
	}
	idleSince := time.Now()
	if closed, _ := rc.ClosedWithin(200 * time.Millisecond); closed {
		t.Fatalf("idle connection closed after %v, before keepalive_timeout 400ms", time.Since(idleSince))
	}
	rc.Send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n") // still usable within the timeout
	if resp, _ := rc.MustRead("GET"); resp.StatusCode != 200 {
		t.Fatalf("second request: status %d", resp.StatusCode)
	}
	idleSince = time.Now()
	closed, extra := rc.ClosedWithin(3 * time.Second)
	if !closed {
		t.Fatalf("idle connection still open 3s later (keepalive_timeout 400ms)")
	}
	if extra != "" {
		t.Errorf("idle connection got unsolicited bytes %q", extra)
	}
	if d := time.Since(idleSince); d < 350*time.Millisecond || d > 2*time.Second {
		t.Errorf("idle connection closed after %v, want about keepalive_timeout 400ms", d)
	}
}

// TestE2ESendTimeout: a client that stops reading a large response is cut
// once a write to it has been blocked for send_timeout (nginx's
// send_timeout), although client_body_timeout and the upstream's
// read_timeout are long: the upstream connection is let go too, and the
// client, reading again, finds the body cut short. The error log says so.
func TestE2ESendTimeout(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "send")
	errLog := &proxy.SyncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: errLog})
	rp := startProxy(t, expand(`
listener "pub" {
  address             = "127.0.0.1:1"
  client_body_timeout = "60s"
  send_timeout        = "400ms"
}
upstream "app" {
  retries      = 0
  read_timeout = "60s"
  server "@BE@" { max_fails = 0 }
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{Logger: logger})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	const size = 1 << 30 // far more than the socket buffers on the way hold
	start := time.Now()
	rc.Send(fmt.Sprintf("GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", size))
	const logged = "client timed out taking the response"
	proxy.WaitFor(t, 10*time.Second, "the proxy to give up on a client that does not read (send_timeout 400ms)",
		func() bool { return strings.Contains(errLog.String(), logged) })
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Errorf("response cut after %v, before the 400ms send_timeout", d)
	}
	// The backend's copy ends (with an error) once the proxy has let the
	// upstream connection go.
	proxy.WaitFor(t, 5*time.Second, "the backend to see the upstream connection closed",
		func() bool { return be.lastLen.Load() != 0 })
	if n := be.lastLen.Load(); n >= size {
		t.Fatalf("the backend sent the whole %d bytes", n)
	}
	resp, err := http.ReadResponse(rc.BR, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("response head: %v", err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	rc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.Copy(io.Discard, resp.Body)
	if err == nil || got >= size {
		t.Errorf("client read %d of %d bytes, error %v: want the body cut short", got, size, err)
	}
	line := ""
	for _, l := range strings.Split(errLog.String(), "\n") {
		if strings.Contains(l, logged) {
			line = l
		}
	}
	for _, want := range []string{"[INFO]", "status=200", "route=all", "upstream=" + be.Addr, "client=" + rc.Conn.LocalAddr().String(), "send_timeout=400ms"} {
		if !strings.Contains(line, want) {
			t.Errorf("error log line %q lacks %s; log:\n%s", line, want, errLog.String())
		}
	}
}
