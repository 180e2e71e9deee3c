package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"net/http"
	"slices"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 guard: a filter on what a client sends, between the socket
// and x/net, where x/net departs from RFC 9113 in two ways a client can see.
//
// A SETTINGS frame that names a setting twice is valid and its values are
// processed in order, the last one winning (6.5.3); x/net hangs up on it
// (PROTOCOL_ERROR). The guard hands x/net the same frame with each setting
// once, holding the value that wins, so x/net acts as the RFC says.
//
// A request with a connection-specific field (connection, keep-alive,
// proxy-connection, transfer-encoding, upgrade) or a TE other than
// "trailers" is malformed (8.2.2): a stream error, RST_STREAM with
// PROTOCOL_ERROR (8.1.1). x/net answers it 400 instead (golang/go#26321).
// The guard follows the HPACK dynamic table with a decoder of its own, the
// twin of x/net's, to see the fields; when a request is malformed it makes
// its HEADERS frame depend on its own stream (a stream error, RFC 7540
// 5.3.1), which x/net resets with PROTOCOL_ERROR after it has opened the
// stream and before any handler runs. The stream is thus known, and
// closed: DATA the client sent after the HEADERS costs it only a
// STREAM_CLOSED reset. The header block itself is left as it is, so both
// HPACK tables stay in step. Trailers (HEADERS on a stream already open)
// take no priority; a malformed trailer block gets a field with an
// upper-case name appended, which x/net refuses as a stream error once it
// has decoded the block.
//
// The guard reads as x/net does, a frame header then its payload, and no
// further: most frames cost it a 9-byte copy of their header and pass
// their payload straight into x/net's buffer. It holds back only SETTINGS
// frames and header blocks (HEADERS and CONTINUATION) until they are whole,
// since what it learns at a block's end changes the block's first frame;
// x/net waits for the whole block too. What x/net refuses anyway (a frame
// over its size limit, CONTINUATION out of place, HPACK it cannot decode),
// or a header block larger than any client needs, makes the guard step
// aside for the rest of the connection and pass every byte untouched.

// Frame types and flags the guard looks at (RFC 9113 6).
const (
	h2FrameHeaderLen    = 9
	h2FrameHeaders      = 0x1
	h2FrameSettings     = 0x4
	h2FrameContinuation = 0x9
	h2FlagAck           = 0x1
	h2FlagEndHeaders    = 0x4
	h2FlagPadded        = 0x8
	h2FlagPriority      = 0x20

	// h2MaxSettings is where x/net hangs up on a SETTINGS frame whatever
	// it holds; a larger frame is passed on as it is, so that duplicates
	// cannot smuggle a long frame under that limit.
	h2MaxSettings = 100
	// h2KeepHeld is the largest hold buffer a connection keeps between
	// header blocks; a larger one, grown for a rare big block, is dropped.
	h2KeepHeld = 16 << 10
)

// h2Malformed is appended to a malformed trailer block: a literal field
// without indexing (it leaves the dynamic table alone) named "X", which
// x/net's framer refuses (upper case) with a stream error.
var h2Malformed = [...]byte{0x00, 0x01, 'X', 0x00}

// h2Limits are the numbers the guard shares with x/net's side of a
// connection, as x/net derives them from the listener's configuration
// (golang.org/x/net/http2 config.go): the header table size and frame size
// the server advertises, and the header list size it accepts.
type h2Limits struct {
	table    uint32
	maxFrame uint32
	maxList  uint32
}

func (h *h2Server) limits() h2Limits {
	l := h2Limits{table: h.srv.MaxDecoderHeaderTableSize, maxFrame: h.srv.MaxReadFrameSize}
	if h2 := h.base.HTTP2; h2 != nil {
		if h2.MaxDecoderHeaderTableSize != 0 {
			l.table = uint32(h2.MaxDecoderHeaderTableSize)
		}
		if h2.MaxReadFrameSize != 0 {
			l.maxFrame = uint32(h2.MaxReadFrameSize)
		}
	}
	if l.table == 0 {
		l.table = 4096
	}
	if l.maxFrame < 1<<14 || l.maxFrame > 1<<24-1 {
		l.maxFrame = 1 << 20
	}
	n := h.base.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	// x/net's allowance for the 32 bytes each field counts in HTTP/2.
	l.maxList = uint32(n + 10*32)
	return l
}

// h2Guard is the client connection as x/net reads it.
type h2Guard struct {
	net.Conn
	lim h2Limits
	// holdCap bounds a held header block at twice the largest header
	// list x/net accepts: encoded, a list is smaller than x/net counts it
	// (32 bytes a field on top of name and value), so only a client
	// flooding the block goes past, and the guard steps aside rather
	// than hold more.
	holdCap int

	preface int    // bytes of the client preface read so far
	pass    uint32 // payload bytes of the current frame, passed as they come
	hdr     [h2FrameHeaderLen]byte
	out     []byte // what x/net reads next: hdr, or held frames
	err     error  // the read error x/net gets once out is drained
	aside   bool   // stepped aside: every byte passes untouched

	// held is a SETTINGS frame or a header block being held back; while a
	// block waits for CONTINUATION, last is where its last frame starts.
	held []byte
	last int

	dec       *hpack.Decoder
	stream    uint32 // the block's stream
	newStream bool   // the block opens its stream (else: trailers)
	maxStream uint32 // the highest stream a block opened
	malformed bool
	te        int // TE fields in the block
}

// h2TLSGuard keeps the TLS connection's state visible to x/net, which
// checks the TLS version and cipher suite and fills Request.TLS with it.
type h2TLSGuard struct {
	*h2Guard
	tc interface{ ConnectionState() tls.ConnectionState }
}

func (g h2TLSGuard) ConnectionState() tls.ConnectionState { return g.tc.ConnectionState() }

// guardH2 wraps a connection that starts with the client preface.
func guardH2(c net.Conn, lim h2Limits) net.Conn {
	g := &h2Guard{Conn: c, lim: lim, holdCap: 2 * int(lim.maxList)}
	if tc, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return h2TLSGuard{g, tc}
	}
	return g
}

func (g *h2Guard) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(g.out) == 0 {
		switch {
		case g.err != nil:
			return 0, g.err
		case g.aside:
			return g.Conn.Read(p)
		case g.preface < len(http2.ClientPreface):
			return g.readPreface(p)
		case g.pass > 0:
			if uint32(len(p)) > g.pass {
				p = p[:g.pass]
			}
			n, err := g.Conn.Read(p)
			g.pass -= uint32(n)
			return n, err
		}
		g.nextFrame()
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	if len(g.out) == 0 && cap(g.held) > h2KeepHeld {
		g.held = nil
	}
	return n, nil
}

// readPreface passes the client preface; anything else is x/net's to
// refuse, and the guard steps aside.
func (g *h2Guard) readPreface(p []byte) (int, error) {
	if rest := len(http2.ClientPreface) - g.preface; len(p) > rest {
		p = p[:rest]
	}
	n, err := g.Conn.Read(p)
	if string(p[:n]) != http2.ClientPreface[g.preface:g.preface+n] {
		g.aside = true
	}
	g.preface += n
	return n, err
}

// readFull reads len(b) bytes unless the connection fails first.
func (g *h2Guard) readFull(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := g.Conn.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// nextFrame reads a frame header and decides what x/net reads next: the
// header with its payload to follow as it comes, or a held frame or block
// once it is whole (or what came of it before the connection failed).
func (g *h2Guard) nextFrame() {
	n, err := g.readFull(g.hdr[:])
	if err != nil {
		g.release(g.hdr[:n])
		g.err = err
		return
	}
	h := g.hdr[:]
	length := h2FrameLen(h)
	typ, flags := h[3], h[4]
	stream := binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1)
	inBlock := len(g.held) > 0
	switch {
	case length > g.lim.maxFrame, inBlock && (typ != h2FrameContinuation || stream != g.stream):
		g.stepAside()
	case typ == h2FrameSettings && flags&h2FlagAck == 0 && stream == 0 && length%6 == 0 && length <= 6*h2MaxSettings:
		g.readSettings(length)
	case typ == h2FrameHeaders, typ == h2FrameContinuation && inBlock:
		g.readBlockFrame(length, typ, flags, stream)
	case typ == h2FrameContinuation:
		g.stepAside()
	default:
		g.out, g.pass = h, length
	}
}

// release hands x/net what is held, then extra.
func (g *h2Guard) release(extra []byte) {
	if len(g.held) == 0 {
		g.out = extra
		return
	}
	g.out = append(g.held, extra...)
	g.held = g.held[:0]
}

// stepAside passes what is held and the current frame header untouched,
// and everything after it.
func (g *h2Guard) stepAside() {
	g.release(g.hdr[:])
	g.aside = true
}

// readSettings holds a SETTINGS frame and passes it with each setting once.
func (g *h2Guard) readSettings(length uint32) {
	g.held = append(g.held[:0], g.hdr[:]...)
	g.held = slices.Grow(g.held, int(length))[:h2FrameHeaderLen+int(length)]
	n, err := g.readFull(g.held[h2FrameHeaderLen:])
	if err != nil {
		g.held = g.held[:h2FrameHeaderLen+n]
		g.release(nil)
		g.err = err
		return
	}
	if m := dedupeSettings(g.held[h2FrameHeaderLen:]); m != int(length) {
		h2PutFrameLen(g.held, uint32(m))
		g.held = g.held[:h2FrameHeaderLen+m]
	}
	g.release(nil)
}

// readBlockFrame holds a HEADERS or CONTINUATION frame, decodes its
// fragment, and at the block's end releases the block, marked when it is
// malformed.
func (g *h2Guard) readBlockFrame(length uint32, typ, flags byte, stream uint32) {
	start := len(g.held)
	if start+h2FrameHeaderLen+int(length) > g.holdCap {
		g.stepAside()
		return
	}
	g.held = append(g.held, g.hdr[:]...)
	g.held = slices.Grow(g.held, int(length))[:start+h2FrameHeaderLen+int(length)]
	n, err := g.readFull(g.held[start+h2FrameHeaderLen:])
	if err != nil {
		g.held = g.held[:start+h2FrameHeaderLen+n]
		g.release(nil)
		g.err = err
		return
	}
	frag, ok := h2Fragment(typ, flags, g.held[start+h2FrameHeaderLen:])
	if !ok {
		// x/net refuses the frame before it decodes the block.
		g.release(nil)
		g.aside = true
		return
	}
	if typ == h2FrameHeaders {
		g.startBlock(stream)
	}
	g.last = start
	if _, err := g.dec.Write(frag); err != nil {
		g.release(nil)
		g.aside = true
		return
	}
	if flags&h2FlagEndHeaders == 0 {
		return
	}
	if err := g.dec.Close(); err != nil {
		g.release(nil)
		g.aside = true
		return
	}
	if g.malformed {
		if g.newStream {
			g.dependOnItself()
		} else {
			g.appendMalformed()
		}
	}
	g.release(nil)
}

func (g *h2Guard) startBlock(stream uint32) {
	if g.dec == nil {
		g.dec = hpack.NewDecoder(g.lim.table, g.field)
		g.dec.SetMaxStringLength(int(g.lim.maxList))
	}
	g.stream, g.malformed, g.te = stream, false, 0
	g.newStream = stream > g.maxStream
	if g.newStream {
		g.maxStream = stream
	}
}

// field sees each decoded field of a block: the request is malformed as
// x/net's checkValidHTTP2RequestHeaders would have it.
func (g *h2Guard) field(f hpack.HeaderField) {
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		g.malformed = true
	case "te":
		g.te++
		if g.te > 1 || f.Value != "trailers" && f.Value != "" {
			g.malformed = true
		}
	}
}

// dependOnItself gives the block's HEADERS frame (held[0:]) a priority
// that depends on its own stream. Were the frame to outgrow x/net's frame
// size, it stays as it is (and x/net answers 400).
func (g *h2Guard) dependOnItself() {
	at := h2FrameHeaderLen
	if g.held[4]&h2FlagPadded != 0 {
		at++
	}
	if g.held[4]&h2FlagPriority != 0 {
		e := uint32(g.held[at]&0x80) << 24
		binary.BigEndian.PutUint32(g.held[at:], e|g.stream)
		return
	}
	length := h2FrameLen(g.held)
	if length+5 > g.lim.maxFrame {
		return
	}
	var prio [5]byte
	binary.BigEndian.PutUint32(prio[:], g.stream)
	prio[4] = 15 // weight 16, the default
	g.held = slices.Insert(g.held, at, prio[:]...)
	g.held[4] |= h2FlagPriority
	h2PutFrameLen(g.held, length+5)
}

// appendMalformed puts h2Malformed at the end of the block's last
// fragment, before any padding.
func (g *h2Guard) appendMalformed() {
	f := g.held[g.last:]
	length := h2FrameLen(f)
	if length+uint32(len(h2Malformed)) > g.lim.maxFrame {
		return
	}
	end := h2FrameHeaderLen + int(length)
	if f[3] == h2FrameHeaders && f[4]&h2FlagPadded != 0 {
		end -= int(f[h2FrameHeaderLen])
	}
	h2PutFrameLen(f, length+uint32(len(h2Malformed)))
	g.held = slices.Insert(g.held, g.last+end, h2Malformed[:]...)
}

// h2Fragment is the header block fragment of a HEADERS or CONTINUATION
// payload; !ok when x/net would refuse the frame before decoding it.
func h2Fragment(typ, flags byte, p []byte) (frag []byte, ok bool) {
	if typ != h2FrameHeaders {
		return p, true
	}
	pad := 0
	if flags&h2FlagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&h2FlagPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if len(p) < pad {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// dedupeSettings rewrites a SETTINGS payload in place so that each
// setting appears once, and returns its new length. Processing the result
// in order does what processing p in order would: each setting ends with
// its last value; the header table size with its smallest, since an
// encoder must signal the smallest size the table had between two blocks
// (RFC 7541 4.2) and may use any size up to the last; and the first value
// x/net refuses still ends the connection, as it would have, with the
// settings before it applied.
func dedupeSettings(p []byte) int {
	n := len(p) / 6
	id := func(i int) http2.SettingID { return http2.SettingID(binary.BigEndian.Uint16(p[6*i:])) }
	val := func(i int) uint32 { return binary.BigEndian.Uint32(p[6*i+2:]) }
	bad := n
	for i := 0; i < n; i++ {
		s := http2.Setting{ID: id(i), Val: val(i)}
		if s.Valid() != nil || s.ID == http2.SettingNoRFC7540Priorities && s.Val > 1 {
			bad = i
			break
		}
	}
	w := 0
	for i := 0; i < bad; i++ {
		dup := bad < n && id(bad) == id(i)
		for j := i + 1; j < bad && !dup; j++ {
			if id(j) != id(i) {
				continue
			}
			dup = true
			if id(i) == http2.SettingHeaderTableSize && val(i) < val(j) {
				binary.BigEndian.PutUint32(p[6*j+2:], val(i))
			}
		}
		if !dup {
			copy(p[6*w:6*w+6], p[6*i:6*i+6])
			w++
		}
	}
	if bad < n {
		copy(p[6*w:6*w+6], p[6*bad:6*bad+6])
		w++
	}
	return 6 * w
}

func h2FrameLen(h []byte) uint32 {
	return uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
}

func h2PutFrameLen(h []byte, n uint32) {
	h[0], h[1], h[2] = byte(n>>16), byte(n>>8), byte(n)
}
