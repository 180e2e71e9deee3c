package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

func TestProxyHeaders(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "b")
		w.Header().Set("X-Drop-Me", "1")
		w.Header().Set("X-Served-By", "backend")
		w.Header().Set("Keep-Alive", "timeout=5")
		io.WriteString(w, "hello")
	})
	cfg := testConfig(be.addr())
	rc := &cfg.Routes[0]
	rc.RequestHeaders = map[string]string{"X-Added": "yes"}
	rc.RemoveRequestHeaders = []string{"X-Remove"}
	rc.ResponseHeaders = map[string]string{"X-Served-By": "pingora"}
	rc.RemoveResponseHeaders = []string{"X-Drop-Me"}
	r := Start(t, cfg, Options{})
	c := DialRaw(t, r.Addr("public"))
	resp, body := c.Do("GET /p?q=1 HTTP/1.1\r\nHost: Example.com\r\nX-Forwarded-For: 10.1.1.1\r\n" +
		"Connection: keep-alive, X-Hop\r\nX-Hop: h\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: x\r\n" +
		"X-Remove: r\r\nX-Keep: k\r\n\r\n")
	if resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Served-By") != "pingora" || resp.Header.Get("X-Drop-Me") != "" ||
		resp.Header.Get("X-Backend") != "b" || resp.Header.Get("Keep-Alive") != "" {
		t.Fatalf("response headers %v", resp.Header)
	}
	got := be.requests()[0]
	h := got.Header
	if got.URI != "/p?q=1" || got.Host != "Example.com" || got.Proto != "HTTP/1.1" {
		t.Fatalf("uri %q host %q proto %q", got.URI, got.Host, got.Proto)
	}
	if xff := h.Get("X-Forwarded-For"); xff != "10.1.1.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", xff)
	}
	if h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-Host") != "Example.com" {
		t.Errorf("X-Forwarded-Proto %q Host %q", h.Get("X-Forwarded-Proto"), h.Get("X-Forwarded-Host"))
	}
	if id := h.Get("X-Request-Id"); len(id) != 32 {
		t.Errorf("X-Request-Id %q", id)
	}
	for _, hop := range []string{"Connection", "X-Hop", "Keep-Alive", "Te", "Proxy-Authorization", "X-Remove"} {
		if v, ok := h[hop]; ok {
			t.Errorf("hop-by-hop or removed header %s passed: %q", hop, v)
		}
	}
	if h.Get("X-Added") != "yes" || h.Get("X-Keep") != "k" {
		t.Errorf("headers %v", h)
	}
	// A client X-Request-Id is kept; ids differ per request.
	c.Do("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: mine\r\n\r\n")
	c.Do("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	reqs := be.requests()
	if reqs[1].Header.Get("X-Request-Id") != "mine" || reqs[2].Header.Get("X-Request-Id") == h.Get("X-Request-Id") {
		t.Errorf("request ids %q %q", reqs[1].Header.Get("X-Request-Id"), reqs[2].Header.Get("X-Request-Id"))
	}
}

func TestRouting(t *testing.T) {
	be := newBackend(t, nil)
	cfg := testConfig(be.addr())
	cfg.Routes = []config.Route{
		{Name: "exact", Host: "api.example.com", Listeners: []string{"public"}, PathPrefix: "/", Respond: &config.Respond{Status: 200, Body: "exact"}, MaxBodySize: -1},
		{Name: "exact-v2", Host: "api.example.com", Listeners: []string{"public"}, PathPrefix: "/v2/", Respond: &config.Respond{Status: 200, Body: "exact-v2"}, MaxBodySize: -1},
		{Name: "wild", Host: "*.example.com", Listeners: []string{"public"}, PathPrefix: "/", Respond: &config.Respond{Status: 200, Body: "wild"}, MaxBodySize: -1},
		{Name: "static", Listeners: []string{"public"}, PathPrefix: "/static/", Respond: &config.Respond{Status: 201, Body: "static"},
			ResponseHeaders: map[string]string{"X-R": "1"}, MaxBodySize: -1},
		{Name: "proxied", Listeners: []string{"public"}, PathPrefix: "/app/", Upstream: "app", MaxBodySize: -1},
		{Name: "redirect", Listeners: []string{"public"}, PathPrefix: "/old", Respond: &config.Respond{Status: 301},
			ResponseHeaders: map[string]string{"Location": "/new"}, MaxBodySize: -1},
	}
	r := Start(t, cfg, Options{})
	c := DialRaw(t, r.Addr("public"))
	cases := []struct{ host, path, want string }{
		{"api.example.com", "/x", "exact"},
		{"API.Example.COM:8080", "/v2/x", "exact-v2"},
		{"api.example.com.", "/v2", "exact"},
		{"a.example.com", "/", "wild"},
		{"a.b.example.com", "/", "wild"},
		{"example.com", "/static/a", "static"},
		{"other", "/static/a", "static"},
		{"other", "/app/x", "ok /app/x"},
	}
	for _, k := range cases {
		resp, body := c.Do("GET " + k.path + " HTTP/1.1\r\nHost: " + k.host + "\r\n\r\n")
		if body != k.want {
			t.Errorf("%s%s: %d %q, want %q", k.host, k.path, resp.StatusCode, body, k.want)
		}
	}
	resp, body := c.Do("GET /nothing HTTP/1.1\r\nHost: other\r\n\r\n")
	if resp.StatusCode != 404 || !strings.Contains(body, "Not Found") || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("no route: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, _ = c.Do("GET /static/x HTTP/1.1\r\nHost: other\r\n\r\n")
	if resp.StatusCode != 201 || resp.Header.Get("X-R") != "1" {
		t.Errorf("respond: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = c.Do("GET /old HTTP/1.1\r\nHost: other\r\n\r\n")
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "/new" {
		t.Errorf("redirect: %d %v", resp.StatusCode, resp.Header)
	}
	resp, body = c.Do("HEAD /static/x HTTP/1.1\r\nHost: other\r\n\r\n")
	if resp.StatusCode != 201 || body != "" || resp.ContentLength != 6 {
		t.Errorf("HEAD respond: %d %q %d", resp.StatusCode, body, resp.ContentLength)
	}
	st := r.P.Stats()
	if st.Routes[0].Name != "exact" || st.Routes[0].Responses[1] != 2 || st.Unrouted[3] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouteMatchUnit(t *testing.T) {
	cfg := testConfig("127.0.0.1:1")
	mk := func(name, host, prefix string) config.Route {
		return config.Route{Name: name, Listeners: []string{"public"}, Host: host, PathPrefix: prefix, Upstream: "app", MaxBodySize: -1}
	}
	cfg.Routes = []config.Route{mk("any", "", "/"), mk("any-api", "", "/api/"), mk("h", "h.com", "/x/"),
		mk("w", "*.h.com", "/"), mk("w2", "*.b.h.com", "/")}
	p, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tab := p.listeners["public"].table
	for _, k := range []struct{ host, path, want string }{
		{"h.com", "/x/1", "h"}, {"H.COM:80", "/x/", "h"}, {"h.com", "/y", "any"}, {"h.com", "/api/1", "any-api"},
		{"a.h.com", "/", "w"}, {"a.b.h.com", "/", "w2"}, {"b.h.com", "/", "w"}, {"[::1]:80", "/api/", "any-api"},
		{"", "/", "any"}, {"xh.com", "/x/", "any"},
	} {
		rt := tab.match([]byte(k.host), []byte(k.path))
		if rt == nil || rt.name != k.want {
			t.Errorf("%s %s: got %v, want %s", k.host, k.path, rt, k.want)
		}
	}
}

func TestChunkedRequestBody(t *testing.T) {
	be := newBackend(t, nil)
	r := Start(t, testConfig(be.addr()), Options{})
	c := DialRaw(t, r.Addr("public"))
	resp, _ := c.Do("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	got := be.requests()[0]
	if got.Body != "hello world" || len(got.TE) != 1 || got.TE[0] != "chunked" {
		t.Fatalf("backend got %q TE %v", got.Body, got.TE)
	}
	// Streamed in pieces (not in the buffer when the head is parsed); a bad
	// chunk size half way cuts the request with 400.
	c2 := DialRaw(t, r.Addr("public"))
	c2.Send("POST /s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
	time.Sleep(50 * time.Millisecond)
	c2.Send("lo\r\nq\r\n")
	resp, _ = c2.MustRead("POST")
	if resp.StatusCode != 400 || !c2.Closed() {
		t.Fatalf("bad chunk mid-stream: %d", resp.StatusCode)
	}
}

func TestStatuses(t *testing.T) {
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1500 * time.Millisecond)
	})
	// A port with nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()

	t.Run("502 refused", func(t *testing.T) {
		cfg := testConfig(dead)
		r := Start(t, cfg, Options{})
		resp, body := DialRaw(t, r.Addr("public")).Do(get("/"))
		if resp.StatusCode != 502 || body != "502 Bad Gateway\n" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if r.P.Stats().UpstreamErr == 0 {
			t.Error("upstream error not counted")
		}
	})
	t.Run("503 no server", func(t *testing.T) {
		// Two servers: a lone one is never marked down (as nginx).
		ln2, _ := net.Listen("tcp", "127.0.0.1:0")
		dead2 := ln2.Addr().String()
		ln2.Close()
		cfg := testConfig(dead, dead2)
		cfg.Upstreams[0].Retries = 1
		r := Start(t, cfg, Options{})
		c := DialRaw(t, r.Addr("public"))
		c.Do(get("/")) // fails on both: max_fails 1 marks them down
		resp, _ := c.Do(get("/"))
		if resp.StatusCode != 503 {
			t.Fatalf("%d", resp.StatusCode)
		}
	})
	t.Run("504 timeout", func(t *testing.T) {
		cfg := testConfig(slow.addr())
		cfg.Upstreams[0].ResponseHeaderTimeout = 300 * time.Millisecond
		cfg.Upstreams[0].Retries = 0
		r := Start(t, cfg, Options{})
		resp, _ := DialRaw(t, r.Addr("public")).Do(get("/"))
		if resp.StatusCode != 504 {
			t.Fatalf("%d", resp.StatusCode)
		}
	})
	t.Run("413", func(t *testing.T) {
		be := newBackend(t, nil)
		cfg := testConfig(be.addr())
		cfg.Listeners[0].MaxBodySize = 10
		r := Start(t, cfg, Options{})
		c := DialRaw(t, r.Addr("public"))
		resp, _ := c.Do("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n01234567890")
		if resp.StatusCode != 413 {
			t.Fatalf("CL: %d", resp.StatusCode)
		}
		// Known length, body not sent (Expect): 413 at once, no 100.
		c = DialRaw(t, r.Addr("public"))
		resp, _ = c.Do("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
		if resp.StatusCode != 413 || !resp.Close {
			t.Fatalf("expect: %d", resp.StatusCode)
		}
		// Chunked, over the limit while streaming.
		c = DialRaw(t, r.Addr("public"))
		c.Send("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n")
		time.Sleep(50 * time.Millisecond)
		c.Send("6\r\n012345\r\n0\r\n\r\n")
		resp, _ = c.MustRead("POST")
		if resp.StatusCode != 413 {
			t.Fatalf("chunked: %d", resp.StatusCode)
		}
		for _, s := range be.requests() {
			if s.Body == "01234012345" {
				t.Errorf("backend got the whole oversized body")
			}
		}
	})
	t.Run("431", func(t *testing.T) {
		cfg := testConfig(dead)
		cfg.Listeners[0].MaxHeaderSize = 4096
		r := Start(t, cfg, Options{})
		c := DialRaw(t, r.Addr("public"))
		resp, _ := c.Do("GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n")
		if resp.StatusCode != 431 {
			t.Fatalf("%d", resp.StatusCode)
		}
	})
	t.Run("429", func(t *testing.T) {
		be := newBackend(t, nil)
		cfg := testConfig(be.addr())
		cfg.Routes[0].RateLimit = &config.RateLimit{Requests: 1, Per: 10 * time.Second, Burst: 0, Key: "client_ip", Scope: config.ScopeMachine}
		r := Start(t, cfg, Options{})
		c := DialRaw(t, r.Addr("public"))
		if resp, _ := c.Do(get("/")); resp.StatusCode != 200 {
			t.Fatalf("first: %d", resp.StatusCode)
		}
		resp, _ := c.Do(get("/"))
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Retry-After") == "0" {
			t.Fatalf("%d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if r.P.Stats().RateLimited != 1 {
			t.Error("rate limited not counted")
		}
	})
}

func TestRetries(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	be := newBackend(t, nil)
	cfg := testConfig(dead, be.addr())
	cfg.Upstreams[0].Servers[0].MaxFails = 0 // stays in rotation
	r := Start(t, cfg, Options{})
	c := DialRaw(t, r.Addr("public"))
	for i := 0; i < 4; i++ {
		// A connect failure goes to the next server, for POST too.
		resp, _ := c.Do("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}

	// A reset after the request is retried for GET but not for POST.
	var mu sync.Mutex
	hits := 0
	resetter := RawBackend(t, func(c net.Conn) {
		mu.Lock()
		hits++
		mu.Unlock()
		buf := make([]byte, 4096)
		c.Read(buf)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	cfg = testConfig(resetter, be.addr())
	cfg.Upstreams[0].Servers[0].MaxFails = 0
	r = Start(t, cfg, Options{})
	c = DialRaw(t, r.Addr("public"))
	for i := 0; i < 2; i++ {
		if resp, _ := c.Do(get("/")); resp.StatusCode != 200 {
			t.Fatalf("GET %d: %d", i, resp.StatusCode)
		}
	}
	post502 := 0
	for i := 0; i < 2; i++ {
		resp, _ := DialRaw(t, r.Addr("public")).Do("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
		if resp.StatusCode == 502 {
			post502++
		}
	}
	if post502 != 1 {
		t.Fatalf("POST got 502 %d times of 2 (round robin: once on the resetting server)", post502)
	}
}

// TestStalePooledConnPOST: a keep-alive upstream connection that the
// server closed while idle is not a failure: a POST whose body is in our
// buffer is sent again on a fresh connection to the same server.
func TestStalePooledConnPOST(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	addr := RawBackend(t, func(c net.Conn) {
		mu.Lock()
		conns++
		mu.Unlock()
		defer c.Close()
		br := bufio.NewReader(c)
		// Serve exactly one request per connection but advertise
		// keep-alive, then close without telling (as an idle timeout does).
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(20 * time.Millisecond)
	})
	cfg := testConfig(addr)
	cfg.Upstreams[0].Retries = 0
	r := Start(t, cfg, Options{})
	c := DialRaw(t, r.Addr("public"))
	for i := 0; i < 5; i++ {
		resp, body := c.Do("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("POST %d: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(60 * time.Millisecond) // the server has closed the pooled conn
	}
}

func TestHTTP10AndKeepAlive(t *testing.T) {
	be := newBackend(t, nil)
	r := Start(t, testConfig(be.addr()), Options{})
	c := DialRaw(t, r.Addr("public"))
	resp, _ := c.Do("GET / HTTP/1.0\r\n\r\n")
	if resp.StatusCode != 200 || !c.Closed() {
		t.Fatal("HTTP/1.0 without keep-alive must be closed")
	}
	c = DialRaw(t, r.Addr("public"))
	resp, _ = c.Do("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if resp.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("Connection %q", resp.Header.Get("Connection"))
	}
	if resp, _ = c.Do("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	c = DialRaw(t, r.Addr("public"))
	resp, _ = c.Do("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	if !resp.Close || !c.Closed() {
		t.Fatal("Connection: close not honoured")
	}
}

// TestResponseFraming: chunked passes through, read-to-close is chunked
// for HTTP/1.1 and raw (then close) for HTTP/1.0; HEAD has no body.
func TestResponseFraming(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	chunked := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 4; i++ {
			io.WriteString(w, big[:len(big)/4])
			w.(http.Flusher).Flush()
		}
	})
	toClose := RawBackend(t, func(c net.Conn) {
		defer c.Close()
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"+big)
	})
	for _, tc := range []struct {
		name, addr, proto string
		te                []string
		closed            bool
	}{
		{"chunked 1.1", chunked.addr(), "1.1", []string{"chunked"}, false},
		{"chunked 1.0", chunked.addr(), "1.0", nil, true},
		{"to-close 1.1", toClose, "1.1", []string{"chunked"}, false},
		{"to-close 1.0", toClose, "1.0", nil, true},
	} {
		r := Start(t, testConfig(tc.addr), Options{})
		c := DialRaw(t, r.Addr("public"))
		req := "GET / HTTP/" + tc.proto + "\r\nHost: h\r\n"
		if tc.proto == "1.0" {
			req += "Connection: keep-alive\r\n"
		}
		resp, body := c.Do(req + "\r\n")
		if resp.StatusCode != 200 || body != big || fmt.Sprint(resp.TransferEncoding) != fmt.Sprint(tc.te) {
			t.Errorf("%s: %d len %d TE %v", tc.name, resp.StatusCode, len(body), resp.TransferEncoding)
		}
		if tc.closed != c.Closed() {
			t.Errorf("%s: closed %v, want %v", tc.name, !tc.closed, tc.closed)
		}
	}
	r := Start(t, testConfig(chunked.addr()), Options{})
	c := DialRaw(t, r.Addr("public"))
	resp, body := c.Do("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	if resp, _ = c.Do(get("/")); resp.StatusCode != 200 {
		t.Fatal("connection unusable after HEAD")
	}
}

func TestUpgradeTunnel(t *testing.T) {
	echo := RawBackend(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Header.Get("Upgrade") != "echo" || req.Header.Get("Connection") != "Upgrade" {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, br)
	})
	r := Start(t, testConfig(echo), Options{})
	c := DialRaw(t, r.Addr("public"))
	c.Send("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(c.BR, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("%v %v", resp, err)
	}
	for i := 0; i < 3; i++ {
		msg := fmt.Sprintf("ping %d", i)
		c.Send(msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c.BR, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q %v", buf, err)
		}
	}
	if r.P.Stats().InFlight != 1 {
		t.Errorf("tunnel not in flight: %d", r.P.Stats().InFlight)
	}
}

func TestAccessLog(t *testing.T) {
	be := newBackend(t, nil)
	var buf SyncBuffer
	cfg := testConfig(be.addr())
	cfg.AccessLog = &config.AccessLog{File: "x", BufferSize: 1 << 16, FlushInterval: time.Hour}
	r := Start(t, cfg, Options{AccessLog: &buf})
	c := DialRaw(t, r.Addr("public"))
	c.Do("GET /a\"b?x HTTP/1.1\r\nHost: h\r\nX-Request-Id: id-1\r\n\r\n")
	c.Do(get("/nope"))
	WaitFor(t, 5*time.Second, "2 requests counted", func() bool { return r.P.Stats().Requests == 2 })
	r.P.SetAccessLog(io.Discard) // flushes to buf
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	if e["method"] != "GET" || e["path"] != "/a\"b?x" || e["host"] != "h" || e["status"] != 200.0 ||
		e["upstream"] != be.addr() || e["request_id"] != "id-1" || e["route"] != "all" {
		t.Fatalf("entry %v", e)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", e["time"].(string)); err != nil {
		t.Errorf("time %v", e["time"])
	}
	for _, k := range []string{"client", "bytes_in", "bytes_out", "duration_ms", "upstream_ms"} {
		if _, ok := e[k]; !ok {
			t.Errorf("missing %s", k)
		}
	}
	json.Unmarshal([]byte(lines[1]), &e)
	if len(e["request_id"].(string)) != 32 {
		t.Errorf("generated id %v", e["request_id"])
	}
}
