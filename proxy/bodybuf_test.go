package proxy

import (
	"strings"
	"testing"
	"time"
)

// TestBodyBufferOnlyWhileBuffering: a body too large for the connection's
// read buffer (but within client_body_buffer_size) takes a body buffer
// from the listener's pool while it arrives, reaches the backend whole,
// and the connection gives the buffer back before it waits, idle, for its
// next request.
func TestBodyBufferOnlyWhileBuffering(t *testing.T) {
	be := newBackend(t, nil)
	cfg := testConfig(be.addr())
	l := &cfg.Listeners[0]
	l.RequestBuffering, l.ClientBodyBufferSize, l.RequestTimeout = true, 64<<10, 10*time.Second
	r := Start(t, cfg, Options{})
	ls := r.P.listeners["public"]

	body := strings.Repeat("x", 20<<10) // more than the 16 KiB read buffer
	c := DialRaw(t, r.Addr("public"))
	c.Send("POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 20480\r\n\r\n" + body[:10<<10])
	WaitFor(t, 5*time.Second, "a body buffer taken", func() bool { return ls.bodyBufs.Load() == 1 })
	if n := len(be.requests()); n != 0 {
		t.Fatalf("backend saw %d requests before the body was complete", n)
	}
	c.Send(body[10<<10:])
	resp, got := c.MustRead("POST")
	if resp.StatusCode != 200 || got != "ok /up" {
		t.Fatalf("status %d %q, want 200 %q", resp.StatusCode, got, "ok /up")
	}
	if reqs := be.requests(); len(reqs) != 1 || reqs[0].Body != body {
		t.Fatalf("backend did not get the whole body once: %d requests", len(reqs))
	}
	// Idle between requests: the body buffer is back in the pool.
	WaitFor(t, 5*time.Second, "the body buffer back in the pool", func() bool { return ls.bodyBufs.Load() == 0 })
	if resp, got := c.Do(get("/next")); resp.StatusCode != 200 || got != "ok /next" {
		t.Fatalf("next request on the connection: status %d %q", resp.StatusCode, got)
	}
}
