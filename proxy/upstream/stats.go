package upstream

import "time"

// ServerStats is a point-in-time view of one server, for status pages and
// metrics.
type ServerStats struct {
	Addr     string `json:"addr"`
	Weight   int    `json:"weight"`
	Backup   bool   `json:"backup,omitempty"`
	Healthy  bool   `json:"healthy"`   // what Pick sees now
	ActiveUp bool   `json:"active_up"` // the active check's verdict (true without checks)
	// ActiveSince is when the active verdict last changed; zero when it
	// never did (up since the server was first seen).
	ActiveSince time.Time `json:"active_since,omitzero"`
	// DownUntil is when passive marking lets the server back in; zero when
	// it is not marked.
	DownUntil time.Time `json:"down_until,omitzero"`
	InFlight  int64     `json:"in_flight"`
	Picks     uint64    `json:"picks"`    // times Pick chose it
	Failures  uint64    `json:"failures"` // Fail calls
	Disabled  uint64    `json:"disabled"` // times passive marking took it out, by any worker
	// Checks counts the active checks made, by any worker.
	Checks uint64 `json:"checks"`
	// Shared says the health above is the machine's (a HealthTable slot),
	// not this process's alone.
	Shared bool `json:"shared"`
}

// Stats returns the server's current view.
func (s *Server) Stats() ServerStats {
	h := s.health()
	st := ServerStats{
		Addr:     s.Addr,
		Weight:   int(s.weight()),
		Backup:   s.Backup,
		Healthy:  s.Healthy(),
		ActiveUp: !s.activeDown(),
		InFlight: s.inFlight.Load(),
		Picks:    s.picks.Load(),
		Failures: s.failures.Load(),
		Disabled: h.disabled.Load(),
		Checks:   h.checks.Load(),
		Shared:   s.sh != nil,
	}
	if _, _, _, since := unpackActive(h.active.Load()); since != 0 && !s.activeOff {
		st.ActiveSince = time.Unix(since, 0)
	}
	if d := h.downUntil.Load(); d != 0 && time.Now().UnixNano() < d {
		st.DownUntil = time.Unix(0, d)
	}
	return st
}

// PoolStats is a point-in-time view of a pool.
type PoolStats struct {
	Name    string        `json:"name"`
	Balance string        `json:"balance"`
	Servers []ServerStats `json:"servers"`
}

// Snapshot returns the pool's current view, servers in config order.
func (p *Pool) Snapshot() PoolStats {
	ps := PoolStats{Name: p.name, Balance: p.balance, Servers: make([]ServerStats, len(p.servers))}
	for i, s := range p.servers {
		ps.Servers[i] = s.Stats()
	}
	return ps
}
