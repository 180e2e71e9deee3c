package proxy

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// openFDs counts this process's descriptors by what they point at:
// "socket", "eventfd" or "other".
func openFDs(t *testing.T) map[string]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	out := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		switch {
		case err != nil:
		case strings.HasPrefix(target, "socket:"):
			out["socket"]++
		case target == "anon_inode:[eventfd]":
			out["eventfd"]++
		default:
			out["other"]++
		}
	}
	return out
}

// Client sockets are closed at once (their descriptor numbers parked on a
// placeholder until a batch closes them, see fdclose.go): no socket may
// stay open behind a finished connection, and after a flush no descriptor
// at all.
func TestClosedClientSocketsAreReleased(t *testing.T) {
	be := newBackend(t, nil)
	r := start(t, testConfig(be.addr()), Options{})
	req := "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
	one := func() {
		c := dial(t, r.addr)
		if resp, _ := c.do(req); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if !c.closed() {
			t.Fatal("the proxy did not close a Connection: close connection")
		}
		c.c.Close()
		// The client sees the end of the response (the proxy shuts its
		// side down right after it) before the proxy has finished the
		// connection: wait for that.
		deadline := time.Now().Add(5 * time.Second)
		for r.p.stats.active.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections still active 5s after their response", r.p.stats.active.Load())
			}
			runtime.Gosched()
		}
	}
	one() // the upstream keep-alive connection is pooled from now on
	r.p.closer.flush()
	before := openFDs(t)

	n := closeBatch + closeBatch/2 // one batch closed, half of one pending
	for range n {
		one()
	}
	after := openFDs(t)
	if after["socket"] > before["socket"] {
		t.Errorf("sockets open: %d before %d connections, %d after; finished connections' sockets must be closed at once",
			before["socket"], n, after["socket"])
	}
	if pending := after["eventfd"] - before["eventfd"]; pending <= 0 || pending >= closeBatch {
		t.Errorf("%d descriptors parked on the placeholder after %d connections; want between 1 and %d (batches of %d)",
			pending, n, closeBatch-1, closeBatch)
	}
	r.p.closer.flush()
	if flushed := openFDs(t); flushed["eventfd"] != before["eventfd"] || flushed["socket"] > before["socket"] {
		t.Errorf("descriptors after a flush: %v; before the connections: %v", flushed, before)
	}
}
