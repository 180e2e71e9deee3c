package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/config"
)

// This file is the harness of the package's own (white-box) tests: configs
// from config.Parse, a proxy on a loopback listener, recording
// backends and a raw client.

// testConfig is one listener, one upstream "app" of the given servers and
// one catch-all route "all" to it, built by config.Parse so that every
// field the file leaves out has config's default; tests then change
// fields as they need.
func testConfig(servers ...string) *config.Config {
	var src strings.Builder
	src.WriteString(`
listener "public" {
  address             = "127.0.0.1:1"
  client_header_timeout = "5s"
  client_body_timeout = "5s"
  send_timeout        = "5s"
  keepalive_timeout   = "5s"
  keepalive_requests  = 0
}
upstream "app" {
  connect_timeout         = "2s"
  response_header_timeout = "5s"
  read_timeout            = "5s"
  keepalive_conns         = 16
`)
	for _, s := range servers {
		fmt.Fprintf(&src, "  server %q {}\n", s)
	}
	src.WriteString(`}
route "all" { upstream = "app" }
`)
	cfg, err := config.Parse([]byte(src.String()), "test.hcl")
	if err != nil {
		panic(fmt.Sprintf("test config: %v", err))
	}
	return cfg
}

// running is a proxy under test.
type running struct {
	p    *Proxy
	addr string
	done chan struct{} // closed when Serve returned
	err  error         // Serve's result, valid after done
}

// start runs cfg's proxy on a loopback listener until the test ends.
func start(t testing.TB, cfg *config.Config, opts Options) *running {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}})
	}
	p, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &running{p: p, addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		r.err = p.Serve(map[string]net.Listener{cfg.Listeners[0].Name: ln})
		close(r.done)
	}()
	select {
	case <-p.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("proxy not ready")
	}
	t.Cleanup(func() {
		p.Close()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return r
}

// testWriter sends logs to the test log (only shown on failure).
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// seen is what a recording backend received.
type seen struct {
	Method, URI, Host, Proto string
	Header                   http.Header
	Body                     string
	TE                       []string
	CL                       int64
}

// backend is a net/http test server that records requests and answers
// by handler (default: 200 "ok <path>").
type backend struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newBackend(t testing.TB, h http.HandlerFunc) *backend {
	b := &backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.reqs = append(b.reqs, seen{r.Method, r.RequestURI, r.Host, r.Proto, r.Header.Clone(), string(body), r.TransferEncoding, r.ContentLength})
		b.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

func (b *backend) requests() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seen(nil), b.reqs...)
}

// client is a raw HTTP/1.1 connection to the proxy.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one response; method is the request's (for HEAD).
func (c *client) read(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading body: %v", err)
	}
	return resp, string(body)
}

// do sends a request and reads its response.
func (c *client) do(raw string) (*http.Response, string) {
	c.t.Helper()
	c.send(raw)
	method, _, _ := strings.Cut(raw, " ")
	return c.read(method)
}

// closed reports whether the proxy closed the connection (EOF or reset)
// within a few seconds.
func (c *client) closed() bool {
	c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var b [1]byte
	for {
		_, err := c.br.Read(b[:])
		if err != nil {
			ne, ok := err.(net.Error)
			return !(ok && ne.Timeout())
		}
	}
}

func get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: example.com\r\n\r\n"
}

func bytesReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// syncBuffer is a goroutine-safe bytes.Buffer (an access-log or error-log
// sink: the proxy writes from its own goroutines). The black-box tests use
// it as proxy.SyncBuffer (export_test.go).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
