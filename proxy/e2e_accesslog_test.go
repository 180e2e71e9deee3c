package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// accessLogFields are the keys every access log line carries (issue 2: time,
// client address, method, host, path, status, bytes in/out, duration,
// upstream address, upstream time, request id), under the names the proxy
// documents (durations in milliseconds, hence the _ms).
var accessLogFields = []string{
	"time", "client", "method", "host", "path", "status",
	"protocol", "bytes_in", "bytes_out", "duration_ms", "upstream", "upstream_ms", "request_id",
}

// accessLines splits a log into JSON objects, one per line, failing on any
// line that is not one.
func accessLines(t testing.TB, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access log line is not one JSON object: %q: %v", line, err)
		}
		for _, k := range accessLogFields {
			if _, ok := m[k]; !ok {
				t.Errorf("access log line lacks %q: %s", k, line)
			}
		}
		out = append(out, m)
	}
	return out
}

// num reads a JSON number field.
func num(m map[string]any, k string) float64 {
	f, _ := m[k].(float64)
	return f
}

// str reads a JSON string field ("" when absent, null or not a string).
func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// logSession sends requests one after another on one client connection,
// reconnecting when the proxy closes it. Sequencing is what makes the log
// checks deterministic: the proxy writes a request's line after sending its
// response but before it reads the next request on that connection, or
// before it closes the connection.
type logSession struct {
	t    *testing.T
	addr string
	rc   *proxy.RawConn
}

func (ls *logSession) do(method, host, path, body string, hdr map[string]string) (*http.Response, string) {
	ls.t.Helper()
	if ls.rc == nil {
		ls.rc = proxy.DialRaw(ls.t, ls.addr)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n" + body)
	ls.rc.Send(b.String())
	resp, rbody := ls.rc.MustRead(method)
	if resp.Close {
		ls.rc.ClosedWithin(3 * time.Second)
		ls.rc = nil
	}
	return resp, rbody
}

// countPath is how many lines of a log are for path.
func countPath(lines []map[string]any, path string) int {
	n := 0
	for _, m := range lines {
		if str(m, "path") == path {
			n++
		}
	}
	return n
}

// TestE2EAccessLog: one JSON line per request with the documented fields and
// values; buffered lines reach the old writer on SetAccessLog and the new one
// on Close, none lost and none twice.
func TestE2EAccessLog(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "logged")
	dead := refusedAddr(t)
	first := &proxy.SyncBuffer{}
	rp := startProxy(t, expand(`
access_log { file = "/dev/null" } # the lines go to the test's sinks
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@BE@" {}
}
upstream "dead" {
  server "@DEAD@" {}
}
route "app" {
  host     = "log.example"
  upstream = "app"
}
route "dead" {
  host     = "dead.example"
  upstream = "dead"
}
route "fixed" {
  host = "fixed.example"
  respond {
    status = 204
  }
}
`, map[string]string{"BE": be.Addr, "DEAD": dead}), proxy.Options{AccessLog: first})

	sess := &logSession{t: t, addr: rp.Addr("pub")}
	start := time.Now()
	steps := []struct {
		method, host, path, body, rid string
		status                        int
		upstream                      string
	}{
		{"POST", "log.example", "/echo", "hello", "rid-1", 200, be.Addr},
		{"GET", "none.example", "/nothing", "", "rid-2", 404, ""},
		{"GET", "fixed.example", "/ping", "", "rid-3", 204, ""},
		{"GET", "dead.example", "/gone", "", "rid-4", 502, dead},
	}
	for _, s := range steps {
		resp, body := sess.do(s.method, s.host, s.path, s.body, map[string]string{"X-Request-Id": s.rid})
		if resp.StatusCode != s.status {
			t.Fatalf("%s %s%s: status %d %q, want %d", s.method, s.host, s.path, resp.StatusCode, clip(body), s.status)
		}
	}
	sess.do("GET", "log.example", "/sentinel-1", "", nil) // the steps' lines are written now

	second := &proxy.SyncBuffer{}
	rp.P.SetAccessLog(second)
	lines := accessLines(t, first.String())
	if len(lines) < len(steps) {
		t.Fatalf("after SetAccessLog the first log has %d lines, want at least %d: %q", len(lines), len(steps), first.String())
	}
	// Lines are written as requests finish; these were sequential.
	for i, s := range steps {
		m := lines[i]
		if str(m, "method") != s.method || str(m, "host") != s.host || str(m, "path") != s.path || int(num(m, "status")) != s.status {
			t.Errorf("line %d: method %v host %v path %v status %v; want %s %s %s %d", i, m["method"], m["host"], m["path"], m["status"], s.method, s.host, s.path, s.status)
		}
		if !strings.HasPrefix(str(m, "client"), "127.0.0.1") {
			t.Errorf("line %d: client %v, want the 127.0.0.1 client address", i, m["client"])
		}
		if str(m, "request_id") != s.rid {
			t.Errorf("line %d: request_id %v, want the client's %q", i, m["request_id"], s.rid)
		}
		if str(m, "upstream") != s.upstream {
			t.Errorf("line %d: upstream %v, want %q", i, m["upstream"], s.upstream)
		}
		if num(m, "bytes_out") <= 0 && s.status != 204 {
			t.Errorf("line %d: bytes_out %v, want > 0", i, m["bytes_out"])
		}
		if ts, err := time.Parse(time.RFC3339Nano, str(m, "time")); err != nil || ts.Before(start.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
			t.Errorf("line %d: time %v: want an RFC 3339 time of this run (%v)", i, m["time"], err)
		}
		if d, ok := m["duration_ms"].(float64); !ok || d < 0 || d > 10000 {
			t.Errorf("line %d: duration_ms %v, want a number of milliseconds", i, m["duration_ms"])
		}
	}
	if n := num(lines[0], "bytes_in"); n < 5 {
		t.Errorf("POST of 5 bytes logged bytes_in %v", lines[0]["bytes_in"])
	}
	if n := num(lines[0], "bytes_out"); n < 5 {
		t.Errorf("5-byte echo logged bytes_out %v", lines[0]["bytes_out"])
	}
	if d, ok := lines[0]["upstream_ms"].(float64); !ok || d < 0 || d > num(lines[0], "duration_ms") {
		t.Errorf("proxied request: upstream_ms %v, want a number of milliseconds within duration_ms %v", lines[0]["upstream_ms"], lines[0]["duration_ms"])
	}

	resp, body := sess.do("GET", "log.example", "/after-switch", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("after switch: status %d", resp.StatusCode)
	}
	rid := seenByBackend(t, body).Header.Get("X-Request-Id")
	sess.do("GET", "log.example", "/sentinel-2", "", nil) // /after-switch is written now
	if err := rp.P.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	old, cur := accessLines(t, first.String()), accessLines(t, second.String())
	if n := countPath(old, "/after-switch"); n != 0 {
		t.Errorf("a request made after SetAccessLog went to the old writer")
	}
	if n := countPath(old, "/sentinel-1") + countPath(cur, "/sentinel-1"); n != 1 {
		t.Errorf("the request around the switch was logged %d times in all, want once", n)
	}
	if n := countPath(cur, "/after-switch"); n != 1 {
		t.Fatalf("after Close the new log holds /after-switch %d times, want once: %q", n, second.String())
	}
	for _, m := range cur {
		if str(m, "path") == "/after-switch" {
			if got := str(m, "request_id"); got == "" || got != rid {
				t.Errorf("generated request id: logged %q, the backend got %q; want the same, non-empty", got, rid)
			}
		}
	}
}

// TestE2EAccessLogLastLineOnClose: a request whose response the client has
// fully received before Close is called is in the access log once Close
// returns. Repeated, because the window is a race: the proxy writes the line
// just after sending the response.
func TestE2EAccessLogLastLineOnClose(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "last")
	lost := 0
	const rounds = 40
	for i := 0; i < rounds; i++ {
		buf := &proxy.SyncBuffer{}
		rp := startProxy(t, expand(`
access_log { file = "/dev/null" } # the lines go to the test's sink
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{AccessLog: buf})
		sess := &logSession{t: t, addr: rp.Addr("pub")}
		if resp, _ := sess.do("GET", "x", "/last", "", nil); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		rp.P.Close()
		if countPath(accessLines(t, buf.String()), "/last") != 1 {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d requests answered before Close are missing from the access log after Close", lost, rounds)
	}
}
