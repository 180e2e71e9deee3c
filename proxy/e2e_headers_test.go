package proxy_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// seenByBackend decodes the backend's JSON report of what it received.
func seenByBackend(t testing.TB, body string) seenReq {
	t.Helper()
	var s seenReq
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("backend report %q: %v", clip(body), err)
	}
	return s
}

// TestE2EHeaders checks the headers the proxy removes, adds and rewrites,
// both ways.
func TestE2EHeaders(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "hdr")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@BE@" {}
}
route "rewrite" {
  path_prefix             = "/hdrs"
  upstream                = "app"
  request_headers         = { "X-Added" = "by-route", "X-Tenant" = "blue" }
  remove_request_headers  = ["X-Remove-Me"]
  response_headers        = { "X-Served-By" = "pingora" }
  remove_response_headers = ["X-Backend-Secret"]
}
route "plain" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})

	t.Run("hop-by-hop and route rewrites", func(t *testing.T) {
		rc := proxy.DialRaw(t, rp.Addr("pub"))
		rc.Send("GET /hdrs?q=1 HTTP/1.1\r\nHost: shop.example:8080\r\n" +
			"Connection: keep-alive, X-Private-Hop\r\n" +
			"X-Private-Hop: secret\r\n" +
			"Keep-Alive: timeout=5\r\n" +
			"Proxy-Connection: keep-alive\r\n" +
			"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
			"TE: gzip\r\n" +
			"X-Remove-Me: gone\r\n" +
			"X-Added: from-client\r\n" +
			"X-End-To-End: kept\r\n" +
			"\r\n")
		resp, body := rc.MustRead("GET")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d %q", resp.StatusCode, clip(body))
		}
		s := seenByBackend(t, body)
		for _, h := range []string{"X-Private-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "TE", "X-Remove-Me"} {
			if v := s.Header.Values(h); len(v) > 0 {
				t.Errorf("backend received %s: %q; it must be removed", h, v)
			}
		}
		for _, v := range s.Header.Values("Connection") {
			if strings.Contains(strings.ToLower(v), "x-private-hop") {
				t.Errorf("backend received the client's Connection header %q", v)
			}
		}
		if v := s.Header.Values("X-Added"); len(v) != 1 || v[0] != "by-route" {
			t.Errorf("X-Added %q, want exactly [by-route] (set replaces)", v)
		}
		if v := s.Header.Get("X-Tenant"); v != "blue" {
			t.Errorf("X-Tenant %q, want blue", v)
		}
		if v := s.Header.Get("X-End-To-End"); v != "kept" {
			t.Errorf("end-to-end header X-End-To-End %q, want kept", v)
		}
		if s.URI != "/hdrs?q=1" || s.Host != "shop.example:8080" {
			t.Errorf("backend got URI %q Host %q, want the client's /hdrs?q=1 and shop.example:8080", s.URI, s.Host)
		}
		// Response side: the backend's hop-by-hop headers stay upstream,
		// the route removes one header and sets another.
		if v := resp.Header.Values("X-Hop"); len(v) > 0 {
			t.Errorf("client received X-Hop %q, named in the backend's Connection header", v)
		}
		if v := resp.Header.Get("Keep-Alive"); v == "timeout=99" {
			t.Errorf("client received the backend's Keep-Alive %q", v)
		}
		if v := resp.Header.Values("X-Backend-Secret"); len(v) > 0 {
			t.Errorf("client received X-Backend-Secret %q; the route removes it", v)
		}
		if v := resp.Header.Values("X-Served-By"); len(v) != 1 || v[0] != "pingora" {
			t.Errorf("X-Served-By %q, want exactly [pingora]", v)
		}
		if resp.Header.Get("X-Backend") != "hdr" {
			t.Errorf("end-to-end response header X-Backend lost: %v", resp.Header)
		}
	})

	t.Run("forwarded headers", func(t *testing.T) {
		c := newClient()
		r := do(t, c, "GET", rp.URL("pub")+"/f", "www.example.org", nil, nil)
		s := seenByBackend(t, r.Body)
		if v := s.Header.Values("X-Forwarded-For"); len(v) != 1 || v[0] != "127.0.0.1" {
			t.Errorf("X-Forwarded-For %q, want [127.0.0.1]", v)
		}
		if v := s.Header.Get("X-Forwarded-Proto"); v != "http" {
			t.Errorf("X-Forwarded-Proto %q, want http", v)
		}
		if v := s.Header.Get("X-Forwarded-Host"); v != "www.example.org" {
			t.Errorf("X-Forwarded-Host %q, want www.example.org", v)
		}
		id1 := s.Header.Get("X-Request-Id")
		if id1 == "" {
			t.Errorf("no X-Request-Id added")
		}

		r = do(t, c, "GET", rp.URL("pub")+"/f", "www.example.org", nil, map[string]string{
			"X-Forwarded-For": "203.0.113.7, 198.51.100.1",
			"X-Request-Id":    "client-chosen-42",
		})
		s = seenByBackend(t, r.Body)
		xff := strings.Join(s.Header.Values("X-Forwarded-For"), ", ")
		if xff != "203.0.113.7, 198.51.100.1, 127.0.0.1" {
			t.Errorf("X-Forwarded-For %q, want the client's list with 127.0.0.1 appended", xff)
		}
		if v := s.Header.Values("X-Request-Id"); len(v) != 1 || v[0] != "client-chosen-42" {
			t.Errorf("X-Request-Id %q, want the client's [client-chosen-42] kept", v)
		}

		r = do(t, c, "GET", rp.URL("pub")+"/f", "www.example.org", nil, nil)
		if id2 := seenByBackend(t, r.Body).Header.Get("X-Request-Id"); id2 == "" || id2 == id1 {
			t.Errorf("second generated X-Request-Id %q, want a new one (first %q)", id2, id1)
		}
	})

	t.Run("Host without port and HTTP/1.0", func(t *testing.T) {
		rc := proxy.DialRaw(t, rp.Addr("pub"))
		rc.Send("GET /ten HTTP/1.0\r\nHost: old.example\r\n\r\n")
		resp, body := rc.MustRead("GET")
		if resp.StatusCode != 200 {
			t.Fatalf("HTTP/1.0 request: status %d %q", resp.StatusCode, clip(body))
		}
		s := seenByBackend(t, body)
		if s.Host != "old.example" {
			t.Errorf("backend Host %q, want old.example", s.Host)
		}
		if closed, _ := rc.ClosedWithin(3 * time.Second); !closed {
			t.Errorf("HTTP/1.0 connection without keep-alive left open")
		}
	})
}
