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

	req    request
	resp   response
	chunk  chunkParser
	upHead upstreamHead

	up      atomic.Pointer[upConn] // upstream connection in use, for cut
	cutDown atomic.Bool

	reqIDBuf [32]byte
	pathBuf  []byte // the normalized path of a request that needs it, for routing
	logBuf   []byte
	logCopy  []byte // method, host, path and request id copied for the access log
}

// exchange is the per-request bookkeeping of one request/response.
type exchange struct {
	rt            *route
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
	cc, _ := p.ccPool.Get().(*clientConn)
	if cc == nil {
		cc = &clientConn{p: p, io: &sockIO{}}
		cc.req.headers = make([]header, 0, 32)
		cc.resp.headers = make([]header, 0, 32)
	}
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

// reset readies a pooled clientConn for a new connection, keeping the
// capacity of its buffers.
func (cc *clientConn) reset(ls *listenerState, c net.Conn) {
	cc.ls, cc.c = ls, c
	cc.written, cc.nreq = 0, 0
	cc.rdl, cc.wdl = time.Time{}, time.Time{}
	cc.up.Store(nil)
	cc.cutDown.Store(false)
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

// serve runs the connection's requests one after the other.
func (cc *clientConn) serve() {
	p := cc.p
	ls := &cc.ls.cfg
	cc.br = cc.ls.readers.getReader(cc.io)
	cc.bw = p.clientWriters.getWriter(cc)
	cc.now = time.Now()
	linger := false
	defer func() { cc.finish(linger) }()
	for {
		if cc.small != nil && cc.br.Buffered() == 0 {
			cc.shrinkReader()
		}
		wait := ls.KeepaliveTimeout
		if cc.nreq == 0 {
			wait = ls.ClientHeaderTimeout
		}
		setDeadlines(cc.c, &cc.rdl, &cc.wdl, cc.now.Add(wait), wait)
		head, st := cc.readHead()
		if head == nil {
			if st != 0 {
				cc.req.isHead, cc.req.method = false, nil
				ex := exchange{start: time.Now(), status: st, upDur: -1, writtenBefore: cc.written + int64(cc.bw.Buffered())}
				cc.now = ex.start
				cc.answer(&ex, st, false, 0, nil)
				cc.done(&ex)
				linger = true
			}
			return
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
	cc.bw.Flush()
	if linger && !cc.cutDown.Load() {
		lingerClose(cc.c)
	}
	cc.p.closer.close(cc.c)
	if cc.small != nil {
		cc.shrinkReader()
	}
	cc.ls.readers.putReader(cc.br)
	cc.p.clientWriters.putWriter(cc.bw)
	cc.br, cc.bw = nil, nil
	p := cc.p
	p.stats.active.Add(-1)
	cc.ls.connDone()
	p.mu.Lock()
	delete(p.conns, cc)
	if p.waitIdle && !p.idleClosed && len(p.conns) == 0 {
		p.waitIdle = false
		p.idleClosed = true
		close(p.idle)
	}
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
	br := cc.br
	limit := cc.ls.cfg.MaxHeaderSize
	cc.first = time.Time{}
	deadlineSet := false
	scanned := 0
	for {
		n := br.Buffered()
		if n > 0 {
			buf, _ := br.Peek(n)
			// RFC 9112 2.2: ignore empty lines before a request line.
			if buf[0] == '\r' || buf[0] == '\n' {
				if n >= 2 && buf[0] == '\r' && buf[1] == '\n' {
					br.Discard(2)
					scanned = 0
					continue
				}
				if buf[0] == '\n' || n >= 2 {
					return nil, statusBadRequest
				}
			}
			from := max0(scanned - 3)
			if i := bytes.Index(buf[from:], crlfcrlf); i >= 0 {
				return buf[:from+i+4], 0
			}
			if n >= limit {
				return nil, headTooLarge(buf)
			}
			if bytes.Contains(buf[from:], lflf) {
				return nil, statusBadRequest // bare LF line endings
			}
			scanned = n
			if !deadlineSet {
				// From the first byte the whole head must arrive within
				// client_header_timeout, and within request_timeout.
				deadlineSet = true
				now := time.Now()
				cc.now, cc.first = now, now
				wait := cc.ls.cfg.ClientHeaderTimeout
				if rt := cc.ls.cfg.RequestTimeout; rt > 0 && rt < wait {
					wait = rt
				}
				cc.rdl = now.Add(wait)
				cc.c.SetReadDeadline(cc.rdl)
			}
		}
		if _, err := br.Peek(n + 1); err != nil {
			if n > 0 && isTimeout(err) {
				return nil, statusRequestTimeout
			}
			if n > 0 && errors.Is(err, bufio.ErrBufferFull) {
				b, _ := br.Peek(n)
				return nil, headTooLarge(b)
			}
			return nil, 0
		}
	}
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
		cc.answer(&ex, st, false, 0, errors.New("malformed request"))
		cc.done(&ex)
		return false, true
	}
	if p.alog.Load() != nil {
		cc.copyForLog(&ex)
	}
	ls := &cc.ls.cfg
	keep = req.keepAlive() && !p.draining.Load() &&
		(ls.KeepaliveRequests <= 0 || cc.nreq < ls.KeepaliveRequests)

	// Where is the body? Wholly in the buffer (it can be replayed and
	// consumed without a read), or still to come.
	headLen := len(head)
	bodyLen, buffered := 0, true
	switch {
	case req.chunked:
		cc.chunk.reset()
		all, _ := cc.br.Peek(cc.br.Buffered())
		n, err := cc.chunk.scan(all[headLen:])
		if err != nil {
			cc.br.Discard(headLen)
			cc.answer(&ex, statusBadRequest, false, 0, errors.New("invalid chunked request body"))
			cc.done(&ex)
			return false, true
		}
		if n < 0 || cc.chunk.trailer > len("\r\n") {
			// Incomplete, or with trailer fields: those are dropped, so
			// the body goes through copyChunked rather than verbatim.
			buffered = false
		} else {
			bodyLen = n
		}
	case req.contentLength > 0:
		if int64(cc.br.Buffered()-headLen) >= req.contentLength {
			bodyLen = int(req.contentLength)
		} else {
			buffered = false
		}
	}
	ex.bytesIn += int64(bodyLen)

	// Routes match the normalized path (see appendNormalizedPath); the
	// request still goes upstream as the client wrote it.
	matchPath := req.path
	if pathNeedsNormalizing(matchPath) {
		var ok bool
		if cc.pathBuf, ok = appendNormalizedPath(cc.pathBuf[:0], matchPath); !ok {
			cc.br.Discard(headLen)
			cc.answer(&ex, statusBadRequest, false, 0, errors.New("malformed request path"))
			cc.done(&ex)
			return false, true
		}
		matchPath = cc.pathBuf
	}
	rt := cc.ls.table.match(req.host, matchPath)
	ex.rt = rt
	switch {
	case rt == nil:
		keep = cc.local(&ex, statusNotFound, keep, buffered, headLen+bodyLen, 0, nil)
	case rt.respond != nil:
		keep = cc.local(&ex, 0, keep, buffered, headLen+bodyLen, 0, nil)
	default:
		keep = cc.proxyRequest(&ex, rt, headLen, bodyLen, buffered, keep)
		buffered = true // proxyRequest consumed the body or closes
	}
	cc.done(&ex)
	return keep, !buffered
}

// local answers a request by itself (a respond route when status is 0, an
// error otherwise), consuming a buffered body. A body that is not in the
// buffer is not read: the connection is closed after the response.
func (cc *clientConn) local(ex *exchange, status int, keep, buffered bool, consume int, retryAfter int64, cause error) bool {
	if buffered {
		cc.br.Discard(consume)
	} else {
		keep = false
	}
	if status == 0 {
		rt := ex.rt
		cc.ensureWriteDeadline()
		mode := cc.connMode(keep)
		rt.respond.write(cc.bw, mode, cc.req.isHead, 0)
		ex.status = rt.respond.status
		if err := cc.bw.Flush(); err != nil {
			return false
		}
		return keep
	}
	return cc.answer(ex, status, keep, retryAfter, cause)
}

// connMode is what the response says about the connection.
func (cc *clientConn) connMode(keep bool) connMode {
	switch {
	case !keep:
		return connClose
	case cc.req.minor == 0:
		return connKeepAlive
	}
	return connDefault
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

// answer sends an error response and logs it. It reports whether the
// connection stays open.
func (cc *clientConn) answer(ex *exchange, status int, keep bool, retryAfter int64, cause error) bool {
	cc.now = time.Now() // an error may come after a long wait
	cc.ensureWriteDeadline()
	writeError(cc.bw, status, cc.connMode(keep), retryAfter, cc.req.isHead && status != statusBadRequest)
	ex.status = status
	err := cc.bw.Flush()
	cc.logError(ex, status, cause)
	return keep && err == nil
}

// routeName is the matched route's name for the logs; empty before
// routing or when nothing matched.
func (ex *exchange) routeName() string {
	if ex.rt == nil {
		return ""
	}
	return ex.rt.name
}

// logFields are what every error-log line about an exchange names.
func (cc *clientConn) logFields(ex *exchange, status int) []any {
	return []any{"status", status, "route", ex.routeName(), "upstream", ex.upstream, "client", string(cc.remote)}
}

// logError logs an error response with its route and upstream: 5xx as
// warnings, 4xx as info.
func (cc *clientConn) logError(ex *exchange, status int, cause error) {
	log := cc.p.log
	if (status >= statusInternalError && !log.IsWarn()) || (status < statusInternalError && !log.IsInfo()) {
		return
	}
	args := cc.logFields(ex, status)
	if cc.req.method != nil && status != statusBadRequest && status != statusHeaderTooLarge {
		args = append(args, "method", string(cc.req.method))
	}
	if cause != nil {
		args = append(args, "error", cause.Error())
	}
	if status >= statusInternalError {
		log.Warn("error response", args...)
	} else {
		log.Info("error response", args...)
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

// copyForLog keeps what the access log needs from the head, which a
// streamed body overwrites.
func (cc *clientConn) copyForLog(ex *exchange) {
	r := &cc.req
	b := cc.logCopy[:0]
	ex.logOffsets[0] = len(b)
	b = append(b, r.method...)
	ex.logOffsets[1] = len(b)
	b = append(b, r.host...)
	ex.logOffsets[2] = len(b)
	b = append(b, r.target...)
	ex.logOffsets[3] = len(b)
	b = append(b, r.reqID...)
	ex.logOffsets[4] = len(b)
	cc.logCopy = b
	ex.logged = true
}

// setLogRequestID records a generated request id for the access log.
func (cc *clientConn) setLogRequestID(ex *exchange, id []byte) {
	if !ex.logged {
		return
	}
	cc.logCopy = append(cc.logCopy[:ex.logOffsets[3]], id...)
	ex.logOffsets[4] = len(cc.logCopy)
}

// done writes the exchange's access log line, then counts it (so a
// counted request is already in the log buffer).
func (cc *clientConn) done(ex *exchange) {
	p := cc.p
	out := cc.written + int64(cc.bw.Buffered()) - ex.writtenBefore
	// The latest clock reading (the response head, or the last refill of a
	// streamed body) is the end as far as the histogram can tell: a
	// response already buffered or in the kernel is a few microseconds
	// from done. The access log reads the clock.
	a := p.alog.Load()
	end := cc.now
	if a != nil {
		end = time.Now()
		cc.now = end
	}
	p.stats.reqLatency.observe(end.Sub(ex.start))
	if ex.upDur >= 0 {
		p.stats.upLatency.observe(ex.upDur)
	}
	if a != nil {
		e := logEntry{start: ex.start, end: end, client: cc.remote, status: ex.status,
			bytesIn: ex.bytesIn, bytesOut: out, upstream: ex.upstream, upstreamDu: ex.upDur}
		if ex.logged {
			l := cc.logCopy
			e.method, e.host, e.path, e.requestID = l[ex.logOffsets[0]:ex.logOffsets[1]], l[ex.logOffsets[1]:ex.logOffsets[2]], l[ex.logOffsets[2]:ex.logOffsets[3]], l[ex.logOffsets[3]:ex.logOffsets[4]]
			if len(e.path) == 0 && len(e.method) > 0 {
				e.path = slashPath
			}
		}
		if ex.rt != nil {
			e.route = ex.rt.name
		}
		cc.logBuf = appendLogLine(cc.logBuf[:0], &e)
		a.write(cc.logBuf)
	}
	p.stats.bytesIn.Add(uint64(ex.bytesIn))
	p.stats.bytesOut.Add(uint64(out))
	class := statusClass(ex.status)
	if ex.rt != nil {
		ex.rt.responses[class].Add(1)
	} else {
		p.stats.unrouted[class].Add(1)
	}
	p.stats.requests.Add(1)
}
