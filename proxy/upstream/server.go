package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Server is one upstream server of a Pool, with its health and load.
//
// The exported fields are set by NewPool and never change afterwards. The
// zero value (with Addr set) is a usable server: healthy, weight 1, passive
// marking off.
type Server struct {
	Addr   string
	Weight int
	Backup bool

	// slot is 1 + the server's index in its pool (0: not in a pool); Tried
	// keys its bitmask on it.
	slot int

	maxFails    int
	failTimeout time.Duration
	log         hclog.Logger // nil: no passive-marking logs

	inFlight atomic.Int64
	picks    atomic.Uint64
	failures atomic.Uint64
	disabled atomic.Uint64 // times passive marking took it out

	// activeDown is set by the active health checker; servers start up.
	activeDown atomic.Bool
	// downUntil is the Unix-nanosecond wall time until which passive
	// marking keeps the server out; 0 when it is not marked. Healthy reads
	// it without a lock, so only failures pay for the mutex below.
	downUntil atomic.Int64

	// fails counts failures in the current fail_timeout window. It stays at
	// or above maxFails after the server is marked down (probation, as
	// nginx): the first failure after the down period re-marks it at once;
	// a success ends probation. Read atomically by Succeed's fast path,
	// written under mu.
	fails       atomic.Int64
	mu          sync.Mutex
	windowStart int64 // Unix nanoseconds of the window's first failure
}

// weight returns the effective configured weight (at least 1), so a zero
// Server balances like weight 1.
func (s *Server) weight() int64 {
	if s.Weight < 1 {
		return 1
	}
	return int64(s.Weight)
}

// Healthy reports whether the server may take requests: the active check
// has not marked it down and passive marking does not hold it out now.
func (s *Server) Healthy() bool {
	if s.activeDown.Load() {
		return false
	}
	d := s.downUntil.Load()
	if d == 0 {
		return true
	}
	if time.Now().UnixNano() < d {
		return false
	}
	// The down period is over: clear it so later calls skip the clock.
	s.downUntil.CompareAndSwap(d, 0)
	return true
}

// HealthyAt is Healthy evaluated at now (for callers and tests that carry
// their own clock).
func (s *Server) HealthyAt(now time.Time) bool {
	if s.activeDown.Load() {
		return false
	}
	d := s.downUntil.Load()
	return d == 0 || now.UnixNano() >= d
}

// Begin counts one more request in flight to the server (least_conn and
// random weigh servers by it). Every Begin must be matched by one End.
func (s *Server) Begin() { s.inFlight.Add(1) }

// End counts one request in flight less.
func (s *Server) End() { s.inFlight.Add(-1) }

// InFlight is the number of requests between Begin and End.
func (s *Server) InFlight() int64 { return s.inFlight.Load() }

// Fail records a failed attempt at now (connect error, timeout, bad
// response). As nginx's max_fails/fail_timeout: max_fails failures within
// fail_timeout mark the server unavailable for fail_timeout; max_fails 0
// disables passive marking. After the down period the server gets traffic
// again, but it stays on probation: one more failure before a success
// marks it down again at once.
func (s *Server) Fail(now time.Time) {
	s.failures.Add(1)
	if s.maxFails <= 0 {
		return
	}
	t := now.UnixNano()
	timeout := int64(s.failTimeout)
	s.mu.Lock()
	n := s.fails.Load()
	switch {
	case n >= int64(s.maxFails):
		// Probation (or still down): any failure re-marks from now.
		n++
	case n == 0 || t-s.windowStart > timeout:
		s.windowStart = t
		n = 1
	default:
		n++
	}
	s.fails.Store(n)
	marked := n >= int64(s.maxFails)
	if marked {
		s.downUntil.Store(t + timeout)
		s.disabled.Add(1)
	}
	s.mu.Unlock()
	if marked && s.log != nil {
		s.log.Warn("server temporarily disabled (passive)",
			"fails", n, "max_fails", s.maxFails, "fail_timeout", s.failTimeout)
	}
}

// Succeed records a successful attempt: the failure count (and any
// probation) is reset. It does not cut short a down period already running:
// a success then can only come from a request that started before the
// server was marked. Cheap when there is nothing to reset.
func (s *Server) Succeed() {
	if s.fails.Load() == 0 {
		return
	}
	s.mu.Lock()
	s.fails.Store(0)
	s.windowStart = 0
	s.mu.Unlock()
}
