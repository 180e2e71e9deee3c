package proxy_test

// End-to-end tests of the request-parsing hardening: trailers, the
// X-Request-Id prefix, Connection naming managed headers, absolute-form
// targets, route matching on the normalized path, and the conformance
// refusals (414, "*", fragments, bad Host values).

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// recordedReq is one request a rawRecorder received: the exact bytes read
// from the socket for it, and net/http's reading of them.
type recordedReq struct {
	Raw     string
	URI     string
	Host    string
	Header  http.Header
	Trailer http.Header
	Body    string
	Err     error // net/http could not read the request
}

// rawRecorder is a backend that keeps the exact bytes of every request
// and answers each with the raw response reply(request) returns.
type rawRecorder struct {
	Addr string
	mu   sync.Mutex
	reqs []recordedReq
	all  bytes.Buffer // every byte received, on every connection
}

func startRawRecorder(t testing.TB, reply func(*http.Request) string) *rawRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("raw recorder: listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	rr := &rawRecorder{Addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go rr.serve(c, reply)
		}
	}()
	return rr
}

// teeConn records what is read from the connection.
type teeConn struct {
	net.Conn
	rr  *rawRecorder
	buf *bytes.Buffer // this request's bytes so far
}

func (tc *teeConn) Read(p []byte) (int, error) {
	n, err := tc.Conn.Read(p)
	tc.rr.mu.Lock()
	tc.buf.Write(p[:n])
	tc.rr.all.Write(p[:n])
	tc.rr.mu.Unlock()
	return n, err
}

func (rr *rawRecorder) serve(c net.Conn, reply func(*http.Request) string) {
	defer c.Close()
	var cur bytes.Buffer
	br := bufio.NewReader(&teeConn{Conn: c, rr: rr, buf: &cur})
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			rr.mu.Lock()
			if cur.Len() > 0 {
				rr.reqs = append(rr.reqs, recordedReq{Raw: cur.String(), Err: err})
			}
			rr.mu.Unlock()
			return
		}
		body, err := io.ReadAll(req.Body)
		rr.mu.Lock()
		rr.reqs = append(rr.reqs, recordedReq{Raw: cur.String(), URI: req.RequestURI, Host: req.Host,
			Header: req.Header, Trailer: req.Trailer, Body: string(body), Err: err})
		cur.Reset()
		rr.mu.Unlock()
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, reply(req)); err != nil {
			return
		}
	}
}

func (rr *rawRecorder) requests() []recordedReq {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return append([]recordedReq(nil), rr.reqs...)
}

func (rr *rawRecorder) received() string {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.all.String()
}

func replyOK(*http.Request) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }

const hardeningConfig = `
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`

// TestE2ERequestTrailers: trailer fields of a chunked request are parsed
// as header fields and never forwarded; a trailer line that is not a
// header field (a smuggled request line) is 400 and never reaches the
// backend. Both for a body the proxy holds whole and one it streams.
func TestE2ERequestTrailers(t *testing.T) {
	t.Parallel()
	be := startRawRecorder(t, replyOK)
	rp := startProxy(t, expand(hardeningConfig, map[string]string{"BE": be.Addr}), proxy.Options{})

	big := strings.Repeat("x", 64<<10) // larger than the client read buffer: streamed
	for _, size := range []struct {
		name string
		data string
	}{{"buffered", "hello"}, {"streamed", big}} {
		t.Run(size.name+"/dropped", func(t *testing.T) {
			rc := proxy.DialRaw(t, rp.Addr("pub"))
			rc.Send(fmt.Sprintf("POST /t-%s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n"+
				"X-Trailer: secret\r\nContent-Length: 5\r\nHost: evil\r\n\r\n", size.name, len(size.data), size.data))
			resp, body := rc.MustRead("POST")
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("status %d %q", resp.StatusCode, clip(body))
			}
			var got *recordedReq
			for _, r := range be.requests() {
				if r.URI == "/t-"+size.name {
					got = &r
				}
			}
			if got == nil {
				t.Fatalf("request not received; backend got %q", clip(be.received()))
			}
			if got.Err != nil || got.Body != size.data {
				t.Fatalf("backend read error %v, body %d bytes", got.Err, len(got.Body))
			}
			if !strings.HasSuffix(got.Raw, "\r\n0\r\n\r\n") || strings.Contains(got.Raw, "X-Trailer") ||
				strings.Contains(got.Raw, "evil") || strings.Contains(got.Raw, "Content-Length") || len(got.Trailer) != 0 {
				t.Fatalf("trailers forwarded: raw tail %q, trailer %v", got.Raw[max(0, len(got.Raw)-80):], got.Trailer)
			}
		})
		t.Run(size.name+"/smuggled request line", func(t *testing.T) {
			rc := proxy.DialRaw(t, rp.Addr("pub"))
			rc.Send(fmt.Sprintf("POST /s-%s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n"+
				"GET /admin/secret HTTP/1.1\r\nHost: a\r\n\r\n", size.name, len(size.data), size.data))
			resp, body, err := rc.Read("POST")
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != 400 {
				t.Errorf("status %d %q, want 400", resp.StatusCode, clip(body))
			}
			if closed, _ := rc.ClosedWithin(3 * time.Second); !closed {
				t.Errorf("connection left open after a bad trailer")
			}
			if strings.Contains(be.received(), "/admin/secret") {
				t.Errorf("the smuggled request line reached the backend")
			}
		})
	}
	for _, bad := range []string{"X-A : b", "X-A", "X-A: b\r\n folded"} {
		t.Run("bad trailer "+bad, func(t *testing.T) {
			rc := proxy.DialRaw(t, rp.Addr("pub"))
			rc.Send("POST /bad HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + bad + "\r\n\r\n")
			resp, body, err := rc.Read("POST")
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != 400 {
				t.Errorf("status %d %q, want 400", resp.StatusCode, clip(body))
			}
			if closed, _ := rc.ClosedWithin(3 * time.Second); !closed {
				t.Errorf("connection left open after a bad trailer")
			}
		})
	}
}

// TestE2EResponseTrailers: an upstream's response trailers are validated
// like request trailers and dropped; a malformed one ends the response
// without the client ever seeing the bad line.
func TestE2EResponseTrailers(t *testing.T) {
	t.Parallel()
	be := startRawRecorder(t, func(r *http.Request) string {
		const head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
		if r.URL.Path == "/bad" {
			return head + "HTTP/1.1 200 OK\r\nX-Smuggled: 1\r\n\r\n"
		}
		return head + "X-Resp-Trailer: v\r\nContent-Length: 99\r\n\r\n"
	})
	rp := startProxy(t, expand(hardeningConfig, map[string]string{"BE": be.Addr}), proxy.Options{})

	rc := proxy.DialRaw(t, rp.Addr("pub"))
	rc.Send("GET /good HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, body := rc.MustRead("GET")
	if resp.StatusCode != 200 || body != "hello" || len(resp.Trailer) != 0 {
		t.Fatalf("status %d body %q trailer %v", resp.StatusCode, body, resp.Trailer)
	}
	// The connection is still in sync: a second request works.
	rc.Send("GET /good HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := rc.MustRead("GET"); resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("second request: status %d body %q", resp.StatusCode, body)
	}

	rc = proxy.DialRaw(t, rp.Addr("pub"))
	rc.Send("GET /bad HTTP/1.1\r\nHost: h\r\n\r\n")
	rc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, _ := io.ReadAll(rc.BR)
	if bytes.Contains(all, []byte("X-Smuggled")) || bytes.Count(all, []byte("HTTP/1.1 200")) > 1 {
		t.Fatalf("a malformed response trailer reached the client: %q", all)
	}
	if !bytes.HasPrefix(all, []byte("HTTP/1.1 200")) || bytes.HasSuffix(all, []byte("0\r\n\r\n")) {
		t.Fatalf("want a 200 cut short (no final chunk), got %q", all)
	}
}

// TestE2ERequestIDPrefixes: every proxy instance (every worker, every
// reload) draws its own 64-bit X-Request-Id prefix. With 8 random bits,
// 64 instances collide with near certainty.
func TestE2ERequestIDPrefixes(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "reqid")
	const n = 64
	prefixes := map[string]int{}
	var perPos [16]map[byte]bool
	for i := range perPos {
		perPos[i] = map[byte]bool{}
	}
	for i := 0; i < n; i++ {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			rp := startProxy(t, expand(hardeningConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
			r := do(t, newClient(), "GET", rp.URL("pub")+"/id", "", nil, nil)
			id := seenByBackend(t, r.Body).Header.Get("X-Request-Id")
			if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
				t.Fatalf("X-Request-Id %q is not 32 lower-case hex digits", id)
			}
			if j, dup := prefixes[id[:16]]; dup {
				t.Errorf("proxy %d has the request id prefix of proxy %d: %s", i, j, id[:16])
			}
			prefixes[id[:16]] = i
			for k := 0; k < 16; k++ {
				perPos[k][id[k]] = true
			}
		})
	}
	// 64 uniform draws of a hex digit leave fewer than 8 of the 16 values
	// unseen with negligible probability: a position with fewer is fixed
	// or derived.
	for k, seen := range perPos {
		if len(seen) < 8 {
			t.Errorf("prefix position %d took only %d distinct values in %d proxies", k, len(seen), n)
		}
	}
}

// TestE2EConnectionCannotStripManaged: naming Host, X-Request-Id or the
// X-Forwarded-* fields in Connection removes none of them; other named
// fields are removed as before.
func TestE2EConnectionCannotStripManaged(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "conn")
	rp := startProxy(t, expand(hardeningConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	rc.Send("GET /c HTTP/1.1\r\nHost: h.example\r\n" +
		"Connection: Host, X-Request-Id, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Private\r\n" +
		"X-Request-Id: client-id-1\r\nX-Private: p\r\n\r\n")
	resp, body := rc.MustRead("GET")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %q", resp.StatusCode, clip(body))
	}
	s := seenByBackend(t, body)
	if s.Host != "h.example" {
		t.Errorf("Host %q reached the backend, want h.example", s.Host)
	}
	if got := s.Header.Get("X-Request-Id"); got != "client-id-1" {
		t.Errorf("X-Request-Id %q, want the client's", got)
	}
	if s.Header.Get("X-Forwarded-For") == "" || s.Header.Get("X-Forwarded-Proto") != "http" || s.Header.Get("X-Forwarded-Host") != "h.example" {
		t.Errorf("X-Forwarded-* missing: %v", s.Header)
	}
	if s.Header.Get("X-Private") != "" {
		t.Errorf("X-Private, named in Connection, was forwarded")
	}
}

// TestE2EAbsoluteForm: an absolute-form target is forwarded in
// origin-form, routed by its authority (which also becomes the forwarded
// Host), and refused with userinfo.
func TestE2EAbsoluteForm(t *testing.T) {
	t.Parallel()
	bA, bB := startBackend(t, "A"), startBackend(t, "B")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "ua" {
  server "@A@" {}
}
upstream "ub" {
  server "@B@" {}
}
route "a" {
  host     = "a.example"
  upstream = "ua"
}
route "b" {
  host     = "b.example"
  upstream = "ub"
}
`, map[string]string{"A": bA.Addr, "B": bB.Addr}), proxy.Options{})

	cases := []struct{ target, uri string }{
		{"http://a.example?q=1", "/?q=1"},
		{"http://a.example", "/"},
		{"http://A.Example:80/p/q?x", "/p/q?x"},
	}
	for _, tc := range cases {
		rc := proxy.DialRaw(t, rp.Addr("pub"))
		rc.Send("GET " + tc.target + " HTTP/1.1\r\nHost: b.example\r\n\r\n")
		resp, body := rc.MustRead("GET")
		if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "A" {
			t.Errorf("%s: status %d from %q, want 200 from A (the authority wins over Host)", tc.target, resp.StatusCode, resp.Header.Get("X-Backend"))
			continue
		}
		s := seenByBackend(t, body)
		if s.URI != tc.uri {
			t.Errorf("%s: forwarded as %q, want %q", tc.target, s.URI, tc.uri)
		}
		if want := strings.SplitN(strings.TrimPrefix(tc.target, "http://"), "/", 2)[0]; s.Host != strings.SplitN(want, "?", 2)[0] {
			t.Errorf("%s: forwarded Host %q", tc.target, s.Host)
		}
	}
	for _, target := range []string{"http://user:pw@a.example/", "http://user@a.example/"} {
		rc := proxy.DialRaw(t, rp.Addr("pub"))
		rc.Send("GET " + target + " HTTP/1.1\r\nHost: a.example\r\n\r\n")
		resp, body := rc.MustRead("GET")
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d %q, want 400", target, resp.StatusCode, clip(body))
		}
	}
	if n := bA.hits() + bB.hits(); n != len(cases) {
		t.Errorf("backends received %d requests, want %d", n, len(cases))
	}
}

// TestE2ENormalizedRouting: a path_prefix deny route catches every
// spelling of its path (dot segments, escapes of unreserved characters
// and of '/', repeated slashes); a path climbing above "/" is 400; the
// backend receives the path as the client wrote it.
func TestE2ENormalizedRouting(t *testing.T) {
	t.Parallel()
	be := startRawRecorder(t, replyOK)
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@BE@" {}
}
route "deny-admin" {
  path_prefix = "/admin/"
  respond {
    status = 403
    body   = "denied"
  }
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})

	cases := []struct {
		path   string
		status int
	}{
		{"/admin/x", 403},
		{"/x/../admin/", 403},
		{"/%61dmin/", 403},
		{"/%61%64%6D%69%6E/", 403},
		{"//admin/", 403},
		{"/./admin//x", 403},
		{"/x%2F..%2Fadmin/", 403},
		{"/x/%2e%2e/admin/", 403},
		{"/admin/../admin/?q", 403},
		{"/../admin/", 400},
		{"/%2e%2e/admin/", 400},
		{"/a/%zz", 400},
		{"/administrator", 200},
		{"/x//y/./z/../w?a=/../b", 200},
		{"/%41dmin/", 200},
	}
	for _, tc := range cases {
		rc := proxy.DialRaw(t, rp.Addr("pub"))
		rc.Send("GET " + tc.path + " HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, body := rc.MustRead("GET")
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d %q, want %d", tc.path, resp.StatusCode, clip(body), tc.status)
		}
	}
	raw := be.received()
	if strings.Contains(raw, "admin/") {
		t.Errorf("a path to /admin/ reached the backend: %q", clip(raw))
	}
	// Forwarded as written, not normalized.
	if !strings.Contains(raw, "GET /x//y/./z/../w?a=/../b HTTP/1.1\r\n") || !strings.Contains(raw, "GET /%41dmin/ HTTP/1.1\r\n") {
		t.Errorf("paths not forwarded as written: %q", clip(raw))
	}
}

// TestE2ERequestConformance: 414 for an over-long request line (431 stays
// for header fields), and 400 for "*" with a method other than OPTIONS, a
// fragment in the target, and a Host that is not a host.
func TestE2ERequestConformance(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "conf")
	rp := startProxy(t, expand(protocolConfig, map[string]string{"BE": be.Addr}), proxy.Options{})
	cases := []struct {
		name, req string
		want      int
	}{
		{"long request line", "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"long header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", 431},
		{"asterisk GET", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"fragment", "GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"Host with slash", "GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", 400},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@x\r\n\r\n", 400},
		{"Host with space", "GET / HTTP/1.1\r\nHost: x y\r\n\r\n", 400},
		{"Host bad port", "GET / HTTP/1.1\r\nHost: x:8a\r\n\r\n", 400},
		{"Host bad IP literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := proxy.DialRaw(t, rp.Addr("pub"))
			rc.Send(tc.req)
			resp, body, err := rc.Read("GET")
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != tc.want {
				t.Errorf("status %d %q, want %d", resp.StatusCode, clip(body), tc.want)
			}
			if closed, _ := rc.ClosedWithin(3 * time.Second); !closed {
				t.Errorf("connection left open after refusing a malformed request")
			}
		})
	}
	if n := be.hits(); n != 0 {
		t.Errorf("the backend received %d of these requests: %v", n, be.requests())
	}
	// OPTIONS * still goes through (net/http's server answers it itself).
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	rc.Send("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := rc.MustRead("OPTIONS"); resp.StatusCode != 200 {
		t.Errorf("OPTIONS *: status %d %q", resp.StatusCode, clip(body))
	}
}
