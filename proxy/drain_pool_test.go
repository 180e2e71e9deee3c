package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestDrainClosesPooledUpstreamConns: a draining proxy lets go of its idle
// upstream keep-alive connections at once. Otherwise the upstream (another
// listener of this same daemon, in the embedded default) keeps waiting on
// them as idle keep-alive clients and the drain lasts until its deadline.
func TestDrainClosesPooledUpstreamConns(t *testing.T) {
	var open atomic.Int64
	// ConnState is set before the server starts: setting it on a running
	// server races with its accept loop.
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	be.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	be.Start()
	t.Cleanup(be.Close)
	r := start(t, testConfig(strings.TrimPrefix(be.URL, "http://")), Options{})

	c := dial(t, r.addr)
	if resp, _ := c.do(get("/")); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if open.Load() != 1 {
		t.Fatalf("backend sees %d connections, want the 1 pooled", open.Load())
	}
	// The client stays connected (idle keep-alive), so the drain goes on;
	// the pooled upstream connection must not wait for it.
	r.p.Drain(time.Now().Add(time.Minute))
	waitFor(t, func() bool { return open.Load() == 0 })
	select {
	case <-r.done:
		t.Fatal("Serve returned with a client connection still open")
	default:
	}
	c.c.Close()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return once nothing was left")
	}
}
