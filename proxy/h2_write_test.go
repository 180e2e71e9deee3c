package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pingora-go/pingora/config"
)

// recConn records what is written to it.
type recConn struct {
	net.Conn // nil: only what h2Writer calls is here
	mu       sync.Mutex
	buf      bytes.Buffer
}

func (r *recConn) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(b)
}
func (r *recConn) SetWriteDeadline(time.Time) error { return nil }
func (r *recConn) Close() error                     { return nil }

// sentStream is what a client read of one stream: its heads, in order,
// and its body.
type sentStream struct {
	statuses []int
	fields   []http.Header
	body     bytes.Buffer
	ended    bool
}

// readSent decodes what the server wrote, as a client would.
func readSent(t *testing.T, b []byte) *sentStream {
	t.Helper()
	fr := http2.NewFramer(nil, bytes.NewReader(b))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	s := &sentStream{}
	for {
		f, err := fr.ReadFrame()
		if err == io.EOF {
			return s
		}
		if err != nil {
			t.Fatalf("reading what the stream sent: %v", err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			h := http.Header{}
			for _, hf := range f.RegularFields() {
				h.Add(hf.Name, hf.Value)
			}
			status, _ := strconv.Atoi(f.PseudoValue("status"))
			s.statuses = append(s.statuses, status)
			s.fields = append(s.fields, h)
			s.ended = s.ended || f.StreamEnded()
		case *http2.DataFrame:
			s.body.Write(f.Data())
			s.ended = s.ended || f.StreamEnded()
		}
	}
}

// newTestStream is stream 1 of a connection whose frames rec records.
func newTestStream() (*h2Stream, *h2Conn, *recConn) {
	rec := &recConn{}
	srv := newH2Server(&listenerState{}, new([config.H2CounterCount]atomic.Uint64))
	cc := &clientConn{p: &Proxy{}} // a proxy not draining
	c := newH2Conn(cc, srv, &h2In{Conn: rec, pool: &sync.Pool{}})
	c.sendWin = 1 << 20
	st := srv.getStream()
	st.open(c, 1, false)
	st.sendWin = 1 << 20
	c.streams[1] = st
	return st, c, rec
}

// The engine's response reaches the stream in writes of any size: the
// heads (an interim one, then the final one) come out whole and in order
// wherever the writes split them, connection-specific fields dropped, the
// body after them byte for byte, and the stream ends with it.
func TestH2StreamWriteSplitsAnywhere(t *testing.T) {
	resp := []byte("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nconnection: keep-alive\r\nKeep-Alive: timeout=5\r\n" +
		"x-served-by: a\r\nX-Served-By: b\r\nSet-Cookie: a=1\r\nContent-Length: 11\r\n\r\nhello world")
	for cut1 := 1; cut1 < len(resp); cut1++ {
		for _, cut2 := range []int{cut1, min(cut1+1, len(resp)), min(cut1+60, len(resp))} {
			st, c, rec := newTestStream()
			for _, part := range [][]byte{resp[:cut1], resp[cut1:cut2], resp[cut2:]} {
				if n, err := st.Write(part); err != nil || n != len(part) {
					t.Fatalf("cuts %d,%d: Write(%q) = %d, %v", cut1, cut2, part, n, err)
				}
			}
			c.w.Close()
			f := readSent(t, rec.buf.Bytes())
			if !slices.Equal(f.statuses, []int{103, 200}) {
				t.Fatalf("cuts %d,%d: heads %v", cut1, cut2, f.statuses)
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
			if f.body.String() != "hello world" || !f.ended || !st.done() {
				t.Fatalf("cuts %d,%d: body %q ended %v done %v", cut1, cut2, f.body.String(), f.ended, st.done())
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
