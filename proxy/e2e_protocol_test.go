package proxy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// protocolConfig is one listener with small limits, in front of one backend.
const protocolConfig = `
listener "pub" {
  address            = "127.0.0.1:1"
  max_header_size    = 4096
  keepalive_requests = 3
}
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`

// TestE2EHeadRequest: a HEAD response carries the upstream's Content-Length
// but no body, and the connection stays usable: a proxy that waited for
// that body would hang or desynchronise the next response.
func TestE2EHeadRequest(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "head")
	rp := startProxy(t, expand(protocolConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	rc.Send("HEAD /big?n=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := rc.MustRead("HEAD")
	if resp.StatusCode != 200 || resp.ContentLength != 5000 || body != "" {
		t.Errorf("HEAD: status %d Content-Length %d body %q; want 200, 5000, no body", resp.StatusCode, resp.ContentLength, clip(body))
	}
	rc.Send("GET /after-head HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body = rc.MustRead("GET")
	if resp.StatusCode != 200 || seenByBackend(t, body).URI != "/after-head" {
		t.Errorf("request after HEAD: status %d %q", resp.StatusCode, clip(body))
	}
}

// TestE2EExpectContinue: a client that sends Expect: 100-continue gets the
// go-ahead before it sends its body, and then the real response.
func TestE2EExpectContinue(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "expect")
	rp := startProxy(t, expand(protocolConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	rc.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n")
	rc.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := rc.BR.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("waiting for 100 Continue before sending the body: got %q, %v", line, err)
	}
	if blank, err := rc.BR.ReadString('\n'); err != nil || blank != "\r\n" {
		t.Fatalf("100 Continue not followed by an empty line: %q %v", blank, err)
	}
	rc.Send("payload")
	resp, body := rc.MustRead("POST")
	if resp.StatusCode != 200 || body != "payload" {
		t.Errorf("after 100 Continue: status %d body %q, want 200 payload", resp.StatusCode, clip(body))
	}
	// The proxy answered the expectation itself: it is not passed on.
	if reqs := be.requests(); len(reqs) != 1 {
		t.Errorf("the backend got %d requests, want 1", len(reqs))
	} else if expect := reqs[0].Header.Get("Expect"); expect != "" {
		t.Errorf("the backend got Expect %q; the proxy must not pass it on", expect)
	}
}

// TestE2EKeepaliveRequests: after keepalive_requests requests on one
// connection, the last response says Connection: close and the proxy
// closes it.
func TestE2EKeepaliveRequests(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "kar")
	rp := startProxy(t, expand(protocolConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	for i := 1; i <= 3; i++ {
		rc.Send(fmt.Sprintf("GET /n/%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
		resp, _ := rc.MustRead("GET")
		if resp.StatusCode != 200 || resp.Close != (i == 3) {
			t.Errorf("request %d of 3: status %d, Connection: close %v; want close only on the 3rd", i, resp.StatusCode, resp.Close)
		}
	}
	if closed, _ := rc.ClosedWithin(3 * time.Second); !closed {
		t.Errorf("connection open after keepalive_requests were served")
	}
}

// TestE2EBadRequests: requests a proxy must refuse by itself, never
// forwarding them: a head over max_header_size, a missing Host, a malformed
// request line, an unsupported HTTP version.
func TestE2EBadRequests(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "bad")
	rp := startProxy(t, expand(protocolConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	cases := []struct {
		name, req string
		want      []int
	}{
		{"head over max_header_size", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", []int{431, 400}},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", []int{400}},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", []int{400}},
		{"garbage request line", "HELLO\r\n\r\n", []int{400}},
		{"HTTP/2.0 text", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", []int{505, 400}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := proxy.DialRaw(t, rp.Addr("pub"))
			rc.Send(tc.req)
			resp, body, err := rc.Read("GET")
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			ok := false
			for _, w := range tc.want {
				ok = ok || resp.StatusCode == w
			}
			if !ok {
				t.Errorf("status %d %q, want one of %v", resp.StatusCode, clip(body), tc.want)
			}
			if closed, _ := rc.ClosedWithin(3 * time.Second); !closed {
				t.Errorf("connection left open after refusing a malformed request")
			}
		})
	}
	if n := be.hits(); n != 0 {
		t.Errorf("the backend received %d of these requests: %v", n, be.requests())
	}
}
