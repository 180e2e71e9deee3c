package proxy

import (
	"net"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// This file accepts client connections on TCP listeners without going
// through net.TCPListener.Accept, which costs, per connection, five
// setsockopt calls (TCP keep-alive on accepted sockets and TCP_NODELAY)
// and a getsockname, each entering the scheduler's syscall state (which
// wakes the runtime's monitor thread when the process was idle: a thread
// switch). Measured with a new connection per request, that was the bulk
// of the gap to nginx. The accepted socket is wrapped in an *os.File,
// which registers it with the same poller net.Conn uses (deadlines
// included); TCP_NODELAY is set with a raw call, keep-alive probes are
// left off (as nginx's default).

// rawAcceptor accepts on one TCP listener's socket, through a duplicate
// of its descriptor opened as an *os.File (a listener's own RawConn
// cannot wait for readiness). Closing the acceptor closes the duplicate:
// it must be closed with the listener.
type rawAcceptor struct {
	f   *os.File
	raw syscall.RawConn
	fn  func(fd uintptr) bool

	nfd int
	sa  syscall.Sockaddr
	err error
}

func newRawAcceptor(ln net.Listener) *rawAcceptor {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil
	}
	lraw, err := tl.SyscallConn()
	if err != nil {
		return nil
	}
	dup := -1
	lraw.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e == 0 {
			dup = int(r)
		}
	})
	if dup < 0 {
		return nil
	}
	// Non-blocking, so that the file is registered with the poller (the
	// listener needs the same mode: they share it).
	if err := syscall.SetNonblock(dup, true); err != nil {
		syscall.Close(dup)
		return nil
	}
	f := os.NewFile(uintptr(dup), "listener")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	a := &rawAcceptor{f: f, raw: raw}
	a.fn = a.acceptFD
	return a
}

func (a *rawAcceptor) close() { a.f.Close() }

func (a *rawAcceptor) acceptFD(fd uintptr) bool {
	for {
		// A Go-managed call, not a raw one: should the listening socket
		// ever be in blocking mode, accept4 would block, and must not
		// hold the scheduler's P while it does.
		nfd, sa, err := syscall.Accept4(int(fd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		switch err {
		case nil:
			a.nfd, a.sa, a.err = nfd, sa, nil
			return true
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		case syscall.EAGAIN:
			return false
		}
		a.err = os.NewSyscallError("accept4", err)
		return true
	}
}

// accept returns the next connection.
func (a *rawAcceptor) accept() (net.Conn, error) {
	if err := a.raw.Read(a.fn); err != nil {
		return nil, err
	}
	if a.err != nil {
		return nil, a.err
	}
	fd := a.nfd
	one := 1
	// Raw: a setsockopt on a fresh socket cannot block.
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), 4, 0)
	f := os.NewFile(uintptr(fd), "")
	if f == nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("accept4", syscall.EBADF)
	}
	return &fileConn{File: f, remote: sockaddrToTCP(a.sa)}, nil
}

func sockaddrToTCP(sa syscall.Sockaddr) *net.TCPAddr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *syscall.SockaddrInet6:
		zone := ""
		if sa.ZoneId != 0 {
			zone = strconv.Itoa(int(sa.ZoneId))
		}
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port, Zone: zone}
	}
	return &net.TCPAddr{}
}

// fileConn is an accepted TCP socket as a net.Conn. Deadlines come from
// *os.File, which supports them for sockets registered with the poller.
type fileConn struct {
	*os.File
	remote *net.TCPAddr
}

func (c *fileConn) LocalAddr() net.Addr  { return &net.TCPAddr{} }
func (c *fileConn) RemoteAddr() net.Addr { return c.remote }

// CloseWrite shuts the sending side down (for lingering closes).
func (c *fileConn) CloseWrite() error {
	raw, err := c.File.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = syscall.Shutdown(int(fd), syscall.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

var _ interface {
	net.Conn
	CloseWrite() error
} = (*fileConn)(nil)
