package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestClientHeaderTimeout: a request head that stalls half way gets 408
// and a closed connection. (Stalled bodies and idle keep-alive connections:
// TestE2EClientBodyTimeout and TestE2EKeepaliveIdleTimeout.)
func TestClientHeaderTimeout(t *testing.T) {
	be := newBackend(t, nil)
	cfg := testConfig(be.addr())
	cfg.Listeners[0].ClientHeaderTimeout = 300 * time.Millisecond
	r := Start(t, cfg, Options{})
	c := DialRaw(t, r.Addr("public"))
	c.Send("GET / HTTP/1.1\r\nHost: h\r\n")
	resp, _ := c.MustRead("GET")
	if resp.StatusCode != 408 || !c.Closed() {
		t.Fatalf("partial head: %d", resp.StatusCode)
	}
}

// TestBadUpstreamResponses: a response that could be read two ways is a
// 502, never relayed.
func TestBadUpstreamResponses(t *testing.T) {
	for name, raw := range map[string]string{
		"CL and TE":    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"CL differ":    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"obs-fold":     "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
		"not HTTP":     "SSH-2.0-OpenSSH\r\n\r\n",
		"TE gzip":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"head too big": "HTTP/1.1 200 OK\r\nX-A: " + strings.Repeat("a", 40<<10) + "\r\n\r\n",
	} {
		addr := RawBackend(t, func(c net.Conn) {
			defer c.Close()
			http.ReadRequest(bufio.NewReader(c))
			io.WriteString(c, raw)
		})
		cfg := testConfig(addr)
		cfg.Upstreams[0].Retries = 0
		r := Start(t, cfg, Options{})
		resp, _ := DialRaw(t, r.Addr("public")).Do(get("/"))
		if resp.StatusCode != 502 {
			t.Errorf("%s: %d", name, resp.StatusCode)
		}
	}
	// A chunked body with a bad chunk size is cut, not passed on.
	addr := RawBackend(t, func(c net.Conn) {
		defer c.Close()
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nbad\r\n0\r\n\r\n")
	})
	r := Start(t, testConfig(addr), Options{})
	c := DialRaw(t, r.Addr("public"))
	c.Send(get("/"))
	resp, err := http.ReadResponse(c.BR, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Fatalf("bad chunked response relayed whole: %q", b)
	}
}
