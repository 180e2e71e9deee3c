package upstream

import "sync"

// roundRobin is nginx's smooth weighted round robin
// (ngx_http_upstream_get_peer): each pick adds every usable server's weight
// to its current weight, takes the server with the largest current weight
// and subtracts the total from it. Weights 5,1,1 give a a b a c a a: the
// heavy server's turns are spread out, not bunched.
//
// Unlike nginx, effective weight equals the configured weight: a failing
// server is taken out by passive marking rather than slowly de-weighted.
type roundRobin struct {
	servers []*Server
	weights []int64

	mu      sync.Mutex
	current []int64
}

func newRoundRobin(servers []*Server) *roundRobin {
	r := &roundRobin{
		servers: servers,
		weights: make([]int64, len(servers)),
		current: make([]int64, len(servers)),
	}
	for i, s := range servers {
		r.weights[i] = s.weight()
	}
	return r
}

func (r *roundRobin) pick(_ []byte, tried *Tried) *Server {
	if len(r.servers) == 1 {
		if s := r.servers[0]; usable(s, tried) {
			return s
		}
		return nil
	}
	r.mu.Lock()
	best := -1
	var total int64
	for i, s := range r.servers {
		if !usable(s, tried) {
			continue
		}
		r.current[i] += r.weights[i]
		total += r.weights[i]
		if best < 0 || r.current[i] > r.current[best] {
			best = i
		}
	}
	if best < 0 {
		r.mu.Unlock()
		return nil
	}
	r.current[best] -= total
	r.mu.Unlock()
	return r.servers[best]
}
