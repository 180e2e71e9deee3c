package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The guard's tests feed it a client's byte stream (written with x/net's
// Framer and HPACK encoder) through a connection whose reads end where
// the test says, read it back as x/net does, and look at what came out.

// testLimits are the guard's limits for a listener with the default
// max_header_size.
var testLimits = h2Limits{table: 4096, maxFrame: 16 << 10, maxList: 16<<10 + 320}

// scriptConn is a connection whose reads return data, each read ending at
// the next cut (or earlier, when the reader's buffer is smaller).
type scriptConn struct {
	net.Conn
	data []byte
	cuts []int
	off  int
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if c.off == len(c.data) {
		return 0, io.EOF
	}
	end := len(c.data)
	for len(c.cuts) > 0 && c.cuts[0] <= c.off {
		c.cuts = c.cuts[1:]
	}
	if len(c.cuts) > 0 {
		end = min(c.cuts[0], end)
	}
	n := copy(p, c.data[c.off:end])
	c.off += n
	return n, nil
}

// readLikeXNet reads the preface, then each frame header and its payload
// with io.ReadFull, as x/net's server does, until the stream ends.
func readLikeXNet(r io.Reader) ([]byte, error) {
	var out []byte
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(r, pre); err != nil {
		return nil, fmt.Errorf("preface: %w", err)
	}
	out = append(out, pre...)
	for {
		var h [9]byte
		if _, err := io.ReadFull(r, h[:]); err == io.EOF {
			return out, nil
		} else if err != nil {
			return out, fmt.Errorf("frame header: %w", err)
		}
		payload := make([]byte, h2FrameLen(h[:]))
		if _, err := io.ReadFull(r, payload); err != nil {
			return out, fmt.Errorf("frame payload: %w", err)
		}
		out = append(append(out, h[:]...), payload...)
	}
}

// readInSevens reads everything 7 bytes at a time, across frames.
func readInSevens(r io.Reader) ([]byte, error) {
	var out []byte
	buf := make([]byte, 7)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// guardOutputs runs data through a fresh guard for every way of cutting
// it in two and for one byte per read, each read back both ways, and
// fails unless every run yields the same bytes; it returns them.
func guardOutputs(t *testing.T, data []byte) []byte {
	t.Helper()
	var want []byte
	check := func(desc string, cuts []int, read func(io.Reader) ([]byte, error)) {
		got, err := read(guardH2(&scriptConn{data: data, cuts: cuts}, testLimits))
		if err != nil {
			t.Fatalf("%s: %v", desc, err)
		}
		if want == nil {
			want = got
		} else if !bytes.Equal(got, want) {
			t.Fatalf("%s: output differs from the first run's:\n got %x\nwant %x", desc, got, want)
		}
	}
	ones := make([]int, len(data))
	for i := range ones {
		ones[i] = i + 1
	}
	for _, read := range []func(io.Reader) ([]byte, error){readLikeXNet, readInSevens} {
		check("one byte per read", ones, read)
		for k := 1; k < len(data); k++ {
			check(fmt.Sprintf("cut at %d", k), []int{k}, read)
		}
	}
	return want
}

// clientStream writes a client's side of a connection.
type clientStream struct {
	buf bytes.Buffer
	fr  *http2.Framer
	enc *hpack.Encoder
	blk bytes.Buffer
}

func newClientStream() *clientStream {
	s := &clientStream{}
	s.buf.WriteString(http2.ClientPreface)
	s.fr = http2.NewFramer(&s.buf, nil)
	s.fr.AllowIllegalWrites = true // frames the RFC allows, x/net's checks aside
	s.enc = hpack.NewEncoder(&s.blk)
	return s
}

// block HPACK-encodes fields (name, value, name, value...).
func (s *clientStream) block(fields ...string) []byte {
	s.blk.Reset()
	for i := 0; i < len(fields); i += 2 {
		s.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(s.blk.Bytes())
}

// headers writes a header block on stream id in as many frames as splits
// says (cut points in the block), the HEADERS frame padded and with a
// priority as asked.
func (s *clientStream) headers(id uint32, endStream bool, pad uint8, prio bool, block []byte, splits ...int) {
	cuts := append(append([]int{0}, splits...), len(block))
	p := http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:cuts[1]], EndStream: endStream, EndHeaders: len(cuts) == 2, PadLength: pad}
	if prio {
		p.Priority = http2.PriorityParam{StreamDep: 0, Weight: 200}
	}
	s.fr.WriteHeaders(p)
	for i := 1; i+1 < len(cuts); i++ {
		s.fr.WriteContinuation(id, i+2 == len(cuts), block[cuts[i]:cuts[i+1]])
	}
}

func (s *clientStream) bytes() []byte { return bytes.Clone(s.buf.Bytes()) }

var getFields = []string{":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/"}

// A stream with nothing to mend comes out as it went in, byte for byte,
// however its reads are cut: every frame type, padding, priorities,
// CONTINUATION, trailers, the dynamic table in use.
func TestH2GuardPassesCleanStream(t *testing.T) {
	s := newClientStream()
	s.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 8192})
	s.fr.WriteSettingsAck()
	s.fr.WriteWindowUpdate(0, 1<<20)
	s.headers(1, true, 0, false, s.block(append(getFields, "te", "trailers", "user-agent", "test")...))
	s.headers(3, false, 7, true, s.block(append(getFields, "user-agent", "test", "x-long", strings.Repeat("v", 40))...), 5, 20)
	s.fr.WriteData(3, false, []byte("body"))
	s.fr.WriteDataPadded(3, false, []byte("more"), make([]byte, 9))
	s.headers(3, true, 3, false, s.block("x-trailer", "t", "te", ""), 2)
	s.fr.WritePing(false, [8]byte{1, 2, 3})
	s.fr.WritePriority(5, http2.PriorityParam{StreamDep: 3, Weight: 1})
	s.fr.WriteRSTStream(3, http2.ErrCodeCancel)
	s.fr.WriteRawFrame(0xfa, 0x3, 0, []byte("unknown"))
	s.headers(5, true, 0, false, s.block(getFields...))
	s.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	in := s.bytes()
	if out := guardOutputs(t, in); !bytes.Equal(out, in) {
		t.Fatalf("the guard changed a clean stream:\n got %x\nwant %x", out, in)
	}
}

// S is a setting, short enough for tables (http2.Setting, unkeyed).
type S struct {
	ID  http2.SettingID
	Val uint32
}

func xs(ss ...S) []http2.Setting {
	var hs []http2.Setting
	for _, s := range ss {
		hs = append(hs, http2.Setting(s))
	}
	return hs
}

// settingsOf parses a SETTINGS payload.
func settingsOf(p []byte) []S {
	var ss []S
	for i := 0; i+6 <= len(p); i += 6 {
		ss = append(ss, S{http2.SettingID(uint16(p[i])<<8 | uint16(p[i+1])), uint32(p[i+2])<<24 | uint32(p[i+3])<<16 | uint32(p[i+4])<<8 | uint32(p[i+5])})
	}
	return ss
}

func settingsPayload(ss ...S) []byte {
	var b []byte
	for _, s := range ss {
		b = append(b, byte(s.ID>>8), byte(s.ID), byte(s.Val>>24), byte(s.Val>>16), byte(s.Val>>8), byte(s.Val))
	}
	return b
}

func TestH2GuardDedupesSettings(t *testing.T) {
	const (
		hts  = http2.SettingHeaderTableSize
		push = http2.SettingEnablePush
		iws  = http2.SettingInitialWindowSize
		mfs  = http2.SettingMaxFrameSize
		nop  = http2.SettingNoRFC7540Priorities
	)
	for _, tc := range []struct {
		name    string
		in, out []S
	}{
		{"none", nil, nil},
		{"no duplicates", []S{{iws, 100}, {mfs, 20000}}, []S{{iws, 100}, {mfs, 20000}}},
		{"the last value wins", []S{{iws, 100}, {mfs, 20000}, {iws, 1}}, []S{{mfs, 20000}, {iws, 1}}},
		{"three times", []S{{iws, 1}, {iws, 2}, {push, 0}, {iws, 3}}, []S{{push, 0}, {iws, 3}}},
		{"header table size: the smallest", []S{{hts, 0}, {iws, 5}, {hts, 4096}}, []S{{iws, 5}, {hts, 0}}},
		{"header table size: the last is smallest", []S{{hts, 8192}, {hts, 100}}, []S{{hts, 100}}},
		{"unknown settings too", []S{{0xf0, 1}, {0xf0, 2}}, []S{{0xf0, 2}}},
		// x/net hangs up at the first bad value, with the error it gives:
		// it must still see it, after the settings before it.
		{"a bad value ends it", []S{{iws, 1}, {push, 2}, {iws, 5}}, []S{{iws, 1}, {push, 2}}},
		{"a bad value after a good one", []S{{push, 1}, {mfs, 100}, {push, 2}}, []S{{push, 1}, {mfs, 100}}},
		{"a bad value replaces a good one", []S{{push, 1}, {iws, 7}, {push, 2}}, []S{{iws, 7}, {push, 2}}},
		{"window too large", []S{{iws, 1}, {iws, 1 << 31}}, []S{{iws, 1 << 31}}},
		{"no RFC 7540 priorities over 1", []S{{nop, 1}, {nop, 2}}, []S{{nop, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := settingsPayload(tc.in...)
			n := dedupeSettings(p)
			if got := settingsOf(p[:n]); !slices.Equal(got, tc.out) {
				t.Errorf("dedupeSettings(%v) = %v, want %v", tc.in, got, tc.out)
			}
		})
	}

	// Through the guard, in a stream: the frame shrinks, the rest stays.
	s := newClientStream()
	s.fr.WriteSettings(xs(S{iws, 100}, S{mfs, 20000}, S{iws, 1})...)
	s.fr.WritePing(false, [8]byte{7})
	want := newClientStream()
	want.fr.WriteSettings(xs(S{mfs, 20000}, S{iws, 1})...)
	want.fr.WritePing(false, [8]byte{7})
	if out := guardOutputs(t, s.bytes()); !bytes.Equal(out, want.bytes()) {
		t.Errorf("duplicate settings:\n got %x\nwant %x", out, want.bytes())
	}

	// Past x/net's 100 settings, and for an ACK, nothing changes.
	for _, raw := range []func(*clientStream){
		func(s *clientStream) {
			s.fr.WriteSettings(xs(slices.Repeat([]S{{iws, 1}}, h2MaxSettings+1)...)...)
		},
		func(s *clientStream) {
			s.fr.WriteRawFrame(http2.FrameSettings, 0x1, 0, settingsPayload(S{iws, 1}, S{iws, 2}))
		},
	} {
		s := newClientStream()
		raw(s)
		in := s.bytes()
		if out := guardOutputs(t, in); !bytes.Equal(out, in) {
			t.Errorf("the guard changed what x/net refuses or ignores:\n got %x\nwant %x", out, in)
		}
	}
}

// blockFrames is what a stream's header blocks came out as.
type blockFrames struct {
	stream    uint32
	first     *http2.HeadersFrame // its priority and padding, as parsed
	fragments []byte
	fields    []hpack.HeaderField
}

// readBlocks parses a guarded stream back into its header blocks, and
// decodes them with one HPACK decoder, as x/net would.
func readBlocks(t *testing.T, out []byte) []blockFrames {
	t.Helper()
	fr := http2.NewFramer(nil, bytes.NewReader(out[len(http2.ClientPreface):]))
	var blocks []blockFrames
	var cur *blockFrames
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err == io.EOF {
			return blocks
		}
		if err != nil {
			t.Fatalf("reading the guard's output: %v", err)
		}
		var frag []byte
		var end bool
		switch f := f.(type) {
		case *http2.HeadersFrame:
			h := *f
			blocks = append(blocks, blockFrames{stream: f.StreamID, first: &h})
			cur = &blocks[len(blocks)-1]
			frag, end = f.HeaderBlockFragment(), f.HeadersEnded()
		case *http2.ContinuationFrame:
			frag, end = f.HeaderBlockFragment(), f.HeadersEnded()
		default:
			continue
		}
		cur.fragments = append(cur.fragments, frag...)
		if end {
			fields, err := dec.DecodeFull(cur.fragments)
			if err != nil {
				t.Fatalf("decoding the block of stream %d: %v", cur.stream, err)
			}
			cur.fields = fields
		}
	}
}

func pairs(fields ...string) []hpack.HeaderField {
	var hf []hpack.HeaderField
	for i := 0; i < len(fields); i += 2 {
		hf = append(hf, hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return hf
}

// A malformed request's HEADERS frame comes out depending on its own
// stream, its header block untouched; a well-formed one unchanged; a
// malformed trailer block with the upper-case field at its end.
func TestH2GuardMarksMalformedRequests(t *testing.T) {
	for _, tc := range []struct {
		extra     []string
		malformed bool
	}{
		{nil, false},
		{[]string{"te", "trailers"}, false},
		{[]string{"te", ""}, false},
		{[]string{"connection", "keep-alive"}, true},
		{[]string{"keep-alive", "timeout=5"}, true},
		{[]string{"proxy-connection", "close"}, true},
		{[]string{"transfer-encoding", "chunked"}, true},
		{[]string{"upgrade", "h2c"}, true},
		{[]string{"te", "gzip"}, true},
		{[]string{"te", "trailers, deflate"}, true},
		{[]string{"te", "trailers", "te", "trailers"}, true},
		{[]string{"x-connection", "close"}, false},
	} {
		for _, shape := range []struct {
			name   string
			pad    uint8
			prio   bool
			splits []int
		}{
			{"plain", 0, false, nil},
			{"padded", 4, false, nil},
			{"with priority", 0, true, nil},
			{"padded with priority", 9, true, nil},
			{"with CONTINUATION", 2, false, []int{1, 3}},
		} {
			t.Run(fmt.Sprintf("%v/%s", tc.extra, shape.name), func(t *testing.T) {
				s := newClientStream()
				s.fr.WriteSettings()
				fields := append(slices.Clone(getFields), tc.extra...)
				// The same request twice: the second refers to the
				// dynamic table the first filled.
				for _, id := range []uint32{1, 3} {
					block := s.block(fields...)
					var splits []int
					for _, c := range shape.splits {
						if c < len(block) {
							splits = append(splits, c)
						}
					}
					s.headers(id, true, shape.pad, shape.prio, block, splits...)
				}
				in := s.bytes()
				out := guardOutputs(t, in)
				if !tc.malformed {
					if !bytes.Equal(out, in) {
						t.Fatalf("a well-formed request changed:\n got %x\nwant %x", out, in)
					}
					return
				}
				blocks := readBlocks(t, out)
				if len(blocks) != 2 {
					t.Fatalf("%d header blocks came out, want 2", len(blocks))
				}
				for _, b := range blocks {
					if !b.first.HasPriority() || b.first.Priority.StreamDep != b.stream {
						t.Errorf("stream %d: priority %+v (set: %v), want a dependency on itself", b.stream, b.first.Priority, b.first.HasPriority())
					}
					if !slices.Equal(b.fields, pairs(fields...)) {
						t.Errorf("stream %d: fields %v, want %v", b.stream, b.fields, pairs(fields...))
					}
				}
				if shape.prio && blocks[0].first.Priority.Weight != 200 {
					t.Errorf("the weight changed: %d, want 200", blocks[0].first.Priority.Weight)
				}
			})
		}
	}
}

func TestH2GuardMarksMalformedTrailers(t *testing.T) {
	for _, shape := range []struct {
		name   string
		pad    uint8
		splits []int
	}{
		{"plain", 0, nil},
		{"padded", 6, nil},
		{"with CONTINUATION", 0, []int{1}},
	} {
		t.Run(shape.name, func(t *testing.T) {
			s := newClientStream()
			s.fr.WriteSettings()
			s.headers(1, false, 0, false, s.block(":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/"))
			s.fr.WriteData(1, false, []byte("body"))
			s.headers(1, true, shape.pad, false, s.block("x-sum", "1", "connection", "close"), shape.splits...)
			blocks := readBlocks(t, guardOutputs(t, s.bytes()))
			if len(blocks) != 2 {
				t.Fatalf("%d header blocks came out, want 2", len(blocks))
			}
			if blocks[0].first.HasPriority() {
				t.Errorf("the well-formed request changed: %+v", blocks[0].first)
			}
			tr := blocks[1]
			if tr.first.HasPriority() {
				t.Errorf("the trailers took a priority: %+v", tr.first.Priority)
			}
			want := pairs("x-sum", "1", "connection", "close", "X", "")
			if !slices.Equal(tr.fields, want) {
				t.Errorf("trailer fields %v, want %v", tr.fields, want)
			}
		})
	}
}

// The guard's HPACK decoder follows the client's table size updates: a
// client that shrinks the table to nothing and grows it again, evicting
// what it had indexed, still has its malformed requests seen.
func TestH2GuardFollowsTableSizeUpdates(t *testing.T) {
	s := newClientStream()
	s.fr.WriteSettings()
	s.headers(1, true, 0, false, s.block(append(getFields, "x-a", "1")...))
	s.enc.SetMaxDynamicTableSize(0)
	s.headers(3, true, 0, false, s.block(getFields...))
	s.enc.SetMaxDynamicTableSize(4096)
	s.headers(5, true, 0, false, s.block(append(getFields, "connection", "close")...))
	s.headers(7, true, 0, false, s.block(append(getFields, "connection", "close")...))
	blocks := readBlocks(t, guardOutputs(t, s.bytes()))
	for i, marked := range []bool{false, false, true, true} {
		if got := blocks[i].first.HasPriority(); got != marked {
			t.Errorf("stream %d: marked %v, want %v", blocks[i].stream, got, marked)
		}
	}
}

// What x/net refuses anyway makes the guard step aside: the bytes pass
// untouched from there on, malformed requests included.
func TestH2GuardStepsAside(t *testing.T) {
	bad := append(slices.Clone(getFields), "connection", "close")
	for _, tc := range []struct {
		name  string
		write func(s *clientStream)
	}{
		{"a frame over the size limit", func(s *clientStream) {
			s.fr.WriteData(1, false, make([]byte, testLimits.maxFrame+1))
		}},
		{"CONTINUATION without HEADERS", func(s *clientStream) {
			s.fr.WriteContinuation(1, true, s.block(getFields...))
		}},
		{"another frame inside a header block", func(s *clientStream) {
			block := s.block(getFields...)
			s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:2], EndStream: true})
			s.fr.WritePing(false, [8]byte{})
			s.fr.WriteContinuation(1, true, block[2:])
		}},
		{"padding longer than the frame", func(s *clientStream) {
			s.fr.WriteRawFrame(http2.FrameHeaders, h2FlagPadded|h2FlagEndHeaders, 1, []byte{200, 0x82})
		}},
		{"a block HPACK cannot decode", func(s *clientStream) {
			s.fr.WriteRawFrame(http2.FrameHeaders, h2FlagEndHeaders, 1, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		}},
		{"a header block over the hold limit", func(s *clientStream) {
			block := s.block(getFields...)
			s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true})
			for n := len(block); n <= 2*int(testLimits.maxList); n += 9 {
				s.fr.WriteContinuation(1, false, nil)
			}
			s.fr.WriteContinuation(1, true, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newClientStream()
			s.fr.WriteSettings()
			tc.write(s)
			s.headers(3, true, 0, false, s.block(bad...))
			in := s.bytes()
			out, err := readInSevens(guardH2(&scriptConn{data: in}, testLimits))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, in) {
				t.Errorf("the guard changed what follows:\n got %x\nwant %x", out, in)
			}
		})
	}
}

// A connection that does not open with the client preface is x/net's to
// refuse: the guard passes it as it is.
func TestH2GuardStepsAsideWithoutPreface(t *testing.T) {
	s := newClientStream()
	s.fr.WriteSettings(xs(S{http2.SettingInitialWindowSize, 1}, S{http2.SettingInitialWindowSize, 2})...)
	in := s.bytes()
	in[len(http2.ClientPreface)-3] = 'X'
	out, err := readInSevens(guardH2(&scriptConn{data: in}, testLimits))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, in) {
		t.Errorf("the guard changed a stream without the preface:\n got %x\nwant %x", out, in)
	}
}

// A read error comes after every byte that came before it, a partial
// frame header or a held frame included.
func TestH2GuardPassesReadErrors(t *testing.T) {
	s := newClientStream()
	s.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 2})
	s.headers(1, true, 0, false, s.block(getFields...), 2)
	s.fr.WriteData(1, true, []byte("data"))
	in := s.bytes()
	for k := 1; k < len(in); k++ {
		out, err := readInSevens(guardH2(&scriptConn{data: in[:k]}, testLimits))
		if err != nil {
			t.Fatalf("cut at %d: %v", k, err)
		}
		// The SETTINGS frame shrinks once it is whole.
		if whole := len(http2.ClientPreface) + 9 + 12; k >= whole {
			if want := len(in[:k]) - 6; len(out) != want {
				t.Fatalf("cut at %d: %d bytes came out, want %d", k, len(out), want)
			}
			continue
		}
		if !bytes.Equal(out, in[:k]) {
			t.Fatalf("cut at %d: got %x, want %x", k, out, in[:k])
		}
	}
	errBoom := errors.New("boom")
	g := guardH2(&errConn{data: in[:len(http2.ClientPreface)+4], err: errBoom}, testLimits)
	out, err := readInSevens(g)
	if !errors.Is(err, errBoom) {
		t.Fatalf("error %v, want %v", err, errBoom)
	}
	if want := in[:len(http2.ClientPreface)+4]; !bytes.Equal(out, want) {
		t.Fatalf("got %x before the error, want %x", out, want)
	}
}

// errConn returns data, then err.
type errConn struct {
	net.Conn
	data []byte
	err  error
}

func (c *errConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

// x/net learns a TLS connection's state through the guard.
func TestH2GuardKeepsTLSState(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if _, ok := guardH2(tls.Server(c1, &tls.Config{}), testLimits).(interface{ ConnectionState() tls.ConnectionState }); !ok {
		t.Error("the guarded TLS connection has no ConnectionState")
	}
	if _, ok := guardH2(c2, testLimits).(interface{ ConnectionState() tls.ConnectionState }); ok {
		t.Error("a guarded cleartext connection has a ConnectionState")
	}
}

// h2TestClient opens an h2c connection to a running proxy and reads the
// server's SETTINGS.
type h2TestClient struct {
	t   *testing.T
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	blk bytes.Buffer
}

func dialH2Client(t *testing.T, addr string) (*h2TestClient, *http2.SettingsFrame) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	hc := &h2TestClient{t: t, c: c, fr: http2.NewFramer(c, c)}
	hc.enc = hpack.NewEncoder(&hc.blk)
	io.WriteString(c, http2.ClientPreface)
	hc.fr.WriteSettings()
	f, err := hc.fr.ReadFrame()
	if err != nil {
		t.Fatalf("server SETTINGS: %v", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	return hc, sf
}

func (hc *h2TestClient) request(id uint32, endStream bool, fields ...string) {
	hc.blk.Reset()
	for i := 0; i < len(fields); i += 2 {
		hc.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hc.blk.Bytes(), EndStream: endStream, EndHeaders: true}); err != nil {
		hc.t.Fatal(err)
	}
}

// until reads frames until match says so; a GOAWAY fails the test.
func (hc *h2TestClient) until(what string, match func(http2.Frame) bool) {
	hc.t.Helper()
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			hc.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			hc.t.Fatalf("waiting for %s: GOAWAY %v %q", what, ga.ErrCode, ga.DebugData())
		}
		if match(f) {
			return
		}
	}
}

// Through a running proxy's x/net: duplicate settings are taken, a
// malformed request is reset with PROTOCOL_ERROR and never reaches the
// backend, DATA the client sent after it costs nothing more than a
// STREAM_CLOSED reset, malformed trailers reset their stream, and the
// connection serves on.
func TestH2GuardWithXNet(t *testing.T) {
	be := newBackend(t, nil)
	cfg := testConfig(be.addr())
	cfg.Listeners[0].H2C = true
	run := Start(t, cfg, Options{})
	hc, _ := dialH2Client(t, run.Addr("public"))

	ack := func() {
		hc.until("a SETTINGS ACK", func(f http2.Frame) bool {
			sf, ok := f.(*http2.SettingsFrame)
			return ok && sf.IsAck()
		})
	}
	ack() // of dialH2Client's SETTINGS
	hc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 16})
	ack()

	post := []string{":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/bad"}
	hc.request(1, false, append(post, "connection", "keep-alive")...)
	hc.fr.WriteData(1, true, []byte("smuggled?"))
	hc.until("RST_STREAM on stream 1", func(f http2.Frame) bool {
		rst, ok := f.(*http2.RSTStreamFrame)
		if ok && rst.StreamID == 1 && rst.ErrCode != http2.ErrCodeProtocol {
			t.Fatalf("stream 1 reset with %v, want PROTOCOL_ERROR", rst.ErrCode)
		}
		if h, ok := f.(*http2.HeadersFrame); ok && h.StreamID == 1 {
			t.Fatal("stream 1 got a response")
		}
		return ok && rst.StreamID == 1
	})

	hc.request(3, false, ":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/trailers")
	hc.fr.WriteData(3, false, []byte("body"))
	hc.blk.Reset()
	hc.enc.WriteField(hpack.HeaderField{Name: "transfer-encoding", Value: "chunked"})
	hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hc.blk.Bytes(), EndStream: true, EndHeaders: true})
	hc.until("RST_STREAM on stream 3", func(f http2.Frame) bool {
		rst, ok := f.(*http2.RSTStreamFrame)
		if ok && rst.StreamID == 3 && rst.ErrCode != http2.ErrCodeProtocol {
			t.Fatalf("stream 3 reset with %v, want PROTOCOL_ERROR", rst.ErrCode)
		}
		return ok && rst.StreamID == 3
	})

	hc.request(5, true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/good", "te", "trailers")
	hc.until("the response on stream 5", func(f http2.Frame) bool {
		d, ok := f.(*http2.DataFrame)
		return ok && d.StreamID == 5 && d.StreamEnded()
	})
	for _, r := range be.requests() {
		if r.URI == "/bad" {
			t.Errorf("the malformed request reached the backend: %+v", r)
		}
	}
}

// The guard's limits are those x/net advertises and applies.
func TestH2GuardLimitsMatchXNet(t *testing.T) {
	for _, size := range []int{16 << 10, 1 << 10, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			cfg := testConfig("127.0.0.1:1")
			cfg.Listeners[0].H2C = true
			cfg.Listeners[0].MaxHeaderSize = size
			run := Start(t, cfg, Options{})
			_, sf := dialH2Client(t, run.Addr("public"))
			lim := run.P.listeners["public"].h2.limits()
			for id, want := range map[http2.SettingID]uint32{
				http2.SettingHeaderTableSize:   lim.table,
				http2.SettingMaxFrameSize:      lim.maxFrame,
				http2.SettingMaxHeaderListSize: lim.maxList,
			} {
				if got, ok := sf.Value(id); !ok || got != want {
					t.Errorf("%v: x/net advertises %d (sent: %v), the guard has %d", id, got, ok, want)
				}
			}
		})
	}
}

// BenchmarkH2Guard reads a client's requests as x/net does, each a
// browser's GET (HEADERS, every field but :path from the dynamic table
// after the first) and a WINDOW_UPDATE, 256 to a connection: bare, and
// through the guard. The difference is what the guard costs a request.
func BenchmarkH2Guard(b *testing.B) {
	const perConn = 256
	s := newClientStream()
	s.fr.WriteSettings(xs(S{http2.SettingInitialWindowSize, 1 << 20}, S{http2.SettingHeaderTableSize, 65536})...)
	for i := range perConn {
		s.headers(uint32(2*i+1), true, 0, false, s.block(
			":method", "GET", ":authority", "www.example.com", ":scheme", "https", ":path", fmt.Sprintf("/static/js/chunk.%d.js", i),
			"sec-ch-ua", `"Chromium";v="131", "Not_A Brand";v="24"`, "sec-ch-ua-mobile", "?0",
			"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
			"sec-ch-ua-platform", `"Linux"`, "accept", "*/*", "sec-fetch-site", "same-origin", "sec-fetch-mode", "no-cors",
			"sec-fetch-dest", "script", "referer", "https://www.example.com/", "accept-encoding", "gzip, deflate, br, zstd",
			"accept-language", "en-US,en;q=0.9", "cookie", "session=7f3c9a1e5b2d4f60; theme=dark",
		))
		s.fr.WriteWindowUpdate(0, 32768)
	}
	data := s.bytes()
	for _, guarded := range []bool{false, true} {
		b.Run(map[bool]string{false: "bare", true: "guarded"}[guarded], func(b *testing.B) {
			b.ReportAllocs()
			var hdr [9]byte
			buf := make([]byte, 16<<10)
			var r io.Reader
			left := 0
			readFrame := func() {
				if _, err := io.ReadFull(r, hdr[:]); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, buf[:h2FrameLen(hdr[:])]); err != nil {
					b.Fatal(err)
				}
			}
			for range b.N {
				if left == 0 {
					c := &scriptConn{data: data}
					r = c
					if guarded {
						r = guardH2(c, testLimits)
					}
					io.ReadFull(r, buf[:len(http2.ClientPreface)])
					readFrame() // SETTINGS
					left = perConn
				}
				readFrame() // HEADERS
				readFrame() // WINDOW_UPDATE
				left--
			}
		})
	}
}

// Clients that send a request and hang up at once: x/net may start a
// stream's handler after its connection ended, which must then leave the
// connection's state, by now another connection's, alone (go test -race).
func TestH2HandlersAfterTheConnectionEnds(t *testing.T) {
	be := newBackend(t, nil)
	cfg := testConfig(be.addr())
	cfg.Listeners[0].H2C = true
	run := Start(t, cfg, Options{})
	s := newClientStream()
	s.fr.WriteSettings()
	s.headers(1, true, 0, false, s.block(":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/"))
	hello := s.bytes()
	for range 200 {
		c, err := net.Dial("tcp", run.Addr("public"))
		if err != nil {
			t.Fatal(err)
		}
		c.Write(hello)
		c.Close()
	}
	// Every connection ends, and the proxy serves on.
	WaitFor(t, 10*time.Second, "the connections to end", func() bool { return run.P.stats.active.Load() == 0 })
	hc, _ := dialH2Client(t, run.Addr("public"))
	hc.request(1, true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/after")
	hc.until("the response", func(f http2.Frame) bool {
		d, ok := f.(*http2.DataFrame)
		return ok && d.StreamEnded()
	})
}

// FuzzH2Guard: whatever a client sends after the preface, the guard never
// panics (it runs on x/net's reading goroutine, where a panic ends the
// worker), reads to the end, and hands x/net the same bytes however the
// reads are cut. `go test -fuzz FuzzH2Guard ./proxy` runs it.
func FuzzH2Guard(f *testing.F) {
	seed := func(write func(s *clientStream)) {
		s := newClientStream()
		write(s)
		f.Add(s.bytes()[len(http2.ClientPreface):], uint16(10))
	}
	seed(func(s *clientStream) {
		s.fr.WriteSettings(xs(S{http2.SettingInitialWindowSize, 1}, S{http2.SettingInitialWindowSize, 2}, S{http2.SettingEnablePush, 3})...)
	})
	seed(func(s *clientStream) {
		s.headers(1, false, 3, true, s.block(append(getFields, "connection", "close")...), 4)
		s.fr.WriteData(1, false, []byte("x"))
		s.headers(1, true, 2, false, s.block("te", "gzip"))
	})
	seed(func(s *clientStream) {
		s.enc.SetMaxDynamicTableSize(100)
		s.headers(3, true, 0, false, s.block(append(getFields, "upgrade", "h2c", "x-long", strings.Repeat("y", 200))...), 1, 2, 3)
	})
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		in := append([]byte(http2.ClientPreface), data...)
		whole, err := readInSevens(guardH2(&scriptConn{data: in}, testLimits))
		if err != nil {
			t.Fatal(err)
		}
		k := int(cut)%len(in) + 1
		for _, read := range []func(io.Reader) ([]byte, error){readInSevens, readLikeXNet} {
			got, _ := read(guardH2(&scriptConn{data: in, cuts: []int{k, k + 1, k + 9}}, testLimits))
			if !bytes.HasPrefix(whole, got) {
				t.Fatalf("cut at %d: %x is not a prefix of %x", k, got, whole)
			}
		}
	})
}
