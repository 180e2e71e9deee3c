package proxy

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// parkedProxy is a proxy with one backend whose listener keeps idle
// connections for keepalive.
func parkedProxy(t *testing.T, keepalive time.Duration) *Running {
	t.Helper()
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	cfg := testConfig(be.addr())
	cfg.Listeners[0].KeepaliveTimeout = keepalive
	return Start(t, cfg, Options{})
}

// openIdle opens n keep-alive connections that each had one request
// answered.
func openIdle(t *testing.T, addr string, n int) []*RawConn {
	t.Helper()
	conns := make([]*RawConn, n)
	for i := range conns {
		conns[i] = DialRaw(t, addr)
		resp, body := conns[i].Do(get("/first"))
		if resp.StatusCode != http.StatusOK || body != "ok" || resp.Close {
			t.Fatalf("connection %d: %d %q close=%v", i, resp.StatusCode, body, resp.Close)
		}
	}
	return conns
}

// Idle keep-alive connections park (no goroutine, no buffer) and each is
// served again when its next request comes, on the same connection.
func TestIdleConnectionsParkAndResume(t *testing.T) {
	r := parkedProxy(t, 30*time.Second)
	const n = 300
	conns := openIdle(t, r.Addr("public"), n)
	WaitFor(t, 5*time.Second, "every idle connection parked", func() bool { return r.P.Stats().ParkedConns == n })

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	t.Logf("%d parked: heap in use %d kB, stacks %d kB, goroutines %d", n, ms.HeapInuse>>10, ms.StackInuse>>10, runtime.NumGoroutine())

	for i, c := range conns {
		resp, body := c.Do(get("/again"))
		if resp.StatusCode != http.StatusOK || body != "ok" || resp.Close {
			t.Fatalf("connection %d after parking: %d %q close=%v", i, resp.StatusCode, body, resp.Close)
		}
	}
	if got := r.P.Stats().ActiveConns; got != n {
		t.Errorf("active connections %d, want %d", got, n)
	}
	// And they park again.
	WaitFor(t, 5*time.Second, "the connections parked again", func() bool { return r.P.Stats().ParkedConns == n })
}

// A parked connection is closed when its keep-alive time is over, not
// before, and is counted out.
func TestParkedConnectionKeepaliveTimeout(t *testing.T) {
	const keepalive = 800 * time.Millisecond
	r := parkedProxy(t, keepalive)
	c := openIdle(t, r.Addr("public"), 1)[0]
	idleFrom := time.Now()
	WaitFor(t, 5*time.Second, "the connection parked", func() bool { return r.P.Stats().ParkedConns == 1 })
	if closed, extra := c.ClosedWithin(5 * time.Second); !closed || extra != "" {
		t.Fatalf("parked connection not closed after keepalive_timeout (closed %v, extra %q)", closed, extra)
	}
	if idle := time.Since(idleFrom); idle < keepalive-keepalive/16 {
		t.Errorf("closed after %v idle, before keepalive_timeout %v", idle, keepalive)
	}
	WaitFor(t, 5*time.Second, "no connection left", func() bool {
		s := r.P.Stats()
		return s.ActiveConns == 0 && s.ParkedConns == 0
	})
}

// A parked client that half-closes is closed at once, not at the end of
// its keep-alive time.
func TestParkedConnectionHalfClosed(t *testing.T) {
	r := parkedProxy(t, time.Minute)
	c := openIdle(t, r.Addr("public"), 1)[0]
	WaitFor(t, 5*time.Second, "the connection parked", func() bool { return r.P.Stats().ParkedConns == 1 })
	c.Conn.(*net.TCPConn).CloseWrite()
	if closed, extra := c.ClosedWithin(3 * time.Second); !closed || extra != "" {
		t.Fatalf("half-closed parked connection not closed (closed %v, extra %q)", closed, extra)
	}
}

// Draining serves a parked connection's next request with Connection:
// close and finishes once it is gone; Close cuts parked connections.
func TestParkedConnectionsDrainAndClose(t *testing.T) {
	r := parkedProxy(t, time.Minute)
	conns := openIdle(t, r.Addr("public"), 3)
	WaitFor(t, 5*time.Second, "the connections parked", func() bool { return r.P.Stats().ParkedConns == 3 })
	r.P.Drain(time.Now().Add(time.Minute))
	resp, body := conns[0].Do(get("/during-drain"))
	if resp.StatusCode != http.StatusOK || body != "ok" || !resp.Close {
		t.Fatalf("request on a parked connection while draining: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	if r.Served(200 * time.Millisecond) {
		t.Fatal("Serve returned while two parked connections were still open")
	}
	r.P.Close()
	for i, c := range conns[1:] {
		if closed, _ := c.ClosedWithin(3 * time.Second); !closed {
			t.Errorf("parked connection %d still open after Close", i+1)
		}
	}
	if !r.Served(3 * time.Second) {
		t.Fatal("Serve did not return after Close")
	}
}
