package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tunnel relays bytes both ways after a 101 Switching Protocols (WebSocket
// and other upgrades) until either side closes, or until no byte has moved
// either way for the upstream's tunnel_timeout (HAProxy's "timeout
// tunnel"; nginx applies proxy_read_timeout): without it a tunnel whose
// client vanished without a FIN would hold two sockets until the next
// drain. The tunnel counts as a request in flight, so draining waits for
// it and the drain deadline cuts it (cut closes both connections).
func (cc *clientConn) tunnel(ex *exchange, uc *upConn) attemptResult {
	defer uc.release()
	if err := cc.bw.Flush(); err != nil {
		return attemptResult{out: outDone}
	}
	// The copy loops below write to the client socket directly, not
	// through cc.io, which would set TCP_NODELAY before a second send.
	cc.io.noDelay()
	idle := uc.ss.up.tunnelTimeout
	t := &tunnelState{idle: idle, bufs: &cc.p.tunnelBufs}
	t.touch()
	// Whatever either side sent early is already in our read buffers.
	if n := cc.br.Buffered(); n > 0 {
		b, _ := cc.br.Peek(n)
		uc.c.SetWriteDeadline(time.Now().Add(idle))
		if _, err := uc.c.Write(b); err != nil {
			return attemptResult{out: outDone}
		}
		cc.br.Discard(n)
		ex.bytesIn += int64(n)
	}
	if n := uc.br.Buffered(); n > 0 {
		b, _ := uc.br.Peek(n)
		cc.c.SetWriteDeadline(time.Now().Add(idle))
		if _, err := cc.Write(b); err != nil {
			return attemptResult{out: outDone}
		}
		uc.br.Discard(n)
	}
	up := make(chan int64, 1)
	go func() {
		n := t.copy(uc.c, cc.c)
		// The client is done (or the tunnel idle): end the tunnel.
		closeBoth(cc.c, uc.c)
		up <- n
	}()
	n := t.copy(cc.c, uc.c)
	cc.written += n
	closeBoth(cc.c, uc.c)
	ex.bytesIn += <-up
	return attemptResult{out: outDone}
}

// tunnelState is what the two directions of a tunnel share: when a byte
// last moved either way. A direction that has been quiet for the timeout
// lives on while the other one moves bytes (a server pushing to a client
// that never speaks is not idle).
type tunnelState struct {
	idle time.Duration
	bufs *sync.Pool   // *[]byte; a tunnel takes two while it lives
	last atomic.Int64 // unix nanoseconds of the last byte moved
}

// tunnelBuf is the size of a tunnel's copy buffer, per direction: a
// WebSocket message is usually far smaller.
const tunnelBuf = 16 << 10

func (t *tunnelState) touch() { t.last.Store(time.Now().UnixNano()) }

// copy moves bytes from src to dst until src ends or fails, a write fails,
// or the tunnel has been idle both ways for t.idle, and returns how many
// it moved. Deadlines are set only when less than half the timeout is
// left, so a busy tunnel pays for one now and then, not per read.
func (t *tunnelState) copy(dst, src net.Conn) int64 {
	bp, _ := t.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, tunnelBuf)
		bp = &b
	}
	defer t.bufs.Put(bp)
	buf := *bp
	var moved int64
	var rdl, wdl time.Time
	for {
		if rdl.Sub(time.Now()) < t.idle/2 {
			// Idle counts from the last byte either way (if that is
			// already past, the read fails at once and the loop ends).
			rdl = time.Unix(0, t.last.Load()).Add(t.idle)
			src.SetReadDeadline(rdl)
		}
		n, err := src.Read(buf)
		if n > 0 {
			now := time.Now()
			t.last.Store(now.UnixNano())
			if wdl.Sub(now) < t.idle/2 {
				wdl = now.Add(t.idle)
				dst.SetWriteDeadline(wdl)
			}
			w, werr := dst.Write(buf[:n])
			moved += int64(w)
			if werr != nil {
				return moved
			}
		}
		if err == nil {
			continue
		}
		// Quiet this way until the deadline: go on only if the other way
		// moved bytes meanwhile (the deadline is then set anew, above,
		// from that last byte).
		if !isTimeout(err) || time.Since(time.Unix(0, t.last.Load())) >= t.idle {
			return moved
		}
		rdl = time.Time{}
	}
}

func closeBoth(a, b net.Conn) {
	a.Close()
	b.Close()
}
