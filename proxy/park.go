package proxy

import (
	"crypto/tls"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/pingora-go/pingora/config"
)

// This file keeps idle client connections without a goroutine or a
// buffer of their own, so that an idle keep-alive connection costs the
// worker about 1.2 kB (measured at 10,000; nginx: 0.6 kB) rather than a
// goroutine stack, a clientConn and its read and write buffers (about
// 27 kB).
//
// It happens in two steps. A connection waiting for its next request
// first gives its buffers back to their pools the moment a read finds
// nothing (awaitRequest): that read, into a 1 kB scratch array of the
// connection's, is the one the proxy makes anyway, so this costs no
// system call, only two pool round trips per request. Its goroutine then
// waits in Go's poller. Once it has waited
// parkAfter, the sweeper asks it to park: the goroutine registers the
// socket with the proxy's parking lot (an epoll instance of its own,
// EPOLLONESHOT), gives its clientConn back to the pool and goes on to
// serve other connections or exits. When the socket becomes readable (a
// request, the client's FIN, a reset), the lot's loop takes a clientConn
// from the pool and hands the connection to a goroutine, which carries on
// as if it had waited itself. The keep-alive timeout of a parked
// connection is kept by the sweeper.
//
// Parking is not free (an epoll_ctl, a wake-up through the lot's loop and
// a goroutine hand-off, a few microseconds), which is why only
// connections idle for parkAfter park: a busy keep-alive connection never
// does, and a slow one pays it at most once per request.

const (
	// parkAfter is how long a connection waits for a request on its own
	// goroutine before it parks.
	parkAfter = 50 * time.Millisecond
	// sweepEvery is how often the sweeper looks for connections to park
	// and parked ones whose keep-alive time is over.
	sweepEvery = 25 * time.Millisecond
)

// The states of clientConn.idleSince besides "waiting since" (a positive
// Unix time in nanoseconds) and 0 (not waiting).
const (
	// idleParkAsked: the sweeper has claimed the waiting connection and is
	// about to wake it by moving its read deadline into the past.
	idleParkAsked = -1
	// idleParkSet: the deadline is set; the connection's goroutine may go on.
	idleParkSet = -2
)

// parkedState is what a parked connection keeps of its clientConn.
type parkedState struct {
	ls         *listenerState
	deadline   time.Time // the keep-alive (or first-request) deadline
	nreq       int
	noDelayDue bool
	sent       bool
	tls        *tls.Conn // a TLS connection's state; nil: plain
	h2         *h2Conn   // an HTTP/2 connection's state (h2_park.go)
	// prev and next link the listener's parked connections in the order
	// they parked, which is the order their deadlines come due in.
	prev, next *fileConn
}

// parkedList is a listener's parked connections, oldest first.
type parkedList struct{ head, tail *fileConn }

func (l *parkedList) push(fc *fileConn) {
	fc.parked.prev, fc.parked.next = l.tail, nil
	if l.tail != nil {
		l.tail.parked.next = fc
	} else {
		l.head = fc
	}
	l.tail = fc
}

func (l *parkedList) remove(fc *fileConn) {
	if fc.parked.prev != nil {
		fc.parked.prev.parked.next = fc.parked.next
	} else {
		l.head = fc.parked.next
	}
	if fc.parked.next != nil {
		fc.parked.next.parked.prev = fc.parked.prev
	} else {
		l.tail = fc.parked.prev
	}
	fc.parked.prev, fc.parked.next = nil, nil
}

// parkingLot is the epoll instance parked connections wait in, itself
// waited on through Go's poller (an epoll descriptor is readable while
// it has events), so no thread blocks in epoll_wait.
type parkingLot struct {
	ep     *os.File
	epfd   int
	raw    syscall.RawConn
	byFD   map[int32]*fileConn // under Proxy.mu
	events []syscall.EpollEvent
	n      int
	err    syscall.Errno // epoll_pwait failed: the loop ends
	broken bool          // under Proxy.mu: the loop ended, nothing parks
	waitFn func(fd uintptr) bool
	woken  []*clientConn // resumeParked's scratch

	// For giving memory back after a wave of connections went idle
	// (releaseDue); under Proxy.mu.
	lastPark        time.Time
	releasedAt      time.Time
	parkedAtRelease int
	// TLS handshakes: the count last seen and when it last moved, and
	// the count at the last release.
	handshakes, handshakesAtRelease uint64
	lastHandshake                   time.Time
}

func newParkingLot() (*parkingLot, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, so that os.NewFile registers it with the poller.
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(fd), "parking-lot")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	lot := &parkingLot{ep: f, epfd: fd, raw: raw, byFD: map[int32]*fileConn{}, events: make([]syscall.EpollEvent, 256)}
	lot.waitFn = lot.collect
	return lot, nil
}

// collect takes the ready events, if any, without blocking.
func (lot *parkingLot) collect(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&lot.events[0])),
			uintptr(len(lot.events)), 0, 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			lot.n, lot.err = 0, e
			return true
		case n == 0:
			return false
		}
		lot.n = int(n)
		return true
	}
}

// arm makes the lot report the connection's next readiness, once.
func (lot *parkingLot) arm(fc *fileConn) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: fc.fd}
	op := syscall.EPOLL_CTL_MOD
	if !fc.inLot.Load() {
		op = syscall.EPOLL_CTL_ADD
	}
	for {
		// Raw: epoll_ctl does not block.
		_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(lot.epfd), uintptr(op), uintptr(fc.fd),
			uintptr(unsafe.Pointer(&ev)), 0, 0)
		switch {
		case e == 0:
			fc.inLot.Store(true)
			return nil
		case e == syscall.ENOENT && op == syscall.EPOLL_CTL_MOD:
			op = syscall.EPOLL_CTL_ADD
		case e == syscall.EEXIST && op == syscall.EPOLL_CTL_ADD:
			op = syscall.EPOLL_CTL_MOD
		default:
			return os.NewSyscallError("epoll_ctl", e)
		}
	}
}

// openParkingLot starts parking, or leaves connections on their
// goroutines (as before) when the lot cannot be made.
func (p *Proxy) openParkingLot() {
	lot, err := newParkingLot()
	if err != nil {
		p.log.Warn("idle connections keep their goroutines: no parking lot", "error", err)
		return
	}
	p.mu.Lock()
	p.lot = lot
	p.mu.Unlock()
	go p.parkLoop(lot)
	go p.sweepIdle(lot)
}

// closeParkingLot closes the lot's epoll instance (its loop then ends).
// Parked connections must be gone (cutAll) or left to the process's exit.
func (p *Proxy) closeParkingLot() {
	p.mu.Lock()
	lot := p.lot
	p.mu.Unlock()
	if lot != nil {
		lot.ep.Close()
	}
}

// awaitRequest waits for the next request when the read buffer is empty,
// without holding the read and write buffers while nothing comes (see the
// top of this file). It reports false when the connection has parked: it
// belongs to the parking lot now, and the caller must not touch it.
// Otherwise the buffers are in place and readHead reads the request (or
// meets the end, error or timeout that ended the wait, as before).
//
// The first read and the wait are one RawConn.Read: Go's poller forgets,
// when a read begins, a readiness it noted earlier, so a read that found
// nothing followed by a separate wait could sleep through data that came
// in between.
func (cc *clientConn) awaitRequest() (stillMine bool) {
	if cc.io.raw == nil {
		if cc.ls.tls != nil {
			return cc.awaitTLS()
		}
		return true
	}
	if cc.bw.Buffered() > 0 && cc.bw.Flush() != nil {
		return true // readHead fails next; finish closes
	}
	cc.waiting = false
	err := cc.io.raw.Read(cc.awaitFn)
	if !cc.waiting {
		return true // the read found something, or RawConn refused to read
	}
	if !cc.idleSince.CompareAndSwap(cc.idleStart, 0) {
		// The sweeper asked this connection to park, and is moving or
		// has moved its read deadline into the past.
		for cc.idleSince.Load() != idleParkSet {
			runtime.Gosched()
		}
		cc.idleSince.Store(0)
		if (err == nil || isTimeout(err)) && cc.park() {
			return false
		}
		// Parking was refused (the proxy is closing): the connection
		// ends as a timed-out idle one.
		cc.rdl = aLongTimeAgo
	}
	cc.takeBuffers()
	return true
}

// await is awaitRequest's RawConn.Read function: a first read into the
// connection's scratch space; when it finds nothing, the buffers go back
// and the poller waits; after a wake-up, the socket is readable (or the
// deadline passed, which RawConn reports itself).
func (cc *clientConn) await(fd uintptr) bool {
	if cc.waiting {
		return true
	}
	if !cc.io.readScratch(fd) {
		return true
	}
	cc.waiting = true
	cc.releaseBuffers()
	cc.idleStart = time.Now().UnixNano()
	cc.idleSince.Store(cc.idleStart)
	return false
}

// awaitTLS is awaitRequest for a TLS connection, which cannot be polled
// as a plain one is (crypto/tls may hold records it has read): its
// goroutine waits in a read into the connection's scratch space, with the
// read and write buffers (24 kB) and its parsed fields back in their pools
// meanwhile. What the read brings, or its error, waits in sockIO for the
// next Read. The sweeper may ask it to park as it asks a plain one (its
// read then times out): a read that timed out found crypto/tls holding no
// whole record, so the socket's readiness is the connection's, and it
// parks with its TLS state.
func (cc *clientConn) awaitTLS() (stillMine bool) {
	if len(cc.io.pending) > 0 || cc.io.pendingErr != nil {
		return true // the last wait's input is not all taken yet
	}
	if cc.bw.Buffered() > 0 && cc.bw.Flush() != nil {
		return true // readHead fails next; finish closes
	}
	cc.releaseBuffers()
	pool := &cc.ls.readers.fields
	lendFields(pool, &cc.req.headers)
	lendFields(pool, &cc.resp.headers)
	cc.idleStart = time.Now().UnixNano()
	cc.idleSince.Store(cc.idleStart)
	cc.io.readAhead()
	if !cc.idleSince.CompareAndSwap(cc.idleStart, 0) {
		// The sweeper asked this connection to park and is moving or has
		// moved its read deadline into the past.
		for cc.idleSince.Load() != idleParkSet {
			runtime.Gosched()
		}
		cc.idleSince.Store(0)
		if len(cc.io.pending) == 0 && isTimeout(cc.io.pendingErr) {
			cc.io.pendingErr = nil
			if cc.park() {
				return false
			}
			// Refused (the proxy is closing): it ends as a timed-out
			// idle connection.
			cc.io.pendingErr = os.ErrDeadlineExceeded
		} else if len(cc.io.pending) > 0 {
			cc.c.SetReadDeadline(cc.rdl) // a request came meanwhile
		}
	}
	cc.req.headers, cc.resp.headers = borrowFields(pool), borrowFields(pool)
	cc.takeBuffers()
	return true
}

// fieldsCap is the capacity of a clientConn's field slices (getClientConn);
// grown ones are not lent.
const fieldsCap = 32

// lendFields puts *h, cleared, in pool, for an idle TLS connection does
// not need its 3.5 kB of parsed fields until its next request comes.
func lendFields(pool *sync.Pool, h *[]header) {
	if cap(*h) == fieldsCap {
		a := (*[fieldsCap]header)((*h)[:fieldsCap])
		clear(a[:])
		pool.Put(a)
	}
	*h = nil
}

func borrowFields(pool *sync.Pool) []header {
	if a, ok := pool.Get().(*[fieldsCap]header); ok {
		return a[:0]
	}
	return make([]header, 0, fieldsCap)
}

func (cc *clientConn) takeBuffers() {
	cc.br = cc.ls.readers.getReader(cc.io)
	cc.bw = cc.p.clientWriters.getWriter(cc)
}

func (cc *clientConn) releaseBuffers() {
	cc.ls.readers.putReader(cc.br)
	cc.p.clientWriters.putWriter(cc.bw)
	cc.br, cc.bw = nil, nil
}

// park hands the waiting connection, whose buffers are already back in
// their pools, to the parking lot and its clientConn back to the pool.
func (cc *clientConn) park() bool {
	p := cc.p
	fc, ok := cc.c.(*fileConn)
	tc, _ := cc.c.(*tls.Conn)
	if tc != nil {
		sc, _ := tc.NetConn().(*sockConn)
		if sc == nil {
			return false
		}
		fc, ok = sc.fileConn, true
		dropTLSInput(tc)
	}
	if !ok {
		return false
	}
	return p.toLot(cc, fc, parkedState{
		ls:         cc.ls,
		deadline:   cc.rdl,
		nreq:       cc.nreq,
		noDelayDue: cc.io.noDelayDue,
		sent:       cc.io.sent,
		tls:        tc,
	})
}

// toLot puts fc, with what it keeps of cc, in the parking lot and gives cc
// back to the pool; false, with nothing done, when the lot takes none
// (there is none, it failed, or the proxy is closing).
func (p *Proxy) toLot(cc *clientConn, fc *fileConn, st parkedState) bool {
	p.mu.Lock()
	lot := p.lot
	if lot == nil || lot.broken || p.closing.Load() || p.cutting {
		p.mu.Unlock()
		return false
	}
	fc.parked = st
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

func (p *Proxy) unparkLocked(lot *parkingLot, fc *fileConn) bool {
	if lot.byFD[fc.fd] != fc {
		return false
	}
	delete(lot.byFD, fc.fd)
	fc.parked.ls.parked.remove(fc)
	return true
}

// closeParked closes a connection taken out of the lot.
func (p *Proxy) closeParked(fc *fileConn) {
	ls := fc.parked.ls
	if h := fc.parked.h2; h != nil {
		h.forget()
	}
	fc.parked = parkedState{}
	p.closer.close(fc)
	p.stats.active.Add(-1)
	ls.connDone()
	p.mu.Lock()
	p.noteConnGone()
	p.mu.Unlock()
}

// parkLoop resumes parked connections as they become readable.
func (p *Proxy) parkLoop(lot *parkingLot) {
	for {
		if err := lot.raw.Read(lot.waitFn); err != nil {
			return // the lot was closed
		}
		if lot.err != 0 {
			// Parked connections now wait for the sweeper to close them
			// at their keep-alive deadline; new idle ones stay on their
			// goroutines.
			p.log.Error("the parking lot failed; parked connections are no longer woken", "error", os.NewSyscallError("epoll_pwait", lot.err))
			p.mu.Lock()
			p.lot.broken = true
			p.mu.Unlock()
			return
		}
		p.resumeParked(lot)
	}
}

// resumeParked gives each connection with an event a clientConn and a
// goroutine. An event may be stale (its connection was closed and its
// descriptor number reused by one that parked since): that connection is
// then resumed early, finds nothing to read and waits again.
func (p *Proxy) resumeParked(lot *parkingLot) {
	woken := lot.woken[:0]
	var refused []*fileConn
	p.mu.Lock()
	for _, ev := range lot.events[:lot.n] {
		fc := lot.byFD[ev.Fd]
		if fc == nil || !p.unparkLocked(lot, fc) {
			continue
		}
		if p.closing.Load() || p.cutting {
			refused = append(refused, fc)
			continue
		}
		cc := p.getClientConn()
		cc.resume(fc)
		p.conns[cc] = struct{}{}
		woken = append(woken, cc)
	}
	p.mu.Unlock()
	for _, fc := range refused {
		p.closeParked(fc)
	}
	for i, cc := range woken {
		select {
		case p.handoff <- cc:
		default:
			go p.serveConns(cc)
		}
		woken[i] = nil
	}
	lot.woken = woken[:0]
}

// resume readies a pooled clientConn for a connection coming back from
// the lot, as it was when it parked.
func (cc *clientConn) resume(fc *fileConn) {
	st := fc.parked
	fc.parked = parkedState{}
	if st.tls != nil {
		cc.reset(st.ls, st.tls)
	} else {
		cc.reset(st.ls, fc)
	}
	cc.nreq = st.nreq
	cc.io.noDelayDue, cc.io.sent = st.noDelayDue, st.sent
	cc.h2Parked = st.h2
	cc.remote = fc.remote.AppendTo(cc.remote[:0])
	cc.ip = fc.remote.Addr().AppendTo(cc.ip[:0])
}

// sweepIdle asks connections idle for parkAfter to park and closes
// parked ones whose time is over.
func (p *Proxy) sweepIdle(lot *parkingLot) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	var asked []*clientConn
	var expired []*fileConn
	for {
		select {
		case now := <-t.C:
			asked, expired = p.sweep(lot, now, asked[:0], expired[:0])
		case <-p.stopped:
			return
		}
	}
}

// wakeExpired hands a parked HTTP/2 connection whose keep-alive time is
// over to a goroutine, as a readable one is: its reader meets the deadline
// that passed, and says GOAWAY before it closes (h2_conn.go), where a
// plain close could reset a request crossing it. False when the proxy is
// closing: the caller closes it.
func (p *Proxy) wakeExpired(fc *fileConn) bool {
	p.mu.Lock()
	if p.closing.Load() || p.cutting {
		p.mu.Unlock()
		return false
	}
	cc := p.getClientConn()
	cc.resume(fc)
	p.conns[cc] = struct{}{}
	p.mu.Unlock()
	go p.serveConns(cc)
	return true
}

// aLongTimeAgo is a read deadline that has passed: setting it wakes a
// goroutine waiting to read.
var aLongTimeAgo = time.Unix(1, 0)

func (p *Proxy) sweep(lot *parkingLot, now time.Time, asked []*clientConn, expired []*fileConn) ([]*clientConn, []*fileConn) {
	cutoff := now.Add(-parkAfter).UnixNano()
	p.mu.Lock()
	for cc := range p.conns {
		if s := cc.idleSince.Load(); s > 0 && s <= cutoff && cc.idleSince.CompareAndSwap(s, idleParkAsked) {
			asked = append(asked, cc)
		}
	}
	for _, ls := range p.listeners {
		for fc := ls.parked.head; fc != nil && !fc.parked.deadline.After(now); fc = ls.parked.head {
			if !p.unparkLocked(lot, fc) {
				ls.parked.remove(fc) // not in the lot: cannot happen, but never loop
				continue
			}
			expired = append(expired, fc)
		}
	}
	tls := &p.stats.tls
	release := lot.releaseDue(now, tls[config.TLSHandshakeFull].Load()+tls[config.TLSHandshakeResumed].Load())
	p.mu.Unlock()
	// The claimed connections' goroutines wait for idleParkSet, so each
	// cc and its connection stay as they are meanwhile.
	for i, cc := range asked {
		cc.c.SetReadDeadline(aLongTimeAgo)
		cc.idleSince.Store(idleParkSet)
		asked[i] = nil
	}
	for i, fc := range expired {
		if fc.parked.h2 == nil || !p.wakeExpired(fc) {
			p.closeParked(fc)
		}
		expired[i] = nil
	}
	if release {
		// Two collections: the first moves the pools' contents (the
		// wave's buffers and clientConns) to their victim caches, the
		// one FreeOSMemory runs drops them.
		runtime.GC()
		debug.FreeOSMemory()
	}
	return asked, expired
}

// Giving memory back. The connections of a wave that has just gone idle
// held their buffers, clientConns and goroutine stacks for a moment
// before they parked; once parked, that memory is free, but the Go
// runtime keeps free memory until a garbage collection lowers its goal,
// and an idle worker allocates nothing, so it could keep a burst's peak
// for minutes. When many connections have parked since the last time and
// parking has then paused for longer than the burst's goroutines linger
// (connGoroutineIdle), the sweeper runs a collection and
// returns the free memory to the system (two collections and a scavenge:
// a few milliseconds), at most once per releaseEvery. A worker always busy
// parking and resuming never pauses and never pays for it.
const (
	releaseMinParked = 1000
	releaseQuiet     = connGoroutineIdle + time.Second
	releaseEvery     = 30 * time.Second
)

// releaseDue reports whether to give memory back now, after a wave of
// parked connections or of TLS handshakes (handshakes: how many the
// worker has done). TLS connections do not park, but a handshake leaves
// more garbage than a connection's idle state weighs (certificates,
// key exchange: an idle TLS connection's RSS was twice its live memory),
// so a wave of them that has gone quiet is treated as a parked one.
// Called with Proxy.mu held.
func (lot *parkingLot) releaseDue(now time.Time, handshakes uint64) bool {
	n := len(lot.byFD)
	// A wave is counted from the fewest parked since the last release.
	lot.parkedAtRelease = min(lot.parkedAtRelease, n)
	if handshakes != lot.handshakes {
		lot.handshakes, lot.lastHandshake = handshakes, now
	}
	parkWave := n >= releaseMinParked && n >= lot.parkedAtRelease+lot.parkedAtRelease/2 &&
		now.Sub(lot.lastPark) >= releaseQuiet
	tlsWave := handshakes-lot.handshakesAtRelease >= releaseMinParked && now.Sub(lot.lastHandshake) >= releaseQuiet
	if !parkWave && !tlsWave || (!lot.releasedAt.IsZero() && now.Sub(lot.releasedAt) < releaseEvery) {
		return false
	}
	lot.releasedAt, lot.parkedAtRelease, lot.handshakesAtRelease = now, n, handshakes
	return true
}

// parkedCount is how many connections are parked now.
func (p *Proxy) parkedCount() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lot == nil {
		return 0
	}
	return int64(len(p.lot.byFD))
}

// cutParked closes every parked connection (Close, the drain deadline).
func (p *Proxy) cutParked() {
	p.mu.Lock()
	lot := p.lot
	if lot == nil {
		p.mu.Unlock()
		return
	}
	var all []*fileConn
	for _, fc := range lot.byFD {
		all = append(all, fc)
	}
	for _, fc := range all {
		p.unparkLocked(lot, fc)
	}
	p.mu.Unlock()
	for _, fc := range all {
		p.closeParked(fc)
	}
}
