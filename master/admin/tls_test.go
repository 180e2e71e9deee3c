package admin

import (
	"strings"
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

// /status and the page show TLS: the workers' handshake counts summed, by
// version and ALPN, and each certificate with the days it has left, one
// inside the 14 days of the log's warning marked down.
func TestStatusTLS(t *testing.T) {
	var a Aggregator
	cfg := fixtureConfig()
	now := time.Now()
	cfg.Listeners = append(cfg.Listeners, config.Listener{Name: "https", Address: "127.0.0.1:8443", TLS: &config.TLS{
		MinVersion: "1.2",
		Certificates: []config.Certificate{
			{Names: []string{"a.example"}, NotAfter: now.Add(60 * 24 * time.Hour)},
			{Names: []string{"b.example", "*.b.example"}, NotAfter: now.Add(5 * 24 * time.Hour)},
		},
	}})
	w1, w2 := traffic(101, 1, t0, 2), traffic(102, 1, t0, 2)
	w1.TLS[config.TLSHandshakeFull], w1.TLS[config.TLSHandshakeFailedProtocol], w1.TLS[config.TLSALPNHTTP2] = 5, 2, 4
	w2.TLS[config.TLSHandshakeResumed], w2.TLS[config.TLSVersion13], w2.TLS[config.TLSALPNHTTP1] = 3, 8, 4
	mustObserve(t, &a, w1, w2)
	m := fixtureMaster(1, Worker{PID: 101, Generation: 1, State: "ready", Started: t0}, Worker{PID: 102, Generation: 1, State: "ready", Started: t0})
	m.Config = cfg
	a.SetMaster(m)

	st := a.Status(now)
	ts := st.TLS
	if ts == nil {
		t.Fatal("no tls in /status with a TLS listener")
	}
	if h := ts.Handshakes; h.Full != 5 || h.Resumed != 3 || h.FailedProtocol != 2 || ts.Versions.TLS13 != 8 || ts.ALPN.H2 != 4 || ts.ALPN.HTTP1 != 4 {
		t.Errorf("tls counts %+v, versions %+v, alpn %+v: not the workers' sums", h, ts.Versions, ts.ALPN)
	}
	if len(ts.Certificates) != 2 || ts.Certificates[1].Listener != "https" || ts.Certificates[1].DaysLeft < 4.9 || ts.Certificates[1].DaysLeft > 5.1 {
		t.Fatalf("certificates %+v, want both, the second with 5 days left", ts.Certificates)
	}
	var page strings.Builder
	if err := renderPage(&page, st, false); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, want := range []string{`id="tls-alpn">4 / 4<`, `id="tls-failed">0 / 0 / 2<`, "a.example</td>",
		`<tr class="down"><td>https: b.example, *.b.example</td>`} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(html, `<tr class="down"><td>https: a.example<`) {
		t.Error("a certificate with 60 days left is marked down")
	}

	// No TLS listener and no handshake counted: no tls section.
	var b Aggregator
	b.SetMaster(fixtureMaster(1))
	if st := b.Status(now); st.TLS != nil {
		t.Errorf("tls %+v without a TLS listener", st.TLS)
	}
}

// The workers' HTTP/2 counts are summed into pingora_http2_*: connections,
// streams, client resets, and resets and GOAWAYs sent, by error code.
func TestMetricsHTTP2(t *testing.T) {
	var a Aggregator
	base := serve(t, &a)
	w1, w2 := traffic(101, 1, t0, 2), traffic(102, 1, t0, 2)
	w1.H2[config.H2Connections], w1.H2[config.H2Streams], w1.H2[config.H2ClientResets] = 2, 30, 4
	w2.H2[config.H2Connections], w2.H2[config.H2Streams] = 1, 12
	w1.H2[config.H2ResetSent+0x7], w2.H2[config.H2ResetSent+0x7], w2.H2[config.H2ResetSent+0x1] = 3, 2, 1
	w1.H2[config.H2GoAwaySent+0x0], w2.H2[config.H2GoAwaySent+0xb] = 2, 1
	mustObserve(t, &a, w1, w2)
	a.SetMaster(fixtureMaster(1, Worker{PID: 101, Generation: 1, State: "ready", Started: t0}, Worker{PID: 102, Generation: 1, State: "ready", Started: t0}))
	checkSeries(t, "http2", series(scrape(t, base)), map[string]float64{
		"pingora_http2_connections_total{}":                        3,
		"pingora_http2_streams_total{}":                            42,
		"pingora_http2_client_resets_total{}":                      4,
		"pingora_http2_resets_sent_total{code=REFUSED_STREAM}":     5,
		"pingora_http2_resets_sent_total{code=PROTOCOL_ERROR}":     1,
		"pingora_http2_resets_sent_total{code=INTERNAL_ERROR}":     0,
		"pingora_http2_goaways_sent_total{code=NO_ERROR}":          2,
		"pingora_http2_goaways_sent_total{code=ENHANCE_YOUR_CALM}": 1,
	})
}
