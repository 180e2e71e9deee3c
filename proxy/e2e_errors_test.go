package proxy_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/pingora-go/pingora/proxy"
)

// TestE2E502Refused: an upstream whose every server refuses connections
// gives 502, one server or two. Passive marking is off: a server it marked
// down would make the next request a 503 (no healthy server), another test.
func TestE2E502Refused(t *testing.T) {
	t.Parallel()
	r1, r2, r3 := refusedAddr(t), refusedAddr(t), refusedAddr(t)
	errLog := &proxy.SyncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: errLog})
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "one" {
  server "@R1@" { max_fails = 0 }
}
upstream "two" {
  server "@R2@" { max_fails = 0 }
  server "@R3@" { max_fails = 0 }
}
route "one" {
  path_prefix = "/one/"
  upstream    = "one"
}
route "two" {
  path_prefix = "/two/"
  upstream    = "two"
}
`, map[string]string{"R1": r1, "R2": r2, "R3": r3}), proxy.Options{Logger: logger})
	c := newClient()
	for _, path := range []string{"/one/x", "/two/x"} {
		for _, m := range []string{"GET", "POST"} {
			r := do(t, c, m, rp.URL("pub")+path, "x", strings.NewReader("b"), nil)
			if r.Status != 502 {
				t.Errorf("%s %s with refused servers: status %d %q, want 502", m, path, r.Status, clip(r.Body))
				continue
			}
			checkErrorBody(t, m+" "+path, r)
		}
	}
	// Every error response is logged with the upstream address (with two
	// servers tried, which one is named is the proxy's choice).
	lines := strings.Split(errLog.String(), "\n")
	for _, addrs := range [][]string{{r1}, {r2, r3}} {
		found := false
		for _, line := range lines {
			for _, a := range addrs {
				found = found || (strings.Contains(line, "502") && strings.Contains(line, a))
			}
		}
		if !found {
			t.Errorf("no log line names a 502 and upstream %v; log:\n%s", addrs, clip(errLog.String()))
		}
	}
}

// TestE2E413 checks max_body_size against Content-Length (rejected before
// anything is forwarded) and against a chunked body, on the listener and as
// a route override.
func TestE2E413(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "big")
	rp := startProxy(t, expand(`
listener "pub" {
  address       = "127.0.0.1:1"
  max_body_size = 1000
}
upstream "app" {
  server "@BE@" {}
}
route "small" {
  path_prefix   = "/small/"
  upstream      = "app"
  max_body_size = 100
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})

	c := newClient()
	check := func(path string, n int, want int) {
		t.Helper()
		r := do(t, c, "POST", rp.URL("pub")+path, "x", strings.NewReader(strings.Repeat("b", n)), nil)
		if r.Status != want {
			t.Errorf("POST %s with %d-byte body (Content-Length): status %d %q, want %d", path, n, r.Status, clip(r.Body), want)
		}
		if want == 413 {
			checkErrorBody(t, "413", r)
		}
	}
	check("/echo", 1000, 200)
	check("/small/x", 100, 200)
	before := be.hits()
	check("/echo", 1001, 413)
	check("/small/x", 101, 413)
	check("/small/x", 500, 413)
	if be.hits() != before {
		t.Errorf("a request rejected by Content-Length reached the backend (%d hits)", be.hits()-before)
	}

	// Chunked: the size is only known while reading, so the proxy must count.
	for _, tc := range []struct {
		path string
		n    int
		want int
	}{{"/echo", 900, 200}, {"/echo", 1500, 413}, {"/small/x", 150, 413}} {
		rc := proxy.DialRaw(t, rp.Addr("pub"))
		var req strings.Builder
		fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", tc.path)
		for left := tc.n; left > 0; left -= 50 {
			fmt.Fprintf(&req, "32\r\n%s\r\n", strings.Repeat("c", 50))
		}
		req.WriteString("0\r\n\r\n")
		rc.Send(req.String())
		resp, body := rc.MustRead("POST")
		if resp.StatusCode != tc.want {
			t.Errorf("POST %s with %d-byte chunked body: status %d %q, want %d", tc.path, tc.n, resp.StatusCode, clip(body), tc.want)
		}
		if tc.want == 200 && body != strings.Repeat("c", tc.n) {
			t.Errorf("chunked POST %s: echoed %d bytes, want %d", tc.path, len(body), tc.n)
		}
	}
}

// TestE2E429RateLimit: past the bucket, requests get 429 with a Retry-After
// in whole seconds; buckets are per key.
func TestE2E429RateLimit(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "rl")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@BE@" {}
}
route "ip" {
  path_prefix = "/ip/"
  upstream    = "app"
  rate_limit {
    requests = 2
    per      = "1m"
    burst    = 0
  }
}
route "user" {
  path_prefix = "/user/"
  upstream    = "app"
  rate_limit {
    requests = 1
    per      = "1m"
    key      = "header:X-User"
  }
}
`, map[string]string{"BE": be.Addr}), proxy.Options{})

	c := newClient()
	var statuses []int
	for i := 0; i < 6; i++ {
		r := do(t, c, "GET", rp.URL("pub")+"/ip/x", "x", nil, nil)
		statuses = append(statuses, r.Status)
		if r.Status == 429 {
			checkErrorBody(t, "429", r)
			ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || ra < 1 || ra > 60 {
				t.Errorf("429 Retry-After %q, want whole seconds in [1, 60] for 2 per minute", r.Header.Get("Retry-After"))
			}
		}
	}
	if statuses[0] != 200 || statuses[5] != 429 {
		t.Errorf("statuses %v: want the first allowed and the sixth limited (2 per minute)", statuses)
	}
	allowed := 0
	for _, s := range statuses {
		if s == 200 {
			allowed++
		} else if s != 429 {
			t.Errorf("statuses %v: only 200 and 429 expected", statuses)
		}
	}
	if allowed > 2 {
		t.Errorf("statuses %v: %d allowed, want at most 2 (requests = 2, burst = 0)", statuses, allowed)
	}
	if be.hits() != allowed {
		t.Errorf("backend saw %d requests, want the %d allowed", be.hits(), allowed)
	}

	user := func(u string) int {
		return do(t, c, "GET", rp.URL("pub")+"/user/x", "x", nil, map[string]string{"X-User": u}).Status
	}
	if s := user("alice"); s != 200 {
		t.Errorf("alice first: %d, want 200", s)
	}
	if s := user("alice"); s != 429 {
		t.Errorf("alice second: %d, want 429", s)
	}
	if s := user("bob"); s != 200 {
		t.Errorf("bob first (own bucket): %d, want 200", s)
	}
}
