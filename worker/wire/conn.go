package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// MaxMessage bounds one control message. No config travels this way; the
// largest message is a worker's Sample, a few dozen bytes per route and per
// upstream server, so this leaves room for thousands of them. A larger
// message is refused by Send. (On SOCK_SEQPACKET one message must fit in
// the sender's socket buffer: Pair sizes both ends for it.)
const MaxMessage = 256 << 10

// sockBuf is the send buffer Pair asks for on both ends: room for one
// maximal message and its kernel overhead.
const sockBuf = 2 * MaxMessage

// maxFiles bounds the descriptors one message may carry.
const maxFiles = 8

// Conn is one end of the control socket. Send may be called from several
// goroutines; Recv from one.
type Conn struct {
	c    *net.UnixConn
	wmu  sync.Mutex
	rbuf []byte
	oob  []byte
}

// Pair makes a connected SOCK_SEQPACKET socket pair: the master keeps the
// Conn, the worker gets the *os.File (as fd ControlFD). Both ends are
// close-on-exec; exec.Cmd.ExtraFiles clears the flag on the child's copy.
func Pair() (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("control socketpair: %w", err)
	}
	for _, fd := range fds {
		// Best effort: the kernel caps SO_SNDBUF at net.core.wmem_max
		// (doubled); root may go past it. Its default already fits
		// messages of about 200 KiB.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBuf) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sockBuf)
		}
	}
	mine := os.NewFile(uintptr(fds[0]), "control")
	theirs := os.NewFile(uintptr(fds[1]), "control-worker")
	c, err := FileConn(mine)
	mine.Close()
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return c, theirs, nil
}

// FileConn wraps an inherited control socket. f may be closed afterwards.
func FileConn(f *os.File) (*Conn, error) {
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("control socket: %T is not a unix socket", nc)
	}
	return &Conn{c: uc, rbuf: make([]byte, MaxMessage), oob: make([]byte, unix.CmsgSpace(maxFiles*4))}, nil
}

// Send writes one message with files attached. The files stay open: the
// caller closes its copies.
func (c *Conn) Send(m Message, files ...*os.File) error {
	return c.send(m, time.Time{}, files)
}

// SendTimeout is Send, giving up after d if the peer does not read (its
// socket buffer is full): for messages that must not hold up the sender,
// like a worker's samples. A SOCK_SEQPACKET message is sent whole or not
// at all, so a timeout never leaves half a message behind.
func (c *Conn) SendTimeout(m Message, d time.Duration, files ...*os.File) error {
	return c.send(m, time.Now().Add(d), files)
}

func (c *Conn) send(m Message, deadline time.Time, files []*os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("%s message too large (%d bytes)", m.Type, len(b))
	}
	var oob []byte
	if len(files) > 0 {
		if len(files) > maxFiles {
			return fmt.Errorf("%s message: too many files (%d)", m.Type, len(files))
		}
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !deadline.IsZero() {
		c.c.SetWriteDeadline(deadline)
		defer c.c.SetWriteDeadline(time.Time{})
	}
	if _, _, err := c.c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("send %s message: %w", m.Type, err)
	}
	return nil
}

// Recv reads one message and the descriptors that came with it (as
// close-on-exec files the caller owns). io.EOF means the peer is gone.
func (c *Conn) Recv() (Message, []*os.File, error) {
	n, oobn, flags, _, err := c.c.ReadMsgUnix(c.rbuf, c.oob)
	var files []*os.File
	if oobn > 0 {
		files = parseRights(c.oob[:oobn])
	}
	if err != nil {
		closeAll(files)
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			return Message{}, nil, io.EOF
		}
		return Message{}, nil, fmt.Errorf("control socket: %w", err)
	}
	if n == 0 {
		closeAll(files)
		return Message{}, nil, io.EOF
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(files)
		return Message{}, nil, errors.New("control socket: truncated message")
	}
	var m Message
	if err := json.Unmarshal(c.rbuf[:n], &m); err != nil {
		closeAll(files)
		return Message{}, nil, fmt.Errorf("control socket: bad message: %w", err)
	}
	return m, files, nil
}

// Close closes this end; the peer's Recv then returns io.EOF.
func (c *Conn) Close() error { return c.c.Close() }

func parseRights(oob []byte) []*os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
	}
	return files
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
