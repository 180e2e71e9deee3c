package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/pingora-go/pingora/config"
)

// base is the smallest valid config; cases append their mistake to it.
const base = `listener "l" { address = "127.0.0.1:1000" }
route "r" {
  respond {}
}
`

// marker marks, in a case's source, where the diagnostic must point. It is
// removed before parsing; its line and column are the expected position.
const marker = "»"

// unmark removes the marker from src and returns its 1-based line and
// column (in characters, as hcl counts them).
func unmark(t *testing.T, src string) (string, int, int) {
	t.Helper()
	i := strings.Index(src, marker)
	if i < 0 || strings.Count(src, marker) != 1 {
		t.Fatalf("source needs exactly one %s marker:\n%s", marker, src)
	}
	before := src[:i]
	line := strings.Count(before, "\n") + 1
	col := utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:]) + 1
	return before + src[i+len(marker):], line, col
}

func configError(t *testing.T, err error) *config.Error {
	t.Helper()
	var e *config.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *config.Error", err, err)
	}
	return e
}

// findDiag returns the error diagnostic that starts at line:col, or nil.
func findDiag(e *config.Error, line, col int) *hcl.Diagnostic {
	for _, d := range e.Diags {
		if d.Severity == hcl.DiagError && d.Subject != nil && d.Subject.Start.Line == line && d.Subject.Start.Column == col {
			return d
		}
	}
	return nil
}

// TestDiagnostics checks, for each class of mistake, that the load fails
// with a diagnostic at the exact line and column of the mistake (the »
// marker) whose text names the thing, and that it is the only error: no
// cascade of follow-on complaints.
func TestDiagnostics(t *testing.T) {
	const route = "\nroute \"p\" {\n  path_prefix = \"/p/\"\n  upstream = \"u\"\n}\n"
	const respondRoute = "route \"r\" {\n  respond {}\n}\n"
	cases := []struct {
		name string
		src  string
		want []string // substrings of "summary: detail"
	}{
		// Enumerations.
		{"log level", base + `log { level = »"loud" }`,
			[]string{"Invalid value", `log level: "loud" is not one of "trace", "debug", "info", "warn" or "error"`}},
		{"log format", base + `log { format = »"xml" }`, []string{`log format: "xml"`, `"text" or "json"`}},
		{"balance", base + `upstream "u" {
  server "10.0.0.1:80" {}
  balance = »"fastest"
}` + route, []string{`upstream "u" balance: "fastest" is not one of "round_robin", "least_conn", "random", "hash" or "fnv"`}},
		{"hash key", base + `upstream "u" {
  server "10.0.0.1:80" {}
  balance  = "hash"
  hash_key = »"cookie"
}` + route, []string{"Invalid hash key", `upstream "u" hash_key: "cookie" is not a key: use "client_ip", "uri" or "header:NAME"`}},
		{"hash key header token", base + `upstream "u" {
  server "10.0.0.1:80" {}
  balance  = "fnv"
  hash_key = »"header:X User"
}` + route, []string{`"X User" is not a valid header name`}},
		{"rate limit key", base + `route "p" {
  path_prefix = "/p/"
  respond {}
  rate_limit {
    requests = 1
    key      = »"header:"
  }
}`, []string{"Invalid rate limit key", `route "p" rate_limit key: "header:"`}},
		{"rate limit requests", base + `route "p" {
  path_prefix = "/p/"
  respond {}
  rate_limit { requests = »0 }
}`, []string{`route "p" rate_limit requests: 0: a rate limit allows at least 1 request per period`}},
		{"rate limit scope", base + `route "p" {
  path_prefix = "/p/"
  respond {}
  rate_limit {
    requests = 1
    scope    = »"global"
  }
}`, []string{`route "p" rate_limit scope: "global" is not one of`}},
		{"rate limit cluster without store", base + `route "p" {
  path_prefix = "/p/"
  respond {}
  rate_limit {
    requests = 1
    scope    = »"cluster"
  }
}`, []string{"Missing rate limit store", `route "p" rate_limit scope: "cluster" keeps the buckets in a store`}},
		{"rate limit store with machine scope", base + `route "p" {
  path_prefix = "/p/"
  respond {}
  rate_limit {
    requests = 1
    scope    = "machine"
    store    = »"redis://127.0.0.1:6379"
  }
}`, []string{"Rate limit store unused", `route "p" rate_limit store: a "machine" scope limit`}},
		{"rate limit zone too small", base + `rate_limit_zone_size = »"4k"`,
			[]string{"Invalid size", `rate_limit_zone_size: "4k" is out of range: it must be from 64k to 1g`}},
		{"rate limit zone not a size", base + `rate_limit_zone_size = »"lots"`,
			[]string{"Invalid size", "rate_limit_zone_size"}},

		{"rate limit store TLS", base + `route "p" {
  path_prefix = "/p/"
  respond {}
  rate_limit {
    requests = 1
    store    = »"rediss://:pw@cache:6379/0"
  }
}`, []string{"Invalid rate limit store", `route "p" rate_limit store: "rediss://:xxxxx@cache:6379/0": TLS to the store (rediss://) is not supported`}},
		{"rate limit store scheme", base + `route "p" {
  path_prefix = "/p/"
  respond {}
  rate_limit {
    requests = 1
    store    = »"http://cache:6379"
  }
}`, []string{`route "p" rate_limit store: "http://cache:6379": scheme "http" is not supported`}},
		{"rate limit store port", base + `route "p" {
  path_prefix = "/p/"
  respond {}
  rate_limit {
    requests = 1
    store    = »"redis://cache:99999/0"
  }
}`, []string{`port "99999" is not a number from 1 to 65535`}},
		{"rate limit store db", base + `route "p" {
  path_prefix = "/p/"
  respond {}
  rate_limit {
    requests = 1
    store    = »"redis://cache:6379/one"
  }
}`, []string{`database "one" is not a number from 0 up`}},
		{"rate limit store no host", base + `route "p" {
  path_prefix = "/p/"
  respond {}
  rate_limit {
    requests = 1
    store    = »"redis:///0"
  }
}`, []string{`rate_limit store: "redis:///0": no host`}},
		{"rate limit store unparsable hides password", base + `route "p" {
  path_prefix = "/p/"
  respond {}
  rate_limit {
    requests = 1
    store    = »"redis://u:s3cret@ca che:6379/0"
  }
}`, []string{`"redis://xxxxx@ca che:6379/0": not a URL`}},

		// Durations and sizes.
		{"bad duration", base + `shutdown_timeout = »"5 minutes"`,
			[]string{"Invalid duration", `shutdown_timeout: "5 minutes" is not a duration`}},
		{"duration without unit", base + `reload_timeout = »30`, []string{`reload_timeout: "30" is not a duration`}},
		{"zero duration", base + `upgrade_timeout = »"0s"`, []string{`upgrade_timeout: "0s" must be more than zero`}},
		{"heartbeat too short", base + `worker_heartbeat_timeout = »"50ms"`,
			[]string{"Invalid duration", `worker_heartbeat_timeout: "50ms" is too short`, "at least 100ms"}},
		{"negative duration", `listener "l" {
  address           = "127.0.0.1:1000"
  keepalive_timeout = »"-1s"
}
` + respondRoute, []string{`listener "l" keepalive_timeout: "-1s" must be more than zero`}},
		{"bad size", `listener "l" {
  address       = "127.0.0.1:1000"
  max_body_size = »"10 MB"
}
` + respondRoute, []string{"Invalid size", `listener "l" max_body_size: "10 MB" is not a size`}},
		{"size out of range", `listener "l" {
  address         = "127.0.0.1:1000"
  max_header_size = »"2g"
}
` + respondRoute, []string{`listener "l" max_header_size: "2g" is out of range: it must be from 1k to 1m`}},
		{"backlog out of range", `listener "l" {
  address = "127.0.0.1:1000"
  backlog = »70000
}
` + respondRoute, []string{`listener "l" backlog: 70000 is out of range: it must be from 0 to 65535`}},
		{"max_connections negative", `listener "l" {
  address         = "127.0.0.1:1000"
  max_connections = »-1
}
` + respondRoute, []string{`listener "l" max_connections: -1 is out of range`}},
		{"body buffer too small", `listener "l" {
  address                 = "127.0.0.1:1000"
  client_body_buffer_size = »"100"
}
` + respondRoute, []string{`listener "l" client_body_buffer_size: "100" is out of range: it must be from 1k to 16m`}},
		{"size overflow", base + "limits { core = »\"99999999999g\" }", []string{`limits core: "99999999999g" is too large for a size`}},

		// Addresses.
		{"port out of range", `listener "l" { address = »"127.0.0.1:65536" }
` + respondRoute, []string{"Invalid address", `listener "l" address: "127.0.0.1:65536": port "65536" is not a number from 1 to 65535`}},
		{"port zero", `listener "l" { address = »"127.0.0.1:0" }
` + respondRoute, []string{`port "0" is not a number from 1 to 65535`}},
		{"no port", `listener "l" { address = »"127.0.0.1" }
` + respondRoute, []string{`"127.0.0.1" is not host:port (missing port in address)`}},
		{"listener host name", `listener "l" { address = »"localhost:80" }
` + respondRoute, []string{`a listener binds an IP address, not the name "localhost"`}},
		{"unbracketed ipv6", `listener "l" { address = »"::1:80" }
` + respondRoute, []string{`"::1:80" is not host:port`}},
		{"server address", base + `upstream "u" {
  server »"10.0.0.1" {}
}` + route, []string{"Invalid server address", `upstream "u": server "10.0.0.1" is not host:port`}},
		{"server host name", base + `upstream "u" {
  server »"bad_host!:80" {}
}` + route, []string{`"bad_host!" is neither an IP address nor a valid host name`}},
		{"duplicate listener address", base + `listener "m" { address = »"127.0.0.1:1000" }`,
			[]string{"Address already used", `listener "m" address "127.0.0.1:1000" collides with listener "l" address "127.0.0.1:1000" (at t.hcl:1,26)`}},
		{"wildcard listener address", base + `listener "m" { address = »":1000" }`, []string{`listener "m" address ":1000" collides with listener "l"`}},
		{"admin address", base + `admin { address = »"0.0.0.0:1000" }`, []string{`admin address "0.0.0.0:1000" collides with listener "l"`}},

		// Names and references.
		{"duplicate listener", base + `listener »"l" { address = "127.0.0.1:1001" }`,
			[]string{"Duplicate listener", `listener "l" is already defined at t.hcl:1,10`}},
		{"empty listener name", base + `listener »"" { address = "127.0.0.1:1001" }`, []string{"Empty name", "a listener needs a name"}},
		{"odd listener name", base + `listener »"a b" { address = "127.0.0.1:1001" }`, []string{"Invalid name", `listener name "a b": use letters, digits`}},
		{"duplicate upstream", base + `upstream "u" {
  server "10.0.0.1:80" {}
}
upstream »"u" {
  server "10.0.0.2:80" {}
}` + route, []string{"Duplicate upstream", `upstream "u" is already defined at t.hcl:5,10`}},
		{"duplicate server", base + `upstream "u" {
  server "[::1]:80" {}
  server »"[0:0::1]:80" {}
}` + route, []string{"Duplicate server", `upstream "u" lists server "[0:0::1]:80" twice (first at t.hcl:6,10)`}},
		{"duplicate server name", base + `upstream "u" {
  server "App.Internal:80" {}
  server »"app.internal:80" {}
}` + route, []string{"Duplicate server", `upstream "u" lists server "app.internal:80" twice (first at t.hcl:6,10)`}},
		{"unknown upstream", base + `upstream "app" {
  server "10.0.0.1:80" {}
}
route "p" {
  path_prefix = "/p/"
  upstream    = »"ap"
}`, []string{"Unknown upstream", `route "p": there is no upstream "ap"; did you mean "app"? (defined: "app")`}},
		{"unknown listener", base + `route "p" {
  listeners   = ["l", »"m"]
  path_prefix = "/p/"
  respond {}
}`, []string{"Unknown listener", `route "p": there is no listener "m"; defined: "l"`}},
		{"listener listed twice", base + `route "p" {
  listeners   = ["l", »"l"]
  path_prefix = "/p/"
  respond {}
}`, []string{"Duplicate listener", `route "p" lists listener "l" twice`}},
		{"empty listeners", base + `route "p" {
  listeners = »[]
  respond {}
}`, []string{`route "p": listeners is empty`}},
		{"duplicate route", base + `route »"again" {
  respond { status = 204 }
}`, []string{"Duplicate route", `route "again" matches the same requests as route "r" (at t.hcl:2,7): any host, path_prefix "/", on listener "l"`}},
		{"duplicate route with host", base + `route "a" {
  host = "Example.com"
  respond {}
}
route »"b" {
  host = "example.com"
  respond {}
}`, []string{`route "b" matches the same requests as route "a" (at t.hcl:5,7): "example.com", path_prefix "/", on listener "l"`}},
		{"duplicate route name", base + `route »"r" {
  path_prefix = "/other/"
  respond {}
}`, []string{"Duplicate route", `route "r" is already defined at t.hcl:2,7`}},

		// Numbers and other values.
		{"weight", base + `upstream "u" {
  server "10.0.0.1:80" { weight = »0 }
}` + route, []string{`upstream "u" server "10.0.0.1:80" weight: 0 is out of range: it must be from 1 to 1000`}},
		{"only backups", base + `upstream »"u" {
  server "10.0.0.1:80" { backup = true }
}` + route, []string{"Upstream without primary servers", `every server of upstream "u" is a backup`}},
		{"no servers", base + `upstream »"u" {}` + route, []string{"Upstream without servers", `upstream "u" has no server`}},
		{"workers", base + `workers = »0`, []string{`workers: 0 is out of range: it must be from 1 to 1024`}},
		{"max_draining_generations", base + `max_draining_generations = »0`, []string{`max_draining_generations: 0 is out of range: it must be from 1 to 64`}},
		{"nofile", base + `limits { nofile = »-1 }`, []string{`limits nofile: -1: the open files limit must be 0`}},
		{"route without target", base + `»route "p" { path_prefix = "/p/" }`,
			[]string{"Route without target", `route "p" needs upstream = "NAME" to proxy, or a respond`}},
		{"route with both targets", base + `upstream "u" {
  server "10.0.0.1:80" {}
}
route "p" {
  path_prefix = "/p/"
  upstream    = »"u"
  respond {}
}`, []string{"Upstream and respond", `route "p" has both upstream and a respond block`}},
		{"host with port", base + `route "p" {
  host = »"api.example.com:8080"
  respond {}
}`, []string{"Invalid host", `route "p" host: "api.example.com:8080" has a port`}},
		{"host wildcard inside", base + `route "p" {
  host = »"api.*.com"
  respond {}
}`, []string{`"api.*.com": a wildcard is allowed only as the first label`}},
		{"path prefix", base + `route "p" {
  path_prefix = »"api"
  respond {}
}`, []string{"Invalid path prefix", `route "p" path_prefix: "api" must start with "/"`}},
		{"path prefix not normalized", base + `route "p" {
  path_prefix = »"/x/../admin/"
  respond {}
}`, []string{"Invalid path prefix", `"/x/../admin/" has a "." or ".." segment`, "normalized path"}},
		{"path prefix escaped", base + `route "p" {
  path_prefix = »"/%61dmin/"
  respond {}
}`, []string{`"/%61dmin/" has a percent-escape`}},
		{"path prefix slashes", base + `route "p" {
  path_prefix = »"//admin/"
  respond {}
}`, []string{`"//admin/" has repeated slashes`}},
		{"respond status", base + `route "p" {
  path_prefix = "/p/"
  respond { status = »99 }
}`, []string{`route "p" respond status: 99 is out of range: it must be from 100 to 599`}},
		{"expect status", base + `upstream "u" {
  server "10.0.0.1:80" {}
  health_check { expect_status = [200, »600] }
}` + route, []string{"Invalid status", `upstream "u" health_check expect_status: 600 is not an HTTP status (100-599)`}},
		{"health check path", base + `upstream "u" {
  server "10.0.0.1:80" {}
  health_check { path = »"health" }
}` + route, []string{"Invalid path", `upstream "u" health_check path: "health" must start with "/"`}},
		{"header name", base + `route "p" {
  path_prefix      = "/p/"
  response_headers = { "X-Ok" = "1", »"Bad Name" = "2" }
  respond {}
}`, []string{"Invalid header name", `route "p" response_headers: "Bad Name" is not a valid header name`}},
		{"header value with newline", base + `route "p" {
  path_prefix     = "/p/"
  request_headers = { »"X-A" = "1\r\nInjected: yes" }
  respond {}
}`, []string{"Invalid header value", `route "p" request_headers: the value of "X-A" has a control character`}},
		{"framing header set", base + `route "p" {
  path_prefix      = "/p/"
  response_headers = { »"Content-Length" = "5" }
  respond {}
}`, []string{"Header managed by the proxy", `route "p" response_headers: "Content-Length" cannot be set`}},
		{"remove header name", base + `route "p" {
  path_prefix             = "/p/"
  remove_response_headers = ["Server", »"X:Y"]
  respond {}
}`, []string{`route "p" remove_response_headers: "X:Y" is not a valid header name`}},
		{"empty pid file", base + `pid_file = »""`, []string{"Empty path", "pid_file: must name a file"}},

		// Whole-file problems.
		{"no listener", "»" + respondRoute,
			[]string{"No listener", "the config has no listener block, so the proxy would accept nothing"}},
		{"no route", `»listener "l" { address = "127.0.0.1:1000" }`,
			[]string{"No route", "the config has no route block, so the proxy would answer every request with 404"}},

		// What gohcl and the HCL parser report.
		{"wrong type", base + `workers = "»four"`, []string{"Unsuitable value type", "a number is required"}},
		{"unknown attribute", `listener "l" {
  address = "127.0.0.1:1000"
  »keepalive_timout = "5s"
}
` + respondRoute, []string{"Unsupported argument", `An argument named "keepalive_timout" is not expected here. Did you mean "keepalive_timeout"?`}},
		{"unknown block", base + `»server "10.0.0.1:80" {}`, []string{"Unsupported block type", `Blocks of type "server" are not expected here`}},
		{"missing required", base + `listener "m" »{}`, []string{"Missing required argument", `The argument "address" is required`}},
		{"duplicate block", base + "log {}\n»log {}", []string{"Duplicate log block"}},
		{"variable not allowed", base + `user = »nobody`, []string{"Variables not allowed"}},
		{"unknown function", base + `user = »lookup("x")`, []string{"Call to unknown function", `There is no function named "lookup"`}},
		{"env unset", base + `user = env("»PINGORA_TEST_SURELY_UNSET")`,
			[]string{`environment variable "PINGORA_TEST_SURELY_UNSET" is not set; set it, or give a fallback`}},
		{"env too many args", base + `user = env("A", "b", "»c")`, []string{"env takes a variable name and at most one fallback"}},
		{"syntax error", base + `user = "unterminated»`, []string{"Unterminated template string"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, line, col := unmark(t, c.src)
			_, err := config.Parse([]byte(src), "t.hcl")
			e := configError(t, err)
			d := findDiag(e, line, col)
			if d == nil {
				t.Fatalf("no error at %d,%d; got:\n%v", line, col, err)
			}
			text := d.Summary + ": " + d.Detail
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("diagnostic at %d,%d is %q; want it to contain %q", line, col, text, w)
				}
			}
			if n := len(e.Diags.Errs()); n != 1 {
				t.Errorf("%d errors, want just this one:\n%v", n, err)
			}
			pos := fmt.Sprintf("t.hcl:%d,%d: Error: %s", line, col, d.Summary)
			if !strings.Contains(err.Error(), pos) {
				t.Errorf("rendered error lacks %q:\n%v", pos, err)
			}
		})
	}
}

// TestAllErrorsReported: one file with several mistakes reports each of
// them, in source order, in one error.
func TestAllErrorsReported(t *testing.T) {
	_, err := config.Load(filepath.Join("testdata", "errors.hcl"))
	e := configError(t, err)
	want := []struct {
		line, col int
		text      string
	}{
		{2, 11, "workers: 0 is out of range"},
		{3, 31, `listener "public" address: "0.0.0.0:99999"`},
		{5, 37, `upstream "app" server "10.0.0.1:8080" weight: 0`},
		{6, 13, `upstream "app" balance: "fastest"`},
		{9, 14, `route "api": there is no upstream "ap"`},
		{10, 17, `route "api" path_prefix: "api/"`},
	}
	errs := e.Diags.Errs()
	if len(errs) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(errs), len(want), err)
	}
	text := err.Error()
	last := -1
	for _, w := range want {
		d := findDiag(e, w.line, w.col)
		if d == nil || !strings.Contains(d.Detail, w.text) {
			t.Errorf("want an error at %d,%d containing %q", w.line, w.col, w.text)
			continue
		}
		pos := fmt.Sprintf("errors.hcl:%d,%d: Error:", w.line, w.col)
		i := strings.Index(text, pos)
		if i < 0 {
			t.Errorf("rendered text lacks %q", pos)
		} else if i < last {
			t.Errorf("%q is rendered out of source order", pos)
		} else {
			last = i
		}
	}
}

// TestRenderedError checks what an operator reads: the position, the
// source line, a marker under the offending text, and the explanation.
func TestRenderedError(t *testing.T) {
	src := "listener \"l\" { address = \"127.0.0.1:1000\" }\nroute \"r\" { upstream = \"u\" }\nupstream \"u\" {\n\tserver \"10.0.0.1:80\" {}\n\tconnect_timeout = \"5x\"\n}\n"
	_, err := config.Parse([]byte(src), "/etc/pingora/pingora.hcl")
	configError(t, err)
	want := "/etc/pingora/pingora.hcl:5,20: Error: Invalid duration\n" +
		"\n" +
		"  on /etc/pingora/pingora.hcl line 5, in upstream \"u\":\n" +
		"   5: \tconnect_timeout = \"5x\"\n" +
		"      \t                  ^^^^\n" +
		"\n" +
		"upstream \"u\" connect_timeout: \"5x\" is not a duration: write a number and a unit, e.g. \"30s\", \"500ms\", \"2m\""
	if got := err.Error(); got != want {
		t.Errorf("rendered error:\n%s\nwant:\n%s", got, want)
	}
}

func TestWarningsDoNotStopTheLoad(t *testing.T) {
	src := `listener "l" { address = "127.0.0.1:1000" }
listener "spare" { address = "127.0.0.1:1001" }
route "r" {
  listeners = ["l"]
  respond {}
}
upstream "old" {
  server "10.0.0.9:80" {}
}
upstream "h" {
  server "10.0.0.1:80" {}
  hash_key = "uri"
}
route "p" {
  listeners   = ["l"]
  path_prefix = "/p/"
  upstream    = "h"
}
limits { nofile = 1000 }
listener "capped" {
  address         = "127.0.0.1:1002"
  max_connections = 500
}
route "c" {
  listeners = ["capped"]
  respond {}
}
`
	cfg, err := config.Parse([]byte(src), "w.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`w.hcl:2,10: Listener without routes: no route serves listener "spare"`,
		`w.hcl:7,10: Unused upstream: upstream "old" is not used by any route`,
		`w.hcl:12,14: Unused hash key: upstream "h": hash_key has no effect with balance = "round_robin"`,
		`w.hcl:22,21: Connection cap above the open files limit: max_connections of the listeners allows 1000 descriptors per worker`,
	}
	if len(cfg.Warnings) != len(want) {
		t.Fatalf("warnings = %q, want %d", cfg.Warnings, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(cfg.Warnings[i], w) {
			t.Errorf("warning %d = %q, want prefix %q", i, cfg.Warnings[i], w)
		}
	}
}

// TestErrorOfSyntaxErrorQuotesSource: even a file that does not parse gets
// the full rendering, for each syntax error.
func TestErrorOfSyntaxErrorQuotesSource(t *testing.T) {
	path, _ := filepath.Abs(filepath.Join("testdata", "syntax-error.hcl"))
	_, err := config.Load(path)
	configError(t, err)
	src, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatal(rerr)
	}
	line3 := strings.Split(string(src), "\n")[2]
	if !strings.Contains(err.Error(), path+":3,13: Error:") || !strings.Contains(err.Error(), "   3: "+line3) {
		t.Errorf("error:\n%v\nwant position 3,13 and the source line %q", err, line3)
	}
}

// TestTypoIsReportedOnce: after `upstream = "ap"` for "app", the user gets
// the unknown-upstream error with a suggestion, not also an "app is unused"
// warning about the same mistake.
func TestTypoIsReportedOnce(t *testing.T) {
	_, err := config.Parse([]byte(base+`upstream "app" {
  server "10.0.0.1:80" {}
}
route "p" {
  path_prefix = "/p/"
  upstream    = "ap"
}
`), "t.hcl")
	e := configError(t, err)
	if len(e.Diags) != 1 || !strings.Contains(e.Diags[0].Detail, `did you mean "app"?`) {
		t.Errorf("want one diagnostic suggesting \"app\":\n%v", err)
	}
}
