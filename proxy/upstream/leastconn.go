package upstream

import "sync"

// leastConn is nginx's least_conn (ngx_http_upstream_get_least_conn_peer):
// the usable server with the fewest requests in flight per unit of weight;
// when several tie, smooth weighted round robin among them, so idle equal
// servers still take turns instead of the first one taking everything.
type leastConn struct {
	servers []*Server
	weights []int64

	mu      sync.Mutex
	current []int64
	conns   []int64 // in-flight snapshot of this pick, under mu
}

func newLeastConn(servers []*Server) *leastConn {
	l := &leastConn{
		servers: servers,
		weights: make([]int64, len(servers)),
		current: make([]int64, len(servers)),
		conns:   make([]int64, len(servers)),
	}
	for i, s := range servers {
		l.weights[i] = s.weight()
	}
	return l
}

func (l *leastConn) pick(_ []byte, tried *Tried) *Server {
	if len(l.servers) == 1 {
		if s := l.servers[0]; usable(s, tried) {
			return s
		}
		return nil
	}
	l.mu.Lock()
	best, many := -1, false
	for i, s := range l.servers {
		if !usable(s, tried) {
			l.conns[i] = -1
			continue
		}
		c := s.inFlight.Load()
		if c < 0 {
			c = 0 // an unmatched End must not make a server look magnetic
		}
		l.conns[i] = c
		if best < 0 {
			best, many = i, false
			continue
		}
		// c/w < best.c/best.w, cross-multiplied.
		lhs, rhs := c*l.weights[best], l.conns[best]*l.weights[i]
		if lhs < rhs {
			best, many = i, false
		} else if lhs == rhs {
			many = true
		}
	}
	if best < 0 {
		l.mu.Unlock()
		return nil
	}
	if many {
		bc, bw := l.conns[best], l.weights[best]
		var total int64
		first := best
		for i := first; i < len(l.servers); i++ {
			c := l.conns[i]
			if c < 0 || c*bw != bc*l.weights[i] {
				continue
			}
			l.current[i] += l.weights[i]
			total += l.weights[i]
			if l.current[i] > l.current[best] {
				best = i
			}
		}
		l.current[best] -= total
	}
	l.mu.Unlock()
	return l.servers[best]
}
