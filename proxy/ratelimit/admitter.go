package ratelimit

import "time"

// Admitter decides whether one request of a key passes a limit now: the
// per-worker Limiter, the machine-wide SharedLimiter and the Cluster limit
// shared through a store are Admitters.
//
// Allow takes one token from key's bucket at now. ok is false when the
// bucket is empty; retryAfter is then how long until one token is
// available. Implementations must not allocate on this path.
type Admitter interface {
	Allow(key []byte, now time.Time) (ok bool, retryAfter time.Duration)
}

var (
	_ Admitter = (*Limiter)(nil)
	_ Admitter = (*SharedLimiter)(nil)
	_ Admitter = (*Cluster)(nil)
)
