package proxy

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
)

// This file closes client sockets without a scheduler-managed system call
// per connection. os.File.Close ends in a close(2) that goes through the
// runtime's syscall state, and so does the accept4 before it (see
// accept.go): with a new connection per request, that woke the runtime's
// monitor thread (sysmon) out of its sleep every time the worker had been
// idle a moment, and kept it polling every 20 us while busy. perf put it at
// about a tenth of the worker's CPU, nearly all context switches.
//
// A socket is therefore closed by a raw dup3(2) of a placeholder
// descriptor (an eventfd) onto its number: the kernel releases the socket
// there and then (the FIN goes out, the epoll registration goes with the
// socket), while the descriptor number stays taken, by the placeholder, so
// that it cannot be reused while the *os.File still names it. The
// *os.File itself is closed later, in batches, with the real Close:
// that close(2) only drops a reference to the placeholder, and a batch
// costs one wake-up where each connection cost one.

// closeBatch is how many closed sockets wait for their *os.File to be
// closed. Each holds a descriptor number (not a socket), so a worker keeps
// at most this many more descriptors open than it serves.
const closeBatch = 64

// fileCloser closes accepted sockets early and their files in batches.
// Its zero value (no placeholder) closes every connection at once; open
// gives it a placeholder, shut takes it away again.
type fileCloser struct {
	mu          sync.Mutex
	placeholder int // eventfd dup3'd over closed sockets; <= 0: none
	pending     []*os.File
}

// open creates the placeholder. Without one (no eventfd here), sockets
// are closed the usual way.
func (fc *fileCloser) open() {
	fd, _, e := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC, 0)
	if e != 0 {
		return
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.placeholder != 0 { // opened before, or shut already
		syscall.Close(int(fd))
		return
	}
	fc.placeholder = int(fd)
	fc.pending = make([]*os.File, 0, closeBatch)
}

// close closes c. A *fileConn's socket is released at once and its file
// later (by the batch that fills up, or by flush); any other connection is
// closed now.
func (fc *fileCloser) close(c net.Conn) error {
	f, ok := c.(*fileConn)
	if !ok {
		return c.Close()
	}
	raw, err := f.File.SyscallConn()
	if err != nil {
		return c.Close()
	}
	// Under the lock: shut closes the placeholder, whose number must not
	// be reused by another file while a dup3 may still name it.
	fc.mu.Lock()
	var e syscall.Errno = syscall.EBADF
	if fc.placeholder > 0 {
		if err := raw.Control(func(fd uintptr) {
			_, _, e = syscall.RawSyscall(syscall.SYS_DUP3, uintptr(fc.placeholder), fd, syscall.O_CLOEXEC)
		}); err != nil {
			e = syscall.EBADF
		}
	}
	if e != 0 {
		fc.mu.Unlock()
		return c.Close()
	}
	fc.pending = append(fc.pending, f.File)
	full := len(fc.pending) >= closeBatch
	fc.mu.Unlock()
	if full {
		fc.flush()
	}
	return nil
}

// flush closes every pending file now (a full batch, an idle worker,
// accept or an upstream dial out of descriptors, shutdown), outside the
// lock: the closes go through the scheduler, and other connections keep
// closing meanwhile. It returns how many descriptors it freed.
func (fc *fileCloser) flush() int {
	fc.mu.Lock()
	batch := fc.pending
	if len(batch) > 0 {
		fc.pending = make([]*os.File, 0, closeBatch)
	}
	fc.mu.Unlock()
	for _, f := range batch {
		f.Close()
	}
	return len(batch)
}

// relieve answers a call that failed for want of a descriptor (EMFILE or
// ENFILE: an accept, an upstream dial) by closing the pending files now,
// and reports whether that freed any, so that the caller may try again
// at once.
func (fc *fileCloser) relieve(err error) bool {
	return (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) && fc.flush() > 0
}

// shut flushes and closes the placeholder; later closes are immediate
// (and add nothing to pending).
func (fc *fileCloser) shut() {
	fc.mu.Lock()
	ph := fc.placeholder
	fc.placeholder = -1
	fc.mu.Unlock()
	fc.flush()
	if ph > 0 {
		syscall.Close(ph)
	}
}
