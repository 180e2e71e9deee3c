package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

// openFDs counts this process's descriptors by what they point at:
// "socket", "eventfd", or the link's target for anything else.
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
			out[target]++
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
	r := Start(t, testConfig(be.addr()), Options{})
	req := "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
	one := func() {
		c := DialRaw(t, r.Addr("public"))
		if resp, _ := c.Do(req); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if !c.Closed() {
			t.Fatal("the proxy did not close a Connection: close connection")
		}
		c.Conn.Close()
		// The client sees the end of the response (the proxy shuts its
		// side down right after it) before the proxy has finished the
		// connection: wait for that.
		waitActive(t, r, 0)
	}
	one() // the upstream keep-alive connection is pooled from now on
	r.P.closer.flush()
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
	r.P.closer.flush()
	if flushed := openFDs(t); flushed["eventfd"] != before["eventfd"] || flushed["socket"] > before["socket"] {
		t.Errorf("descriptors after a flush: %v; before the connections: %v", flushed, before)
	}
}

// At the open-files limit, accept fails with EMFILE; descriptor numbers
// parked for a batch close must then be released at once, not at the
// janitor's next round (seconds later): every request below is answered
// within its 2-second budget while the limit leaves room for few more
// than the sockets in use.
func TestParkedDescriptorsFreedAtFileLimit(t *testing.T) {
	// The route answers by itself: a backend in this process would share
	// the limit, and its accepts would fail where the proxy's do not.
	cfg := testConfig("127.0.0.1:1")
	cfg.Routes[0].Upstream = ""
	cfg.Routes[0].Respond = &config.Respond{Status: 200, Body: "ok"}
	r := Start(t, cfg, Options{})
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	req := "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
	one := func(i int) {
		c, err := net.DialTimeout("tcp", r.Addr("public"), 2*time.Second)
		if err != nil {
			t.Fatalf("request %d: dial: %v", i, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved) // to list them
			t.Fatalf("request %d: no answer within 2s at the open-files limit: %v; descriptors: %v", i, err, openFDs(t))
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	one(0)
	r.P.closer.flush()

	open := 0
	for _, n := range openFDs(t) {
		open += n
	}
	// Room for the client's socket, the proxy's end of it and spares (the
	// readdir above), well under a batch of parked descriptors.
	lim := saved
	lim.Cur = uint64(open + 24)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)
	for i := 1; i <= 3*closeBatch; i++ {
		one(i)
	}
}

// An upstream dial that meets the open-files limit frees the parked
// descriptors and tries again, as the accept loop does. A new connection
// never gets there first with one worker thread (the accept loop's next
// accept4 meets the limit and flushes), but a request on a connection
// accepted earlier does, as does any dial when several threads serve.
func TestDialAtFileLimitFreesParkedDescriptors(t *testing.T) {
	be := newBackend(t, nil)
	cfg := testConfig(be.addr())
	cfg.Routes = append(cfg.Routes, config.Route{
		Name: "park", Listeners: []string{"public"}, PathPrefix: "/park", MaxBodySize: -1,
		Respond: &config.Respond{Status: 200, Body: "ok"},
	})
	r := Start(t, cfg, Options{})

	// Closed connections whose descriptor numbers wait for a batch close.
	const parked = 20
	for i := range parked {
		c := DialRaw(t, r.Addr("public"))
		if resp, _ := c.Do("GET /park HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		c.Conn.Close()
	}
	waitActive(t, r, 0)
	r.P.closer.mu.Lock()
	pending := len(r.P.closer.pending)
	r.P.closer.mu.Unlock()
	if pending < parked/2 {
		t.Fatalf("%d descriptors parked after %d connections; the test needs them", pending, parked)
	}

	// A client connection, accepted, that has not been proxied yet (so no
	// upstream connection is pooled).
	c := DialRaw(t, r.Addr("public"))
	waitActive(t, r, 1)
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	open := 0
	for _, n := range openFDs(t) {
		open += n
	}
	// Not one descriptor to spare (openFDs counted its own descriptor of
	// /proc/self/fd, closed since): the dial to the backend meets the limit.
	lim := saved
	lim.Cur = uint64(open - 1)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)
	resp, body := c.Do("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("request at the open-files limit: status %d %q, want 200 (the dial did not free the %d parked descriptors)", resp.StatusCode, body, pending)
	}
}

// waitActive waits (5 s at most) until the proxy serves n connections:
// a client sees a response end before the proxy has finished the
// connection, and connects before the proxy has accepted.
func waitActive(t *testing.T, r *Running, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.P.stats.active.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections active after 5s, want %d", r.P.stats.active.Load(), n)
		}
		runtime.Gosched()
	}
}
