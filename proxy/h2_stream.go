package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
)

// This file turns one HTTP/2 stream into one request of the HTTP/1 engine.
// The stream's clientConn reads, through an h2Stream standing in for a
// socket, the request rendered as an HTTP/1.1 head followed by its body
// (chunked when the client declared no length); what the engine writes
// back, an HTTP/1 response with its body unframed, becomes the stream's
// HEADERS and DATA. The connection (h2_conn.go) has validated the request
// before it gets here; the HTTP/1 parser checks the rendered head again.

var errBadEngineHead = errors.New("http2 stream: malformed response head")

// lastChunk ends a chunked body.
var lastChunk = []byte("0\r\n\r\n")

// h2Stream is one stream: its state in the connection, and, for the
// engine, a net.Conn whose Read yields the request and whose Write takes
// the response.
type h2Stream struct {
	conn *h2Conn
	id   uint32
	// rst: the stream was reset, by either side, or its connection
	// ended: nothing more is sent on it.
	rst atomic.Bool

	// Under conn.mu.
	inTable     bool // open or half-closed: counted against the limit
	clientEnded bool // the client's END_STREAM came
	localEnded  bool // ours is queued
	sendWin     int64
	recvWin     int64
	recvUnacked int64
	recv        []byte // body received, recv[recvOff:] not yet read
	recvOff     int
	recvErr     error
	wake        chan struct{} // cap 1: body came, or the stream ended
	declLen     int64         // the request's content-length; -1: none
	got         int64         // body bytes received
	taken       int64         // body bytes read by the engine
	// sc is the engine's connection serving the stream (nil before it
	// starts and after it ends), which a reset cuts.
	sc *clientConn

	// The request side (the handler's): out is read first (the head,
	// later the last chunk); then the body, framed as chunks when
	// chunked.
	status        int // not 0: the engine answers this status at once (431)
	out           []byte
	reqBuf        []byte // out's storage, kept by the pool
	hasBody       bool
	chunked       bool
	bodyDone      bool
	needsContinue bool
	rdl, wdl      time.Time

	// The response side: head gathers a head until it is whole; then
	// the body passes through.
	head    []byte
	hdrBuf  []byte // the header block's scratch
	nameBuf []byte
	resp    response
	final   bool  // the final response head went out
	isHead  bool  // a HEAD request: no body follows any head
	length  int64 // declared body length; -1: none
	written int64 // body bytes written

	closed atomic.Bool
}

func (h *h2Server) getStream() *h2Stream {
	st, _ := h.streams.Get().(*h2Stream)
	if st == nil {
		st = &h2Stream{wake: make(chan struct{}, 1)}
	}
	return st
}

// putStream pools st; what it grew large is dropped.
func (h *h2Server) putStream(st *h2Stream) {
	st.conn, st.sc = nil, nil
	if cap(st.recv) > 16<<10 {
		st.recv = nil
	}
	h.streams.Put(st)
}

// open readies a pooled stream for stream id of c, keeping the capacity
// of its buffers.
func (st *h2Stream) open(c *h2Conn, id uint32, hasBody bool) {
	st.conn, st.id = c, id
	st.rst.Store(false)
	st.closed.Store(false)
	st.inTable, st.clientEnded, st.localEnded = true, false, false
	st.recvUnacked, st.recv, st.recvOff, st.recvErr = 0, st.recv[:0], 0, nil
	select {
	case <-st.wake:
	default:
	}
	st.declLen, st.got, st.taken = -1, 0, 0
	st.status, st.out, st.hasBody, st.chunked, st.bodyDone, st.needsContinue = 0, nil, hasBody, false, false, false
	st.rdl, st.wdl = time.Time{}, time.Time{}
	st.head = st.head[:0]
	st.final, st.isHead, st.length, st.written = false, false, -1, 0
}

// wakeBody tells a body read waiting that something changed (under conn.mu).
func (st *h2Stream) wakeBody() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// serveStream serves one stream of the HTTP/2 connection cc. It reports
// whether the response was whole: a final response, not cut short.
func (cc *clientConn) serveStream(st *h2Stream) bool {
	p := cc.p
	growStack()
	sc := p.getClientConn()
	sc.ls, sc.c = cc.ls, st
	sc.written, sc.nreq = 0, 1
	sc.rdl, sc.wdl = time.Time{}, time.Time{}
	sc.up.Store(nil)
	sc.cutDown.Store(false)
	sc.cutShort = false
	sc.stream = st
	sc.io.reset(st)
	sc.remote = append(sc.remote[:0], cc.remote...)
	sc.ip = append(sc.ip[:0], cc.ip...)
	sc.client, sc.clientLog = sc.ip, sc.remote
	// A reset stream, or the connection's end, cuts the exchange: its
	// upstream connection closes and the engine stops where it is.
	c := st.conn
	c.mu.Lock()
	st.sc = sc
	if st.rst.Load() {
		sc.cut()
	}
	c.mu.Unlock()
	sc.takeBuffers()
	sc.now = time.Now()
	head, status := []byte(nil), st.status
	if status == 0 {
		head, status = sc.readHead()
	}
	if head != nil {
		sc.handle(head)
	} else if status != 0 {
		sc.req.isHead, sc.req.method = false, nil
		ex := exchange{start: sc.now, status: status, upDur: -1}
		sc.sendError(&ex, status, false, 0, nil)
		sc.recordExchange(&ex)
	}
	if sc.bw.Buffered() > 0 {
		sc.bw.Flush()
	}
	c.mu.Lock()
	st.sc = nil
	c.mu.Unlock()
	complete := st.final && !sc.cutShort && !sc.cutDown.Load() && (st.length < 0 || st.written == st.length || st.isHead)
	st.closed.Store(true)
	if sc.small != nil {
		// A buffered body moved the stream onto a body buffer: each
		// buffer goes back to its own pool, and the pooled clientConn
		// must not keep small for the next connection it serves.
		sc.shrinkReader()
	}
	sc.releaseBuffers()
	sc.stream = nil
	sc.c = nil
	sc.io.reset(nil)
	p.ccPool.Put(sc)
	return complete
}

// growStack grows the stream goroutine's stack, new at the minimum, to
// what serving a request takes in one step while it is still shallow:
// grown frame by frame deep in the engine it was copied several times
// per stream (stack growth: 9% of the worker's CPU under h2load, 5% with
// this). The goroutine ends with the stream, so the stack goes back then.
//
//go:noinline
func growStack() {
	var frame [h2StackHint]byte
	keepStack(frame[:])
}

// h2StackHint is about the stack a proxied request grows to (serveStream
// down to the socket writes of the upstream request and the response).
const h2StackHint = 12 << 10

//go:noinline
func keepStack(b []byte) { b[0] = 1 }

// prepare validates the request's header block and renders its head as
// HTTP/1.1: the request line, Host from :authority (or host), the fields
// as the client sent them but those HTTP/2 forbids, cookies joined (RFC
// 9113 8.2.3), and the body's framing. A malformed request is a stream
// error (RFC 9113 8.1.1).
func (st *h2Stream) prepare(f *http2.MetaHeadersFrame) error {
	var method, scheme, authority, path string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		case ":path":
			path = hf.Value
		default: // :protocol (no extended CONNECT here), :status
			return errH2Malformed
		}
	}
	st.isHead = method == "HEAD"
	if f.Truncated {
		st.status = statusHeaderTooLarge
		return nil
	}
	if method == "CONNECT" {
		if path != "" || scheme != "" || authority == "" {
			return errH2Malformed
		}
		path = authority
	} else if method == "" || path == "" || scheme != "http" && scheme != "https" {
		return errH2Malformed
	}
	// A host field must name what :authority does (RFC 9113 8.3.1), once;
	// userinfo has no place in either.
	hosts := 0
	for _, hf := range f.RegularFields() {
		if hf.Name == "host" {
			if hosts++; hosts > 1 || authority != "" && hf.Value != authority {
				return errH2Malformed
			}
			authority = hf.Value
		}
	}
	if !validToken(method) || !validTarget(path) || strings.IndexByte(authority, '@') >= 0 ||
		authority != "" && !httpguts.ValidHostHeader(authority) {
		return errH2Malformed
	}
	if method != "CONNECT" && path[0] != '/' && path != "*" {
		return errH2Malformed // origin-form or "*" only: no absolute-form to route by
	}
	b := append(st.reqBuf[:0], method...)
	b = append(append(append(b, ' '), path...), " HTTP/1.1\r\nhost: "...)
	b = append(append(b, authority...), "\r\n"...)
	cookies := 0
	for _, hf := range f.RegularFields() {
		if connectionSpecific(hf) {
			return errH2Malformed
		}
		switch hf.Name {
		case "host", "te":
			// host: in the Host field; te: "trailers", hop by hop.
			continue
		case "expect":
			// Answered here: 100 Continue once the engine first waits
			// for the body.
			st.needsContinue = st.hasBody && asciiEqualFold(hf.Value, "100-continue")
			continue
		case "content-length":
			n, ok := parseContentLength([]byte(hf.Value))
			if !ok || st.declLen >= 0 && n != st.declLen {
				return errH2Malformed
			}
			st.declLen = n
			continue
		case "cookie":
			cookies++
			continue
		}
		b = append(append(append(append(b, hf.Name...), ": "...), hf.Value...), "\r\n"...)
	}
	if cookies > 0 {
		b = append(b, "cookie: "...)
		n := 0
		for _, hf := range f.RegularFields() {
			if hf.Name == "cookie" {
				if n++; n > 1 {
					b = append(b, "; "...)
				}
				b = append(b, hf.Value...)
			}
		}
		b = append(b, "\r\n"...)
	}
	switch {
	case st.declLen > 0 && !st.hasBody:
		return errH2Malformed // END_STREAM on HEADERS: no body to match
	case st.declLen >= 0:
		b = append(strconv.AppendInt(append(b, "content-length: "...), st.declLen, 10), "\r\n"...)
	case st.hasBody:
		st.chunked = true
		b = append(b, "transfer-encoding: chunked\r\n"...)
	}
	b = append(b, "\r\n"...)
	st.reqBuf = b
	st.out = b
	return nil
}

// validToken reports a method that is a token (RFC 9110 5.6.2).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// validTarget reports a :path that stays one token of the rendered
// request line: no space, control byte or DEL.
func validTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Read yields the request head, then its body.
func (st *h2Stream) Read(b []byte) (int, error) {
	if st.closed.Load() {
		return 0, errH2StreamReset
	}
	if len(st.out) > 0 {
		n := copy(b, st.out)
		st.out = st.out[n:]
		return n, nil
	}
	if !st.hasBody || st.bodyDone {
		return 0, io.EOF
	}
	if !st.chunked {
		n, err := st.readBody(b)
		if err == io.EOF {
			st.bodyDone = true
		}
		return n, err
	}
	// A chunk of what one read brings: an 8-digit size line in front,
	// CRLF after (the buffer is the engine's, thousands of bytes).
	const sizeLine = len("00000000\r\n")
	if len(b) < sizeLine+len("\r\n")+1 {
		return 0, io.ErrShortBuffer
	}
	n, err := st.readBody(b[sizeLine : len(b)-2])
	if err == io.EOF {
		st.bodyDone = true
		st.out = lastChunk
		return st.Read(b)
	}
	if err != nil {
		return 0, err
	}
	hex := strconv.AppendUint(b[:0:sizeLine], uint64(n), 16)
	pad := sizeLine - 2 - len(hex)
	copy(b[pad:], hex)
	for i := range pad {
		b[i] = '0'
	}
	b[sizeLine-2], b[sizeLine-1] = '\r', '\n'
	b[sizeLine+n], b[sizeLine+n+1] = '\r', '\n'
	return sizeLine + n + 2, nil
}

// readBody reads what the client sent of the body, waiting for it until
// the read deadline (client_body_timeout). The bytes that complete a
// declared length wait for END_STREAM: DATA past the length may follow
// (a stream error), and the request would be malformed, which must not
// reach the upstream whole (RFC 9113 8.1.1).
func (st *h2Stream) readBody(b []byte) (int, error) {
	c := st.conn
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		avail := len(st.recv) - st.recvOff
		switch {
		case st.recvErr != nil:
			return 0, st.recvErr
		case avail > 0 && (st.clientEnded || st.declLen < 0 || st.taken+int64(avail) < st.declLen):
			n := copy(b, st.recv[st.recvOff:])
			st.recvOff += n
			st.taken += int64(n)
			if st.recvOff == len(st.recv) {
				st.recv, st.recvOff = st.recv[:0], 0
			}
			c.refundLocked(st, int64(n))
			return n, nil
		case avail == 0 && st.clientEnded:
			return 0, io.EOF
		}
		if st.needsContinue {
			// The client waits for a word before it sends the body.
			st.needsContinue = false
			c.mu.Unlock()
			err := st.sendHeaders(statusContinue, nil, false)
			c.mu.Lock()
			if err != nil {
				return 0, err
			}
			continue
		}
		c.mu.Unlock()
		err := st.waitBody()
		c.mu.Lock()
		if err != nil {
			return 0, err
		}
	}
}

// waitBody waits for a change to the body, until the read deadline.
func (st *h2Stream) waitBody() error {
	if st.rdl.IsZero() {
		<-st.wake
		return nil
	}
	d := time.Until(st.rdl)
	if d <= 0 {
		return os.ErrDeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-st.wake:
		return nil
	case <-t.C:
		return os.ErrDeadlineExceeded
	}
}

// Write takes the engine's response: heads (interim ones, then the final
// one) become HEADERS, what follows the final head is the body.
func (st *h2Stream) Write(b []byte) (int, error) {
	if st.closed.Load() {
		return 0, errH2StreamReset
	}
	total := len(b)
	for !st.final && len(b) > 0 {
		// The head is taken where it is: in b when it is whole there
		// (the usual case), else gathered in st.head.
		var head []byte
		if prev := len(st.head); prev == 0 {
			i := bytes.Index(b, crlfcrlf)
			if i < 0 {
				st.head = append(st.head, b...)
				return total, nil
			}
			head, b = b[:i+4], b[i+4:]
		} else {
			from := max(0, prev-len(crlfcrlf)+1)
			st.head = append(st.head, b...)
			i := bytes.Index(st.head[from:], crlfcrlf)
			if i < 0 {
				return total, nil
			}
			end := from + i + len(crlfcrlf)
			head, b = st.head[:end], b[end-prev:]
		}
		if err := st.writeHead(head); err != nil {
			return 0, err
		}
		st.head = st.head[:0]
	}
	if len(b) == 0 || st.done() {
		return total, nil
	}
	end := false
	if st.length >= 0 {
		if left := st.length - st.written; int64(len(b)) >= left {
			b, end = b[:left], true
		}
	}
	if err := st.writeData(b, end); err != nil {
		return 0, err
	}
	st.written += int64(len(b))
	return total, nil
}

// done reports whether the whole final response is written.
func (st *h2Stream) done() bool {
	return st.localEnded && st.final
}

func noBodyStatus(status int) bool {
	return status == statusNoContent || status == statusNotModified
}

// writeHead sends one response head the engine wrote.
func (st *h2Stream) writeHead(head []byte) error {
	resp := &st.resp
	if parseResponse(resp, head) != parseOK {
		return errBadEngineHead
	}
	if resp.status < statusOK {
		return st.sendHeaders(resp.status, resp.headers, false)
	}
	if resp.contentLength >= 0 {
		st.length = resp.contentLength
	}
	st.final = true
	end := st.isHead || noBodyStatus(resp.status) || st.length == 0
	if st.conn.cc.p.draining.Load() {
		// A connection that became HTTP/2 after the drain's GOAWAY went
		// to the others gets its own with this response, as HTTP/1.1
		// gets Connection: close.
		st.conn.goAway()
	}
	return st.sendHeaders(resp.status, resp.headers, end)
}

// sendHeaders queues a HEADERS frame (and CONTINUATION frames) with the
// status and the fields that go to an HTTP/2 client.
func (st *h2Stream) sendHeaders(status int, fields []header, end bool) error {
	c := st.conn
	var err error
	werr := c.w.frames(false, func(q []byte) []byte {
		if st.rst.Load() {
			err = errH2StreamReset
			return q
		}
		blk := st.hdrBuf[:0]
		if c.tableUpdate {
			blk = append(blk, 0x20) // dynamic table size update: 0
			c.tableUpdate = false
		}
		blk = appendHpackStatus(blk, status)
		for _, f := range fields {
			if h2Forwards(f.kind) {
				st.nameBuf = lowerASCII(st.nameBuf[:0], f.name)
				blk = appendHpackField(blk, st.nameBuf, f.value)
			}
		}
		st.hdrBuf = blk
		return appendHeaderBlock(q, st.id, blk, end, int(c.maxFrame.Load()))
	})
	if werr != nil {
		return werr
	}
	if err == nil && end {
		c.localEnd(st)
	}
	return err
}

// writeData queues data as DATA frames, as the send windows allow,
// ending the stream after it when end is set.
func (st *h2Stream) writeData(data []byte, end bool) error {
	c := st.conn
	for {
		n := 0
		if len(data) > 0 {
			var err error
			if n, err = c.reserve(st, len(data)); err != nil {
				return err
			}
		}
		chunk := data[:n]
		data = data[n:]
		last := end && len(data) == 0
		var err error
		werr := c.w.frames(false, func(q []byte) []byte {
			if st.rst.Load() {
				err = errH2StreamReset
				return q
			}
			return appendData(q, st.id, chunk, last, int(c.maxFrame.Load()))
		})
		switch {
		case werr != nil:
			return werr
		case err != nil:
			return err
		case last:
			c.localEnd(st)
			return nil
		case len(data) == 0:
			return nil
		}
	}
}

// h2Forwards reports whether a response field of this kind goes to an
// HTTP/2 client: connection-specific ones do not (RFC 9113 8.2.2).
func h2Forwards(k hdrKind) bool {
	switch k {
	case hdrConnection, hdrTransferEncoding, hdrHopByHop, hdrUpgrade:
		return false
	}
	return true
}

// Close ends the stream for the engine (cut: the stream was reset).
func (st *h2Stream) Close() error {
	st.closed.Store(true)
	return nil
}

func (st *h2Stream) LocalAddr() net.Addr  { return st.conn.cc.c.LocalAddr() }
func (st *h2Stream) RemoteAddr() net.Addr { return st.conn.cc.c.RemoteAddr() }

func (st *h2Stream) SetDeadline(t time.Time) error {
	st.SetReadDeadline(t)
	return st.SetWriteDeadline(t)
}

// SetReadDeadline bounds the wait for the body (client_body_timeout).
func (st *h2Stream) SetReadDeadline(t time.Time) error {
	st.rdl = t
	return nil
}

// SetWriteDeadline bounds a wait for the client's flow-control window
// (send_timeout); the connection's writer bounds the socket's writes.
func (st *h2Stream) SetWriteDeadline(t time.Time) error {
	st.wdl = t
	return nil
}
