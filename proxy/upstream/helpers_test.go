package upstream

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pingora-go/pingora/config"
)

var balancers = []string{BalanceRoundRobin, BalanceLeastConn, BalanceRandom, BalanceHash, BalanceFNV}

// newTestPool builds a pool of servers named a, b, c... with the given
// weights (addresses are never dialled unless a test starts checks).
func newTestPool(t testing.TB, balance string, weights ...int) *Pool {
	t.Helper()
	cfg := config.Upstream{Name: "app", Balance: balance}
	for i, w := range weights {
		cfg.Servers = append(cfg.Servers, config.Server{
			Address: fmt.Sprintf("%c", 'a'+i), Weight: w, MaxFails: 1, FailTimeout: time.Hour,
		})
	}
	p, err := newPool(t, cfg, nil)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	return p
}

// newPool is NewPool on cfg completed by configured, with its servers'
// active verdicts in force even without a health_check block, so that
// tests can set them by hand (setActiveDown).
func newPool(t testing.TB, cfg config.Upstream, log hclog.Logger) (*Pool, error) {
	t.Helper()
	p, err := NewPool(configured(t, cfg), nil, log)
	if err == nil {
		for _, s := range p.servers {
			s.activeOff = false
		}
	}
	return p, err
}

// configured fills what a test's hand-written upstream leaves at zero
// (balance, weights, fail_timeout, health-check fields) with the values
// config.Parse gives an upstream that leaves them out, so that the tests
// see config's defaults and the pool keeps none of its own. max_fails is
// kept as written: 0 means passive marking off.
func configured(t testing.TB, u config.Upstream) config.Upstream {
	t.Helper()
	def, err := config.Parse([]byte(`
listener "l" { address = "127.0.0.1:1" }
upstream "u" {
  server "127.0.0.1:2" {}
  health_check {}
}
route "r" { upstream = "u" }
`), "defaults.hcl")
	if err != nil {
		t.Fatalf("config defaults: %v", err)
	}
	du := def.Upstreams[0]
	if u.Balance == "" {
		u.Balance = du.Balance
	}
	u.Servers = slices.Clone(u.Servers)
	for i := range u.Servers {
		s := &u.Servers[i]
		if s.Weight == 0 {
			s.Weight = du.Servers[0].Weight
		}
		if s.FailTimeout == 0 {
			s.FailTimeout = du.Servers[0].FailTimeout
		}
	}
	if u.HealthCheck != nil {
		h, dh := *u.HealthCheck, du.HealthCheck
		if h.Path == "" {
			h.Path = dh.Path
		}
		if h.Interval == 0 {
			h.Interval = dh.Interval
		}
		if h.Timeout == 0 {
			h.Timeout = dh.Timeout
		}
		if h.Healthy == 0 {
			h.Healthy = dh.Healthy
		}
		if h.Unhealthy == 0 {
			h.Unhealthy = dh.Unhealthy
		}
		if h.ExpectStatus == nil {
			h.ExpectStatus = dh.ExpectStatus
		}
		u.HealthCheck = &h
	}
	return u
}

// server returns the pool's server with address addr.
func server(t testing.TB, p *Pool, addr string) *Server {
	t.Helper()
	for _, s := range p.Servers() {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("no server %q", addr)
	return nil
}

// testLogger logs at debug level to a file in the test's directory, and
// returns a function that reads what was logged so far: a file needs no
// lock of the test's while health checks write to it.
func testLogger(t testing.TB) (hclog.Logger, func() string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "upstream.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	logged := func() string {
		b, _ := os.ReadFile(f.Name())
		return string(b)
	}
	return hclog.New(&hclog.LoggerOptions{Output: f, Level: hclog.Debug}), logged
}

// eventually polls cond every 5ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// setActiveDown sets the active checks' verdict on s, as checks at the
// thresholds would.
func setActiveDown(s *Server, down bool) {
	s.health().active.Store(packActive(down, 0, 0, 0))
}
