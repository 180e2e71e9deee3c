package ratelimit

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newMemfd is a memfd of size bytes, as the master creates it.
func newMemfd(t testing.TB, size int64) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate("test-zone", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatalf("memfd_create: %v", err)
	}
	f := os.NewFile(uintptr(fd), "test-zone")
	if err := f.Truncate(size); err != nil {
		t.Fatalf("ftruncate: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mapZone(t testing.TB, f *os.File) *Zone {
	t.Helper()
	z, err := MapZone(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(z.mem) })
	return z
}

// TestSipHashVector checks the hash against SipHash-2-4's reference
// vector (key 00..0f, message 00..0e), the first 8 bytes as the id.
func TestSipHashVector(t *testing.T) {
	var key, msg [16]byte
	for i := range key {
		key[i] = byte(i)
		msg[i] = byte(i)
	}
	k0, k1 := binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])
	id := binary.LittleEndian.Uint64(msg[:8])
	if got, want := sipHash(k0, k1, id, msg[8:15]), uint64(0xa129ca6149be45e5); got != want {
		t.Fatalf("sipHash = %#x, want %#x", got, want)
	}
	// 8 + 0 and 8 + 8 bytes: the reference list's entries 8 and 16.
	if got, want := sipHash(k0, k1, id, nil), uint64(0x93f5f5799a932462); got != want {
		t.Fatalf("sipHash(8 bytes) = %#x, want %#x", got, want)
	}
	if got, want := sipHash(k0, k1, id, msg[8:16]), uint64(0x3f2acc7f57c29bdb); got != want {
		t.Fatalf("sipHash(16 bytes) = %#x, want %#x", got, want)
	}
}

func TestSharedSteadyRate(t *testing.T) {
	z, err := NewPrivateZone(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	l := z.Limit(LimitID("r", 10, time.Second, 0, "client_ip"), 10, time.Second, 0)
	key := []byte("10.0.0.1")
	t0 := time.Now()
	allowed := 0
	for ms := range 10_000 {
		if ok, _ := l.Allow(key, t0.Add(time.Duration(ms)*time.Millisecond)); ok {
			allowed++
			if ms%100 != 0 {
				t.Fatalf("admitted at +%dms, want only on 100ms marks", ms)
			}
		}
	}
	if allowed != 100 {
		t.Fatalf("admitted %d in 10s at 10/s, want 100", allowed)
	}
	if ok, ra := l.Allow(key, t0.Add(9999*time.Millisecond)); ok || ra != time.Millisecond {
		t.Fatalf("at +9999ms: ok=%v retryAfter=%v, want refused, 1ms", ok, ra)
	}
}

// TestSharedAcrossMappings: two mappings of one memfd (as two workers
// have) share buckets, and a limit with other parameters does not.
func TestSharedAcrossMappings(t *testing.T) {
	f := newMemfd(t, 64<<10)
	a, b := mapZone(t, f), mapZone(t, f)
	id := LimitID("r", 1, time.Hour, 2, "client_ip")
	la, lb := a.Limit(id, 1, time.Hour, 2), b.Limit(id, 1, time.Hour, 2)
	key := []byte("192.0.2.7")
	now := time.Now()
	admitted := 0
	for i := range 10 {
		l := la
		if i%2 == 1 {
			l = lb
		}
		if ok, _ := l.Allow(key, now); ok {
			admitted++
		}
	}
	if admitted != 3 {
		t.Fatalf("two mappings admitted %d at once with burst 2, want 3 together", admitted)
	}
	other := b.Limit(LimitID("r", 1, time.Hour, 3, "client_ip"), 1, time.Hour, 3)
	if ok, _ := other.Allow(key, now); !ok {
		t.Fatal("a limit with other parameters shares the old one's bucket")
	}
}

// TestSharedConcurrentExact: goroutines racing on one key through two
// mappings admit exactly 1+burst.
func TestSharedConcurrentExact(t *testing.T) {
	f := newMemfd(t, 64<<10)
	zs := []*Zone{mapZone(t, f), mapZone(t, f)}
	const burst = 50
	id := LimitID("r", 1, time.Hour, burst, "client_ip")
	now := time.Now()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		l := zs[g%2].Limit(id, 1, time.Hour, burst)
		wg.Go(func() {
			for range 200 {
				if ok, _ := l.Allow([]byte("k"), now); ok {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := admitted.Load(); n != burst+1 {
		t.Fatalf("admitted %d, want %d", n, burst+1)
	}
}

// TestZoneEvictsOldest: more live keys than slots evict, least recently
// limited first, and count it; a key of the current window keeps its
// state.
func TestZoneEvictsOldest(t *testing.T) {
	z, err := NewPrivateZone(headerSize + minSlots*slotSize)
	if err != nil {
		t.Fatal(err)
	}
	l := z.Limit(1, 1, time.Hour, 0)
	now := time.Now()
	key := func(i int) []byte { return fmt.Appendf(nil, "k%d", i) }
	for i := range minSlots {
		l.Allow(key(i), now.Add(time.Duration(i)*time.Millisecond))
	}
	before := z.Stats(now).Evictions
	for i := minSlots; i < 4*minSlots; i++ {
		l.Allow(key(i), now.Add(time.Duration(i)*time.Millisecond))
	}
	st := z.Stats(now)
	if st.Evictions <= before {
		t.Fatalf("4x more live keys than slots, evictions %d", st.Evictions)
	}
	if st.Used != st.Slots {
		t.Fatalf("used %d of %d slots, want all (every bucket is live for an hour)", st.Used, st.Slots)
	}
	// The newest key is still limited: eviction took older ones.
	last := key(4*minSlots - 1)
	if ok, _ := l.Allow(last, now.Add(4*minSlots*time.Millisecond)); ok {
		t.Fatal("the most recently limited key was forgotten")
	}
	// Expired buckets are reused without counting evictions.
	later := now.Add(2 * time.Hour)
	st = z.Stats(later)
	if st.Used != 0 {
		t.Fatalf("an hour after, %d slots still live", st.Used)
	}
	// (probe new keys: never enough to fill a window by themselves)
	for i := 10000; i < 10000+probe; i++ {
		l.Allow(key(i), later)
	}
	if got := z.Stats(later).Evictions; got != st.Evictions {
		t.Fatalf("reusing full buckets counted %d evictions", got-st.Evictions)
	}
}

func TestSharedZeroAlloc(t *testing.T) {
	z, err := NewPrivateZone(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	l := z.Limit(1, 100, time.Second, 10)
	key := []byte("198.51.100.23")
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() { l.Allow(key, now) }); n != 0 {
		t.Fatalf("Allow allocates %v per call", n)
	}
}

// envHammer makes the test binary the child of TestZoneSurvivesSIGKILL.
const envHammer = "PINGORA_RATELIMIT_HAMMER"

// hammerLimit is the limit the child hammers: tol+interval bound how far
// ahead of now any tat it writes may be.
const (
	hammerRequests = 1000
	hammerBurst    = 5
)

// TestZoneSurvivesSIGKILL: a process updating the zone from several
// threads as fast as it can (many keys, so claims and evictions too) is
// killed with SIGKILL mid-update. The zone must keep its header, hold no
// state a limit could not have written, and serve on exactly: every key
// the child touched is admitted again once its window has passed, and a
// fresh key gets exactly 1+burst.
func TestZoneSurvivesSIGKILL(t *testing.T) {
	if os.Getenv(envHammer) == "1" {
		hammer()
		return
	}
	const size = 64 << 10 // small: the child's keys overflow it
	f := newMemfd(t, size)
	z := mapZone(t, f)
	hdr := [4]uint64{z.hdr.magic.Load(), z.hdr.slots.Load(), z.hdr.k0.Load(), z.hdr.k1.Load()}

	cmd := exec.Command(os.Args[0], "-test.run=^TestZoneSurvivesSIGKILL$", "-test.count=1")
	cmd.Env = append(os.Environ(), envHammer+"=1")
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child says when its threads have each done many updates and
	// evictions are happening; it keeps going until killed.
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "hammering\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q, %v", line, err)
	}
	if z.Stats(time.Now()).Evictions == 0 {
		t.Error("the child evicted nothing: the test does not exercise claims")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	if err := cmd.Wait(); err == nil || cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", err)
	}

	// The checks run with a deadline: a zone a dead process left locked
	// would hang them.
	done := make(chan struct{})
	go func() {
		defer close(done)
		checkAfterKill(t, z, hdr)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the zone is unusable after the kill: Allow does not return")
	}
}

func checkAfterKill(t *testing.T, z *Zone, hdr [4]uint64) {
	if got := [4]uint64{z.hdr.magic.Load(), z.hdr.slots.Load(), z.hdr.k0.Load(), z.hdr.k1.Load()}; got != hdr {
		t.Errorf("header changed: %x, was %x", got, hdr)
	}
	now := time.Now()
	tnow := z.clock.mono(now)
	interval := int64(time.Second / hammerRequests)
	horizon := tnow + interval*(hammerBurst+1)
	for i := range z.slots {
		s := &z.slots[i]
		k, tat := s.key.Load(), s.tat.Load()
		if k == 0 && tat != 0 {
			t.Fatalf("slot %d: empty key with tat %d", i, tat)
		}
		if tat > horizon {
			t.Fatalf("slot %d: tat %v ahead of now, more than the limit can set (%v)", i,
				time.Duration(tat-tnow), time.Duration(horizon-tnow))
		}
	}
	// Past the horizon every key the child used starts with a full
	// bucket again.
	l := z.Limit(hammerID, hammerRequests, time.Second, hammerBurst)
	after := now.Add(time.Duration(interval * (hammerBurst + 2)))
	for i := range hammerKeys {
		if ok, _ := l.Allow(hammerKey(i), after); !ok {
			t.Fatalf("key %d refused after its window: its state is corrupt", i)
		}
	}
	fresh := z.Limit(LimitID("fresh", 1, time.Hour, 3, "client_ip"), 1, time.Hour, 3)
	admitted := 0
	for range 10 {
		if ok, _ := fresh.Allow([]byte("new"), after); ok {
			admitted++
		}
	}
	if admitted != 4 {
		t.Fatalf("fresh key after the kill: %d admitted at once, want 1+burst = 4", admitted)
	}
}

var hammerID = LimitID("hammer", hammerRequests, time.Second, hammerBurst, "client_ip")

// hammerKeys is more than the 64k zone's slots, so the child claims and
// evicts all the time.
const hammerKeys = 20000

func hammerKey(i int) []byte { return fmt.Appendf(nil, "10.%d.%d.%d", i>>16, (i>>8)&0xff, i&0xff) }

// hammer is the child: 4 threads updating the zone on fd 3 until killed.
func hammer() {
	z, err := MapZone(os.NewFile(3, "zone"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	l := z.Limit(hammerID, hammerRequests, time.Second, hammerBurst)
	var ops atomic.Int64
	const threads = 4
	for g := range threads {
		go func() {
			for i := g; ; i = (i + 7919) % hammerKeys {
				l.Allow(hammerKey(i), time.Now())
				ops.Add(1)
			}
		}()
	}
	for ops.Load() < 200_000 || z.hdr.evictions.Load() == 0 {
		time.Sleep(time.Millisecond) // polling our own progress, not waiting for time to pass
	}
	fmt.Println("hammering")
	select {}
}

func BenchmarkSharedLimiter(b *testing.B) {
	f := newMemfd(b, 10<<20)
	z := mapZone(b, f)
	l := z.Limit(LimitID("bench", 1_000_000, time.Second, 100, "client_ip"), 1_000_000, time.Second, 100)
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "203.0.%d.%d", i>>8, i&0xff)
	}
	start := time.Now()
	// At least 4 goroutines, on 1024 keys they share: the contention of 4
	// workers limiting the same clients. Each one's clock advances 250ns
	// a call, so a key comes back after its token refilled and every call
	// takes the admitting path (load, compute, CAS), the dearer one.
	b.SetParallelism(max(1, 4/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i&1023], start.Add(time.Duration(i)*250))
			i++
		}
	})
}
