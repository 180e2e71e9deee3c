package proxy

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/http2"
)

// HTTP/2 to clients. golang.org/x/net/http2 is the codec: frames, HPACK,
// flow control, stream limits, and the defences against the known attacks
// (rapid reset: at most max_concurrent_streams handlers run and a client
// whose resets outrun them is sent GOAWAY; CONTINUATION floods and HPACK
// bombs: a header block is bounded by max_header_size while it is decoded;
// SETTINGS and PING floods: a bounded queue of control frames, then
// ENHANCE_YOUR_CALM). It also refuses what would smuggle a request past an
// HTTP/1.1 upstream: CR, LF or NUL in a field, connection-specific fields,
// a content-length the DATA frames do not match.
//
// Each stream then becomes one request of the HTTP/1 engine (h2_stream.go):
// routing, header rules, limits, rate limits, timeouts, buffering, retries
// and the access log are the HTTP/1 path's own, with one home each. The
// cost is that a stream's head is rendered as HTTP/1 and parsed again,
// which is small beside what the codec spends per stream.
//
// A connection speaks HTTP/2 when a TLS client chose h2 by ALPN, or, on a
// listener with h2c, when it opens with the HTTP/2 preface. It holds its
// clientConn (so it counts, and is cut, like any connection) but none of
// its buffers: x/net has its own.

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

// h2Server is a listener's HTTP/2 configuration.
type h2Server struct {
	srv *http2.Server
	// base carries max_header_size to x/net and, through Shutdown, the
	// GOAWAY of a drain to every connection of the listener.
	base *http.Server
	// streams pools the listener's h2Streams; readBufs, h2cConn's
	// read buffers; writeBufs, h2Writer's queues.
	streams, readBufs, writeBufs sync.Pool
}

func newH2Server(p *Proxy, ls *listenerState) *h2Server {
	cfg := &ls.cfg
	base := &http.Server{
		MaxHeaderBytes: cfg.MaxHeaderSize,
		// x/net logs little without VerboseLogs (a handler's panic, a
		// failed write of a frame); into the worker's log, not stderr.
		ErrorLog: p.log.Named("http2").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	srv := &http2.Server{
		MaxConcurrentStreams: uint32(cfg.MaxConcurrentStreams),
		// A connection without streams for keepalive_timeout is closed
		// (with GOAWAY), as an idle HTTP/1.1 one is.
		IdleTimeout: cfg.KeepaliveTimeout,
		// A client that takes nothing we send stalls the connection for
		// send_timeout at most.
		WriteByteTimeout: cfg.SendTimeout,
		// The RFC's default frame size, not x/net's 1 MiB: x/net reads a
		// frame whole into a buffer the connection keeps, so a client's
		// largest frame sets the memory each connection holds.
		MaxReadFrameSize: 16 << 10,
	}
	// ConfigureServer only fails on a TLS config that lacks an h2 cipher
	// suite, and base has none.
	_ = http2.ConfigureServer(base, srv)
	return &h2Server{srv: srv, base: base}
}

// goAway tells every HTTP/2 connection of the listener to take no new
// streams (GOAWAY); each closes when its open streams are done.
func (h *h2Server) goAway() {
	go h.base.Shutdown(context.Background())
}

// h2Conn is what an HTTP/2 connection's clientConn keeps of it: its
// streams, which must end before the connection is counted gone.
type h2Conn struct {
	streams sync.WaitGroup
	// x/net runs each stream's handler on a goroutine of its own and
	// returns from ServeConn without waiting for them: a handler can
	// begin after the connection ended, when cc may already serve
	// another. Once ended is set (under mu), a handler turns back.
	mu    sync.Mutex
	ended bool
}

// enter counts a stream in, unless the connection has ended.
func (h *h2Conn) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return false
	}
	h.streams.Add(1)
	return true
}

// serveH2 runs the connection as HTTP/2 until it ends. c is the TLS
// connection, or the cleartext one with the bytes already read from it
// (the preface) in front.
func (cc *clientConn) serveH2(c net.Conn) {
	if cc.br != nil {
		cc.releaseBuffers()
	}
	// Its streams have clientConns of their own: the connection's needs
	// no room for fields (3.5 kB).
	cc.req.headers, cc.resp.headers = nil, nil
	// x/net writes the socket itself from here on, so a TCP_NODELAY still
	// deferred to the first response through sockIO would never come (h2c):
	// Nagle would hold every small frame for the peer's delayed ACK.
	cc.io.noDelay()
	// Deadlines are x/net's from here (the handshake's would cut it).
	c.SetDeadline(time.Time{})
	c = newH2Writer(c, cc.ls.cfg.SendTimeout, &cc.ls.h2.writeBufs)
	h := &h2Conn{}
	cc.h2 = h
	defer func() {
		h.mu.Lock()
		h.ended = true
		h.mu.Unlock()
		h.streams.Wait()
		cc.h2 = nil
	}()
	// The guard mends where x/net departs from RFC 9113 (h2_guard.go).
	cc.ls.h2.srv.ServeConn(guardH2(c, cc.ls.h2.limits()), &http2.ServeConnOpts{
		Context:    cc.p.ctx,
		BaseConfig: cc.ls.h2.base,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h.enter() {
				defer h.streams.Done()
				cc.serveStream(w, r)
			}
		}),
	})
}

// startH2C hands a cleartext connection that opened with the HTTP/2
// preface to serveH2, with what its read buffer already holds put back in
// front of the socket.
func (cc *clientConn) startH2C() {
	n := cc.br.Buffered()
	seen, _ := cc.br.Peek(n)
	c := &h2cConn{Conn: rawSock(cc.c), pool: &cc.ls.h2.readBufs, pre: bytes.Clone(seen)}
	cc.br.Discard(n)
	cc.serveH2(c)
}

// h2cReadBuf is the size of a cleartext HTTP/2 connection's read buffer.
const h2cReadBuf = 4 << 10

// h2cConn is a cleartext HTTP/2 connection, read through a buffer while
// frames come back to back. x/net reads the socket itself, a frame header
// then its payload, each with its own read: two system calls a frame,
// where a client sending ten requests at once sends them in one segment.
// The buffer comes from a pool when a read is likely to find more than it
// asks for, and goes back once drained, so that an idle connection, whose
// next read waits for a frame header, holds none.
type h2cConn struct {
	net.Conn
	pre  []byte // read ahead before HTTP/2 began: read first
	pool *sync.Pool
	buf  *[h2cReadBuf]byte
	r, w int // buf[r:w] is read and not yet taken
	// more: the last read filled what it was given, so more is likely
	// waiting in the socket.
	more bool
}

func (c *h2cConn) take() {
	c.buf, _ = c.pool.Get().(*[h2cReadBuf]byte)
	if c.buf == nil {
		c.buf = new([h2cReadBuf]byte)
	}
	c.r, c.w = 0, 0
}

func (c *h2cConn) release() {
	c.pool.Put(c.buf)
	c.buf = nil
}

func (c *h2cConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	if c.buf == nil {
		if !c.more || len(p) >= h2cReadBuf {
			n, err := c.Conn.Read(p)
			c.more = n == len(p)
			return n, err
		}
		c.take()
		n, err := c.Conn.Read(c.buf[:])
		c.w, c.more = n, n == h2cReadBuf
		if n == 0 {
			c.release()
			return 0, err
		}
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	if c.r == c.w {
		c.release()
	}
	return n, nil
}
