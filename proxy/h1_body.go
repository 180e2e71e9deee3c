package proxy

import (
	"bufio"
	"errors"
	"net"
	"time"
)

// pipe streams a body from a buffered reader to a buffered writer through
// the reader's own buffer: no body is ever held whole, and a refill is the
// only moment a deadline is set (the read timeout on the source, the send
// timeout on the destination), so bodies already in the buffer cost no
// system call beyond the write.
type pipe struct {
	src        *bufio.Reader
	srcConn    net.Conn
	srcTimeout time.Duration
	dst        *bufio.Writer
	dstConn    net.Conn
	dstTimeout time.Duration
	now        *time.Time // updated at each refill
	srcRdl     *time.Time // the source's read deadline as set
	dstWdl     *time.Time // the destination's write deadline as set

	moved int64 // bytes read from src
}

// Which side of a pipe failed.
const (
	sideNone = iota
	sideRead
	sideWrite
	sideFraming // invalid chunked framing
	sideLimit   // body larger than allowed
)

var errBodyTooLarge = errors.New("body larger than max_body_size")

// fill blocks until src has data, with fresh deadlines. What is buffered
// for the destination goes out first: a slow or paused source must not
// hold back what already arrived (a streamed response head, say).
func (pp *pipe) fill() (side int, err error) {
	now := time.Now()
	*pp.now = now
	*pp.dstWdl = now.Add(pp.dstTimeout)
	pp.dstConn.SetWriteDeadline(*pp.dstWdl)
	if pp.dst.Buffered() > 0 {
		if err := pp.dst.Flush(); err != nil {
			return sideWrite, err
		}
	}
	*pp.srcRdl = now.Add(pp.srcTimeout)
	pp.srcConn.SetReadDeadline(*pp.srcRdl)
	if _, err := pp.src.Peek(1); err != nil {
		return sideRead, err
	}
	return sideNone, nil
}

// copyFixed moves exactly n bytes.
func (pp *pipe) copyFixed(n int64) (int, error) {
	for n > 0 {
		if pp.src.Buffered() == 0 {
			if side, err := pp.fill(); err != nil {
				return side, unexpectedEOF(err)
			}
		}
		k := pp.src.Buffered()
		if int64(k) > n {
			k = int(n)
		}
		b, _ := pp.src.Peek(k)
		if _, err := pp.dst.Write(b); err != nil {
			return sideWrite, err
		}
		pp.src.Discard(k)
		pp.moved += int64(k)
		n -= int64(k)
	}
	return sideNone, nil
}

// copyChunked moves a chunked body, validated as it goes: verbatim when
// decode is false, only the data when it is true. limit > 0 bounds the
// data bytes. Nothing of a chunk line that fails validation is forwarded.
// The trailer section is validated and dropped, as nginx does: a trailer
// field could otherwise carry framing or routing fields past every header
// rule (the body then ends with the last chunk and an empty line).
func (pp *pipe) copyChunked(cp *chunkParser, decode bool, limit int64) (int, error) {
	for !cp.done() {
		if pp.src.Buffered() == 0 {
			if side, err := pp.fill(); err != nil {
				return side, unexpectedEOF(err)
			}
		}
		buf, _ := pp.src.Peek(pp.src.Buffered())
		off, from := 0, 0 // buf[from:off] is validated and not yet written
		for off < len(buf) && !cp.done() {
			trailer := cp.inTrailer()
			n, data, err := cp.step(buf[off:])
			if err != nil {
				if !decode && off > from {
					pp.dst.Write(buf[from:off])
				}
				return sideFraming, err
			}
			switch {
			case decode:
				if data {
					if _, err := pp.dst.Write(buf[off : off+n]); err != nil {
						return sideWrite, err
					}
				}
			case trailer:
				if from < off {
					if _, err := pp.dst.Write(buf[from:off]); err != nil {
						return sideWrite, err
					}
				}
				from = off + n
				if cp.done() {
					if _, err := pp.dst.WriteString("\r\n"); err != nil {
						return sideWrite, err
					}
				}
			}
			off += n
			if limit > 0 && cp.total > limit {
				return sideLimit, errBodyTooLarge
			}
		}
		if !decode && from < off {
			if _, err := pp.dst.Write(buf[from:off]); err != nil {
				return sideWrite, err
			}
		}
		pp.src.Discard(off)
		pp.moved += int64(off)
	}
	return sideNone, nil
}

// copyToEOF moves everything until the source closes, chunked when
// rechunk is set (a body without length relayed to an HTTP/1.1 client).
func (pp *pipe) copyToEOF(rechunk bool) (int, error) {
	for {
		if pp.src.Buffered() == 0 {
			if side, err := pp.fill(); err != nil {
				if side == sideRead && isEOF(err) {
					if rechunk {
						if _, err := pp.dst.WriteString("0\r\n\r\n"); err != nil {
							return sideWrite, err
						}
					}
					return sideNone, nil
				}
				return side, err
			}
		}
		k := pp.src.Buffered()
		b, _ := pp.src.Peek(k)
		if rechunk {
			writeInt(pp.dst, int64(k), 16)
			pp.dst.WriteString("\r\n")
		}
		if _, err := pp.dst.Write(b); err != nil {
			return sideWrite, err
		}
		if rechunk {
			if _, err := pp.dst.WriteString("\r\n"); err != nil {
				return sideWrite, err
			}
		}
		pp.src.Discard(k)
		pp.moved += int64(k)
	}
}
