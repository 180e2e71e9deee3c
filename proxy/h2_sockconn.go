package proxy

import "net"

// sockConn is a client socket read and written through a sockIO (raw
// system calls, see sockio.go) rather than os.File's Read and Write, for
// those who take a net.Conn and do their own I/O on it: crypto/tls under a
// TLS connection, the HTTP/2 connection's reader. os.File's calls enter the
// scheduler's syscall state, and every one that outlasts a sysmon tick
// hands the worker's P to another thread: under h2load, one HTTP/2
// stream at a time, a third of the worker's CPU went to thread switches
// and sysmon.
type sockConn struct {
	*fileConn
	io *sockIO
}

// rawSock is c read and written with raw system calls when it is one of
// our sockets, else c. The caller has set TCP_NODELAY (sockIO.noDelay).
func rawSock(c net.Conn) net.Conn {
	fc, ok := c.(*fileConn)
	if !ok {
		return c
	}
	s := newSockIO(fc)
	s.noDelayDue = false
	return &sockConn{fileConn: fc, io: s}
}

func (c *sockConn) Read(b []byte) (int, error)  { return c.io.Read(b) }
func (c *sockConn) Write(b []byte) (int, error) { return c.io.Write(b) }
