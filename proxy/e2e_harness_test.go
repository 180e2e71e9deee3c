package proxy_test

// This file holds what only the end-to-end tests need on top of the
// package's one harness (harness_test.go, reached as proxy.Start,
// proxy.DialRaw, proxy.WaitFor, ...): configs from HCL templates, a net/http
// client, and a loopback port that refuses connections. The tests are
// black-box: they only use proxy.New, Serve, Ready, Drain, Close and
// SetAccessLog, as the worker will.

import (
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

	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/proxy"
)

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

// startProxy parses src and starts its proxy (proxy.Start).
func startProxy(t testing.TB, src string, opts proxy.Options) *proxy.Running {
	t.Helper()
	return proxy.Start(t, parseConfig(t, src), opts)
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
	Proto  string // "HTTP/1.1", "HTTP/2.0"
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
	return result{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Proto: resp.Proto}, nil
}

// clip shortens a body for a failure message.
func clip(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%s... (%d bytes)", s[:200], len(s))
	}
	return s
}
