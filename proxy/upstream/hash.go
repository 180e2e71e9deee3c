package upstream

// Hashes used for key placement. They must be the same in every process
// (every worker, every generation, every host), so a given key lands on the
// same server everywhere: no per-process seeds (hash/maphash) here.

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnv1a64 is 64-bit FNV-1a, as Pingora's FNVHash selection uses. Written
// out because hash/fnv returns an interface and would allocate.
func fnv1a64(b []byte) uint64 {
	h := uint64(fnvOffset64)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime64
	}
	return h
}

// fnv1a64String is fnv1a64 of a string, without converting it.
func fnv1a64String(s string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// mix64 is the splitmix64 finalizer. FNV-1a alone spreads similar short
// strings ("10.0.0.1:80-1", "10.0.0.1:80-2") poorly over the high bits the
// ketama ring is ordered by; the finalizer fixes that.
func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// ringHash places keys and points on the ketama ring.
func ringHash(b []byte) uint64 { return mix64(fnv1a64(b)) }
