package proxy_test

import (
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/pingora-go/pingora/proxy"
)

// An idle HTTP/2 connection parks as an HTTP/1.1 one does (no goroutine),
// and comes back with its state (the HPACK table the client's requests
// refer to) when the next request comes; a drain sends a parked one
// GOAWAY and it closes; while parked its keep-alive time runs on.
func TestE2EH2ConnectionParksAndResumes(t *testing.T) {
	be := startRecBackend(t)
	for _, mode := range h2Modes {
		t.Run(mode, func(t *testing.T) {
			rp := h2Proxy(t, h2Setup{BE: be.Addr, Listener: `keepalive_timeout = "1500ms"`})
			parked := func(what string) {
				t.Helper()
				proxy.WaitFor(t, 5*time.Second, what, func() bool { return rp.P.Stats().ParkedConns == 1 })
			}
			get := func(h *h2Raw, id uint32, path string) {
				t.Helper()
				h.headers(id, true, reqFields("GET", path, "x-same", "indexed by the client")...)
				if o := h.await(id, 5*time.Second); !o.Ended || o.Status != 200 {
					t.Fatalf("GET %s on stream %d: %v", path, id, o)
				}
			}
			h := dialH2Raw(t, rp, mode, 0)
			get(h, 1, "/first")
			parked("the connection parked")
			get(h, 3, "/after-parking")
			parked("the connection parked again")

			// Its keep-alive time runs on while parked; at its end it is
			// sent GOAWAY, then closed.
			idleFrom := time.Now()
			if !h.closedWithin(5 * time.Second) {
				t.Fatal("a parked connection outlived keepalive_timeout")
			}
			if idle := time.Since(idleFrom); idle < time.Second {
				t.Fatalf("closed after %v idle, before keepalive_timeout", idle)
			}
			if h.goAway == nil || h.goAway.ErrCode != http2.ErrCodeNo || h.goAway.LastStreamID != 3 {
				t.Fatalf("closed at keepalive_timeout with GOAWAY %v, want NO_ERROR with last stream 3", h.goAway)
			}
			h.goAway = nil
			proxy.WaitFor(t, 5*time.Second, "no connection left", func() bool {
				s := rp.P.Stats()
				return s.ActiveConns == 0 && s.ParkedConns == 0
			})

			// A drain sends a parked connection GOAWAY.
			h = dialH2Raw(t, rp, mode, 0)
			get(h, 1, "/before-drain")
			parked("the second connection parked")
			rp.P.Drain(time.Now().Add(10 * time.Second))
			if !h.closedWithin(5*time.Second) || h.goAway == nil || h.goAway.LastStreamID != 1 {
				t.Fatalf("a parked connection at a drain: GOAWAY %v, want one with last stream 1, then the close", h.goAway)
			}
		})
	}
}
