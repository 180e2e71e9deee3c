package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in
// front writes the client's address before anything else on the
// connection. On a listener with proxy_protocol, the header is read
// exactly (the bytes after it are the client's TLS handshake or request,
// and must stay in the socket for them), under client_header_timeout, and
// its source address becomes the connection's client address.

// proxyHeaderMax is the most this reads of a header: a v1 line is at most
// 107 bytes; v2 addresses take 16 + 216 bytes with TLVs to spare.
const proxyHeaderMax = 536

var (
	proxyV1Sig = []byte("PROXY ")
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

	errProxyHeader = errors.New("malformed PROXY protocol header")
)

// proxyHeader is the state of reading one header through RawConn.Read.
type proxyHeader struct {
	buf  [proxyHeaderMax]byte
	n    int // header length once known; 0: not yet
	err  error
	from netip.AddrPort // zero: LOCAL or UNKNOWN (the peer's own address stands)
}

// peek looks at what has arrived without taking it; it returns false to
// wait for more (only when the header is incomplete, so more must come).
func (h *proxyHeader) peek(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&h.buf[0])), uintptr(len(h.buf)),
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			h.err = e
			return true
		}
		if n == 0 {
			h.err = errProxyHeader // closed before a whole header
			return true
		}
		return h.parse(h.buf[:n])
	}
}

// parse decides from the first bytes whether the header is complete; it
// sets n (and from) or err when it is.
func (h *proxyHeader) parse(b []byte) bool {
	switch {
	case len(b) >= len(proxyV2Sig) && bytes.Equal(b[:len(proxyV2Sig)], proxyV2Sig):
		return h.parseV2(b)
	case len(b) >= len(proxyV1Sig) && bytes.Equal(b[:len(proxyV1Sig)], proxyV1Sig):
		return h.parseV1(b)
	case len(b) < len(proxyV2Sig) && (bytes.HasPrefix(proxyV2Sig, b) || bytes.HasPrefix(proxyV1Sig, b[:min(len(b), len(proxyV1Sig))])):
		return false // a signature's start: wait for the rest
	}
	h.err = errProxyHeader
	return true
}

// parseV1: "PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT\r\n" or "PROXY UNKNOWN ...\r\n".
func (h *proxyHeader) parseV1(b []byte) bool {
	end := bytes.Index(b[:min(len(b), 107)], []byte("\r\n"))
	if end < 0 {
		if len(b) >= 107 {
			h.err = errProxyHeader
			return true
		}
		return false
	}
	h.n = end + 2
	f := bytes.Split(b[len(proxyV1Sig):end], []byte(" "))
	switch {
	case len(f) >= 1 && string(f[0]) == "UNKNOWN":
		return true
	case len(f) == 5 && (string(f[0]) == "TCP4" || string(f[0]) == "TCP6"):
		ip, err := netip.ParseAddr(string(f[1]))
		port, perr := strconv.ParseUint(string(f[3]), 10, 16)
		if err != nil || perr != nil || ip.Is4() != (string(f[0]) == "TCP4") {
			h.err = errProxyHeader
			return true
		}
		h.from = netip.AddrPortFrom(ip, uint16(port))
		return true
	}
	h.err = errProxyHeader
	return true
}

// parseV2: the binary form: signature, version and command, family,
// length, then the addresses (and TLVs, skipped).
func (h *proxyHeader) parseV2(b []byte) bool {
	if len(b) < 16 {
		return false
	}
	verCmd, fam := b[12], b[13]
	size := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if verCmd>>4 != 2 || size > proxyHeaderMax {
		h.err = errProxyHeader
		return true
	}
	if len(b) < size {
		return false
	}
	h.n = size
	if verCmd&0xf == 0 { // LOCAL: the balancer's own connection (health checks)
		return true
	}
	if verCmd&0xf != 1 {
		h.err = errProxyHeader
		return true
	}
	addr := b[16:size]
	switch fam {
	case 0x11: // TCP over IPv4
		if len(addr) < 12 {
			h.err = errProxyHeader
			return true
		}
		h.from = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[0:4])), binary.BigEndian.Uint16(addr[8:10]))
	case 0x21: // TCP over IPv6
		if len(addr) < 36 {
			h.err = errProxyHeader
			return true
		}
		h.from = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addr[0:16])).Unmap(), binary.BigEndian.Uint16(addr[32:34]))
	}
	return true // other families (UNIX, UDP, unspecified): the peer stands
}

// readProxyHeader reads the connection's PROXY header and makes its source
// the client address; false: there was none, or a bad one, or the peer may
// not send one (trusted_proxies), and the connection must end.
func (cc *clientConn) readProxyHeader() bool {
	fc, ok := cc.c.(*fileConn)
	if !ok || cc.io.raw == nil {
		return false
	}
	if !cc.ls.trustsPeer(fc.remote.Addr()) {
		cc.p.log.Debug("PROXY protocol header refused: the peer is not in trusted_proxies", "listener", cc.ls.cfg.Name, "peer", fc.remote)
		return false
	}
	to := cc.ls.cfg.ClientHeaderTimeout
	setDeadlines(cc.c, &cc.rdl, &cc.wdl, time.Now().Add(to), to)
	h := &proxyHeader{}
	if err := cc.io.raw.Read(h.peek); err != nil || h.err != nil || h.n == 0 {
		cc.p.log.Debug("connection without a valid PROXY protocol header closed", "listener", cc.ls.cfg.Name, "peer", fc.remote)
		return false
	}
	// Take exactly the header: what follows is the client's.
	if _, err := io.ReadFull(cc.io, h.buf[:h.n]); err != nil {
		return false
	}
	if h.from.IsValid() {
		// The connection's client from now on, for as long as it lives:
		// a parked connection takes its address back from fc.
		fc.remote = h.from
		cc.remote = h.from.AppendTo(cc.remote[:0])
		cc.ip = h.from.Addr().AppendTo(cc.ip[:0])
	}
	return true
}

// trustsPeer reports whether ip may send a PROXY header here.
func (ls *listenerState) trustsPeer(ip netip.Addr) bool {
	if len(ls.trusted) == 0 {
		return true
	}
	ip = ip.Unmap()
	for _, p := range ls.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
