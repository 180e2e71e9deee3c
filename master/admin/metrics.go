package admin

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora/config"
)

// unroutedRoute is the route label of responses given without a route (a
// malformed request, no route matching). Prometheus treats an empty label
// value as an absent label, hence a visible name.
const unroutedRoute = "(none)"

// classes are the status-class label values, by RouteSample.Responses slot.
var classes = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// descs are the metrics' descriptions: fixed, so Describe can list them and
// the registry checks every Collect against them.
type descs struct {
	requests, requestDuration, upstreamDuration             *prometheus.Desc
	bytesReceived, bytesSent, activeConns, inFlight         *prometheus.Desc
	parkedConns                                             *prometheus.Desc
	serverHealthy, serverInFlight, serverRequests           *prometheus.Desc
	serverFailures, rateLimited, upstreamErrors             *prometheus.Desc
	serverChecks, serverDisabled                            *prometheus.Desc
	workerRestarts, reloads, upgrades, generation, workers  *prometheus.Desc
	workersReporting, certExpiry                            *prometheus.Desc
	tlsHandshakes, tlsVersions, tlsALPN                     *prometheus.Desc
	h2Conns, h2Streams, h2ClientResets, h2Resets, h2GoAways *prometheus.Desc
	zoneSlots, zoneUsed, zoneEvictions                      *prometheus.Desc
	storeUp, storeErrors                                    *prometheus.Desc
	healthSlots, healthUsed, healthOverflows                *prometheus.Desc
}

func newDescs() *descs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("pingora_"+name, help, labels, nil)
	}
	return &descs{
		requests:         d("requests_total", "Requests answered, by route and status class, summed over every worker since the master started (retired workers included).", "route", "class"),
		requestDuration:  d("request_duration_seconds", "Time from a request's first byte to its response's last byte."),
		upstreamDuration: d("upstream_duration_seconds", "Time from sending a request upstream to receiving the response head, per attempt."),
		bytesReceived:    d("bytes_received_total", "Request bytes read from clients (heads and bodies)."),
		bytesSent:        d("bytes_sent_total", "Response bytes written to clients."),
		activeConns:      d("active_connections", "Open client connections in live workers."),
		inFlight:         d("in_flight_requests", "Requests being served by live workers."),
		parkedConns:      d("parked_connections", "Idle client connections in live workers parked without a goroutine or buffers (counted in active_connections too)."),
		serverHealthy:    d("upstream_server_healthy", "Whether the server takes requests, as the workers' shared health says (1: up, 0: down); for workers without shared health, the fraction of them that see it healthy.", "upstream", "server"),
		serverChecks:     d("upstream_health_checks_total", "Active health checks of the server, made by all workers together (kept across reloads and upgrades).", "upstream", "server"),
		serverDisabled:   d("upstream_server_disabled_total", "Times passive marking (max_fails) took the server out, counted across all workers.", "upstream", "server"),
		serverInFlight:   d("upstream_server_in_flight", "Requests in flight to the server from live workers.", "upstream", "server"),
		serverRequests:   d("upstream_requests_total", "Attempts sent to the upstream server (retries included).", "upstream", "server"),
		serverFailures:   d("upstream_failures_total", "Failed attempts to the upstream server (connect, reset, timeout, bad response).", "upstream", "server"),
		rateLimited:      d("rate_limited_total", "Requests refused with 429 by a rate limit."),
		upstreamErrors:   d("upstream_errors_total", "Failed upstream attempts, all upstreams."),
		workerRestarts:   d("worker_restarts_total", "Workers replaced after dying unexpectedly."),
		reloads:          d("reloads_total", "Config reloads by outcome (ok: the new generation serves; failed: bad config or not ready).", "outcome"),
		upgrades:         d("upgrades_total", "Binary upgrades by outcome, as counted by this master.", "outcome"),
		generation:       d("generation", "The serving generation's number."),
		workers:          d("workers", "Worker processes by state.", "state"),
		workersReporting: d("workers_reporting", "Live workers whose samples the figures include."),
		certExpiry:       d("tls_certificate_expiry_seconds", "When each TLS certificate of the serving config expires (Unix time), by listener and its first name.", "listener", "name"),
		tlsHandshakes:    d("tls_handshakes_total", "TLS handshakes on client connections: full, resumed, or failed by reason (timeout, closed, protocol).", "result", "reason"),
		tlsVersions:      d("tls_connections_total", "Completed TLS handshakes by protocol version.", "version"),
		tlsALPN:          d("tls_alpn_total", "Completed TLS handshakes by the application protocol chosen by ALPN (none counts as http/1.1).", "protocol"),
		h2Conns:          d("http2_connections_total", "Client connections that began HTTP/2."),
		h2Streams:        d("http2_streams_total", "HTTP/2 streams (requests) opened by clients."),
		h2ClientResets:   d("http2_client_resets_total", "HTTP/2 streams the client reset (RST_STREAM) before their response ended."),
		h2Resets:         d("http2_resets_sent_total", "RST_STREAM frames sent to HTTP/2 clients, by error code (REFUSED_STREAM: over max_concurrent_streams; PROTOCOL_ERROR: a malformed request).", "code"),
		h2GoAways:        d("http2_goaways_sent_total", "GOAWAY frames sent to HTTP/2 clients, by error code (NO_ERROR: a drain or keepalive_timeout; ENHANCE_YOUR_CALM: rapid resets, or control frames whose answers the client does not read).", "code"),
		zoneSlots:        d("rate_limit_zone_slots", "Keys the shared rate-limit zone can hold (rate_limit_zone_size / 16 bytes, less a header)."),
		zoneUsed:         d("rate_limit_zone_used_slots", "Slots of the shared rate-limit zone holding a bucket that is not full (estimated from a sample of slots in a large zone)."),
		zoneEvictions:    d("rate_limit_evictions_total", "Keys the shared rate-limit zone forgot while their bucket was not full, to make room for another key, since the zone was created (kept across reloads and upgrades)."),
		healthSlots:      d("health_zone_slots", "Upstream servers the shared health zone can hold."),
		healthUsed:       d("health_zone_used_slots", "Slots of the shared health zone taken by servers of this config and earlier ones (a slot untouched for 10 minutes can be reused)."),
		healthOverflows:  d("health_zone_overflows_total", "Servers that found no free slot in the shared health zone, so that each worker keeps their health to itself, since the zone was created."),
		storeUp:          d("rate_limit_store_up", "Fraction of live workers connected to the rate limit store (1: all, 0: none; the others enforce shared limits on their own).", "store"),
		storeErrors:      d("rate_limit_store_errors_total", "Failures talking to the rate limit store: failed connects, lost connections, timeouts, error replies.", "store"),
	}
}

// collector turns an aggregator snapshot into const metrics on each scrape:
// nothing is kept between scrapes, so the figures are exactly the
// aggregator's.
type collector struct {
	agg *Aggregator
	d   *descs
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := c.d
	for _, x := range []*prometheus.Desc{
		d.requests, d.requestDuration, d.upstreamDuration, d.bytesReceived, d.bytesSent,
		d.activeConns, d.parkedConns, d.inFlight, d.serverHealthy, d.serverInFlight, d.serverRequests, d.serverChecks, d.serverDisabled,
		d.serverFailures, d.rateLimited, d.upstreamErrors, d.workerRestarts, d.reloads,
		d.upgrades, d.generation, d.workers, d.workersReporting, d.certExpiry,
		d.tlsHandshakes, d.tlsVersions, d.tlsALPN, d.h2Conns, d.h2Streams, d.h2ClientResets, d.h2Resets, d.h2GoAways, d.zoneSlots, d.zoneUsed, d.zoneEvictions,
		d.healthSlots, d.healthUsed, d.healthOverflows,
		d.storeUp, d.storeErrors,
	} {
		ch <- x
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.agg.snapshot()
	d := c.d
	t := &s.totals
	// NewConstMetric, not MustNewConstMetric: a label value a worker sent
	// (a route name, say) that Prometheus rejects becomes an error for
	// that one series, never a panic in the master.
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- constMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- constMetric(desc, prometheus.GaugeValue, v, labels...)
	}

	names := make([]string, 0, len(t.routes))
	for name := range t.routes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for i, n := range t.routes[name] {
			counter(d.requests, n, name, classes[i])
		}
	}
	for i, n := range t.unrouted {
		if n > 0 {
			counter(d.requests, n, unroutedRoute, classes[i])
		}
	}
	ch <- constHistogram(d.requestDuration, &t.requestLatency)
	ch <- constHistogram(d.upstreamDuration, &t.upstreamLatency)
	counter(d.bytesReceived, t.bytesIn)
	counter(d.bytesSent, t.bytesOut)
	counter(d.rateLimited, t.rateLimited)
	counter(d.upstreamErrors, t.upstreamErrors)
	counter(d.tlsHandshakes, t.tls[config.TLSHandshakeFull], "full", "")
	counter(d.tlsHandshakes, t.tls[config.TLSHandshakeResumed], "resumed", "")
	counter(d.tlsHandshakes, t.tls[config.TLSHandshakeFailedTimeout], "failed", "timeout")
	counter(d.tlsHandshakes, t.tls[config.TLSHandshakeFailedClosed], "failed", "closed")
	counter(d.tlsHandshakes, t.tls[config.TLSHandshakeFailedProtocol], "failed", "protocol")
	counter(d.tlsVersions, t.tls[config.TLSVersion12], "TLSv1.2")
	counter(d.tlsVersions, t.tls[config.TLSVersion13], "TLSv1.3")
	counter(d.tlsALPN, t.tls[config.TLSALPNHTTP2], "h2")
	counter(d.tlsALPN, t.tls[config.TLSALPNHTTP1], "http/1.1")
	counter(d.h2Conns, t.h2[config.H2Connections])
	counter(d.h2Streams, t.h2[config.H2Streams])
	counter(d.h2ClientResets, t.h2[config.H2ClientResets])
	for code := range config.H2ErrCodeCount {
		counter(d.h2Resets, t.h2[config.H2ResetSent+code], config.H2ErrCodeName(code))
		counter(d.h2GoAways, t.h2[config.H2GoAwaySent+code], config.H2ErrCodeName(code))
	}

	conns, servers := s.gauges()
	gauge(d.activeConns, float64(conns.active))
	gauge(d.parkedConns, float64(conns.parked))
	gauge(d.inFlight, float64(conns.inFlight))
	for k, g := range servers {
		healthy := float64(g.healthy) / float64(g.workers)
		if v := g.shared; v != nil {
			healthy = 0
			if v.Healthy {
				healthy = 1
			}
			counter(d.serverChecks, v.Checks, k.upstream, k.addr)
			counter(d.serverDisabled, v.Disabled, k.upstream, k.addr)
		}
		gauge(d.serverHealthy, healthy, k.upstream, k.addr)
		gauge(d.serverInFlight, float64(g.inFlight), k.upstream, k.addr)
	}
	for k, v := range t.servers {
		counter(d.serverRequests, v.picks, k.upstream, k.addr)
		counter(d.serverFailures, v.failures, k.upstream, k.addr)
	}

	for name, g := range s.stores() {
		gauge(d.storeUp, float64(g.up)/float64(g.workers), name)
	}
	for name, n := range t.storeErrors {
		counter(d.storeErrors, n, name)
	}

	counter(d.workerRestarts, s.restarts)
	counter(d.reloads, s.reloads.OK, "ok")
	counter(d.reloads, s.reloads.Failed, "failed")
	counter(d.upgrades, s.upgrades.OK, "ok")
	counter(d.upgrades, s.upgrades.Failed, "failed")
	gauge(d.generation, float64(s.master.Generation))
	if cfg := s.master.Config; cfg != nil {
		for _, l := range cfg.Listeners {
			if l.TLS == nil {
				continue
			}
			for _, c := range l.TLS.Certificates {
				name := ""
				if len(c.Names) > 0 {
					name = c.Names[0]
				}
				gauge(d.certExpiry, float64(c.NotAfter.Unix()), l.Name, name)
			}
		}
	}
	states := make(map[string]int)
	for _, w := range s.master.Workers {
		states[w.State]++
	}
	for state, n := range states {
		gauge(d.workers, float64(n), state)
	}
	gauge(d.workersReporting, float64(len(s.live)))
	if z := s.health; z != nil {
		gauge(d.healthSlots, float64(z.Slots))
		gauge(d.healthUsed, float64(z.Used))
		counter(d.healthOverflows, z.Overflows)
	}
	if z := s.zone; z != nil {
		gauge(d.zoneSlots, float64(z.Slots))
		gauge(d.zoneUsed, float64(z.Used))
		counter(d.zoneEvictions, z.Evictions)
	}
}

func constMetric(desc *prometheus.Desc, vt prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(desc, vt, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(desc, err)
	}
	return m
}

// constHistogram turns a summed histogram into Prometheus' cumulative form.
func constHistogram(desc *prometheus.Desc, h *hist) prometheus.Metric {
	buckets := make(map[float64]uint64, len(LatencyBuckets))
	var cum uint64
	for i, bound := range LatencyBuckets {
		cum += h.counts[i]
		buckets[bound] = cum
	}
	return prometheus.MustNewConstHistogram(desc, h.count(), h.sum, buckets)
}

// newRegistry is the admin listener's private registry: this package's
// metrics plus the master process's own (process_*, go_*). Nothing is
// registered globally.
func newRegistry(agg *Aggregator) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{agg: agg, d: newDescs()})
	reg.MustRegister(prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGoCollector())
	return reg
}
