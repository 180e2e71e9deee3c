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
	r := Start(t, testConfig(be.addr()), Options{})

	idle := DialRaw(t, r.Addr("public"))
	if resp, _ := idle.Do(get("/")); resp.Close {
		t.Fatal("closed before draining")
	}
	busy := DialRaw(t, r.Addr("public"))
	busy.Send(get("/slow"))
	WaitFor(t, 5*time.Second, "the slow request in flight", func() bool { return r.P.Stats().InFlight == 1 })

	r.P.Drain(time.Now().Add(10 * time.Second))
	if c, err := net.DialTimeout("tcp", r.Addr("public"), time.Second); err == nil {
		c.Close()
		t.Error("new connection accepted while draining")
	}
	// The idle connection still works, once.
	resp, body := idle.Do(get("/"))
	if resp.StatusCode != 200 || body != "done" || !resp.Close || !idle.Closed() {
		t.Fatalf("idle conn during drain: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	if r.Served(100 * time.Millisecond) {
		t.Fatal("Serve returned with a request in flight")
	}
	close(release)
	resp, body = busy.MustRead("GET")
	if body != "done" || !resp.Close || !busy.Closed() {
		t.Fatalf("in-flight: %q close=%v", body, resp.Close)
	}
	if !r.Served(5 * time.Second) {
		t.Fatal("Serve did not return after the last connection")
	}
	if err := r.ServeErr(); err != nil {
		t.Fatal(err)
	}
}
