package proxy_test

// This file is the harness of the end-to-end tests: it builds a config from
// HCL text, runs the proxy on loopback listeners the test owns, and gives the
// tests a raw HTTP/1.1 client (exact control of the bytes on the wire) and
// bounded polling. The tests are black-box: they only use proxy.New, Serve,
// Ready, Drain, Close and SetAccessLog, as the worker will.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/proxy"
)

// runningProxy is one proxy under test with its loopback listeners.
type runningProxy struct {
	P     *proxy.Proxy
	Cfg   *config.Config
	addrs map[string]string // listener name -> "127.0.0.1:port"
	done  chan struct{}     // closed when Serve has returned
	err   error             // Serve's result, valid after done
	at    time.Time         // when Serve returned, valid after done
}

// Addr is the loopback address of the named listener.
func (rp *runningProxy) Addr(name string) string {
	a, ok := rp.addrs[name]
	if !ok {
		panic("no listener " + name)
	}
	return a
}

// URL is "http://<addr of listener>".
func (rp *runningProxy) URL(name string) string { return "http://" + rp.Addr(name) }

// served reports whether Serve has returned within d.
func (rp *runningProxy) served(d time.Duration) bool {
	select {
	case <-rp.done:
		return true
	case <-time.After(d):
		return false
	}
}

// expand replaces @NAME@ tokens in an HCL template (not ${...}, which HCL
// itself interpolates) with the given values, usually backend addresses.
func expand(tmpl string, vars map[string]string) string {
	pairs := make([]string, 0, 2*len(vars))
	for k, v := range vars {
		pairs = append(pairs, "@"+k+"@", v)
	}
	return strings.NewReplacer(pairs...).Replace(tmpl)
}

// parseConfig parses HCL text with the real loader, failing the test with the
// loader's diagnostics when the text is rejected.
func parseConfig(t testing.TB, src string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(src), "e2e.hcl")
	if err != nil {
		t.Fatalf("config.Parse: %v\n--- config ---\n%s", err, src)
	}
	return cfg
}

// testLogger is a null logger unless PINGORA_E2E_LOG is set, so a failing
// run can be repeated with the proxy's own log on stderr.
func testLogger() hclog.Logger {
	if os.Getenv("PINGORA_E2E_LOG") == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: "proxy", Level: hclog.Debug, Output: os.Stderr})
}

// startProxy parses src, creates the proxy, gives it one fresh loopback
// listener per configured listener (the configured addresses are not bound),
// and waits until it is ready. Cleanup closes it and checks Serve returns.
func startProxy(t testing.TB, src string, opts proxy.Options) *runningProxy {
	t.Helper()
	cfg := parseConfig(t, src)
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	p, err := proxy.New(cfg, opts)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	rp := &runningProxy{P: p, Cfg: cfg, addrs: map[string]string{}, done: make(chan struct{})}
	lns := map[string]net.Listener{}
	for _, l := range cfg.Listeners {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen for %s: %v", l.Name, err)
		}
		lns[l.Name] = ln
		rp.addrs[l.Name] = ln.Addr().String()
	}
	go func() {
		rp.err = p.Serve(lns)
		rp.at = time.Now()
		close(rp.done)
	}()
	t.Cleanup(func() {
		p.Close()
		if !rp.served(5 * time.Second) {
			t.Errorf("Serve did not return within 5s of Close")
		}
	})
	select {
	case <-p.Ready():
	case <-rp.done:
		t.Fatalf("Serve returned before Ready: %v", rp.err)
	case <-time.After(5 * time.Second):
		t.Fatalf("proxy not Ready within 5s")
	}
	return rp
}

// waitFor polls cond every 20ms until it holds or the timeout passes: the
// readiness signal for things the proxy does on its own clock (health checks).
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// refusedAddr returns a loopback address nobody listens on: connecting to it
// is refused at once.
func refusedAddr(t testing.TB) string {
	t.Helper()
	// A socket bound to the port but not listening, held until the test
	// ends: connecting is refused, and nothing else can take the port
	// meanwhile (it has no SO_REUSEADDR, so a listener's bind fails). A
	// port merely closed again could become a parallel test's listener,
	// whose answers would then come back through this test's proxy.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// ---- HTTP clients ----

// newClient is a keep-alive net/http client that never follows redirects
// and never adds Accept-Encoding, so the tests see the proxy's own answers.
func newClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DisableCompression:  true,
			MaxIdleConnsPerHost: 16,
			Proxy:               nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

// result is a fully read response.
type result struct {
	Status int
	Header http.Header
	Body   string
}

// do sends one request with the given Host and returns the read response.
func do(t testing.TB, c *http.Client, method, url, host string, body io.Reader, hdr map[string]string) result {
	t.Helper()
	r, err := tryDo(c, method, url, host, body, hdr)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Logf("request timed out: %s", dumpGoroutines())
		}
		t.Fatalf("%s %s (Host %s): %v", method, url, host, err)
	}
	return r
}

var dumpOnce sync.Once

// dumpGoroutines writes every goroutine's stack to a file, once per run, so
// that a hang in the proxy can be diagnosed after the fact; it returns where.
func dumpGoroutines() string {
	where := "goroutines already dumped"
	dumpOnce.Do(func() {
		f, err := os.CreateTemp("", "pingora-e2e-goroutines-*.txt")
		if err != nil {
			where = err.Error()
			return
		}
		defer f.Close()
		pprof.Lookup("goroutine").WriteTo(f, 2)
		where = "goroutines dumped to " + f.Name()
	})
	return where
}

func tryDo(c *http.Client, method, url, host string, body io.Reader, hdr map[string]string) (result, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return result{}, err
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, fmt.Errorf("read body: %w", err)
	}
	return result{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}

// ---- raw HTTP/1.1 client ----

// rawConn is a client connection with exact control of the bytes sent, for
// smuggling, keep-alive and Connection: close checks.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// send writes s as is.
func (rc *rawConn) send(s string) {
	rc.t.Helper()
	rc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// read reads one response to a request with the given method, body included,
// within 10s.
func (rc *rawConn) read(method string) (*http.Response, string, error) {
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
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

// mustRead is read that fails the test on error.
func (rc *rawConn) mustRead(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, body, err := rc.read(method)
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	return resp, body
}

// closedWithin reports whether the peer closes the connection (EOF or
// reset) within d, with no further bytes; any bytes read are returned.
func (rc *rawConn) closedWithin(d time.Duration) (closed bool, extra string) {
	rc.c.SetReadDeadline(time.Now().Add(d))
	var got bytes.Buffer
	buf := make([]byte, 512)
	for {
		n, err := rc.br.Read(buf)
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

// clip shortens a body for a failure message.
func clip(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%s... (%d bytes)", s[:200], len(s))
	}
	return s
}
