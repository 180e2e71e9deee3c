package proxy

import "errors"

// chunkParser validates the chunked transfer coding as it streams by, so
// that chunked bodies can be forwarded verbatim (requests and responses
// alike) or decoded (for HTTP/1.0 clients) without ever being held whole.
// It is strict: a chunk size is hex digits only (no sign, no whitespace),
// extensions carry no control bytes, every line ends in CRLF. Trailer
// lines are header fields by the same rules as parseFields (a token, a
// colon with no space before it, a value without control bytes, no
// obs-fold); they are never forwarded (see copyChunked).
type chunkParser struct {
	state   uint8
	digits  int
	size    int64 // data bytes left in the current chunk
	total   int64 // data bytes seen so far
	trailer int   // trailer bytes seen
}

const (
	csSize        = iota // first hex digit of a chunk size
	csSizeMore           // more hex digits, ';' or CR
	csExt                // chunk extension up to CR
	csSizeLF             // LF after the size line
	csData               // chunk data
	csDataCR             // CR after data
	csDataLF             // LF after data
	csTrailer            // start of a trailer line (or the final CRLF)
	csTrailerName        // trailer field name up to the colon
	csTrailerLn          // trailer field value
	csTrailerLF          // LF ending a trailer line
	csEndLF              // LF of the final CRLF
	csDone
)

const (
	maxChunkDigits   = 15 // < 2^60 bytes per chunk
	maxTrailerLength = 16 << 10
)

var errChunked = errors.New("invalid chunked encoding")

// done reports whether the whole body (last chunk and trailers) was seen.
func (c *chunkParser) done() bool { return c.state == csDone }

func (c *chunkParser) reset() { *c = chunkParser{} }

// inTrailer reports whether the last chunk was seen: what follows is the
// trailer section and the final CRLF.
func (c *chunkParser) inTrailer() bool { return c.state >= csTrailer }

// step consumes a prefix of p that is either framing only (data false) or
// chunk data only (data true). It consumes nothing only when p is empty or
// the body is done. It stops after the last-chunk line, so that a step
// never mixes chunk framing and the trailer section.
func (c *chunkParser) step(p []byte) (n int, data bool, err error) {
	if c.state == csData {
		k := int64(len(p))
		if k > c.size {
			k = c.size
		}
		c.size -= k
		c.total += k
		if c.size == 0 {
			c.state = csDataCR
		}
		return int(k), true, nil
	}
	for n < len(p) && c.state != csData && c.state != csDone {
		b := p[n]
		n++
		switch c.state {
		case csSize, csSizeMore:
			if v := unhex(b); v >= 0 {
				if c.digits == maxChunkDigits {
					return n, false, errChunked
				}
				c.digits++
				c.size = c.size<<4 | int64(v)
				c.state = csSizeMore
				continue
			}
			if c.state == csSize {
				return n, false, errChunked
			}
			switch b {
			case ';':
				c.state = csExt
			case '\r':
				c.state = csSizeLF
			default:
				return n, false, errChunked
			}
		case csExt:
			if b == '\r' {
				c.state = csSizeLF
			} else if !valueTable[b] {
				return n, false, errChunked
			}
		case csSizeLF:
			if b != '\n' {
				return n, false, errChunked
			}
			c.digits = 0
			if c.size == 0 {
				c.state = csTrailer
				return n, false, nil
			} else {
				c.state = csData
			}
		case csDataCR:
			if b != '\r' {
				return n, false, errChunked
			}
			c.state = csDataLF
		case csDataLF:
			if b != '\n' {
				return n, false, errChunked
			}
			c.state = csSize
		case csTrailer:
			if b == '\r' {
				c.state = csEndLF
			} else if tcharTable[b] {
				c.state = csTrailerName
			} else {
				return n, false, errChunked // obs-fold or a bad name byte
			}
		case csTrailerName:
			if b == ':' {
				c.state = csTrailerLn
			} else if !tcharTable[b] {
				return n, false, errChunked // no colon, or whitespace before it
			}
		case csTrailerLn:
			if b == '\r' {
				c.state = csTrailerLF
			} else if !valueTable[b] {
				return n, false, errChunked
			}
		case csTrailerLF:
			if b != '\n' {
				return n, false, errChunked
			}
			c.state = csTrailer
		case csEndLF:
			if b != '\n' {
				return n, false, errChunked
			}
			c.state = csDone
		}
		if c.state >= csTrailer {
			c.trailer++
			if c.trailer > maxTrailerLength {
				return n, false, errChunked
			}
		}
	}
	return n, false, nil
}

// scan runs the parser over p (which must be the start of the body) and
// reports how many bytes the complete body takes, or -1 when p holds only
// part of it.
func (c *chunkParser) scan(p []byte) (int, error) {
	off := 0
	for off < len(p) && !c.done() {
		n, _, err := c.step(p[off:])
		off += n
		if err != nil {
			return -1, err
		}
	}
	if c.done() {
		return off, nil
	}
	return -1, nil
}

func unhex(b byte) int {
	switch {
	case b >= '0' && b <= '9':
		return int(b - '0')
	case b >= 'a' && b <= 'f':
		return int(b-'a') + 10
	case b >= 'A' && b <= 'F':
		return int(b-'A') + 10
	}
	return -1
}
