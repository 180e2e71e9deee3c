package wire

import (
	"github.com/pingora-go/pingora/config"
	"sort"
	"time"
)

// The types below are what a worker reports to the master for the admin
// listener (/metrics, /status, the status page). They live here, in the
// protocol package both ends import, because the worker builds them from
// the proxy's counters and the master's admin package sums them, and the
// master must never import the proxy. master/admin re-exports them under
// the same names.

// WorkerSample is one worker's cumulative counters since it started, plus
// its current gauges. A worker sends it as JSON in a Message of type
// TypeSample; every counter only grows during the worker's life.
type WorkerSample struct {
	PID        int `json:"pid"`
	Generation int `json:"generation"`
	// Started is when the worker process started. With PID it identifies
	// the process, so a late sample from a retired worker is not mistaken
	// for a new worker that reused its pid.
	Started time.Time `json:"started"`

	Requests       uint64 `json:"requests"`        // requests answered, any status
	BytesIn        uint64 `json:"bytes_in"`        // request bytes read from clients
	BytesOut       uint64 `json:"bytes_out"`       // response bytes written to clients
	RateLimited    uint64 `json:"rate_limited"`    // requests answered 429 by a rate limit
	UpstreamErrors uint64 `json:"upstream_errors"` // failed upstream attempts
	// TLS counts handshakes by outcome and version, indexed by
	// config.TLSHandshakeFull ... config.TLSVersion13.
	TLS [config.TLSCounterCount]uint64 `json:"tls"`
	// H2 counts HTTP/2 connections, streams, client resets, and the
	// resets and GOAWAYs sent by error code, indexed by
	// config.H2Connections ... config.H2GoAwaySent+code.
	H2 [config.H2CounterCount]uint64 `json:"h2"`

	ActiveConns int64 `json:"active_connections"` // gauge: open client connections
	ParkedConns int64 `json:"parked_connections"` // gauge: of those, idle ones parked without a goroutine
	InFlight    int64 `json:"in_flight"`          // gauge: requests being served

	Routes []RouteSample `json:"routes"`
	// Unrouted counts responses given before or without a route (400, 404,
	// 431...), by status class like RouteSample.Responses.
	Unrouted [5]uint64 `json:"unrouted"`

	RequestLatency  Histogram `json:"request_latency"`  // first byte read to last byte written
	UpstreamLatency Histogram `json:"upstream_latency"` // upstream attempt to response head

	Upstreams []UpstreamSample `json:"upstreams"`

	// Stores are the rate limit stores of cluster-scope limits, one per
	// distinct store.
	Stores []StoreSample `json:"stores,omitempty"`

	// RateLimitZone is the machine-wide rate-limit zone as the worker
	// reads it (every worker reads the same memory); nil: no zone.
	RateLimitZone *ZoneSample `json:"rate_limit_zone,omitempty"`

	// HealthZone is the fill of the upstream health zone (every worker
	// reads the same memory); nil: none.
	HealthZone *HealthZoneSample `json:"health_zone,omitempty"`
}

// HealthZoneSample is the fill of the shared upstream health zone.
type HealthZoneSample struct {
	Slots int64 `json:"slots"` // servers it can hold
	Used  int64 `json:"used"`  // slots taken (servers of this and earlier configs)
	// Overflows counts servers that found no free slot and keep their
	// health to their worker, since the zone was created.
	Overflows uint64 `json:"overflows"`
}

// ZoneSample is the fill of the shared rate-limit zone.
type ZoneSample struct {
	Bytes int64 `json:"bytes"` // size of the shared memory
	Slots int64 `json:"slots"` // keys it can hold
	// Used is how many slots hold a bucket that is not full (estimated
	// from a sample of slots in a large zone).
	Used int64 `json:"used"`
	// Evictions counts keys forgotten while their bucket was not full, for
	// a new key, since the zone was created (reloads and upgrades keep
	// it): a zone too small for its keys.
	Evictions uint64 `json:"evictions"`
}

// StoreSample is one rate limit store as one worker sees it.
type StoreSample struct {
	Name   string `json:"name"`   // the URL without its password
	Up     bool   `json:"up"`     // gauge: connected and answering
	Errors uint64 `json:"errors"` // counter: failed connects, lost connections, timeouts, error replies
}

// RouteSample counts one route's responses by status class: Responses[0]
// is 1xx, Responses[4] is 5xx.
type RouteSample struct {
	Name      string    `json:"name"`
	Responses [5]uint64 `json:"responses"`
}

// UpstreamSample is one upstream pool as one worker sees it.
type UpstreamSample struct {
	Name    string         `json:"name"`
	Servers []ServerSample `json:"servers"`
}

// ServerSample is one upstream server as one worker sees it. With Shared
// set, the health fields are the machine's (the health zone every worker
// reads), so the master takes them from one sample instead of combining
// the workers' opinions; Checks and Disabled are then machine-wide counts,
// never to be summed.
type ServerSample struct {
	Addr     string `json:"addr"`
	Healthy  bool   `json:"healthy"`   // gauge: what the worker's balancer sees now
	InFlight int64  `json:"in_flight"` // gauge
	Picks    uint64 `json:"picks"`     // counter: attempts sent to this server
	Failures uint64 `json:"failures"`  // counter: failed attempts

	Shared   bool `json:"shared,omitempty"`
	ActiveUp bool `json:"active_up"` // the active checks' verdict (true without checks)
	// DownUntil is when passive marking lets the server back in; zero
	// when it is not marked.
	DownUntil time.Time `json:"down_until,omitzero"`
	Checks    uint64    `json:"checks,omitempty"`   // active checks made by any worker
	Disabled  uint64    `json:"disabled,omitempty"` // times passive marking took it out
}

// LatencyBuckets are config.LatencyBuckets in seconds: the fixed upper
// bounds of every latency Histogram, which workers count into. Read only.
var LatencyBuckets = bucketSeconds()

func bucketSeconds() []float64 {
	var out []float64
	for _, b := range config.LatencyBuckets() {
		out = append(out, b.Seconds())
	}
	return out
}

// Histogram is a latency distribution over LatencyBuckets. Counts is NOT
// cumulative: Counts[i] is the number of observations v with
// LatencyBuckets[i-1] < v <= LatencyBuckets[i], and the last element,
// Counts[len(LatencyBuckets)], counts those above the largest bound (+Inf).
// So a worker counts an observation with one add into one slot
// (BucketIndex). The total count is the sum of Counts. Sum is in seconds.
// A nil Counts is an empty histogram; a shorter Counts is tolerated, a
// longer one is refused by the master (workers and master are the same
// binary, so they agree on the buckets).
type Histogram struct {
	Counts []uint64 `json:"counts"`
	Sum    float64  `json:"sum"`
}

// BucketIndex returns the Counts slot an observation of seconds belongs to.
func BucketIndex(seconds float64) int {
	return sort.SearchFloat64s(LatencyBuckets, seconds)
}

// Observe counts one observation into h, for workers that keep a plain
// (not concurrently updated) Histogram, and for tests.
func (h *Histogram) Observe(seconds float64) {
	if len(h.Counts) != len(LatencyBuckets)+1 {
		c := make([]uint64, len(LatencyBuckets)+1)
		copy(c, h.Counts)
		h.Counts = c
	}
	h.Counts[BucketIndex(seconds)]++
	h.Sum += seconds
}

// Count is the number of observations.
func (h Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}
