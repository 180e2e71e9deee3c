package proxy

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora/config"
)

// HTTP/2 to clients. The server side of the protocol is ours (h2_conn.go:
// the connection's frames, stream states, flow control, and the defences
// against the known attacks); x/net's Framer and HPACK decoder read and
// validate what the client sends, and responses are written as frames of
// our own (h2_frame.go) through one coalescing writer (h2_writer.go).
//
// Each stream then becomes one request of the HTTP/1 engine (h2_stream.go):
// routing, header rules, limits, rate limits, timeouts, buffering, retries
// and the access log are the HTTP/1 path's own, with one home each. The
// cost is that a stream's head is rendered as HTTP/1 and parsed again,
// which is small beside the exchange with the upstream.
//
// A connection speaks HTTP/2 when a TLS client chose h2 by ALPN, or, on a
// listener with h2c, when it opens with the HTTP/2 preface. It holds its
// clientConn (so it counts, and is cut, like any connection) but none of
// its buffers.

// h2Preface is the first line of the client connection preface, which an
// HTTP/1 head reader returns as a head of its own (RFC 9113 3.4).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\n")

// notHTTP1 reports whether a connection's first head is not HTTP/1 at all:
// its request line does not end in an HTTP version. On an h2c listener
// such an opening is an invalid HTTP/2 connection preface, a connection
// error (RFC 9113 3.4): the connection is closed without an answer, as an
// HTTP/2-only endpoint would, where an HTTP/1.1 400 would be noise to the
// HTTP/2 client that most likely sent it. A line that ends in any
// HTTP/x.y is HTTP/1's to answer (400, 505).
func notHTTP1(head []byte) bool {
	line := head
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		line = head[:i]
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	sp := bytes.LastIndexByte(line, ' ')
	return !bytes.HasPrefix(line[sp+1:], []byte("HTTP/"))
}

// h2Server is a listener's HTTP/2 side: its settings, and its live
// connections, which a drain tells to take no new streams.
type h2Server struct {
	maxStreams uint32 // SETTINGS_MAX_CONCURRENT_STREAMS
	// maxList is the header list size accepted (SETTINGS_MAX_HEADER_LIST_SIZE):
	// max_header_size, and 32 bytes for each of ten fields, which HTTP/2
	// counts on top of names and values (RFC 9113 6.5.2).
	maxList     uint32
	idleTimeout time.Duration // keepalive_timeout
	sendTimeout time.Duration

	mu       sync.Mutex
	conns    map[*h2Conn]struct{}
	draining bool

	stats *[config.H2CounterCount]atomic.Uint64 // the proxy's

	// streams pools the listener's h2Streams; readBufs, h2cConn's
	// read buffers; writeBufs, h2Writer's queues.
	streams, readBufs, writeBufs sync.Pool
}

func newH2Server(ls *listenerState, stats *[config.H2CounterCount]atomic.Uint64) *h2Server {
	cfg := &ls.cfg
	return &h2Server{
		stats:       stats,
		maxStreams:  uint32(cfg.MaxConcurrentStreams),
		maxList:     uint32(cfg.MaxHeaderSize + 10*32),
		idleTimeout: cfg.KeepaliveTimeout,
		sendTimeout: cfg.SendTimeout,
		conns:       map[*h2Conn]struct{}{},
	}
}

// add registers a connection; false when the listener drains, and the
// connection must go away at once.
func (h *h2Server) add(c *h2Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns[c] = struct{}{}
	return !h.draining
}

func (h *h2Server) remove(c *h2Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

// goAway tells every HTTP/2 connection of the listener to take no new
// streams (GOAWAY); each closes when its open streams are done.
func (h *h2Server) goAway() {
	h.mu.Lock()
	h.draining = true
	conns := make([]*h2Conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.goAway()
	}
}

// serveH2 runs the connection as HTTP/2 until it ends or parks. c is the
// TLS connection, or the cleartext one; pre, what was read from it already
// (the preface).
func (cc *clientConn) serveH2(c net.Conn, pre []byte) (parked bool) {
	if cc.br != nil {
		cc.releaseBuffers()
	}
	// Its streams have clientConns of their own: the connection's needs
	// no room for fields (3.5 kB).
	cc.req.headers, cc.resp.headers = nil, nil
	// Frames go out through the writer from here on, so a TCP_NODELAY
	// still deferred to the first response through sockIO would never
	// come (h2c): Nagle would hold every small frame for the peer's
	// delayed ACK.
	cc.io.noDelay()
	h := cc.ls.h2
	hc := newH2Conn(cc, h, &h2In{Conn: c, pool: &h.readBufs, pre: pre})
	return hc.serve()
}

// startH2C hands a cleartext connection that opened with the HTTP/2
// preface to serveH2, with what its read buffer already holds put back in
// front of the socket.
func (cc *clientConn) startH2C() (parked bool) {
	n := cc.br.Buffered()
	seen, _ := cc.br.Peek(n)
	pre := bytes.Clone(seen)
	cc.br.Discard(n)
	return cc.serveH2(rawSock(cc.c), pre)
}

// h2ReadBuf is the size of an HTTP/2 connection's read buffer.
const h2ReadBuf = 4 << 10

// h2In is an HTTP/2 connection's input (the TLS connection, or the
// cleartext socket), read through a buffer while frames come back to
// back: the framer reads a frame header, then its payload, each with its
// own read, where a client sending ten requests at once sends them in one
// segment (or TLS record). The buffer comes from a pool when a read is
// likely to find more than it asks for, and goes back once drained, so
// that an idle connection holds none. An idle connection waits in fill,
// which can be cut short to park it (park.go).
type h2In struct {
	net.Conn
	pre  []byte // read ahead before HTTP/2 began: read first
	pool *sync.Pool
	buf  *[h2ReadBuf]byte
	r, w int // buf[r:w] is read and not yet taken
	// more: the last read filled what it was given, so more is likely
	// waiting in the socket.
	more bool
	err  error // what the last fill met, for the next Read
}

func (c *h2In) take() {
	c.buf, _ = c.pool.Get().(*[h2ReadBuf]byte)
	if c.buf == nil {
		c.buf = new([h2ReadBuf]byte)
	}
	c.r, c.w = 0, 0
}

func (c *h2In) release() {
	c.pool.Put(c.buf)
	c.buf = nil
}

// buffered reports whether input is here that Read returns at once.
func (c *h2In) buffered() bool {
	return len(c.pre) > 0 || c.buf != nil || c.err != nil
}

// fill waits for input, and keeps what comes (or the error) for Read.
func (c *h2In) fill() error {
	if c.buffered() {
		return nil
	}
	c.take()
	n, err := c.Conn.Read(c.buf[:])
	c.w, c.more = n, n == h2ReadBuf
	if n == 0 {
		c.release()
	}
	c.err = err
	return err
}

func (c *h2In) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	if c.buf == nil {
		if err := c.err; err != nil {
			c.err = nil
			return 0, err
		}
		if !c.more || len(p) >= h2ReadBuf {
			n, err := c.Conn.Read(p)
			c.more = n == len(p)
			return n, err
		}
		c.take()
		n, err := c.Conn.Read(c.buf[:])
		c.w, c.more = n, n == h2ReadBuf
		if n == 0 {
			c.release()
			return 0, err
		}
		c.err = err
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	if c.r == c.w {
		c.release()
	}
	return n, nil
}
