package upstream

import (
	"math/rand/v2"
	"slices"
)

// random is the power of two random choices: draw two servers at random
// (in proportion to weight), send the request to the one with fewer
// requests in flight per unit of weight. It needs no shared state (so no
// lock), and it avoids both random's unlucky pile-ups and least_conn's herd
// onto a single idle server when many workers decide at once.
//
// math/rand/v2's top-level functions use a per-thread generator: safe for
// concurrent use and allocation-free.
type random struct {
	servers []*Server
	cum     []int64 // cumulative weights; nil when all weights are equal
	total   int64
}

// randomTries is how many weighted draws are made for one choice before
// falling back to a scan for any usable server.
const randomTries = 4

func newRandom(servers []*Server) *random {
	r := &random{servers: servers}
	equal := true
	for _, s := range servers {
		r.total += s.weight()
		if s.weight() != servers[0].weight() {
			equal = false
		}
	}
	if !equal {
		r.cum = make([]int64, len(servers))
		var c int64
		for i, s := range servers {
			c += s.weight()
			r.cum[i] = c
		}
	}
	return r
}

// draw returns a random index in proportion to weight.
func (r *random) draw() int {
	if r.cum == nil {
		return rand.IntN(len(r.servers))
	}
	x := rand.Int64N(r.total)
	// The first cumulative weight strictly above x.
	i, found := slices.BinarySearch(r.cum, x+1)
	_ = found
	return i
}

// choose returns one usable server other than not, or nil.
func (r *random) choose(tried *Tried, not *Server) *Server {
	for range randomTries {
		s := r.servers[r.draw()]
		if s != not && usable(s, tried) {
			return s
		}
	}
	// Many servers are unusable: scan from a random start, so the fallback
	// does not always land on the same one.
	n := len(r.servers)
	start := rand.IntN(n)
	for j := range n {
		s := r.servers[(start+j)%n]
		if s != not && usable(s, tried) {
			return s
		}
	}
	return nil
}

func (r *random) pick(_ []byte, tried *Tried) *Server {
	a := r.choose(tried, nil)
	if a == nil || len(r.servers) == 1 {
		return a
	}
	b := r.choose(tried, a)
	if b == nil {
		return a
	}
	// b.inFlight/b.weight < a.inFlight/a.weight, cross-multiplied.
	if b.inFlight.Load()*a.weight() < a.inFlight.Load()*b.weight() {
		return b
	}
	return a
}
