package admin

import (
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

// /metrics gives each TLS certificate of the serving config its end, as a
// Unix time, by listener and first name.
func TestMetricsCertificateExpiry(t *testing.T) {
	var a Aggregator
	base := serve(t, &a)
	cfg := fixtureConfig()
	end := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	cfg.Listeners = append(cfg.Listeners, config.Listener{Name: "https", Address: "127.0.0.1:8443", TLS: &config.TLS{
		MinVersion:   "1.2",
		Certificates: []config.Certificate{{Names: []string{"a.example", "*.a.example"}, NotAfter: end}},
	}})
	m := fixtureMaster(1)
	m.Config = cfg
	a.SetMaster(m)
	got := series(scrape(t, base))
	key := "pingora_tls_certificate_expiry_seconds{listener=https,name=a.example}"
	if got[key] != float64(end.Unix()) {
		t.Errorf("%s = %v, want %d", key, got[key], end.Unix())
	}
}
