package upstream

import "testing"

func TestRandomNeverUnusableAndSpreads(t *testing.T) {
	p := newTestPool(t, BalanceRandom, 1, 1, 1, 1)
	setActiveDown(server(t, p, "c"), true)
	var tried Tried
	tried.Add(server(t, p, "d"))
	counts := map[string]int{}
	const n = 6000
	for range n {
		s := p.Pick(nil, &tried)
		if s == nil {
			t.Fatal("Pick returned nil with two usable servers")
		}
		counts[s.Addr]++
	}
	if counts["c"]+counts["d"] != 0 {
		t.Fatalf("picked unusable servers: %v", counts)
	}
	for _, a := range []string{"a", "b"} {
		if counts[a] < n*4/10 {
			t.Fatalf("%s got %d of %d picks, want about half: %v", a, counts[a], n, counts)
		}
	}
}

func TestRandomTwoChoicesAvoidsLoaded(t *testing.T) {
	p := newTestPool(t, BalanceRandom, 1, 1, 1)
	a := server(t, p, "a")
	for range 10 {
		a.Begin()
	}
	// Any pair of distinct draws includes a less loaded server than a.
	for range 1000 {
		if s := p.Pick(nil, nil); s == a {
			t.Fatal("two choices picked the loaded server")
		}
	}
}

func TestRandomWeighted(t *testing.T) {
	p := newTestPool(t, BalanceRandom, 3, 1)
	counts := map[string]int{}
	const n = 20000
	for range n {
		counts[p.Pick(nil, nil).Addr]++
	}
	// All idle, so the first (weighted) draw wins: about 3:1.
	if a := counts["a"]; a < n*70/100 || a > n*80/100 {
		t.Fatalf("weight 3 vs 1: a got %d of %d, want about 75%%", a, n)
	}
}
