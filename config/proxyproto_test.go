package config_test

import (
	"strings"
	"testing"

	"github.com/pingora-go/pingora/config"
)

// trusted_proxies takes prefixes and single addresses, canonical; a bad one
// is an error at its line.
func TestTrustedProxies(t *testing.T) {
	cfg, err := config.Parse([]byte(`listener "lb" {
  address         = "127.0.0.1:1000"
  proxy_protocol  = true
  trusted_proxies = ["10.1.2.3/8", "192.0.2.1", "2001:db8::/32"]
}
route "r" {
  respond {}
}
`), "pp.hcl")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	if !l.ProxyProtocol || strings.Join(l.TrustedProxies, " ") != "10.0.0.0/8 192.0.2.1/32 2001:db8::/32" {
		t.Errorf("proxy_protocol %v, trusted_proxies %v", l.ProxyProtocol, l.TrustedProxies)
	}

	_, err = config.Parse([]byte(`listener "lb" {
  address         = "127.0.0.1:1000"
  proxy_protocol  = true
  trusted_proxies = ["10.0.0.0/33"]
}
route "r" {
  respond {}
}
`), "pp.hcl")
	if d := findDiag(configError(t, err), 4, 21); d == nil || !strings.Contains(d.Detail, `"10.0.0.0/33"`) {
		t.Errorf("want an error at 4:21 naming the prefix; got %v", err)
	}

	// Without proxy_protocol it names the proxies whose X-Forwarded-For
	// is believed: no warning.
	cfg, err = config.Parse([]byte(`listener "lb" {
  address         = "127.0.0.1:1000"
  trusted_proxies = ["10.0.0.0/8"]
}
route "r" {
  respond {}
}
`), "pp.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 || cfg.Listeners[0].ProxyProtocol {
		t.Errorf("warnings %v, proxy_protocol %v", cfg.Warnings, cfg.Listeners[0].ProxyProtocol)
	}
}
