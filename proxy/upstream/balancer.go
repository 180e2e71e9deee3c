package upstream

import "fmt"

// balancer picks one usable server (healthy, not in tried) from a fixed
// set, or nil. Implementations are safe for concurrent use and allocate
// nothing per pick.
type balancer interface {
	pick(key []byte, tried *Tried) *Server
}

// pickFrom calls b.pick through a type switch rather than the interface:
// escape analysis cannot see through a dynamic call, so an interface call
// would move every caller's stack-allocated Tried (and key) to the heap.
func pickFrom(b balancer, key []byte, tried *Tried) *Server {
	switch b := b.(type) {
	case *roundRobin:
		return b.pick(key, tried)
	case *leastConn:
		return b.pick(key, tried)
	case *random:
		return b.pick(key, tried)
	case *ketama:
		return b.pick(key, tried)
	case *fnvHash:
		return b.pick(key, tried)
	}
	return nil // newBalancer builds nothing else
}

// Balance names accepted in config.Upstream.Balance.
const (
	BalanceRoundRobin = "round_robin"
	BalanceLeastConn  = "least_conn"
	BalanceRandom     = "random"
	BalanceHash       = "hash"
	BalanceFNV        = "fnv"
)

// newBalancer builds the named algorithm over servers (non-empty).
func newBalancer(name string, servers []*Server) (balancer, error) {
	switch name {
	case BalanceRoundRobin, "":
		return newRoundRobin(servers), nil
	case BalanceLeastConn:
		return newLeastConn(servers), nil
	case BalanceRandom:
		return newRandom(servers), nil
	case BalanceHash:
		return newKetama(servers), nil
	case BalanceFNV:
		return newFNV(servers), nil
	}
	return nil, fmt.Errorf("unknown balance %q (want round_robin, least_conn, random, hash or fnv)", name)
}

// scaledWeights returns each server's weight, scaled down proportionally
// (each at least 1) if their sum exceeds max, so tables built per weight
// unit (the ketama ring, the fnv list) stay bounded whatever weights a
// config holds. Weights are not otherwise reduced (say, by their common
// divisor): a server's share of the ring must not change when an unrelated
// server is added, or consistent hashing would move more keys than it must.
func scaledWeights(servers []*Server, max int64) []int64 {
	w := make([]int64, len(servers))
	var sum float64
	for i, s := range servers {
		w[i] = s.weight()
		sum += float64(w[i])
	}
	if sum > float64(max) {
		for i := range w {
			w[i] = int64(float64(w[i]) * float64(max) / sum)
			if w[i] < 1 {
				w[i] = 1
			}
		}
	}
	return w
}
