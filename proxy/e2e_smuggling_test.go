package proxy_test

import (
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// TestE2ESmuggling sends the ambiguous framings request smuggling relies on.
// Each must get 400 and a closed connection, and never reach the backend:
// a proxy and a backend that disagree on where a request ends let an attacker
// prepend a request to someone else's. Each case carries a second request
// after the first to show it is not served either.
func TestE2ESmuggling(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "smug")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})

	const next = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	cases := []struct{ name, req string }{
		{"CL and TE", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + next},
		{"TE and CL", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + next},
		{"two different CLs", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + next},
		{"CL list", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!" + next},
		{"bad chunk size", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + next},
		{"chunk size overflow", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000005\r\nhello\r\n0\r\n\r\n" + next},
		{"obs-fold", "GET /a HTTP/1.1\r\nHost: x\r\nX-Folded: one\r\n two\r\n\r\n" + next},
		{"obs-fold tab", "GET /a HTTP/1.1\r\nHost: x\r\nX-Folded: one\r\n\ttwo\r\n\r\n" + next},
		{"space before colon", "GET /a HTTP/1.1\r\nHost: x\r\nX-Spaced : v\r\n\r\n" + next},
		{"space before colon in CL", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello" + next},
		{"space after chunk size", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n" + next},
		{"TE not chunked", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + next},
		{"TE in HTTP/1.0", "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + next},
		{"bare CR", "GET /a HTTP/1.1\r\nHost: x\rX-Y: y\r\n\r\n" + next},
		{"bare LF", "GET /a HTTP/1.1\nHost: x\n\n" + next},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := be.hits()
			rc := proxy.DialRaw(t, rp.Addr("pub"))
			rc.Send(tc.req)
			resp, body, err := rc.Read("POST")
			if err != nil {
				t.Fatalf("no complete response: %v", err)
			}
			if resp.StatusCode != 400 || !resp.Close {
				t.Errorf("status %d %q, Connection: close %v; want 400 with Connection: close", resp.StatusCode, clip(body), resp.Close)
			}
			if closed, extra := rc.ClosedWithin(3 * time.Second); !closed {
				t.Errorf("connection left open after the 400")
			} else if extra != "" {
				t.Errorf("more bytes after the 400 (a second request was served?): %q", extra)
			}
			if got := be.hits() - before; got != 0 {
				t.Errorf("the backend received %d request(s): %v", got, be.requests()[before:])
			}
		})
	}
}
