package proxy

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// A listening socket's O_NONBLOCK flag is shared by every process holding
// it, so something else (a master bug, a tool) may clear it under a
// running worker. accept4 is a raw system call while the flag is set (see
// acceptFD); with the flag cleared it must not be, or an accept on an
// empty queue holds the scheduler's only P and freezes every connection
// of the worker. The check runs in a child process with GOMAXPROCS=1, as a
// worker runs, so that a freeze shows as a child that never finishes.
func TestAcceptSurvivesBlockingListener(t *testing.T) {
	if os.Getenv("PROXY_TEST_BLOCKING_CHILD") == "1" {
		blockingListenerChild(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAcceptSurvivesBlockingListener$", "-test.v")
	cmd.Env = append(os.Environ(), "PROXY_TEST_BLOCKING_CHILD=1", "GOMAXPROCS=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the proxy froze once its listening socket was made blocking (child killed after 30s); its output:\n%s", out)
	}
	if err != nil || !strings.Contains(string(out), "served after the listener turned blocking") {
		t.Fatalf("child: %v; its output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "listening socket is in blocking mode") {
		t.Errorf("the proxy did not warn that the listening socket turned blocking; its output:\n%s", out)
	}
}

func blockingListenerChild(t *testing.T) {
	be := newBackend(t, nil)
	p, err := New(testConfig(be.addr()), Options{Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn})})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	// Our own descriptor of the socket: the proxy closes the listener's.
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	dup := -1
	raw.Control(func(fd uintptr) { dup, err = syscall.Dup(int(fd)) })
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(map[string]net.Listener{"public": ln})
	<-p.Ready()
	defer p.Close()

	keep := DialRaw(t, addr)
	if resp, _ := keep.Do(get("/before")); resp.StatusCode != 200 {
		t.Fatalf("before: status %d", resp.StatusCode)
	}
	if err := syscall.SetNonblock(dup, false); err != nil {
		t.Fatal(err)
	}
	// The accept loop finds this connection, then waits on an empty queue
	// of a blocking socket.
	if resp, _ := DialRaw(t, addr).Do(get("/new")); resp.StatusCode != 200 {
		t.Fatalf("new connection: status %d", resp.StatusCode)
	}
	if resp, _ := keep.Do(get("/again")); resp.StatusCode != 200 {
		t.Fatalf("keep-alive connection: status %d", resp.StatusCode)
	}
	if resp, _ := DialRaw(t, addr).Do(get("/newer")); resp.StatusCode != 200 {
		t.Fatalf("second new connection: status %d", resp.StatusCode)
	}
	t.Log("served after the listener turned blocking")
	// Put the flag back and wake the accept still waiting in the kernel,
	// so that Close finds nothing stuck.
	syscall.SetNonblock(dup, true)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
	}
	syscall.Close(dup)
}
