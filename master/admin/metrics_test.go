package admin

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches /metrics and parses it back with the Prometheus text
// parser, keyed by family name.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, body := get(t, base+"/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s\n%s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// series flattens families into "name{l=v,...}" -> value; a histogram
// contributes _count, _sum and each _bucket{le=...}.
func series(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := make(map[string]float64)
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := func(suffix string, extra ...string) string {
				return name + suffix + "{" + strings.Join(append(append([]string{}, labels...), extra...), ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key("")] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[key("_count")] = float64(h.GetSampleCount())
				out[key("_sum")] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					out[key("_bucket", fmt.Sprintf("le=%g", b.GetUpperBound()))] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

// TestMetricsMatchSamplesAcrossReload scrapes /metrics while two
// generations serve and again after the first retired, and checks every
// figure against the samples; no pingora counter may go backwards.
func TestMetricsMatchSamplesAcrossReload(t *testing.T) {
	var a Aggregator
	base := serve(t, &a)
	g2 := t0.Add(time.Hour)

	w101 := traffic(101, 1, t0, 10)
	w101.ActiveConns, w101.ParkedConns, w101.InFlight = 3, 2, 1
	w101.Upstreams[0].Servers[0].InFlight = 1
	w201 := traffic(201, 2, g2, 20)
	w201.ActiveConns, w201.ParkedConns, w201.InFlight = 5, 1, 2
	w201.Upstreams[0].Servers[1].Healthy = false // this worker marked it down
	mustObserve(t, &a, w101, w201)
	a.SetMaster(fixtureMaster(2,
		Worker{PID: 101, Generation: 1, State: "draining", Started: t0},
		Worker{PID: 201, Generation: 2, State: "ready", Started: g2},
	))
	a.CountReload(true)
	a.CountReload(false)
	a.CountUpgrade(false)
	a.CountWorkerRestart()

	before := series(scrape(t, base))
	want := map[string]float64{
		"pingora_requests_total{class=2xx,route=api}":                               8 + 18,
		"pingora_requests_total{class=5xx,route=api}":                               2,
		"pingora_requests_total{class=1xx,route=static}":                            0,
		"pingora_requests_total{class=4xx,route=(none)}":                            2,
		"pingora_bytes_received_total{}":                                            3000,
		"pingora_bytes_sent_total{}":                                                30000,
		"pingora_rate_limited_total{}":                                              1 + 2,
		"pingora_upstream_errors_total{}":                                           0 + 1,
		"pingora_active_connections{}":                                              8,
		"pingora_parked_connections{}":                                              3,
		"pingora_in_flight_requests{}":                                              3,
		"pingora_upstream_server_healthy{server=127.0.0.1:9001,upstream=backend}":   1,
		"pingora_upstream_server_healthy{server=127.0.0.1:9002,upstream=backend}":   0.5,
		"pingora_upstream_server_in_flight{server=127.0.0.1:9001,upstream=backend}": 1,
		"pingora_upstream_requests_total{server=127.0.0.1:9001,upstream=backend}":   9 + 19,
		"pingora_upstream_failures_total{server=127.0.0.1:9001,upstream=backend}":   0 + 1,
		"pingora_request_duration_seconds_count{}":                                  30,
		"pingora_request_duration_seconds_sum{}":                                    30 * 0.020,
		"pingora_request_duration_seconds_bucket{le=0.01}":                          0,
		"pingora_request_duration_seconds_bucket{le=0.025}":                         30,
		"pingora_request_duration_seconds_bucket{le=+Inf}":                          30,
		"pingora_upstream_duration_seconds_count{}":                                 28,
		"pingora_upstream_duration_seconds_bucket{le=0.005}":                        0,
		"pingora_upstream_duration_seconds_bucket{le=0.01}":                         28,
		"pingora_reloads_total{outcome=ok}":                                         1,
		"pingora_reloads_total{outcome=failed}":                                     1,
		"pingora_upgrades_total{outcome=ok}":                                        0,
		"pingora_upgrades_total{outcome=failed}":                                    1,
		"pingora_worker_restarts_total{}":                                           1,
		"pingora_generation{}":                                                      2,
		"pingora_workers{state=draining}":                                           1,
		"pingora_workers{state=ready}":                                              1,
		"pingora_workers_reporting{}":                                               2,
	}
	checkSeries(t, "two generations", before, want)
	if _, ok := before["process_start_time_seconds{}"]; !ok {
		t.Error("the master's own process_* metrics are missing")
	}

	// Generation 1 drains: its final sample, then it exits; generation 2
	// serves more.
	w101 = traffic(101, 1, t0, 12)
	mustObserve(t, &a, w101)
	a.Retire(101)
	w201 = traffic(201, 2, g2, 25)
	w201.ActiveConns = 2
	mustObserve(t, &a, w201)
	a.SetMaster(fixtureMaster(2, Worker{PID: 201, Generation: 2, State: "ready", Started: g2}))

	after := series(scrape(t, base))
	checkSeries(t, "after the retire", after, map[string]float64{
		"pingora_requests_total{class=2xx,route=api}":                             10 + 23,
		"pingora_requests_total{class=4xx,route=(none)}":                          2,
		"pingora_bytes_received_total{}":                                          3700,
		"pingora_request_duration_seconds_count{}":                                37,
		"pingora_upstream_requests_total{server=127.0.0.1:9001,upstream=backend}": 11 + 24,
		"pingora_active_connections{}":                                            2,
		"pingora_in_flight_requests{}":                                            0,
		"pingora_upstream_server_healthy{server=127.0.0.1:9002,upstream=backend}": 1,
		"pingora_workers{state=ready}":                                            1,
		"pingora_workers_reporting{}":                                             1,
	})
	if _, ok := after["pingora_workers{state=draining}"]; ok {
		t.Error("a draining worker is still listed after it retired")
	}
	// Monotonic: every pingora counter and histogram series of the first
	// scrape is present in the second with a value at least as large.
	fams := scrape(t, base)
	for key, v := range before {
		name := key[:strings.IndexByte(key, '{')]
		fam := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_count"), "_sum"), "_bucket")
		f, ok := fams[fam]
		if !strings.HasPrefix(name, "pingora_") || !ok || (f.GetType() != dto.MetricType_COUNTER && f.GetType() != dto.MetricType_HISTOGRAM) {
			continue
		}
		if got, ok := after[key]; !ok || got < v {
			t.Errorf("%s went from %g to %g (present: %v)", key, v, got, ok)
		}
	}
}

func checkSeries(t *testing.T, when string, got, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: %s missing", when, k)
			continue
		}
		if math.Abs(g-w) > 1e-9 {
			t.Errorf("%s: %s = %g, want %g", when, k, g, w)
		}
	}
}

// TestMetricsSurviveBadLabels: route names come from workers; one that
// Prometheus rejects (invalid UTF-8) costs that series, never the scrape or
// the master. A nameless route counts as unrouted, not as a second
// route="(none)" series.
func TestMetricsSurviveBadLabels(t *testing.T) {
	var a Aggregator
	base := serve(t, &a)
	s := traffic(9, 1, t0, 5)
	s.Routes = append(s.Routes,
		RouteSample{Name: "bad\xff", Responses: [5]uint64{0, 1, 0, 0, 0}},
		RouteSample{Name: "", Responses: [5]uint64{0, 0, 0, 2, 0}},
	)
	// The master accepts only names of the worker's config; this one is
	// made to define them, to see that the scrape survives them anyway.
	cfg := fixtureConfig()
	cfg.Routes = append(cfg.Routes, config.Route{Name: "bad\xff"}, config.Route{Name: ""})
	if err := a.Observe(s, NamesOf(cfg)); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, base+"/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s\n%s", resp.Status, body)
	}
	got := series(scrape(t, base))
	checkSeries(t, "bad labels", got, map[string]float64{
		"pingora_requests_total{class=2xx,route=api}":    3,
		"pingora_requests_total{class=4xx,route=(none)}": 1 + 2,
		"pingora_bytes_received_total{}":                 500,
	})
}

func TestFormatting(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{fmtDur(45), "45s"}, {fmtDur(3*3600 + 5), "3h0m5s"}, {fmtDur(12*86400 + 3*3600 + 4*60 + 9), "12d3h4m"},
		{fmtBytes(512), "512 B"}, {fmtBytes(1536), "1.5 KiB"}, {fmtBytes(5 << 30), "5.0 GiB"},
		{fmtSecs(0.0123), "12.3 ms"}, {fmtSecs(2.5), "2.50 s"},
		{fmtP99(LatencySummary{}), "-"}, {fmtP99(LatencySummary{Count: 1, P99Seconds: 0.25}), "≤ 250.0 ms"},
		{fmtP99(LatencySummary{Count: 1}), "> 10s"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
