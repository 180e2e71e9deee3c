package main

import (
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
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
