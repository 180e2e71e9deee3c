package admin

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// maxRetiredPIDs bounds the memory of retired workers kept to recognise
// their late samples. A late sample arrives within a sampling interval of
// the worker's exit; by the time this many workers retired after it, any
// such sample is long gone.
const maxRetiredPIDs = 1024

// Aggregator sums what workers report with what retired workers counted,
// and holds the master's own facts. The zero value is ready to use; every
// method is safe for concurrent use.
type Aggregator struct {
	mu       sync.Mutex
	live     map[int]*liveWorker
	retired  counters
	gone     map[int]time.Time // retired pid -> its process start
	goneFIFO []int
	master   Master
	reloads  Outcomes
	upgrades Outcomes
	restarts uint64
	// zone is the rate-limit zone as the latest sample that had one read
	// it: machine-wide figures, the same in every worker, so never summed.
	zone *ZoneSample
	// healthZone is the upstream health zone as the latest sample read
	// it: machine-wide as well.
	healthZone *HealthZoneSample
	// clock is time.Now when nil; tests set it.
	clock func() time.Time
}

type liveWorker struct {
	sample WorkerSample
	at     time.Time // when the sample arrived
	// rate is requests per second between the previous sample and this
	// one: a live figure for the page, as HAProxy shows current rates.
	rate float64
}

// ErrBadSample is returned by Observe for a sample that cannot belong to a
// worker.
var ErrBadSample = errors.New("bad worker sample")

// Observe records a live worker's latest sample, replacing its previous
// one. The aggregator keeps s: the caller must not modify it afterwards
// (a sample freshly decoded from JSON is the intended input).
//
// known are the names of the worker's own generation's config (NamesOf).
// A sample naming anything else, or naming something twice, is refused
// whole with ErrBadSample and changes nothing: no worker of that
// generation sends one, so it comes from a broken or compromised worker.
//
// A sample from a worker already retired (same pid and start time) is
// ignored: it arrived late, and its worker's counts are already in the
// retired totals. A sample whose pid is live but whose start time differs,
// or whose counters went backwards, is a new process that reused the pid:
// the old one is retired first, so nothing is lost or counted twice.
func (a *Aggregator) Observe(s WorkerSample, known *Names) error {
	if s.PID <= 0 {
		return fmt.Errorf("%w: pid %d", ErrBadSample, s.PID)
	}
	if err := known.check(&s); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if started, ok := a.gone[s.PID]; ok {
		if started.Equal(s.Started) {
			return nil
		}
		delete(a.gone, s.PID) // a new process with a recycled pid
	}
	if a.live == nil {
		a.live = make(map[int]*liveWorker)
	}
	now := time.Now()
	if a.clock != nil {
		now = a.clock()
	}
	if s.RateLimitZone != nil {
		a.zone = s.RateLimitZone
	}
	if s.HealthZone != nil {
		a.healthZone = s.HealthZone
	}
	lw := &liveWorker{sample: s, at: now}
	if old, ok := a.live[s.PID]; ok {
		if !old.sample.Started.Equal(s.Started) || s.Requests < old.sample.Requests {
			a.retired.add(&old.sample)
		} else if dt := now.Sub(old.at).Seconds(); dt > 0 {
			lw.rate = float64(s.Requests-old.sample.Requests) / dt
		}
	}
	a.live[s.PID] = lw
	return nil
}

// Retire folds worker pid's last sample into the retired totals and drops
// its gauges. Call it once the worker has exited (after Observing its final
// sample, if it sent one). Unknown pids are ignored.
func (a *Aggregator) Retire(pid int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	lw, ok := a.live[pid]
	if !ok {
		return
	}
	a.retired.add(&lw.sample)
	delete(a.live, pid)
	if a.gone == nil {
		a.gone = make(map[int]time.Time)
	}
	if _, dup := a.gone[pid]; !dup {
		a.goneFIFO = append(a.goneFIFO, pid)
	}
	a.gone[pid] = lw.sample.Started
	for len(a.goneFIFO) > maxRetiredPIDs {
		delete(a.gone, a.goneFIFO[0])
		a.goneFIFO = a.goneFIFO[1:]
	}
}

// SetMaster replaces the master's facts. The aggregator keeps m (its
// Workers slice and Config included): pass a fresh value each time.
func (a *Aggregator) SetMaster(m Master) {
	a.mu.Lock()
	a.master = m
	a.mu.Unlock()
}

// CountReload counts one reload's outcome: ok once the new generation
// serves, failed for a bad config or a generation that did not get ready.
func (a *Aggregator) CountReload(ok bool) {
	a.mu.Lock()
	a.reloads.count(ok)
	a.mu.Unlock()
}

// CountUpgrade counts one binary upgrade's outcome. The old master counts a
// failure; a successful upgrade ends the old master (and its counters), so
// the new master counts it as ok once it serves, when it has a parent.
func (a *Aggregator) CountUpgrade(ok bool) {
	a.mu.Lock()
	a.upgrades.count(ok)
	a.mu.Unlock()
}

// CountWorkerRestart counts one replacement of a worker that died
// unexpectedly.
func (a *Aggregator) CountWorkerRestart() {
	a.mu.Lock()
	a.restarts++
	a.mu.Unlock()
}

// snapshot is a consistent copy of everything, taken under the lock once
// per scrape or page view.
type snapshot struct {
	master   Master
	totals   counters       // retired + live
	live     []WorkerSample // by pid
	sampled  map[int]time.Time
	rates    map[int]float64
	reloads  Outcomes
	upgrades Outcomes
	restarts uint64
	zone     *ZoneSample // nil: no worker reported a zone
	health   *HealthZoneSample
}

func (a *Aggregator) snapshot() *snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := &snapshot{
		master:   a.master,
		totals:   a.retired.clone(),
		live:     make([]WorkerSample, 0, len(a.live)),
		sampled:  make(map[int]time.Time, len(a.live)),
		rates:    make(map[int]float64, len(a.live)),
		reloads:  a.reloads,
		upgrades: a.upgrades,
		restarts: a.restarts,
		zone:     a.zone,
		health:   a.healthZone,
	}
	for pid, lw := range a.live {
		s.totals.add(&lw.sample)
		s.live = append(s.live, lw.sample)
		s.sampled[pid] = lw.at
		s.rates[pid] = lw.rate
	}
	sort.Slice(s.live, func(i, j int) bool { return s.live[i].PID < s.live[j].PID })
	return s
}

// serverGauges are the live workers' views of one upstream server.
type serverGauges struct {
	workers  int // live workers that have the server
	healthy  int // of those, how many see it healthy
	inFlight int64
	// shared is the machine's health of the server (the shared zone) as
	// the newest generation's latest sample read it; nil when no live
	// worker reads a shared zone for it.
	shared    *ServerSample
	sharedGen int
	sharedAt  time.Time
}

// connGauges are the live workers' connection and request gauges, summed.
type connGauges struct {
	active, parked, inFlight int64
}

// storeGauges are the live workers' views of one rate limit store.
type storeGauges struct {
	workers int // live workers that use the store
	up      int // of those, how many are connected to it
}

// stores gathers the live samples' views of each rate limit store.
func (s *snapshot) stores() map[string]storeGauges {
	out := make(map[string]storeGauges)
	for i := range s.live {
		for _, st := range s.live[i].Stores {
			g := out[st.Name]
			g.workers++
			if st.Up {
				g.up++
			}
			out[st.Name] = g
		}
	}
	return out
}

// gauges sums the live samples' gauges.
func (s *snapshot) gauges() (conns connGauges, servers map[serverKey]serverGauges) {
	servers = make(map[serverKey]serverGauges)
	for i := range s.live {
		w := &s.live[i]
		conns.active += w.ActiveConns
		conns.parked += w.ParkedConns
		conns.inFlight += w.InFlight
		for _, u := range w.Upstreams {
			for j := range u.Servers {
				sv := &u.Servers[j]
				k := serverKey{u.Name, sv.Addr}
				g := servers[k]
				g.workers++
				if sv.Healthy {
					g.healthy++
				}
				g.inFlight += sv.InFlight
				// Every worker reads the same shared health; samples
				// differ only by when they were taken (and by the
				// config's checks, for a generation being replaced).
				at := s.sampled[w.PID]
				if sv.Shared && (g.shared == nil || w.Generation > g.sharedGen ||
					(w.Generation == g.sharedGen && at.After(g.sharedAt))) {
					g.shared, g.sharedGen, g.sharedAt = sv, w.Generation, at
				}
				servers[k] = g
			}
		}
	}
	return conns, servers
}
