package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/pingora-go/pingora/proxy/upstream"
)

// This file forwards a request to its upstream: server choice, retries,
// the upstream connection, and relaying the response back.

// outcome is how one attempt at a server ended.
type outcome uint8

const (
	outDone        outcome = iota // response relayed (or the client is gone): stop
	outConnectFail                // no connection: next server, any method
	outUpstreamErr                // failed before the response head: retry if idempotent and replayable
	outBadResponse                // invalid response head: no retry
	outAnswered                   // the attempt answered the client itself (400, 408, 413, 502 mid-body)
	outLocalErr                   // the proxy itself failed (out of descriptors, buffers, ports): no retry, not the server's fault
	outNotResent                  // a reused connection died under a non-idempotent request already sent: no retry, no blame
)

// attemptResult is an attempt's outcome with the status to answer when no
// further attempt is made.
type attemptResult struct {
	out    outcome
	status int
	keep   bool
	err    error
}

var (
	errNoServer     = errors.New("no usable upstream server")
	errBadResponse  = errors.New("invalid response from upstream")
	errUpstreamGone = errors.New("upstream closed the connection before responding")
)

// proxyRequest forwards a request to rt's upstream, with retries, and
// relays the response. It reports whether the client connection stays
// open. The body is consumed (or the connection closes) when it returns.
func (cc *clientConn) proxyRequest(ex *exchange) bool {
	p := cc.p
	rt := ex.rt
	req := &cc.req
	u := rt.up
	ls := &cc.ls.cfg

	if rt.limiter != nil {
		key := cc.client
		if rt.limitHeader != nil {
			key = findHeader(req, rt.limitHeader)
		}
		if key != nil {
			if ok, wait := rt.limiter.Allow(key, ex.start); !ok {
				p.stats.rateLimited.Add(1)
				secs := int64((wait + time.Second - 1) / time.Second)
				return cc.refuse(ex, statusTooManyRequests, max(secs, 1), errors.New("rate limited"))
			}
		}
	}
	ex.maxBody = rt.maxBody
	if ex.maxBody < 0 {
		ex.maxBody = ls.MaxBodySize
	}
	if maxBody := ex.maxBody; maxBody > 0 && (req.contentLength > maxBody || (req.chunked && ex.bodyBuffered && cc.chunk.total > maxBody)) {
		return cc.refuse(ex, statusContentTooLarge, 0, errBodyTooLarge)
	}

	cc.upHead.clientIP = cc.ip
	cc.upHead.reqID = nil
	if req.reqID == nil {
		cc.upHead.reqID = p.newRequestID(cc.reqIDBuf[:0])
		cc.setLogRequestID(ex, cc.upHead.reqID)
	}
	cc.upHead.upgrade = req.connUpgrade && req.upgrade != nil
	cc.upHead.https = cc.ls.tls != nil

	if req.expect100 && !ex.bodyBuffered && req.minor >= 1 {
		// The client waits for our go-ahead before sending the body (an
		// HTTP/1.0 client sends it anyway and must get no 1xx).
		cc.ensureWriteDeadline()
		cc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if cc.bw.Flush() != nil {
			return false
		}
	}
	if !ex.bodyBuffered && cc.buffersBodies(rt) {
		st, err := cc.bufferBody(ex)
		if st != 0 {
			return cc.refuse(ex, st, 0, err) // the body is not whole: refuse closes
		}
		if err != nil {
			return false // the client went away
		}
	}

	key := cc.hashKey(u, req)
	var tried upstream.Tried
	res := attemptResult{out: outConnectFail, status: statusUnavailable, err: errNoServer}
	for attempt := 0; attempt <= u.retries; attempt++ {
		srv := u.pool.Pick(key, &tried)
		if srv == nil {
			break
		}
		tried.Add(srv)
		ss := u.state(srv)
		ex.upstream = srv.Addr
		srv.Begin()
		res = cc.attempt(ex, ss)
		srv.End()
		if cc.cutDown.Load() {
			return false // Close or the drain deadline: not the server's fault
		}
		switch res.out {
		case outDone, outAnswered:
			return res.keep
		case outConnectFail:
			p.stats.upstreamErr.Add(1)
			srv.Fail(cc.now)
			cc.logAttempt(ex, res)
			continue
		case outUpstreamErr:
			p.stats.upstreamErr.Add(1)
			srv.Fail(cc.now)
			cc.logAttempt(ex, res)
			if req.idempotent && ex.bodyBuffered {
				continue
			}
		case outBadResponse:
			// Not a failure for passive health (nginx counts
			// invalid_header only when proxy_next_upstream lists it,
			// which its default does not): one malformed answer must
			// not take the server out for every client.
			p.stats.upstreamErr.Add(1)
		case outLocalErr:
			// The proxy's own failure: no server is blamed, and no
			// other server would fare better.
		case outNotResent:
			// The race with the server's idle timeout, as for the
			// reused connections replaced in attempt: not a server
			// failure, but the request may have had its effect.
			p.stats.upstreamErr.Add(1)
		}
		break
	}
	return cc.refuse(ex, res.status, 0, res.err)
}

// logAttempt notes a failed attempt that will be retried (or answered).
func (cc *clientConn) logAttempt(ex *exchange, res attemptResult) {
	if log := cc.p.log; log.IsDebug() {
		log.Debug("upstream attempt failed", "route", ex.routeName(), "upstream", ex.upstream, "error", res.err)
	}
}

// findHeader returns the value of the first header named name, or nil.
func findHeader(req *request, name []byte) []byte {
	for i := range req.headers {
		if equalFold(req.headers[i].name, name) {
			return req.headers[i].value
		}
	}
	return nil
}

// hashKey is the balancing key of the request (hash and fnv only).
func (cc *clientConn) hashKey(u *upstreamState, req *request) []byte {
	switch u.hashKey {
	case hashClientIP:
		return cc.client
	case hashURI:
		return req.target
	case hashHeader:
		return findHeader(req, u.hashHeader)
	}
	return nil
}

// newRequestID appends a fresh X-Request-Id: the proxy's random prefix and
// a counter, 32 hex digits.
func (p *Proxy) newRequestID(dst []byte) []byte {
	seq := p.reqIDSeq.Add(1)
	dst = append(dst, p.reqIDPrefix[:]...)
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, hexDigits[seq>>uint(shift)&0xf])
	}
	return dst
}

// attempt sends the request to one server and relays the response. A
// pooled connection that turns out dead before anything of the response
// arrived is replaced by a fresh one to the same server when the request
// can be replayed (nothing of the client's input consumed yet) and either
// nothing of it was sent or it is idempotent.
func (cc *clientConn) attempt(ex *exchange, ss *serverState) attemptResult {
	uc := ss.get(cc.now)
	for {
		if uc == nil {
			var err error
			uc, err = cc.p.dial(ss)
			if err != nil {
				err = fmt.Errorf("connect %s: %w", ss.srv.Addr, err)
				if isLocalErr(err) {
					return attemptResult{out: outLocalErr, status: statusUnavailable, err: err}
				}
				return attemptResult{out: outConnectFail, status: upstreamStatus(err), err: err}
			}
		}
		if !cc.setUpstream(uc) {
			uc.release()
			return attemptResult{out: outDone}
		}
		res, stale := cc.exchangeWith(ex, uc)
		cc.setUpstream(nil)
		if stale {
			uc.release()
			uc = nil
			continue
		}
		return res
	}
}

// isLocalErr reports a failure of the proxy's own host, not of the
// server: out of descriptors (EMFILE, ENFILE), of socket buffers
// (ENOBUFS, ENOMEM), or of local ports (EADDRNOTAVAIL). Another server
// would fail alike, and the server must not be blamed for it.
func isLocalErr(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.EADDRNOTAVAIL)
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// exchangeWith runs the request over one upstream connection. stale
// reports a reused connection found dead before any response byte while
// the request can still be replayed and may be sent again (nothing of it
// went out, or it is idempotent): the caller retries on a fresh one.
func (cc *clientConn) exchangeWith(ex *exchange, uc *upConn) (res attemptResult, stale bool) {
	req := &cc.req
	rt := ex.rt
	headLen, bodyLen, buffered := ex.headLen, ex.bodyLen, ex.bodyBuffered
	u := rt.up
	ls := &cc.ls.cfg
	attemptStart := cc.now
	setDeadlines(uc.c, &uc.rdl, &uc.wdl, cc.now.Add(u.responseHeaderTimeout), u.responseHeaderTimeout)

	cc.upHead.host = uc.ss.host
	// From here sent tells whether any byte of this request went out
	// (the flag serves nothing else on an upstream socket): once one did,
	// the server may have acted on a non-idempotent request, which must
	// then never be sent again (RFC 9110 9.2.2).
	uc.sio.sent = false
	writeUpstreamHead(uc.bw, rt, req, &cc.upHead)
	if buffered && bodyLen > 0 {
		all, _ := cc.br.Peek(headLen + bodyLen)
		uc.bw.Write(all[headLen:])
	}
	if err := uc.bw.Flush(); err != nil {
		unsent := uc.sio.raw != nil && !uc.sio.sent
		if uc.reused && (unsent || (req.idempotent && buffered)) {
			return res, true
		}
		uc.release()
		err = fmt.Errorf("send to %s: %w", uc.ss.srv.Addr, err)
		switch {
		case unsent:
			// Nothing reached the server: any method may go elsewhere.
			return attemptResult{out: outConnectFail, status: upstreamStatus(err), err: err}, false
		case uc.reused:
			return attemptResult{out: outNotResent, status: statusBadGateway,
				err: fmt.Errorf("%w (on a reused connection, after part of the %s was sent: not re-sent)", err, req.method)}, false
		}
		return attemptResult{out: outUpstreamErr, status: upstreamStatus(err), err: err}, false
	}
	if !buffered {
		// Stream the body: from here on the client's input is consumed
		// and the request cannot be replayed.
		cc.br.Discard(headLen)
		pp := pipe{src: cc.br, srcConn: cc.c, srcTimeout: ls.ClientBodyTimeout,
			dst: uc.bw, dstConn: uc.c, dstTimeout: u.readTimeout, now: &cc.now, srcRdl: &cc.rdl, dstWdl: &uc.wdl}
		var side int
		var err error
		if req.chunked {
			cc.chunk.reset()
			side, err = pp.copyChunked(&cc.chunk, false, ex.maxBody)
		} else {
			side, err = pp.copyFixed(req.contentLength)
		}
		ex.bytesIn += pp.moved
		if side == sideNone {
			if err = uc.bw.Flush(); err != nil {
				side = sideWrite
			}
		}
		if side == sideWrite {
			if res, ok := cc.earlyResponse(ex, rt, uc, attemptStart); ok {
				return res, false
			}
		}
		if side != sideNone {
			uc.release()
			switch side {
			case sideRead:
				if isTimeout(err) {
					return cc.failAttempt(ex, statusRequestTimeout, fmt.Errorf("reading request body: %w", err)), false
				}
				return attemptResult{out: outDone, keep: false}, false // the client went away
			case sideFraming:
				return cc.failAttempt(ex, statusBadRequest, fmt.Errorf("request body: %w", err)), false
			case sideLimit:
				return cc.failAttempt(ex, statusContentTooLarge, err), false
			}
			return cc.failAttempt(ex, upstreamStatus(err), fmt.Errorf("send body to %s: %w", uc.ss.srv.Addr, err)), false
		}
		now := time.Now()
		cc.now = now
		uc.rdl = now.Add(u.responseHeaderTimeout)
		uc.c.SetReadDeadline(uc.rdl)
	}

	// The response head. Interim 1xx responses (other than 101) go to an
	// HTTP/1.1 client as they come (103 Early Hints is of use only then),
	// but for 100 Continue: Expect is answered here, not by the upstream.
	// An HTTP/1.0 client gets none (RFC 9110 15.2).
	resp := &cc.resp
	var head []byte
	for interim := 0; ; interim++ {
		var err error
		var got bool
		head, got, err = readResponseHead(uc.br)
		if err != nil {
			if !got && uc.reused && buffered && interim == 0 && !isTimeout(err) {
				if req.idempotent {
					return res, true
				}
				// The server may have acted on the request before it
				// closed: a non-idempotent one is answered 502, never
				// re-sent.
				uc.release()
				if errors.Is(err, io.EOF) {
					err = errUpstreamGone
				}
				return attemptResult{out: outNotResent, status: statusBadGateway,
					err: fmt.Errorf("response from %s: %w (on a reused connection; %s is not idempotent: not re-sent)", uc.ss.srv.Addr, err, req.method)}, false
			}
			uc.release()
			if errors.Is(err, errHeadTooLarge) {
				return attemptResult{out: outBadResponse, status: statusBadGateway, err: fmt.Errorf("response from %s: %w", uc.ss.srv.Addr, err)}, false
			}
			if !got && errors.Is(err, io.EOF) {
				err = errUpstreamGone
			}
			return attemptResult{out: outUpstreamErr, status: upstreamStatus(err), err: fmt.Errorf("response from %s: %w", uc.ss.srv.Addr, err)}, false
		}
		if parseResponse(resp, head) != parseOK || (resp.status == statusSwitchingProtocols && !cc.upHead.upgrade) {
			uc.release()
			return attemptResult{out: outBadResponse, status: statusBadGateway, err: fmt.Errorf("%w %s", errBadResponse, uc.ss.srv.Addr)}, false
		}
		if resp.status >= statusOK || resp.status == statusSwitchingProtocols {
			break
		}
		if interim == 8 {
			uc.release()
			return attemptResult{out: outBadResponse, status: statusBadGateway, err: fmt.Errorf("%w %s: too many interim responses", errBadResponse, uc.ss.srv.Addr)}, false
		}
		if resp.status != statusContinue && req.minor >= 1 {
			cc.now = time.Now()
			cc.ensureWriteDeadline()
			writeInterimHead(cc.bw, rt, resp)
			if cc.bw.Flush() != nil {
				uc.release()
				return attemptResult{out: outDone, keep: false}, false // the client went away
			}
		}
		uc.br.Discard(len(head))
	}
	uc.ss.srv.Succeed()
	if buffered {
		cc.br.Discard(headLen + bodyLen)
	}
	now := time.Now()
	cc.now = now
	ex.upDur = now.Sub(attemptStart)
	ex.status = resp.status
	return cc.relay(ex, uc, len(head), ex.keep), false
}

// earlyResponseWait bounds the wait for an answer the upstream may have
// sent before it stopped taking the request body: such an answer has
// arrived by the time a send fails, or comes right after.
const earlyResponseWait = 500 * time.Millisecond

// earlyResponse relays the response an upstream sent before it stopped
// taking the request body (a 413 answered after the head, the connection
// then closed, so that sending the rest failed): that answer, not a 502,
// is what the client needs. The client's body is left unread, so its
// connection is closed after a lingering read. ok is false when no
// complete, valid final response head is to be had.
func (cc *clientConn) earlyResponse(ex *exchange, rt *route, uc *upConn, attemptStart time.Time) (res attemptResult, ok bool) {
	uc.rdl = time.Now().Add(earlyResponseWait)
	uc.c.SetReadDeadline(uc.rdl)
	resp := &cc.resp
	var head []byte
	for interim := 0; ; interim++ {
		var err error
		if head, _, err = readResponseHead(uc.br); err != nil || parseResponse(resp, head) != parseOK || resp.status == statusSwitchingProtocols || interim == 8 {
			return res, false
		}
		if resp.status >= statusOK {
			break
		}
		uc.br.Discard(len(head)) // a 100 Continue before the answer, say
	}
	uc.unfinished = true
	uc.rdl = time.Now().Add(rt.up.readTimeout)
	uc.c.SetReadDeadline(uc.rdl)
	now := time.Now()
	cc.now = now
	ex.upDur = now.Sub(attemptStart)
	ex.status = resp.status
	res = cc.relay(ex, uc, len(head), false)
	if !cc.cutDown.Load() {
		lingerClose(cc.c)
	}
	return res, true
}

// failAttempt writes an error response from inside an attempt (the body
// could not be read or forwarded); the connection closes after it.
func (cc *clientConn) failAttempt(ex *exchange, status int, err error) attemptResult {
	cc.sendError(ex, status, false, 0, err)
	return attemptResult{out: outAnswered, status: status, keep: false}
}

// upstreamStatus maps an upstream failure to the status to answer.
func upstreamStatus(err error) int {
	if isTimeout(err) || isNetTimeout(err) {
		return statusGatewayTimeout
	}
	return statusBadGateway
}

// readResponseHead waits for a complete response head in uc's read
// buffer (at most its size). got reports whether any byte arrived.
func readResponseHead(br *bufio.Reader) (head []byte, got bool, err error) {
	head, err = readMessageHead(br, br.Size(), false, nil)
	return head, br.Buffered() > 0, err
}

// relay sends the response head and body to the client, then pools the
// upstream connection when it can be reused.
func (cc *clientConn) relay(ex *exchange, uc *upConn, headLen int, keep bool) attemptResult {
	rt := ex.rt
	req, resp := &cc.req, &cc.resp
	ls := &cc.ls.cfg
	upgraded := resp.status == statusSwitchingProtocols
	body := bodyNone
	switch {
	case req.isHead || resp.status == statusNoContent || resp.status == statusNotModified || resp.status < statusOK:
	case resp.chunked:
		body = bodyChunked
		if req.minor == 0 || cc.stream != nil {
			body = bodyDechunk // an HTTP/2 stream frames the body itself
		}
	case resp.contentLength >= 0:
		body = bodyFixed
	default:
		body = bodyRechunk
		if req.minor == 0 || cc.stream != nil {
			body = bodyToClose
		}
	}
	if body == bodyDechunk || body == bodyToClose || upgraded {
		keep = false
	}
	reuse := resp.keepAlive() && body != bodyRechunk && body != bodyToClose && !upgraded
	if cc.p.draining.Load() {
		keep = false
	}

	cc.ensureWriteDeadline()
	writeClientHead(cc.bw, rt, resp, body, cc.connMode(keep), upgraded)
	uc.br.Discard(headLen)
	if upgraded {
		return cc.tunnel(ex, uc)
	}

	pp := pipe{src: uc.br, srcConn: uc.c, srcTimeout: rt.up.readTimeout,
		dst: cc.bw, dstConn: cc.c, dstTimeout: ls.SendTimeout, now: &cc.now, srcRdl: &uc.rdl, dstWdl: &cc.wdl}
	side, err := sideNone, error(nil)
	switch body {
	case bodyFixed:
		side, err = pp.copyFixed(resp.contentLength)
	case bodyChunked, bodyDechunk:
		cc.chunk.reset()
		side, err = pp.copyChunked(&cc.chunk, body == bodyDechunk, 0)
		if side == sideNone && body == bodyDechunk {
			cc.chunk.reset()
		}
	case bodyRechunk, bodyToClose:
		side, err = pp.copyToEOF(body == bodyRechunk)
	}
	if side == sideNone {
		if keep {
			err = cc.bw.Flush()
		} else {
			err = cc.io.flushLast(cc.bw) // nothing follows: FIN with the data
		}
		if err != nil {
			side = sideWrite
		}
	}
	if side != sideNone {
		// The response is cut short: the client learns it from the
		// closed connection (a status was already sent).
		cc.cutShort = true
		uc.release()
		switch {
		case side == sideRead || side == sideFraming:
			cc.p.stats.upstreamErr.Add(1)
			cc.logError(ex, ex.status, fmt.Errorf("response body from %s: %w", uc.ss.srv.Addr, err))
		case side == sideWrite && isTimeout(err):
			cc.logSendTimeout(ex)
		}
		return attemptResult{out: outDone, keep: false}
	}
	if reuse && !uc.unfinished && uc.br.Buffered() == 0 && uc.ss.up.keepalive > 0 && !cc.p.closing.Load() {
		uc.ss.put(uc, cc.now)
	} else {
		uc.release()
	}
	return attemptResult{out: outDone, keep: keep}
}

// isEOF reports a clean end of stream.
func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// unexpectedEOF turns EOF inside a body into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
