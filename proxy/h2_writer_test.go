package proxy

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// gateConn is a connection whose writes are recorded one by one; while
// the gate is shut, a write waits at it (a client not reading).
type gateConn struct {
	net.Conn // nil: only what h2Writer calls is here
	mu       sync.Mutex
	writes   [][]byte
	entered  chan struct{} // a write reached the gate
	gate     chan struct{} // closed: writes pass
	fail     error
	closed   bool
}

func newGateConn() *gateConn {
	return &gateConn{entered: make(chan struct{}, 100), gate: make(chan struct{})}
}

func (g *gateConn) Write(b []byte) (int, error) {
	g.entered <- struct{}{}
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail != nil {
		return 0, g.fail
	}
	g.writes = append(g.writes, bytes.Clone(b))
	return len(b), nil
}

func (g *gateConn) SetWriteDeadline(time.Time) error { return nil }
func (g *gateConn) Close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	return nil
}

// queue appends p to w's queue as a stream's frames are.
func queue(w *h2Writer, p []byte) (int, error) {
	if err := w.frames(false, func(b []byte) []byte { return append(b, p...) }); err != nil {
		return 0, err
	}
	return len(p), nil
}

// What the streams queue while a write is under way goes out after it in one
// write, in order; Close returns once all of it is sent.
func TestH2WriterCoalesces(t *testing.T) {
	g := newGateConn()
	w := newH2Writer(g, time.Second, &sync.Pool{})
	queue(w, []byte("HEADERS1"))
	<-g.entered // the flusher is writing the first flush
	for _, s := range []string{"DATA1", "HEADERS2", "DATA2"} {
		if n, err := queue(w, []byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	close(g.gate)
	w.Close()
	g.mu.Lock()
	defer g.mu.Unlock()
	got := make([]string, len(g.writes))
	for i, b := range g.writes {
		got[i] = string(b)
	}
	if len(got) != 2 || got[0] != "HEADERS1" || got[1] != "DATA1HEADERS2DATA2" {
		t.Fatalf("writes %q, want [HEADERS1 DATA1HEADERS2DATA2]", got)
	}
	if !g.closed {
		t.Fatal("Close left the connection open")
	}
	if _, err := queue(w, []byte("late")); err == nil {
		t.Fatal("a Write after Close succeeded")
	}
}

// A flush that fails closes the connection and fails every later Write;
// one that was waiting for room fails too.
func TestH2WriterFailure(t *testing.T) {
	g := newGateConn()
	boom := errors.New("connection reset")
	g.fail = boom
	w := newH2Writer(g, time.Second, &sync.Pool{})
	queue(w, make([]byte, h2WriteQueueMax))
	<-g.entered
	queue(w, make([]byte, h2WriteQueueMax)) // queued: the queue is full now
	blocked := make(chan error)
	go func() {
		_, err := queue(w, []byte("more"))
		blocked <- err
	}()
	close(g.gate)
	if err := <-blocked; !errors.Is(err, boom) {
		t.Fatalf("the Write waiting for room: %v, want %v", err, boom)
	}
	if _, err := queue(w, []byte("x")); !errors.Is(err, boom) {
		t.Fatalf("a later Write: %v, want %v", err, boom)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		t.Fatal("the failed flush left the connection open")
	}
}
