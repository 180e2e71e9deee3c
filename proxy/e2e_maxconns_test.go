package proxy_test

import (
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// TestE2EMaxConnections: with max_connections = 2 and two idle keep-alive
// connections open, a third connection is not served (it waits in the
// accept queue) until one of the two closes; then it is.
func TestE2EMaxConnections(t *testing.T) {
	t.Parallel()
	rp := startProxy(t, `
listener "pub" {
  address         = "127.0.0.1:1"
  max_connections = 2
}
route "hello" {
  respond { body = "hello" }
}
`, proxy.Options{})
	var first [2]*proxy.RawConn
	for i := range first {
		first[i] = proxy.DialRaw(t, rp.Addr("pub"))
		first[i].Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := first[i].MustRead("GET"); resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("connection %d: status %d %q", i, resp.StatusCode, body)
		}
	}
	// Both stay open, idle, kept alive.
	third := proxy.DialRaw(t, rp.Addr("pub")) // the kernel completes the handshake
	third.Send("GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
	third.Conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := third.BR.Peek(1); err == nil {
		t.Fatalf("a third connection was served (%q) while two were open with max_connections = 2", n)
	}
	first[0].Conn.Close()
	resp, body, err := third.Read("GET")
	if err != nil {
		t.Fatalf("third connection not served after one of the first two closed: %v", err)
	}
	if resp.StatusCode != 200 || body != "hello" {
		t.Errorf("third connection: status %d %q", resp.StatusCode, body)
	}
	// The second connection is still served: the cap refused nothing.
	first[1].Send("GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := first[1].MustRead("GET"); resp.StatusCode != 200 || body != "hello" {
		t.Errorf("second connection afterwards: status %d %q", resp.StatusCode, body)
	}
}
