package proxy

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// TestDrain: in-flight requests finish and get Connection: close; an idle
// keep-alive connection is not cut at once (a request on it is still
// served, with Connection: close); no new connection is accepted; Serve
// returns when nothing is left.
func TestDrain(t *testing.T) {
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.Write([]byte("done"))
	})
	r := start(t, testConfig(be.addr()), Options{})

	idle := dial(t, r.addr)
	if resp, _ := idle.do(get("/")); resp.Close {
		t.Fatal("closed before draining")
	}
	busy := dial(t, r.addr)
	busy.send(get("/slow"))
	waitFor(t, func() bool { return r.p.Stats().InFlight == 1 })

	r.p.Drain(time.Now().Add(10 * time.Second))
	if c, err := net.DialTimeout("tcp", r.addr, time.Second); err == nil {
		c.Close()
		t.Error("new connection accepted while draining")
	}
	// The idle connection still works, once.
	resp, body := idle.do(get("/"))
	if resp.StatusCode != 200 || body != "done" || !resp.Close || !idle.closed() {
		t.Fatalf("idle conn during drain: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	select {
	case <-r.done:
		t.Fatal("Serve returned with a request in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	resp, body = busy.read("GET")
	if body != "done" || !resp.Close || !busy.closed() {
		t.Fatalf("in-flight: %q close=%v", body, resp.Close)
	}
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatal(r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the last connection")
	}
}

// waitFor polls cond for up to 5s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
