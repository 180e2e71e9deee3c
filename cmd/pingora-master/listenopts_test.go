package main

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDeferAcceptFollowsConfig: `defer_accept = true` puts TCP_DEFER_ACCEPT
// on that listener's socket (and only that one), the listener serves, and
// a reload that turns it off takes it off the very same socket.
func TestDeferAcceptFollowsConfig(t *testing.T) {
	in := newInstance(t, 1)
	port := freePort(t)
	listener := func(deferAccept bool) string {
		return fmt.Sprintf(`
listener "deferred" {
  address               = "127.0.0.1:%d"
  client_header_timeout = "10s"
  defer_accept          = %v
}
`, port, deferAccept)
	}
	p := in.Params
	p.Extra = listener(true)
	in.WriteConfig(p)
	in.Start()
	master := in.MustMasterPID()

	if got := deferAcceptOf(t, master, port); got < 10 {
		t.Errorf("listener with defer_accept = true: TCP_DEFER_ACCEPT is %d, want at least client_header_timeout (10s)", got)
	}
	if got := deferAcceptOf(t, master, in.Port); got != 0 {
		t.Errorf("listener without defer_accept: TCP_DEFER_ACCEPT is %d, want 0", got)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if status, body, err := get(addr, "/gen"); err != nil || status != 200 || body != "gen 0" {
		t.Errorf("GET /gen through the deferred listener: %d %q %v, want 200 %q", status, body, err, "gen 0")
	}

	p.Gen, p.Extra = 1, listener(false)
	in.WriteConfig(p)
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload: want exit 0\n%s", r)
	}
	in.WaitServing(nil, 1)
	if got := deferAcceptOf(t, master, port); got != 0 {
		t.Errorf("after a reload with defer_accept = false: TCP_DEFER_ACCEPT is %d, want 0", got)
	}
}

// deferAcceptOf reads TCP_DEFER_ACCEPT of the listening socket on port
// through a copy of the master's descriptor (pidfd_getfd, as root).
func deferAcceptOf(t *testing.T, master, port int) int {
	t.Helper()
	inode := listenInode(port)
	if inode == 0 {
		t.Fatalf("nothing listens on 127.0.0.1:%d", port)
	}
	return sockoptOf(t, master, inode, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT)
}

// TestBacklogFollowsConfig: `backlog` bounds the accept queue. With the
// workers stopped (SIGSTOP) nothing is accepted, so a listener with
// backlog = 2 completes about three handshakes and drops the next SYNs,
// while the default (the system's maximum) takes every one; a reload
// back to the default lifts the bound on the same socket.
func TestBacklogFollowsConfig(t *testing.T) {
	in := newInstance(t, 1)
	port := freePort(t)
	listener := func(backlog string) string {
		return fmt.Sprintf("\nlistener \"small\" {\n  address = \"127.0.0.1:%d\"\n%s}\n", port, backlog)
	}
	p := in.Params
	p.Extra = listener("  backlog = 2\n")
	in.WriteConfig(p)
	in.Start()
	master := in.MustMasterPID()
	if status, body, err := get(fmt.Sprintf("127.0.0.1:%d", port), "/gen"); err != nil || status != 200 || body != "gen 0" {
		t.Fatalf("GET /gen on the small-backlog listener: %d %q %v, want 200 %q", status, body, err, "gen 0")
	}

	const tries = 12
	if n := handshakesWhileStopped(t, in, master, port, tries); n > 4 {
		t.Errorf("backlog = 2: %d of %d connections completed with no worker accepting, want at most 4 (backlog + 1, and one of slack)", n, tries)
	}
	if n := handshakesWhileStopped(t, in, master, in.Port, tries); n != tries {
		t.Errorf("default backlog: %d of %d connections completed with no worker accepting, want all", n, tries)
	}

	p.Gen, p.Extra = 1, listener("")
	in.WriteConfig(p)
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload: want exit 0\n%s", r)
	}
	in.WaitServing(nil, 1)
	if n := handshakesWhileStopped(t, in, master, port, tries); n != tries {
		t.Errorf("after a reload without backlog: %d of %d connections completed with no worker accepting, want all", n, tries)
	}
}

// handshakesWhileStopped stops master's workers, counts how many of n
// connections to port complete their handshake (each given 300 ms), then
// lets the workers go on and closes the connections.
func handshakesWhileStopped(t *testing.T, in *instance, master, port, n int) int {
	t.Helper()
	workers := in.Workers(master)
	if len(workers) == 0 {
		t.Fatal("no workers")
	}
	for _, w := range workers {
		syscall.Kill(w, syscall.SIGSTOP)
	}
	for _, w := range workers {
		waitFor(t, 5*time.Second, fmt.Sprintf("worker %d to stop", w), func() (bool, string) { return allThreadsStopped(w) })
	}
	var conns []net.Conn
	defer func() {
		for _, w := range workers {
			syscall.Kill(w, syscall.SIGCONT)
		}
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 300*time.Millisecond)
		if err != nil {
			continue
		}
		conns = append(conns, c)
	}
	return len(conns)
}
