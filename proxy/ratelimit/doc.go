// Package ratelimit is the per-route request rate limit: a token bucket
// per key (client address or a header value), as nginx's limit_req.
//
// Semantics: a limit of `requests` per `per` with `burst` admits requests
// at a steady rate of requests/per, and up to `burst` more at once on top
// of the one the rate allows. A key that has been idle long enough may
// therefore send 1+burst requests back to back; after that one request
// every per/requests. This is nginx's `limit_req zone=... rate=R burst=B
// nodelay`: burst 0 means requests must be spaced at least per/requests
// apart (rate=100 per 1s, burst=0: one request each 10ms, not 100 in the
// first millisecond).
//
// Where the buckets live is the limit's scope. Machine scope (the
// default): in a Zone, shared memory the master creates and every worker
// maps, so all workers of all generations enforce one limit together
// (SharedLimiter). Worker scope: in the memory of one worker process
// (Limiter); with N workers a client whose connections spread over all of
// them can get up to N times the limit. Cluster scope: in a Redis (or
// Valkey) Store that several instances share, spent from local leases so
// no request waits for the store, each worker on its own while the store
// is down (Cluster). All three are Admitters.
package ratelimit
