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
// state. The reader waits for the next frame in h2In.fill when no stream
// is open; once it has waited parkAfter, the sweeper cuts that wait short
// (its read deadline, moved into the past) and the reader parks. A read
// that timed out found nothing, in the socket or in crypto/tls, so the
// socket's readiness is the connection's.

// idle reports whether the connection has nothing in progress: no
// stream, no handler, no GOAWAY.
func (c *h2Conn) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams) == 0 && c.running == 0 && len(c.unstarted) == 0 && !c.goingAway && !c.closed
}

// await waits for the client's next frame; true when the connection has
// parked instead, and belongs to the lot.
func (c *h2Conn) await() (parked bool) {
	cc := c.cc
	cc.idleStart = time.Now().UnixNano()
	cc.idleSince.Store(cc.idleStart)
	err := c.in.fill()
	if cc.idleSince.CompareAndSwap(cc.idleStart, 0) {
		return false
	}
	// The sweeper asked the connection to park, and is moving or has
	// moved its read deadline into the past.
	for cc.idleSince.Load() != idleParkSet {
		runtime.Gosched()
	}
	cc.idleSince.Store(0)
	if isTimeout(err) && c.in.buf == nil && len(c.in.pre) == 0 {
		c.in.err = nil
		if c.park() {
			return true
		}
		// Refused (the proxy is closing): it ends as a timed-out idle
		// connection.
		c.in.err = err
		return false
	}
	c.c.SetReadDeadline(c.idleDeadline) // a frame came meanwhile
	return false
}

// park hands the connection to the parking lot, and its clientConn back
// to the pool.
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
	// before the lot can resume it: from the lot's side, under Proxy.mu.
	c.cc, c.fr = nil, nil
	c.mu.Lock()
	c.streams = nil
	c.mu.Unlock()
	p.mu.Lock()
	lot := p.lot
	if lot == nil || lot.broken || p.closing.Load() || p.cutting {
		p.mu.Unlock()
		c.cc = cc
		c.mu.Lock()
		c.streams = map[uint32]*h2Stream{}
		c.mu.Unlock()
		c.newFramer()
		return false
	}
	fc.parked = parkedState{ls: cc.ls, deadline: c.idleDeadline, nreq: 1, tls: tc, h2: c}
	delete(p.conns, cc)
	lot.byFD[fc.fd] = fc
	cc.ls.parked.push(fc)
	lot.lastPark = time.Now()
	p.mu.Unlock()

	cc.c = nil
	cc.io.reset(nil)
	p.ccPool.Put(cc)
	// From here on the lot's loop may resume the connection at any time.
	if err := lot.arm(fc); err != nil {
		p.log.Warn("cannot park an idle connection; closing it", "error", err)
		p.mu.Lock()
		mine := p.unparkLocked(lot, fc)
		p.mu.Unlock()
		if mine {
			p.closeParked(fc)
		}
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
