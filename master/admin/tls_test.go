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

// The workers' TLS handshake counts are summed into
// pingora_tls_handshakes_total and pingora_tls_connections_total.
func TestMetricsTLSHandshakes(t *testing.T) {
	var a Aggregator
	base := serve(t, &a)
	w1, w2 := traffic(101, 1, t0, 2), traffic(102, 1, t0, 2)
	w1.TLS[config.TLSHandshakeFull], w1.TLS[config.TLSHandshakeFailedTimeout], w1.TLS[config.TLSVersion13] = 5, 1, 5
	w2.TLS[config.TLSHandshakeFull], w2.TLS[config.TLSHandshakeResumed], w2.TLS[config.TLSVersion12], w2.TLS[config.TLSVersion13] = 2, 3, 1, 4
	mustObserve(t, &a, w1, w2)
	a.SetMaster(fixtureMaster(1, Worker{PID: 101, Generation: 1, State: "ready", Started: t0}, Worker{PID: 102, Generation: 1, State: "ready", Started: t0}))
	checkSeries(t, "tls", series(scrape(t, base)), map[string]float64{
		"pingora_tls_handshakes_total{reason=,result=full}":           7,
		"pingora_tls_handshakes_total{reason=,result=resumed}":        3,
		"pingora_tls_handshakes_total{reason=timeout,result=failed}":  1,
		"pingora_tls_handshakes_total{reason=protocol,result=failed}": 0,
		"pingora_tls_connections_total{version=TLSv1.2}":              1,
		"pingora_tls_connections_total{version=TLSv1.3}":              9,
	})
}
