package proxy

import (
	"bufio"
	"bytes"
	"errors"
)

var (
	// errHeadTooLarge: the head outgrew its limit (or the read buffer)
	// before its end arrived.
	errHeadTooLarge = errors.New("message head too large")
	// errHeadFraming: a request head with a bare LF line end or a stray
	// CR before its request line (RFC 9112 2.2 allows only CRLF there).
	errHeadFraming = errors.New("malformed line endings in request head")
)

// readMessageHead waits in br for a complete HTTP/1 message head (up to
// and including its empty line) of at most limit bytes, and returns it,
// still in br. It serves both directions: for a request (request true) the
// empty lines RFC 9112 2.2 allows before a request line are skipped and a
// bare LF line end is refused. firstByte, when not nil, is called once,
// as soon as the head's first byte is in (the client side starts the
// head's deadline there). Each byte is scanned once however the head
// arrives. On an error, br.Buffered() tells whether any of the head came.
func readMessageHead(br *bufio.Reader, limit int, request bool, firstByte func()) ([]byte, error) {
	scanned, started := 0, false
	for {
		n := br.Buffered()
		if n > 0 {
			buf, _ := br.Peek(n)
			if request && (buf[0] == '\r' || buf[0] == '\n') {
				if n >= 2 && buf[0] == '\r' && buf[1] == '\n' {
					br.Discard(2)
					scanned = 0
					continue
				}
				if buf[0] == '\n' || n >= 2 {
					return nil, errHeadFraming
				}
			}
			from := max0(scanned - 3)
			if i := bytes.Index(buf[from:], crlfcrlf); i >= 0 {
				return buf[:from+i+4], nil
			}
			if n >= limit {
				return nil, errHeadTooLarge
			}
			if request && bytes.Contains(buf[from:], lflf) {
				return nil, errHeadFraming
			}
			if !started && firstByte != nil {
				started = true
				firstByte()
			}
			scanned = n
		}
		if _, err := br.Peek(n + 1); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, errHeadTooLarge
			}
			return nil, err
		}
	}
}
