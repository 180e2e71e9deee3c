package admin

import (
	"fmt"

	"github.com/pingora-go/pingora/config"
)

// Names are the routes, upstreams and upstream servers one generation's
// config defines: the only names a worker of that generation can report.
// A worker is untrusted input to the master (it parses client traffic), so
// everything it sends is checked against them before any of it reaches the
// totals, which live as long as the master: a sample naming anything else
// could otherwise grow the master's memory without bound.
type Names struct {
	routes  map[string]bool
	servers map[string]map[string]bool // upstream -> server addresses
}

// NamesOf collects the names cfg defines. nil cfg defines none.
func NamesOf(cfg *config.Config) *Names {
	n := &Names{routes: make(map[string]bool), servers: make(map[string]map[string]bool)}
	if cfg == nil {
		return n
	}
	for _, r := range cfg.Routes {
		n.routes[r.Name] = true
	}
	for _, u := range cfg.Upstreams {
		addrs := make(map[string]bool, len(u.Servers))
		for _, s := range u.Servers {
			addrs[s.Address] = true
		}
		n.servers[u.Name] = addrs
	}
	return n
}

// check reports the first thing in s that a worker of this generation
// cannot have sent: a name the config does not define, a name repeated,
// or a histogram longer than the buckets workers count into. Since every
// list must name distinct configured things, its length is bounded by the
// config too.
func (n *Names) check(s *WorkerSample) error {
	if n == nil {
		return fmt.Errorf("%w: no config to check its names against", ErrBadSample)
	}
	if len(s.Routes) > len(n.routes) {
		return fmt.Errorf("%w: %d routes, the config has %d", ErrBadSample, len(s.Routes), len(n.routes))
	}
	seen := make(map[string]bool, len(s.Routes))
	for _, r := range s.Routes {
		if !n.routes[r.Name] {
			return fmt.Errorf("%w: unknown route %.64q", ErrBadSample, r.Name)
		}
		if seen[r.Name] {
			return fmt.Errorf("%w: route %.64q twice", ErrBadSample, r.Name)
		}
		seen[r.Name] = true
	}
	if len(s.Upstreams) > len(n.servers) {
		return fmt.Errorf("%w: %d upstreams, the config has %d", ErrBadSample, len(s.Upstreams), len(n.servers))
	}
	clear(seen)
	for _, u := range s.Upstreams {
		addrs, ok := n.servers[u.Name]
		if !ok {
			return fmt.Errorf("%w: unknown upstream %.64q", ErrBadSample, u.Name)
		}
		if seen[u.Name] {
			return fmt.Errorf("%w: upstream %.64q twice", ErrBadSample, u.Name)
		}
		seen[u.Name] = true
		if len(u.Servers) > len(addrs) {
			return fmt.Errorf("%w: upstream %.64q: %d servers, the config has %d", ErrBadSample, u.Name, len(u.Servers), len(addrs))
		}
		servers := make(map[string]bool, len(u.Servers))
		for _, sv := range u.Servers {
			if !addrs[sv.Addr] {
				return fmt.Errorf("%w: upstream %.64q: unknown server %.64q", ErrBadSample, u.Name, sv.Addr)
			}
			if servers[sv.Addr] {
				return fmt.Errorf("%w: upstream %.64q: server %.64q twice", ErrBadSample, u.Name, sv.Addr)
			}
			servers[sv.Addr] = true
		}
	}
	for _, h := range []*Histogram{&s.RequestLatency, &s.UpstreamLatency} {
		if len(h.Counts) > bucketSlots {
			return fmt.Errorf("%w: a latency histogram of %d buckets, at most %d", ErrBadSample, len(h.Counts), bucketSlots)
		}
	}
	return nil
}
