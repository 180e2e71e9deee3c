package proxy

import (
	"io"
	"net"
	"time"
)

// tunnel relays bytes both ways after a 101 Switching Protocols (WebSocket
// and other upgrades) until either side closes. The tunnel counts as a
// request in flight, so draining waits for it and the drain deadline cuts
// it (cut closes both connections).
func (cc *clientConn) tunnel(ex *exchange, uc *upConn) attemptResult {
	defer uc.release()
	if err := cc.bw.Flush(); err != nil {
		return attemptResult{out: outDone}
	}
	cc.c.SetDeadline(time.Time{})
	uc.c.SetDeadline(time.Time{})
	// The copy loops below write to the client socket directly, not
	// through cc.io, which would set TCP_NODELAY before a second send.
	cc.io.noDelay()
	// Whatever either side sent early is already in our read buffers.
	if n := cc.br.Buffered(); n > 0 {
		b, _ := cc.br.Peek(n)
		if _, err := uc.c.Write(b); err != nil {
			return attemptResult{out: outDone}
		}
		cc.br.Discard(n)
		ex.bytesIn += int64(n)
	}
	if n := uc.br.Buffered(); n > 0 {
		b, _ := uc.br.Peek(n)
		if _, err := cc.Write(b); err != nil {
			return attemptResult{out: outDone}
		}
		uc.br.Discard(n)
	}
	up := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(uc.c, cc.c) // splice between TCP sockets
		// The client is done: end the tunnel.
		closeBoth(cc.c, uc.c)
		up <- n
	}()
	n, _ := io.Copy(cc.c, uc.c)
	cc.written += n
	closeBoth(cc.c, uc.c)
	ex.bytesIn += <-up
	return attemptResult{out: outDone}
}

func closeBoth(a, b net.Conn) {
	a.Close()
	b.Close()
}
