package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
)

// clientConn is one client connection and everything its requests reuse:
// buffers, the parsed request and response, scratch space. One goroutine
// owns it; other goroutines only call cut.
type clientConn struct {
	p  *Proxy
	ls *listenerState
	c  net.Conn
	io *sockIO
	br *bufio.Reader
	// small is the connection's own read buffer while br is a larger one
	// taken from the listener's pool to buffer a body (nil otherwise);
	// pre feeds what small held into the larger one.
	small *bufio.Reader
	pre   prefixReader
	bw    *bufio.Writer // writes through the clientConn, which counts bytes

	written int64     // bytes written to c
	now     time.Time // the latest clock reading of this connection
	rdl     time.Time // the client read deadline currently set
	first   time.Time // first byte of a request head that took more than one read; zero otherwise
	wdl     time.Time // the client write deadline currently set
	nreq    int

	remote []byte // "ip:port"
	ip     []byte // client IP, for X-Forwarded-For, hashing, rate limits
	// client is the request's client for rate limits, hashing and the
	// access log: ip, or the address X-Forwarded-For names when the peer
	// is a trusted proxy (realclient.go); clientLog is what the access
	// log shows. realBuf holds a real address.
	client, clientLog []byte
	realBuf           []byte

	req    request
	resp   response
	chunk  chunkParser
	upHead upstreamHead

	up      atomic.Pointer[upConn] // upstream connection in use, for cut
	cutDown atomic.Bool
	// cutShort: the response was cut short after its head went out (an
	// HTTP/2 stream must then be reset, not ended).
	cutShort bool

	// h2Parked: the connection is an HTTP/2 one back from the parking
	// lot (h2_park.go). stream: this clientConn is one HTTP/2 stream's
	// request (h2_stream.go), read from and written to the stream.
	h2Parked *h2Conn
	stream   *h2Stream
	// idleSince: when the connection began to wait for a request without
	// its buffers (Unix nanoseconds), 0 when it is not waiting, or the
	// sweeper's claim to park it (see park.go).
	idleSince atomic.Int64
	// awaitRequest's state: awaitFn is await bound once; waiting: it
	// gave the buffers back and waits, since idleStart.
	awaitFn   func(fd uintptr) bool
	waiting   bool
	idleStart int64

	reqIDBuf [32]byte
	pathBuf  []byte // the normalized path of a request that needs it, for routing
	logBuf   []byte
	logCopy  []byte // method, host, path and request id copied for the access log
}

// exchange is the state of one request and its response, from the parsed
// head to the access log line: it travels down the request path as one
// value, so that no function takes part of it positionally.
type exchange struct {
	rt *route // nil until routed, and when nothing matched

	// Where the request's input is: headLen bytes of head at the front of
	// the client's read buffer and, when bodyBuffered, the whole body's
	// bodyLen bytes right after it, so the request can be replayed to
	// another server and consumed without a read. Otherwise the body is
	// still to come and is streamed (then nothing can be replayed).
	headLen      int
	bodyLen      int
	bodyBuffered bool
	maxBody      int64 // the route's or listener's body limit; 0: none
	// keep: the connection may carry another request after this one, as
	// far as the request and the listener's limits say.
	keep bool

	start         time.Time
	status        int
	bytesIn       int64
	writtenBefore int64 // client bytes written before this response
	upstream      string
	upDur         time.Duration // -1: no upstream attempt
	logged        bool          // method/host/path/id copied for the access log
	logOffsets    [5]int        // offsets in clientConn.logCopy: method, host, path, id, end
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	lflf     = []byte("\n\n")
)

// setDeadlines sets c's read and write deadlines to want, unless both are
// already within timeout/16 of it: a keep-alive connection serving a
// request every few milliseconds then pays one deadline update per
// connection every few seconds instead of one per request (the timeouts
// are honoured to within 1/16).
func setDeadlines(c net.Conn, rdl, wdl *time.Time, want time.Time, timeout time.Duration) {
	slack := timeout / 16
	if near(*rdl, want, slack) && near(*wdl, want, slack) {
		return
	}
	*rdl, *wdl = want, want
	c.SetDeadline(want)
}

func near(a, b time.Time, slack time.Duration) bool {
	if a.IsZero() {
		return false
	}
	d := a.Sub(b)
	return d <= slack && d >= -slack
}

// netipUnmap shows IPv4 clients of a dual-stack socket as IPv4.
func netipUnmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Write counts what reaches the client (bufio.Writer writes through it).
func (cc *clientConn) Write(b []byte) (int, error) {
	n, err := cc.io.Write(b)
	cc.written += int64(n)
	return n, err
}

// newClientConn registers an accepted connection; nil when the proxy is
// already closing (the connection is then closed).
func (p *Proxy) newClientConn(ls *listenerState, c net.Conn) *clientConn {
	cc := p.getClientConn()
	cc.reset(ls, c)
	if fc, ok := c.(*fileConn); ok {
		a := fc.remoteAddrPort()
		cc.remote = a.AppendTo(cc.remote[:0])
		cc.ip = a.Addr().AppendTo(cc.ip[:0])
	} else if ap, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a := netipUnmap(ap.AddrPort())
		cc.remote = a.AppendTo(cc.remote[:0])
		cc.ip = a.Addr().AppendTo(cc.ip[:0])
	} else if ra := c.RemoteAddr(); ra != nil {
		cc.remote = append(cc.remote[:0], ra.String()...)
		cc.ip = append(cc.ip[:0], cc.remote...)
	}
	p.mu.Lock()
	if p.closing.Load() {
		p.mu.Unlock()
		c.Close()
		return nil
	}
	p.conns[cc] = struct{}{}
	p.mu.Unlock()
	p.stats.active.Add(1)
	return cc
}

// getClientConn takes a clientConn from the pool, or makes one.
func (p *Proxy) getClientConn() *clientConn {
	cc, _ := p.ccPool.Get().(*clientConn)
	if cc == nil {
		cc = &clientConn{p: p, io: &sockIO{}}
		cc.awaitFn = cc.await
	}
	if cc.req.headers == nil { // new, or it held an HTTP/2 connection (serveH2)
		cc.req.headers = make([]header, 0, fieldsCap)
		cc.resp.headers = make([]header, 0, fieldsCap)
	}
	return cc
}

// reset readies a pooled clientConn for a new connection, keeping the
// capacity of its buffers.
func (cc *clientConn) reset(ls *listenerState, c net.Conn) {
	cc.ls, cc.c = ls, c
	cc.written, cc.nreq = 0, 0
	cc.rdl, cc.wdl = time.Time{}, time.Time{}
	cc.up.Store(nil)
	cc.cutDown.Store(false)
	cc.idleSince.Store(0)
	cc.io.reset(c)
}

// cut closes the connection under its goroutine (drain deadline, Close).
func (cc *clientConn) cut() {
	cc.cutDown.Store(true)
	cc.c.Close()
	if uc := cc.up.Load(); uc != nil {
		uc.c.Close()
	}
}

// setUpstream records the upstream connection in use (nil: none), so that
// cut can close it too. It reports false when the connection was cut.
func (cc *clientConn) setUpstream(uc *upConn) bool {
	cc.up.Store(uc)
	if uc != nil && cc.cutDown.Load() {
		uc.c.Close()
		return false
	}
	return true
}

// serve runs the connection's requests one after the other, until the
// connection ends or parks (see park.go).
func (cc *clientConn) serve() {
	if h := cc.h2Parked; h != nil {
		// An HTTP/2 connection back from the parking lot.
		cc.h2Parked = nil
		if !h.resume(cc) {
			cc.finish(false)
		}
		return
	}
	ls := &cc.ls.cfg
	cc.takeBuffers()
	cc.now = time.Now()
	linger, parked := false, false
	defer func() {
		if !parked {
			cc.finish(linger)
		}
	}()
	if fc, ok := cc.c.(*fileConn); ok && !fc.opened {
		// A new connection: first the PROXY header, then TLS, each read
		// from the socket as it is. (Not again when it comes back from
		// the parking lot before its first request.)
		fc.opened = true
		if cc.ls.cfg.ProxyProtocol && !cc.readProxyHeader() {
			return
		}
		if cc.ls.tls != nil {
			ok, h2 := cc.handshake()
			if !ok {
				return
			}
			if h2 {
				// On a goroutine of its own: this one's stack grew for
				// the handshake, and the reading loop would keep it for
				// as long as the connection is busy.
				parked = true // finish is the new goroutine's
				go func() {
					if !cc.serveH2(cc.c, nil) {
						cc.finish(false)
					}
				}()
				return
			}
		}
	}
	for {
		if cc.small != nil && cc.br.Buffered() == 0 {
			cc.shrinkReader()
		}
		wait := ls.KeepaliveTimeout
		if cc.nreq == 0 {
			wait = ls.ClientHeaderTimeout
		}
		setDeadlines(cc.c, &cc.rdl, &cc.wdl, cc.now.Add(wait), wait)
		if cc.br.Buffered() == 0 && !cc.awaitRequest() {
			parked = true
			return
		}
		cc.client, cc.clientLog = cc.ip, cc.remote // until a request names another (handle)
		head, st := cc.readHead()
		if head == nil {
			if st != 0 {
				cc.req.isHead, cc.req.method = false, nil
				ex := exchange{start: time.Now(), status: st, upDur: -1, writtenBefore: cc.written + int64(cc.bw.Buffered())}
				cc.now = ex.start
				cc.sendError(&ex, st, false, 0, nil)
				cc.recordExchange(&ex)
				linger = true
			}
			return
		}
		if cc.nreq == 0 && ls.H2C {
			if bytes.Equal(head, h2Preface) {
				parked = cc.startH2C()
				return
			}
			if notHTTP1(head) {
				return
			}
		}
		cc.nreq++
		keep, unread := cc.handle(head)
		if !keep {
			linger = unread
			return
		}
	}
}

// finish closes the connection and gives its buffers back.
func (cc *clientConn) finish(linger bool) {
	if cc.bw != nil {
		cc.bw.Flush()
	}
	if linger && !cc.cutDown.Load() {
		lingerClose(cc.c)
	}
	cc.p.closer.close(cc.c)
	if cc.small != nil {
		cc.shrinkReader()
	}
	if cc.br != nil {
		cc.releaseBuffers()
	}
	p := cc.p
	p.stats.active.Add(-1)
	cc.ls.connDone()
	p.mu.Lock()
	delete(p.conns, cc)
	p.noteConnGone()
	p.mu.Unlock()
	cc.c = nil
	cc.io.reset(nil)
	p.ccPool.Put(cc)
}

// lingerClose half-closes and reads what the client still sends for a
// moment before closing: closing with unread input makes the kernel send
// a reset, which can destroy the error response before the client reads
// it (a 413 answered while the body is still coming, say).
func lingerClose(c net.Conn) {
	hc, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return
	}
	hc.CloseWrite()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.CopyN(io.Discard, c, 1<<20)
}

// readHead waits for a complete request head in the read buffer and
// returns it (it stays in the buffer). nil with status 0: the client went
// away or stayed idle; nil with a status: answer it and close.
func (cc *clientConn) readHead() ([]byte, int) {
	cc.first = time.Time{}
	head, err := readMessageHead(cc.br, cc.ls.cfg.MaxHeaderSize, true, cc.startHeadClock)
	switch {
	case err == nil:
		return head, 0
	case err == errHeadFraming:
		return nil, statusBadRequest
	case cc.br.Buffered() == 0:
		return nil, 0 // idle: the client went away or kept silent
	case err == errHeadTooLarge:
		buf, _ := cc.br.Peek(cc.br.Buffered())
		return nil, headTooLarge(buf)
	case isTimeout(err):
		return nil, statusRequestTimeout
	}
	return nil, 0
}

// startHeadClock runs at a head's first byte: from there the whole head
// must arrive within client_header_timeout, and within request_timeout.
func (cc *clientConn) startHeadClock() {
	now := time.Now()
	cc.now, cc.first = now, now
	wait := cc.ls.cfg.ClientHeaderTimeout
	if rt := cc.ls.cfg.RequestTimeout; rt > 0 && rt < wait {
		wait = rt
	}
	cc.rdl = now.Add(wait)
	cc.c.SetReadDeadline(cc.rdl)
}

// headTooLarge is the status for a head that outgrew the buffer: 414 while
// the request line itself has not ended, 431 when the header fields did.
func headTooLarge(buf []byte) int {
	if bytes.IndexByte(buf, '\n') < 0 {
		return statusURITooLong
	}
	return statusHeaderTooLarge
}

func max0(n int) int {
	if n < 0 {
		return 0
	}
	return n
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// handle serves one request whose head is in the read buffer. keep is
// whether the connection stays open; unread is whether input may be left
// unread (then the connection is closed with a linger).
func (cc *clientConn) handle(head []byte) (keep, unread bool) {
	p := cc.p
	p.stats.inFlight.Add(1)
	defer p.stats.inFlight.Add(-1)
	start := time.Now()
	cc.now = start
	ex := exchange{start: start, bytesIn: int64(len(head)), upDur: -1, writtenBefore: cc.written + int64(cc.bw.Buffered())}
	req := &cc.req
	if st := parseRequest(req, head); st != parseOK {
		cc.br.Discard(len(head))
		cc.sendError(&ex, st, false, 0, errors.New("malformed request"))
		cc.recordExchange(&ex)
		return false, true
	}
	if cc.ls.realIP {
		if real := cc.realClient(req); real != nil {
			cc.client, cc.clientLog = real, real
		}
	}
	if p.alog.Load() != nil {
		cc.copyForLog(&ex)
	}
	ls := &cc.ls.cfg
	ex.keep = req.keepAlive() && !p.draining.Load() &&
		(ls.KeepaliveRequests <= 0 || cc.nreq < ls.KeepaliveRequests)

	// Where is the body? Wholly in the buffer (it can be replayed and
	// consumed without a read), or still to come.
	headLen := len(head)
	ex.headLen, ex.bodyBuffered = headLen, true
	switch {
	case req.chunked:
		cc.chunk.reset()
		all, _ := cc.br.Peek(cc.br.Buffered())
		n, err := cc.chunk.scan(all[headLen:])
		if err != nil {
			cc.br.Discard(headLen)
			cc.sendError(&ex, statusBadRequest, false, 0, errors.New("invalid chunked request body"))
			cc.recordExchange(&ex)
			return false, true
		}
		if n < 0 || cc.chunk.trailer > len("\r\n") {
			// Incomplete, or with trailer fields: those are dropped, so
			// the body goes through copyChunked rather than verbatim.
			ex.bodyBuffered = false
		} else {
			ex.bodyLen = n
		}
	case req.contentLength > 0:
		if int64(cc.br.Buffered()-headLen) >= req.contentLength {
			ex.bodyLen = int(req.contentLength)
		} else {
			ex.bodyBuffered = false
		}
	}
	ex.bytesIn += int64(ex.bodyLen)

	// Routes match the normalized path (see appendNormalizedPath); the
	// request still goes upstream as the client wrote it.
	matchPath := req.path
	if pathNeedsNormalizing(matchPath) {
		var ok bool
		if cc.pathBuf, ok = appendNormalizedPath(cc.pathBuf[:0], matchPath); !ok {
			cc.br.Discard(headLen)
			cc.sendError(&ex, statusBadRequest, false, 0, errors.New("malformed request path"))
			cc.recordExchange(&ex)
			return false, true
		}
		matchPath = cc.pathBuf
	}
	rt := cc.ls.table.match(req.host, matchPath)
	ex.rt = rt
	unread = !ex.bodyBuffered
	switch {
	case rt == nil:
		keep = cc.refuse(&ex, statusNotFound, 0, nil)
	case rt.respond != nil:
		keep = cc.respondFixed(&ex)
	default:
		keep = cc.proxyRequest(&ex)
		unread = false // proxyRequest consumed the body or closes
	}
	cc.recordExchange(&ex)
	return keep, unread
}

// ensureWriteDeadline makes sure the client write deadline leaves at least
// half the send timeout, refreshing it only when needed: most requests pay
// no deadline call for it.
func (cc *clientConn) ensureWriteDeadline() {
	to := cc.ls.cfg.SendTimeout
	if cc.wdl.Sub(cc.now) < to/2 {
		cc.wdl = cc.now.Add(to)
		cc.c.SetWriteDeadline(cc.wdl)
	}
}

// logSendTimeout logs a response cut because the client took none of it
// for send_timeout (nginx: "client timed out ... while sending to
// client"): at info, as it is the client's doing, but an operator looking
// for truncated downloads needs to see it.
func (cc *clientConn) logSendTimeout(ex *exchange) {
	log := cc.p.log
	if !log.IsInfo() {
		return
	}
	log.Info("client timed out taking the response; connection closed",
		append(cc.logFields(ex, ex.status), "sent", cc.written-ex.writtenBefore, "send_timeout", cc.ls.cfg.SendTimeout)...)
}
