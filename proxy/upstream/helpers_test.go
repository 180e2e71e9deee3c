package upstream

import (
	"bytes"
	"fmt"
	"sync"
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
	p, err := NewPool(cfg, nil)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	return p
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

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(w *syncBuffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: w, Level: hclog.Debug})
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
