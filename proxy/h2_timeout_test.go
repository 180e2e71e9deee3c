package proxy

import (
	"bufio"
	"bytes"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A client that grants a stream no flow-control window cannot hold it:
// send_timeout after the response head the stream is reset, and the
// connection serves the next stream.
func TestH2SendTimeoutResetsStalledStream(t *testing.T) {
	body := string(bytes.Repeat([]byte("x"), 100))
	addr := rawHTTPBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"+body)
	cfg := testConfig(addr)
	cfg.Listeners[0].H2C = true
	cfg.Listeners[0].SendTimeout = 300 * time.Millisecond
	r := Start(t, cfg, Options{})
	c, err := net.Dial("tcp", r.Addr("public"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	bw := bufio.NewWriter(c)
	fr := http2.NewFramer(bw, bufio.NewReader(c))
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "127.0.0.1"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	bw.WriteString(http2.ClientPreface)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
	bw.Flush()
	start := time.Now()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("before the reset: %v", err)
		}
		if f, ok := f.(*http2.SettingsFrame); ok && !f.IsAck() {
			fr.WriteSettingsAck()
			bw.Flush()
		}
		if _, ok := f.(*http2.DataFrame); ok {
			t.Fatal("DATA sent without a window")
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			if rst.StreamID != 1 {
				t.Fatalf("reset of stream %d", rst.StreamID)
			}
			break
		}
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("reset after %v, before send_timeout", d)
	}
	// The connection goes on: a stream with a window is answered whole.
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
	bw.Flush()
	got := 0
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("second stream: %v", err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 3 {
			got += len(d.Data())
			if d.StreamEnded() {
				break
			}
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == 3 {
			t.Fatalf("second stream reset: %v", rst.ErrCode)
		}
	}
	if got != 100 {
		t.Fatalf("second stream: %d bytes of body, want 100", got)
	}
}
