package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pingora-go/pingora/config"
)

// One HTTP/2 connection, server side (RFC 9113). A goroutine reads the
// client's frames and acts on them; each stream's request runs on a
// goroutine of its own through the engine (h2_stream.go), which writes its
// response's frames itself, in order, into the connection's writer
// (h2_writer.go). Nothing is handed from goroutine to goroutine per frame:
// the states, windows and request bodies that the reader and the streams
// share are under one mutex, held for a few instructions at a time.
//
// The defences against the known attacks:
//   - rapid reset (CVE-2023-44487): at most max_concurrent_streams
//     streams are open and at most as many handlers run; streams the
//     client opens while the handlers of reset ones still run wait for a
//     slot (a reset one never starts), and a client that gets more than
//     4 x max_concurrent_streams of them waiting is sent GOAWAY
//     ENHANCE_YOUR_CALM;
//   - CONTINUATION floods (CVE-2024-27316) and HPACK bombs: x/net's framer
//     bounds a header block by the header list size while it decodes it,
//     and hangs up on a block far past it; a request whose list is too
//     large is answered 431 by the engine;
//   - SETTINGS and PING floods: their answers wait in the writer's queue,
//     bounded (h2ControlQueueMax); a client that does not read them is
//     hung up on;
//   - a connection without streams is closed at keepalive_timeout, however
//     many frames it sends meanwhile.
//
// And what would smuggle a request past an HTTP/1.1 upstream is refused
// (RST_STREAM PROTOCOL_ERROR): CR, LF or NUL in a field (the framer),
// connection-specific fields and a TE other than "trailers", a
// content-length that the DATA frames do not match.

// The receive windows the server grants: per stream and per connection.
// A stream's body waits in its buffer until the engine reads it, so these
// bound what a connection's uploads hold in memory.
const (
	h2StreamWindow = 1 << 20
	h2ConnWindow   = 1 << 20
)

// h2GoAwayLinger is how long a connection that was sent GOAWAY and has no
// stream left waits for the client to close it first: a client whose
// request crossed the GOAWAY must read it, not a reset, to retry.
const h2GoAwayLinger = time.Second

var (
	errH2StreamReset = errors.New("http2: stream reset")
	errH2ConnClosed  = errors.New("http2: connection closed")
	errH2Malformed   = errors.New("http2: malformed request")
)

type h2Conn struct {
	cc  *clientConn // nil while parked
	srv *h2Server
	in  *h2In
	c   net.Conn // in's connection: the TLS one or the socket
	w   *h2Writer
	fr  *http2.Framer // nil while parked
	dec *hpack.Decoder

	// maxFrame is the client's SETTINGS_MAX_FRAME_SIZE.
	maxFrame atomic.Uint32
	// tableUpdate: the client sent SETTINGS_HEADER_TABLE_SIZE, and the
	// next header block starts with a dynamic table size update (to 0:
	// we keep no table). Under w's lock.
	tableUpdate bool

	mu      sync.Mutex
	flow    sync.Cond // on mu: a send window grew, or a stream or the connection ended
	streams map[uint32]*h2Stream
	maxID   uint32 // the highest stream the client opened
	sendWin int64  // the connection's send window
	initWin int64  // the client's SETTINGS_INITIAL_WINDOW_SIZE
	// recvWin: what the client may still send on the connection;
	// recvUnacked, what was taken off it and is not yet given back.
	recvWin, recvUnacked int64
	running              int         // handlers running
	unstarted            []*h2Stream // streams waiting for a handler
	goingAway            bool        // GOAWAY sent: no new stream
	goAwayID             uint32
	closed               bool
	idleArmed            bool      // the read deadline is the idle one
	waiting              bool      // the reader waits in h2In.fill
	idleStart            int64     // its wait was offered to the sweeper then (cc.idleSince)
	idleDeadline         time.Time // when it is
	handlers             sync.WaitGroup

	// The reader's own.
	sawSettings     bool
	unackedSettings int
}

func newH2Conn(cc *clientConn, srv *h2Server, in *h2In) *h2Conn {
	hc := &h2Conn{
		cc: cc, srv: srv, in: in, c: in.Conn,
		w:       newH2Writer(in.Conn, srv.sendTimeout, &srv.writeBufs),
		dec:     hpack.NewDecoder(4096, nil),
		streams: map[uint32]*h2Stream{},
		sendWin: h2DefaultWindow, initWin: h2DefaultWindow,
		recvWin: h2ConnWindow,
	}
	hc.flow.L = &hc.mu
	hc.maxFrame.Store(h2MinFrameSize)
	hc.newFramer()
	return hc
}

// newFramer makes the connection's framer, around its HPACK decoder (a
// parked connection keeps the decoder, whose table is the client's, but
// not the framer, whose buffer a large frame grew).
func (c *h2Conn) newFramer() {
	c.fr = http2.NewFramer(io.Discard, c.in)
	c.fr.ReadMetaHeaders = c.dec
	c.fr.MaxHeaderListSize = c.srv.maxList
	c.fr.SetMaxReadFrameSize(h2MinFrameSize)
	c.fr.SetReuseFrames()
}

// serve reads and acts on the client's frames until the connection ends
// or parks.
func (c *h2Conn) serve() (parked bool) {
	c.count(config.H2Connections, 0)
	if tc, ok := c.c.(*tls.Conn); ok && !h2CipherSuite(tc.ConnectionState()) {
		// A TLS 1.2 suite HTTP/2 prohibits (RFC 9113 9.2.2): a client
		// offering nothing better was chosen one for HTTP/1.1's sake.
		c.fail(http2.ErrCodeInadequateSecurity)
		c.end()
		return false
	}
	c.w.frames(true, func(b []byte) []byte {
		b = appendFrameHeader(b, 4*6, h2FrameSettings, 0, 0)
		b = appendSetting(b, http2.SettingMaxConcurrentStreams, c.srv.maxStreams)
		b = appendSetting(b, http2.SettingInitialWindowSize, h2StreamWindow)
		b = appendSetting(b, http2.SettingMaxFrameSize, h2MinFrameSize)
		b = appendSetting(b, http2.SettingMaxHeaderListSize, c.srv.maxList)
		return appendWindowUpdate(b, 0, h2ConnWindow-h2DefaultWindow)
	})
	c.unackedSettings = 1
	c.idleDeadline = time.Now().Add(c.srv.idleTimeout)
	c.c.SetReadDeadline(c.idleDeadline)
	c.idleArmed = true
	if !c.srv.add(c) {
		c.goAway() // and the linger's deadline, not keepalive_timeout
	}
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.in, preface[:]); err != nil || string(preface[:]) != http2.ClientPreface {
		if err == nil {
			c.fail(http2.ErrCodeProtocol)
		}
		c.end()
		return false
	}
	return c.readFrames()
}

// h2CipherSuite reports whether HTTP/2 may run over the connection's TLS:
// TLS 1.3, or TLS 1.2 with an ephemeral key exchange and an AEAD cipher
// (RFC 9113 9.2.2 prohibits the rest, among them the CBC suites Go still
// offers for TLS 1.2 clients).
func h2CipherSuite(cs tls.ConnectionState) bool {
	if cs.Version >= tls.VersionTLS13 {
		return true
	}
	switch cs.CipherSuite {
	case tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return true
	}
	return false
}

// readFrames is the reading loop; it returns when the connection parks
// (true) or has ended.
func (c *h2Conn) readFrames() (parked bool) {
	for {
		if !c.in.buffered() && c.wait() {
			return true
		}
		f, err := c.fr.ReadFrame()
		if err == nil {
			err = c.process(f)
		}
		if err != nil && !c.handleError(err, f) {
			c.end()
			return false
		}
	}
}

// handleError acts on what reading or processing a frame met; false when
// the connection is over.
func (c *h2Conn) handleError(err error, f http2.Frame) bool {
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &se):
		c.mu.Lock()
		if f == nil && se.Cause != nil && se.StreamID%2 == 1 && se.StreamID > c.maxID {
			// A header block the framer refused (a malformed field):
			// its stream is closed now, not idle, and later DATA on it
			// is a stream error, not a connection one.
			c.maxID = se.StreamID
		}
		c.resetLocked(se.StreamID, se.Code)
		c.mu.Unlock()
		return true
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.fail(http2.ErrCodeFrameSize)
	case errors.As(err, &ce):
		c.fail(http2.ErrCode(ce))
	case isTimeout(err):
		c.mu.Lock()
		idle := len(c.streams) == 0 && !c.goingAway
		c.mu.Unlock()
		if idle {
			// keepalive_timeout without a stream: GOAWAY, then the
			// linger, so that a request crossing the close is known
			// unprocessed, and the client reads the GOAWAY rather
			// than a reset.
			c.goAway()
			return true
		}
	}
	return false
}

// fail sends GOAWAY with code (the connection then ends).
func (c *h2Conn) fail(code http2.ErrCode) {
	c.mu.Lock()
	last := c.maxID
	c.goingAway = true
	c.mu.Unlock()
	c.count(config.H2GoAwaySent, code)
	c.w.frames(true, func(b []byte) []byte { return appendGoAway(b, last, code) })
}

// count adds one to an HTTP/2 counter; code, for those by error code.
func (c *h2Conn) count(counter int, code http2.ErrCode) {
	if counter >= config.H2ResetSent {
		if code >= config.H2ErrCodeCount {
			return
		}
		counter += int(code)
	}
	c.srv.stats[counter].Add(1)
}

// goAway takes no new stream (graceful GOAWAY: a drain, or the client's
// own GOAWAY); the connection closes once its streams are done.
func (c *h2Conn) goAway() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.goingAway || c.closed {
		return
	}
	c.goingAway, c.goAwayID = true, c.maxID
	last := c.maxID
	c.count(config.H2GoAwaySent, http2.ErrCodeNo)
	c.w.frames(true, func(b []byte) []byte { return appendGoAway(b, last, http2.ErrCodeNo) })
	c.armIdleLocked()
}

// armIdleLocked sets the read deadline of a connection left without
// streams: keepalive_timeout, or after GOAWAY the linger.
func (c *h2Conn) armIdleLocked() {
	if len(c.streams) > 0 || c.closed {
		return
	}
	d := c.srv.idleTimeout
	if c.goingAway {
		d = h2GoAwayLinger
	} else if c.idleArmed {
		return
	}
	c.idleArmed = true
	c.idleDeadline = time.Now().Add(d)
	c.c.SetReadDeadline(c.idleDeadline)
}

// end is the connection's end: its streams are reset, what is queued is
// sent (GOAWAY), and once its handlers are done the clientConn is free.
func (c *h2Conn) end() {
	c.mu.Lock()
	c.closed = true
	for id := range c.streams {
		c.abortLocked(c.streams[id], errH2ConnClosed)
	}
	queued := c.unstarted
	c.unstarted = nil
	c.flow.Broadcast()
	c.mu.Unlock()
	for _, st := range queued {
		c.srv.putStream(st)
	}
	if errors.Is(c.w.failure(), errH2Calm) {
		c.count(config.H2GoAwaySent, http2.ErrCodeEnhanceYourCalm) // hung up on, without a GOAWAY
	}
	c.w.Close()
	c.handlers.Wait()
	c.srv.remove(c)
}

// process acts on one frame.
func (c *h2Conn) process(f http2.Frame) error {
	if !c.sawSettings {
		if _, ok := f.(*http2.SettingsFrame); !ok {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		c.sawSettings = true
	}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.processHeaders(f)
	case *http2.DataFrame:
		return c.processData(f)
	case *http2.SettingsFrame:
		return c.processSettings(f)
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		data := f.Data
		c.w.frames(true, func(b []byte) []byte {
			return append(appendFrameHeader(b, 8, h2FramePing, h2FlagAck, 0), data[:]...)
		})
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		defer c.mu.Unlock()
		if f.StreamID > c.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle (RFC 9113 6.4)
		}
		if st := c.streams[f.StreamID]; st != nil {
			c.count(config.H2ClientResets, 0)
			c.abortLocked(st, errH2StreamReset)
		}
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
	case *http2.GoAwayFrame:
		c.goAway()
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // a client cannot push
	}
	// Anything else (unknown types, PRIORITY_UPDATE) is ignored.
	return nil
}

func (c *h2Conn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		if c.unackedSettings--; c.unackedSettings < 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	// Settings take effect in order, a repeated one's last value winning
	// (RFC 9113 6.5.3).
	table := false
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			defer c.mu.Unlock()
			delta := int64(s.Val) - c.initWin
			c.initWin = int64(s.Val)
			for _, st := range c.streams {
				if st.sendWin += delta; st.sendWin > h2MaxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.flow.Broadcast()
		case http2.SettingMaxFrameSize:
			c.maxFrame.Store(s.Val)
		case http2.SettingHeaderTableSize:
			table = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.w.frames(true, func(b []byte) []byte {
		if table {
			c.tableUpdate = true
		}
		return appendFrameHeader(b, 0, h2FrameSettings, h2FlagAck, 0)
	})
	return nil
}

func (c *h2Conn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if c.sendWin += inc; c.sendWin > h2MaxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.flow.Broadcast()
		return nil
	}
	if f.StreamID > c.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol) // idle
	}
	st := c.streams[f.StreamID]
	if st == nil {
		return nil // closed: a window update may cross the stream's end
	}
	if st.sendWin += inc; st.sendWin > h2MaxWindow {
		return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
	}
	c.flow.Broadcast()
	return nil
}

func (c *h2Conn) processData(f *http2.DataFrame) error {
	id, n := f.StreamID, int64(f.Length)
	data := f.Data()
	c.mu.Lock()
	defer c.mu.Unlock()
	if id > c.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol) // idle (RFC 9113 6.1)
	}
	if c.recvWin < n {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWin -= n
	st := c.streams[id]
	switch {
	case c.goingAway && id > c.goAwayID:
		// A stream after the GOAWAY, ignored: the connection's window
		// is given back.
		c.refundLocked(nil, n)
		return nil
	case st == nil || st.clientEnded:
		c.refundLocked(nil, n)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	if st.declLen >= 0 && st.got+int64(len(data)) > st.declLen {
		c.refundLocked(nil, n)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol} // past content-length
	}
	if st.recvWin < n {
		c.refundLocked(nil, n)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	st.recvWin -= n
	if len(data) > 0 {
		st.got += int64(len(data))
		st.recv = append(st.recv, data...)
		st.wakeBody()
	}
	if pad := n - int64(len(data)); pad > 0 {
		c.refundLocked(st, pad)
	}
	if f.StreamEnded() {
		return c.endRequestLocked(st)
	}
	return nil
}

// endRequestLocked: the client's side of st is over (END_STREAM).
func (c *h2Conn) endRequestLocked(st *h2Stream) error {
	if st.declLen >= 0 && st.got != st.declLen {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol} // short of content-length
	}
	st.clientEnded = true
	st.wakeBody()
	if st.localEnded {
		c.closeLocked(st)
	}
	return nil
}

func (c *h2Conn) processHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 != 1 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		defer c.mu.Unlock()
		if st.clientEnded {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
		}
		// Trailers: they end the stream, carry no pseudo-header field and
		// nothing connection-specific (RFC 9113 8.1). They are not passed
		// on: the upstream request's chunked body ends without them.
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
		}
		for _, hf := range f.RegularFields() {
			if connectionSpecific(hf) {
				return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
			}
		}
		return c.endRequestLocked(st)
	}
	if id <= c.maxID {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol) // stream ids only go up
	}
	c.maxID = id
	full := uint32(len(c.streams)) >= c.srv.maxStreams
	goingAway := c.goingAway
	c.mu.Unlock()
	switch {
	case goingAway:
		return nil // after GOAWAY: ignored, the client retries elsewhere
	case full:
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	case f.HasPriority() && f.Priority.StreamDep == id:
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	st := c.srv.getStream()
	st.open(c, id, !f.StreamEnded())
	if err := st.prepare(f); err != nil {
		c.srv.putStream(st)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	c.count(config.H2Streams, 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	st.sendWin, st.recvWin = c.initWin, h2StreamWindow
	st.clientEnded = f.StreamEnded()
	c.streams[id] = st
	if c.idleArmed {
		c.idleArmed = false
		c.c.SetReadDeadline(time.Time{})
	}
	if c.running < int(c.srv.maxStreams) {
		c.startLocked(st)
		return nil
	}
	// The handlers of streams already gone (reset) still run: this one
	// waits for a slot, and a client that keeps opening streams while
	// that lasts is abusing resets.
	c.unstarted = append(c.unstarted, st)
	if len(c.unstarted) > 4*int(c.srv.maxStreams) {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

// connectionSpecific reports a field that HTTP/2 forbids in a request
// (RFC 9113 8.2.2).
func connectionSpecific(hf hpack.HeaderField) bool {
	switch hf.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	case "te":
		return hf.Value != "trailers"
	}
	return false
}

func (c *h2Conn) startLocked(st *h2Stream) {
	c.running++
	c.handlers.Add(1)
	go c.runStream(st)
}

// runStream runs a stream's request through the engine, then ends the
// stream if the engine did not.
func (c *h2Conn) runStream(st *h2Stream) {
	defer c.handlers.Done()
	if c.cc.serveStream(st) {
		if !st.localEnded {
			st.writeData(nil, true)
		}
	}
	c.mu.Lock()
	if st.inTable {
		// Cut short (no final response, or one cut short): the client
		// must not take it for whole, as it would a stream ended by
		// END_STREAM. Or whole while the client is still sending: the
		// rest of the body is not wanted (RFC 9113 8.1).
		code := http2.ErrCodeNo
		if !st.localEnded {
			code = http2.ErrCodeInternal
		}
		c.resetLocked(st.id, code)
	}
	c.running--
	for len(c.unstarted) > 0 && !c.closed {
		next := c.unstarted[0]
		c.unstarted = c.unstarted[1:]
		if next.inTable {
			c.startLocked(next)
			break
		}
		c.srv.putStream(next) // reset while it waited
	}
	if len(c.unstarted) == 0 {
		c.unstarted = nil
	}
	c.markIdleLocked()
	c.mu.Unlock()
	c.srv.putStream(st)
}

// resetLocked resets stream id: its exchange is cut, and RST_STREAM sent.
func (c *h2Conn) resetLocked(id uint32, code http2.ErrCode) {
	if st := c.streams[id]; st != nil {
		c.abortLocked(st, errH2StreamReset)
	}
	c.count(config.H2ResetSent, code)
	c.w.frames(true, func(b []byte) []byte { return appendRSTStream(b, id, code) })
}

// abortLocked closes st at once: nothing more is sent on it, its body
// reads fail, its exchange with the upstream is cut.
func (c *h2Conn) abortLocked(st *h2Stream, err error) {
	st.rst.Store(true)
	if st.recvErr == nil {
		st.recvErr = err
	}
	st.wakeBody()
	if st.sc != nil {
		st.sc.cut()
	}
	c.closeLocked(st)
	c.flow.Broadcast()
}

// closeLocked takes st out of the open streams. What the client sent of
// its body and the engine did not read goes back to the connection's
// window: the stream's own window no longer matters.
func (c *h2Conn) closeLocked(st *h2Stream) {
	if !st.inTable {
		return
	}
	st.inTable = false
	if unread := len(st.recv) - st.recvOff; unread > 0 {
		st.recv, st.recvOff = st.recv[:0], 0
		c.refundLocked(nil, int64(unread))
	}
	delete(c.streams, st.id)
	if len(c.streams) == 0 {
		c.armIdleLocked()
	}
}

// localEnd: st's END_STREAM is queued.
func (c *h2Conn) localEnd(st *h2Stream) {
	c.mu.Lock()
	st.localEnded = true
	if st.clientEnded {
		c.closeLocked(st)
	}
	c.mu.Unlock()
}

// refundLocked gives n bytes of receive window back, to the connection
// and (st not nil) to st, once enough is due that a WINDOW_UPDATE is worth
// its frame.
func (c *h2Conn) refundLocked(st *h2Stream, n int64) {
	var conn, stream uint32
	if c.recvUnacked += n; c.recvUnacked >= h2ConnWindow/4 {
		conn = uint32(c.recvUnacked)
		c.recvWin += c.recvUnacked
		c.recvUnacked = 0
	}
	if st != nil && !st.clientEnded {
		if st.recvUnacked += n; st.recvUnacked >= h2StreamWindow/4 {
			stream = uint32(st.recvUnacked)
			st.recvWin += st.recvUnacked
			st.recvUnacked = 0
		}
	}
	if conn == 0 && stream == 0 {
		return
	}
	c.w.frames(true, func(b []byte) []byte {
		if conn > 0 {
			b = appendWindowUpdate(b, 0, conn)
		}
		if stream > 0 {
			b = appendWindowUpdate(b, st.id, stream)
		}
		return b
	})
}

// reserve takes up to want bytes of send window for st, waiting while
// the window is empty, until st's write deadline.
func (c *h2Conn) reserve(st *h2Stream, want int) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if st.rst.Load() || c.closed {
			return 0, errH2StreamReset
		}
		if w := min(st.sendWin, c.sendWin); w > 0 {
			n := min(int64(want), w, h2WriteQueueMax)
			st.sendWin -= n
			c.sendWin -= n
			return int(n), nil
		}
		if !st.wdl.IsZero() {
			d := time.Until(st.wdl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.AfterFunc(d, func() {
					c.mu.Lock()
					c.flow.Broadcast()
					c.mu.Unlock()
				})
			}
		}
		c.flow.Wait()
	}
}
