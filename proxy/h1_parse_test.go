package proxy

import (
	"strings"
	"testing"
)

func TestParseRequestValid(t *testing.T) {
	head := "GET /a/b?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nX-Forwarded-For: 10.0.0.1\r\n" +
		"Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nContent-Length: 5, 5\r\nExpect: 100-continue\r\n\r\n"
	var r request
	if st := parseRequest(&r, []byte(head)); st != parseOK {
		t.Fatalf("status %d", st)
	}
	if string(r.method) != "GET" || string(r.target) != "/a/b?x=1" || string(r.path) != "/a/b" {
		t.Fatalf("method %q target %q path %q", r.method, r.target, r.path)
	}
	if string(r.host) != "Example.COM:8080" || r.minor != 1 || !r.idempotent || !r.expect100 {
		t.Fatalf("host %q minor %d idempotent %v expect %v", r.host, r.minor, r.idempotent, r.expect100)
	}
	if r.contentLength != 5 || r.chunked {
		t.Fatalf("content length %d chunked %v", r.contentLength, r.chunked)
	}
	if !r.namedInConnection([]byte("x-secret")) || !r.connKeepAlive {
		t.Fatal("Connection tokens not recorded")
	}
	if len(r.headers) != 6 || r.headers[1].kind != hdrXForwardedFor {
		t.Fatalf("headers %+v", r.headers)
	}
}

func TestParseRequestAbsoluteForm(t *testing.T) {
	var r request
	if st := parseRequest(&r, []byte("GET http://h.example/p?q HTTP/1.1\r\nHost: h.example\r\n\r\n")); st != parseOK {
		t.Fatalf("status %d", st)
	}
	if string(r.target) != "/p?q" || string(r.path) != "/p" {
		t.Fatalf("target %q path %q", r.target, r.path)
	}
	if st := parseRequest(&r, []byte("GET http://h.example HTTP/1.0\r\n\r\n")); st != parseOK || string(r.host) != "h.example" || len(r.target) != 0 {
		t.Fatalf("status %d host %q target %q", st, r.host, r.target)
	}
	// RFC 9112 3.2.2: the authority wins over a disagreeing Host, which
	// is rewritten to it.
	if st := parseRequest(&r, []byte("GET http://a.example:8080?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n")); st != parseOK {
		t.Fatalf("status %d", st)
	}
	if string(r.host) != "a.example:8080" || string(r.target) != "?q=1" || len(r.path) != 0 {
		t.Fatalf("host %q target %q path %q", r.host, r.target, r.path)
	}
	if string(r.headers[0].value) != "a.example:8080" {
		t.Fatalf("Host header %q", r.headers[0].value)
	}
}

func TestParseRequestValidHosts(t *testing.T) {
	for _, h := range []string{"h", "H.Example.COM", "h:80", "h:", "10.0.0.1:8080", "[::1]", "[::1]:443", "[v1.fe80::a]", "a-b_c~d.e", "%41bc", "xn--bcher-kva.example"} {
		var r request
		if st := parseRequest(&r, []byte("OPTIONS * HTTP/1.1\r\nHost: "+h+"\r\n\r\n")); st != parseOK {
			t.Errorf("Host %q: status %d", h, st)
		}
	}
	var r request
	if st := parseRequest(&r, []byte("GET / HTTP/1.1\r\nHost:\r\n\r\n")); st != parseOK {
		t.Errorf("empty Host: status %d", st)
	}
}

func TestNormalizePath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/", "/"},
		{"/admin/", "/admin/"},
		{"//admin/", "/admin/"},
		{"/x/../admin/", "/admin/"},
		{"/%61dmin/", "/admin/"},
		{"/%2e%2E/", ""},
		{"/x/%2e%2e/admin/", "/admin/"},
		{"/x%2F..%2Fadmin/", "/admin/"},
		{"/a/./b", "/a/b"},
		{"/a/.", "/a/"},
		{"/a/..", "/"},
		{"/a/b/..//c", "/a/c"},
		{"/a//b///", "/a/b/"},
		{"/.hidden", "/.hidden"},
		{"/a/...", "/a/..."},
		{"/%25", "/%25"},
		{"/%2541", "/%2541"},
		{"/a%20b", "/a b"},
		{"/..", ""},
		{"/a/../..", ""},
		{"/./..", ""},
		{"/%", ""},
		{"/%4", ""},
		{"/%zz", ""},
		{"a", ""},
		{"", ""},
	}
	for _, c := range cases {
		got, ok := appendNormalizedPath([]byte("pre"), []byte(c.in))
		if !ok {
			if c.want != "" {
				t.Errorf("%q refused, want %q", c.in, c.want)
			}
			if string(got) != "pre" {
				t.Errorf("%q: refused but dst is %q", c.in, got)
			}
			continue
		}
		if c.want == "" {
			t.Errorf("%q: %q, want refused", c.in, got[3:])
		} else if string(got) != "pre"+c.want {
			t.Errorf("%q: %q, want %q", c.in, got, "pre"+c.want)
		}
	}
	for _, p := range []string{"/", "/a/b", "/a/b/", "/a.b/c.d", "/a?b"} {
		if pathNeedsNormalizing([]byte(p)) {
			t.Errorf("%q takes the slow path", p)
		}
	}
	for _, p := range []string{"//", "/a/./b", "/a/../b", "/%61", "/a/.", "/.x"} {
		if !pathNeedsNormalizing([]byte(p)) {
			t.Errorf("%q takes the fast path", p)
		}
	}
}

func TestNormalizePathAllocs(t *testing.T) {
	buf := make([]byte, 0, 64)
	p := []byte("/x/../%61dmin//y/")
	if n := testing.AllocsPerRun(100, func() { buf, _ = appendNormalizedPath(buf[:0], p) }); n != 0 {
		t.Fatalf("%v allocations per normalization with a scratch buffer", n)
	}
}

// TestParseRequestRejects covers the smuggling and malformed-head cases:
// each must be refused (400 unless said otherwise), never forwarded.
func TestParseRequestRejects(t *testing.T) {
	cases := []struct {
		name string
		head string
		want int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400},
		{"differing CL", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
		{"CL list differing", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", 400},
		{"CL negative", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
		{"CL plus", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400},
		{"CL hex", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n", 400},
		{"CL empty", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", 400},
		{"CL huge", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		{"TE gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400},
		{"TE twice", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE chunked space", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked x\r\n\r\n", 400},
		{"TE identity", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 400},
		{"HTTP/1.0 with TE", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400},
		{"obs-fold tab", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\r\nHost: h\nX-A: a\r\n\r\n", 400},
		{"bad name char", "GET / HTTP/1.1\r\nHost: h\r\nX(A): a\r\n\r\n", 400},
		{"empty name", "GET / HTTP/1.1\r\nHost: h\r\n: a\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\nX-A: a\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"double space", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"lowercase version", "GET / http/1.1\r\nHost: h\r\n\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
		{"bad target", "GET a HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"CONNECT", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 405},
		{"bad method", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"asterisk GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"fragment", "GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"asterisk bad host", "OPTIONS * HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"fragment in query", "GET /a?q#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"absolute userinfo", "GET http://u:p@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"absolute empty authority", "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 400},
		{"host bad port", "GET / HTTP/1.1\r\nHost: h:8o\r\n\r\n", 400},
		{"host two colons", "GET / HTTP/1.1\r\nHost: h:80:81\r\n\r\n", 400},
		{"host only port", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400},
		{"host bad escape", "GET / HTTP/1.1\r\nHost: h%zz\r\n\r\n", 400},
		{"host bad literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
		{"host literal junk", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400},
		{"host quote", "GET / HTTP/1.1\r\nHost: h\"\r\n\r\n", 400},
	}
	for _, c := range cases {
		var r request
		if st := parseRequest(&r, []byte(c.head)); st != c.want {
			t.Errorf("%s: status %d, want %d", c.name, st, c.want)
		}
	}
}

func TestParseRequestTooManyHeaders(t *testing.T) {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: h\r\n")
	for i := 0; i < maxHeaders+1; i++ {
		b.WriteString("X-A: a\r\n")
	}
	b.WriteString("\r\n")
	var r request
	if st := parseRequest(&r, []byte(b.String())); st != statusHeaderTooLarge {
		t.Fatalf("status %d, want 431", st)
	}
}

func TestParseResponse(t *testing.T) {
	var r response
	if st := parseResponse(&r, []byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n")); st != parseOK {
		t.Fatalf("status %d", st)
	}
	if r.status != 200 || string(r.statusRest) != "200 OK" || r.contentLength != 3 || r.keepAlive() {
		t.Fatalf("%+v", r)
	}
	if st := parseResponse(&r, []byte("HTTP/1.0 204\r\n\r\n")); st != parseOK || r.status != 204 || r.keepAlive() {
		t.Fatalf("status %d, %+v", st, r)
	}
	bad := []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
	}
	for _, h := range bad {
		if st := parseResponse(&r, []byte(h)); st == parseOK {
			t.Errorf("accepted %q", h)
		}
	}
}

func TestChunkParser(t *testing.T) {
	good := []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n",
		"0\r\nTrailer: x\r\n\r\n",
		"0\r\nX-A:\r\nContent-Length: 5\r\n\r\n",
	}
	for _, g := range good {
		var c chunkParser
		n, err := c.scan([]byte(g + "NEXT"))
		if err != nil || n != len(g) {
			t.Errorf("%q: n %d err %v", g, n, err)
		}
	}
	var c chunkParser
	if n, err := c.scan([]byte("5\r\nhel")); n != -1 || err != nil {
		t.Errorf("partial: n %d err %v", n, err)
	}
	bad := []string{
		"x\r\n",
		"-5\r\nhello\r\n",
		"5 \r\nhello\r\n",
		" 5\r\nhello\r\n",
		"5\nhello\r\n",
		"5\r\nhelloX\r\n",
		"5\r\nhello\n0\r\n\r\n",
		"1000000000000000\r\n",
		"0\r\nTrailer: x\n\r\n",
		"5\r\nhello\r\n0\r\n\n",
		// trailer lines are header fields: a request line is not one
		"0\r\nGET /admin/secret HTTP/1.1\r\nHost: a\r\n\r\n",
		"0\r\nX-A : b\r\n\r\n",
		"0\r\nX-A\r\n\r\n",
		"0\r\n: b\r\n\r\n",
		"0\r\nX-A: b\r\n c\r\n\r\n",
		"0\r\nX-A: b\x00\r\n\r\n",
		"0\r\nX(A): b\r\n\r\n",
	}
	for _, b := range bad {
		var c chunkParser
		if _, err := c.scan([]byte(b)); err == nil {
			t.Errorf("accepted %q", b)
		}
	}
	// Data spans and totals when decoding step by step.
	var d chunkParser
	in := []byte("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
	var data []byte
	for off := 0; !d.done(); {
		n, isData, err := d.step(in[off:])
		if err != nil {
			t.Fatal(err)
		}
		if isData {
			data = append(data, in[off:off+n]...)
		}
		off += n
	}
	if string(data) != "abcde" || d.total != 5 {
		t.Fatalf("decoded %q total %d", data, d.total)
	}
}

func TestParseContentLength(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "42": 42, "7, 7": 7, "7,7": 7} {
		if n, ok := parseContentLength([]byte(in)); !ok || n != want {
			t.Errorf("%q: %d %v", in, n, ok)
		}
	}
	for _, in := range []string{"", "a", "1,", ",1", "1 2", "1, 2", "-0"} {
		if _, ok := parseContentLength([]byte(in)); ok {
			t.Errorf("%q accepted", in)
		}
	}
}
