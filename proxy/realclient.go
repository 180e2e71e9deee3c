package proxy

import (
	"bytes"
	"net/netip"
)

// The real client behind trusted proxies (nginx's realip module with
// real_ip_header X-Forwarded-For and real_ip_recursive on): on a listener
// with trusted_proxies and no PROXY protocol, a request whose peer is one
// of them names its client in X-Forwarded-For. Each proxy appends the
// address it got the request from, so the chain is read from the right,
// skipping trusted proxies; the first address that is not one is the
// client (addresses further left were written by the client itself and
// prove nothing). Rate limits, client-IP hashing and the access log use
// it; the X-Forwarded-For sent upstream still gets the peer appended.

// realClient returns the request's client address from X-Forwarded-For,
// or nil to keep the peer's (the peer is not trusted, or the header has
// no usable address).
func (cc *clientConn) realClient(req *request) []byte {
	fc, ok := cc.c.(*fileConn)
	if !ok || !cc.ls.trustsPeer(fc.remote.Addr()) {
		return nil
	}
	var found netip.Addr
	for i := len(req.headers) - 1; i >= 0; i-- {
		h := &req.headers[i]
		if h.kind != hdrXForwardedFor {
			continue
		}
		for v := h.value; len(v) > 0; {
			j := bytes.LastIndexByte(v, ',')
			item := bytes.TrimSpace(v[j+1:])
			v = v[:max(j, 0)]
			ip, err := netip.ParseAddr(string(item))
			if err != nil {
				return cc.realAddr(found) // what comes before garbage proves nothing
			}
			found = ip.Unmap()
			if !cc.ls.trustsPeer(found) {
				return cc.realAddr(found)
			}
		}
	}
	return cc.realAddr(found) // every address a trusted proxy: the leftmost
}

func (cc *clientConn) realAddr(a netip.Addr) []byte {
	if !a.IsValid() {
		return nil
	}
	cc.realBuf = a.AppendTo(cc.realBuf[:0])
	return cc.realBuf
}
