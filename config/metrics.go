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

// H2ErrCodeCount is how many HTTP/2 error codes there are (RFC 9113 7).
const H2ErrCodeCount = 14

// H2ErrCodeName is the name of HTTP/2 error code c, which the HTTP/2
// counters are labelled with.
func H2ErrCodeName(c int) string {
	switch c {
	case 0x0:
		return "NO_ERROR"
	case 0x1:
		return "PROTOCOL_ERROR"
	case 0x2:
		return "INTERNAL_ERROR"
	case 0x3:
		return "FLOW_CONTROL_ERROR"
	case 0x4:
		return "SETTINGS_TIMEOUT"
	case 0x5:
		return "STREAM_CLOSED"
	case 0x6:
		return "FRAME_SIZE_ERROR"
	case 0x7:
		return "REFUSED_STREAM"
	case 0x8:
		return "CANCEL"
	case 0x9:
		return "COMPRESSION_ERROR"
	case 0xa:
		return "CONNECT_ERROR"
	case 0xb:
		return "ENHANCE_YOUR_CALM"
	case 0xc:
		return "INADEQUATE_SECURITY"
	case 0xd:
		return "HTTP_1_1_REQUIRED"
	}
	return "UNKNOWN"
}

// The HTTP/2 counters every worker keeps and the master sums, by index, as
// the TLS ones: connections that began HTTP/2, streams (requests) opened,
// streams the client reset, then RST_STREAM frames sent by error code
// (H2ResetSent + code), then GOAWAY frames sent by error code
// (H2GoAwaySent + code). A client reading no answers to its control frames
// is hung up on without a GOAWAY, and counted as ENHANCE_YOUR_CALM.
const (
	H2Connections = iota
	H2Streams
	H2ClientResets
	H2ResetSent
	H2GoAwaySent   = H2ResetSent + H2ErrCodeCount
	H2CounterCount = H2GoAwaySent + H2ErrCodeCount
)
