package proxy

import (
	"bytes"
	"net/http"
	"slices"
	"testing"
	"time"
)

// fakeStreamWriter records what an h2Stream hands x/net's ResponseWriter.
type fakeStreamWriter struct {
	h       http.Header
	heads   []int         // statuses, in order
	fields  []http.Header // the header map as each head went out
	body    bytes.Buffer
	flushes int
}

func (f *fakeStreamWriter) Header() http.Header { return f.h }
func (f *fakeStreamWriter) WriteHeader(status int) {
	f.heads = append(f.heads, status)
	f.fields = append(f.fields, f.h.Clone())
}
func (f *fakeStreamWriter) Write(b []byte) (int, error)      { return f.body.Write(b) }
func (f *fakeStreamWriter) FlushError() error                { f.flushes++; return nil }
func (f *fakeStreamWriter) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeStreamWriter) SetWriteDeadline(time.Time) error { return nil }

// The engine's response reaches the stream in writes of any size: the
// heads (an interim one, then the final one) come out whole and in order
// wherever the writes split them, connection-specific fields dropped, the
// body after them byte for byte.
func TestH2StreamWriteSplitsAnywhere(t *testing.T) {
	resp := []byte("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nconnection: keep-alive\r\nKeep-Alive: timeout=5\r\n" +
		"x-served-by: a\r\nX-Served-By: b\r\nSet-Cookie: a=1\r\nContent-Length: 11\r\n\r\nhello world")
	for cut1 := 1; cut1 < len(resp); cut1++ {
		for _, cut2 := range []int{cut1, min(cut1+1, len(resp)), min(cut1+60, len(resp))} {
			f := &fakeStreamWriter{h: http.Header{}}
			st := &h2Stream{}
			st.reset(f, &clientConn{p: &Proxy{}}, false) // a proxy not draining
			for _, part := range [][]byte{resp[:cut1], resp[cut1:cut2], resp[cut2:]} {
				if n, err := st.Write(part); err != nil || n != len(part) {
					t.Fatalf("cuts %d,%d: Write(%q) = %d, %v", cut1, cut2, part, n, err)
				}
			}
			if !slices.Equal(f.heads, []int{103, 200}) {
				t.Fatalf("cuts %d,%d: heads %v", cut1, cut2, f.heads)
			}
			if got := f.fields[0].Get("Link"); got != "</a.css>; rel=preload" {
				t.Fatalf("cuts %d,%d: 103 Link %q", cut1, cut2, got)
			}
			final := f.fields[1]
			if _, ok := final["Link"]; ok {
				t.Fatalf("cuts %d,%d: the 103's field stayed for the final head: %v", cut1, cut2, final)
			}
			want := http.Header{"Content-Type": {"text/plain"}, "X-Served-By": {"a", "b"},
				"Set-Cookie": {"a=1"}, "Content-Length": {"11"}}
			if !equalHeader(final, want) {
				t.Fatalf("cuts %d,%d: final fields %v, want %v", cut1, cut2, final, want)
			}
			if f.body.String() != "hello world" || !st.done() {
				t.Fatalf("cuts %d,%d: body %q done %v", cut1, cut2, f.body.String(), st.done())
			}
		}
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
