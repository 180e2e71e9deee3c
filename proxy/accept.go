package proxy

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
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
// included); TCP_NODELAY is set with a raw call (lazily: see accept),
// keep-alive probes are left off (as nginx's default).

// rawAcceptor accepts on one TCP listener's socket, through a duplicate
// of its descriptor opened as an *os.File (a listener's own RawConn
// cannot wait for readiness). Closing the acceptor closes the duplicate:
// it must be closed with the listener.
type rawAcceptor struct {
	f   *os.File
	raw syscall.RawConn
	fn  func(fd uintptr) bool

	// The peer address is read into rsa (reused: no allocation per
	// connection, where syscall.Accept4 allocates a Sockaddr).
	rsa    syscall.RawSockaddrAny
	rsaLen uint32
	nfd    int
	err    error

	// blocking: accept4 found the socket in blocking mode (and went
	// through the scheduler); warned: the accept loop has said so.
	blocking, warned bool
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
	// accept4 is a raw call, outside the scheduler's syscall state (which
	// costs a wake-up of the runtime's monitor thread per connection; see
	// fdclose.go), as long as it cannot block: O_NONBLOCK belongs to the
	// socket's open file description, shared with the master and every
	// other worker, and should anything ever clear it, a raw accept4 on an
	// empty queue would hold the worker's only P, freezing every
	// connection. So the flag is read (a raw fcntl, cheap) each time the
	// poller hands the socket over, and without it the call is a managed
	// one, which merely parks a thread.
	fl, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
	blocking := e != 0 || fl&syscall.O_NONBLOCK == 0
	if blocking {
		a.blocking = true
	}
	for {
		a.rsaLen = syscall.SizeofSockaddrAny
		var nfd uintptr
		if blocking {
			nfd, _, e = syscall.Syscall6(syscall.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&a.rsa)),
				uintptr(unsafe.Pointer(&a.rsaLen)), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
		} else {
			nfd, _, e = syscall.RawSyscall6(syscall.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&a.rsa)),
				uintptr(unsafe.Pointer(&a.rsaLen)), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
		}
		switch e {
		case 0:
			a.nfd, a.err = int(nfd), nil
			return true
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		case syscall.EAGAIN:
			return false
		}
		a.err = os.NewSyscallError("accept4", e)
		return true
	}
}

// accept returns the next connection. TCP_NODELAY is not set here but
// before the connection's second send (see sockIO): a connection that
// gets a one-write response and is closed (a client sending
// "Connection: close") then saves the setsockopt(2), and Nagle's
// algorithm never holds back a first send (nothing is in flight yet).
func (a *rawAcceptor) accept() (net.Conn, error) {
	if err := a.raw.Read(a.fn); err != nil {
		return nil, err
	}
	if a.err != nil {
		return nil, a.err
	}
	fd := a.nfd
	f := os.NewFile(uintptr(fd), "")
	if f == nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("accept4", syscall.EBADF)
	}
	return &fileConn{File: f, remote: rawToAddrPort(&a.rsa), fd: int32(fd)}, nil
}

// rawToAddrPort decodes an accepted peer address (IPv4 clients of a
// dual-stack socket shown as IPv4).
func rawToAddrPort(rsa *syscall.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		ip := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && ip.Is6() {
			ip = ip.WithZone(strconv.Itoa(int(sa.Scope_id)))
		}
		return netip.AddrPortFrom(ip, ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// ntohs reads a port as the kernel stores it (network byte order).
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// fileConn is an accepted TCP socket as a net.Conn. Deadlines come from
// *os.File, which supports them for sockets registered with the poller.
type fileConn struct {
	*os.File
	remote netip.AddrPort
	fd     int32 // the socket's descriptor (Fd would make it blocking)

	// opened: the connection's opening (PROXY header, TLS handshake) is
	// done. inLot: the socket is registered with the parking lot (armed
	// or not; atomic: a stale event can resume a connection before its
	// arm returns); parked: its state while it is parked (see park.go).
	opened bool
	inLot  atomic.Bool
	parked parkedState
}

func (c *fileConn) LocalAddr() net.Addr  { return &net.TCPAddr{} }
func (c *fileConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

// remoteAddrPort is RemoteAddr without the allocation.
func (c *fileConn) remoteAddrPort() netip.AddrPort { return c.remote }

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
