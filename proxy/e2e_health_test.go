package proxy_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

const healthConfig = `
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@B1@" { max_fails = 0 }
  server "@B2@" { max_fails = 0 }
  health_check {
    path          = "/health"
    interval      = "100ms"
    timeout       = "1s"
    healthy       = 2
    unhealthy     = 2
    expect_status = [200]
  }
}
route "all" { upstream = "app" }
`

// spread sends n GETs and counts which backend answered each; every one must
// be a 200.
func spread(t testing.TB, c *http.Client, rp *proxy.Running, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		r := do(t, c, "GET", rp.URL("pub")+fmt.Sprintf("/s/%d", i), "x", nil, nil)
		if r.Status != 200 {
			t.Fatalf("request %d: status %d %q", i, r.Status, clip(r.Body))
		}
		got[r.Header.Get("X-Backend")]++
	}
	return got
}

// TestE2EHealthTransitions: an active check failing marks a server down and
// its traffic stops; once the check passes again it gets traffic back.
func TestE2EHealthTransitions(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "hc1"), startBackend(t, "hc2")
	rp := startProxy(t, expand(healthConfig, map[string]string{"B1": b1.Addr, "B2": b2.Addr}), proxy.Options{})
	c := newClient()

	proxy.WaitFor(t, 5*time.Second, "health checks to reach both servers", func() bool {
		return b1.healthHits.Load() >= 2 && b2.healthHits.Load() >= 2
	})
	if got := spread(t, c, rp, 10); got["hc1"] == 0 || got["hc2"] == 0 {
		t.Fatalf("both healthy servers should get traffic: %v", got)
	}

	b1.healthCode.Store(500)
	proxy.WaitFor(t, 5*time.Second, "hc1 to be taken out of rotation", func() bool {
		return spread(t, c, rp, 4)["hc1"] == 0
	})
	before := b1.hits()
	if got := spread(t, c, rp, 20); got["hc2"] != 20 {
		t.Errorf("while hc1 fails its check, traffic: %v, want all on hc2", got)
	}
	if b1.hits() != before {
		t.Errorf("hc1 received %d requests while marked down", b1.hits()-before)
	}

	b1.healthCode.Store(200)
	proxy.WaitFor(t, 5*time.Second, "hc1 to come back into rotation", func() bool {
		return spread(t, c, rp, 4)["hc1"] > 0
	})
}

// TestE2EHealthAllDown503: when no server of the upstream is healthy the
// proxy answers 503 by itself, in short plain text, without trying them.
func TestE2EHealthAllDown503(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "d1"), startBackend(t, "d2")
	rp := startProxy(t, expand(healthConfig, map[string]string{"B1": b1.Addr, "B2": b2.Addr}), proxy.Options{})
	proxy.WaitFor(t, 5*time.Second, "health checks to reach both servers", func() bool {
		return b1.healthHits.Load() >= 1 && b2.healthHits.Load() >= 1
	})
	b1.healthCode.Store(500)
	b2.healthCode.Store(503)
	c := newClient()
	var last result
	proxy.WaitFor(t, 5*time.Second, "503 with every server failing its check", func() bool {
		last = do(t, c, "GET", rp.URL("pub")+"/x", "x", nil, nil)
		return last.Status == 503
	})
	checkErrorBody(t, "503", last)
	before := b1.hits() + b2.hits()
	for i := 0; i < 5; i++ {
		if r := do(t, c, "GET", rp.URL("pub")+"/x", "x", nil, nil); r.Status != 503 {
			t.Errorf("request %d with all servers down: status %d", i, r.Status)
		}
	}
	if got := b1.hits() + b2.hits() - before; got != 0 {
		t.Errorf("%d requests reached servers marked down", got)
	}
	b2.healthCode.Store(200)
	proxy.WaitFor(t, 5*time.Second, "service back once a server passes its check", func() bool {
		r := do(t, c, "GET", rp.URL("pub")+"/x", "x", nil, nil)
		return r.Status == 200 && r.Header.Get("X-Backend") == "d2"
	})
}
