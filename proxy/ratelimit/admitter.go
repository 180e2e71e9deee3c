package ratelimit

import "time"

// Admitter decides whether one request of a key passes a limit now. The
// per-worker Limiter and the machine-wide SharedLimiter are Admitters; a
// store shared between machines sits beside them behind the same method.
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
)
