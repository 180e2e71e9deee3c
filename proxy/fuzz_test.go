package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"testing"
)

// The parsers below read what clients and upstreams send, byte for byte,
// before anything else looks at it: no input may panic them, and what they
// accept must frame a body the way net/http's reader does, since a proxy
// and the server behind it that disagree on where a body ends is request
// smuggling. `go test -fuzz FuzzParseRequest ./proxy` (and the others) runs
// them; `go test` runs the seeds.

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /a/b?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nContent-Length: 5, 5\r\nExpect: 100-continue\r\n\r\n",
	"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	"POST /u HTTP/1.0\r\nHost: h\r\nContent-Length: 12\r\n\r\n",
	"GET http://h.example/p?q HTTP/1.1\r\nHost: h.example\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
	"G\x00T / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\n",
}

// FuzzParseRequest: parseRequest never panics; a head it accepts has a
// method, a Host and no framing that two readers could take two ways, and
// where net/http accepts the same head it sees the same body framing.
func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		head := completeHead(in)
		var r request
		if parseRequest(&r, head) != parseOK {
			return
		}
		if len(r.method) == 0 {
			t.Fatalf("accepted %q with no method", head)
		}
		var cl, te int
		for _, h := range r.headers {
			if bytes.ContainsAny(h.name, " \t\r\n:") || bytes.ContainsAny(h.value, "\r\n\x00") {
				t.Fatalf("accepted %q: header %q: %q", head, h.name, h.value)
			}
			switch h.kind {
			case hdrContentLength:
				cl++
			case hdrTransferEncoding:
				te++
			}
		}
		if cl > 0 && te > 0 {
			t.Fatalf("accepted %q with both Content-Length and Transfer-Encoding", head)
		}
		if r.contentLength < -1 || (r.chunked && r.contentLength > 0) {
			t.Fatalf("accepted %q: content length %d, chunked %v", head, r.contentLength, r.chunked)
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			return // stricter than us there: nothing to compare
		}
		chunked := len(req.TransferEncoding) > 0 && req.TransferEncoding[len(req.TransferEncoding)-1] == "chunked"
		if chunked != r.chunked {
			t.Fatalf("%q: chunked %v here, net/http %v (%q)", head, r.chunked, chunked, req.TransferEncoding)
		}
		if !r.chunked && max(r.contentLength, 0) != max(req.ContentLength, 0) {
			t.Fatalf("%q: content length %d here, net/http %d", head, r.contentLength, req.ContentLength)
		}
	})
}

// FuzzParseResponse: parseResponse never panics, and a response head it
// accepts frames its body one way.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
		"HTTP/1.1 999\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		head := completeHead(in)
		var r response
		if parseResponse(&r, head) != parseOK {
			return
		}
		if r.status < 100 || r.status > 999 {
			t.Fatalf("accepted %q with status %d", head, r.status)
		}
		if r.contentLength < -1 || (r.chunked && r.contentLength > 0) {
			t.Fatalf("accepted %q: content length %d, chunked %v", head, r.contentLength, r.chunked)
		}
	})
}

// FuzzChunkParser: the chunked-coding validator never panics, consumes no
// more than it is given, finds the same end whether it is fed at once or a
// byte at a time, and where it accepts a body, net/http's chunked reader
// decodes the same data from it.
func FuzzChunkParser(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n",
		"0\r\nTrailer: x\r\n\r\n",
		"5\r\nhel",
		"-5\r\nhello\r\n",
		"1000000000000000\r\n",
		"5\r\nhello\n0\r\n\r\n",
		"0\r\nGET /admin/secret HTTP/1.1\r\nHost: a\r\n\r\n",
		"3\r\nabc\r\n0\r\nContent-Length: 5\r\nX-A: b\r\n\r\n",
		"0\r\nX-A : b\r\n\r\n",
		"0\r\nX-A: b\r\n c\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var whole chunkParser
		n, err := whole.scan(in)
		if n > len(in) {
			t.Fatalf("%q: consumed %d of %d bytes", in, n, len(in))
		}

		// Byte by byte, decoding the data as the proxy does for an
		// HTTP/1.0 client.
		var bytewise chunkParser
		var data []byte
		end, bad, trailerAt := -1, false, -1
		for i := 0; i < len(in) && !bytewise.done(); i++ {
			if trailerAt < 0 && bytewise.inTrailer() {
				trailerAt = i
			}
			k, isData, err := bytewise.step(in[i : i+1])
			if err != nil {
				bad = true
				break
			}
			if isData {
				data = append(data, in[i:i+k]...)
			}
			if bytewise.done() {
				end = i + 1
			}
		}
		if (err != nil) != bad {
			t.Fatalf("%q: error %v at once, bytewise error %v", in, err, bad)
		}
		if err != nil {
			return
		}
		if n != end {
			t.Fatalf("%q: body ends at %d at once, at %d bytewise", in, n, end)
		}
		if n < 0 {
			return // incomplete: nothing to compare
		}
		if int64(len(data)) != bytewise.total {
			t.Fatalf("%q: decoded %d bytes, counted %d", in, len(data), bytewise.total)
		}
		want, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(in[:n])))
		if err != nil {
			t.Fatalf("%q: accepted here, net/http: %v", in[:n], err)
		}
		if !bytes.Equal(data, want) {
			t.Fatalf("%q: decoded %q here, net/http %q", in[:n], data, want)
		}

		// Trailers: net/http's request reader, which parses the trailer
		// section as header fields, accepts what is accepted here and
		// ends the body at the same byte, so no trailer line can be read
		// as a request of its own (the next request is where both say).
		// Every trailer line accepted is a header field by parseFields'
		// rules.
		if trailerAt < 0 || trailerAt > n {
			t.Fatalf("%q: trailer section at %d, body end %d", in[:n], trailerAt, n)
		}
		msg := "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + string(in[:n]) + "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
		br := bufio.NewReader(strings.NewReader(msg))
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("%q: net/http: %v", in[:n], err)
		}
		got, err := io.ReadAll(req.Body)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%q: net/http body %q, %v", in[:n], got, err)
		}
		next, err := http.ReadRequest(br)
		if err != nil || next.URL.Path != "/next" {
			t.Fatalf("%q: net/http ends the body elsewhere: next request %v", in[:n], err)
		}
		if trailers := in[trailerAt:n]; len(trailers) > 2 {
			var fl fields
			fl.reset()
			if st := fl.parseFields(trailers); st == statusBadRequest && !semanticTrailer(trailers) {
				t.Fatalf("%q: trailer accepted here, parseFields: %d", trailers, st)
			}
		}
	})
}

// semanticTrailer reports whether a trailer section holds a field that
// parseFields may refuse for its meaning rather than its syntax (framing
// and connection fields, which the proxy drops from trailers anyway).
func semanticTrailer(b []byte) bool {
	for _, line := range bytes.Split(b, []byte("\r\n")) {
		if i := bytes.IndexByte(line, ':'); i > 0 {
			switch classify(line[:i]) {
			case hdrContentLength, hdrTransferEncoding, hdrConnection:
				return true
			}
		}
	}
	return false
}

// FuzzNormalizePath: the path routes are matched against never panics,
// is idempotent, starts with '/', has no empty, "." or ".." segment, and
// agrees with a reference built from url.PathUnescape and path.Clean: the
// same cleaned path, refusal exactly for bad escapes and climbs above the
// root, and a trailing slash exactly where the input ends in a directory.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/admin/", "//admin/", "/x/../admin/", "/%61dmin/", "/x%2F..%2Fadmin/",
		"/%2e%2e/", "/a/./b/.", "/%2541", "/..", "/a/b/../../..", "/%zz", "/a%", "/.hidden/..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) == 0 || in[0] != '/' {
			if _, ok := appendNormalizedPath(nil, []byte(in)); ok {
				t.Fatalf("%q accepted without a leading slash", in)
			}
			return
		}
		out, ok := appendNormalizedPath(nil, []byte(in))
		refDecoded, refOK := referenceDecode(in)
		climbs := refOK && climbsAboveRoot(refDecoded)
		if ok != (refOK && !climbs) {
			t.Fatalf("%q: accepted %v, reference decode %v climbs %v", in, ok, refOK, climbs)
		}
		if !ok {
			return
		}
		if !pathNeedsNormalizing([]byte(in)) && string(out) != in {
			t.Fatalf("%q takes the fast path but normalizes to %q", in, out)
		}
		o := string(out)
		if o[0] != '/' || strings.Contains(o, "//") || strings.Contains(o+"/", "/./") || strings.Contains(o+"/", "/../") {
			t.Fatalf("%q: %q is not normal", in, o)
		}
		again, ok := appendNormalizedPath(nil, out)
		if !ok || string(again) != o {
			t.Fatalf("%q: %q normalizes again to %q (%v)", in, o, again, ok)
		}
		if c := path.Clean(refDecoded); path.Clean(o) != c {
			t.Fatalf("%q: %q, reference %q", in, o, c)
		}
		dir := strings.HasSuffix(refDecoded, "/") || strings.HasSuffix(refDecoded, "/.") || strings.HasSuffix(refDecoded, "/..")
		if (dir || o == "/") != strings.HasSuffix(o, "/") {
			t.Fatalf("%q: %q, trailing slash want %v", in, o, dir)
		}
	})
}

// referenceDecode percent-decodes p with net/url, except that %25 stays
// as it is.
func referenceDecode(p string) (string, bool) {
	parts := strings.Split(p, "%25")
	for i, s := range parts {
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		parts[i] = d
	}
	return strings.Join(parts, "%25"), true
}

// climbsAboveRoot reports whether a decoded path's ".." segments go above
// "/", counting depth segment by segment.
func climbsAboveRoot(p string) bool {
	depth := 0
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			if depth == 0 {
				return true
			}
			depth--
		default:
			depth++
		}
	}
	return false
}

// completeHead makes a fuzz input a complete head, as the connection's
// reader hands it to the parsers: ending in CRLFCRLF, no CRLFCRLF earlier.
func completeHead(in []byte) []byte {
	s := string(in)
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		s = s[:i]
	}
	return []byte(s + "\r\n\r\n")
}

// FuzzProxyHeader: the PROXY protocol parser never panics, never claims
// more bytes than it was given, and only hands out a valid address with a
// complete header.
func FuzzProxyHeader(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\nGET /",
		"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY TCP4 1.2.3.4",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc6\x33\x64\x09\x7f\x00\x00\x01\x9c\x40\x00\x50",
		"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x21\xff\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h proxyHeader
		done := h.parse(b[:min(len(b), proxyHeaderMax)])
		if !done {
			if h.n != 0 || h.err != nil {
				t.Fatalf("incomplete, yet n %d err %v", h.n, h.err)
			}
			return
		}
		if h.err == nil && (h.n <= 0 || h.n > len(b)) {
			t.Fatalf("complete with n %d of %d bytes", h.n, len(b))
		}
		if h.err != nil && h.from.IsValid() {
			t.Fatalf("an address from a bad header: %v", h.from)
		}
	})
}
