package proxy

import (
	"strconv"

	"golang.org/x/net/http2"
)

// What the server writes of HTTP/2: frames appended to the connection's
// write queue (h2_writer.go), and response header blocks. Reading uses
// x/net's Framer and HPACK decoder (h2_conn.go), which validate what a
// client sends; writing is simple enough, and hot enough, to do here.

// Frame types and flags (RFC 9113 6).
const (
	h2FrameHeaderLen    = 9
	h2FrameData         = 0x0
	h2FrameHeaders      = 0x1
	h2FrameRSTStream    = 0x3
	h2FrameSettings     = 0x4
	h2FramePing         = 0x6
	h2FrameGoAway       = 0x7
	h2FrameWindowUpdate = 0x8
	h2FrameContinuation = 0x9

	h2FlagEndStream  = 0x1
	h2FlagAck        = 0x1
	h2FlagEndHeaders = 0x4
)

// The RFC's limits and defaults (RFC 9113 6.5.2, 6.9).
const (
	h2DefaultWindow = 65535
	h2MaxWindow     = 1<<31 - 1
	h2MinFrameSize  = 1 << 14
)

func appendFrameHeader(b []byte, length int, typ, flags byte, stream uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), typ, flags,
		byte(stream>>24)&0x7f, byte(stream>>16), byte(stream>>8), byte(stream))
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendRSTStream(b []byte, stream uint32, code http2.ErrCode) []byte {
	return appendUint32(appendFrameHeader(b, 4, h2FrameRSTStream, 0, stream), uint32(code))
}

func appendWindowUpdate(b []byte, stream uint32, n uint32) []byte {
	return appendUint32(appendFrameHeader(b, 4, h2FrameWindowUpdate, 0, stream), n)
}

func appendGoAway(b []byte, last uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 8, h2FrameGoAway, 0, 0)
	return appendUint32(appendUint32(b, last), uint32(code))
}

func appendSetting(b []byte, id http2.SettingID, v uint32) []byte {
	return appendUint32(append(b, byte(id>>8), byte(id)), v)
}

// appendData appends data as DATA frames of at most maxFrame bytes, the
// last one ending the stream when end is set.
func appendData(b []byte, stream uint32, data []byte, end bool, maxFrame int) []byte {
	for {
		n := min(len(data), maxFrame)
		var flags byte
		if end && n == len(data) {
			flags = h2FlagEndStream
		}
		b = appendFrameHeader(b, n, h2FrameData, flags, stream)
		b = append(b, data[:n]...)
		data = data[n:]
		if len(data) == 0 {
			return b
		}
	}
}

// appendHeaderBlock appends block as a HEADERS frame and as many
// CONTINUATION frames as maxFrame requires.
func appendHeaderBlock(b []byte, stream uint32, block []byte, end bool, maxFrame int) []byte {
	typ, flags := byte(h2FrameHeaders), byte(0)
	if end {
		flags = h2FlagEndStream
	}
	for {
		n := min(len(block), maxFrame)
		f := flags
		if n == len(block) {
			f |= h2FlagEndHeaders
		}
		b = appendFrameHeader(b, n, typ, f, stream)
		b = append(b, block[:n]...)
		block = block[n:]
		if len(block) == 0 {
			return b
		}
		typ, flags = h2FrameContinuation, 0
	}
}

// Response header blocks are HPACK literals that never enter the dynamic
// table (RFC 7541 6.2.2), names taken from the static table where it has
// them, strings not Huffman-coded: no table to keep per connection and in
// step with the client, no allocation, at the price of a few bytes a
// field, as nginx does for most fields.

// hpackStatus are the static table's :status entries (RFC 7541 A).
var hpackStatus = map[int]byte{200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14}

// hpackNames are the static table's indexes of names a response carries.
var hpackNames = map[string]byte{
	"accept-ranges": 18, "access-control-allow-origin": 20, "age": 21, "allow": 22,
	"cache-control": 24, "content-disposition": 25, "content-encoding": 26,
	"content-language": 27, "content-length": 28, "content-location": 29,
	"content-range": 30, "content-type": 31, "date": 33, "etag": 34, "expires": 36,
	"last-modified": 44, "link": 45, "location": 46, "proxy-authenticate": 48,
	"refresh": 52, "retry-after": 53, "server": 54, "set-cookie": 55,
	"strict-transport-security": 56, "vary": 59, "via": 60, "www-authenticate": 61,
}

// appendHpackInt appends v with an n-bit prefix whose other bits are first's
// (RFC 7541 5.1).
func appendHpackInt(b []byte, first byte, n uint, v uint64) []byte {
	max := uint64(1)<<n - 1
	if v < max {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(max))
	v -= max
	for v >= 128 {
		b = append(b, byte(v&0x7f)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendHpackString(b []byte, s []byte) []byte {
	return append(appendHpackInt(b, 0, 7, uint64(len(s))), s...)
}

// appendHpackStatus appends the :status field.
func appendHpackStatus(b []byte, status int) []byte {
	if i, ok := hpackStatus[status]; ok {
		return append(b, 0x80|i) // indexed field
	}
	b = appendHpackInt(b, 0, 4, 8) // literal, name :status
	var digits [3]byte
	return appendHpackString(b, strconv.AppendInt(digits[:0], int64(status), 10))
}

// appendHpackField appends a field as a literal without indexing; name is
// lower case.
func appendHpackField(b []byte, name, value []byte) []byte {
	if i, ok := hpackNames[string(name)]; ok {
		b = appendHpackInt(b, 0, 4, uint64(i))
	} else {
		b = appendHpackString(append(b, 0), name)
	}
	return appendHpackString(b, value)
}

// lowerASCII appends name in lower case: HTTP/2 field names are (RFC
// 9113 8.2.1), HTTP/1 ones come as the upstream wrote them.
func lowerASCII(b []byte, name []byte) []byte {
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}
