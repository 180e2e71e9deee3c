package main

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestLoadClientCountsDroppedRequests checks the instrument of the
// zero-loss test, so that its "0 failed" means something: against a server
// that closes idle keep-alive connections at once (the reload race nginx
// loses POSTs to), the load client must count failures on reused
// connections, for GETs and POSTs alike, and not retry them away; requests
// on new connections still succeed. Needs no root.
func TestLoadClientCountsDroppedRequests(t *testing.T) {
	be := startBackend(t, "flaky")
	// A second server with the backend's handler that drops a keep-alive
	// connection 1 ms after its last answer, without Connection: close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: be.srv.Handler, IdleTimeout: time.Millisecond}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	defer srv.Close()

	started := time.Now()
	rep := startLoad(loadSpec{
		Addr:         ln.Addr().String(),
		Backend:      be,
		KeepAlive:    4,
		Fresh:        2,
		Pause:        20 * time.Millisecond,
		MaxPerClient: 20,
		MaxDuration:  10 * time.Second,
	}).finish(started)
	t.Logf("load: %s", rep)
	if rep.Total != 6*20 {
		t.Errorf("%d requests, want %d: the bounds in count did not hold", rep.Total, 6*20)
	}
	failedOn := func(method string) int {
		n := 0
		for k, c := range rep.Failed {
			if len(k) > len(method) && k[:len(method)+1] == method+" " {
				n += c
			}
		}
		return n
	}
	if failedOn("GET") == 0 || failedOn("POST") == 0 {
		t.Errorf("the server dropped idle keep-alive connections, yet failures counted: GET %d, POST %d; want both > 0",
			failedOn("GET"), failedOn("POST"))
	}
	if n := rep.OK["GET new-conn new conn"] + rep.OK["POST new-conn new conn"]; n != 2*20 {
		t.Errorf("%d requests of the new-conn clients succeeded, want all %d: %v", n, 2*20, rep.OK)
	}
}

// TestLoadClientCountsLostH2Streams checks the HTTP/2 clients the same
// way: against an h2c server that resets some streams it took and closes
// the connection under others, the failures are counted, GETs and POSTs
// alike, and not replayed away by the Transport (which replays only what a
// GOAWAY refused); the client then goes on on a new connection.
func TestLoadClientCountsLostH2Streams(t *testing.T) {
	be := startBackend(t, "flaky-h2")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var n atomic.Int64
	srv := &http2.Server{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c, &http2.ServeConnOpts{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch n.Add(1) % 10 {
				case 3:
					panic(http.ErrAbortHandler) // RST_STREAM of a stream it took
				case 7:
					c.Close() // the connection, under this stream and any other
					return
				}
				be.srv.Handler.ServeHTTP(w, r)
			})})
		}
	}()

	started := time.Now()
	rep := startLoad(loadSpec{
		Backend:      be,
		H2CAddr:      ln.Addr().String(),
		H2Conns:      1,
		H2Streams:    2,
		Pause:        5 * time.Millisecond,
		MaxPerClient: 30,
		MaxDuration:  10 * time.Second,
	}).finish(started)
	t.Logf("load: %s", rep)
	if rep.Total != 2*30 {
		t.Errorf("%d requests, want %d", rep.Total, 2*30)
	}
	reset, lost := 0, 0
	for k, c := range rep.Failed {
		switch {
		case strings.Contains(k, "INTERNAL_ERROR"):
			reset += c
		default:
			lost += c
		}
	}
	// Every tenth stream the server takes is reset, and every tenth cut
	// with its connection (which a concurrent request may die with before
	// the server sees it): of 60 requests, some of each, whatever the
	// interleaving.
	if reset < 3 || lost < 3 {
		t.Errorf("reset streams counted %d, lost with the connection %d; want at least 3 each", reset, lost)
	}
	if rep.H2.DialsH2C < 4 {
		t.Errorf("%d connections opened, want one more after each close at least", rep.H2.DialsH2C)
	}
	if rep.OKTotal() == 0 {
		t.Error("no request succeeded")
	}
}
