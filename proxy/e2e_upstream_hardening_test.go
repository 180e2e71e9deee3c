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
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// rawUpstream is a raw-socket backend for the e2e tests: serve gets every
// accepted connection with a reader on it, and the connection is closed
// when serve returns. Cleanup closes the listener.
func rawUpstream(t testing.TB, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
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
						io.WriteString(c, tc.answer)
						if late {
							<-release
						}
						io.WriteString(c, poison)
						if late {
							close(written)
						}
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

				a := dialRaw(t, rp.Addr("pub"))
				a.send(tc.method + " /x HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, _ := a.mustRead(tc.method)
				if resp.Header.Get("X-Poison") != "" {
					t.Fatalf("the first client got the stray response")
				}
				if late {
					close(release)
					<-written
				}
				for i := 0; i < 3; i++ {
					b := dialRaw(t, rp.Addr("pub"))
					b.send("GET /account HTTP/1.1\r\nHost: x\r\n\r\n")
					resp, body := b.mustRead("GET")
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

			c := dialRaw(t, rp.Addr("pub"))
			c.send("GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, _ := c.mustRead("GET"); resp.StatusCode != 200 {
				t.Fatalf("warm-up: status %d", resp.StatusCode)
			}
			body := ""
			if method == "POST" {
				body = "amount=100"
			}
			c.send(fmt.Sprintf("%s /act HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", method, len(body), body))
			resp, got := c.mustRead(method)
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
