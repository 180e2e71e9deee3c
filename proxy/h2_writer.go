package proxy

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"time"
)

// h2Writer is an HTTP/2 connection's write side: frames are appended to
// a queue, and a flusher goroutine, after letting the goroutines that are
// ready run first (the stream that queues its DATA next, other streams
// finishing), sends all that was queued meanwhile in one write, as an
// event loop would. A response's HEADERS and DATA, and those of the other
// streams that finished meanwhile, go out in one write (over TLS, one
// record), where writing each as it comes costs a segment, whose cost the
// sender pays, apiece.
//
// Bytes go out in the order queued; a write that makes no progress for
// send_timeout fails the connection; at most h2WriteQueueMax bytes of
// streams' frames wait, beyond that a stream blocks until they are sent
// (so a client that reads nothing stalls its streams, not the reader);
// the error a flush meets is every later append's, and closes the
// connection so that the reader ends it too. An idle connection holds no
// buffer.
type h2Writer struct {
	conn    net.Conn
	timeout time.Duration
	bufs    *sync.Pool // *[]byte

	mu       sync.Mutex
	sent     sync.Cond // signalled when a flush ends
	queued   *[]byte   // nil: nothing queued
	flushing bool      // a flusher runs
	err      error
}

// h2WriteQueueMax bounds what streams' frames may wait to be sent: a few
// rounds of DATA frames of all streams.
const h2WriteQueueMax = 64 << 10

// h2ControlQueueMax bounds what may wait to be sent once the reader's
// answers (SETTINGS and PING acks, resets, window updates) are counted:
// the reader never waits for room, and a client that asks for more
// answers than this without reading them is hung up on (ENHANCE_YOUR_CALM
// in spirit: a PING flood).
const h2ControlQueueMax = 4 * h2WriteQueueMax

var errH2Calm = errors.New("http2: the client sends control frames and reads none of the answers")

func newH2Writer(c net.Conn, timeout time.Duration, bufs *sync.Pool) *h2Writer {
	w := &h2Writer{conn: c, timeout: timeout, bufs: bufs}
	w.sent.L = &w.mu
	return w
}

var errH2WriterClosed = errors.New("http2 connection closed")

// frames runs fill with the queue locked, for it to append frames: what
// must go out in the order it is decided (HEADERS after the check that
// their stream was not reset) is decided in fill. A control frame does
// not wait for room; past h2ControlQueueMax, fill is not run and the
// connection is closed.
func (w *h2Writer) frames(control bool, fill func(b []byte) []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !control && w.err == nil && w.queued != nil && len(*w.queued) >= h2WriteQueueMax {
		w.sent.Wait()
	}
	if w.err != nil {
		return w.err
	}
	if control && w.queued != nil && len(*w.queued) >= h2ControlQueueMax {
		w.err = errH2Calm
		w.conn.Close()
		return w.err
	}
	if w.queued == nil {
		w.queued, _ = w.bufs.Get().(*[]byte)
		if w.queued == nil {
			w.queued = new([]byte)
		}
	}
	*w.queued = fill(*w.queued)
	if !w.flushing {
		w.flushing = true
		go w.flush()
	}
	return nil
}

// failure is the error that failed the writer, if any.
func (w *h2Writer) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
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
		if err != nil && w.err == nil {
			w.err = err // the first failure stays (a hang-up: errH2Calm)
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
			w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
		}
		n, err := w.conn.Write(b)
		b = b[n:]
		if err != nil && (n == 0 || !errors.Is(err, os.ErrDeadlineExceeded)) {
			w.conn.Close()
			return err
		}
	}
	return nil
}

// h2CloseGrace bounds how long Close lets the flusher send what is still
// queued: a client that reads nothing (a PING flood being hung up on)
// must not hold the connection for send_timeout.
const h2CloseGrace = time.Second

// Close sends what is still queued (the last frames: GOAWAY) for at most
// h2CloseGrace, then closes the connection.
func (w *h2Writer) Close() error {
	w.mu.Lock()
	if w.flushing {
		// Closing the socket ends a write that makes no progress.
		t := time.AfterFunc(h2CloseGrace, func() { w.conn.Close() })
		for w.flushing {
			w.sent.Wait()
		}
		t.Stop()
	}
	if w.err == nil {
		w.err = errH2WriterClosed
	}
	w.sent.Broadcast()
	w.mu.Unlock()
	return w.conn.Close()
}
