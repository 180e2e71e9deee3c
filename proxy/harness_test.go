package proxy

// This file is the one harness of the package's tests: the white-box tests
// (package proxy) and the end-to-end tests (package proxy_test, the
// e2e_*_test.go files) start proxies, talk raw HTTP/1.1 to them, fake
// backends, collect logs and wait for conditions through the helpers here.
//
// Why here and exported: the white-box tests need a running proxy and a raw
// client too (to look at pools, parked descriptors and body buffers while
// traffic flows), and package proxy cannot import proxy_test; proxy_test, on
// the other hand, sees every exported name of this package's test files. So
// each job is written once, in this file, and the end-to-end tests call it as
// proxy.Start, proxy.DialRaw, ... (methods exported, so that they are
// visible from proxy_test). e2e_harness_test.go keeps only what the
// end-to-end tests alone need: configs from HCL templates, a net/http client,
// refused ports. The recording backend below (newBackend) is the white-box
// tests' handler-driven one; the end-to-end tests' scripted backend with its
// misbehaviours lives in e2e_backend_test.go.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/config"
)

// ---- configs ----

// testConfig is one listener "public", one upstream "app" of the given
// servers and one catch-all route "all" to it, built by config.Parse so that
// every field the file leaves out has config's default; tests then change
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

// ---- a proxy under test ----

// Running is one proxy under test with its loopback listeners.
type Running struct {
	P     *Proxy
	Cfg   *config.Config
	addrs map[string]string // listener name -> "127.0.0.1:port"
	done  chan struct{}     // closed when Serve has returned
	err   error             // Serve's result, valid after done
	at    time.Time         // when Serve returned, valid after done
}

// Addr is the loopback address of the named listener.
func (r *Running) Addr(name string) string {
	a, ok := r.addrs[name]
	if !ok {
		panic("no listener " + name)
	}
	return a
}

// URL is "http://<addr of listener>".
func (r *Running) URL(name string) string { return "http://" + r.Addr(name) }

// Served reports whether Serve has returned within d (at once when it
// already has, even for d 0).
func (r *Running) Served(d time.Duration) bool {
	select {
	case <-r.done:
		return true
	default:
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-r.done:
		return true
	case <-timer.C:
		return false
	}
}

// ServeErr is what Serve returned; valid once Served is true.
func (r *Running) ServeErr() error { return r.err }

// ServedAt is when Serve returned; valid once Served is true.
func (r *Running) ServedAt() time.Time { return r.at }

// Start creates cfg's proxy, gives it one fresh loopback listener per
// configured listener (the configured addresses are not bound), and waits
// until it is ready. Cleanup closes it and checks that Serve returns. With no
// opts.Logger the proxy logs through LoggerFor.
func Start(t testing.TB, cfg *config.Config, opts Options) *Running {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = LoggerFor(t)
	}
	p, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	r := &Running{P: p, Cfg: cfg, addrs: map[string]string{}, done: make(chan struct{})}
	lns := map[string]net.Listener{}
	for _, l := range cfg.Listeners {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen for %s: %v", l.Name, err)
		}
		lns[l.Name] = ln
		r.addrs[l.Name] = ln.Addr().String()
	}
	go func() {
		r.err = p.Serve(lns)
		r.at = time.Now()
		close(r.done)
	}()
	t.Cleanup(func() {
		p.Close()
		if !r.Served(5 * time.Second) {
			t.Errorf("Serve did not return within 5s of Close")
		}
	})
	select {
	case <-p.Ready():
	case <-r.done:
		t.Fatalf("Serve returned before Ready: %v", r.err)
	case <-time.After(5 * time.Second):
		t.Fatalf("proxy not Ready within 5s")
	}
	return r
}

// ---- logs ----

// LoggerFor is the proxy's logger in tests: warnings and errors go to the
// test's log (shown when it fails), or, with PINGORA_E2E_LOG set, everything
// goes to stderr so that a failing run can be repeated with the proxy's whole
// log.
func LoggerFor(t testing.TB) hclog.Logger {
	if os.Getenv("PINGORA_E2E_LOG") != "" {
		return hclog.New(&hclog.LoggerOptions{Name: "proxy", Level: hclog.Debug, Output: os.Stderr})
	}
	w := &testWriter{t: t}
	// Registered before the proxy's own cleanup, so run after it: a
	// goroutine that logs late is silenced rather than calling t.Log on a
	// finished test (which panics).
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return hclog.New(&hclog.LoggerOptions{Name: "proxy", Level: hclog.Warn, Output: w})
}

// testWriter sends logs to the test log until the test's cleanup.
type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

// SyncBuffer is a goroutine-safe bytes.Buffer: an access-log or error-log
// sink the proxy writes from its own goroutines while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ---- waiting ----

// WaitFor polls cond every 10ms until it holds or the timeout passes: the
// readiness signal for things the proxy does on its own clock (health
// checks, drains, connection bookkeeping).
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---- backends ----

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

// RawBackend accepts connections on a loopback port and hands each to fn,
// for backends that must write exact bytes; it returns the address.
// Cleanup closes the listener.
func RawBackend(t testing.TB, fn func(net.Conn)) string {
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
			go fn(c)
		}
	}()
	return ln.Addr().String()
}

// ---- raw HTTP/1.1 client ----

// RawConn is a client connection with exact control of the bytes sent, for
// smuggling, framing, keep-alive and Connection: close checks.
type RawConn struct {
	T    testing.TB
	Conn net.Conn
	BR   *bufio.Reader // reads Conn; read through it, not Conn
}

// DialRaw connects to addr; cleanup closes the connection.
func DialRaw(t testing.TB, addr string) *RawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &RawConn{T: t, Conn: c, BR: bufio.NewReader(c)}
}

// Send writes s as is, within 10s.
func (rc *RawConn) Send(s string) {
	rc.T.Helper()
	rc.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(rc.Conn, s); err != nil {
		rc.T.Fatalf("write: %v", err)
	}
}

// Read reads one response to a request with the given method (HEAD has no
// body), body included, within 10s.
func (rc *RawConn) Read(method string) (*http.Response, string, error) {
	rc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(rc.BR, &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp, string(b), fmt.Errorf("read body: %w", err)
	}
	return resp, string(b), nil
}

// MustRead is Read that fails the test on error.
func (rc *RawConn) MustRead(method string) (*http.Response, string) {
	rc.T.Helper()
	resp, body, err := rc.Read(method)
	if err != nil {
		rc.T.Fatalf("read response: %v", err)
	}
	return resp, body
}

// Do sends one raw request and reads its response.
func (rc *RawConn) Do(raw string) (*http.Response, string) {
	rc.T.Helper()
	rc.Send(raw)
	method, _, _ := strings.Cut(raw, " ")
	return rc.MustRead(method)
}

// ClosedWithin reports whether the peer closes the connection (EOF or
// reset) within d; any bytes read meanwhile are returned.
func (rc *RawConn) ClosedWithin(d time.Duration) (closed bool, extra string) {
	rc.Conn.SetReadDeadline(time.Now().Add(d))
	var got bytes.Buffer
	buf := make([]byte, 512)
	for {
		n, err := rc.BR.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, got.String()
			}
			return true, got.String() // io.EOF, ECONNRESET
		}
	}
}

// Closed is ClosedWithin 3s, for checks that care only whether it closed.
func (rc *RawConn) Closed() bool {
	closed, _ := rc.ClosedWithin(3 * time.Second)
	return closed
}

// ReadAll reads what the proxy sends until it closes the connection
// (within 10s).
func (rc *RawConn) ReadAll() string {
	rc.T.Helper()
	rc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(rc.BR)
	if err != nil {
		rc.T.Fatalf("read until close: %v (got %q)", err, b)
	}
	return string(b)
}

// get is a minimal GET request for path.
func get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: example.com\r\n\r\n"
}
