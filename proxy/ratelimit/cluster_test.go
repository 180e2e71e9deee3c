package ratelimit

import (
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/proxy/ratelimit/redistest"
)

// newTestStore connects a Store to srv and waits until it is up, as a
// worker's would be before traffic matters.
func newTestStore(t *testing.T, srv *redistest.Server, log hclog.Logger) *Store {
	t.Helper()
	s := NewStore(StoreOptions{Name: srv.URL(0), Addr: srv.Addr}, log)
	t.Cleanup(s.Close)
	waitUntil(t, 5*time.Second, "the store to be up", s.Up)
	return s
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// flood sends requests for key through every gate at once, each from two
// goroutines about every 200µs (far above the limits tested), for d, and
// returns how many were admitted and the time from the first request to
// the last.
func flood(gates []Admitter, key string, d time.Duration) (admitted int64, elapsed time.Duration) {
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for _, g := range gates {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k := []byte(key)
				for now := time.Now(); now.Before(end); now = time.Now() {
					if ok, _ := g.Allow(k, now); ok {
						n.Add(1)
					}
					time.Sleep(200 * time.Microsecond)
				}
			}()
		}
	}
	wg.Wait()
	return n.Load(), time.Since(start)
}

// TestClusterSharesTheLimit: two "instances" (each its own store
// connection and limiter, as two machines' workers have) flooding one key
// at 200/s shared admit 200/s together, not 200/s each.
func TestClusterSharesTheLimit(t *testing.T) {
	srv := redistest.Start(t)
	const rate = 200
	var gates []Admitter
	for range 2 {
		c := NewCluster(newTestStore(t, srv, nil), "api", rate, time.Second, 0, nil)
		t.Cleanup(c.Close)
		gates = append(gates, c)
	}
	admitted, elapsed := flood(gates, "10.0.0.1", 2*time.Second)
	want := rate * elapsed.Seconds()
	if math.Abs(float64(admitted)-want) > 0.05*want {
		t.Fatalf("two instances admitted %d in %v at %d/s shared, want %.0f ± 5%%", admitted, elapsed, rate, want)
	}
	t.Logf("admitted %d in %v (%.0f expected)", admitted, elapsed, want)
	// Another key has its own bucket.
	if ok, _ := gates[0].Allow([]byte("10.0.0.2"), time.Now()); !ok {
		t.Fatal("a fresh key was refused")
	}
}

// TestClusterFailsOpen: with the store stopped, requests are admitted on
// each worker's own limit (not refused, not waiting on the store), the
// outage is logged once and counted; with the store back, the shared
// limit applies again.
func TestClusterFailsOpen(t *testing.T) {
	srv := redistest.Start(t)
	const rate = 200
	var logBuf syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Info})
	stores, gates := clustersInOutage(t, srv, log, rate, nil)
	errs := stores[0].Errors()
	// Each of the two falls back to 200/s of its own: up to 400/s (a
	// little less: a worker's own limit with burst 0 loses the part of an
	// interval between the token and the next request).
	admitted, elapsed := flood(gates, "10.0.0.1", time.Second)
	if most := 2 * (rate*elapsed.Seconds() + 1); float64(admitted) > most || float64(admitted) < 0.8*most {
		t.Fatalf("store down: admitted %d in %v, want each instance's own %d/s: from 80%% of %.0f to all of it", admitted, elapsed, rate, most)
	}
	if stores[0].Errors() <= errs {
		t.Fatalf("store errors stayed at %d during the outage (reconnects failing)", errs)
	}
	if n := strings.Count(logBuf.String(), "rate limit store unreachable"); n != 2 {
		t.Fatalf("%d outage warnings from two stores, want one each:\n%s", n, logBuf.String())
	}

	srv.Restart()
	waitUntil(t, 5*time.Second, "both stores to reconnect", func() bool {
		return stores[0].Up() && stores[1].Up()
	})
	admitted, elapsed = flood(gates, "10.0.0.1", 2*time.Second)
	if want := rate * elapsed.Seconds(); math.Abs(float64(admitted)-want) > 0.05*want {
		t.Fatalf("store back: admitted %d in %v, want %d/s shared: %.0f ± 5%%", admitted, elapsed, rate, want)
	}
	if n := strings.Count(logBuf.String(), "rate limit store reachable again"); n != 2 {
		t.Fatalf("%d recovery messages from two stores, want one each:\n%s", n, logBuf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// leasedCluster is a Cluster whose store counts as up, with keys holding
// large balances: what Allow costs when leases are local, without a store
// round trip in the measure.
func leasedCluster(tb testing.TB, keys [][]byte) *Cluster {
	s := &Store{reqs: make(chan leaseRequest, queueLen), stop: make(chan struct{}), done: make(chan struct{})}
	s.state.Store(1<<1 | 1)
	c := NewCluster(s, "bench", 1_000_000, time.Second, 100, nil)
	tb.Cleanup(c.Close)
	now := time.Now()
	for _, k := range keys {
		c.Allow(k, now)
		h := maphash.Bytes(c.seed, k)
		e := c.shards[h%numShards].m[h]
		e.granted, e.fetching, e.bal = true, false, math.MaxInt64/2
	}
	return c
}

func benchKeys() [][]byte {
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "10.0.%d.%d", i/256, i%256)
	}
	return keys
}

func TestClusterLeasedAllowDoesNotAllocate(t *testing.T) {
	keys := benchKeys()
	c := leasedCluster(t, keys)
	now := time.Now()
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		if ok, _ := c.Allow(keys[i&1023], now); !ok {
			t.Fatal("refused with a balance")
		}
		i++
	}); n != 0 {
		t.Fatalf("Allow with a leased balance allocates %v", n)
	}
}

func BenchmarkClusterAllowLeased(b *testing.B) {
	keys := benchKeys()
	c := leasedCluster(b, keys)
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Allow(keys[i&1023], now)
		i++
	}
}

func BenchmarkClusterAllowLeasedParallel(b *testing.B) {
	keys := benchKeys()
	c := leasedCluster(b, keys)
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Allow(keys[i&1023], now)
			i++
		}
	})
}

// BenchmarkClusterAllowRedis is the cost per request against a real
// store at a limit the requests stay under: leases are spent locally and
// refilled in the background, so this is Allow plus the amortized lease
// traffic's share of the limiter's locks.
func BenchmarkClusterAllowRedis(b *testing.B) {
	srv := redistest.Start(b)
	s := NewStore(StoreOptions{Name: srv.URL(0), Addr: srv.Addr}, nil)
	b.Cleanup(s.Close)
	deadline := time.Now().Add(5 * time.Second)
	for !s.Up() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !s.Up() {
		b.Fatal("store not up")
	}
	c := NewCluster(s, "bench", 100_000_000, time.Second, 1000, nil)
	b.Cleanup(c.Close)
	keys := benchKeys()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Allow(keys[i&1023], time.Now())
		i++
	}
}

// TestClusterFallsBackOnTheMachine: two workers of one machine (each its
// own store connection and Cluster, one shared zone) admit one limit
// together while the store is down, not one each.
func TestClusterFallsBackOnTheMachine(t *testing.T) {
	srv := redistest.Start(t)
	const rate = 200
	z := mapZone(t, newMemfd(t, 1<<20))
	machine := z.Limit(LimitID("api", rate, time.Second, 0, "client_ip"), rate, time.Second, 0)
	_, gates := clustersInOutage(t, srv, nil, rate, machine)
	// One limit for the machine (the flood's gaps can only lower it).
	admitted, elapsed := flood(gates, "10.0.0.1", time.Second)
	if most := rate*elapsed.Seconds() + 1; float64(admitted) > most*1.02 || float64(admitted) < 0.8*most {
		t.Fatalf("store down: two workers admitted %d in %v, want the machine's %d/s: from 80%% of %.0f to all of it", admitted, elapsed, rate, most)
	}
}

// clustersInOutage makes two Clusters of rate a second on route "api",
// each with a store connection of its own (logging to log) and machine as
// their fallback, then stops srv and waits until both stores know.
func clustersInOutage(t *testing.T, srv *redistest.Server, log hclog.Logger, rate int, machine Admitter) ([]*Store, []Admitter) {
	t.Helper()
	var stores []*Store
	var gates []Admitter
	for range 2 {
		s := newTestStore(t, srv, log)
		c := NewCluster(s, "api", rate, time.Second, 0, machine)
		t.Cleanup(c.Close)
		stores = append(stores, s)
		gates = append(gates, c)
	}
	srv.Stop()
	waitUntil(t, 5*time.Second, "both stores to notice the outage", func() bool {
		return !stores[0].Up() && !stores[1].Up()
	})
	return stores, gates
}
