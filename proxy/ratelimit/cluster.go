package ratelimit

import (
	"hash/maphash"
	"strconv"
	"sync"
	"time"
)

// Cluster is a limit shared by every instance and worker that points at
// the same store: the bucket lives in the store, and each worker spends
// tokens it has leased from it, so the store's round trip never sits on a
// request.
//
// For each key, a worker holds a balance of leased tokens. A request takes
// one from it; when the balance falls to half a lease, the worker asks the
// store for a new lease in the background (a request already sent is
// never asked twice, and after a short or empty grant the worker waits
// until the store says a whole lease is available). Until a key's first
// lease arrives, or while the store is slower than leaseWait, the local
// limit (the same limit for this machine's workers together, or for this
// worker alone) decides, and what it admits is owed: the next lease pays
// it back first. While the store is down, the local limit decides alone
// and nothing is owed.
//
// A lease is the tokens the rate yields in leaseSpan (at least 1, at most
// maxLease). The store's bucket lets a lease be taken whole by running up
// to lease-1 tokens ahead of the rate. So, over any window, the instances
// together admit at most rate×window + 1 + burst + (lease-1) (the store's
// bucket) plus the tokens the workers held when the window began (at most
// lease per worker and key), and they undershoot by what workers hold
// unspent at its end.
type Cluster struct {
	store *Store
	// local decides without the store: this worker's own Limiter, or
	// the machine's (a SharedLimiter) when the limit has one.
	local    Admitter
	own      *Limiter // local when it is the worker's own, to close
	interval int64    // ns per token
	lease    int64    // tokens asked for at once
	low      int64    // ask again when the balance is down to this
	seed     maphash.Seed
	epoch    time.Time

	// what appendLease sends: the key prefix, and the script's interval
	// and tolerance in microseconds
	prefix       string
	intervalArg  string
	toleranceArg string

	shards [numShards]leaseShard

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

const (
	// leaseSpan is how much of the rate one lease is: about 100 store
	// round trips a second per busy key, whatever the rate.
	leaseSpan = 10 * time.Millisecond
	maxLease  = 1000
	// leaseWait is how long a lease may take before the local limit
	// stands in for the store for the key.
	leaseWait = 50 * time.Millisecond
	// leaseIdle is how long an unused key's balance is kept; what it held
	// is lost to the cluster (an undershoot, never an overshoot).
	leaseIdle = time.Minute
)

type leaseShard struct {
	mu sync.Mutex
	m  map[uint64]*leaseEntry
	_  [48]byte
}

// leaseEntry is one key's balance in one worker. Times are ns since the
// Cluster's epoch.
type leaseEntry struct {
	key       string // the key, for lease requests
	bal       int64  // leased tokens left; negative: owed
	gen       uint64 // the store connection the balance belongs to
	granted   bool   // the store has answered for this key on gen
	fetching  bool   // a lease request is out
	since     int64  // when it was sent
	notBefore int64  // no lease request before this
	used      int64  // last request
}

// NewCluster returns a limit of requests per per plus burst (clamped as
// New's), shared through store under the name route (instances share a
// bucket when they name the same route and key). Without the store it
// falls back on machine, the same limit for the machine's workers
// together, or, when machine is nil, on a limit of this worker's own.
func NewCluster(store *Store, route string, requests int, per time.Duration, burst int, machine Admitter) *Cluster {
	return newCluster(store, route, requests, per, burst, machine, janitorEvery)
}

func newCluster(store *Store, route string, requests int, per time.Duration, burst int, machine Admitter, every time.Duration) *Cluster {
	interval, tol := gcra(requests, per, burst)
	c := &Cluster{
		store:    store,
		local:    machine,
		interval: interval,
		seed:     maphash.MakeSeed(),
		epoch:    time.Now(),
		prefix:   "pingora:rl:" + route + ":",
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if machine == nil {
		c.own = newLimiter(requests, per, burst, every)
		c.local = c.own
	}
	c.lease = min(max(int64(leaseSpan)/c.interval, 1), maxLease)
	c.low = c.lease / 2
	tolerance := tol + (c.lease-1)*c.interval
	c.intervalArg = strconv.FormatFloat(float64(c.interval)/1e3, 'f', 3, 64)
	c.toleranceArg = strconv.FormatFloat(float64(tolerance)/1e3, 'f', 3, 64)
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*leaseEntry)
	}
	go c.janitor(every)
	return c
}

// Allow implements Admitter.
func (c *Cluster) Allow(key []byte, now time.Time) (bool, time.Duration) {
	st := c.store.state.Load()
	if st&1 == 0 {
		return c.local.Allow(key, now)
	}
	gen := st >> 1
	h := maphash.Bytes(c.seed, key)
	t := int64(now.Sub(c.epoch))
	sh := &c.shards[h%numShards]
	sh.mu.Lock()
	e := sh.m[h]
	if e == nil {
		e = c.add(sh, h, key, t)
	}
	if e.gen != gen {
		*e = leaseEntry{key: e.key, gen: gen}
	}
	e.used = t
	var ok bool
	var retry time.Duration
	switch {
	case e.bal > 0:
		e.bal--
		ok = true
	case !e.granted || (e.fetching && t-e.since > leaseWait.Nanoseconds()):
		if ok, retry = c.local.Allow(key, now); ok {
			e.bal--
		}
	default:
		retry = time.Duration(max(c.interval, e.notBefore-t))
	}
	if !e.fetching && e.bal <= c.low && t >= e.notBefore {
		e.fetching = true
		e.since = t
		if !c.store.enqueue(leaseRequest{c: c, hash: h, key: e.key, want: c.lease - e.bal, gen: gen}) {
			e.fetching = false
		}
	}
	sh.mu.Unlock()
	return ok, retry
}

// add makes a key's entry, forgetting one of a full shard. Called with
// sh.mu held.
func (c *Cluster) add(sh *leaseShard, h uint64, key []byte, now int64) *leaseEntry {
	if len(sh.m) >= maxPerShard {
		var victim uint64
		oldest := int64(1<<63 - 1)
		n := 0
		for k, e := range sh.m {
			if e.used < oldest {
				victim, oldest = k, e.used
			}
			if n++; n == evictScan {
				break
			}
		}
		delete(sh.m, victim)
	}
	e := &leaseEntry{key: string(key), used: now}
	sh.m[h] = e
	return e
}

// answer applies the store's answer to a lease request: n tokens, and how
// long until the whole request could be granted. failed marks an error
// reply (the key stays on what it has, or its local limit, until ready).
func (c *Cluster) answer(r *leaseRequest, n int64, ready time.Duration, failed bool) {
	t := int64(time.Since(c.epoch))
	sh := &c.shards[r.hash%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[r.hash]
	if e == nil || e.gen != r.gen || e.key != r.key {
		return // forgotten, or from before an outage: the tokens are lost
	}
	e.fetching = false
	if failed {
		e.notBefore = t + int64(ready)
		return
	}
	e.granted = true
	e.bal += n
	if n < r.want {
		e.notBefore = t + int64(ready)
	}
}

// Len is the number of keys with a balance.
func (c *Cluster) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func (c *Cluster) janitor(every time.Duration) {
	defer close(c.done)
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-tk.C:
			c.evict(now)
		}
	}
}

// evict forgets keys unused for leaseIdle, unless a lease is out for them.
func (c *Cluster) evict(now time.Time) {
	cutoff := int64(now.Sub(c.epoch) - leaseIdle)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.used < cutoff && !e.fetching {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// Close stops the janitors. The store is the caller's to close (routes
// share it). Idempotent.
func (c *Cluster) Close() {
	c.once.Do(func() { close(c.stop) })
	<-c.done
	c.own.Close()
}
