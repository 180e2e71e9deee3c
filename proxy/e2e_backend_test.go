package proxy_test

// This file holds the upstream servers the end-to-end tests proxy to: real
// net/http servers on loopback that say who they are, count what they see
// (requests and TCP connections), and misbehave on demand (sleep, fail,
// reset, stall), so a test can prove what did and did not reach them.

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// seenReq is what a backend recorded of one request it received.
type seenReq struct {
	Method string      `json:"method"`
	URI    string      `json:"uri"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
}

// backend is one upstream server under the test's control.
type backend struct {
	Name string
	Addr string

	srv *http.Server
	ln  net.Listener

	mu   sync.Mutex
	reqs []seenReq // every request but /health

	conns      atomic.Int64 // TCP connections accepted (http.StateNew)
	healthCode atomic.Int32 // status /health answers; 200 unless set
	healthHits atomic.Int64
	resetting  atomic.Bool // /reset: reset the connection instead of answering
	lastCRC    atomic.Uint32
	lastLen    atomic.Int64
	arrived    chan string // the URI of every request, non-blocking (buffered, dropped when full)
	progress   chan int    // /progress: body bytes received so far, after each read
}

// startBackend starts a backend on 127.0.0.1:0; cleanup closes it.
func startBackend(t testing.TB, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("backend %s: listen: %v", name, err)
	}
	b := &backend{Name: name, Addr: ln.Addr().String(), ln: ln, arrived: make(chan string, 1024), progress: make(chan int, 1024)}
	b.healthCode.Store(200)
	b.srv = &http.Server{
		Handler:           http.HandlerFunc(b.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.conns.Add(1)
			}
		},
	}
	go b.srv.Serve(ln)
	t.Cleanup(b.Close)
	return b
}

// Close stops the backend: its port refuses connections from now on.
func (b *backend) Close() { b.srv.Close() }

// hits is the number of requests (not counting /health) received so far.
func (b *backend) hits() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reqs)
}

// requests returns a copy of what was received so far.
func (b *backend) requests() []seenReq {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seenReq(nil), b.reqs...)
}

// waitArrival waits until a request for uri has reached the handler.
func (b *backend) waitArrival(t testing.TB, uri string, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case u := <-b.arrived:
			if u == uri {
				return
			}
		case <-timeout:
			t.Fatalf("backend %s: %s did not arrive within %v", b.Name, uri, d)
		}
	}
}

func (b *backend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		b.healthHits.Add(1)
		w.WriteHeader(int(b.healthCode.Load()))
		return
	}
	b.mu.Lock()
	b.reqs = append(b.reqs, seenReq{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone()})
	b.mu.Unlock()
	select {
	case b.arrived <- r.RequestURI:
	default:
	}
	w.Header().Set("X-Backend", b.Name)
	q := r.URL.Query()
	switch r.URL.Path {
	case "/sleep": // answer after d, or give up when the proxy goes away
		d, _ := time.ParseDuration(q.Get("d"))
		select {
		case <-time.After(d):
			io.WriteString(w, "slept "+b.Name)
		case <-r.Context().Done():
		}
	case "/status":
		code, _ := strconv.Atoi(q.Get("code"))
		w.WriteHeader(code)
		io.WriteString(w, "status from "+b.Name)
	case "/echo":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Body-Len", strconv.Itoa(len(body)))
		w.Write(body)
	case "/big": // stream n bytes of the test pattern, never holding them
		n, _ := strconv.ParseInt(q.Get("n"), 10, 64)
		w.Header().Set("Content-Type", "application/octet-stream")
		if q.Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		}
		h := crc32.NewIEEE()
		written, err := io.Copy(io.MultiWriter(w, h), newPattern(n))
		b.lastLen.Store(written)
		b.lastCRC.Store(h.Sum32())
		if err != nil {
			return
		}
	case "/upload": // consume the body on the fly; answer its length and CRC
		h := crc32.NewIEEE()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "n=%d crc=%08x te=%v cl=%d", n, h.Sum32(), r.TransferEncoding, r.ContentLength)
	case "/progress": // report every read of the body as it happens
		buf := make([]byte, 4096)
		total := 0
		for {
			n, err := r.Body.Read(buf)
			total += n
			if n > 0 {
				select {
				case b.progress <- total:
				default:
				}
			}
			if err != nil {
				break
			}
		}
		fmt.Fprintf(w, "received %d", total)
	case "/reset":
		if b.resetting.Load() {
			resetConn(w)
			return
		}
		io.WriteString(w, "no reset from "+b.Name)
	case "/stall": // headers and a first part of the body, then silence
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		io.WriteString(w, "first part;")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	case "/hdrs": // hop-by-hop and private headers a proxy must handle
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "must not reach the client")
		w.Header().Set("Keep-Alive", "timeout=99")
		w.Header().Set("X-Backend-Secret", "must be removed by the route")
		w.Header().Set("X-Served-By", "backend")
		b.writeSeen(w, r)
	case "/ws":
		serveWebSocketEcho(w, r, b.Name)
	case "/ws-push": // push n frames, one every `every`, then stay silent
		n, _ := strconv.Atoi(q.Get("n"))
		every, _ := time.ParseDuration(q.Get("every"))
		serveWebSocketPush(w, r, n, every)
	default:
		b.writeSeen(w, r)
	}
}

// writeSeen answers with JSON of what the backend received.
func (b *backend) writeSeen(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Backend string      `json:"backend"`
		Method  string      `json:"method"`
		URI     string      `json:"uri"`
		Host    string      `json:"host"`
		Header  http.Header `json:"header"`
		BodyLen int         `json:"body_len"`
	}{b.Name, r.Method, r.RequestURI, r.Host, r.Header, len(body)})
}

// resetConn aborts the connection with a TCP RST after the request was
// received and before any response byte: "the upstream got it, then failed".
func resetConn(w http.ResponseWriter) {
	c, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// pattern is a deterministic byte stream of a given length whose period
// (65521, a prime) divides no buffer size, so a dropped, repeated or reordered
// buffer changes the CRC.
type pattern struct {
	left int64
	off  int
}

var patternBlock = func() []byte {
	b := make([]byte, 65521)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}()

func newPattern(n int64) *pattern { return &pattern{left: n} }

func (p *pattern) Read(buf []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(buf) && p.left > 0 {
		c := copy(buf[n:], patternBlock[p.off:])
		if int64(c) > p.left {
			c = int(p.left)
		}
		n += c
		p.left -= int64(c)
		p.off = (p.off + c) % len(patternBlock)
	}
	return n, nil
}

// WriteTo lets io.Copy hand the pattern straight to the destination in large
// writes, without an intermediate buffer.
func (p *pattern) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for p.left > 0 {
		chunk := patternBlock[p.off:]
		if int64(len(chunk)) > p.left {
			chunk = chunk[:p.left]
		}
		n, err := w.Write(chunk)
		total += int64(n)
		p.left -= int64(n)
		p.off = (p.off + n) % len(patternBlock)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// patternCRC is the CRC-32 of the first n bytes of the pattern.
func patternCRC(n int64) uint32 {
	h := crc32.NewIEEE()
	io.Copy(h, newPattern(n))
	return h.Sum32()
}
