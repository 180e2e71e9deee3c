package proxy_test

// Hardening of the upstream side: pooled connections that carry stray
// bytes, requests that must not be sent twice, passive health that must not
// blame a server for the proxy's own failures, early upstream answers to a
// streamed body, and the conformance of interim and bodiless responses. The
// backends here are raw sockets: they send exactly the bytes a misbehaving
// server would, which net/http refuses to.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// rawUpstream is a raw-socket backend for the e2e tests: serve gets every
// accepted connection with a reader on it, and the connection is closed
// when serve returns. Cleanup closes the listener.
func rawUpstream(t testing.TB, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	return proxy.RawBackend(t, func(c net.Conn) {
		defer c.Close()
		serve(c, bufio.NewReader(c))
	})
}

// readRequest reads one request and its body from a raw backend's
// connection, within 10 s.
func readRequest(c net.Conn, br *bufio.Reader) (*http.Request, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return req, err
}

const (
	poison       = "HTTP/1.1 200 OK\r\nX-Poison: 1\r\nContent-Length: 14\r\n\r\nattacker-owned"
	accountReply = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\naccount"
)

// TestE2EPooledConnStrayBytesNotHandedOn: bytes an upstream sends after a
// complete response (a body after a HEAD answer, a body on 204 or 304, more
// than Content-Length) never reach the next request on that connection,
// whether they arrive at once or later, after the response was relayed:
// the connection is closed instead of reused, and the next client (another
// connection) gets its own response from a fresh one.
func TestE2EPooledConnStrayBytesNotHandedOn(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, method, answer string
	}{
		{"head-body", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 66\r\n\r\n"},
		{"204-body", "GET", "HTTP/1.1 204 No Content\r\n\r\n"},
		{"304-body", "GET", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"},
		{"over-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
	}
	for _, tc := range cases {
		for _, late := range []bool{false, true} {
			name := tc.name + "/immediate"
			if late {
				name = tc.name + "/late"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				release := make(chan struct{}) // late: the first response was relayed
				written := make(chan struct{}) // late: the stray bytes were sent
				var conns atomic.Int64
				addr := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
					conns.Add(1)
					for {
						req, err := readRequest(c, br)
						if err != nil {
							return
						}
						if req.URL.Path == "/account" {
							io.WriteString(c, accountReply)
							continue
						}
						if !late {
							// One write, so they arrive at once: two
							// writes could be split by the scheduler,
							// the stray bytes then arriving at any
							// time, after the pool's probe of the next
							// request too, where no proxy can tell
							// them from that request's answer.
							io.WriteString(c, tc.answer+poison)
							continue
						}
						io.WriteString(c, tc.answer)
						<-release
						io.WriteString(c, poison)
						close(written)
					}
				})
				rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  keepalive_conns = 4
  server "@B@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"B": addr}), proxy.Options{})

				a := proxy.DialRaw(t, rp.Addr("pub"))
				a.Send(tc.method + " /x HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, _ := a.MustRead(tc.method)
				if resp.Header.Get("X-Poison") != "" {
					t.Fatalf("the first client got the stray response")
				}
				if late {
					close(release)
					<-written
				}
				for i := 0; i < 3; i++ {
					b := proxy.DialRaw(t, rp.Addr("pub"))
					b.Send("GET /account HTTP/1.1\r\nHost: x\r\n\r\n")
					resp, body := b.MustRead("GET")
					if resp.Header.Get("X-Poison") != "" || body != "account" {
						t.Fatalf("request %d of another client got %d %q (X-Poison %q): the stray bytes of the previous response were read as its response",
							i, resp.StatusCode, body, resp.Header.Get("X-Poison"))
					}
				}
				if n := conns.Load(); n < 2 {
					t.Errorf("%d upstream connections; the one carrying stray bytes must not be reused", n)
				}
			})
		}
	}
}

// closingOnSecondRequest is a raw backend that answers the first request
// on each connection and closes the connection without answering the
// second one, as a server does that dies or times the connection out just
// as the request arrives. It counts the requests to path.
func closingOnSecondRequest(t testing.TB, path string, seen *atomic.Int64) string {
	return rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for n := 0; ; n++ {
			req, err := readRequest(c, br)
			if err != nil {
				return
			}
			if req.URL.Path == path {
				seen.Add(1)
			}
			if n > 0 {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
}

// TestE2ENonIdempotentNeverResentOnReusedConn: a POST written to a reused
// keep-alive connection that the server then closes without answering is
// not sent again (the server may have acted on it): the client gets 502
// and the server saw the POST once. A GET in the same situation is retried
// on a fresh connection and succeeds.
func TestE2ENonIdempotentNeverResentOnReusedConn(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"POST", "GET"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			var seen atomic.Int64
			addr := closingOnSecondRequest(t, "/act", &seen)
			rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  retries = 2
  server "@B@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"B": addr}), proxy.Options{})

			c := proxy.DialRaw(t, rp.Addr("pub"))
			c.Send("GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, _ := c.MustRead("GET"); resp.StatusCode != 200 {
				t.Fatalf("warm-up: status %d", resp.StatusCode)
			}
			body := ""
			if method == "POST" {
				body = "amount=100"
			}
			c.Send(fmt.Sprintf("%s /act HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", method, len(body), body))
			resp, got := c.MustRead(method)
			switch method {
			case "POST":
				if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("POST on a reused connection the server closed: status %d %q, want 502", resp.StatusCode, got)
				}
				if n := seen.Load(); n != 1 {
					t.Errorf("the server saw the POST %d times, want exactly 1 (never re-sent)", n)
				}
			case "GET":
				if resp.StatusCode != 200 || got != "ok" {
					t.Errorf("GET on a reused connection the server closed: status %d %q, want 200 (retried)", resp.StatusCode, got)
				}
				if n := seen.Load(); n != 2 {
					t.Errorf("the server saw the GET %d times, want 2 (retried once)", n)
				}
			}
		})
	}
}

// TestE2ELocalDialErrorBlamesNoServer: a dial that fails because the proxy
// itself is out of descriptors (EMFILE) is answered 503 and counts against
// no server: once descriptors are free again, both servers serve at once
// (before, both were marked down for fail_timeout and every client got
// 503). Not parallel: it lowers the open-files limit of the test process,
// so that no other test may run meanwhile.
func TestE2ELocalDialErrorBlamesNoServer(t *testing.T) {
	b1, b2 := startBackend(t, "s1"), startBackend(t, "s2")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  retries = 1
  server "@B1@" {
    max_fails    = 1
    fail_timeout = "60s"
  }
  server "@B2@" {
    max_fails    = 1
    fail_timeout = "60s"
  }
}
route "local" {
  path_prefix = "/local"
  respond {
    status = 200
    body   = "here"
  }
}
route "all" { upstream = "app" }
`, map[string]string{"B1": b1.Addr, "B2": b2.Addr}), proxy.Options{})

	// A client connection the proxy has accepted and served: the request
	// below needs no new descriptor but the upstream socket.
	c := proxy.DialRaw(t, rp.Addr("pub"))
	c.Send("GET /local HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c.MustRead("GET"); resp.StatusCode != 200 {
		t.Fatalf("local route: status %d", resp.StatusCode)
	}

	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	// No descriptor number is free below the limit: every socket(2)
	// fails with EMFILE, even after the proxy closes its parked numbers.
	lim := saved
	lim.Cur = 3
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	c.Send("GET /at-limit HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body, err := c.Read("GET")
	if rerr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved); rerr != nil {
		t.Fatalf("restore RLIMIT_NOFILE: %v", rerr)
	}
	if err != nil {
		t.Fatalf("request at the open-files limit: %v", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("request while the proxy is out of descriptors: status %d %q, want 503 (a local failure, not a bad gateway)", resp.StatusCode, body)
	}

	seen := map[string]int{}
	for i := 0; i < 4; i++ {
		c.Send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := c.MustRead("GET")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d after descriptors were freed: status %d %q, want 200 (no server is to blame)", i, resp.StatusCode, body)
		}
		seen[resp.Header.Get("X-Backend")]++
	}
	if seen["s1"] == 0 || seen["s2"] == 0 {
		t.Errorf("after the local failure the servers served %v; both must still be in rotation", seen)
	}
}

// TestE2ESingleServerNeverMarkedDown: as nginx, an upstream with one
// server ignores max_fails: a failed request is answered 502, and the next
// ones reach the server again instead of getting 503 for fail_timeout.
func TestE2ESingleServerNeverMarkedDown(t *testing.T) {
	t.Parallel()
	var conns atomic.Int64
	addr := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		first := conns.Add(1) == 1
		for {
			if _, err := readRequest(c, br); err != nil {
				return
			}
			if first {
				c.(*net.TCPConn).SetLinger(0) // reset: a connection error
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@B@" {
    max_fails    = 1
    fail_timeout = "60s"
  }
}
route "all" { upstream = "app" }
`, map[string]string{"B": addr}), proxy.Options{})

	c := proxy.DialRaw(t, rp.Addr("pub"))
	c.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c.MustRead("GET"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("request the server reset: status %d, want 502", resp.StatusCode)
	}
	for i := 0; i < 3; i++ {
		c.Send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.MustRead("GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d after one failure of the only server: status %d %q, want 200", i, resp.StatusCode, body)
		}
	}
}

// TestE2EMalformedResponseNotAFailure: an invalid response head is
// answered 502 but does not count for passive health (nginx counts
// invalid_header only when proxy_next_upstream lists it, and its default
// does not): the server stays in rotation with max_fails 1.
func TestE2EMalformedResponseNotAFailure(t *testing.T) {
	t.Parallel()
	var answered atomic.Int64
	bad := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := readRequest(c, br)
			if err != nil {
				return
			}
			if req.URL.Path == "/garbage" {
				io.WriteString(c, "HTTP/1.1 2x0 What\r\nContent-Length: 0\r\n\r\n")
				return
			}
			answered.Add(1)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Backend: odd\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	good := startBackend(t, "good")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@BAD@" {
    max_fails    = 1
    fail_timeout = "60s"
  }
  server "@GOOD@" { max_fails = 0 }
}
route "all" { upstream = "app" }
`, map[string]string{"BAD": bad, "GOOD": good.Addr}), proxy.Options{})

	c := proxy.DialRaw(t, rp.Addr("pub"))
	got502 := false
	for i := 0; i < 2 && !got502; i++ { // round robin: one of two reaches the odd server
		c.Send("GET /garbage HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, _ := c.MustRead("GET")
		got502 = resp.StatusCode == http.StatusBadGateway
	}
	if !got502 {
		t.Fatal("the malformed response never came back as 502")
	}
	for i := 0; i < 6; i++ {
		c.Send("GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.MustRead("GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d %q", i, resp.StatusCode, body)
		}
	}
	if answered.Load() == 0 {
		t.Errorf("after one malformed response the server got none of 6 requests: passive health counted it as a failure")
	}
}

// TestE2EEarlyUpstreamAnswerToStreamedBody: an upstream that answers 413
// (after a 100 Continue, as some do) once it has the request head, and
// closes while the client is still sending a large body, gets its answer
// relayed to the client (not a 502), and the client connection closes
// after it.
func TestE2EEarlyUpstreamAnswerToStreamedBody(t *testing.T) {
	t.Parallel()
	addr := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"+
			"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nX-Early: yes\r\nContent-Length: 9\r\n\r\ntoo large")
		// Closed with the body unread: the proxy's sends then fail.
	})
	rp := startProxy(t, expand(`
listener "pub" {
  address       = "127.0.0.1:1"
  max_body_size = 0
}
upstream "app" {
  server "@B@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"B": addr}), proxy.Options{})

	const size = 256 << 20
	c := proxy.DialRaw(t, rp.Addr("pub"))
	c.Send(fmt.Sprintf("PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size))
	go func() {
		// Sends until the proxy closes the connection.
		c.Conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
		io.Copy(c.Conn, io.LimitReader(zeros{}, size))
	}()
	resp, body, err := c.Read("PUT")
	if err != nil {
		t.Fatalf("no response while the body was streaming: %v", err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("X-Early") != "yes" || body != "too large" {
		t.Fatalf("got %d %q (X-Early %q), want the upstream's own 413", resp.StatusCode, body, resp.Header.Get("X-Early"))
	}
	if !resp.Close {
		t.Errorf("the relayed early answer does not say Connection: close, yet the body was not read")
	}
	if closed, extra := c.ClosedWithin(5 * time.Second); !closed {
		t.Errorf("client connection still open after the early answer (read %q)", extra)
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestE2ENoContinueToHTTP10Client: an HTTP/1.0 client that sends Expect:
// 100-continue gets no 100 Continue (it does not understand 1xx), only the
// final response; an HTTP/1.1 client still gets its go-ahead.
func TestE2ENoContinueToHTTP10Client(t *testing.T) {
	t.Parallel()
	heads := make(chan struct{}, 2) // a request head reached the backend
	addr := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		heads <- struct{}{}
		body, _ := io.ReadAll(req.Body)
		io.WriteString(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	})
	// Both ways a body reaches the upstream: read whole first (the
	// default, request_buffering) and streamed after the request head.
	for _, buffering := range []bool{true, false} {
		rp := startProxy(t, expand(`
listener "pub" {
  address           = "127.0.0.1:1"
  request_buffering = @BUF@
}
upstream "app" {
  server "@B@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"B": addr, "BUF": fmt.Sprint(buffering)}), proxy.Options{})

		for _, version := range []string{"HTTP/1.0", "HTTP/1.1"} {
			c := proxy.DialRaw(t, rp.Addr("pub"))
			c.Send("POST /up " + version + "\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
			got := ""
			switch {
			case !buffering:
				<-heads // the proxy is past its answer to Expect: it streams the body now
			case version == "HTTP/1.1":
				// The proxy reads the body before it picks an upstream:
				// its go-ahead comes first, and the client waits for it
				// as a real one would.
				cont := make([]byte, len("HTTP/1.1 100 Continue\r\n\r\n"))
				c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, _ := io.ReadFull(c.BR, cont)
				got = string(cont[:n])
			}
			c.Send("hello")
			got += c.ReadAll()
			continues := strings.Count(got, " 100 Continue")
			switch {
			case !strings.HasSuffix(got, "\r\n\r\nhello"):
				t.Errorf("buffering=%v, %s client: got %q, want the final response with the body", buffering, version, got)
			case version == "HTTP/1.0" && continues != 0:
				t.Errorf("buffering=%v: HTTP/1.0 client got a 100 Continue: %q", buffering, got)
			case version == "HTTP/1.1" && (continues != 1 || !strings.HasPrefix(got, "HTTP/1.1 100 Continue\r\n\r\n")):
				t.Errorf("buffering=%v, HTTP/1.1 client: got %q, want one 100 Continue before the final response", buffering, got)
			}
			if buffering {
				<-heads
			}
		}
	}
}

func TestE2EInterimResponsesForwarded(t *testing.T) {
	t.Parallel()
	addr := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(c, br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"+
			"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
	})
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@B@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"B": addr}), proxy.Options{})

	c := proxy.DialRaw(t, rp.Addr("pub"))
	c.Send("GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	got := c.ReadAll()
	const hints = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n"
	if !strings.HasPrefix(got, hints) || !strings.HasSuffix(got, "\r\n\r\nok") {
		t.Errorf("HTTP/1.1 client: got %q, want the 103 with its Link field, then the 200 (and no 100)", got)
	}

	c = proxy.DialRaw(t, rp.Addr("pub"))
	c.Send("GET /page HTTP/1.0\r\nHost: x\r\n\r\n")
	if got := c.ReadAll(); !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(got, "\r\n\r\nok") {
		t.Errorf("HTTP/1.0 client: got %q, want the 200 alone", got)
	}
}

// TestE2EBodilessResponsesFramedCleanly: a 204 reaches the client without
// the Content-Length and the body the upstream sent with it, and neither
// a 204 nor a 304 carries Transfer-Encoding.
func TestE2EBodilessResponsesFramedCleanly(t *testing.T) {
	t.Parallel()
	addr := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		req, err := readRequest(c, br)
		if err != nil {
			return
		}
		switch req.URL.Path {
		case "/204-length":
			io.WriteString(c, "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello")
		case "/204-chunked":
			io.WriteString(c, "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		case "/304-chunked":
			io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nTransfer-Encoding: chunked\r\n\r\n")
		}
	})
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  keepalive_conns = 0
  server "@B@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"B": addr}), proxy.Options{})

	for _, path := range []string{"/204-length", "/204-chunked", "/304-chunked"} {
		c := proxy.DialRaw(t, rp.Addr("pub"))
		c.Send("GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		got := c.ReadAll()
		head, body, _ := strings.Cut(got, "\r\n\r\n")
		lower := strings.ToLower(head)
		if body != "" || strings.Contains(lower, "transfer-encoding") ||
			(strings.HasPrefix(path, "/204") && strings.Contains(lower, "content-length")) {
			t.Errorf("%s: got %q; want a head without framing fields and no body", path, got)
		}
	}
}

// TestE2EPooledConnReusedAfterReadTimeoutPassed: the probe before reuse
// does not mistake a clean idle connection for a dead one when the last
// response's read deadline (response_header_timeout, read_timeout) passed
// while it sat in the pool.
func TestE2EPooledConnReusedAfterReadTimeoutPassed(t *testing.T) {
	t.Parallel()
	var conns atomic.Int64
	addr := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, accountReply)
		}
	})
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  response_header_timeout = "200ms"
  read_timeout            = "200ms"
  idle_timeout            = "60s"
  server "@B@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"B": addr}), proxy.Options{})

	c := proxy.DialRaw(t, rp.Addr("pub"))
	for i := 0; i < 2; i++ {
		if i == 1 {
			// The time itself is what is tested: the pooled connection's
			// read deadline must lapse while it is idle.
			time.Sleep(300 * time.Millisecond)
		}
		c.Send("GET /account HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.MustRead("GET"); resp.StatusCode != 200 || body != "account" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d upstream connections for 2 requests; the idle one must be reused", n)
	}
}
