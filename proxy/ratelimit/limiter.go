package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

// Limiter is a set of token buckets, one per key, safe for concurrent use.
//
// Each bucket is kept as GCRA (the generic cell rate algorithm) state, which
// is the token bucket in one number: tat, the time at which the bucket will
// be full again. A request at now is admitted when tat - now <= burst*T
// (T = per/requests, the time one token takes to refill), and then
// tat = max(tat, now) + T. A bucket whose tat has passed is full, holds no
// information, and is dropped by the janitor.
//
// Buckets are keyed by a 64-bit seeded hash of the key rather than the key
// itself: lookups never allocate (hit or miss), memory per key is fixed
// whatever the key's length (header values are client-controlled), and the
// maps hold no pointers for the GC to scan. Two keys share a bucket only on
// a 64-bit collision, which the random per-limiter seed keeps out of an
// attacker's reach.
//
// The zero Limiter, and a nil *Limiter, admit everything.
type Limiter struct {
	interval int64 // T, nanoseconds per token; 0: unlimited
	tol      int64 // burst*T: how far ahead of now tat may run
	perShard int   // bucket cap per shard
	seed     maphash.Seed
	epoch    time.Time // times are kept as nanoseconds since epoch
	shards   [numShards]shard

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

const (
	numShards = 64
	// maxPerShard bounds memory under a flood of distinct keys (262144 keys
	// in all, a few MiB). A full shard forgets a bucket to admit a new one,
	// preferring full ones: under such a flood the limit errs lenient.
	maxPerShard = 4096
	// evictScan is how many entries a full shard looks at to find one to
	// forget.
	evictScan = 8
	// janitorEvery is how often idle full buckets are dropped.
	janitorEvery = time.Minute
)

// shard is one mutex and its map, padded so neighbouring shards' locks do
// not share a cache line.
type shard struct {
	mu sync.Mutex
	m  map[uint64]int64 // key hash -> tat (ns since epoch)
	_  [48]byte
}

// New returns a limiter admitting requests per per, plus burst at once (see
// the package doc), and starts its janitor; Close stops it. Out-of-range
// arguments are clamped rather than refused: requests < 1 is 1, per <= 0
// is one second, burst < 0 is 0.
func New(requests int, per time.Duration, burst int) *Limiter {
	return newLimiter(requests, per, burst, janitorEvery)
}

// gcra is a limit of requests per per plus burst as GCRA state wants it:
// the interval between tokens and the tolerance (burst tokens ahead), in
// ns, the arguments clamped (at least 1 request, per 1s when not
// positive, no negative burst). Every kind of limit derives them here.
func gcra(requests int, per time.Duration, burst int) (interval, tol int64) {
	requests = max(requests, 1)
	if per <= 0 {
		per = time.Second
	}
	interval = max(int64(per)/int64(requests), 1)
	return interval, interval * int64(max(burst, 0))
}

func newLimiter(requests int, per time.Duration, burst int, every time.Duration) *Limiter {
	l := &Limiter{
		perShard: maxPerShard,
		seed:     maphash.MakeSeed(),
		epoch:    time.Now(),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	l.interval, l.tol = gcra(requests, per, burst)
	for i := range l.shards {
		l.shards[i].m = make(map[uint64]int64)
	}
	go l.janitor(every)
	return l
}

// Allow takes one token from key's bucket at now. ok is false when the
// bucket is empty; retryAfter is then how long until one token is
// available (the value for a Retry-After header, rounded up to seconds).
// Allow never allocates.
func (l *Limiter) Allow(key []byte, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil || l.interval == 0 {
		return true, 0
	}
	h := maphash.Bytes(l.seed, key)
	t := int64(now.Sub(l.epoch))
	sh := &l.shards[h%numShards]
	sh.mu.Lock()
	tat, found := sh.m[h]
	if !found || tat < t {
		tat = t // full bucket (or a new key, which starts full)
	}
	if wait := tat - t - l.tol; wait > 0 {
		sh.mu.Unlock()
		return false, time.Duration(wait)
	}
	if !found && len(sh.m) >= l.perShard {
		sh.evictOne(t)
	}
	sh.m[h] = tat + l.interval
	sh.mu.Unlock()
	return true, 0
}

// evictOne forgets one bucket of a full shard, a full one if it sees one.
// Called with sh.mu held.
func (sh *shard) evictOne(now int64) {
	var victim uint64
	n := 0
	for k, tat := range sh.m {
		if n == 0 {
			victim = k
		}
		if tat <= now {
			victim = k
			break
		}
		if n++; n == evictScan {
			break
		}
	}
	delete(sh.m, victim)
}

// Len is the number of buckets held (full ones included until the janitor
// drops them).
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// evict drops every bucket that is full at now: forgetting it changes
// nothing, since an unknown key starts with a full bucket.
func (l *Limiter) evict(now time.Time) {
	t := int64(now.Sub(l.epoch))
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, tat := range sh.m {
			if tat <= t {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

func (l *Limiter) janitor(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case now := <-t.C:
			l.evict(now)
		}
	}
}

// Close stops the janitor and waits for it. The limiter still answers
// Allow afterwards (buckets are then only dropped when a shard is full).
// Close is idempotent.
func (l *Limiter) Close() {
	if l == nil || l.stop == nil {
		return
	}
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

// RetryAfterSeconds turns Allow's retryAfter into a Retry-After header
// value: whole seconds, rounded up, at least 1 (0 would invite an
// immediate retry that is bound to fail).
func RetryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
