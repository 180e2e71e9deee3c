package proxy_test

// WebSocket through the proxy. The backend and the client speak a minimal
// RFC 6455 (handshake with Sec-WebSocket-Accept, framing with masking and the
// 16- and 64-bit lengths) written here with the standard library, so the test
// proves the proxy tunnels a real upgrade both ways, not just bytes.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

const (
	wsText   = 0x1
	wsBinary = 0x2
	wsClose  = 0x8
)

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsWriteFrame writes one final frame; clients must mask, servers must not.
func wsWriteFrame(w io.Writer, opcode byte, payload []byte, mask bool) error {
	var hdr []byte
	hdr = append(hdr, 0x80|opcode)
	var mbit byte
	if mask {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, mbit|byte(n))
	case n <= 0xFFFF:
		hdr = append(hdr, mbit|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, mbit|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	data := payload
	if mask {
		var key [4]byte
		rand.Read(key[:])
		hdr = append(hdr, key[:]...)
		data = make([]byte, len(payload))
		for i := range payload {
			data[i] = payload[i] ^ key[i%4]
		}
	}
	if _, err := w.Write(append(hdr, data...)); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// wsReadFrame reads one frame and unmasks it; masked tells whether it was.
func wsReadFrame(r io.Reader) (opcode byte, payload []byte, masked bool, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, nil, false, fmt.Errorf("read frame header: %w", err)
	}
	opcode = h[0] & 0x0F
	masked = h[1]&0x80 != 0
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return 0, nil, false, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return 0, nil, false, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<24 {
		return 0, nil, false, fmt.Errorf("frame of %d bytes: too large for this test", n)
	}
	var key [4]byte
	if masked {
		if _, err = io.ReadFull(r, key[:]); err != nil {
			return 0, nil, false, err
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return 0, nil, false, fmt.Errorf("read frame payload: %w", err)
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return opcode, payload, masked, nil
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serveWebSocketEcho is the backend side: handshake, a greeting pushed
// unprompted (server-to-client without a client frame first), then echo every
// frame until a close frame, which it answers. Unmasked client frames are a
// protocol error (RFC 6455 5.1): the proxy must pass frames through untouched.
func serveWebSocketEcho(w http.ResponseWriter, r *http.Request, name string) {
	c, rw := wsUpgrade(w, r)
	if c == nil {
		return
	}
	defer c.Close()
	wsWriteFrame(rw, wsText, []byte("hello from "+name), false)
	if rw.Flush() != nil {
		return
	}
	for {
		op, p, masked, err := wsReadFrame(rw)
		if err != nil {
			return
		}
		if !masked {
			wsWriteFrame(rw, wsClose, []byte{0x03, 0xEA}, false) // 1002 protocol error
			rw.Flush()
			return
		}
		if wsWriteFrame(rw, op, p, false) != nil || rw.Flush() != nil {
			return
		}
		if op == wsClose {
			return
		}
	}
}

// wsUpgrade checks a WebSocket handshake, takes the connection over and
// sends the 101 (buffered in rw). On a bad handshake it answers 400 and
// returns nil.
func wsUpgrade(w http.ResponseWriter, r *http.Request) (net.Conn, *bufio.ReadWriter) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") ||
		r.Header.Get("Sec-WebSocket-Version") != "13" || key == "" {
		http.Error(w, fmt.Sprintf("not a websocket handshake: %v", r.Header), http.StatusBadRequest)
		return nil, nil
	}
	c, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(key))
	return c, rw
}

// serveWebSocketPush is a backend that only talks: after the handshake it
// pushes n text frames ("push 1"...), one every interval, then falls
// silent without closing, and reads (never expecting a frame) until the
// connection goes away.
func serveWebSocketPush(w http.ResponseWriter, r *http.Request, n int, interval time.Duration) {
	c, rw := wsUpgrade(w, r)
	if c == nil {
		return
	}
	defer c.Close()
	if rw.Flush() != nil {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 1; i <= n; i++ {
		<-tick.C
		if wsWriteFrame(rw, wsText, []byte(fmt.Sprintf("push %d", i)), false) != nil || rw.Flush() != nil {
			return
		}
	}
	io.Copy(io.Discard, rw)
}

// wsDial upgrades a raw connection to the proxy to a WebSocket on path;
// frames that came with the 101 are left buffered in the returned conn.
func wsDial(t *testing.T, addr, path string) *proxy.RawConn {
	t.Helper()
	rc := proxy.DialRaw(t, addr)
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	rc.Send("GET " + path + " HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n")
	rc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(rc.BR, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("read handshake response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		t.Fatalf("handshake status %d, want 101; body %q", resp.StatusCode, b)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsAccept(key) {
		t.Errorf("Sec-WebSocket-Accept %q, want %q", got, wsAccept(key))
	}
	if !headerHasToken(resp.Header, "Upgrade", "websocket") || !headerHasToken(resp.Header, "Connection", "upgrade") {
		t.Errorf("101 lacks Upgrade: websocket / Connection: Upgrade: %v", resp.Header)
	}
	return rc
}

// TestE2EWebSocketEcho upgrades a connection through the proxy and exchanges
// frames both ways: the server's unprompted greeting, a small text frame, a
// 70 KB binary frame (64-bit length) and the closing handshake.
func TestE2EWebSocketEcho(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "ws")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})

	rc := wsDial(t, rp.Addr("pub"), "/ws")
	br := rc.BR // bytes that came with the 101 are buffered there
	op, p, masked, err := wsReadFrame(br)
	if err != nil || op != wsText || string(p) != "hello from ws" || masked {
		t.Fatalf("greeting: op %d payload %q masked %v err %v; want text %q unmasked", op, p, masked, err, "hello from ws")
	}

	big := make([]byte, 70000)
	rand.Read(big)
	for _, f := range []struct {
		op byte
		p  []byte
	}{{wsText, []byte("ping through the proxy")}, {wsBinary, big}} {
		if err := wsWriteFrame(rc.Conn, f.op, f.p, true); err != nil {
			t.Fatal(err)
		}
		op, p, _, err := wsReadFrame(br)
		if err != nil {
			t.Fatalf("echo of %d-byte frame: %v", len(f.p), err)
		}
		if op != f.op || !bytes.Equal(p, f.p) {
			t.Fatalf("echo: op %d len %d, want op %d len %d (equal=%v)", op, len(p), f.op, len(f.p), bytes.Equal(p, f.p))
		}
	}

	if err := wsWriteFrame(rc.Conn, wsClose, []byte{0x03, 0xE8}, true); err != nil {
		t.Fatal(err)
	}
	op, p, _, err = wsReadFrame(br)
	if err != nil || op != wsClose || !bytes.Equal(p, []byte{0x03, 0xE8}) {
		t.Fatalf("close echo: op %d payload %v err %v", op, p, err)
	}
	// The backend closed its side: the proxy must close the tunnel too.
	if closed, extra := rc.ClosedWithin(5 * time.Second); !closed {
		t.Errorf("tunnel not closed within 5s after the backend closed; extra bytes %q", extra)
	}
}

// TestE2EWebSocketTunnelTimeout: a tunnel is idle only when no byte moves
// either way. A backend that pushes a frame every 100 ms to a client that
// never speaks keeps the tunnel open well past tunnel_timeout (400 ms);
// once the backend falls silent too, the proxy closes the tunnel about
// tunnel_timeout after the last frame, although neither side closed.
func TestE2EWebSocketTunnelTimeout(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "ws")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  tunnel_timeout = "400ms"
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})

	const pushes = 12 // 1.2 s of traffic one way: three times the timeout
	rc := wsDial(t, rp.Addr("pub"), fmt.Sprintf("/ws-push?n=%d&every=100ms", pushes))
	rc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 1; i <= pushes; i++ {
		op, p, _, err := wsReadFrame(rc.BR)
		if err != nil {
			t.Fatalf("push %d of %d: %v (the tunnel was closed while the backend was still sending)", i, pushes, err)
		}
		if want := fmt.Sprintf("push %d", i); op != wsText || string(p) != want {
			t.Fatalf("frame %d: op %d %q, want text %q", i, op, p, want)
		}
	}
	lastFrame := time.Now()
	closed, extra := rc.ClosedWithin(5 * time.Second)
	if !closed {
		t.Fatalf("tunnel idle both ways still open 5s after the last frame (tunnel_timeout 400ms); extra bytes %q", extra)
	}
	if d := time.Since(lastFrame); d < 350*time.Millisecond {
		t.Errorf("idle tunnel closed %v after the last frame, before tunnel_timeout", d)
	}
	if extra != "" {
		t.Errorf("idle tunnel got unexpected bytes %q", extra)
	}
}
