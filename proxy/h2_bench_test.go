package proxy

import (
	"bufio"
	"bytes"
	"net"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 streams through the proxy over loopback (h2c), client -> proxy ->
// backend and back, as BenchmarkProxyKeepAlive does for HTTP/1.1. The
// client is a bare framer with a header block encoded once, so that what
// the benchmark counts is mostly the proxy's (and x/net's) work.

// h2BenchClient is one HTTP/2 connection sending the same GET.
type h2BenchClient struct {
	c     net.Conn
	bw    *bufio.Writer
	fr    *http2.Framer
	block []byte // the request's header block
	next  uint32 // the next stream id
	got   uint32 // DATA bytes taken since the last WINDOW_UPDATE
}

func newH2BenchClient(b *testing.B, addr string) *h2BenchClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	bw := bufio.NewWriterSize(c, 16<<10)
	fr := http2.NewFramer(bw, bufio.NewReaderSize(c, 16<<10))
	fr.SetReuseFrames()
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "127.0.0.1"},
		{":path", "/"}, {"user-agent", "bench"}, {"accept", "*/*"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	bw.WriteString(http2.ClientPreface)
	// A stream window that never runs out; the connection's is topped up
	// as data arrives.
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	fr.WriteWindowUpdate(0, 1<<30)
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	return &h2BenchClient{c: c, bw: bw, fr: fr, block: block.Bytes(), next: 1}
}

// round sends n requests at once, then reads until all n have ended.
func (hc *h2BenchClient) round(b *testing.B, n int) {
	for range n {
		hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hc.next, BlockFragment: hc.block, EndStream: true, EndHeaders: true})
		hc.next += 2
	}
	if err := hc.bw.Flush(); err != nil {
		b.Fatal(err)
	}
	for ended := 0; ended < n; {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			hc.got += uint32(len(f.Data()))
			if f.StreamEnded() {
				ended++
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				ended++
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				hc.fr.WriteSettingsAck()
			}
		case *http2.RSTStreamFrame:
			b.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		case *http2.GoAwayFrame:
			b.Fatalf("GOAWAY: %v", f.ErrCode)
		}
	}
	if hc.got > 1<<20 {
		hc.fr.WriteWindowUpdate(0, hc.got)
		hc.got = 0
	}
}

func h2BenchProxy(b *testing.B) string {
	body := string(bytes.Repeat([]byte("x"), 100))
	addr := rawHTTPBackend(b, "HTTP/1.1 200 OK\r\nServer: raw\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"+body)
	cfg := testConfig(addr)
	cfg.Listeners[0].H2C = true
	cfg.Routes[0].ResponseHeaders = map[string]string{"X-Served-By": "pingora"}
	return Start(b, cfg, Options{}).Addr("public")
}

// BenchmarkH2Serial is one stream at a time on one connection.
func BenchmarkH2Serial(b *testing.B) {
	hc := newH2BenchClient(b, h2BenchProxy(b))
	hc.round(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		hc.round(b, 1)
	}
}

// BenchmarkH2Concurrent is 10 streams at a time on one connection (h2load
// -m10); one op is one stream.
func BenchmarkH2Concurrent(b *testing.B) {
	hc := newH2BenchClient(b, h2BenchProxy(b))
	hc.round(b, 10)
	b.ReportAllocs()
	for i := 0; i < b.N; i += 10 {
		hc.round(b, min(10, b.N-i))
	}
}
