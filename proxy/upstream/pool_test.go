package upstream

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

func TestBackupsOnlyWhenNoPrimaryUsable(t *testing.T) {
	for _, bal := range balancers {
		t.Run(bal, func(t *testing.T) {
			cfg := config.Upstream{Name: "app", Balance: bal, Servers: []config.Server{
				{Address: "p1"}, {Address: "bk", Backup: true}, {Address: "p2"},
			}}
			p, err := newPool(t, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			p1, bk, p2 := p.Servers()[0], p.Servers()[1], p.Servers()[2]
			for i := range 50 {
				if s := p.Pick(fmt.Appendf(nil, "k%d", i), nil); s == bk {
					t.Fatal("backup picked while primaries are healthy")
				}
			}
			setActiveDown(p1, true)
			var tried Tried
			tried.Add(p2)
			if s := p.Pick([]byte("k"), &tried); s != bk {
				t.Fatalf("p1 down, p2 tried: picked %v, want the backup", s)
			}
			tried.Add(bk)
			if s := p.Pick([]byte("k"), &tried); s != nil {
				t.Fatalf("everything down or tried: picked %s, want nil", s.Addr)
			}
			setActiveDown(p1, false)
			if s := p.Pick([]byte("k"), &tried); s != p1 {
				t.Fatalf("p1 back: picked %v", s)
			}
		})
	}
}

func TestPickNilWhenAllDown(t *testing.T) {
	for _, bal := range balancers {
		t.Run(bal, func(t *testing.T) {
			p := newTestPool(t, bal, 1, 2, 3)
			now := time.Now()
			for _, s := range p.Servers() {
				s.Fail(now) // max_fails 1, fail_timeout 1h
			}
			if s := p.Pick([]byte("key"), nil); s != nil {
				t.Fatalf("picked %s with every server marked down", s.Addr)
			}
			one := newTestPool(t, bal, 1)
			setActiveDown(one.Servers()[0], true)
			if s := one.Pick([]byte("key"), nil); s != nil {
				t.Fatalf("single down server picked")
			}
		})
	}
}

func TestTriedExcludes(t *testing.T) {
	for _, bal := range balancers {
		t.Run(bal, func(t *testing.T) {
			p := newTestPool(t, bal, 1, 1, 1, 1)
			var tried Tried
			seen := map[*Server]bool{}
			for range 4 {
				s := p.Pick([]byte("same key"), &tried)
				if s == nil || seen[s] {
					t.Fatalf("retry picked %v again or nothing (tried %d)", s, tried.Len())
				}
				seen[s] = true
				tried.Add(s)
			}
			if s := p.Pick([]byte("same key"), &tried); s != nil {
				t.Fatalf("all tried: picked %s", s.Addr)
			}
		})
	}
}

func TestTriedLargePoolAndNoAlloc(t *testing.T) {
	cfg := config.Upstream{Name: "big"}
	for i := range 300 {
		cfg.Servers = append(cfg.Servers, config.Server{Address: fmt.Sprintf("10.0.%d.%d:80", i/256, i%256)})
	}
	p, err := newPool(t, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tried Tried
	for _, s := range p.Servers() {
		if tried.Has(s) {
			t.Fatalf("%s in empty set", s.Addr)
		}
	}
	for i, s := range p.Servers() {
		if i%3 == 0 {
			tried.Add(s)
		}
	}
	for i, s := range p.Servers() {
		if tried.Has(s) != (i%3 == 0) {
			t.Fatalf("server %d: Has = %v", i, tried.Has(s))
		}
	}
	if tried.Len() != 100 {
		t.Fatalf("Len %d, want 100", tried.Len())
	}
	tried.Reset()
	if tried.Len() != 0 || tried.Has(p.Servers()[0]) || tried.Has(p.Servers()[299]) {
		t.Fatal("Reset left servers in the set")
	}
	small := p.Servers()[:4]
	if n := testing.AllocsPerRun(100, func() {
		var tr Tried
		for _, s := range small {
			tr.Add(s)
			_ = tr.Has(s)
		}
	}); n != 0 {
		t.Fatalf("Tried allocates %v per run", n)
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	for _, bal := range balancers {
		p := newTestPool(t, bal, 3, 2, 1, 1)
		key := []byte("203.0.113.7")
		setActiveDown(p.Servers()[1], true)
		if n := testing.AllocsPerRun(200, func() {
			var tried Tried
			s := p.Pick(key, &tried)
			tried.Add(s)
			s.Begin()
			s = p.Pick(key, &tried)
			s.End()
			s.Succeed()
		}); n != 0 {
			t.Errorf("%s: %v allocations per request", bal, n)
		}
	}
}

func TestNewPoolRefusesUnknownBalancer(t *testing.T) {
	cfg := configured(t, config.Upstream{Name: "u", Servers: []config.Server{{Address: "a"}}})
	cfg.Balance = "weighted_magic"
	if _, err := newPool(t, cfg, nil); err == nil || !strings.Contains(err.Error(), `upstream "u"`) || !strings.Contains(err.Error(), "unknown balance") {
		t.Errorf("NewPool with balance %q = %v, want an error naming the upstream and the balancer", cfg.Balance, err)
	}
}

// TestConcurrentPicks runs every balancer from many goroutines while
// health flips underneath (run with -race). With everything healthy,
// round robin's totals stay exact however picks interleave.
func TestConcurrentPicks(t *testing.T) {
	for _, bal := range balancers {
		t.Run(bal, func(t *testing.T) {
			p := newTestPool(t, bal, 3, 2, 1)
			const workers, each = 8, 600
			var wg sync.WaitGroup
			stop := make(chan struct{})
			flipped := make(chan struct{})
			go func() {
				defer close(flipped)
				c := p.Servers()[2]
				for i := 0; ; i++ {
					select {
					case <-stop:
						setActiveDown(c, false)
						c.Succeed()
						return
					default:
					}
					setActiveDown(c, i%2 == 0)
					c.Fail(time.Now().Add(-time.Hour)) // marks, already expired
					c.Succeed()
					time.Sleep(50 * time.Microsecond)
				}
			}()
			var nilPicks sync.Map
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := fmt.Appendf(nil, "client-%d", w)
					for range each {
						var tried Tried
						s := p.Pick(key, &tried)
						if s == nil {
							nilPicks.Store(w, true)
							return
						}
						s.Begin()
						tried.Add(s)
						s.End()
					}
				}()
			}
			wg.Wait()
			close(stop)
			<-flipped
			nilPicks.Range(func(k, _ any) bool {
				t.Errorf("worker %v got nil with two servers always healthy", k)
				return true
			})
			var total uint64
			for _, s := range p.Servers() {
				if s.InFlight() != 0 {
					t.Errorf("%s in flight %d", s.Addr, s.InFlight())
				}
				total += s.Stats().Picks
			}
			if total != workers*each {
				t.Errorf("picks counted %d, want %d", total, workers*each)
			}
			if bal != BalanceRoundRobin {
				return
			}
			// Healthy again: the next 600 round-robin picks from many
			// goroutines split exactly 3:2:1.
			before := make([]uint64, 3)
			for i, s := range p.Servers() {
				before[i] = s.Stats().Picks
			}
			// Settle the smooth state: a full cycle from an arbitrary state
			// is not exact, so reset it (same lock the picks take).
			rr := p.primary.(*roundRobin)
			rr.mu.Lock()
			clear(rr.current)
			rr.mu.Unlock()
			for range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 100 {
						p.Pick(nil, nil)
					}
				}()
			}
			wg.Wait()
			for i, want := range []uint64{300, 200, 100} {
				if got := p.Servers()[i].Stats().Picks - before[i]; got != want {
					t.Errorf("server %d: %d concurrent picks, want %d", i, got, want)
				}
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	p := newTestPool(t, BalanceRoundRobin, 2, 1)
	a := p.Servers()[0]
	a.Begin()
	p.Pick(nil, nil)
	a.Fail(time.Now())
	snap := p.Snapshot()
	if snap.Name != "app" || snap.Balance != BalanceRoundRobin || len(snap.Servers) != 2 {
		t.Fatalf("snapshot %+v", snap)
	}
	st := snap.Servers[0]
	if st.Addr != "a" || st.Weight != 2 || st.Healthy || !st.ActiveUp || st.InFlight != 1 ||
		st.Picks != 1 || st.Failures != 1 || st.Disabled != 1 || st.DownUntil.IsZero() {
		t.Fatalf("server stats %+v", st)
	}
}
