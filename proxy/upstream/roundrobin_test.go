package upstream

import (
	"strings"
	"testing"
)

func pickSeq(p *Pool, n int, tried *Tried) string {
	var b strings.Builder
	for range n {
		s := p.Pick(nil, tried)
		if s == nil {
			b.WriteByte('-')
			continue
		}
		b.WriteString(s.Addr)
	}
	return b.String()
}

func TestRoundRobinNginxSequence(t *testing.T) {
	p := newTestPool(t, BalanceRoundRobin, 5, 1, 1)
	// nginx's documented smooth sequence for weights 5,1,1, repeating.
	want := strings.Repeat("aabacaa", 3)
	if got := pickSeq(p, 21, nil); got != want {
		t.Fatalf("sequence = %s, want %s", got, want)
	}
}

func TestRoundRobinWeightsExactAndSmooth(t *testing.T) {
	p := newTestPool(t, BalanceRoundRobin, 3, 2, 1)
	seq := pickSeq(p, 600, nil)
	for addr, want := range map[string]int{"a": 300, "b": 200, "c": 100} {
		if got := strings.Count(seq, addr); got != want {
			t.Errorf("%s picked %d times, want %d (seq %s...)", addr, got, want, seq[:24])
		}
	}
	// Smooth: the heaviest server never gets more than two turns in a row
	// (3 of every 6), and every window of 6 holds the exact proportions.
	if strings.Contains(seq, "aaa") {
		t.Errorf("weight-3 server got 3 turns in a row: %s", seq[:24])
	}
	for i := 0; i+6 <= len(seq); i += 6 {
		w := seq[i : i+6]
		if strings.Count(w, "a") != 3 || strings.Count(w, "b") != 2 || strings.Count(w, "c") != 1 {
			t.Fatalf("window %d = %s, want 3 a, 2 b, 1 c", i/6, w)
		}
	}
}

func TestRoundRobinSkipsUnusable(t *testing.T) {
	p := newTestPool(t, BalanceRoundRobin, 5, 1, 1)
	setActiveDown(server(t, p, "a"), true)
	seq := pickSeq(p, 10, nil)
	if strings.Contains(seq, "a") || strings.Count(seq, "b") != 5 || strings.Count(seq, "c") != 5 {
		t.Fatalf("with a down, sequence = %s, want b and c alternating", seq)
	}
	setActiveDown(server(t, p, "a"), false)
	var tried Tried
	tried.Add(server(t, p, "b"))
	seq = pickSeq(p, 12, &tried)
	if strings.Contains(seq, "b") || strings.Count(seq, "a") != 10 || strings.Count(seq, "c") != 2 {
		t.Fatalf("with b tried, sequence = %s, want a:c 5:1", seq)
	}
}
