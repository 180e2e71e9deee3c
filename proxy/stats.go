package proxy

import (
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/proxy/ratelimit"
	"github.com/pingora-go/pingora/proxy/upstream"
)

// Stats is a snapshot of a proxy's counters, for status pages and /metrics.
type Stats struct {
	Routes      []RouteStats // one per configured route, in config order
	Unrouted    [5]uint64    // responses given before or without a route (400, 404, 431...), by status class
	Requests    uint64       // requests answered (all statuses)
	BytesIn     uint64       // request bytes read from clients (heads and bodies)
	BytesOut    uint64       // response bytes written to clients
	ActiveConns int64        // open client connections
	ParkedConns int64        // of which idle ones parked without a goroutine (see park.go)
	InFlight    int64        // requests being served (tunnels included)
	RateLimited uint64       // requests answered 429
	UpstreamErr uint64       // failed upstream attempts (connect, reset, timeout, bad response)
	// TLS counts handshakes by outcome and protocol version, indexed by
	// config.TLSHandshakeFull ... config.TLSVersion13.
	TLS [config.TLSCounterCount]uint64
	// H2 counts HTTP/2 connections, streams, and resets and GOAWAYs by
	// error code, indexed by config.H2Connections ... config.H2GoAwaySent+code.
	H2 [config.H2CounterCount]uint64

	// RequestLatency is from the request head to the end of the response;
	// UpstreamLatency from the start of the attempt that answered to its
	// response head.
	RequestLatency  Histogram
	UpstreamLatency Histogram

	Upstreams []upstream.PoolStats // balancer and health view of every upstream

	// RateLimitZone is the fill of the machine-wide rate-limit zone, the
	// same figures in every worker; nil when the proxy has no zone.
	RateLimitZone *ratelimit.ZoneStats
	// HealthZone is the fill of the upstream health table, the machine's
	// when the master shares one.
	HealthZone upstream.HealthTableStats

	// Stores are the rate limit stores of cluster-scope limits, one per
	// distinct store setting.
	Stores []StoreStats // rate limit stores, one per distinct store setting
}

// StoreStats is one rate limit store as this worker sees it.
type StoreStats struct {
	Name   string // the URL without its password
	Up     bool   // connected and answering: shared limits apply
	Errors uint64 // failed connects, lost connections, timeouts, error replies
}

// latencyBounds are the upper bounds of the latency histogram buckets,
// config's (the last bucket, beyond them, counts the rest). Read only.
var latencyBounds = config.LatencyBuckets()

// Histogram is a latency distribution: Counts[i] counts observations in
// (latencyBounds[i-1], latencyBounds[i]] (not cumulative), the last slot
// those above every bound.
type Histogram struct {
	Counts [config.LatencyBucketCount + 1]uint64
	Sum    time.Duration
}

type histogram struct {
	counts [config.LatencyBucketCount + 1]atomic.Uint64
	sum    atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	var s Histogram
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// RouteStats counts one route's responses by status class: Responses[0] is
// 1xx, Responses[4] is 5xx.
type RouteStats struct {
	Name      string
	Responses [5]uint64
}

// counters are the live counters behind Stats: plain atomics, resolved to
// fixed slots at New, so counting costs a few uncontended atomic adds.
type counters struct {
	unrouted    [5]atomic.Uint64
	requests    atomic.Uint64
	bytesIn     atomic.Uint64
	bytesOut    atomic.Uint64
	active      atomic.Int64
	inFlight    atomic.Int64
	rateLimited atomic.Uint64
	upstreamErr atomic.Uint64
	tls         [config.TLSCounterCount]atomic.Uint64
	h2          [config.H2CounterCount]atomic.Uint64
	reqLatency  histogram
	upLatency   histogram
}

// statusClass maps a status to its slot (1xx -> 0 ... 5xx -> 4).
func statusClass(status int) int {
	c := status/100 - 1
	if c < 0 || c > 4 {
		return 4
	}
	return c
}

// Stats returns a snapshot of the proxy's counters.
func (p *Proxy) Stats() Stats {
	s := Stats{
		Requests:    p.stats.requests.Load(),
		BytesIn:     p.stats.bytesIn.Load(),
		BytesOut:    p.stats.bytesOut.Load(),
		ActiveConns: p.stats.active.Load(),
		ParkedConns: p.parkedCount(),
		InFlight:    p.stats.inFlight.Load(),
		RateLimited: p.stats.rateLimited.Load(),
		UpstreamErr: p.stats.upstreamErr.Load(),
		Routes:      make([]RouteStats, len(p.routes)),
	}
	for i := range s.TLS {
		s.TLS[i] = p.stats.tls[i].Load()
	}
	for i := range s.H2 {
		s.H2[i] = p.stats.h2[i].Load()
	}
	s.RequestLatency = p.stats.reqLatency.snapshot()
	s.UpstreamLatency = p.stats.upLatency.snapshot()
	for _, u := range p.upstreams {
		s.Upstreams = append(s.Upstreams, u.pool.Snapshot())
	}
	for _, st := range p.stores {
		s.Stores = append(s.Stores, StoreStats{Name: st.Name(), Up: st.Up(), Errors: st.Errors()})
	}
	for i := range s.Unrouted {
		s.Unrouted[i] = p.stats.unrouted[i].Load()
	}
	s.HealthZone = p.health.Stats()
	if p.zone != nil {
		zs := p.zone.Stats(time.Now())
		s.RateLimitZone = &zs
	}
	for i, rt := range p.routes {
		s.Routes[i].Name = rt.name
		for k := range rt.responses {
			s.Routes[i].Responses[k] = rt.responses[k].Load()
		}
	}
	return s
}
