package ratelimit

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pingora-go/pingora/proxy/internal/shm"
)

// Zone is the machine-wide rate-limit table: a fixed-size open-addressing
// hash table in memory that every worker maps (MAP_SHARED on the memfd the
// master created), so that one limit holds across all workers and across
// generations of workers.
//
// Layout (native-endian 64-bit words; every process is the same binary on
// the same machine):
//
//	offset 0     magic: ZoneLayout's tag, set by the first process to attach
//	offset 8     slot count, derived from the size
//	offset 16    SipHash key, two words, each drawn by the first process to set it
//	offset 64    evictions: slots taken from a key whose bucket was not full
//	offset 4096  slots: {key hash, tat} pairs of 16 bytes
//
// Every change is one atomic compare-and-swap of one word, and no state
// is ever "held": a worker killed at any instruction leaves words that are
// each valid, and the worst a kill between two CASes can do is hand a new
// key the previous key's tat (that key may be refused for at most one
// burst window). There are no locks for a dead process to leave taken.
//
// A slot's key is a keyed 64-bit hash of the limit's identity and the
// request's key (client address or header value); 0 marks a slot never
// used. Slots are never emptied (emptying would break probe chains): a
// slot whose bucket is full (tat in the past) holds no information and is
// the first to be reused.
type Zone struct {
	mem   []byte  // keeps the memory alive (Go-heap backing) or mapped
	hdr   *header // at mem[0]
	slots []slot
	n     uint64
	k0    uint64
	k1    uint64
	clock monoClock
}

// ZoneLayout names the layout above. A process that finds another layout
// in a zone refuses it (Attach fails): the master keys the zone it hands
// over on a binary upgrade by this name, so binaries with different
// layouts never share one.
const ZoneLayout = "pingora-ratelimit-zone-v1"

const (
	zoneMagic  = 0x31764e4f5a4c5250 // "PRLZONv1"
	headerSize = 4096
	slotSize   = 16
	// minSlots keeps a zone useful: a window of probe slots and more.
	minSlots = 64
	// probe is how many consecutive slots a key may live in. A key
	// missing from its window takes an empty slot of it, or else the one
	// whose bucket refills first (the least recently limited).
	probe = 8
	// maxRestarts bounds how often one Allow starts over when its slot is
	// taken by another key in between its steps. Past it the request is
	// admitted: the limiter errs lenient rather than spin.
	maxRestarts = 4
	// fillSample bounds how many slots Stats reads to estimate the fill.
	fillSample = 16384
)

type header struct {
	magic     atomic.Uint64
	slots     atomic.Uint64
	k0, k1    atomic.Uint64
	_         [4]uint64
	evictions atomic.Uint64 // own cache line: written on the hot path
	_         [7]uint64
}

type slot struct {
	key atomic.Uint64
	tat atomic.Int64 // CLOCK_MONOTONIC nanoseconds; 0 in a slot never used
}

// ZoneSlots is how many keys a zone of size bytes holds.
func ZoneSlots(size int64) int64 {
	if size < headerSize {
		return 0
	}
	return (size - headerSize) / slotSize
}

// MapZone maps the zone the master passed (a memfd) and attaches to it.
// The mapping lives as long as the process.
func MapZone(f *os.File) (*Zone, error) {
	mem, err := shm.Map(f, "rate-limit zone", headerSize+minSlots*slotSize, math.MaxInt32*int64(slotSize))
	if err != nil {
		return nil, err
	}
	z, err := attach(mem)
	if err != nil {
		shm.Unmap(mem)
		return nil, err
	}
	return z, nil
}

// NewPrivateZone is a zone in this process's own memory, for a proxy
// that runs without a master (tests, embedding): machine-wide is then
// process-wide.
func NewPrivateZone(size int64) (*Zone, error) {
	if size < headerSize+minSlots*slotSize {
		return nil, fmt.Errorf("rate-limit zone: size %d is below the minimum %d", size, headerSize+minSlots*slotSize)
	}
	words := make([]uint64, size/8)
	mem := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	return attach(mem)
}

// attach checks or initialises the header. Initialisation is a set of
// independent CASes from zero, so processes attaching at once agree, and
// one killed half-way leaves nothing the next cannot complete.
func attach(mem []byte) (*Zone, error) {
	n := uint64(ZoneSlots(int64(len(mem))))
	if n < minSlots {
		return nil, errors.New("rate-limit zone: too small")
	}
	z := &Zone{
		mem:   mem,
		hdr:   (*header)(unsafe.Pointer(&mem[0])),
		slots: unsafe.Slice((*slot)(unsafe.Pointer(&mem[headerSize])), n),
		n:     n,
	}
	h := z.hdr
	h.magic.CompareAndSwap(0, zoneMagic)
	if m := h.magic.Load(); m != zoneMagic {
		return nil, fmt.Errorf("rate-limit zone: unknown layout (magic %#x, want %#x)", m, uint64(zoneMagic))
	}
	h.slots.CompareAndSwap(0, n)
	if got := h.slots.Load(); got != n {
		return nil, fmt.Errorf("rate-limit zone: header says %d slots, the size gives %d", got, n)
	}
	for _, k := range []*atomic.Uint64{&h.k0, &h.k1} {
		if k.Load() == 0 {
			var b [8]byte
			if _, err := rand.Read(b[:]); err != nil {
				return nil, fmt.Errorf("rate-limit zone: hash key: %w", err)
			}
			k.CompareAndSwap(0, binary.LittleEndian.Uint64(b[:])|1)
		}
	}
	z.k0, z.k1 = h.k0.Load(), h.k1.Load()
	c, err := newMonoClock()
	if err != nil {
		return nil, err
	}
	z.clock = c
	return z, nil
}

// monoClock turns time.Time (whose monotonic reading is private to the
// process) into CLOCK_MONOTONIC nanoseconds, which every process on the
// machine shares, without a system call per request: the offset between
// the two is taken once.
type monoClock struct {
	base     time.Time
	baseMono int64
}

func newMonoClock() (monoClock, error) {
	var ts unix.Timespec
	t0 := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return monoClock{}, fmt.Errorf("rate-limit zone: clock_gettime: %w", err)
	}
	t1 := time.Now()
	return monoClock{base: t0.Add(t1.Sub(t0) / 2), baseMono: ts.Nano()}, nil
}

func (c *monoClock) mono(now time.Time) int64 {
	return c.baseMono + int64(now.Sub(c.base))
}

// Limit returns the machine-wide limiter of one limit. id identifies the
// limit across processes and reloads (LimitID); the other arguments are
// clamped as New's.
func (z *Zone) Limit(id uint64, requests int, per time.Duration, burst int) *SharedLimiter {
	l := &SharedLimiter{z: z, id: id}
	l.interval, l.tol = gcra(requests, per, burst)
	return l
}

// LimitID is a limit's identity in a zone: the route it belongs to and
// its parameters. A reloaded or upgraded config that keeps them finds
// the same buckets; one that changes any starts afresh (its old buckets
// age out like any idle key's).
func LimitID(route string, requests int, per time.Duration, burst int, key string) uint64 {
	h := uint64(14695981039346656037) // FNV-1a: the id is mixed into a keyed hash, it needs no key itself
	add := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
		h ^= 0xff // separator no string byte can fake
		h *= 1099511628211
	}
	add(route)
	add(fmt.Sprintf("%d/%d+%d", requests, int64(per), burst))
	add(key)
	return h
}

// SharedLimiter is one limit's view of a Zone. Its semantics are New's
// (GCRA, see Limiter) with the buckets shared by every process that maps
// the zone.
type SharedLimiter struct {
	z        *Zone
	id       uint64
	interval int64
	tol      int64
}

// Allow takes one token from key's bucket at now; see Limiter.Allow.
// It never allocates and makes no system call.
func (l *SharedLimiter) Allow(key []byte, now time.Time) (ok bool, retryAfter time.Duration) {
	z := l.z
	t := z.clock.mono(now)
	h := sipHash(z.k0, z.k1, l.id, key)
	if h == 0 {
		h = 1 // 0 marks an empty slot
	}
	for range maxRestarts {
		s := z.find(h, t)
		if s == nil {
			break
		}
		for {
			tat := s.tat.Load()
			if s.key.Load() != h {
				break // taken by another key meanwhile: find ours again
			}
			base := max(tat, t) // a bucket that refilled, or a new key, starts full
			if wait := base - t - l.tol; wait > 0 {
				return false, time.Duration(wait)
			}
			if s.tat.CompareAndSwap(tat, base+l.interval) {
				return true, 0
			}
		}
	}
	return true, 0
}

// find returns the slot of key hash h, taking one in its window if it has
// none: an empty one, else the one whose bucket refills first. nil when
// every attempt lost a race (the caller admits).
func (z *Zone) find(h uint64, now int64) *slot {
	start, _ := bits.Mul64(h, z.n) // uniform in [0, n) without a division
	for range maxRestarts {
		var victim *slot
		var victimKey uint64
		victimTat := int64(math.MaxInt64)
		j := start
		for range probe {
			s := &z.slots[j]
			if j++; j == z.n {
				j = 0
			}
			k := s.key.Load()
			if k == h {
				return s
			}
			if k == 0 {
				if s.key.CompareAndSwap(0, h) {
					return s
				}
				if k = s.key.Load(); k == h {
					return s
				}
			}
			if tat := s.tat.Load(); tat < victimTat {
				victim, victimKey, victimTat = s, k, tat
			}
		}
		if victim.key.CompareAndSwap(victimKey, h) {
			if victimTat > now {
				z.hdr.evictions.Add(1)
			}
			// The new key starts with a full bucket. If the old key's
			// holder changed tat in between, this CAS fails and the new
			// key inherits that tat: refused for at most one burst window.
			victim.tat.CompareAndSwap(victimTat, 0)
			return victim
		}
	}
	return nil
}

// ZoneStats is a zone's fill, for status pages and metrics.
type ZoneStats struct {
	Bytes int64 // size of the shared memory
	Slots int64 // keys it can hold
	// Used is how many slots hold a bucket that is not full (state that
	// matters), estimated from up to 16384 evenly spaced slots.
	Used int64
	// Evictions counts keys forgotten while their bucket was not full,
	// since the zone was created (reloads and upgrades keep it).
	Evictions uint64
}

// Stats reads the zone's fill at now.
func (z *Zone) Stats(now time.Time) ZoneStats {
	t := z.clock.mono(now)
	stride := max(z.n/fillSample, 1)
	var seen, live uint64
	for i := uint64(0); i < z.n; i += stride {
		seen++
		if z.slots[i].tat.Load() > t {
			live++
		}
	}
	return ZoneStats{
		Bytes:     int64(len(z.mem)),
		Slots:     int64(z.n),
		Used:      int64(live * z.n / seen),
		Evictions: z.hdr.evictions.Load(),
	}
}

// sipHash is SipHash-2-4 of the 8 bytes of id (little-endian) followed by
// msg, with key (k0, k1). Keyed, so that clients cannot choose keys that
// crowd one probe window; the key is in the zone, so every process hashes
// alike.
func sipHash(k0, k1, id uint64, msg []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	total := uint64(8 + len(msg))
	m := id
	for {
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
		if len(msg) < 8 {
			break
		}
		m = binary.LittleEndian.Uint64(msg)
		msg = msg[8:]
	}
	m = total << 56
	for i := len(msg) - 1; i >= 0; i-- {
		m |= uint64(msg[i]) << (8 * uint(i))
	}
	v3 ^= m
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= m
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}
