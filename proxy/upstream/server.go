package upstream

import (
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
	failures atomic.Uint64 // this process's Fail calls

	// sh is the server's health as every worker shares it (a HealthTable
	// slot); nil: own, this process's alone (a Server built by hand, or
	// a table without room).
	sh  *sharedSlot
	own sharedSlot
	// activeOff: the pool has no active checks, so a verdict some other
	// pool (another generation's config) left in the shared slot does not
	// count.
	activeOff bool
}

// health is the server's health slot, shared or its own.
func (s *Server) health() *sharedSlot {
	if s.sh != nil {
		return s.sh
	}
	return &s.own
}

// activeDown is the active checks' verdict as this pool sees it.
func (s *Server) activeDown() bool {
	return !s.activeOff && s.health().active.Load()&activeDownBit != 0
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
	if s.activeDown() {
		return false
	}
	h := s.health()
	d := h.downUntil.Load()
	if d == 0 {
		return true
	}
	if time.Now().UnixNano() < d {
		return false
	}
	// The down period is over: clear it so later calls skip the clock.
	h.downUntil.CompareAndSwap(d, 0)
	return true
}

// HealthyAt is Healthy evaluated at now (for callers and tests that carry
// their own clock).
func (s *Server) HealthyAt(now time.Time) bool {
	if s.activeDown() {
		return false
	}
	d := s.health().downUntil.Load()
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
// marks it down again at once. Failures count together across every
// worker sharing the server's slot.
func (s *Server) Fail(now time.Time) {
	s.failures.Add(1)
	if s.maxFails <= 0 {
		return
	}
	h := s.health()
	t := now.UnixNano()
	timeout := int64(s.failTimeout)
	var n int64
	for {
		w := h.passive.Load()
		var start int64
		n, start = unpackPassive(w)
		switch {
		case n >= int64(s.maxFails):
			// Probation (or still down): any failure re-marks from now.
			n++
		case n == 0 || t-start > timeout:
			start = t
			n = 1
		default:
			n++
		}
		if h.passive.CompareAndSwap(w, packPassive(n, start)) {
			break
		}
	}
	if n < int64(s.maxFails) {
		return
	}
	// A kill right here leaves the count at max_fails without the mark:
	// the server is then on probation, and its next failure marks it.
	h.downUntil.Store(t + timeout)
	h.disabled.Add(1)
	if s.log != nil {
		s.log.Warn("server temporarily disabled (passive)",
			"fails", n, "max_fails", s.maxFails, "fail_timeout", s.failTimeout)
	}
}

// Succeed records a successful attempt: the failure count (and any
// probation) is reset. It does not cut short a down period already running:
// a success then can only come from a request that started before the
// server was marked. Cheap when there is nothing to reset.
func (s *Server) Succeed() {
	h := s.health()
	if h.passive.Load() == 0 {
		return
	}
	h.passive.Store(0)
}
