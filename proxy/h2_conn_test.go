package proxy

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2TestClient opens an h2c connection to a running proxy and reads the
// server's SETTINGS.
type h2TestClient struct {
	t   *testing.T
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	blk bytes.Buffer
}

func dialH2Client(t *testing.T, addr string) (*h2TestClient, *http2.SettingsFrame) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	hc := &h2TestClient{t: t, c: c, fr: http2.NewFramer(c, c)}
	hc.enc = hpack.NewEncoder(&hc.blk)
	io.WriteString(c, http2.ClientPreface)
	hc.fr.WriteSettings()
	f, err := hc.fr.ReadFrame()
	if err != nil {
		t.Fatalf("server SETTINGS: %v", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	return hc, sf
}

func (hc *h2TestClient) request(id uint32, endStream bool, fields ...string) {
	hc.blk.Reset()
	for i := 0; i < len(fields); i += 2 {
		hc.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hc.blk.Bytes(), EndStream: endStream, EndHeaders: true}); err != nil {
		hc.t.Fatal(err)
	}
}

// until reads frames until match says so; a GOAWAY fails the test.
func (hc *h2TestClient) until(what string, match func(http2.Frame) bool) {
	hc.t.Helper()
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			hc.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			hc.t.Fatalf("waiting for %s: GOAWAY %v %q", what, ga.ErrCode, ga.DebugData())
		}
		if match(f) {
			return
		}
	}
}

// A SETTINGS frame that repeats a setting is taken, its last value
// winning (RFC 9113 6.5.3); a request with a connection-specific field is
// reset with PROTOCOL_ERROR (8.2.2) and never reaches the backend, DATA
// the client sent after it costs nothing more than a STREAM_CLOSED reset;
// malformed trailers reset their stream; and the connection serves on.
func TestH2MalformedStreamsAreReset(t *testing.T) {
	be := newBackend(t, nil)
	cfg := testConfig(be.addr())
	cfg.Listeners[0].H2C = true
	run := Start(t, cfg, Options{})
	hc, _ := dialH2Client(t, run.Addr("public"))

	ack := func() {
		hc.until("a SETTINGS ACK", func(f http2.Frame) bool {
			sf, ok := f.(*http2.SettingsFrame)
			return ok && sf.IsAck()
		})
	}
	ack() // of dialH2Client's SETTINGS
	hc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 16})
	ack()

	post := []string{":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/bad"}
	hc.request(1, false, append(post, "connection", "keep-alive")...)
	hc.fr.WriteData(1, true, []byte("smuggled?"))
	hc.until("RST_STREAM on stream 1", func(f http2.Frame) bool {
		rst, ok := f.(*http2.RSTStreamFrame)
		if ok && rst.StreamID == 1 && rst.ErrCode != http2.ErrCodeProtocol {
			t.Fatalf("stream 1 reset with %v, want PROTOCOL_ERROR", rst.ErrCode)
		}
		if h, ok := f.(*http2.HeadersFrame); ok && h.StreamID == 1 {
			t.Fatal("stream 1 got a response")
		}
		return ok && rst.StreamID == 1
	})

	hc.request(3, false, ":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/trailers")
	hc.fr.WriteData(3, false, []byte("body"))
	hc.blk.Reset()
	hc.enc.WriteField(hpack.HeaderField{Name: "transfer-encoding", Value: "chunked"})
	hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hc.blk.Bytes(), EndStream: true, EndHeaders: true})
	hc.until("RST_STREAM on stream 3", func(f http2.Frame) bool {
		rst, ok := f.(*http2.RSTStreamFrame)
		if ok && rst.StreamID == 3 && rst.ErrCode != http2.ErrCodeProtocol {
			t.Fatalf("stream 3 reset with %v, want PROTOCOL_ERROR", rst.ErrCode)
		}
		return ok && rst.StreamID == 3
	})

	hc.request(5, true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/good", "te", "trailers")
	hc.until("the response on stream 5", func(f http2.Frame) bool {
		d, ok := f.(*http2.DataFrame)
		return ok && d.StreamID == 5 && d.StreamEnded()
	})
	for _, r := range be.requests() {
		if r.URI == "/bad" {
			t.Errorf("the malformed request reached the backend: %+v", r)
		}
	}
}

// Clients that send a request and hang up at once: a stream's handler may
// still run after its connection ended, and must then leave the
// connection's state, by now another connection's, alone (go test -race).
func TestH2HandlersAfterTheConnectionEnds(t *testing.T) {
	be := newBackend(t, nil)
	cfg := testConfig(be.addr())
	cfg.Listeners[0].H2C = true
	run := Start(t, cfg, Options{})
	var out, blk bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	fr.WriteSettings()
	enc := hpack.NewEncoder(&blk)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk.Bytes(), EndStream: true, EndHeaders: true})
	hello := out.Bytes()
	for range 200 {
		c, err := net.Dial("tcp", run.Addr("public"))
		if err != nil {
			t.Fatal(err)
		}
		c.Write(hello)
		c.Close()
	}
	// Every connection ends, and the proxy serves on.
	WaitFor(t, 10*time.Second, "the connections to end", func() bool { return run.P.stats.active.Load() == 0 })
	hc, _ := dialH2Client(t, run.Addr("public"))
	hc.request(1, true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/after")
	hc.until("the response", func(f http2.Frame) bool {
		d, ok := f.(*http2.DataFrame)
		return ok && d.StreamEnded()
	})
}

// The server's SETTINGS say what it enforces: the header list
// max_header_size allows (and 32 bytes for each of ten fields, which
// HTTP/2 counts on top of names and values), the RFC's frame size, and
// the stream window it grants.
func TestH2AdvertisedSettings(t *testing.T) {
	for _, size := range []int{16 << 10, 1 << 10} {
		cfg := testConfig("127.0.0.1:1")
		cfg.Listeners[0].H2C = true
		cfg.Listeners[0].MaxHeaderSize = size
		run := Start(t, cfg, Options{})
		_, sf := dialH2Client(t, run.Addr("public"))
		for id, want := range map[http2.SettingID]uint32{
			http2.SettingMaxHeaderListSize:    uint32(size + 10*32),
			http2.SettingMaxFrameSize:         1 << 14,
			http2.SettingInitialWindowSize:    h2StreamWindow,
			http2.SettingMaxConcurrentStreams: uint32(cfg.Listeners[0].MaxConcurrentStreams),
		} {
			if got, ok := sf.Value(id); !ok || got != want {
				t.Errorf("max_header_size %d: %v is %d (sent: %v), want %d", size, id, got, ok, want)
			}
		}
	}
}
