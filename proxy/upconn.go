package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/proxy/upstream"
)

// upstreamState is one config upstream as the request path sees it: the
// balancing pool, the timeouts, and a keep-alive pool per server.
type upstreamState struct {
	name    string
	pool    *upstream.Pool
	servers []*serverState
	dialer  net.Dialer

	connectTimeout        time.Duration
	responseHeaderTimeout time.Duration
	readTimeout           time.Duration
	idleTimeout           time.Duration
	tunnelTimeout         time.Duration
	keepalive             int
	retries               int

	hashKey    uint8  // hashNone, hashClientIP, hashURI, hashHeader
	hashHeader []byte // for hashHeader
}

const (
	hashNone = iota
	hashClientIP
	hashURI
	hashHeader
)

// serverState is one upstream server with its idle keep-alive connections,
// kept as a LIFO stack: the most recently used connection is the most
// likely to be alive, and the oldest ones expire at the bottom.
type serverState struct {
	srv  *upstream.Server
	host []byte // Host header for requests that have none
	up   *upstreamState
	tls  *tls.Config // nil: plain HTTP

	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

// upConn is one connection to an upstream server with its buffers.
type upConn struct {
	c         net.Conn
	raw       syscall.RawConn // nil when the conn is not a socket
	br        *bufio.Reader
	bw        *bufio.Writer
	ss        *serverState
	bufs      *bufPools
	idleSince time.Time
	rdl, wdl  time.Time // deadlines as set
	reused    bool      // came from the keep-alive pool
	// unfinished: the request was not sent in full (the response came
	// early), so the connection can carry no other.
	unfinished bool
	sio        *sockIO // br's and bw's socket: sio.sent tells whether a send went out

	// tc is c as a TLS connection (c itself then), nil for plain HTTP.
	tc *tls.Conn

	// probeFn is probeFD bound once, so that the liveness probe run
	// before every reuse allocates nothing; probeErr is its result
	// (EAGAIN: nothing to read, 0: bytes or EOF).
	probeFn  func(fd uintptr)
	probeErr syscall.Errno
	probeBuf [1]byte
}

func newUpstreamState(cfg config.Upstream, table *upstream.HealthTable, log hclog.Logger) (*upstreamState, error) {
	pool, err := upstream.NewPool(cfg, table, log.Named("upstream").With("upstream", cfg.Name))
	if err != nil {
		return nil, err
	}
	u := &upstreamState{
		name:                  cfg.Name,
		pool:                  pool,
		connectTimeout:        cfg.ConnectTimeout,
		responseHeaderTimeout: cfg.ResponseHeaderTimeout,
		readTimeout:           cfg.ReadTimeout,
		idleTimeout:           cfg.IdleTimeout,
		tunnelTimeout:         cfg.TunnelTimeout,
		keepalive:             cfg.KeepaliveConns,
		retries:               cfg.Retries,
	}
	u.dialer = net.Dialer{Timeout: u.connectTimeout, KeepAlive: 30 * time.Second}
	if cfg.Balance == "hash" || cfg.Balance == "fnv" {
		switch k := cfg.HashKey; k {
		case "client_ip":
			u.hashKey = hashClientIP
		case "uri":
			u.hashKey = hashURI
		default: // header:NAME, checked by config
			u.hashKey = hashHeader
			u.hashHeader = []byte(strings.TrimPrefix(k, "header:"))
		}
	}
	var sessions tls.ClientSessionCache
	if cfg.TLS != nil {
		sessions = tls.NewLRUClientSessionCache(64) // new connections resume
	}
	for _, s := range pool.Servers() {
		ss := &serverState{srv: s, up: u, host: []byte(s.Addr)}
		if cfg.TLS != nil {
			if ss.tls, err = cfg.TLS.ClientConfig(s.Addr); err != nil {
				pool.Close()
				return nil, fmt.Errorf("upstream %q: tls: %w", cfg.Name, err)
			}
			ss.tls.ClientSessionCache = sessions
		}
		u.servers = append(u.servers, ss)
	}
	return u, nil
}

// state finds the serverState of a server Pick returned (a short linear
// scan: pools are small, and this beats a map lookup).
func (u *upstreamState) state(s *upstream.Server) *serverState {
	for _, ss := range u.servers {
		if ss.srv == s {
			return ss
		}
	}
	return nil
}

// get pops an idle connection that is still usable, or returns nil.
// Expired connections met on the way are closed.
func (ss *serverState) get(now time.Time) *upConn {
	for {
		ss.mu.Lock()
		n := len(ss.idle)
		if n == 0 {
			ss.mu.Unlock()
			return nil
		}
		uc := ss.idle[n-1]
		ss.idle[n-1] = nil
		ss.idle = ss.idle[:n-1]
		ss.mu.Unlock()
		// Probed before every reuse, however short the idle time: bytes
		// that arrived after the previous response (a body sent after a
		// HEAD answer or a 204, more than Content-Length, a late
		// response) would otherwise be read as the next client's
		// response.
		if now.Sub(uc.idleSince) > ss.up.idleTimeout || !uc.alive() {
			uc.release()
			continue
		}
		uc.reused = true
		uc.takeBuffers()
		return uc
	}
}

// put returns a connection to the idle stack, or closes it when the stack
// is full or the pool is closed.
func (ss *serverState) put(uc *upConn, now time.Time) {
	ss.mu.Lock()
	if ss.closed || len(ss.idle) >= ss.up.keepalive {
		ss.mu.Unlock()
		uc.release()
		return
	}
	uc.idleSince = now
	// An idle connection holds no buffer (nothing is pending on it: the
	// caller checked); get gives it back a pair.
	uc.releaseBuffers()
	ss.idle = append(ss.idle, uc)
	ss.mu.Unlock()
}

// sweep closes the idle connections that expired (they are at the bottom
// of the stack).
func (ss *serverState) sweep(now time.Time) {
	ss.mu.Lock()
	k := 0
	for k < len(ss.idle) && now.Sub(ss.idle[k].idleSince) > ss.up.idleTimeout {
		k++
	}
	expired := make([]*upConn, k)
	copy(expired, ss.idle[:k])
	ss.idle = append(ss.idle[:0], ss.idle[k:]...)
	clear(ss.idle[len(ss.idle):cap(ss.idle)])
	ss.mu.Unlock()
	for _, uc := range expired {
		uc.release()
	}
}

// closeIdle closes every idle connection and refuses new ones.
func (ss *serverState) closeIdle() {
	ss.mu.Lock()
	idle := ss.idle
	ss.idle = nil
	ss.closed = true
	ss.mu.Unlock()
	for _, uc := range idle {
		uc.release()
	}
}

// alive peeks at the socket without blocking (one recvfrom with
// MSG_PEEK|MSG_DONTWAIT): an idle keep-alive connection must have nothing
// to read. EOF (the server closed it), an error, or stray bytes (a late or
// unsolicited response) make it unusable.
func (uc *upConn) alive() bool {
	if uc.raw == nil {
		return true
	}
	// Control, not Read: the probe never waits, and Read would refuse
	// a connection whose last read deadline (the previous response's)
	// has passed while it was idle.
	if uc.raw.Control(uc.probeFn) != nil {
		return false
	}
	if uc.probeErr == syscall.EAGAIN {
		return true
	}
	return uc.probeErr == 0 && uc.tc != nil && uc.tlsIdle()
}

// tlsProbeWait bounds tlsIdle's read: the bytes it reads are already in
// the socket.
const tlsProbeWait = 50 * time.Millisecond

// tlsIdle reads what a TLS server sent on an idle connection: records of
// the protocol itself (a TLS 1.3 server's session tickets, a key update)
// leave it usable; application data or the end of the connection do not.
func (uc *upConn) tlsIdle() bool {
	var b [1]byte
	uc.c.SetReadDeadline(time.Now().Add(tlsProbeWait))
	n, err := uc.tc.Read(b[:])
	uc.rdl = time.Time{} // the next exchange sets its own
	return n == 0 && isTimeout(err)
}

func (uc *upConn) probeFD(fd uintptr) {
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&uc.probeBuf[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e != syscall.EINTR {
			uc.probeErr = e
			return
		}
	}
}

// release closes the connection and returns its buffers. Only the
// goroutine that owns the connection may call it; others only close c.
func (uc *upConn) release() {
	uc.c.Close()
	uc.releaseBuffers()
}

func (uc *upConn) releaseBuffers() {
	if uc.br != nil {
		uc.bufs.putReader(uc.br)
		uc.bufs.putWriter(uc.bw)
		uc.br, uc.bw = nil, nil
	}
}

func (uc *upConn) takeBuffers() {
	uc.br = uc.bufs.getReader(uc.sio)
	uc.bw = uc.bufs.getWriter(uc.sio)
}

// dial opens a new connection to a server.
func (p *Proxy) dial(ss *serverState) (*upConn, error) {
	c, err := ss.up.dialer.DialContext(p.ctx, "tcp", ss.srv.Addr)
	if err != nil && p.closer.relieve(err) {
		// Out of descriptors while closed client sockets' numbers wait
		// for a batch close (fdclose.go): free them and try once more.
		// The accept loop does the same, but with several worker threads
		// a dial can meet the limit first.
		c, err = ss.up.dialer.DialContext(p.ctx, "tcp", ss.srv.Addr)
	}
	if err != nil {
		return nil, err
	}
	uc := &upConn{c: c, ss: ss, bufs: p.upBufs}
	if sc, ok := c.(syscall.Conn); ok {
		uc.raw, _ = sc.SyscallConn()
	}
	if ss.tls != nil {
		// The handshake within connect_timeout; the probe keeps the TCP
		// socket's RawConn (it looks for any byte, record or not).
		uc.tc = tls.Client(c, ss.tls)
		ctx, cancel := context.WithTimeout(p.ctx, ss.up.connectTimeout)
		err := uc.tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		uc.c = uc.tc
	}
	uc.probeFn = uc.probeFD
	uc.sio = newSockIO(uc.c)
	uc.takeBuffers()
	return uc, nil
}
