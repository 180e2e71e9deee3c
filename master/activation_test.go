package master

import (
	"net/netip"
	"testing"
)

// TestActivatedSocketServes: a socket from systemd goes to the config
// listener with its address: same port and IP, or, for a listener on every
// interface (":80"), a socket bound to every interface (IPv4 or IPv6).
func TestActivatedSocketServes(t *testing.T) {
	cases := []struct {
		socket, listener string
		want             bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"127.0.0.1:8080", "127.0.0.1:8081", false},
		{"127.0.0.1:8080", "127.0.0.2:8080", false},
		{"[::]:80", ":80", true},
		{"0.0.0.0:80", ":80", true},
		{"127.0.0.1:80", ":80", false},
		{"[::]:80", "0.0.0.0:80", false},
		{"[::1]:443", "[::1]:443", true},
		{"[::ffff:10.0.0.1]:80", "10.0.0.1:80", true},
	}
	for _, c := range cases {
		a := &activatedSocket{name: "test", addr: netip.MustParseAddrPort(c.socket)}
		if got := a.serves(c.listener); got != c.want {
			t.Errorf("socket %s for listener %s: %v, want %v", c.socket, c.listener, got, c.want)
		}
	}
}
