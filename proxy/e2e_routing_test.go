package proxy_test

import (
	"strings"
	"testing"

	"github.com/pingora-go/pingora/proxy"
)

// TestE2ERouting checks which backend answers each (listener, host, path):
// exact host, "*.suffix" host, longest path prefix, routes bound to one
// listener, fixed responses, and 404 when nothing matches.
func TestE2ERouting(t *testing.T) {
	t.Parallel()
	bA, bB, bC, bD := startBackend(t, "A"), startBackend(t, "B"), startBackend(t, "C"), startBackend(t, "D")
	rp := startProxy(t, expand(`
listener "a" { address = "127.0.0.1:1" }
listener "b" { address = "127.0.0.1:2" }
upstream "ua" {
  server "@A@" {}
}
upstream "ub" {
  server "@B@" {}
}
upstream "uc" {
  server "@C@" {}
}
upstream "ud" {
  server "@D@" {}
}
route "exact" {
  host     = "api.example.com"
  upstream = "ua"
}
route "wild" {
  host     = "*.example.com"
  upstream = "ub"
}
route "api-v2" {
  host        = "api.example.com"
  path_prefix = "/v2/"
  upstream    = "uc"
}
route "api-v2-admin" {
  host        = "api.example.com"
  path_prefix = "/v2/admin/"
  upstream    = "ud"
}
route "static" {
  path_prefix = "/static/"
  upstream    = "ud"
}
route "only-b" {
  listeners = ["b"]
  host      = "b.example.com"
  upstream  = "uc"
}
route "healthz" {
  host        = "pingora.local"
  path_prefix = "/healthz"
  respond {
    status = 200
    body   = "ok\n"
  }
}
route "teapot" {
  host        = "pingora.local"
  path_prefix = "/tea"
  respond {
    status = 418
    body   = "short and stout"
  }
}
`, map[string]string{"A": bA.Addr, "B": bB.Addr, "C": bC.Addr, "D": bD.Addr}), proxy.Options{})

	c := newClient()
	cases := []struct {
		listener, host, path string
		status               int
		backend              string // "" : answered by the proxy itself
		body                 string // checked when backend is ""
	}{
		{"a", "api.example.com", "/x", 200, "A", ""},
		{"a", "API.Example.COM", "/x", 200, "A", ""},      // host names are case-insensitive
		{"a", "api.example.com:8080", "/x", 200, "A", ""}, // the port is not part of the name
		{"a", "api.example.com", "/v2/users", 200, "C", ""},
		{"a", "api.example.com", "/v2/admin/x", 200, "D", ""}, // longest prefix wins
		{"a", "api.example.com", "/v2", 200, "A", ""},         // "/v2/" is not a prefix of "/v2"
		{"a", "www.example.com", "/x", 200, "B", ""},
		{"a", "b.example.com", "/x", 200, "B", ""}, // the only-b route is not on listener a
		{"b", "b.example.com", "/x", 200, "C", ""},
		{"b", "www.example.com", "/x", 200, "B", ""},
		{"a", "example.com", "/x", 404, "", ""}, // "*.example.com" needs a label before the suffix
		{"a", "other.org", "/static/app.js", 200, "D", ""},
		{"a", "other.org", "/x", 404, "", ""},
		{"a", "pingora.local", "/healthz", 200, "", "ok\n"},
		{"b", "pingora.local", "/teapot", 418, "", "short and stout"},
		{"a", "pingora.local", "/nothing", 404, "", ""},
	}
	for _, tc := range cases {
		r := do(t, c, "GET", rp.URL(tc.listener)+tc.path, tc.host, nil, nil)
		where := tc.listener + " " + tc.host + tc.path
		if r.Status != tc.status {
			t.Errorf("%s: status %d, want %d (body %q)", where, r.Status, tc.status, clip(r.Body))
			continue
		}
		if got := r.Header.Get("X-Backend"); got != tc.backend {
			t.Errorf("%s: answered by backend %q, want %q", where, got, tc.backend)
		}
		if tc.backend == "" && tc.body != "" && r.Body != tc.body {
			t.Errorf("%s: body %q, want %q", where, clip(r.Body), tc.body)
		}
		if tc.status == 404 {
			checkErrorBody(t, where, r)
		}
	}
	// A fixed response or a 404 never reaches a backend.
	for _, b := range []*backend{bA, bB, bC, bD} {
		for _, rq := range b.requests() {
			if strings.HasPrefix(rq.URI, "/healthz") || strings.HasPrefix(rq.URI, "/tea") || rq.URI == "/nothing" || rq.Host == "example.com" {
				t.Errorf("backend %s received %s %s (Host %s)", b.Name, rq.Method, rq.URI, rq.Host)
			}
		}
	}
}

// checkErrorBody asserts the proxy's own error answer is short plain text,
// as the issue requires of every error response.
func checkErrorBody(t testing.TB, where string, r result) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("%s: error response Content-Type %q, want text/plain", where, ct)
	}
	if len(r.Body) == 0 || len(r.Body) > 256 {
		t.Errorf("%s: error body of %d bytes, want short and non-empty: %q", where, len(clip(r.Body)), clip(r.Body))
	}
	if r.Header.Get("X-Backend") != "" {
		t.Errorf("%s: error response came from backend %s", where, r.Header.Get("X-Backend"))
	}
}
