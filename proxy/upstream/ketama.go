package upstream

import (
	"cmp"
	"slices"
	"strconv"
)

// ketama is consistent hashing on a ring, as libketama and Pingora's
// KetamaHashing: every server puts pointsPerWeight points per unit of
// weight on a 64-bit ring, at the hash of "addr-i"; a key goes to the
// owner of the first point at or after the key's hash. A server's points
// depend only on its own address, so adding one server to N moves only
// the keys that now land on its points, about 1/(N+1) of them, and removing
// one moves only its own keys. An unusable owner passes the key on to the
// next point's owner, which is where that key would go if the server were
// removed.
type ketama struct {
	servers []*Server
	points  []uint64 // sorted
	owner   []int32  // owner[i] indexes servers for points[i]
}

const (
	pointsPerWeight = 160
	// maxRingPoints bounds the ring (12 bytes a point) whatever the
	// weights; beyond it weights are scaled down proportionally.
	maxRingPoints = 1 << 18
)

func newKetama(servers []*Server) *ketama {
	weights := scaledWeights(servers, maxRingPoints/pointsPerWeight)
	type point struct {
		h     uint64
		owner int32
	}
	var pts []point
	buf := make([]byte, 0, 64)
	for i, s := range servers {
		n := weights[i] * pointsPerWeight
		for j := int64(0); j < n; j++ {
			buf = append(buf[:0], s.Addr...)
			buf = append(buf, '-')
			buf = strconv.AppendInt(buf, j, 10)
			pts = append(pts, point{ringHash(buf), int32(i)})
		}
	}
	// Ties (vanishingly rare) are ordered by owner so every process builds
	// the same ring.
	slices.SortFunc(pts, func(a, b point) int {
		if c := cmp.Compare(a.h, b.h); c != 0 {
			return c
		}
		return cmp.Compare(a.owner, b.owner)
	})
	k := &ketama{
		servers: servers,
		points:  make([]uint64, len(pts)),
		owner:   make([]int32, len(pts)),
	}
	for i, p := range pts {
		k.points[i], k.owner[i] = p.h, p.owner
	}
	return k
}

// lookup returns the ring position for key's hash.
func (k *ketama) lookup(h uint64) int {
	i, _ := slices.BinarySearch(k.points, h)
	if i == len(k.points) {
		i = 0 // past the last point: wrap to the first
	}
	return i
}

func (k *ketama) pick(key []byte, tried *Tried) *Server {
	n := len(k.points)
	i := k.lookup(ringHash(key))
	// Walking the ring is cheap while some server nearby is usable; when
	// they are all down it would cost the whole ring, so after a short walk
	// check that any server at all is usable before going on.
	short := 2 * len(k.servers)
	for j := 0; j < n; j++ {
		if j == short && !anyUsable(k.servers, tried) {
			return nil
		}
		s := k.servers[k.owner[(i+j)%n]]
		if usable(s, tried) {
			return s
		}
	}
	return nil
}

func anyUsable(servers []*Server, tried *Tried) bool {
	for _, s := range servers {
		if usable(s, tried) {
			return true
		}
	}
	return false
}
