package config

import "time"

// LatencyBucketCount is how many bounds LatencyBuckets has.
const LatencyBucketCount = 13

// LatencyBuckets returns the upper bounds of every latency histogram: the
// proxy in each worker counts into these buckets, and the master sums the
// workers' counts and exports them as Prometheus buckets. They are defined
// here because both sides need the one definition and config is the one
// package both import (the master never imports the proxy); a later
// `metrics` block could make them configurable.
func LatencyBuckets() [LatencyBucketCount]time.Duration {
	return [LatencyBucketCount]time.Duration{
		time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
		25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
		500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
	}
}

// The TLS counters every worker keeps and the master sums, by index (one
// definition for both sides, as the latency buckets): handshakes by
// outcome, then completed handshakes by protocol version, then by the
// application protocol chosen (ALPN; none counts as HTTP/1.1).
const (
	TLSHandshakeFull = iota
	TLSHandshakeResumed
	TLSHandshakeFailedTimeout  // the client did not finish in client_header_timeout
	TLSHandshakeFailedClosed   // the client went away (EOF, reset)
	TLSHandshakeFailedProtocol // an alert, no shared version or cipher, not TLS at all
	TLSVersion12
	TLSVersion13
	TLSALPNHTTP2
	TLSALPNHTTP1
	TLSCounterCount
)
