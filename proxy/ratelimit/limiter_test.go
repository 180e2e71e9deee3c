package ratelimit

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSteadyRate(t *testing.T) {
	l := New(10, time.Second, 0)
	defer l.Close()
	key := []byte("10.0.0.1")
	t0 := time.Now()
	// One request per millisecond for 10 simulated seconds: exactly one
	// every 100ms gets through.
	allowed := 0
	for ms := range 10_000 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		if ok, _ := l.Allow(key, now); ok {
			allowed++
			if ms%100 != 0 {
				t.Fatalf("admitted at +%dms, want only on 100ms marks", ms)
			}
		}
	}
	if allowed != 100 {
		t.Fatalf("admitted %d in 10s at 10/s, want 100", allowed)
	}
}

func TestBurstAndRetryAfter(t *testing.T) {
	l := New(10, time.Second, 5)
	defer l.Close()
	key := []byte("10.0.0.1")
	t0 := time.Now()
	for i := range 6 {
		if ok, ra := l.Allow(key, t0); !ok {
			t.Fatalf("request %d of 1+burst(5) refused, retry after %v", i+1, ra)
		}
	}
	ok, ra := l.Allow(key, t0)
	if ok || ra != 100*time.Millisecond {
		t.Fatalf("7th at once: ok=%v retryAfter=%v, want refused, 100ms", ok, ra)
	}
	// retryAfter is exactly the time until the next token.
	if ok, ra := l.Allow(key, t0.Add(30*time.Millisecond)); ok || ra != 70*time.Millisecond {
		t.Fatalf("at +30ms: ok=%v retryAfter=%v, want refused, 70ms", ok, ra)
	}
	if ok, _ := l.Allow(key, t0.Add(100*time.Millisecond)); !ok {
		t.Fatal("refused once retryAfter had passed")
	}
	if ok, _ := l.Allow(key, t0.Add(100*time.Millisecond)); ok {
		t.Fatal("two admitted on one refilled token")
	}
	// Idle for a long time: the bucket is full again, but holds no more
	// than 1+burst.
	later := t0.Add(time.Hour)
	n := 0
	for {
		if ok, _ := l.Allow(key, later); !ok {
			break
		}
		n++
	}
	if n != 6 {
		t.Fatalf("after an idle hour %d admitted at once, want 1+burst = 6", n)
	}
}

func TestRefusalsDoNotCost(t *testing.T) {
	l := New(1, time.Second, 0)
	defer l.Close()
	key := []byte("k")
	t0 := time.Now()
	l.Allow(key, t0)
	for ms := 1; ms < 1000; ms++ {
		if ok, _ := l.Allow(key, t0.Add(time.Duration(ms)*time.Millisecond)); ok {
			t.Fatalf("admitted at +%dms", ms)
		}
	}
	// Hammering while refused must not push the next token further out.
	if ok, _ := l.Allow(key, t0.Add(time.Second)); !ok {
		t.Fatal("refused requests delayed the next token")
	}
}

func TestPerKeyIsolation(t *testing.T) {
	l := New(1, time.Minute, 0)
	defer l.Close()
	t0 := time.Now()
	if ok, _ := l.Allow([]byte("a"), t0); !ok {
		t.Fatal("first a refused")
	}
	if ok, ra := l.Allow([]byte("a"), t0); ok || ra != time.Minute {
		t.Fatalf("second a: %v %v", ok, ra)
	}
	for _, k := range []string{"b", "c", "a ", "A"} {
		if ok, _ := l.Allow([]byte(k), t0); !ok {
			t.Fatalf("key %q refused because of a", k)
		}
	}
}

func TestEvictIdleFullBuckets(t *testing.T) {
	l := New(10, time.Second, 2)
	defer l.Close()
	t0 := time.Now()
	l.Allow([]byte("busy"), t0)
	l.Allow([]byte("busy"), t0)
	l.Allow([]byte("busy"), t0) // tat = t0+300ms
	l.Allow([]byte("light"), t0)
	if l.Len() != 2 {
		t.Fatalf("Len %d, want 2", l.Len())
	}
	l.evict(t0.Add(150 * time.Millisecond))
	if l.Len() != 1 {
		t.Fatalf("after 150ms Len %d, want 1 (light full again, busy not)", l.Len())
	}
	// Eviction keeps what matters: busy is still limited.
	for range 2 {
		l.Allow([]byte("busy"), t0.Add(150*time.Millisecond))
	}
	if ok, _ := l.Allow([]byte("busy"), t0.Add(150*time.Millisecond)); ok {
		t.Fatal("eviction reset a bucket that was not full")
	}
	l.evict(t0.Add(time.Hour))
	if l.Len() != 0 {
		t.Fatalf("after an hour Len %d, want 0", l.Len())
	}
}

func TestJanitorEvictsAndCloseStops(t *testing.T) {
	l := newLimiter(1000, time.Second, 0, 5*time.Millisecond)
	for i := range 100 {
		l.Allow(fmt.Appendf(nil, "client-%d", i), time.Now())
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("janitor left %d full buckets", l.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if janitors() != 1 {
		t.Fatalf("%d janitors running, want 1", janitors())
	}
	l.Close()
	l.Close()
	if n := janitors(); n != 0 {
		t.Fatalf("%d janitors after Close", n)
	}
	if ok, _ := l.Allow([]byte("x"), time.Now()); !ok {
		t.Fatal("closed limiter refused a fresh key")
	}
}

func janitors() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "ratelimit.(*Limiter).janitor")
}

func TestShardCapBoundsMemory(t *testing.T) {
	l := New(1, time.Hour, 0)
	defer l.Close()
	l.perShard = 8
	t0 := time.Now()
	for i := range 10_000 {
		l.Allow(fmt.Appendf(nil, "attacker-%d", i), t0)
	}
	if n := l.Len(); n > numShards*8 {
		t.Fatalf("%d buckets held, cap %d", n, numShards*8)
	}
	// New keys are still admitted (the limit errs lenient under a flood).
	if ok, _ := l.Allow([]byte("legit"), t0); !ok {
		t.Fatal("new key refused with shards full")
	}
}

func TestConcurrentBurstExact(t *testing.T) {
	l := New(1, time.Hour, 49)
	defer l.Close()
	now := time.Now()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if ok, _ := l.Allow([]byte("shared"), now); ok {
					admitted.Add(1)
				}
				l.Allow([]byte("other"), now)
			}
		}()
	}
	wg.Wait()
	if n := admitted.Load(); n != 50 {
		t.Fatalf("800 concurrent requests admitted %d, want 1+burst = 50", n)
	}
}

func TestZeroAlloc(t *testing.T) {
	l := New(100, time.Second, 10)
	defer l.Close()
	key := []byte("198.51.100.23")
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() {
		l.Allow(key, now)
	}); n != 0 {
		t.Fatalf("Allow (hit) allocates %v", n)
	}
	i := 0
	keys := make([][]byte, 2000)
	for j := range keys {
		keys[j] = fmt.Appendf(nil, "new-%d", j)
	}
	// A new key may grow a map now and then; amortized it is ~0.
	if n := testing.AllocsPerRun(1000, func() {
		l.Allow(keys[i], now)
		i++
	}); n > 0.1 {
		t.Fatalf("Allow (miss) allocates %v per call", n)
	}
}

func TestDegenerateArguments(t *testing.T) {
	var nilL *Limiter
	if ok, _ := nilL.Allow([]byte("k"), time.Now()); !ok {
		t.Fatal("nil limiter refused")
	}
	nilL.Close()
	var zero Limiter
	if ok, _ := zero.Allow([]byte("k"), time.Now()); !ok {
		t.Fatal("zero limiter refused")
	}
	zero.Close()
	l := New(0, 0, -3) // clamped: 1 per second, no burst
	defer l.Close()
	t0 := time.Now()
	l.Allow(nil, t0)
	if ok, ra := l.Allow(nil, t0); ok || ra != time.Second {
		t.Fatalf("clamped limiter: %v %v, want refused for 1s", ok, ra)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{
		0: 1, time.Millisecond: 1, time.Second: 1, time.Second + 1: 2, 59500 * time.Millisecond: 60,
	} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(1_000_000, time.Second, 100)
	defer l.Close()
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "10.0.%d.%d", i/256, i%256)
	}
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(keys[i&1023], now)
		i++
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	l := New(1_000_000, time.Second, 100)
	defer l.Close()
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "10.0.%d.%d", i/256, i%256)
	}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i&1023], now)
			i++
		}
	})
}
