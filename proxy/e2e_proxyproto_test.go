package proxy_test

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// ppProxy is a proxy whose listener "lb" takes the PROXY protocol, with
// the given extra listener settings, routing to be.
func ppProxy(t *testing.T, be *backend, extra string) *proxy.Running {
	t.Helper()
	return startProxy(t, expand(`
listener "lb" {
  address = "127.0.0.1:1"
  client_header_timeout = "2s"
  proxy_protocol = true
  @EXTRA@
}
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr, "EXTRA": extra}), proxy.Options{})
}

// forwardedFor sends header, then a request, on a new connection and
// returns the X-Forwarded-For the backend saw.
func forwardedFor(t *testing.T, addr string, header []byte, split bool) string {
	t.Helper()
	rc := proxy.DialRaw(t, addr)
	if split { // a byte at a time: the proxy must wait for the rest
		for _, b := range header {
			rc.Send(string([]byte{b}))
			time.Sleep(time.Millisecond)
		}
	} else {
		rc.Send(string(header))
	}
	resp, body := rc.Do("GET /pp HTTP/1.1\r\nHost: a.example\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var seen struct {
		Header http.Header `json:"header"`
	}
	if err := json.Unmarshal([]byte(body), &seen); err != nil {
		t.Fatal(err)
	}
	return seen.Header.Get("X-Forwarded-For")
}

// proxyV2 is a v2 PROXY header for src (TCP), or a LOCAL one when src is
// not valid.
func proxyV2(src netip.AddrPort) []byte {
	h := []byte("\r\n\r\n\x00\r\nQUIT\n")
	if !src.IsValid() {
		return append(h, 0x20, 0x00, 0, 0)
	}
	var addrs []byte
	fam := byte(0x11)
	if src.Addr().Is4() {
		a := src.Addr().As4()
		addrs = append(append(addrs, a[:]...), 127, 0, 0, 1)
		addrs = binary.BigEndian.AppendUint16(addrs, src.Port())
		addrs = binary.BigEndian.AppendUint16(addrs, 80)
	} else {
		fam = 0x21
		a := src.Addr().As16()
		dst := netip.IPv6Loopback().As16()
		addrs = append(append(addrs, a[:]...), dst[:]...)
		addrs = binary.BigEndian.AppendUint16(addrs, src.Port())
		addrs = binary.BigEndian.AppendUint16(addrs, 80)
	}
	addrs = append(addrs, 0x04, 0, 2, 'x', 'y') // a TLV, skipped
	h = append(h, 0x21, fam)
	h = binary.BigEndian.AppendUint16(h, uint16(len(addrs)))
	return append(h, addrs...)
}

// The client address of a PROXY header (v1 or v2, IPv4 or IPv6, however
// it is split into segments) is the one the upstream sees; a LOCAL or
// UNKNOWN header leaves the peer's.
func TestE2EProxyProtocolClientAddress(t *testing.T) {
	be := startBackend(t, "be")
	addr := ppProxy(t, be, "").Addr("lb")
	for _, c := range []struct {
		name   string
		header []byte
		split  bool
		want   string
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\n"), false, "203.0.113.7"},
		{"v1 TCP6 split", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n"), true, "2001:db8::7"},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), false, "127.0.0.1"},
		{"v2 IPv4", proxyV2(netip.MustParseAddrPort("198.51.100.9:40000")), false, "198.51.100.9"},
		{"v2 IPv6 split", proxyV2(netip.MustParseAddrPort("[2001:db8::9]:40000")), true, "2001:db8::9"},
		{"v2 LOCAL", proxyV2(netip.AddrPort{}), false, "127.0.0.1"},
	} {
		if got := forwardedFor(t, addr, c.header, c.split); got != c.want {
			t.Errorf("%s: X-Forwarded-For %q, want %q", c.name, got, c.want)
		}
	}
}

// Without a valid header, or from a peer outside trusted_proxies, the
// connection is closed unanswered.
func TestE2EProxyProtocolRefused(t *testing.T) {
	be := startBackend(t, "be")
	addr := ppProxy(t, be, "").Addr("lb")
	for name, first := range map[string]string{
		"no header":          "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"bad v1 address":     "PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n",
		"v1 family mismatch": "PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
	} {
		rc := proxy.DialRaw(t, addr)
		rc.Send(first)
		if closed, extra := rc.ClosedWithin(3 * time.Second); !closed || extra != "" {
			t.Errorf("%s: closed %v, answered %q; want closed unanswered", name, closed, extra)
		}
	}
	untrusted := ppProxy(t, be, `trusted_proxies = ["10.0.0.0/8"]`).Addr("lb")
	rc := proxy.DialRaw(t, untrusted)
	rc.Send("PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\n")
	if closed, extra := rc.ClosedWithin(3 * time.Second); !closed || extra != "" {
		t.Errorf("untrusted peer: closed %v, answered %q; want closed unanswered", closed, extra)
	}
	if got := forwardedFor(t, ppProxy(t, be, `trusted_proxies = ["127.0.0.0/8"]`).Addr("lb"),
		[]byte("PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\n"), false); got != "203.0.113.7" {
		t.Errorf("trusted peer: X-Forwarded-For %q", got)
	}
}

// On a TLS listener the PROXY header comes first, then the handshake.
func TestE2EProxyProtocolThenTLS(t *testing.T) {
	be := startBackend(t, "be")
	addr := ppProxy(t, be, `tls {
    certificate {
      cert_file = "`+testCerts(t)+`/a.pem"
      key_file  = "`+testCerts(t)+`/a.key"
    }
  }`).Addr("lb")
	raw := proxy.DialRaw(t, addr)
	raw.Send("PROXY TCP4 192.0.2.44 10.0.0.1 51000 443\r\n")
	c := tls.Client(raw.Conn, &tls.Config{ServerName: "a.example", InsecureSkipVerify: true})
	rc := &proxy.RawConn{T: t, Conn: c, BR: bufio.NewReader(c)}
	resp, body := rc.Do("GET /pp HTTP/1.1\r\nHost: a.example\r\n\r\n")
	var seen struct {
		Header http.Header `json:"header"`
	}
	if err := json.Unmarshal([]byte(body), &seen); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, %v: %s", resp.StatusCode, err, body)
	}
	if got := seen.Header.Get("X-Forwarded-For"); got != "192.0.2.44" || seen.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("X-Forwarded-For %q, X-Forwarded-Proto %q", got, seen.Header.Get("X-Forwarded-Proto"))
	}
}

// The PROXY header's client stays the connection's after it has parked
// idle and comes back for its next request.
func TestE2EProxyProtocolClientKeptWhileParked(t *testing.T) {
	be := startBackend(t, "be")
	rp := ppProxy(t, be, "")
	rc := proxy.DialRaw(t, rp.Addr("lb"))
	rc.Send("PROXY TCP4 203.0.113.8 10.0.0.1 51000 80\r\n")
	xff := func() string {
		t.Helper()
		_, body := rc.Do("GET /pp HTTP/1.1\r\nHost: a.example\r\n\r\n")
		var seen struct {
			Header http.Header `json:"header"`
		}
		if err := json.Unmarshal([]byte(body), &seen); err != nil {
			t.Fatal(err)
		}
		return seen.Header.Get("X-Forwarded-For")
	}
	if got := xff(); got != "203.0.113.8" {
		t.Fatalf("first request: X-Forwarded-For %q", got)
	}
	proxy.WaitFor(t, 5*time.Second, "the connection parked", func() bool { return rp.P.Stats().ParkedConns == 1 })
	if got := xff(); got != "203.0.113.8" {
		t.Errorf("after parking: X-Forwarded-For %q, want the PROXY header's client", got)
	}
}

// A connection that sends its PROXY header and then waits (parked) before
// its first request is served, its header not read twice.
func TestE2EProxyProtocolParkedBeforeFirstRequest(t *testing.T) {
	be := startBackend(t, "be")
	rp := ppProxy(t, be, "")
	rc := proxy.DialRaw(t, rp.Addr("lb"))
	rc.Send("PROXY TCP4 203.0.113.9 10.0.0.1 51000 80\r\n")
	proxy.WaitFor(t, 5*time.Second, "the connection parked", func() bool { return rp.P.Stats().ParkedConns == 1 })
	resp, body := rc.Do("GET /pp HTTP/1.1\r\nHost: a.example\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}
