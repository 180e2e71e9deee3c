package proxy_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/pingora-go/pingora/proxy"
)

// TestH2ConnectionBegunDuringDrainGetsGoAway: a connection the proxy
// accepted before a drain but that becomes HTTP/2 only after it (its TLS
// handshake, or its h2c preface, came late) missed the GOAWAY the drain
// sent to the HTTP/2 connections there were. It is told on its next
// response instead, as an HTTP/1.1 connection is with Connection: close:
// the client moves on, and the drain ends without cutting anything. (Once,
// such a connection kept taking requests until the drain deadline cut
// them.)
func TestH2ConnectionBegunDuringDrainGetsGoAway(t *testing.T) {
	be := startBackend(t, "b1")
	for _, tc := range []struct {
		name  string
		start func(c net.Conn) net.Conn
	}{
		{"h2c", func(c net.Conn) net.Conn { return c }},
		{"h2", func(c net.Conn) net.Conn {
			tc := tls.Client(c, &tls.Config{ServerName: "a.example", InsecureSkipVerify: true, NextProtos: []string{"h2"}})
			if err := tc.Handshake(); err != nil {
				t.Fatalf("TLS handshake: %v", err)
			}
			if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
				t.Fatalf("ALPN chose %q, want h2", p)
			}
			return tc
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := h2Proxy(t, h2Setup{BE: be.Addr})
			raw, err := net.Dial("tcp", run.Addr(tc.name))
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			silent, err := net.Dial("tcp", run.Addr(tc.name))
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			proxy.WaitFor(t, 5*time.Second, "the connections accepted", func() bool { return run.P.Stats().ActiveConns == 2 })
			run.P.Drain(time.Now().Add(time.Minute))

			// One that becomes HTTP/2 and asks for nothing is sent GOAWAY
			// and closed soon after, not at keepalive_timeout (75 s).
			s := tc.start(silent)
			s.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(s, http2.ClientPreface)
			fr := http2.NewFramer(s, s)
			fr.WriteSettings()
			var goAwayFrame *http2.GoAwayFrame
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("a silent HTTP/2 connection begun during the drain is still open after 5s")
					}
					break
				}
				if g, ok := f.(*http2.GoAwayFrame); ok {
					goAwayFrame = g
				}
			}
			if goAwayFrame == nil || goAwayFrame.ErrCode != http2.ErrCodeNo {
				t.Fatalf("a silent HTTP/2 connection begun during the drain: GOAWAY %v, want NO_ERROR", goAwayFrame)
			}

			cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(tc.start(raw))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			// Requests one after the other until the GOAWAY has come: it
			// goes out with the first response, and a request that
			// crossed it is refused (the client would send it again on
			// a new connection).
			goAway := false
			for i := 0; i < 20 && !goAway; i++ {
				if !cc.CanTakeNewRequest() {
					goAway = true
					break
				}
				req, _ := http.NewRequest(http.MethodGet, "http://pingora.test/get", nil)
				resp, err := cc.RoundTrip(req)
				if err != nil {
					if !cc.CanTakeNewRequest() {
						goAway = true
						break
					}
					t.Fatalf("request %d on the connection: %v", i, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: status %d", i, resp.StatusCode)
				}
			}
			if !goAway {
				t.Fatal("20 requests answered on a connection of a draining proxy and no GOAWAY: the drain would cut it at its deadline")
			}
			cc.Close()
			if !run.Served(5 * time.Second) {
				t.Error("the drain did not end within 5s of the client leaving")
			}
		})
	}
}
