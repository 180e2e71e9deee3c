package upstream

import (
	"strings"
	"testing"
)

func TestLeastConnPrefersIdle(t *testing.T) {
	p := newTestPool(t, BalanceLeastConn, 1, 1, 1)
	a, b, c := server(t, p, "a"), server(t, p, "b"), server(t, p, "c")
	a.Begin()
	a.Begin()
	b.Begin()
	if s := p.Pick(nil, nil); s != c {
		t.Fatalf("picked %v, want idle c", s.Addr)
	}
	c.Begin()
	c.Begin()
	// b (1) is now the least loaded.
	if s := p.Pick(nil, nil); s != b {
		t.Fatalf("picked %v, want b (1 in flight vs 2)", s.Addr)
	}
	for _, s := range []*Server{a, a, b, c, c} {
		s.End()
	}
	for _, s := range p.Servers() {
		if s.InFlight() != 0 {
			t.Fatalf("%s in flight %d after matching End", s.Addr, s.InFlight())
		}
	}
}

func TestLeastConnWeightedAndTiesRoundRobin(t *testing.T) {
	p := newTestPool(t, BalanceLeastConn, 2, 1)
	a, b := server(t, p, "a"), server(t, p, "b")
	a.Begin()
	b.Begin()
	// 1/2 < 1/1: the heavier server takes the next request.
	if s := p.Pick(nil, nil); s != a {
		t.Fatalf("picked %s, want a (1 in flight per 2 weight)", s.Addr)
	}
	a.End()
	b.End()
	// All idle: ties are broken by smooth weighted round robin, as nginx.
	seq := pickSeq(p, 30, nil)
	if strings.Count(seq, "a") != 20 || strings.Contains(seq, "aaa") || strings.Contains(seq, "bb") {
		t.Fatalf("idle tie sequence = %s, want a:b 2:1 interleaved", seq)
	}
}

func TestLeastConnUnusable(t *testing.T) {
	p := newTestPool(t, BalanceLeastConn, 1, 1)
	a, b := server(t, p, "a"), server(t, p, "b")
	b.Begin()
	b.Begin()
	setActiveDown(a, true)
	if s := p.Pick(nil, nil); s != b {
		t.Fatalf("picked %v, want loaded but healthy b", s)
	}
	var tried Tried
	tried.Add(b)
	if s := p.Pick(nil, &tried); s != nil {
		t.Fatalf("picked %s, want nil (a down, b tried)", s.Addr)
	}
}
