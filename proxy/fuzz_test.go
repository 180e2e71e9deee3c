package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
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
		if parseRequest(&r, head) != stOK {
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
		if parseResponse(&r, head) != stOK {
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
		end, bad := -1, false
		for i := 0; i < len(in) && !bytewise.done(); i++ {
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
	})
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
