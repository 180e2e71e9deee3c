package upstream

// Tried is the set of servers already attempted for one request, so a retry
// goes elsewhere. The zero value is an empty set. It is keyed on each
// server's index in its pool: one Tried belongs to one request on one pool.
// Pools of up to 256 servers never allocate; beyond that, the extra
// servers are kept in a slice.
type Tried struct {
	bits  [4]uint64
	extra []*Server
	n     int
}

// Add marks s as tried.
func (t *Tried) Add(s *Server) {
	if t == nil || s == nil || t.Has(s) {
		return
	}
	t.n++
	if i := s.slot - 1; i >= 0 && i < 256 {
		t.bits[i>>6] |= 1 << (uint(i) & 63)
		return
	}
	t.extra = append(t.extra, s)
}

// Has reports whether s was added. A nil Tried is empty.
func (t *Tried) Has(s *Server) bool {
	if t == nil || s == nil || t.n == 0 {
		return false
	}
	if i := s.slot - 1; i >= 0 && i < 256 {
		return t.bits[i>>6]&(1<<(uint(i)&63)) != 0
	}
	for _, e := range t.extra {
		if e == s {
			return true
		}
	}
	return false
}

// Len is the number of servers added.
func (t *Tried) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// Reset empties the set, keeping any storage for reuse.
func (t *Tried) Reset() {
	t.bits = [4]uint64{}
	t.extra = t.extra[:0]
	t.n = 0
}

// usable is the test every balancer applies to a candidate.
func usable(s *Server, tried *Tried) bool {
	return s.Healthy() && !tried.Has(s)
}
