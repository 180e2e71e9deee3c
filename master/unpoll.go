package master

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// unpoll takes every descriptor of a listening socket the master holds out
// of the Go runtime's epoll instance. The master never accepts on these
// sockets (workers do), but Go registers each net.Listener and each
// non-blocking *os.File with its poller, edge-triggered: every connection
// arriving on the port then woke the idle master (an epoll_wait return and
// a pass through the scheduler, on the CPU the workers serve on). Measured
// with a new connection per request: 10-13 us of master CPU per request,
// a third of the project's figure. The master's copies still keep the
// socket and its accept queue alive; only readiness events stop.
//
// Go's poll descriptors for these fds stay; closing them later makes Go
// delete the registration again, which fails with ENOENT and is ignored.
// Nothing in the master may wait for readiness on these sockets (Accept,
// deadlines): it would wait forever.
func unpoll(f *os.File) {
	raw, err := f.SyscallConn()
	if err != nil {
		return
	}
	var want unix.Stat_t
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &want) }); err != nil || serr != nil {
		return
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	var eps, socks []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == "anon_inode:[eventpoll]" {
			eps = append(eps, fd)
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK && st.Ino == want.Ino && st.Dev == want.Dev {
			socks = append(socks, fd)
		}
	}
	for _, ep := range eps {
		for _, fd := range socks {
			unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, fd, nil) // ENOENT when not registered there
		}
	}
}
