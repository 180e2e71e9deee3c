package upstream

import (
	"fmt"
	"testing"

	"github.com/pingora-go/pingora/config"
)

func ketamaPool(t *testing.T, n int) *Pool {
	t.Helper()
	cfg := config.Upstream{Name: "app", Balance: BalanceHash}
	for i := range n {
		cfg.Servers = append(cfg.Servers, config.Server{Address: fmt.Sprintf("10.0.0.%d:8080", i+1), Weight: 1})
	}
	p, err := newPool(t, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func keys(n int) [][]byte {
	k := make([][]byte, n)
	for i := range k {
		k[i] = fmt.Appendf(nil, "192.168.%d.%d", i/256, i%256)
	}
	return k
}

func TestKetamaSameKeySameServerAndSpread(t *testing.T) {
	p := ketamaPool(t, 4)
	ks := keys(20000)
	counts := map[string]int{}
	for _, k := range ks {
		s := p.Pick(k, nil)
		if again := p.Pick(k, nil); again != s {
			t.Fatalf("key %s: %s then %s", k, s.Addr, again.Addr)
		}
		counts[s.Addr]++
	}
	for addr, c := range counts {
		if c < 20000*15/100 || c > 20000*35/100 {
			t.Fatalf("%s got %d of 20000 keys, want about 25%%: %v", addr, c, counts)
		}
	}
	// A second pool from the same config (another worker) agrees.
	q := ketamaPool(t, 4)
	for _, k := range ks[:1000] {
		if p.Pick(k, nil).Addr != q.Pick(k, nil).Addr {
			t.Fatalf("two pools disagree on key %s", k)
		}
	}
}

func TestKetamaAddServerMovesAboutOneNth(t *testing.T) {
	const n = 10
	before, after := ketamaPool(t, n), ketamaPool(t, n+1)
	added := after.Servers()[n].Addr
	ks := keys(20000)
	moved := 0
	for _, k := range ks {
		a, b := before.Pick(k, nil).Addr, after.Pick(k, nil).Addr
		if a != b {
			moved++
			if b != added {
				t.Fatalf("key %s moved from %s to %s, not to the new server", k, a, b)
			}
		}
	}
	frac := float64(moved) / float64(len(ks))
	// Expected 1/(n+1) = 0.091.
	if frac < 0.06 || frac > 0.13 {
		t.Fatalf("adding a server to %d moved %.3f of keys, want about %.3f", n, frac, 1.0/(n+1))
	}
}

func TestKetamaUnusableMovesOnlyItsKeys(t *testing.T) {
	p := ketamaPool(t, 5)
	ks := keys(5000)
	home := make([]*Server, len(ks))
	for i, k := range ks {
		home[i] = p.Pick(k, nil)
	}
	down := p.Servers()[2]
	setActiveDown(down, true)
	for i, k := range ks {
		s := p.Pick(k, nil)
		if s == down {
			t.Fatal("picked the down server")
		}
		if home[i] != down && s != home[i] {
			t.Fatalf("key %s on healthy %s moved to %s", k, home[i].Addr, s.Addr)
		}
	}
	for _, s := range p.Servers() {
		setActiveDown(s, true)
	}
	if s := p.Pick(ks[0], nil); s != nil {
		t.Fatalf("all down: picked %s", s.Addr)
	}
}

func TestKetamaWeights(t *testing.T) {
	cfg := config.Upstream{Name: "app", Balance: BalanceHash, Servers: []config.Server{
		{Address: "10.0.0.1:80", Weight: 3}, {Address: "10.0.0.2:80", Weight: 1},
	}}
	p, err := newPool(t, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	heavy := 0
	ks := keys(20000)
	for _, k := range ks {
		if p.Pick(k, nil) == p.Servers()[0] {
			heavy++
		}
	}
	if heavy < 20000*68/100 || heavy > 20000*82/100 {
		t.Fatalf("weight 3 server got %d of 20000 keys, want about 75%%", heavy)
	}
}

func TestKetamaHugeWeightsBounded(t *testing.T) {
	cfg := config.Upstream{Name: "app", Balance: BalanceHash, Servers: []config.Server{
		{Address: "a", Weight: 1 << 30}, {Address: "b", Weight: 1 << 29},
	}}
	p, err := newPool(t, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := p.primary.(*ketama)
	if n := len(k.points); n > maxRingPoints {
		t.Fatalf("ring has %d points, cap %d", n, maxRingPoints)
	}
	owned := [2]int{}
	for _, o := range k.owner {
		owned[o]++
	}
	if owned[0] != 2*owned[1] {
		t.Fatalf("points %v, want 2:1 as the weights", owned)
	}
}
