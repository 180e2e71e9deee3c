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

	// pending is what awaitRequest's read took in before the read buffer
	// was back (it is in scratch); Read hands it out first. pendingEOF:
	// that read met the end of the stream.
	pending    []byte
	pendingEOF bool
	pendingErr error       // readAhead's error, for a connection without raw calls
	scratch    *[1024]byte // made on first use: upstream sockets never wait this way

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
	s.pending, s.pendingEOF, s.pendingErr, s.rerr = nil, false, nil, 0
	_, s.noDelayDue = c.(*fileConn)
	s.sent, s.finNext = false, false
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
			if s.rfn == nil {
				s.rfn = s.readFD
				s.wfn = s.writeFD
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
			return false
		}
		s.rerr = e
		return true
	}
}

// readScratch is awaitRequest's first read: into scratch, as the read
// buffer may be back in its pool. It reports whether the socket had
// nothing (EAGAIN); otherwise what it read, the end, or the error waits
// for Read.
func (s *sockIO) readScratch(fd uintptr) (wouldBlock bool) {
	if s.scratch == nil {
		s.scratch = new([1024]byte)
	}
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&s.scratch[0])), uintptr(len(s.scratch)), 0, 0, 0)
		switch e {
		case 0:
			s.pending, s.pendingEOF = s.scratch[:n], n == 0
			return false
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return true
		}
		s.rerr = e
		return false
	}
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
	if len(s.pending) > 0 && len(p) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	if s.raw == nil {
		if err := s.pendingErr; err != nil {
			s.pendingErr = nil
			return 0, err
		}
		return s.c.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if s.pendingEOF {
		s.pendingEOF = false
		return 0, io.EOF
	}
	if s.rerr != 0 { // from readScratch
		return 0, s.readError()
	}
	s.rp, s.rn = p, 0
	err := s.raw.Read(s.rfn)
	s.rp = nil
	if err != nil {
		return 0, err
	}
	if s.rerr != 0 {
		return 0, s.readError()
	}
	if s.rn == 0 {
		return 0, io.EOF
	}
	return s.rn, nil
}

// readAhead is awaitTLS's read of a connection without raw socket calls:
// into scratch, waiting as long as the read deadline allows; Read hands
// out what it got, then its error.
func (s *sockIO) readAhead() {
	if s.scratch == nil {
		s.scratch = new([1024]byte)
	}
	n, err := s.c.Read(s.scratch[:])
	s.pending, s.pendingErr = s.scratch[:n], err
}

// readError reports (once) the error a read met.
func (s *sockIO) readError() error {
	e := s.rerr
	s.rerr = 0
	return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", e)}
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
