package proxy

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// accessLog buffers JSON lines and writes them in large blocks: when the
// buffer fills, every flush interval, and on SetAccessLog, Drain's end and
// Close. Lines are formatted by the request's goroutine into its own
// scratch buffer (no fmt, no encoding/json); only the copy into the shared
// buffer is serialized.
type accessLog struct {
	mu       sync.Mutex
	w        io.Writer
	buf      []byte
	size     int
	interval time.Duration
	errs     int // write errors since the last one was reported
	onError  func(error)

	stop chan struct{}
	done chan struct{}
}

func newAccessLog(w io.Writer, size int, interval time.Duration, onError func(error)) *accessLog {
	if size <= 0 {
		size = 64 << 10
	}
	if interval <= 0 {
		interval = time.Second
	}
	return &accessLog{w: w, buf: make([]byte, 0, size), size: size, interval: interval,
		onError: onError, stop: make(chan struct{}), done: make(chan struct{})}
}

// run flushes every interval until stopped.
func (a *accessLog) run() {
	defer close(a.done)
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.mu.Lock()
			a.flushLocked()
			a.mu.Unlock()
		case <-a.stop:
			return
		}
	}
}

// write appends one line (which ends in '\n').
func (a *accessLog) write(line []byte) {
	a.mu.Lock()
	if len(a.buf)+len(line) > a.size {
		a.flushLocked()
	}
	if len(line) > a.size {
		a.writeLocked(line)
	} else {
		a.buf = append(a.buf, line...)
	}
	a.mu.Unlock()
}

func (a *accessLog) flushLocked() {
	if len(a.buf) == 0 {
		return
	}
	a.writeLocked(a.buf)
	a.buf = a.buf[:0]
}

func (a *accessLog) writeLocked(b []byte) {
	if a.w == nil {
		return
	}
	if _, err := a.w.Write(b); err != nil && a.onError != nil {
		a.errs++
		if a.errs == 1 || a.errs%1000 == 0 {
			a.onError(err)
		}
	}
}

// flush writes what is buffered.
func (a *accessLog) flush() {
	a.mu.Lock()
	a.flushLocked()
	a.mu.Unlock()
}

// swap flushes to the old writer and switches to w.
func (a *accessLog) swap(w io.Writer) {
	a.mu.Lock()
	a.flushLocked()
	a.w = w
	a.errs = 0
	a.mu.Unlock()
}

// close stops the flusher and flushes.
func (a *accessLog) close() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	a.flush()
}

// logEntry is what one access log line says.
type logEntry struct {
	start      time.Time
	end        time.Time
	client     []byte
	method     []byte
	host       []byte
	path       []byte
	status     int
	bytesIn    int64
	bytesOut   int64
	upstream   string
	upstreamDu time.Duration // -1: no upstream attempt
	requestID  []byte
	route      string
	protocol   string
}

// appendLogLine renders e as one JSON line.
func appendLogLine(b []byte, e *logEntry) []byte {
	b = append(b, `{"time":"`...)
	b = e.start.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","client":`...)
	b = appendJSONString(b, e.client)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, e.host)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.path)
	b = append(b, `,"protocol":"`...)
	b = append(b, e.protocol...)
	b = append(b, '"')
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, e.bytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, e.bytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, e.end.Sub(e.start))
	b = append(b, `,"upstream":"`...)
	b = appendJSONStringBody(b, e.upstream)
	b = append(b, `","upstream_ms":`...)
	if e.upstreamDu >= 0 {
		b = appendMillis(b, e.upstreamDu)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, e.requestID)
	b = append(b, `,"route":"`...)
	b = appendJSONStringBody(b, e.route)
	b = append(b, "\"}\n"...)
	return b
}

// appendMillis writes d in milliseconds with microsecond precision
// ("12.345").
func appendMillis(b []byte, d time.Duration) []byte {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	b = append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return b
}

// appendJSONString writes s as a JSON string, quotes included.
func appendJSONString(b []byte, s []byte) []byte {
	b = append(b, '"')
	b = appendJSONBytes(b, s)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONBytes escapes s for the inside of a JSON string: quotes,
// backslashes and control bytes are escaped, invalid UTF-8 becomes U+FFFD.
func appendJSONBytes(b []byte, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

// appendJSONStringBody escapes a string (route names and addresses come
// from the config and are plain, but are escaped all the same).
func appendJSONStringBody(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			return appendJSONBytes(b, []byte(s))
		}
	}
	return append(b, s...)
}

// copyForLog keeps what the access log needs from the head, which a
// streamed body overwrites.
func (cc *clientConn) copyForLog(ex *exchange) {
	r := &cc.req
	b := cc.logCopy[:0]
	ex.logOffsets[0] = len(b)
	b = append(b, r.method...)
	ex.logOffsets[1] = len(b)
	b = append(b, r.host...)
	ex.logOffsets[2] = len(b)
	b = append(b, r.target...)
	ex.logOffsets[3] = len(b)
	b = append(b, r.reqID...)
	ex.logOffsets[4] = len(b)
	cc.logCopy = b
	ex.logged = true
}

// protocol is the request's protocol as the access log shows it: HTTP/2.0
// for an HTTP/2 stream, else the version of the request line (HTTP/1.1
// when there was none to parse).
func (cc *clientConn) protocol(ex *exchange) string {
	switch {
	case cc.stream != nil:
		return "HTTP/2.0"
	case ex.logged && cc.req.minor == 0:
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

// setLogRequestID records a generated request id for the access log.
func (cc *clientConn) setLogRequestID(ex *exchange, id []byte) {
	if !ex.logged {
		return
	}
	cc.logCopy = append(cc.logCopy[:ex.logOffsets[3]], id...)
	ex.logOffsets[4] = len(cc.logCopy)
}

// recordExchange writes the exchange's access log line, then counts it (so a
// counted request is already in the log buffer).
func (cc *clientConn) recordExchange(ex *exchange) {
	p := cc.p
	out := cc.written + int64(cc.bw.Buffered()) - ex.writtenBefore
	// The latest clock reading (the response head, or the last refill of a
	// streamed body) is the end as far as the histogram can tell: a
	// response already buffered or in the kernel is a few microseconds
	// from done. The access log reads the clock.
	a := p.alog.Load()
	end := cc.now
	if a != nil {
		end = time.Now()
		cc.now = end
	}
	p.stats.reqLatency.observe(end.Sub(ex.start))
	if ex.upDur >= 0 {
		p.stats.upLatency.observe(ex.upDur)
	}
	if a != nil {
		e := logEntry{start: ex.start, end: end, client: cc.clientLog, status: ex.status,
			bytesIn: ex.bytesIn, bytesOut: out, upstream: ex.upstream, upstreamDu: ex.upDur}
		if ex.logged {
			l := cc.logCopy
			e.method, e.host, e.path, e.requestID = l[ex.logOffsets[0]:ex.logOffsets[1]], l[ex.logOffsets[1]:ex.logOffsets[2]], l[ex.logOffsets[2]:ex.logOffsets[3]], l[ex.logOffsets[3]:ex.logOffsets[4]]
			if len(e.path) == 0 && len(e.method) > 0 {
				e.path = slashPath
			}
		}
		if ex.rt != nil {
			e.route = ex.rt.name
		}
		e.protocol = cc.protocol(ex)
		cc.logBuf = appendLogLine(cc.logBuf[:0], &e)
		a.write(cc.logBuf)
	}
	p.stats.bytesIn.Add(uint64(ex.bytesIn))
	p.stats.bytesOut.Add(uint64(out))
	class := statusClass(ex.status)
	if ex.rt != nil {
		ex.rt.responses[class].Add(1)
	} else {
		p.stats.unrouted[class].Add(1)
	}
	p.stats.requests.Add(1)
}
