package upstream

import "encoding/binary"

// fnvHash is Pingora's FNVHash selection: the 64-bit FNV-1a hash of the key,
// modulo a list where each server appears weight times. When that server is
// unusable the hash is rehashed (FNV-1a of its little-endian bytes) and taken
// modulo the unweighted server list, as Pingora's weighted iterator does.
// Simple and fast, but not consistent: adding a server moves most keys
// (use hash, the ketama ring, for that).
type fnvHash struct {
	servers  []*Server
	weighted []int32
}

// maxFNVEntries bounds the weighted list whatever the weights.
const maxFNVEntries = 1 << 16

// fnvRehashes bounds the rehash walk before a plain scan takes over.
const fnvRehashes = 8

func newFNV(servers []*Server) *fnvHash {
	weights := scaledWeights(servers, maxFNVEntries)
	f := &fnvHash{servers: servers}
	for i, w := range weights {
		for range w {
			f.weighted = append(f.weighted, int32(i))
		}
	}
	return f
}

func (f *fnvHash) pick(key []byte, tried *Tried) *Server {
	h := fnv1a64(key)
	s := f.servers[f.weighted[h%uint64(len(f.weighted))]]
	if usable(s, tried) {
		return s
	}
	n := uint64(len(f.servers))
	var b [8]byte
	for range fnvRehashes {
		binary.LittleEndian.PutUint64(b[:], h)
		h = fnv1a64(b[:])
		if s := f.servers[h%n]; usable(s, tried) {
			return s
		}
	}
	// Still nothing: scan onward from the last rehash, so the answer stays
	// a function of the key.
	for j := range n {
		if s := f.servers[(h+j)%n]; usable(s, tried) {
			return s
		}
	}
	return nil
}
