package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"sync/atomic"
	"time"
)

// This file turns one HTTP/2 stream into one request of the HTTP/1 engine.
// The stream's clientConn reads, through an h2Stream standing in for a
// socket, the request rendered as an HTTP/1.1 head followed by its body
// (chunked when the client declared no length); what the engine writes
// back, an HTTP/1 response with its body unframed, becomes the stream's
// HEADERS and DATA. x/net has validated the request before it gets here;
// the HTTP/1 parser checks the rendered head again.

var (
	errStreamClosed   = errors.New("http2 stream closed")
	errBadEngineHead  = errors.New("http2 stream: malformed response head")
	errBodyPastLength = errors.New("http2 stream: DATA past the content-length")
)

// lastChunk ends a chunked body.
var lastChunk = []byte("0\r\n\r\n")

// h2Stream is one stream as the engine's connection: a net.Conn whose
// Read yields the request and whose Write takes the response.
type h2Stream struct {
	w      http.ResponseWriter
	rc     streamWriter
	parent *clientConn

	// sc is the engine's connection serving the stream; cutFn, bound
	// once, cuts it when the stream is reset, and then signals cutDone.
	sc      *clientConn
	cutFn   func()
	cutDone chan struct{}

	// The request side: out is read first (the head, later the last
	// chunk); then the body, framed as chunks when chunked.
	out      []byte
	reqBuf   []byte // out's storage, kept by the pool
	body     io.ReadCloser
	chunked  bool
	bodyDone bool
	bodyLeft int64 // of a declared length, not yet read

	// The response side: head gathers a head until it is whole; then
	// the body passes through.
	head    []byte
	hdrBuf  []byte // writeHead's scratch
	resp    response
	final   bool  // the final response head went out
	isHead  bool  // a HEAD request: no body follows any head
	length  int64 // declared body length; -1: none
	written int64 // body bytes written

	closed atomic.Bool
}

// serveStream serves one stream on the HTTP/2 connection cc.
func (cc *clientConn) serveStream(w http.ResponseWriter, r *http.Request) {
	p := cc.p
	growStack()
	pool := &cc.ls.h2.streams
	st, _ := pool.Get().(*h2Stream)
	if st == nil {
		st = &h2Stream{cutDone: make(chan struct{}, 1)}
		st.cutFn = st.cut
	}
	st.reset(w, cc, r.Method == http.MethodHead)
	st.out = st.requestHead(r)
	if r.Body != nil && r.Body != http.NoBody {
		st.body = r.Body
		st.chunked = r.ContentLength < 0
		st.bodyLeft = r.ContentLength
	}

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
	st.sc = sc
	stop := context.AfterFunc(r.Context(), st.cutFn)
	sc.takeBuffers()
	sc.now = time.Now()
	head, status := sc.readHead()
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
	if !stop() {
		<-st.cutDone // cut is running: let it finish with sc before sc is reused
	}
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
	st.w, st.rc, st.parent, st.body, st.sc = nil, nil, nil, nil, nil
	pool.Put(st)
	if !complete {
		// No final response, or one cut short: the client must not take
		// it for whole, as an implicit 200 or a body ended by END_STREAM
		// would be. x/net resets the stream on this panic.
		panic(http.ErrAbortHandler)
	}
}

// streamWriter is what the stream needs of x/net's ResponseWriter
// beyond http.ResponseWriter (an http.ResponseController finds the same
// methods, for an allocation per stream).
type streamWriter interface {
	FlushError() error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

type controllerWriter struct{ *http.ResponseController }

func (c controllerWriter) FlushError() error { return c.Flush() }

// cut is run by context.AfterFunc when the stream's context ends first.
func (st *h2Stream) cut() {
	st.sc.cut()
	st.cutDone <- struct{}{}
}

// reset readies a pooled stream for the stream w answers, keeping the
// capacity of its buffers.
func (st *h2Stream) reset(w http.ResponseWriter, cc *clientConn, isHead bool) {
	st.w, st.parent = w, cc
	if sw, ok := w.(streamWriter); ok {
		st.rc = sw
	} else {
		st.rc = controllerWriter{http.NewResponseController(w)}
	}
	st.out, st.body, st.chunked, st.bodyDone = nil, nil, false, false
	st.head = st.head[:0]
	st.final, st.isHead, st.length, st.written = false, isHead, -1, 0
	st.closed.Store(false)
}

// growStack grows the stream goroutine's stack, new at x/net's minimum,
// to what serving a request takes in one step while it is still shallow:
// grown frame by frame deep in the engine it was copied several times
// per stream (stack growth: 9% of the worker's CPU under h2load, 5% with
// this). The goroutine is x/net's and ends with the stream, so the stack
// goes back then.
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

// requestHead renders r's head as HTTP/1.1: the request line, Host from
// :authority, the fields as x/net passed them (validated; cookies joined),
// and the body's framing.
func (st *h2Stream) requestHead(r *http.Request) []byte {
	b := st.reqBuf[:0]
	b = append(b, r.Method...)
	b = append(b, ' ')
	if r.Method == http.MethodConnect {
		b = append(b, r.Host...)
	} else {
		b = append(b, r.RequestURI...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	for name, values := range r.Header {
		switch name {
		case "Host", "Expect", "Transfer-Encoding", "Connection":
			// Host is :authority; x/net answers Expect itself and has
			// refused the connection-specific fields.
			continue
		}
		for _, v := range values {
			b = append(b, name...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = append(b, "\r\n"...)
	st.reqBuf = b
	return b
}

// Read yields the request head, then its body.
func (st *h2Stream) Read(b []byte) (int, error) {
	if st.closed.Load() {
		return 0, errStreamClosed
	}
	if len(st.out) > 0 {
		n := copy(b, st.out)
		st.out = st.out[n:]
		return n, nil
	}
	if st.body == nil || st.bodyDone {
		return 0, io.EOF
	}
	if !st.chunked {
		n, err := st.body.Read(b)
		if err == io.EOF {
			st.bodyDone = true
		}
		st.bodyLeft -= int64(n)
		if err == nil && st.bodyLeft <= 0 {
			// The declared length is here, but DATA past it may follow
			// (x/net resets the stream then): the request would be
			// malformed, and must not reach the upstream whole (RFC
			// 9113 8.1.1). Its last bytes wait for END_STREAM.
			var more [1]byte
			switch m, err := st.body.Read(more[:]); {
			case m > 0 || err == nil:
				return 0, errBodyPastLength
			case err != io.EOF:
				return 0, err
			}
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
	n, err := st.body.Read(b[sizeLine : len(b)-2])
	if err == io.EOF {
		st.bodyDone = true
		st.out = lastChunk
		err = nil
	}
	if n == 0 {
		if err != nil {
			return 0, err
		}
		return st.Read(b)
	}
	hex := strconv.AppendUint(b[:0:sizeLine], uint64(n), 16)
	pad := sizeLine - 2 - len(hex)
	copy(b[pad:], hex)
	for i := range pad {
		b[i] = '0'
	}
	b[sizeLine-2], b[sizeLine-1] = '\r', '\n'
	b[sizeLine+n], b[sizeLine+n+1] = '\r', '\n'
	return sizeLine + n + 2, err
}

// Write takes the engine's response: heads (interim ones, then the final
// one) become HEADERS, what follows the final head is the body.
func (st *h2Stream) Write(b []byte) (int, error) {
	if st.closed.Load() {
		return 0, errStreamClosed
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
	if len(b) == 0 {
		if st.final && !st.done() {
			st.rc.FlushError()
		}
		return total, nil
	}
	n, err := st.w.Write(b)
	st.written += int64(n)
	if err != nil {
		return 0, err
	}
	if !st.done() {
		// More is to come, or nobody knows: what came goes out now (a
		// streamed response must not wait for the handler's end).
		if err := st.rc.FlushError(); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// done reports whether the whole final response is written: the handler's
// return then ends the stream along with the last frame.
func (st *h2Stream) done() bool {
	return st.isHead || st.length >= 0 && st.written >= st.length || noBodyStatus(st.resp.status)
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
	// One string holds every name and value, one array every value
	// slice: two allocations per head rather than three per field.
	text := st.hdrBuf[:0]
	n := 0
	for _, f := range resp.headers {
		if h2Forwards(f.kind) {
			text = append(append(text, f.name...), f.value...)
			n++
		}
	}
	st.hdrBuf = text
	all, vals := string(text), make([]string, n)
	h := st.w.Header()
	at := 0
	for _, f := range resp.headers {
		if !h2Forwards(f.kind) {
			continue
		}
		name := textproto.CanonicalMIMEHeaderKey(all[at : at+len(f.name)])
		at += len(f.name)
		vals[0] = all[at : at+len(f.value)]
		at += len(f.value)
		if vv, ok := h[name]; ok {
			h[name] = append(vv, vals[0])
		} else {
			h[name] = vals[:1:1]
		}
		vals = vals[1:]
	}
	if resp.status < statusOK {
		st.w.WriteHeader(resp.status)
		clear(h)
		return nil
	}
	if resp.contentLength >= 0 {
		st.length = resp.contentLength
	}
	if st.parent.p.draining.Load() {
		// x/net's cue for a graceful GOAWAY: a connection that became
		// HTTP/2 after the drain's GOAWAY went to the others gets its
		// own with this response, as HTTP/1.1 gets Connection: close.
		h.Set("Connection", "close")
	}
	st.final = true
	st.w.WriteHeader(resp.status)
	return nil
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

func (st *h2Stream) LocalAddr() net.Addr  { return st.parent.c.LocalAddr() }
func (st *h2Stream) RemoteAddr() net.Addr { return st.parent.c.RemoteAddr() }

func (st *h2Stream) SetDeadline(t time.Time) error {
	st.SetReadDeadline(t)
	return st.SetWriteDeadline(t)
}

// SetReadDeadline bounds the wait for the body (client_body_timeout).
// Only a body read can wait: the head is already here.
func (st *h2Stream) SetReadDeadline(t time.Time) error {
	if st.body == nil || st.bodyDone {
		return nil
	}
	return st.rc.SetReadDeadline(t)
}

// SetWriteDeadline bounds a write the client does not take (send_timeout).
func (st *h2Stream) SetWriteDeadline(t time.Time) error {
	return st.rc.SetWriteDeadline(t)
}
