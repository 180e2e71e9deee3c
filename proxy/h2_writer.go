package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"time"
)

// h2Writer coalesces what x/net writes to an HTTP/2 connection. x/net
// flushes its frame buffer each time its write queue runs empty, and a
// stream's goroutine queues a response's HEADERS, waits until they are
// written, then queues its DATA: two writes (and, over TLS, two records)
// per response, each a loopback or network segment whose cost the sender
// pays. Here a flush only queues its bytes, and a flusher goroutine, after
// letting the goroutines that are ready run first (the stream that queues
// its DATA next, other streams finishing), sends all that was queued
// meanwhile in one write, as an event loop would.
//
// What x/net is promised still holds: bytes go out in the order written;
// a write that makes no progress for send_timeout fails the connection (the
// flusher's deadline, in place of x/net's WriteByteTimeout); at most
// h2WriteQueueMax bytes wait, beyond that Write blocks until they are sent
// (so a client that reads nothing stalls x/net as before); the error a
// flush meets is every later Write's, and closes the connection so that
// x/net's reader ends it too. An idle connection holds no buffer.
type h2Writer struct {
	net.Conn
	timeout time.Duration
	bufs    *sync.Pool // *[]byte

	mu       sync.Mutex
	sent     sync.Cond // signalled when a flush ends
	queued   *[]byte   // nil: nothing queued
	flushing bool      // a flusher runs
	err      error
}

// h2WriteQueueMax bounds what waits to be sent (x/net's frame buffer is
// 4 kB and a DATA frame at most 16 kB, so a few rounds of all streams).
const h2WriteQueueMax = 64 << 10

func newH2Writer(c net.Conn, timeout time.Duration, bufs *sync.Pool) net.Conn {
	w := &h2Writer{Conn: c, timeout: timeout, bufs: bufs}
	w.sent.L = &w.mu
	if cs, ok := c.(connectionStater); ok {
		// x/net learns it serves TLS (and checks the version and cipher
		// suite) from ConnectionState: a wrapper must pass it on.
		return h2TLSWriter{w, cs}
	}
	return w
}

// connectionStater is a TLS connection, or a wrapper passing its state on.
type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

type h2TLSWriter struct {
	*h2Writer
	cs connectionStater
}

func (c h2TLSWriter) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

var errH2WriterClosed = errors.New("http2 connection closed")

func (w *h2Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.err == nil && w.queued != nil && len(*w.queued) >= h2WriteQueueMax {
		w.sent.Wait()
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.queued == nil {
		w.queued, _ = w.bufs.Get().(*[]byte)
		if w.queued == nil {
			w.queued = new([]byte)
		}
	}
	*w.queued = append(*w.queued, p...)
	if !w.flushing {
		w.flushing = true
		go w.flush()
	}
	return len(p), nil
}

// flush sends what is queued until nothing is.
func (w *h2Writer) flush() {
	runtime.Gosched() // let what is ready queue its frames first
	w.mu.Lock()
	for w.queued != nil && w.err == nil {
		b := w.queued
		w.queued = nil
		w.mu.Unlock()
		err := w.writeAll(*b)
		w.mu.Lock()
		if err != nil {
			w.err = err
		}
		if cap(*b) <= 2*h2WriteQueueMax {
			*b = (*b)[:0]
			w.bufs.Put(b)
		}
		w.sent.Broadcast()
	}
	w.queued = nil
	w.flushing = false
	w.sent.Broadcast()
	w.mu.Unlock()
}

// writeAll writes b, failing when a write makes no progress for the
// timeout; on failure it closes the connection.
func (w *h2Writer) writeAll(b []byte) error {
	for len(b) > 0 {
		if w.timeout > 0 {
			w.Conn.SetWriteDeadline(time.Now().Add(w.timeout))
		}
		n, err := w.Conn.Write(b)
		b = b[n:]
		if err != nil && (n == 0 || !errors.Is(err, os.ErrDeadlineExceeded)) {
			w.Conn.Close()
			return err
		}
	}
	return nil
}

// SetWriteDeadline is x/net's around each of its writes, which only queue
// here: the flusher keeps its own.
func (w *h2Writer) SetWriteDeadline(time.Time) error { return nil }

func (w *h2Writer) SetDeadline(t time.Time) error { return w.Conn.SetReadDeadline(t) }

// h2CloseGrace bounds how long Close lets the flusher send what is still
// queued: x/net closes from its serve loop, which reads nothing meanwhile,
// and a client that reads nothing (a PING flood x/net is hanging up on)
// must not hold it for send_timeout.
const h2CloseGrace = time.Second

// Close sends what is still queued (x/net's last frames: GOAWAY) for at
// most h2CloseGrace, then closes the connection.
func (w *h2Writer) Close() error {
	w.mu.Lock()
	if w.flushing {
		// Closing the socket ends a write that makes no progress.
		t := time.AfterFunc(h2CloseGrace, func() { w.Conn.Close() })
		for w.flushing {
			w.sent.Wait()
		}
		t.Stop()
	}
	if w.err == nil {
		w.err = errH2WriterClosed
	}
	w.mu.Unlock()
	return w.Conn.Close()
}
