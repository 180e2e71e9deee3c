package upstream

import (
	"encoding/binary"
	"testing"
)

func TestFNVMatchesPingora(t *testing.T) {
	p := newTestPool(t, BalanceFNV, 1, 2, 1)
	// The weighted list is a b b c; FNV-1a(key) mod 4 picks from it.
	list := []string{"a", "b", "b", "c"}
	for _, k := range keys(500) {
		want := list[fnv1a64(k)%4]
		if got := p.Pick(k, nil).Addr; got != want {
			t.Fatalf("key %s: %s, want %s", k, got, want)
		}
	}
	// FNV-1a test vector.
	if h := fnv1a64([]byte("a")); h != 0xaf63dc4c8601ec8c {
		t.Fatalf("fnv1a64(a) = %#x", h)
	}
}

func TestFNVRehashOnUnusable(t *testing.T) {
	p := newTestPool(t, BalanceFNV, 1, 1, 1)
	for _, k := range keys(300) {
		first := p.Pick(k, nil)
		setActiveDown(first, true)
		s := p.Pick(k, nil)
		if s == nil || s == first {
			t.Fatalf("key %s: rehash gave %v", k, s)
		}
		// Pingora's rehash: FNV-1a of the hash's little-endian bytes,
		// modulo the unweighted list, until one is usable.
		h := fnv1a64(k)
		var b [8]byte
		var want *Server
		for want == nil || want == first {
			binary.LittleEndian.PutUint64(b[:], h)
			h = fnv1a64(b[:])
			want = p.Servers()[h%3]
		}
		if s != want {
			t.Fatalf("key %s: rehash gave %s, want %s", k, s.Addr, want.Addr)
		}
		if again := p.Pick(k, nil); again != s {
			t.Fatalf("key %s: rehash not stable", k)
		}
		setActiveDown(first, false)
	}
}
