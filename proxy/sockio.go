package proxy

import (
	"bufio"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// sockIO reads and writes a TCP socket with raw system calls through its
// syscall.RawConn. Go's own Read and Write enter the scheduler's syscall
// state; on a one-CPU worker the scheduler then hands the P to another
// thread whenever a loopback write (which runs the receiver's TCP stack
// inline) outlasts a sysmon tick, and every such hand-off is a thread
// switch. Measured on the benchmark: 0.18 context switches per request
// against nginx's 0.01, and a fifth of the CPU. Our sockets are
// non-blocking, so the calls return at once (EAGAIN when they would
// block: RawConn then parks the goroutine in the poller, with deadlines
// honoured exactly as net.Conn's). recvfrom(2) and sendto(2) rather than
// read(2) and write(2): they skip the VFS layer (as nginx does).
type sockIO struct {
	c   net.Conn
	raw syscall.RawConn // nil: plain c.Read and c.Write

	rfn, wfn func(fd uintptr) bool // bound once: no allocation per call
	rp, wp   []byte
	rn, wn   int
	rerr     syscall.Errno
	werr     syscall.Errno

	// noDelayDue: TCP_NODELAY is still to be set, before the socket's
	// second send (accepted sockets: see rawAcceptor.accept). sent: a
	// send went out on this socket.
	noDelayDue bool
	sent       bool

	// probe: a read that would block returns errWouldBlock instead of
	// waiting (awaitRequest); wouldBlock: this one did.
	probe, wouldBlock bool
	// waited: waitReadable's function has been called once.
	waited bool
	waitFn func(fd uintptr) bool

	// finNext: the next Write is the connection's last. Its data goes
	// out with MSG_MORE and the sending side is shut down right after
	// it, so the FIN rides on the final data segment instead of a
	// segment of its own sent by close(2): one loopback or network
	// segment less per closed connection (the receiving side's work on a
	// loopback segment runs on the sender's CPU, too).
	finNext bool
}

func newSockIO(c net.Conn) *sockIO {
	s := &sockIO{}
	s.reset(c)
	return s
}

// reset points s at another connection (nil: none), so that a pooled
// clientConn keeps its sockIO and the bound functions.
func (s *sockIO) reset(c net.Conn) {
	s.c, s.raw = c, nil
	s.rp, s.wp = nil, nil
	_, s.noDelayDue = c.(*fileConn)
	s.sent, s.finNext = false, false
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
			if s.rfn == nil {
				s.rfn = s.readFD
				s.wfn = s.writeFD
				s.waitFn = s.waitRead
			}
		}
	}
}

func (s *sockIO) readFD(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&s.rp[0])), uintptr(len(s.rp)), 0, 0, 0)
		switch e {
		case 0:
			s.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if s.probe {
				s.wouldBlock = true
				return true
			}
			return false
		}
		s.rerr = e
		return true
	}
}

// waitRead is called by RawConn.Read first to decide whether to wait,
// then after each wake-up: it waits once, whatever the wake-up was (data,
// an end, or a deadline, which RawConn reports itself).
func (s *sockIO) waitRead(uintptr) bool {
	if !s.waited {
		s.waited = true
		return false
	}
	return true
}

// waitReadable waits, without reading, until the socket is readable (or
// its read deadline passes), right after a read found nothing: from then
// on anything that arrives wakes the poller.
func (s *sockIO) waitReadable() error {
	s.waited = false
	return s.raw.Read(s.waitFn)
}

func (s *sockIO) writeFD(fd uintptr) bool {
	for len(s.wp) > 0 {
		if s.noDelayDue && s.sent {
			// Before a second send, whatever the first one was (the
			// first part of a response, the previous response): from
			// here on Nagle's algorithm could hold a small segment back
			// until the peer's (possibly delayed) ACK.
			setNoDelay(fd)
			s.noDelayDue = false
		}
		flags := uintptr(0)
		if s.finNext {
			// Held back only until the shutdown below (or, should the
			// send buffer be full, the next call, when writable).
			flags = syscall.MSG_MORE
		}
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&s.wp[0])), uintptr(len(s.wp)), flags, 0, 0)
		switch e {
		case 0:
			s.sent = true
			s.wn += int(n)
			s.wp = s.wp[n:]
			if len(s.wp) == 0 && s.finNext {
				// Pushes what MSG_MORE held, with the FIN. Raw: shutdown
				// does not block.
				syscall.RawSyscall(syscall.SYS_SHUTDOWN, fd, syscall.SHUT_WR, 0)
			}
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.werr = e
		return true
	}
	return true
}

// Read implements io.Reader.
func (s *sockIO) Read(p []byte) (int, error) {
	if s.raw == nil {
		return s.c.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.rp, s.rn, s.rerr = p, 0, 0
	err := s.raw.Read(s.rfn)
	s.rp = nil
	if err != nil {
		return 0, err
	}
	if s.wouldBlock {
		s.wouldBlock = false
		return 0, errWouldBlock
	}
	if s.rerr != 0 {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", s.rerr)}
	}
	if s.rn == 0 {
		return 0, io.EOF
	}
	return s.rn, nil
}

// Write implements io.Writer: all of p, or an error.
func (s *sockIO) Write(p []byte) (int, error) {
	if s.raw == nil {
		return s.c.Write(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.wp, s.wn, s.werr = p, 0, 0
	err := s.raw.Write(s.wfn)
	n := s.wn
	s.wp = nil
	s.finNext = false
	if err != nil {
		return n, err
	}
	if s.werr != 0 {
		return n, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", s.werr)}
	}
	return n, nil
}

// flushLast flushes bw, whose data is the last to go out on the
// connection, with the FIN on its final segment (see finNext). The
// caller closes the connection next.
func (s *sockIO) flushLast(bw *bufio.Writer) error {
	s.finNext = s.raw != nil
	err := bw.Flush()
	s.finNext = false
	return err
}

// setNoDelay turns Nagle's algorithm off (raw: a setsockopt on a socket
// cannot block). Setting it also pushes out anything Nagle held back.
func setNoDelay(fd uintptr) {
	one := int32(1)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), 4, 0)
}

// noDelay sets TCP_NODELAY now if it is still due: before the socket is
// written other than through s (a tunnel's copy loop).
func (s *sockIO) noDelay() {
	if !s.noDelayDue || s.raw == nil {
		return
	}
	s.noDelayDue = false
	s.raw.Control(func(fd uintptr) { setNoDelay(fd) })
}
