// Upstream health shared by the workers of a master: active checks made
// once per interval for the whole machine, one verdict every worker
// follows (through a reload too), passive failures counted together.

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// hcBackend is an upstream server that counts what it gets: health checks
// (GET /healthz, answered with a status the test sets) and requests
// (anything else, answered 200 with the backend's name, or, when broken,
// by closing the connection without an answer: a passive failure). It
// can be killed (its port then refuses connections) and revived on the
// same port.
type hcBackend struct {
	t        *testing.T
	name     string
	addr     string
	status   atomic.Int32
	broken   atomic.Bool
	checks   atomic.Int64
	requests atomic.Int64

	mu  sync.Mutex
	srv *http.Server
}

func startHCBackend(t *testing.T, name string) *hcBackend {
	t.Helper()
	b := &hcBackend{t: t, name: name}
	b.status.Store(200)
	b.listen("127.0.0.1:0")
	t.Cleanup(b.kill)
	return b
}

func (b *hcBackend) listen(addr string) {
	b.t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		b.t.Fatalf("backend %s: %v", b.name, err)
	}
	b.addr = ln.Addr().String()
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(b.serve)}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.t.Errorf("backend %s: %v", b.name, err)
		}
	}()
}

func (b *hcBackend) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		b.checks.Add(1)
		w.WriteHeader(int(b.status.Load()))
		return
	}
	b.requests.Add(1)
	if b.broken.Load() {
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
		return
	}
	fmt.Fprintf(w, "backend %s", b.name)
}

// kill closes the listener and every connection.
func (b *hcBackend) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		b.srv.Close()
		b.srv = nil
	}
}

// revive listens again on the same port.
func (b *hcBackend) revive() { b.listen(b.addr) }

// serverStatus is the part of the admin /status this test reads.
type serverStatus struct {
	Address        string `json:"address"`
	State          string `json:"state"`
	HealthyWorkers int    `json:"healthy_workers"`
	Workers        int    `json:"workers"`
}

func upstreamServer(t *testing.T, admin, upstream, addr string) serverStatus {
	t.Helper()
	body, err := adminGet(admin, "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Upstreams []struct {
			Name    string         `json:"name"`
			Servers []serverStatus `json:"servers"`
		} `json:"upstreams"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("/status: %v", err)
	}
	for _, u := range st.Upstreams {
		for _, s := range u.Servers {
			if u.Name == upstream && s.Address == addr {
				return s
			}
		}
	}
	t.Fatalf("/status has no server %s in upstream %s:\n%s", addr, upstream, body)
	return serverStatus{}
}

// waitState waits until every one of the 4 workers reports the server in
// the state ("up" or "down").
func waitState(t *testing.T, admin, upstream, addr, state string) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%s in %s %s in all 4 workers", addr, upstream, state), func() (bool, string) {
		s := upstreamServer(t, admin, upstream, addr)
		want := 4
		if state == "down" {
			want = 0
		}
		return s.State == state && s.Workers == 4 && s.HealthyWorkers == want, fmt.Sprintf("%+v", s)
	})
}

// spread sends n requests to path, each on a new connection (the
// reuseport listener spreads them over the workers), and counts the
// answers by backend. Any answer but 200 fails the test.
func spread(t *testing.T, addr, path string, n int) map[string]int {
	t.Helper()
	by := map[string]int{}
	for i := range n {
		status, body, err := get(addr, path+strconv.Itoa(i))
		if err != nil || status != 200 {
			t.Fatalf("request %d: %d %q %v", i, status, body, err)
		}
		by[body]++
	}
	return by
}

const hcInterval = 100 * time.Millisecond

func healthInstance(t *testing.T, extra string) (*instance, string) {
	in := newInstance(t, 4)
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	p := in.Params
	p.ReusePort = true
	p.Extra = fmt.Sprintf("admin {\n  address = %q\n}\n%s", admin, extra)
	in.WriteConfig(p)
	in.Start()
	return in, admin
}

// TestHealthChecksSharedByWorkers: four workers, a check every 100ms: the
// backend gets one check per interval, not four; a failing server is
// avoided by every worker once the checks fail `unhealthy` times, stays
// avoided through a reload (the new generation keeps the verdict), and
// is used by every worker again once it passes.
func TestHealthChecksSharedByWorkers(t *testing.T) {
	a := startHCBackend(t, "a")
	b := startHCBackend(t, "b")
	in, admin := healthInstance(t, fmt.Sprintf(`
upstream "hc" {
  server %q {
    max_fails = 0
  }
  server %q {
    max_fails = 0
  }
  health_check {
    path      = "/healthz"
    interval  = "%s"
    timeout   = "1s"
    healthy   = 2
    unhealthy = 2
  }
}

route "hc" {
  path_prefix = "/hc/"
  upstream    = "hc"
}
`, a.addr, b.addr, hcInterval))

	// Counted from the moment every worker serves (each has its checkers
	// running): however slow the machine, shared checks cannot exceed one
	// per interval, and four workers checking on their own would make four.
	start, before := time.Now(), a.checks.Load()
	waitFor(t, 20*time.Second, "20 checks", func() (bool, string) {
		n := a.checks.Load() - before
		return n >= 20, fmt.Sprintf("%d checks", n)
	})
	elapsed, n := time.Since(start), a.checks.Load()-before
	if limit := int64(elapsed/hcInterval) + 2; n > limit {
		t.Fatalf("%d checks of one server in %v with 4 workers and a %v interval: want at most %d (one per interval)", n, elapsed, hcInterval, limit)
	}
	t.Logf("%d checks of one server in %v (interval %v, 4 workers)", n, elapsed, hcInterval)
	if by := spread(t, in.Addr, "/hc/x", 40); by["backend a"] == 0 || by["backend b"] == 0 {
		t.Fatalf("both servers up, answers %v", by)
	}

	a.status.Store(503)
	waitState(t, admin, "hc", a.addr, "down")
	reqs := a.requests.Load()
	if by := spread(t, in.Addr, "/hc/down", 100); by["backend b"] != 100 || a.requests.Load() != reqs {
		t.Fatalf("server a down: answers %v, a got %d requests; want all 100 from b", by, a.requests.Load()-reqs)
	}

	// A reload keeps the verdict: the new workers avoid a from their first
	// request, without a check of their own first.
	p := in.Params
	p.Gen++
	in.WriteConfig(p)
	in.Signal(syscall.SIGHUP)
	in.WaitServing(nil, p.Gen)
	if by := spread(t, in.Addr, "/hc/reloaded", 100); by["backend b"] != 100 || a.requests.Load() != reqs {
		t.Fatalf("after the reload: answers %v, a got %d requests; want all 100 from b", by, a.requests.Load()-reqs)
	}
	waitState(t, admin, "hc", a.addr, "down")

	// So does a binary upgrade: the new master takes the zone over.
	p.Gen++
	in.WriteConfig(p)
	old := in.Signal(syscall.SIGUSR2)
	in.WaitNewMaster("upgrade", old)
	waitFor(t, 30*time.Second, "the upgraded master serving", func() (bool, string) { return in.servesGen(p.Gen) })
	in.WaitDead("old master", []int{old}, 30*time.Second)
	if by := spread(t, in.Addr, "/hc/upgraded", 100); by["backend b"] != 100 || a.requests.Load() != reqs {
		t.Fatalf("after the upgrade: answers %v, a got %d requests; want all 100 from b", by, a.requests.Load()-reqs)
	}
	waitState(t, admin, "hc", a.addr, "down")

	a.status.Store(200)
	waitState(t, admin, "hc", a.addr, "up")
	if by := spread(t, in.Addr, "/hc/up", 40); by["backend a"] == 0 {
		t.Fatalf("server a back up, answers %v", by)
	}

	// A dead server (connections refused) is found down by every worker
	// the same way, and back up once it listens again.
	b.kill()
	waitState(t, admin, "hc", b.addr, "down")
	// A request sent to the dead server would fail to connect and be
	// retried on a: the workers' attempt counters (sampled afresh for each
	// scrape) say whether any worker still tries it.
	attempts := func() (all, toB float64) {
		m := scrape(t, admin)
		all, _ = m.sum("pingora_upstream_requests_total", `upstream="hc"`)
		toB, _ = m.sum("pingora_upstream_requests_total", `upstream="hc"`, fmt.Sprintf("server=%q", b.addr))
		return all, toB
	}
	all0, toB0 := attempts()
	if by := spread(t, in.Addr, "/hc/dead", 40); by["backend a"] != 40 {
		t.Fatalf("server b dead: answers %v, want all from a", by)
	}
	var toB float64
	waitFor(t, 10*time.Second, "the 40 attempts counted", func() (bool, string) {
		var all float64
		all, toB = attempts()
		return all >= all0+40, fmt.Sprintf("%g attempts counted since", all-all0)
	})
	if toB != toB0 {
		t.Fatalf("%g attempts to the dead server after all workers found it down", toB-toB0)
	}
	b.revive()
	waitState(t, admin, "hc", b.addr, "up")
	if by := spread(t, in.Addr, "/hc/revived", 40); by["backend b"] == 0 {
		t.Fatalf("server b revived, answers %v", by)
	}

	// The config's four servers (app, dead, and hc's two) each have a slot.
	m := scrape(t, admin)
	if m["pingora_health_zone_slots"] != 8192 || m["pingora_health_zone_used_slots"] != 4 || m["pingora_health_zone_overflows_total"] != 0 {
		t.Fatalf("health zone metrics: slots %g, used %g, overflows %g; want 8192, 4, 0", m["pingora_health_zone_slots"],
			m["pingora_health_zone_used_slots"], m["pingora_health_zone_overflows_total"])
	}
}

// TestPassiveFailuresCountedAcrossWorkers: a server that fails every
// request (connection closed unanswered; the request is retried on the
// other server) is taken out after max_fails failures in all: requests on
// new connections land on all four workers, and a worker counting alone
// would try it max_fails times itself.
func TestPassiveFailuresCountedAcrossWorkers(t *testing.T) {
	bad := startHCBackend(t, "bad")
	good := startHCBackend(t, "good")
	bad.broken.Store(true)
	const maxFails = 3
	in, admin := healthInstance(t, fmt.Sprintf(`
upstream "pv" {
  server %q {
    max_fails    = %d
    fail_timeout = "1m"
  }
  server %q {}
}

route "pv" {
  path_prefix = "/pv/"
  upstream    = "pv"
}
`, bad.addr, maxFails, good.addr))

	by := spread(t, in.Addr, "/pv/x", 100)
	if by["backend good"] != 100 {
		t.Fatalf("answers %v, want all 100 from the good server", by)
	}
	if n := bad.requests.Load(); n != maxFails {
		t.Fatalf("the failing server got %d requests from 4 workers, want max_fails = %d in all", n, maxFails)
	}
	waitState(t, admin, "pv", bad.addr, "down")
}
