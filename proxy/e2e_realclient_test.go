package proxy_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// realClientProxy trusts trusted (a trusted_proxies list) on a listener
// whose one route is rate limited to 1 request a minute per client and
// logs to log.
func realClientProxy(t *testing.T, be *backend, trusted string, log *proxy.SyncBuffer) *proxy.Running {
	t.Helper()
	return startProxy(t, expand(`
access_log {
  file           = "/dev/null" # the lines go to the test's sink
  flush_interval = "10ms"
}
listener "pub" {
  address         = "127.0.0.1:1"
  trusted_proxies = [@TRUSTED@]
}
upstream "app" {
  server "@BE@" {}
}
route "all" {
  upstream = "app"
  rate_limit {
    requests = 1
    per      = "1m"
    burst    = 0
  }
}
`, map[string]string{"BE": be.Addr, "TRUSTED": trusted}), proxy.Options{AccessLog: log})
}

// xffGet sends a request with the given X-Forwarded-For and returns the
// status and the X-Forwarded-For the backend saw.
func xffGet(t *testing.T, addr, xff string) (int, string) {
	t.Helper()
	rc := proxy.DialRaw(t, addr)
	resp, body := rc.Do("GET /r HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: " + xff + "\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, ""
	}
	var seen struct {
		Header http.Header `json:"header"`
	}
	if err := json.Unmarshal([]byte(body), &seen); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, seen.Header.Get("X-Forwarded-For")
}

// Behind trusted proxies the client is the rightmost X-Forwarded-For
// address that is not a trusted proxy: rate limits count per such client
// and the access log shows it, while the X-Forwarded-For sent upstream
// still ends with the peer. From an untrusted peer X-Forwarded-For names
// nobody: every request is the peer's.
func TestE2ERealClientFromTrustedProxies(t *testing.T) {
	be := startBackend(t, "be")
	log := &proxy.SyncBuffer{}
	addr := realClientProxy(t, be, `"127.0.0.0/8", "10.0.0.0/8"`, log).Addr("pub")

	// "spoofed" was written by the client itself; 10.1.1.1 is a trusted
	// proxy in between.
	if st, xff := xffGet(t, addr, "192.0.2.1, 198.51.100.7, 10.1.1.1"); st != http.StatusOK || xff != "192.0.2.1, 198.51.100.7, 10.1.1.1, 127.0.0.1" {
		t.Fatalf("client 198.51.100.7: status %d, upstream X-Forwarded-For %q", st, xff)
	}
	if st, _ := xffGet(t, addr, "203.0.113.5"); st != http.StatusOK {
		t.Errorf("another client (203.0.113.5) was limited with the first: status %d", st)
	}
	if st, _ := xffGet(t, addr, "192.0.2.99, 198.51.100.7"); st != http.StatusTooManyRequests {
		t.Errorf("client 198.51.100.7 again, whatever it wrote on the left: status %d, want 429", st)
	}
	proxy.WaitFor(t, 5*time.Second, "three access log lines", func() bool { return strings.Count(log.String(), "\n") >= 3 })
	// Each line is written once its response is out: their order is not
	// the requests'.
	var clients []string
	for _, line := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		var e struct {
			Client string `json:"client"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		clients = append(clients, e.Client)
	}
	slices.Sort(clients)
	if got := strings.Join(clients, " "); got != "198.51.100.7 198.51.100.7 203.0.113.5" {
		t.Errorf("access log clients %q, want 198.51.100.7 twice and 203.0.113.5", got)
	}

	untrusted := realClientProxy(t, be, `"10.0.0.0/8"`, &proxy.SyncBuffer{}).Addr("pub")
	if st, _ := xffGet(t, untrusted, "198.51.100.7"); st != http.StatusOK {
		t.Fatalf("untrusted peer, first request: status %d", st)
	}
	if st, _ := xffGet(t, untrusted, "203.0.113.5"); st != http.StatusTooManyRequests {
		t.Errorf("untrusted peer: a different X-Forwarded-For escaped the peer's limit (status %d, want 429)", st)
	}
}
