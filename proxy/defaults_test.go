package proxy

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/pingora-go/pingora/config"
)

// TestProxyTakesConfigDefaults: a file that leaves every optional setting
// out gets config's defaults, and the proxy runs on exactly those values:
// it has no defaults of its own that could drift from config's.
func TestProxyTakesConfigDefaults(t *testing.T) {
	cfg, err := config.Parse([]byte(`
access_log { file = "/dev/null" }
listener "l" { address = "127.0.0.1:1" }
upstream "u" {
  server "127.0.0.1:2" {}
  health_check {}
}
route "r" {
  upstream = "u"
  rate_limit { requests = 5 }
}
`), "defaults.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, Options{AccessLog: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	if got := p.listeners["l"].cfg; !reflect.DeepEqual(got, cfg.Listeners[0]) {
		t.Errorf("listener settings the proxy runs on:\n%+v\nconfig's:\n%+v", got, cfg.Listeners[0])
	}
	uc, u := cfg.Upstreams[0], p.upstreams[0]
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"connect_timeout", u.connectTimeout, uc.ConnectTimeout},
		{"response_header_timeout", u.responseHeaderTimeout, uc.ResponseHeaderTimeout},
		{"read_timeout", u.readTimeout, uc.ReadTimeout},
		{"idle_timeout", u.idleTimeout, uc.IdleTimeout},
		{"tunnel_timeout", u.tunnelTimeout, uc.TunnelTimeout},
		{"keepalive_conns", u.keepalive, uc.KeepaliveConns},
		{"retries", u.retries, uc.Retries},
		{"balance", u.pool.Balance(), uc.Balance},
		{"weight", u.pool.Servers()[0].Weight, uc.Servers[0].Weight},
		{"route path_prefix", string(p.routes[0].prefix), cfg.Routes[0].PathPrefix},
		{"access_log buffer_size", p.alog.Load().size, cfg.AccessLog.BufferSize},
		{"access_log flush_interval", p.alog.Load().interval, cfg.AccessLog.FlushInterval},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: the proxy runs on %v, config's value is %v", c.name, c.got, c.want)
		}
	}
}

// TestProxyRefusesUnbuiltConfig: a Config that did not come from the
// loader (fields at their zero values, references unresolved) is refused
// with an error that says so, never served with zero timeouts and never a
// panic.
func TestProxyRefusesUnbuiltConfig(t *testing.T) {
	for _, cfg := range []*config.Config{
		{Listeners: []config.Listener{{Name: "l", Address: "127.0.0.1:1"}}},
		{Routes: []config.Route{{Name: "r", Upstream: "nowhere"}}},
		{Upstreams: []config.Upstream{{Name: "u"}}},
	} {
		_, err := New(cfg, Options{})
		if !errors.Is(err, config.ErrNotValidated) || !strings.Contains(err.Error(), "config not validated") {
			t.Errorf("New(%+v) = %v, want a \"config not validated\" error", cfg, err)
		}
	}
}
