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
	rc     *http.ResponseController
	parent *clientConn

	// The request side: out is read first (the head, later the last
	// chunk); then the body, framed as chunks when chunked.
	out      []byte
	body     io.ReadCloser
	chunked  bool
	bodyDone bool
	bodyLeft int64 // of a declared length, not yet read

	// The response side: head gathers a head until it is whole; then
	// the body passes through.
	head    []byte
	resp    response
	final   bool  // the final response head went out
	isHead  bool  // a HEAD request: no body follows any head
	length  int64 // declared body length; -1: none
	written int64 // body bytes written

	closed atomic.Bool
}

// serveStream serves one stream on the HTTP/2 connection cc.
func (cc *clientConn) serveStream(w http.ResponseWriter, r *http.Request) {
	h := cc.h2
	h.streams.Add(1)
	defer h.streams.Done()
	p := cc.p
	st := &h2Stream{w: w, rc: http.NewResponseController(w), parent: cc, length: -1, isHead: r.Method == http.MethodHead}
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
	cutDone := make(chan struct{})
	stop := context.AfterFunc(r.Context(), func() {
		sc.cut()
		close(cutDone)
	})
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
		<-cutDone // cut is running: let it finish with sc before sc is reused
	}
	complete := st.final && !sc.cutShort && !sc.cutDown.Load() && (st.length < 0 || st.written == st.length || st.isHead)
	st.closed.Store(true)
	if sc.small != nil {
		// The body outgrew the read buffer: the body buffer goes back to
		// its own pool, and sc, pooled, must not keep it for the next
		// stream (whose body would then find no room to grow).
		sc.shrinkReader()
	}
	sc.releaseBuffers()
	sc.stream = nil
	sc.c = nil
	sc.io.reset(nil)
	p.ccPool.Put(sc)
	if !complete {
		// No final response, or one cut short: the client must not take
		// it for whole, as an implicit 200 or a body ended by END_STREAM
		// would be. x/net resets the stream on this panic.
		panic(http.ErrAbortHandler)
	}
}

// requestHead renders r's head as HTTP/1.1: the request line, Host from
// :authority, the fields as x/net passed them (validated; cookies joined),
// and the body's framing.
func (st *h2Stream) requestHead(r *http.Request) []byte {
	b := make([]byte, 0, 512)
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
	return append(b, "\r\n"...)
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
		st.head = append(st.head, b...)
		i := bytes.Index(st.head, crlfcrlf)
		if i < 0 {
			return total, nil
		}
		rest := st.head[i+4:]
		if err := st.writeHead(st.head[:i+4]); err != nil {
			return 0, err
		}
		b = append([]byte(nil), rest...)
		st.head = st.head[:0]
	}
	if len(b) == 0 {
		if st.final && !st.done() {
			st.rc.Flush()
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
		if err := st.rc.Flush(); err != nil {
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
	h := st.w.Header()
	for _, f := range resp.headers {
		switch f.kind {
		case hdrConnection, hdrTransferEncoding, hdrHopByHop, hdrUpgrade:
			// Connection-specific: not in HTTP/2 (RFC 9113 8.2.2).
			continue
		}
		name := textproto.CanonicalMIMEHeaderKey(string(f.name))
		h[name] = append(h[name], string(f.value))
	}
	if resp.status < statusOK {
		st.w.WriteHeader(resp.status)
		clear(h)
		return nil
	}
	if resp.contentLength >= 0 {
		st.length = resp.contentLength
	}
	st.final = true
	st.w.WriteHeader(resp.status)
	return nil
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
