package admin

import "github.com/pingora-go/pingora/worker/wire"

// What a worker reports is defined by the master/worker protocol package
// (worker/wire), which both the worker and the master import: the worker
// builds these from the proxy's counters, and the master must never import
// the proxy. The aliases keep this package's API self-contained: callers
// and tests say admin.WorkerSample, and the values are wire's.
type (
	// WorkerSample is one worker's cumulative counters and gauges; see
	// wire.WorkerSample.
	WorkerSample = wire.WorkerSample
	// RouteSample is one route's responses by status class.
	RouteSample = wire.RouteSample
	// UpstreamSample is one upstream pool as one worker sees it.
	UpstreamSample = wire.UpstreamSample
	// ServerSample is one upstream server as one worker sees it.
	ServerSample = wire.ServerSample
	// StoreSample is one rate limit store as one worker sees it.
	StoreSample = wire.StoreSample
	// Histogram is a latency distribution over LatencyBuckets (not
	// cumulative; see wire.Histogram).
	Histogram = wire.Histogram
	// ZoneSample is the fill of the shared rate-limit zone.
	ZoneSample = wire.ZoneSample
	// HealthZoneSample is the fill of the shared upstream health zone.
	HealthZoneSample = wire.HealthZoneSample
)

// LatencyBuckets are the fixed upper bounds, in seconds, of every latency
// Histogram (wire.LatencyBuckets, the same slice).
var LatencyBuckets = wire.LatencyBuckets

// BucketIndex returns the Histogram.Counts slot an observation of seconds
// belongs to.
func BucketIndex(seconds float64) int { return wire.BucketIndex(seconds) }
