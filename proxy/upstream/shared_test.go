package upstream

import (
	"errors"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pingora-go/pingora/config"
)

// sharedPool is NewPool of cfg (completed by configured) in table.
func sharedPool(t *testing.T, table *HealthTable, cfg config.Upstream) *Pool {
	t.Helper()
	p, err := NewPool(configured(t, cfg), table, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// mappedTables maps one memfd of HealthTableSize twice: two mappings in
// one process share memory exactly as two workers' do.
func mappedTables(t *testing.T) (*HealthTable, *HealthTable) {
	t.Helper()
	fd, err := unix.MemfdCreate("health-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "health-test")
	defer f.Close()
	if err := f.Truncate(HealthTableSize); err != nil {
		t.Fatal(err)
	}
	a, err := MapHealthTable(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := MapHealthTable(f)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func twoServers(check *config.HealthCheck) config.Upstream {
	return config.Upstream{Name: "app", HealthCheck: check, Servers: []config.Server{
		{Address: "10.0.0.1:80", MaxFails: 3, FailTimeout: time.Hour},
		{Address: "10.0.0.2:80", MaxFails: 3, FailTimeout: time.Hour},
	}}
}

func TestSharedPassiveFailuresCountAcrossMappings(t *testing.T) {
	ta, tb := mappedTables(t)
	a := sharedPool(t, ta, twoServers(nil))
	b := sharedPool(t, tb, twoServers(nil))
	now := time.Now()
	sa, sb := a.Servers()[0], b.Servers()[0]
	sa.Fail(now)
	sb.Fail(now)
	if !sa.Healthy() || !sb.Healthy() {
		t.Fatal("down after 2 of 3 max_fails")
	}
	sa.Fail(now)
	if sa.Healthy() || sb.Healthy() {
		t.Fatalf("3 failures from two workers with max_fails 3: healthy %v / %v, want down in both", sa.Healthy(), sb.Healthy())
	}
	if !a.Servers()[1].Healthy() || !b.Servers()[1].Healthy() {
		t.Fatal("the other server went down with it")
	}
	if d := sb.Stats().Disabled; d != 1 {
		t.Fatalf("disabled %d, want 1 (one marking, seen by both)", d)
	}
	// A success anywhere ends the count everywhere.
	sb.Succeed()
	if n, _ := unpackPassive(sa.health().passive.Load()); n != 0 {
		t.Fatalf("count %d after a success, want 0", n)
	}
}

func TestSharedOtherUpstreamOtherSlot(t *testing.T) {
	table := NewPrivateHealthTable(4)
	a := sharedPool(t, table, twoServers(nil))
	other := twoServers(nil)
	other.Name = "other"
	b := sharedPool(t, table, other)
	for i := range a.Servers() {
		if a.Servers()[i].sh == b.Servers()[i].sh || a.Servers()[i].sh == nil {
			t.Fatal("two upstreams share a server's slot")
		}
	}
	if st := table.Stats(); st.Used != 4 || st.Overflows != 0 {
		t.Fatalf("stats %+v, want 4 used", st)
	}
}

func TestSharedConcurrentUpdatesAllCount(t *testing.T) {
	ta, tb := mappedTables(t)
	cfg := twoServers(nil)
	cfg.Servers[0].MaxFails = 1 << 30
	a := sharedPool(t, ta, cfg)
	b := sharedPool(t, tb, cfg)
	hc := newHealthConfig(config.HealthCheck{Healthy: 1 << 20, Unhealthy: 1 << 20})
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	now := time.Now()
	for g := range goroutines {
		s := a.Servers()[0]
		if g%2 == 1 {
			s = b.Servers()[0]
		}
		c := &checker{cfg: hc, server: s, log: hclog.NewNullLogger()}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				s.Fail(now)
				c.record(errors.New("refused"), now)
			}
		}()
	}
	wg.Wait()
	h := a.Servers()[0].health()
	if n, _ := unpackPassive(h.passive.Load()); n != goroutines*each {
		t.Fatalf("passive count %d, want %d", n, goroutines*each)
	}
	if down, fails, _, _ := unpackActive(h.active.Load()); fails != goroutines*each || down {
		t.Fatalf("active fails %d (down %v), want %d, up", fails, down, goroutines*each)
	}
}

// TestSharedKillBetweenCountAndMark is what a worker killed between the
// two steps of a passive marking leaves (the count at max_fails, no down
// period): the server keeps serving, on probation, and the next failure
// from any worker marks it.
func TestSharedKillBetweenCountAndMark(t *testing.T) {
	ta, tb := mappedTables(t)
	a := sharedPool(t, ta, twoServers(nil))
	b := sharedPool(t, tb, twoServers(nil))
	now := time.Now()
	h := a.Servers()[0].health()
	h.passive.Store(packPassive(3, now.UnixNano()))
	if !a.Servers()[0].Healthy() {
		t.Fatal("down without a down period")
	}
	b.Servers()[0].Fail(now)
	if a.Servers()[0].Healthy() {
		t.Fatal("a failure on probation did not mark the server")
	}
}

func TestSharedVerdictSurvivesNewPool(t *testing.T) {
	table := NewPrivateHealthTable(4)
	hc := fastCheck()
	old := sharedPool(t, table, twoServers(&hc))
	c := &checker{cfg: newHealthConfig(hc), server: old.Servers()[0], log: hclog.NewNullLogger()}
	for range hc.Unhealthy {
		c.record(errors.New("refused"), time.Now())
	}
	old.Close()
	// A reload: a new pool of the same config finds the verdict.
	fresh := sharedPool(t, table, twoServers(&hc))
	if s := fresh.Servers()[0]; s.Healthy() || s.Stats().ActiveUp || s.Stats().ActiveSince.IsZero() {
		t.Fatalf("the new pool sees %+v, want the old verdict (down, with its time)", s.Stats())
	}
	if !fresh.Servers()[1].Healthy() {
		t.Fatal("the other server is down")
	}
	// A reload that drops the checks: the verdict no longer counts, and
	// is cleared so that checks enabled later start from up.
	unchecked := sharedPool(t, table, twoServers(nil))
	if !unchecked.Servers()[0].Healthy() {
		t.Fatal("a pool without checks honours a check's verdict")
	}
	unchecked.Start()
	if !fresh.Servers()[0].Healthy() {
		t.Fatal("the verdict survived a pool without checks")
	}
}

func TestSharedTableFullKeepsOwnHealth(t *testing.T) {
	table := NewPrivateHealthTable(0) // minTableSlots slots
	cfg := config.Upstream{Name: "big"}
	for i := range minTableSlots + 2 {
		cfg.Servers = append(cfg.Servers, config.Server{Address: string(rune('a'+i)) + ":1", MaxFails: 1, FailTimeout: time.Hour})
	}
	p := sharedPool(t, table, cfg)
	own := 0
	for _, s := range p.Servers() {
		if s.sh == nil {
			own++
		}
	}
	if st := table.Stats(); own != 2 || st.Used != minTableSlots || st.Overflows != 2 {
		t.Fatalf("%d servers without a slot, stats %+v; want 2, full, 2 overflows", own, st)
	}
	last := p.Servers()[len(p.Servers())-1]
	last.Fail(time.Now())
	if last.Healthy() {
		t.Fatal("a server without a shared slot is never marked")
	}
}

func TestSharedStaleSlotIsReused(t *testing.T) {
	table := NewPrivateHealthTable(0)
	now := time.Now()
	cfg := config.Upstream{Name: "churn"}
	for i := range minTableSlots {
		cfg.Servers = append(cfg.Servers, config.Server{Address: string(rune('a'+i)) + ":1", MaxFails: 1, FailTimeout: time.Hour})
	}
	p := sharedPool(t, table, cfg)
	p.Servers()[0].Fail(now)
	// Every slot is taken; after staleAfter without a touch, a new server
	// takes one, with none of its state.
	if s := table.slot("churn", "new:1", now); s != nil {
		t.Fatal("a fresh slot was taken")
	}
	later := now.Add(staleAfter + time.Minute)
	s := table.slot("churn", "new:1", later)
	if s == nil {
		t.Fatal("no stale slot reused")
	}
	if s.passive.Load() != 0 || s.downUntil.Load() != 0 || s.active.Load() != 0 {
		t.Fatal("the reused slot kept its previous server's state")
	}
	if again := table.slot("churn", "new:1", later); again != s {
		t.Fatal("the new server's slot is not found again")
	}
}

func TestSharedTableRefusesOtherLayout(t *testing.T) {
	ta, _ := mappedTables(t)
	ta.hdr.magic.Store(1)
	if _, err := attachTable(ta.mem); err == nil {
		t.Fatal("attached to another layout")
	}
}

// TestSharedChecksOncePerInterval: four pools (four workers) sharing a
// table make one check per interval between them, and all follow the one
// verdict.
func TestSharedChecksOncePerInterval(t *testing.T) {
	b := newBackend(t)
	ta, tb := mappedTables(t)
	hc := fastCheck()
	hc.Interval = 50 * time.Millisecond
	cfg := config.Upstream{Name: "app", HealthCheck: &hc, Servers: []config.Server{{Address: b.addr()}}}
	var pools []*Pool
	for i := range 4 {
		table := ta
		if i%2 == 1 {
			table = tb
		}
		pools = append(pools, sharedPool(t, table, cfg))
	}
	start := time.Now()
	for _, p := range pools {
		p.Start()
	}
	eventually(t, 10*time.Second, "10 checks", func() bool { return b.hits.Load() >= 10 })
	elapsed := time.Since(start)
	hits := b.hits.Load()
	// A slow machine makes fewer checks, never more: this bound holds
	// however loaded the machine is, and four unshared checkers would be
	// four times over it.
	if limit := int64(elapsed/hc.Interval) + 2; hits > limit {
		t.Fatalf("%d checks in %v with a %v interval from 4 pools, want at most %d", hits, elapsed, hc.Interval, limit)
	}
	if c := int64(pools[3].Servers()[0].Stats().Checks); c < hits-1 || c > hits {
		t.Fatalf("checks counter %d, backend got %d", c, hits)
	}

	b.status.Store(503)
	eventually(t, 10*time.Second, "server down", func() bool { return !pools[0].Servers()[0].Healthy() })
	for i, p := range pools {
		if p.Servers()[0].Healthy() {
			t.Fatalf("pool %d still sees the server up", i)
		}
	}
	b.status.Store(200)
	eventually(t, 10*time.Second, "server up", func() bool { return pools[2].Servers()[0].Healthy() })
	for i, p := range pools {
		if !p.Servers()[0].Healthy() {
			t.Fatalf("pool %d still sees the server down", i)
		}
	}
}

// TestSharedNewServerOneSlot: the workers of a new generation take a
// slot for a new server at once, in a table with only stale slots left;
// they all end up in the same one.
func TestSharedNewServerOneSlot(t *testing.T) {
	table := NewPrivateHealthTable(0)
	now := time.Now()
	for i := range minTableSlots {
		if table.slot("old", string(rune('a'+i)), now) == nil {
			t.Fatal("table full early")
		}
	}
	later := now.Add(staleAfter + time.Minute)
	const workers = 8
	got := make([]*sharedSlot, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = table.slot("app", "new:1", later)
		}()
	}
	wg.Wait()
	for i, s := range got {
		if s == nil || s != got[0] {
			t.Fatalf("worker %d got slot %p, worker 0 %p: want one slot for all", i, s, got[0])
		}
	}
	if st := table.Stats(); st.Overflows != 0 {
		t.Fatalf("%d overflows", st.Overflows)
	}
}

// TestSharedAbandonedClaimExpires: a worker killed during a check leaves
// its claim on the next due time (the check's timeout past its start).
// Another worker makes the next check once the claim runs out, not before
// (the checks of one server never overlap) and not never.
func TestSharedAbandonedClaimExpires(t *testing.T) {
	b := newBackend(t)
	table := NewPrivateHealthTable(1)
	hc := fastCheck()
	hc.Timeout = 300 * time.Millisecond // the claim's length: past the 20ms interval
	p := sharedPool(t, table, config.Upstream{Name: "app", HealthCheck: &hc, Servers: []config.Server{{Address: b.addr()}}})
	claimed := time.Now().Add(hc.Timeout)
	p.Servers()[0].health().due.Store(monoNow() + int64(hc.Timeout))
	var first time.Time
	var once sync.Once
	b.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { first = time.Now() })
		b.hits.Add(1)
	})
	p.Start()
	eventually(t, 10*time.Second, "a check", func() bool { return b.hits.Load() >= 1 })
	p.Close()
	if first.Before(claimed) {
		t.Fatalf("checked %v before the abandoned claim ran out", claimed.Sub(first))
	}
}

// The layout's slot is one cache line: the table's size and offsets
// depend on it.
func TestSharedSlotIsOneCacheLine(t *testing.T) {
	if n := unsafe.Sizeof(sharedSlot{}); n != slotBytes {
		t.Fatalf("sharedSlot is %d bytes, the layout says %d", n, slotBytes)
	}
	if n := unsafe.Sizeof(tableHeader{}); n > tableHeaderSize {
		t.Fatalf("header is %d bytes, more than its %d", n, tableHeaderSize)
	}
}
