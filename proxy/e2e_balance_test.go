package proxy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// TestE2EBalanceWeightedRoundRobin: weights 1:2 give a 1/3 : 2/3 split of
// the requests that go through the proxy.
func TestE2EBalanceWeightedRoundRobin(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "w1"), startBackend(t, "w2")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  balance = "round_robin"
  server "@B1@" { weight = 1 }
  server "@B2@" { weight = 2 }
}
route "all" { upstream = "app" }
`, map[string]string{"B1": b1.Addr, "B2": b2.Addr}), proxy.Options{})

	const n = 300
	c := newClient()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		r := do(t, c, "GET", rp.URL("pub")+fmt.Sprintf("/rr/%d", i), "x", nil, nil)
		if r.Status != 200 {
			t.Fatalf("request %d: status %d %q", i, r.Status, clip(r.Body))
		}
		got[r.Header.Get("X-Backend")]++
	}
	if b1.hits() != got["w1"] || b2.hits() != got["w2"] {
		t.Errorf("backend counts %d/%d disagree with responses %v", b1.hits(), b2.hits(), got)
	}
	// Smooth weighted round robin is exact over whole cycles (100:200); allow
	// a few requests of slack for an implementation that starts mid-cycle.
	if got["w1"] < n/3-6 || got["w1"] > n/3+6 || got["w1"]+got["w2"] != n {
		t.Errorf("split %v over %d requests, want about %d : %d", got, n, n/3, 2*n/3)
	}
}

// TestE2EBalanceLeastConn: with one request in flight on one server, new
// requests go to the other one, the idle one.
func TestE2EBalanceLeastConn(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "l1"), startBackend(t, "l2")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  balance = "least_conn"
  server "@B1@" {}
  server "@B2@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"B1": b1.Addr, "B2": b2.Addr}), proxy.Options{})

	slow := make(chan result, 1)
	go func() {
		r, err := tryDo(newClient(), "GET", rp.URL("pub")+"/sleep?d=1500ms", "x", nil, nil)
		if err != nil {
			r.Body = err.Error()
		}
		slow <- r
	}()
	// Wait for the slow request to be in flight on one of them.
	var busy, idle *backend
	proxy.WaitFor(t, 5*time.Second, "the slow request to reach a backend", func() bool {
		switch {
		case b1.hits() == 1:
			busy, idle = b1, b2
		case b2.hits() == 1:
			busy, idle = b2, b1
		}
		return busy != nil
	})
	c := newClient()
	for i := 0; i < 10; i++ {
		r := do(t, c, "GET", rp.URL("pub")+fmt.Sprintf("/lc/%d", i), "x", nil, nil)
		if r.Status != 200 || r.Header.Get("X-Backend") != idle.Name {
			t.Errorf("request %d while %s is busy: status %d from %q, want 200 from %s", i, busy.Name, r.Status, r.Header.Get("X-Backend"), idle.Name)
		}
	}
	if r := <-slow; r.Status != 200 {
		t.Errorf("slow request: status %d %q", r.Status, clip(r.Body))
	}
}

// TestE2EBalanceHashSticky: with a hashing balancer, every request of one
// key reaches the same server, and different keys are spread; for the ketama
// ring and FNV, keyed by a header and by the URI.
func TestE2EBalanceHashSticky(t *testing.T) {
	t.Parallel()
	bs := []*backend{startBackend(t, "h1"), startBackend(t, "h2"), startBackend(t, "h3")}
	for _, tc := range []struct{ balance, key string }{
		{"hash", "header:X-User"}, {"fnv", "header:X-User"}, {"hash", "uri"},
	} {
		t.Run(tc.balance+" "+tc.key, func(t *testing.T) {
			rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  balance  = "@BAL@"
  hash_key = "@KEY@"
  server "@B1@" {}
  server "@B2@" {}
  server "@B3@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BAL": tc.balance, "KEY": tc.key, "B1": bs[0].Addr, "B2": bs[1].Addr, "B3": bs[2].Addr}), proxy.Options{})
			c := newClient()
			owner := map[string]string{}
			used := map[string]int{}
			for round := 0; round < 3; round++ {
				for u := 0; u < 30; u++ {
					user := fmt.Sprintf("user-%d", u)
					path := "/h"
					if tc.key == "uri" {
						path = "/h/" + user
					}
					r := do(t, c, "GET", rp.URL("pub")+path, "x", nil, map[string]string{"X-User": user})
					be := r.Header.Get("X-Backend")
					if r.Status != 200 || be == "" {
						t.Fatalf("%s: status %d from %q", user, r.Status, be)
					}
					if prev, ok := owner[user]; ok && prev != be {
						t.Errorf("%s went to %s, then to %s: hashing is not sticky", user, prev, be)
					}
					owner[user] = be
					if round == 0 {
						used[be]++
					}
				}
			}
			if len(used) < 2 {
				t.Errorf("30 keys all hashed to one server: %v", used)
			}
		})
	}
}

// TestE2EBalanceKetamaAddServer: adding a fourth server to a ketama ring
// moves about a quarter of the keys, all of them to the new server. Two
// proxies, before and after, see the same keys.
func TestE2EBalanceKetamaAddServer(t *testing.T) {
	t.Parallel()
	bs := []*backend{startBackend(t, "k1"), startBackend(t, "k2"), startBackend(t, "k3"), startBackend(t, "k4")}
	vars := map[string]string{"B1": bs[0].Addr, "B2": bs[1].Addr, "B3": bs[2].Addr, "B4": bs[3].Addr}
	three := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  balance  = "hash"
  hash_key = "header:X-User"
  server "@B1@" {}
  server "@B2@" {}
  server "@B3@" {}
}
route "all" { upstream = "app" }
`, vars), proxy.Options{})
	four := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  balance  = "hash"
  hash_key = "header:X-User"
  server "@B1@" {}
  server "@B2@" {}
  server "@B3@" {}
  server "@B4@" {}
}
route "all" { upstream = "app" }
`, vars), proxy.Options{})
	c := newClient()
	const keys = 400
	moved := 0
	for k := 0; k < keys; k++ {
		hdr := map[string]string{"X-User": fmt.Sprintf("key-%d", k)}
		before := do(t, c, "GET", three.URL("pub")+"/k", "x", nil, hdr).Header.Get("X-Backend")
		after := do(t, c, "GET", four.URL("pub")+"/k", "x", nil, hdr).Header.Get("X-Backend")
		if before != after {
			moved++
			if after != "k4" {
				t.Errorf("key-%d moved from %s to %s: only moves to the new server are expected", k, before, after)
			}
		}
	}
	// Expect 1/4 (100 of 400); ketama's spread leaves some slack.
	if moved < keys/8 || moved > keys*2/5 {
		t.Errorf("adding a 4th server moved %d of %d keys, want about %d", moved, keys, keys/4)
	}
}

// TestE2EBalanceRandom: random (two choices) spreads requests over both
// servers.
func TestE2EBalanceRandom(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "r1"), startBackend(t, "r2")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  balance = "random"
  server "@B1@" {}
  server "@B2@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"B1": b1.Addr, "B2": b2.Addr}), proxy.Options{})
	c := newClient()
	const n = 200
	for i := 0; i < n; i++ {
		if r := do(t, c, "GET", rp.URL("pub")+"/r", "x", nil, nil); r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
	}
	// Binomial(200, 1/2): outside [60, 140] has probability below 1e-8.
	if h := b1.hits(); h < 60 || h > 140 || h+b2.hits() != n {
		t.Errorf("random split %d : %d over %d requests", h, b2.hits(), n)
	}
}

// TestE2EBackupServer: a backup server gets no traffic while a primary is
// usable, and all of it once none is.
func TestE2EBackupServer(t *testing.T) {
	t.Parallel()
	primary, backup := startBackend(t, "primary"), startBackend(t, "backup")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  server "@P@" {
    max_fails    = 1
    fail_timeout = "30s"
  }
  server "@B@" { backup = true }
}
route "all" { upstream = "app" }
`, map[string]string{"P": primary.Addr, "B": backup.Addr}), proxy.Options{})
	c := newClient()
	for i := 0; i < 10; i++ {
		if r := do(t, c, "GET", rp.URL("pub")+"/b", "x", nil, nil); r.Status != 200 || r.Header.Get("X-Backend") != "primary" {
			t.Fatalf("request %d with the primary up: status %d from %q", i, r.Status, r.Header.Get("X-Backend"))
		}
	}
	primary.Close()
	for i := 0; i < 10; i++ {
		if r := do(t, c, "GET", rp.URL("pub")+"/b", "x", nil, nil); r.Status != 200 || r.Header.Get("X-Backend") != "backup" {
			t.Errorf("request %d with the primary down: status %d from %q, want 200 from backup", i, r.Status, r.Header.Get("X-Backend"))
		}
	}
}
