package upstream

import (
	"fmt"
	"testing"
)

// BenchmarkPick is one request's balancing work: Pick, Begin, End,
// Succeed, over four servers with one down.
func BenchmarkPick(b *testing.B) {
	for _, bal := range balancers {
		b.Run(bal, func(b *testing.B) {
			p := newTestPool(b, bal, 3, 2, 1, 1)
			setActiveDown(p.Servers()[3], true)
			key := []byte("203.0.113.7")
			b.ReportAllocs()
			for b.Loop() {
				var tried Tried
				s := p.Pick(key, &tried)
				s.Begin()
				s.End()
				s.Succeed()
			}
		})
	}
}

// BenchmarkPickParallel is BenchmarkPick from every P at once: the lock
// of round_robin and least_conn under contention.
func BenchmarkPickParallel(b *testing.B) {
	for _, bal := range balancers {
		b.Run(bal, func(b *testing.B) {
			p := newTestPool(b, bal, 3, 2, 1, 1)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				key := []byte("203.0.113.7")
				for pb.Next() {
					var tried Tried
					s := p.Pick(key, &tried)
					s.Begin()
					s.End()
				}
			})
		})
	}
}

// BenchmarkPickHashLarge is a ketama lookup on a 20-server ring (3200
// points).
func BenchmarkPickHashLarge(b *testing.B) {
	weights := make([]int, 20)
	for i := range weights {
		weights[i] = 1
	}
	p := newTestPool(b, BalanceHash, weights...)
	keys := make([][]byte, 256)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "10.1.%d.%d", i/16, i%16)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.Pick(keys[i&255], nil)
		i++
	}
}
