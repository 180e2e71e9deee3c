package proxy

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzH2Conn: whatever a client sends after the HTTP/2 preface, the
// connection's reader never panics (it runs on a goroutine of the worker,
// where a panic ends the worker), and the connection ends.
// Each input is one h2c connection to a running proxy; `go test -fuzz
// FuzzH2Conn ./proxy` explores.
func FuzzH2Conn(f *testing.F) {
	seed := func(write func(fr *http2.Framer, enc *hpack.Encoder, blk *bytes.Buffer)) {
		var out, blk bytes.Buffer
		write(http2.NewFramer(&out, nil), hpack.NewEncoder(&blk), &blk)
		f.Add(out.Bytes())
	}
	block := func(enc *hpack.Encoder, blk *bytes.Buffer, fields ...string) []byte {
		blk.Reset()
		for i := 0; i < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return bytes.Clone(blk.Bytes())
	}
	get := []string{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/"}
	post := []string{":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/echo", "content-length", "4"}
	seed(func(fr *http2.Framer, enc *hpack.Encoder, blk *bytes.Buffer) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(enc, blk, get...), EndStream: true, EndHeaders: true})
	})
	seed(func(fr *http2.Framer, enc *hpack.Encoder, blk *bytes.Buffer) {
		fr.WriteSettings()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(enc, blk, post...), EndHeaders: true, PadLength: 3,
			Priority: http2.PriorityParam{StreamDep: 1, Weight: 9}})
		fr.WriteData(1, false, []byte("bo"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(enc, blk, "te", "gzip"), EndStream: true, EndHeaders: true})
		fr.WriteRSTStream(3, http2.ErrCodeCancel)
	})
	seed(func(fr *http2.Framer, enc *hpack.Encoder, blk *bytes.Buffer) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14})
		b := block(enc, blk, append(get, "x-long", strings.Repeat("y", 300))...)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b[:10]})
		fr.WriteContinuation(3, false, b[10:20])
		fr.WriteContinuation(3, true, b[20:])
		fr.WriteWindowUpdate(3, 0)
		fr.WriteWindowUpdate(0, 1<<31-1)
		fr.WritePing(false, [8]byte{1})
		fr.WritePriority(5, http2.PriorityParam{StreamDep: 5})
		fr.WriteData(7, true, []byte("idle"))
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	be := newBackend(f, nil)
	cfg := testConfig(be.addr())
	cfg.Listeners[0].H2C = true
	cfg.Listeners[0].KeepaliveTimeout = time.Second
	run := Start(f, cfg, Options{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", run.Addr("public"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write(append([]byte(http2.ClientPreface), data...))
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c) // until the server is done with it
	})
}
