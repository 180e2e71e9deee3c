package master

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestUnpollTakesListenerOutOfEpoll: after unpoll, no descriptor of the
// listening socket is in the runtime's epoll set, so a connection arriving
// on the port no longer wakes the master (which never accepts on it).
func TestUnpollTakesListenerOutOfEpoll(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tl := ln.(*net.TCPListener)
	f, err := dupListener(tl, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lnFD := sysFD(t, tl)
	fileFD := sysFD(t, f)

	if !polled(t)[lnFD] {
		t.Fatalf("listener fd %d is not in the runtime's epoll set before unpoll: the test cannot see anything", lnFD)
	}
	unpoll(f)
	p := polled(t)
	if p[lnFD] || p[fileFD] {
		t.Fatalf("after unpoll, still polled: listener fd %d %v, dup fd %d %v", lnFD, p[lnFD], fileFD, p[fileFD])
	}
}

func sysFD(t *testing.T, c syscall.Conn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := raw.Control(func(s uintptr) { fd = int(s) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// polled is the set of fds registered in any epoll instance of this
// process, read from /proc/self/fdinfo ("tfd: N" lines).
func polled(t *testing.T) map[int]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l != "anon_inode:[eventpoll]" {
			continue
		}
		fi, err := os.Open("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fi)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "tfd:" {
				if n, err := strconv.Atoi(fields[1]); err == nil {
					out[n] = true
				}
			}
		}
		fi.Close()
	}
	return out
}
