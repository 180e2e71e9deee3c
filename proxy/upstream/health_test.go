package upstream

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

// backend is a loopback HTTP server whose health answer a test can flip,
// and which records what the checks sent.
type backend struct {
	*httptest.Server
	status atomic.Int32
	hits   atomic.Int64
	good   atomic.Int64 // responses with status < 400
	bad    atomic.Int64 // responses with status >= 400

	mu      sync.Mutex
	host    string
	path    string
	closeOK bool // the request asked for Connection: close
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	b.status.Store(200)
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.host, b.path, b.closeOK = r.Host, r.URL.Path, r.Close
		b.mu.Unlock()
		st := int(b.status.Load())
		if st < 400 {
			b.good.Add(1)
		} else {
			b.bad.Add(1)
		}
		b.hits.Add(1)
		w.WriteHeader(st)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return b.Listener.Addr().String() }

func checkedPool(t *testing.T, hc config.HealthCheck, addrs ...string) (*Pool, func() string) {
	t.Helper()
	cfg := config.Upstream{Name: "app", HealthCheck: &hc}
	for _, a := range addrs {
		cfg.Servers = append(cfg.Servers, config.Server{Address: a})
	}
	log, logs := testLogger(t)
	p, err := newPool(t, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, logs
}

func fastCheck() config.HealthCheck {
	return config.HealthCheck{
		Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: time.Second,
		Healthy: 2, Unhealthy: 2,
	}
}

func TestHealthTransitionsUpDownUp(t *testing.T) {
	b := newBackend(t)
	p, logs := checkedPool(t, fastCheck(), b.addr())
	s := p.Servers()[0]
	if !s.Healthy() {
		t.Fatal("server not healthy before any check")
	}
	p.Start()
	eventually(t, 5*time.Second, "two checks", func() bool { return b.hits.Load() >= 2 })
	if !s.Healthy() {
		t.Fatal("passing checks marked the server down")
	}
	b.mu.Lock()
	host, path, closeOK := b.host, b.path, b.closeOK
	b.mu.Unlock()
	if host != b.addr() || path != "/healthz" || !closeOK {
		t.Fatalf("check sent Host %q path %q close %v; want %q /healthz close", host, path, closeOK, b.addr())
	}

	b.status.Store(503)
	eventually(t, 5*time.Second, "server down", func() bool { return !s.Healthy() })
	if got := p.Pick(nil, nil); got != nil {
		t.Fatalf("picked %s while it is down", got.Addr)
	}
	if st := s.Stats(); st.ActiveUp || st.Healthy {
		t.Fatalf("stats while down: %+v", st)
	}

	b.status.Store(204)
	eventually(t, 5*time.Second, "server up", func() bool { return s.Healthy() })
	if got := p.Pick(nil, nil); got != s {
		t.Fatal("not picked after recovery")
	}

	out := logs()
	for _, want := range []string{
		"[WARN]  health: server is down (active check): server=" + b.addr() + " upstream=app",
		"unexpected status 503",
		"[INFO]  health: server is up (active check): server=" + b.addr() + " upstream=app",
		"servers count as healthy until checks fail",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestHealthThresholds(t *testing.T) {
	b := newBackend(t)
	hc := fastCheck()
	hc.Unhealthy, hc.Healthy = 4, 3
	p, _ := checkedPool(t, hc, b.addr())
	s := p.Servers()[0]
	p.Start()
	eventually(t, 5*time.Second, "first check", func() bool { return b.hits.Load() >= 1 })
	b.status.Store(500)
	eventually(t, 5*time.Second, "server down", func() bool { return !s.Healthy() })
	// Before the flip every answer was 200, so bad counts exactly the
	// failing checks; going down took `unhealthy` of them.
	if n := b.bad.Load(); n < 4 {
		t.Fatalf("down after %d failing checks, want 4", n)
	}
	good := b.good.Load()
	b.status.Store(200)
	eventually(t, 5*time.Second, "server up", func() bool { return s.Healthy() })
	if n := b.good.Load() - good; n < 3 {
		t.Fatalf("up after %d passing checks, want 3", n)
	}
}

func TestHealthHostAndExpectStatus(t *testing.T) {
	b := newBackend(t)
	hc := fastCheck()
	hc.Host = "health.internal"
	hc.ExpectStatus = []int{204}
	p, _ := checkedPool(t, hc, b.addr())
	p.Start()
	// 200 is not in expect_status [204].
	eventually(t, 5*time.Second, "server down on 200", func() bool { return !p.Servers()[0].Healthy() })
	b.mu.Lock()
	host := b.host
	b.mu.Unlock()
	if host != "health.internal" {
		t.Fatalf("Host %q, want the configured host", host)
	}
	b.status.Store(204)
	eventually(t, 5*time.Second, "server up on 204", func() bool { return p.Servers()[0].Healthy() })
}

func TestHealthRefusedAndTimeout(t *testing.T) {
	// A port nothing listens on: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	// A server that accepts and never answers: the check times out.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	hc := fastCheck()
	hc.Timeout = 50 * time.Millisecond
	p, logs := checkedPool(t, hc, refused, silent.Addr().String())
	p.Start()
	for _, s := range p.Servers() {
		eventually(t, 5*time.Second, s.Addr+" down", func() bool { return !s.Healthy() })
	}
	if p.Pick(nil, nil) != nil {
		t.Fatal("picked a server with every server down")
	}
	out := logs()
	if !strings.Contains(out, "connection refused") || !strings.Contains(out, "timeout") {
		t.Fatalf("log does not say why:\n%s", out)
	}
	p.Close()
	silent.Close()
	conns.Wait()
}

// TestHealthCloseCutsCheckShort: Close returns promptly even while a check
// waits on a silent server with a long timeout.
func TestHealthCloseCutsCheckShort(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := silent.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	hc := fastCheck()
	hc.Timeout = time.Minute
	p, _ := checkedPool(t, hc, silent.Addr().String())
	p.Start()
	var c net.Conn
	select {
	case c = <-accepted:
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no check connected")
	}
	start := time.Now()
	p.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v with a check in flight", d)
	}
	checkersGone(t)
	// The abandoned check closed its connection: the server reads EOF
	// (after the request the check had sent).
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("check connection not closed by Close: %v", err)
	}
}

func TestHealthCloseStopsGoroutines(t *testing.T) {
	backends := []*backend{newBackend(t), newBackend(t), newBackend(t)}
	hc := fastCheck()
	p, _ := checkedPool(t, hc, backends[0].addr(), backends[1].addr(), backends[2].addr())
	p.Start()
	p.Start() // idempotent: no second set of checkers
	for _, b := range backends {
		eventually(t, 5*time.Second, "checks running", func() bool { return b.hits.Load() >= 2 })
	}
	if n := checkerGoroutines(); n != 3 {
		t.Fatalf("%d checker goroutines for 3 servers", n)
	}
	p.Close()
	p.Close()
	checkersGone(t)
	hits := backends[0].hits.Load()
	p.Start() // after Close: nothing
	time.Sleep(3 * hc.Interval)
	if backends[0].hits.Load() != hits {
		t.Fatal("checks ran after Close")
	}
}

// checkersGone fails the test unless the checker goroutines are gone right
// after Close. Close waits for them, but a goroutine that has run its
// deferred wg.Done still shows in a stack dump until it returns, so the
// count gets a moment (far shorter than any check) to reach zero.
func checkersGone(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		n := checkerGoroutines()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d checker goroutines a second after Close", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkerGoroutines counts the goroutines running a health checker (or its
// probe).
func checkerGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "upstream.(*checker).run") || strings.Contains(g, "upstream.(*Pool).Start.func") {
			n++
		}
	}
	return n
}

func TestNoHealthCheckNoGoroutines(t *testing.T) {
	p := newTestPool(t, BalanceRoundRobin, 1)
	p.Start()
	if n := checkerGoroutines(); n != 0 {
		t.Fatalf("Start without health_check started %d checkers", n)
	}
	p.Close()
}

func TestParseStatusLine(t *testing.T) {
	for line, want := range map[string]int{
		"HTTP/1.1 200 OK\r\n":  200,
		"HTTP/1.0 503\r\n":     503,
		"HTTP/1.1 204 \r\n":    204,
		"HTTP/1.1 302 Found\n": 302,
	} {
		if got, err := parseStatusLine([]byte(line)); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", line, got, err, want)
		}
	}
	for _, bad := range []string{"", "HTTP/1.1\r\n", "HTTP/2 200 OK\r\n", "HTTP/1.1 20x OK\r\n", "SSH-2.0-OpenSSH\r\n", "HTTP/1.1 2000 OK\r\n"} {
		if _, err := parseStatusLine([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
