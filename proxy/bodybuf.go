package proxy

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// This file buffers request bodies (request_buffering): a body of at most
// client_body_buffer_size is read whole into the client read buffer before
// an upstream server is picked, so a client trickling its upload holds no
// upstream connection meanwhile, and the request can be retried on another
// server like any request that arrived in one read. The read buffer is
// sized for a request head; a body that does not fit in it moves the
// connection onto a larger buffer from the listener's pool for as long as
// the body is there: an idle connection never holds one.

var (
	errBodyTimeout = errors.New("request body not complete within request_timeout")
	errBodyGone    = errors.New("client closed the connection inside the request body")
)

// buffersBodies reports whether request_buffering is on for rt.
func (cc *clientConn) buffersBodies(rt *route) bool {
	if rt.bufferBody != nil {
		return *rt.bufferBody
	}
	return cc.ls.cfg.RequestBuffering
}

// bufferBody reads the rest of the current request's body into the read
// buffer when it fits client_body_buffer_size (a chunked body: until it
// ends or outgrows it). When the body is then whole in the buffer it sets
// ex.bodyLen and ex.bodyBuffered; when it is not, the body streams as it
// would have.
// A non-zero status (408, 400 or 413) is to be answered, closing the
// connection; status 0 with an error: the client went away.
func (cc *clientConn) bufferBody(ex *exchange) (status int, err error) {
	headLen, maxBody := ex.headLen, ex.maxBody
	req := &cc.req
	ls := &cc.ls.cfg
	limit := ls.ClientBodyBufferSize
	need := 0 // head and body, for a body of known length
	if !req.chunked {
		if req.contentLength <= 0 || req.contentLength > int64(limit) {
			return 0, nil
		}
		need = headLen + int(req.contentLength)
		if need > cc.br.Size() {
			cc.growReader()
		}
	}
	start := cc.first
	if start.IsZero() {
		start = ex.start // the head came in one read
	}
	deadline := start.Add(ls.RequestTimeout)
	scanned := cc.br.Buffered() // handle has run the chunk parser over all of it
	for {
		n := cc.br.Buffered()
		if req.chunked {
			all, _ := cc.br.Peek(n)
			k, err := cc.chunk.scan(all[scanned:])
			if err != nil {
				return statusBadRequest, fmt.Errorf("invalid chunked request body: %w", err)
			}
			if maxBody > 0 && cc.chunk.total > maxBody {
				return statusContentTooLarge, errBodyTooLarge
			}
			if k >= 0 && cc.chunk.trailer > len("\r\n") {
				// Whole, but with trailer fields: those are dropped, so
				// the body goes through copyChunked (from this buffer)
				// rather than verbatim, as in handle.
				return 0, nil
			}
			if k >= 0 {
				ex.bodyLen, ex.bodyBuffered = scanned+k-headLen, true
				ex.bytesIn += int64(ex.bodyLen)
				return 0, nil
			}
			scanned = n
			if n-headLen >= limit {
				return 0, nil // larger than the buffer: stream it
			}
			if n == cc.br.Size() {
				cc.growReader()
			}
		} else if n >= need {
			ex.bodyLen, ex.bodyBuffered = need-headLen, true
			ex.bytesIn += int64(ex.bodyLen)
			return 0, nil
		}
		now := time.Now()
		cc.now = now
		rdl := now.Add(ls.ClientBodyTimeout)
		if ls.RequestTimeout > 0 && deadline.Before(rdl) {
			if !now.Before(deadline) {
				return statusRequestTimeout, errBodyTimeout
			}
			rdl = deadline
		}
		cc.rdl = rdl
		cc.c.SetReadDeadline(rdl)
		if _, err := cc.br.Peek(n + 1); err != nil {
			switch {
			case isTimeout(err) && rdl.Equal(deadline):
				return statusRequestTimeout, errBodyTimeout
			case isTimeout(err):
				return statusRequestTimeout, fmt.Errorf("reading request body: %w", err)
			}
			return 0, errBodyGone
		}
	}
}

// growReader moves the connection onto a read buffer from the listener's
// body pool, large enough for a head and a buffered body, carrying over
// what the current one holds. The current buffer stays with the
// connection, untouched: the parsed request still points into it.
func (cc *clientConn) growReader() {
	if cc.small != nil {
		return // already on a body buffer, which holds any head and body
	}
	small := cc.br
	n := small.Buffered()
	held, _ := small.Peek(n)
	cc.pre = prefixReader{pre: held, r: cc.io}
	big := cc.ls.bodyReaders.getReader(&cc.pre)
	big.Peek(n) // takes all of pre in one read: big is larger than small
	small.Discard(n)
	cc.small, cc.br = small, big
	cc.ls.bodyBufs.Add(1)
}

// shrinkReader gives the body buffer back once it holds nothing, and
// reads through the connection's own buffer again.
func (cc *clientConn) shrinkReader() {
	cc.ls.bodyReaders.putReader(cc.br)
	cc.br, cc.small = cc.small, nil
	cc.pre = prefixReader{}
	cc.ls.bodyBufs.Add(-1)
}

// prefixReader hands out pre, then reads from r: it is how the bytes of
// one read buffer reach another.
type prefixReader struct {
	pre []byte
	r   io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.r.Read(b)
}

var _ io.Reader = (*prefixReader)(nil)
