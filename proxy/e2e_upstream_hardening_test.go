package proxy_test

// Hardening of the upstream side: pooled connections that carry stray
// bytes, requests that must not be sent twice, passive health that must not
// blame a server for the proxy's own failures, early upstream answers to a
// streamed body, and the conformance of interim and bodiless responses. The
// backends here are raw sockets: they send exactly the bytes a misbehaving
// server would, which net/http refuses to.

import (
	"bufio"
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
