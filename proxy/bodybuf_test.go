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
	r := start(t, cfg, Options{})
	ls := r.p.listeners["public"]

	body := strings.Repeat("x", 20<<10) // more than the 16 KiB read buffer
	c := dial(t, r.addr)
	c.send("POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 20480\r\n\r\n" + body[:10<<10])
	waitFor(t, func() bool { return ls.bodyBufs.Load() == 1 })
	if n := len(be.requests()); n != 0 {
		t.Fatalf("backend saw %d requests before the body was complete", n)
	}
	c.send(body[10<<10:])
	resp, got := c.read("POST")
	if resp.StatusCode != 200 || got != "ok /up" {
		t.Fatalf("status %d %q, want 200 %q", resp.StatusCode, got, "ok /up")
	}
	if reqs := be.requests(); len(reqs) != 1 || reqs[0].Body != body {
		t.Fatalf("backend did not get the whole body once: %d requests", len(reqs))
	}
	// Idle between requests: the body buffer is back in the pool.
	waitFor(t, func() bool { return ls.bodyBufs.Load() == 0 })
	if resp, got := c.do(get("/next")); resp.StatusCode != 200 || got != "ok /next" {
		t.Fatalf("next request on the connection: status %d %q", resp.StatusCode, got)
	}
}
