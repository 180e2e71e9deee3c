package proxy_test

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// TestE2EFailoverBackendDown: once one of two servers is gone, every request
// still succeeds through the other one.
func TestE2EFailoverBackendDown(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "f1"), startBackend(t, "f2")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@B1@" {}
  server "@B2@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"B1": b1.Addr, "B2": b2.Addr}), proxy.Options{})

	c := newClient()
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		r := do(t, c, "GET", rp.URL("pub")+"/before", "x", nil, nil)
		seen[r.Header.Get("X-Backend")] = true
	}
	if !seen["f1"] || !seen["f2"] {
		t.Fatalf("both servers should serve before the failure, saw %v", seen)
	}
	b1.Close()
	for i := 0; i < 20; i++ {
		r := do(t, c, "GET", rp.URL("pub")+fmt.Sprintf("/after/%d", i), "x", nil, nil)
		if r.Status != 200 || r.Header.Get("X-Backend") != "f2" {
			t.Errorf("request %d after f1 died: status %d from %q body %q", i, r.Status, r.Header.Get("X-Backend"), clip(r.Body))
		}
	}
}

// TestE2ERetryConnectFailurePOST: a connect failure is retried on the next
// server for any method, POST included, with its body intact.
func TestE2ERetryConnectFailurePOST(t *testing.T) {
	t.Parallel()
	live := startBackend(t, "live")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  retries = 2
  server "@DEAD@" { max_fails = 0 }
  server "@LIVE@" { max_fails = 0 }
}
route "all" { upstream = "app" }
`, map[string]string{"DEAD": refusedAddr(t), "LIVE": live.Addr}), proxy.Options{})

	c := newClient()
	const n = 10
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("payload number %d", i)
		r := do(t, c, "POST", rp.URL("pub")+"/echo", "x", strings.NewReader(body), nil)
		if r.Status != 200 || r.Body != body {
			t.Errorf("POST %d: status %d body %q, want 200 %q", i, r.Status, clip(r.Body), clip(body))
		}
	}
	if live.hits() != n {
		t.Errorf("live server got %d POSTs, want exactly %d (no duplicates)", live.hits(), n)
	}
}

// TestE2ERetryIdempotentAfterReset: a GET whose upstream resets the
// connection after receiving it is retried on another server; with passive
// marking off, round robin keeps offering the bad server, so every request
// proves the retry.
func TestE2ERetryIdempotentAfterReset(t *testing.T) {
	t.Parallel()
	bad, good := startBackend(t, "bad"), startBackend(t, "good")
	bad.resetting.Store(true)
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  retries = 2
  server "@BAD@" { max_fails = 0 }
  server "@GOOD@" { max_fails = 0 }
}
route "all" { upstream = "app" }
`, map[string]string{"BAD": bad.Addr, "GOOD": good.Addr}), proxy.Options{})

	c := newClient()
	for i := 0; i < 6; i++ {
		r := do(t, c, "GET", rp.URL("pub")+"/reset", "x", nil, nil)
		if r.Status != 200 || r.Header.Get("X-Backend") != "good" {
			t.Errorf("GET %d: status %d from %q body %q, want 200 from good", i, r.Status, r.Header.Get("X-Backend"), clip(r.Body))
		}
	}
	if bad.hits() == 0 {
		t.Errorf("the resetting server never got a GET: the retry path was not exercised")
	}
	if good.hits() != 6 {
		t.Errorf("good server got %d GETs, want 6", good.hits())
	}
}

// TestE2ENoRetryPOSTAfterUpstreamGotIt: a POST the upstream received and then
// failed on is not replayed elsewhere (it may have had an effect): the client
// gets 502 and exactly one server saw it.
func TestE2ENoRetryPOSTAfterUpstreamGotIt(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "p1"), startBackend(t, "p2")
	b1.resetting.Store(true)
	b2.resetting.Store(true)
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  retries = 2
  server "@B1@" { max_fails = 0 }
  server "@B2@" { max_fails = 0 }
}
route "all" { upstream = "app" }
`, map[string]string{"B1": b1.Addr, "B2": b2.Addr}), proxy.Options{})

	c := newClient()
	for i := 1; i <= 2; i++ {
		r := do(t, c, "POST", rp.URL("pub")+"/reset", "x", strings.NewReader("charge the card once"), nil)
		if r.Status != 502 {
			t.Errorf("POST %d: status %d %q, want 502", i, r.Status, clip(r.Body))
		} else {
			checkErrorBody(t, "502 after reset", r)
		}
		if got := b1.hits() + b2.hits(); got != i {
			t.Errorf("after POST %d the servers saw %d POSTs in all, want %d: the POST was replayed", i, got, i)
		}
	}
	// The same failure on a GET is retried: both servers see it.
	r := do(t, c, "GET", rp.URL("pub")+"/reset", "x", nil, nil)
	if r.Status != 502 {
		t.Errorf("GET with every server resetting: status %d, want 502", r.Status)
	}
	if got := b1.hits() + b2.hits(); got < 4 {
		t.Errorf("GET seen %d times in all, want at least 2 (retried)", got-2)
	}
}

// TestE2EPassiveMarking: max_fails failures within fail_timeout take a
// server out of rotation for fail_timeout, then it is tried again. The bad
// server is a raw listener that resets every connection, counting them.
func TestE2EPassiveMarking(t *testing.T) {
	t.Parallel()
	good := startBackend(t, "good")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepts atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  retries = 2
  server "@BAD@" {
    max_fails    = 2
    fail_timeout = "3s"
  }
  server "@GOOD@" { max_fails = 0 }
}
route "all" { upstream = "app" }
`, map[string]string{"BAD": ln.Addr().String(), "GOOD": good.Addr}), proxy.Options{})

	c := newClient()
	get := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			r := do(t, c, "GET", rp.URL("pub")+"/p", "x", nil, nil)
			if r.Status != 200 || r.Header.Get("X-Backend") != "good" {
				t.Fatalf("status %d from %q, want 200 from good", r.Status, r.Header.Get("X-Backend"))
			}
		}
	}
	start := time.Now()
	get(20)
	if elapsed := time.Since(start); elapsed > 2500*time.Millisecond {
		t.Fatalf("20 requests took %v: too slow to check a 3s fail_timeout", elapsed)
	}
	if got := accepts.Load(); got != 2 {
		t.Fatalf("bad server was tried %d times in 20 requests, want exactly max_fails = 2", got)
	}
	// After fail_timeout it gets another chance.
	proxy.WaitFor(t, 8*time.Second, "the marked-down server to be tried again after fail_timeout", func() bool {
		get(1)
		return accepts.Load() > 2
	})
	if since := time.Since(start); since < 2800*time.Millisecond {
		t.Errorf("server tried again %v after being marked down, before fail_timeout 3s", since)
	}
}
