package proxy

import (
	"crypto/tls"
	"runtime"
	"time"
)

// An idle HTTP/2 connection parks as an idle HTTP/1.1 one does (park.go):
// without a goroutine, a clientConn or a read buffer, its socket waiting
// in the parking lot. What it keeps is its h2Conn: settings, windows,
// the HPACK decoder's table, the writer (idle: no buffer), and its TLS
// state. The reader waits for the client's next bytes in h2In.fill; once
// the connection has been idle (no stream) and waiting for parkAfter, the
// sweeper cuts that wait short (its read deadline, moved into the past)
// and the reader parks. A read that timed out found nothing, in the socket
// or in crypto/tls, so the socket's readiness is the connection's.

// idleLocked reports whether the connection has nothing in progress: no
// stream, no handler, no GOAWAY.
func (c *h2Conn) idleLocked() bool {
	return len(c.streams) == 0 && c.running == 0 && len(c.unstarted) == 0 && !c.goingAway && !c.closed
}

// markIdleLocked offers the connection to the sweeper, when it is idle and
// its reader waits: the reader itself when it begins to wait, or the
// stream whose end leaves the connection idle while it waits.
func (c *h2Conn) markIdleLocked() {
	if c.waiting && c.idleStart == 0 && c.idleLocked() {
		c.idleStart = time.Now().UnixNano()
		c.cc.idleSince.Store(c.idleStart)
	}
}

// wait waits for the client's next bytes; true when the connection has
// parked instead, and belongs to the lot.
func (c *h2Conn) wait() (parked bool) {
	cc := c.cc
	c.mu.Lock()
	c.waiting = true
	c.markIdleLocked()
	c.mu.Unlock()
	err := c.in.fill()
	c.mu.Lock()
	c.waiting = false
	start := c.idleStart
	c.idleStart = 0
	c.mu.Unlock()
	if start == 0 || cc.idleSince.CompareAndSwap(start, 0) {
		return false
	}
	// The sweeper asked the connection to park, and is moving or has
	// moved its read deadline into the past.
	for cc.idleSince.Load() != idleParkSet {
		runtime.Gosched()
	}
	cc.idleSince.Store(0)
	c.mu.Lock()
	idle := c.idleLocked()
	c.mu.Unlock()
	if idle && isTimeout(err) && c.in.buf == nil && len(c.in.pre) == 0 {
		c.in.err = nil
		if c.park() {
			return true
		}
		// Refused (the proxy is closing): it ends as a timed-out idle
		// connection.
		c.in.err = err
		return false
	}
	if isTimeout(err) && c.in.buf == nil {
		c.in.err = nil // the sweeper's, not the connection's
	}
	c.mu.Lock()
	if c.idleArmed {
		c.c.SetReadDeadline(c.idleDeadline)
	} else {
		c.c.SetReadDeadline(time.Time{})
	}
	c.mu.Unlock()
	return false
}

// park hands the connection to the parking lot, and its clientConn back
// to the pool; false when the lot takes none.
func (c *h2Conn) park() bool {
	cc := c.cc
	p := cc.p
	var fc *fileConn
	tc, _ := c.c.(*tls.Conn)
	if tc != nil {
		if sc, ok := tc.NetConn().(*sockConn); ok {
			fc = sc.fileConn
		}
	} else if sc, ok := c.c.(*sockConn); ok {
		fc = sc.fileConn
	}
	if fc == nil {
		return false
	}
	// What a connection grows while busy goes (a map never shrinks),
	// before the lot can resume it.
	c.cc, c.fr = nil, nil
	c.mu.Lock()
	c.streams = nil
	c.mu.Unlock()
	if tc != nil {
		dropTLSInput(tc)
	}
	if !p.toLot(cc, fc, parkedState{ls: cc.ls, deadline: c.idleDeadline, nreq: 1, tls: tc, h2: c}) {
		c.cc = cc
		c.mu.Lock()
		c.streams = map[uint32]*h2Stream{}
		c.mu.Unlock()
		c.newFramer()
		return false
	}
	return true
}

// resume carries on reading frames, on cc, once the parked connection is
// readable; false when the connection has ended.
func (c *h2Conn) resume(cc *clientConn) (parked bool) {
	if cc.br != nil {
		cc.releaseBuffers()
	}
	cc.req.headers, cc.resp.headers = nil, nil
	c.cc = cc
	c.mu.Lock()
	c.streams = map[uint32]*h2Stream{}
	c.mu.Unlock()
	c.newFramer()
	// The sweeper moved the read deadline into the past to park it.
	c.c.SetReadDeadline(c.idleDeadline)
	return c.readFrames()
}

// forget is the end of a parked connection closed in the lot (its
// keep-alive time over, or cut).
func (c *h2Conn) forget() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.srv.remove(c)
}
