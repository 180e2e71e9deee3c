package upstream

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/pingora-go/pingora/proxy/internal/shm"
)

// HealthTable is the health of every upstream server of a machine: a
// fixed-size table in memory that every worker maps (MAP_SHARED on a memfd
// the master created, as the rate-limit zone), so that all workers, and
// every generation of them, share one verdict per server, count passive
// failures together, and run each active check once per interval between
// them (see checker.run).
//
// Layout (native-endian 64-bit words; every process is the same binary on
// the same machine):
//
//	offset 0     magic: HealthTableLayout's tag, set by the first process to attach
//	offset 8     slot count, derived from the size
//	offset 16    overflows: servers that found no free slot (they keep a private one)
//	offset 4096  slots of 64 bytes (one cache line), see sharedSlot
//
// A slot is keyed by a hash of the upstream's name and the server's
// address, so a reload or an upgrade that keeps a server finds its state.
// Every change is an atomic operation on one word, and there are no
// locks: a worker killed at any instruction leaves each word valid and
// holds nothing the others wait for. The state that must change together
// (a verdict and its counters; a failure count and its window) is packed
// into one word; the steps of a passive marking (the count, then the down
// period) and of a slot's reuse may be cut apart by a kill, with the
// bounded effects their comments give.
type HealthTable struct {
	mem   []byte
	hdr   *tableHeader
	slots []sharedSlot
}

// HealthTableLayout names the layout above. The master keys the memory it
// hands over on a binary upgrade by this name (wire.HealthZoneLayout), so
// binaries with different layouts never share one.
const HealthTableLayout = "pingora-health-zone-v1"

// HealthTableSize is the size of the shared memory the master creates:
// room for 8192 servers, far more than a config holds, so that servers
// removed by reloads can keep their slots for a while (see staleAfter).
const HealthTableSize = tableHeaderSize + 8192*slotBytes

const (
	tableMagic      = 0x31764854484c5250 // "PRLHTHv1"
	tableHeaderSize = 4096
	slotBytes       = 64
	minTableSlots   = 16
	// staleAfter is how long a slot must have gone untouched before a new
	// server may take it: pools touch their slots every touchEvery, so
	// only servers no live pool has are that old.
	staleAfter = 10 * time.Minute
	touchEvery = time.Minute
)

type tableHeader struct {
	magic     atomic.Uint64
	slots     atomic.Uint64
	overflows atomic.Uint64
}

// sharedSlot is one server's shared health. Times are Unix nanoseconds
// (seconds or milliseconds where noted; every process reads the same wall
// clock, and a clock step can at worst shorten or lengthen one window),
// but for due.
type sharedSlot struct {
	key atomic.Uint64 // serverKey; 0: never used
	// active is the active checks' verdict with the counters that lead to
	// it: see packActive.
	active atomic.Uint64
	// due is when the next active check of the server may start, in
	// CLOCK_MONOTONIC nanoseconds; the worker that moves it forward (CAS)
	// makes the check.
	due atomic.Int64
	// passive is the passive failure count and its window: see
	// packPassive.
	passive atomic.Uint64
	// downUntil is when passive marking lets the server back in; 0: not
	// marked.
	downUntil atomic.Int64
	disabled  atomic.Uint64 // times passive marking took it out
	checks    atomic.Uint64 // active checks made, by every worker
	seen      atomic.Int64  // Unix seconds a live pool last touched the slot
}

// The active word: bit 63 down; bits 48-62 consecutive failures; bits
// 32-47 consecutive passes; bits 0-31 Unix seconds of the last verdict
// change (0: never changed, the server has been up since the slot was
// made).
const (
	activeDownBit = 1 << 63
	countMax      = 0x7fff
)

func packActive(down bool, fails, passes int, since int64) uint64 {
	w := uint64(min(fails, countMax))<<48 | uint64(min(passes, countMax))<<32 | uint64(uint32(since))
	if down {
		w |= activeDownBit
	}
	return w
}

func unpackActive(w uint64) (down bool, fails, passes int, since int64) {
	return w&activeDownBit != 0, int(w >> 48 & countMax), int(w >> 32 & 0xffff), int64(uint32(w))
}

// The passive word: bits 48-63 the failure count (capped), bits 0-47 the
// window's start in Unix milliseconds (8900 years of range).
const passiveMax = 0xffff

func packPassive(n int64, windowStart int64) uint64 {
	return uint64(min(n, passiveMax))<<48 | uint64(windowStart/int64(time.Millisecond))&(1<<48-1)
}

func unpackPassive(w uint64) (n int64, windowStart int64) {
	return int64(w >> 48), int64(w&(1<<48-1)) * int64(time.Millisecond)
}

// MapHealthTable maps the table the master passed (a memfd) and attaches
// to it. The mapping lives as long as the process.
func MapHealthTable(f *os.File) (*HealthTable, error) {
	mem, err := shm.Map(f, "health zone", tableHeaderSize+minTableSlots*slotBytes, 1<<30)
	if err != nil {
		return nil, err
	}
	t, err := attachTable(mem)
	if err != nil {
		shm.Unmap(mem)
		return nil, err
	}
	return t, nil
}

// NewPrivateHealthTable is a table in this process's own memory with room
// for servers servers, for a proxy that runs without a master: the machine
// is then this process.
func NewPrivateHealthTable(servers int) *HealthTable {
	n := max(2*servers, minTableSlots)
	words := make([]uint64, (tableHeaderSize+n*slotBytes)/8)
	t := layTable(unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8))
	t.hdr.magic.Store(tableMagic)
	t.hdr.slots.Store(uint64(len(t.slots)))
	return t
}

// layTable is the table over mem, of at least tableHeaderSize bytes.
func layTable(mem []byte) *HealthTable {
	n := (len(mem) - tableHeaderSize) / slotBytes
	return &HealthTable{
		mem:   mem,
		hdr:   (*tableHeader)(unsafe.Pointer(&mem[0])),
		slots: unsafe.Slice((*sharedSlot)(unsafe.Pointer(&mem[tableHeaderSize])), n),
	}
}

// attachTable checks or initialises the header with CASes from zero, so
// processes attaching at once agree.
func attachTable(mem []byte) (*HealthTable, error) {
	if len(mem) < tableHeaderSize+minTableSlots*slotBytes {
		return nil, errors.New("health zone: too small")
	}
	t := layTable(mem)
	n := uint64(len(t.slots))
	t.hdr.magic.CompareAndSwap(0, tableMagic)
	if m := t.hdr.magic.Load(); m != tableMagic {
		return nil, fmt.Errorf("health zone: unknown layout (magic %#x, want %#x)", m, uint64(tableMagic))
	}
	t.hdr.slots.CompareAndSwap(0, n)
	if got := t.hdr.slots.Load(); got != n {
		return nil, fmt.Errorf("health zone: header says %d slots, the size gives %d", got, n)
	}
	return t, nil
}

// serverKey is the identity of a server in the table: FNV-1a of the
// upstream's name and the server's address, never 0.
func serverKey(upstream, addr string) uint64 {
	h := uint64(14695981039346656037)
	add := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
		h ^= 0xff // a separator no name byte can fake
		h *= 1099511628211
	}
	add(upstream)
	add(addr)
	if h == 0 {
		h = 1
	}
	return h
}

// slot returns the slot of the server (upstream, addr), taking one if it
// has none: the first never used in its probe sequence, else the first
// untouched for staleAfter (its server left every config; its state is
// reset for the new one). nil when the table is full: the caller keeps a
// private slot.
func (t *HealthTable) slot(upstream, addr string, now time.Time) *sharedSlot {
	key := serverKey(upstream, addr)
	// Workers of a new generation look their servers up at once: one
	// that loses the race for a stale slot scans again, and finds the
	// slot the winner took for the same server, or another.
	for range 4 {
		s, stale, staleKey := t.find(key, now)
		if s != nil {
			s.touch(now)
			return s
		}
		if stale == nil {
			break
		}
		if stale.key.CompareAndSwap(staleKey, key) {
			// A kill between these stores leaves some of the previous
			// server's state: at worst one wrong verdict until the next
			// checks or fail_timeout correct it.
			stale.touch(now)
			stale.active.Store(0)
			stale.due.Store(0)
			stale.passive.Store(0)
			stale.downUntil.Store(0)
			return stale
		}
	}
	t.hdr.overflows.Add(1)
	return nil
}

// find returns key's slot, taking a never-used one for it if it has none;
// else (nil) the first slot untouched for staleAfter and its key, if any.
// Slots are never emptied, so a key lives before the first never-used
// slot of its sequence, or nowhere.
func (t *HealthTable) find(key uint64, now time.Time) (s, stale *sharedSlot, staleKey uint64) {
	n := uint64(len(t.slots))
	start := key % n
	for i := range n {
		s := &t.slots[(start+i)%n]
		k := s.key.Load()
		if k == key {
			return s, nil, 0
		}
		if k == 0 {
			if s.key.CompareAndSwap(0, key) || s.key.Load() == key {
				return s, nil, 0
			}
			continue
		}
		if stale == nil && now.Unix()-s.seen.Load() > int64(staleAfter/time.Second) {
			stale, staleKey = s, k
		}
	}
	return nil, stale, staleKey
}

func (s *sharedSlot) touch(now time.Time) { s.seen.Store(now.Unix()) }

// HealthTableStats is a table's fill, for status pages and metrics.
type HealthTableStats struct {
	Slots     int64  // servers it can hold
	Used      int64  // slots ever taken
	Overflows uint64 // servers that found no slot and keep their health to their own process
}

// Stats reads the table's fill.
func (t *HealthTable) Stats() HealthTableStats {
	st := HealthTableStats{Slots: int64(len(t.slots)), Overflows: t.hdr.overflows.Load()}
	for i := range t.slots {
		if t.slots[i].key.Load() != 0 {
			st.Used++
		}
	}
	return st
}
