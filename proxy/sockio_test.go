package proxy

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// acceptOne accepts one loopback connection through the raw acceptor, as
// the proxy does, and returns it with the client's end.
func acceptOne(t *testing.T) (*fileConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ra := newRawAcceptor(ln)
	if ra == nil {
		t.Fatal("no raw acceptor for a TCP listener")
	}
	defer ra.close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c, err := ra.accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fc := c.(*fileConn)
	want := netip.MustParseAddrPort(cl.LocalAddr().String())
	if fc.remoteAddrPort() != want || fc.RemoteAddr().String() != want.String() {
		t.Fatalf("remote %v / %v, want %v", fc.remoteAddrPort(), fc.RemoteAddr(), want)
	}
	return fc, cl
}

func noDelayOn(t *testing.T, c *fileConn) bool {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v := -1
	raw.Control(func(fd uintptr) {
		v, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	})
	if err != nil {
		t.Fatal(err)
	}
	return v != 0
}

// TCP_NODELAY is set before an accepted socket's second send (never
// later), so that Nagle's algorithm cannot hold back a small segment
// while an earlier one is unacknowledged.
func TestNoDelayBeforeSecondSend(t *testing.T) {
	fc, cl := acceptOne(t)
	s := newSockIO(fc)
	if noDelayOn(t, fc) {
		t.Fatal("TCP_NODELAY set before any send")
	}
	if _, err := s.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if noDelayOn(t, fc) {
		t.Fatal("TCP_NODELAY set after the first send: the setsockopt is paid by every one-response connection")
	}
	if _, err := s.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if !noDelayOn(t, fc) {
		t.Fatal("TCP_NODELAY not set for the second send")
	}
	buf := make([]byte, 2)
	cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(cl, buf); err != nil || string(buf) != "ab" {
		t.Fatalf("client read %q, %v", buf, err)
	}
}

// A tunnel writes to the client socket directly: it sets TCP_NODELAY
// first.
func TestNoDelayForTunnel(t *testing.T) {
	fc, _ := acceptOne(t)
	s := newSockIO(fc)
	s.noDelay()
	if !noDelayOn(t, fc) {
		t.Fatal("noDelay did not set TCP_NODELAY")
	}
}

// flushLast delivers all the data and then the end of the stream, before
// the socket is closed.
func TestFlushLastSendsFIN(t *testing.T) {
	fc, cl := acceptOne(t)
	s := newSockIO(fc)
	bw := bufio.NewWriterSize(s, 16)
	if _, err := s.Write([]byte("first;")); err != nil { // a keep-alive response before
		t.Fatal(err)
	}
	body := "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nlast response, longer than the buffer"
	bw.WriteString(body)
	if err := s.flushLast(bw); err != nil {
		t.Fatal(err)
	}
	if s.finNext {
		t.Fatal("finNext left set after flushLast")
	}
	// The server side is still open: EOF comes from the FIN sent with the
	// data, not from a close.
	cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(cl)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if string(got) != "first;"+body {
		t.Fatalf("client got %q", got)
	}
}
