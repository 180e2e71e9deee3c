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
	r := Start(t, testConfig(strings.TrimPrefix(be.URL, "http://")), Options{})

	c := DialRaw(t, r.Addr("public"))
	if resp, _ := c.Do(get("/")); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if open.Load() != 1 {
		t.Fatalf("backend sees %d connections, want the 1 pooled", open.Load())
	}
	// The client stays connected (idle keep-alive), so the drain goes on;
	// the pooled upstream connection must not wait for it.
	r.P.Drain(time.Now().Add(time.Minute))
	WaitFor(t, 5*time.Second, "the pooled upstream connection closed", func() bool { return open.Load() == 0 })
	if r.Served(0) {
		t.Fatal("Serve returned with a client connection still open")
	}
	c.Conn.Close()
	if !r.Served(5 * time.Second) {
		t.Fatal("Serve did not return once nothing was left")
	}
}
