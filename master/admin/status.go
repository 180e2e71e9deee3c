package admin

import (
	"github.com/pingora-go/pingora/config"
	"sort"
	"time"
)

// Status is the /status document: everything `-s status` prints (Process
// and the workers, under the same JSON names as Master) plus listeners,
// routes, upstream servers and traffic. The HTML page renders the same
// value.
type Status struct {
	Process
	Workers []WorkerStatus `json:"workers"`

	Time          time.Time          `json:"time"` // when this status was taken
	UptimeSeconds int64              `json:"uptime_seconds"`
	Generations   []GenerationStatus `json:"generations"`
	Listeners     []ListenerStatus   `json:"listeners"`
	Routes        []RouteStatus      `json:"routes"`
	Upstreams     []UpstreamStatus   `json:"upstreams"`
	Totals        Totals             `json:"totals"`
	// RateLimitZone is the shared memory of the machine-scope rate limits;
	// nil until a worker has reported it.
	RateLimitZone *ZoneStatus `json:"rate_limit_zone,omitempty"`
	// HealthZone is the shared memory of the upstream servers' health.
	HealthZone *HealthZoneSample `json:"health_zone,omitempty"`
	// TLS is client-side TLS; nil when no listener terminates it.
	TLS *TLSStatus `json:"tls,omitempty"`

	Reloads        Outcomes `json:"reloads"`
	Upgrades       Outcomes `json:"upgrades"`
	WorkerRestarts uint64   `json:"worker_restarts"`
}

// WorkerStatus is one worker: the master's view, and its latest sample's
// figures when it has reported (Sampled).
type WorkerStatus struct {
	Worker
	UptimeSeconds int64 `json:"uptime_seconds"`

	Sampled          bool    `json:"sampled"`
	SampleAgeSeconds float64 `json:"sample_age_seconds"`
	Requests         uint64  `json:"requests"`
	// RequestsPerSecond is the rate between the worker's last two samples.
	RequestsPerSecond float64 `json:"requests_per_second"`
	ActiveConns       int64   `json:"active_connections"`
	InFlight          int64   `json:"in_flight"`
}

// GenerationStatus summarises one generation's workers.
type GenerationStatus struct {
	Generation int            `json:"generation"`
	Current    bool           `json:"current"`
	Workers    int            `json:"workers"`
	States     map[string]int `json:"states"`
	Requests   uint64         `json:"requests"` // by its live workers
}

// ListenerStatus is one configured listener.
type ListenerStatus struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// RouteStatus is one route and what it answered, summed over every worker
// that ever served it (retired ones included).
type RouteStatus struct {
	Name          string   `json:"name"`
	Listeners     []string `json:"listeners,omitempty"`
	Host          string   `json:"host,omitempty"`
	PathPrefix    string   `json:"path_prefix,omitempty"`
	Upstream      string   `json:"upstream,omitempty"`
	RespondStatus int      `json:"respond_status,omitempty"`
	// Removed: counted by earlier generations, gone from the config.
	Removed   bool      `json:"removed,omitempty"`
	Responses [5]uint64 `json:"responses"` // 1xx..5xx
	Requests  uint64    `json:"requests"`
}

// UpstreamStatus is one upstream pool.
type UpstreamStatus struct {
	Name    string         `json:"name"`
	Balance string         `json:"balance,omitempty"`
	Servers []ServerStatus `json:"servers"`
}

// ServerStatus is one upstream server. Health and in-flight come from the
// live workers; picks and failures are totals.
type ServerStatus struct {
	Address string `json:"address"`
	Weight  int    `json:"weight,omitempty"`
	Backup  bool   `json:"backup,omitempty"`
	// State: "up" or "down" as the workers' shared health says (the
	// newest generation's reading of it), or, for workers that keep
	// health to themselves, "up" (every live worker sees it healthy),
	// "down" (none does) or "partial"; "unknown" when no live worker
	// reported it yet.
	State          string `json:"state"`
	HealthyWorkers int    `json:"healthy_workers"`
	Workers        int    `json:"workers"`
	InFlight       int64  `json:"in_flight"`
	Picks          uint64 `json:"picks"`
	Failures       uint64 `json:"failures"`
	// From the shared health: ActiveDown is the active checks' verdict,
	// DownUntil the end of a passive marking, Checks the active checks
	// made by all workers, Disabled the times passive marking took the
	// server out.
	ActiveDown bool      `json:"active_down,omitempty"`
	DownUntil  time.Time `json:"down_until,omitzero"`
	Checks     uint64    `json:"checks,omitempty"`
	Disabled   uint64    `json:"disabled,omitempty"`
}

// Totals are the traffic counters summed over every worker, retired ones
// included, and the gauges summed over live workers.
type Totals struct {
	Requests uint64 `json:"requests"`
	// RequestsPerSecond sums the live workers' current rates.
	RequestsPerSecond float64        `json:"requests_per_second"`
	BytesReceived     uint64         `json:"bytes_received"`
	BytesSent         uint64         `json:"bytes_sent"`
	RateLimited       uint64         `json:"rate_limited"`
	UpstreamErrors    uint64         `json:"upstream_errors"`
	Unrouted          [5]uint64      `json:"unrouted"` // 1xx..5xx without a route
	ActiveConns       int64          `json:"active_connections"`
	ParkedConns       int64          `json:"parked_connections"` // of ActiveConns, idle ones without a goroutine
	InFlight          int64          `json:"in_flight"`
	RequestLatency    LatencySummary `json:"request_latency"`
	UpstreamLatency   LatencySummary `json:"upstream_latency"`
}

// TLSStatus is TLS on the client side: handshakes by outcome (summed over
// every worker that ever served, as the metrics), completed ones by
// protocol version and by what ALPN chose, and each certificate of the
// serving config with its end, so an operator sees one about to expire.
type TLSStatus struct {
	Handshakes struct {
		Full           uint64 `json:"full"`
		Resumed        uint64 `json:"resumed"`
		FailedTimeout  uint64 `json:"failed_timeout"`
		FailedClosed   uint64 `json:"failed_closed"`
		FailedProtocol uint64 `json:"failed_protocol"`
	} `json:"handshakes"`
	Versions struct {
		TLS12 uint64 `json:"TLSv1.2"`
		TLS13 uint64 `json:"TLSv1.3"`
	} `json:"versions"`
	ALPN struct {
		H2    uint64 `json:"h2"`
		HTTP1 uint64 `json:"http/1.1"` // none chosen counts here
	} `json:"alpn"`
	Certificates []CertificateStatus `json:"certificates"`
}

// CertificateStatus is one certificate of a TLS listener.
type CertificateStatus struct {
	Listener string    `json:"listener"`
	Names    []string  `json:"names"`
	NotAfter time.Time `json:"not_after"`
	// DaysLeft is until NotAfter, negative once expired; the log warns
	// from 14 days before.
	DaysLeft float64 `json:"days_left"`
}

// ZoneStatus is the rate-limit zone: its size, how full it is, and how
// many keys it had to forget to make room (a growing count says the zone
// is too small for the keys it sees).
type ZoneStatus struct {
	Bytes       uint64  `json:"bytes"` // uint64: the page formats it with bytes, as the traffic totals
	Slots       int64   `json:"slots"`
	Used        int64   `json:"used"` // slots holding a bucket that is not full
	UsedPercent float64 `json:"used_percent"`
	Evictions   uint64  `json:"evictions"`
}

// LatencySummary condenses a histogram for people.
type LatencySummary struct {
	Count       uint64  `json:"count"`
	MeanSeconds float64 `json:"mean_seconds"`
	P99Seconds  float64 `json:"p99_seconds"` // upper bound of the bucket holding the 99th percentile; 0 above the last bound or when empty
}

// Status returns the admin status as of now.
func (a *Aggregator) Status(now time.Time) *Status {
	return a.snapshot().status(now)
}

func (s *snapshot) status(now time.Time) *Status {
	m := s.master
	st := &Status{
		Process:        m.Process,
		Time:           now,
		UptimeSeconds:  seconds(now, m.Started),
		Reloads:        s.reloads,
		Upgrades:       s.upgrades,
		WorkerRestarts: s.restarts,
		Workers:        []WorkerStatus{},
		Generations:    []GenerationStatus{},
		Listeners:      []ListenerStatus{},
		Routes:         []RouteStatus{},
		Upstreams:      []UpstreamStatus{},
	}
	conns, servers := s.gauges()
	t := &s.totals
	st.Totals = Totals{
		Requests:        t.requests,
		BytesReceived:   t.bytesIn,
		BytesSent:       t.bytesOut,
		RateLimited:     t.rateLimited,
		UpstreamErrors:  t.upstreamErrors,
		Unrouted:        t.unrouted,
		ActiveConns:     conns.active,
		ParkedConns:     conns.parked,
		InFlight:        conns.inFlight,
		RequestLatency:  t.requestLatency.summary(),
		UpstreamLatency: t.upstreamLatency.summary(),
	}
	st.Workers = s.workers(now)
	for _, rate := range s.rates {
		st.Totals.RequestsPerSecond += rate
	}
	if z := s.zone; z != nil && z.Slots > 0 {
		st.RateLimitZone = &ZoneStatus{Bytes: uint64(z.Bytes), Slots: z.Slots, Used: z.Used,
			UsedPercent: 100 * float64(z.Used) / float64(z.Slots), Evictions: z.Evictions}
	}
	st.HealthZone = s.health
	st.Generations = generations(st.Workers, m.Generation)
	st.Routes = s.routes()
	st.Upstreams = s.upstreams(servers)
	if cfg := m.Config; cfg != nil {
		for _, l := range cfg.Listeners {
			st.Listeners = append(st.Listeners, ListenerStatus{Name: l.Name, Address: l.Address})
		}
	}
	st.TLS = s.tlsStatus(now)
	return st
}

// tlsStatus is nil unless a listener of the serving config terminates
// TLS or some worker counted a handshake (a reload may have removed TLS).
func (s *snapshot) tlsStatus(now time.Time) *TLSStatus {
	c := &s.totals.tls
	ts := &TLSStatus{Certificates: []CertificateStatus{}}
	ts.Handshakes.Full, ts.Handshakes.Resumed = c[config.TLSHandshakeFull], c[config.TLSHandshakeResumed]
	ts.Handshakes.FailedTimeout = c[config.TLSHandshakeFailedTimeout]
	ts.Handshakes.FailedClosed = c[config.TLSHandshakeFailedClosed]
	ts.Handshakes.FailedProtocol = c[config.TLSHandshakeFailedProtocol]
	ts.Versions.TLS12, ts.Versions.TLS13 = c[config.TLSVersion12], c[config.TLSVersion13]
	ts.ALPN.H2, ts.ALPN.HTTP1 = c[config.TLSALPNHTTP2], c[config.TLSALPNHTTP1]
	if cfg := s.master.Config; cfg != nil {
		for _, l := range cfg.Listeners {
			if l.TLS == nil {
				continue
			}
			for _, cert := range l.TLS.Certificates {
				ts.Certificates = append(ts.Certificates, CertificateStatus{Listener: l.Name, Names: cert.Names,
					NotAfter: cert.NotAfter, DaysLeft: cert.NotAfter.Sub(now).Hours() / 24})
			}
		}
	}
	counted := false
	for _, n := range c {
		counted = counted || n > 0
	}
	if len(ts.Certificates) == 0 && !counted {
		return nil
	}
	return ts
}

// workers joins the master's worker list with the live samples. A live
// sample the master did not list (SetMaster not yet called for it) still
// shows, with state "unknown".
func (s *snapshot) workers(now time.Time) []WorkerStatus {
	bySample := make(map[int]*WorkerSample, len(s.live))
	for i := range s.live {
		bySample[s.live[i].PID] = &s.live[i]
	}
	out := make([]WorkerStatus, 0, len(s.master.Workers)+len(s.live))
	fill := func(ws *WorkerStatus) {
		smp, ok := bySample[ws.PID]
		if !ok {
			return
		}
		delete(bySample, ws.PID)
		ws.Sampled = true
		ws.SampleAgeSeconds = now.Sub(s.sampled[ws.PID]).Seconds()
		ws.Requests = smp.Requests
		ws.RequestsPerSecond = s.rates[ws.PID]
		ws.ActiveConns = smp.ActiveConns
		ws.InFlight = smp.InFlight
	}
	for _, w := range s.master.Workers {
		ws := WorkerStatus{Worker: w, UptimeSeconds: seconds(now, w.Started)}
		fill(&ws)
		out = append(out, ws)
	}
	for i := range s.live {
		smp := &s.live[i]
		if _, left := bySample[smp.PID]; !left {
			continue
		}
		ws := WorkerStatus{
			Worker:        Worker{PID: smp.PID, Generation: smp.Generation, State: "unknown", Started: smp.Started},
			UptimeSeconds: seconds(now, smp.Started),
		}
		fill(&ws)
		out = append(out, ws)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Generation != out[j].Generation {
			return out[i].Generation > out[j].Generation
		}
		return out[i].PID < out[j].PID
	})
	return out
}

// generations groups workers (already sorted newest generation first).
func generations(workers []WorkerStatus, current int) []GenerationStatus {
	out := []GenerationStatus{}
	for _, w := range workers {
		if len(out) == 0 || out[len(out)-1].Generation != w.Generation {
			out = append(out, GenerationStatus{
				Generation: w.Generation,
				Current:    w.Generation == current,
				States:     map[string]int{},
			})
		}
		g := &out[len(out)-1]
		g.Workers++
		g.States[w.State]++
		g.Requests += w.Requests
	}
	return out
}

// routes lists the config's routes in config order, then routes counted by
// earlier generations that the config no longer has.
func (s *snapshot) routes() []RouteStatus {
	out := []RouteStatus{}
	seen := make(map[string]bool)
	if cfg := s.master.Config; cfg != nil {
		for _, r := range cfg.Routes {
			rs := RouteStatus{
				Name: r.Name, Listeners: r.Listeners, Host: r.Host,
				PathPrefix: r.PathPrefix, Upstream: r.Upstream,
			}
			if r.Respond != nil {
				rs.RespondStatus = r.Respond.Status
			}
			rs.Responses = s.totals.routes[r.Name]
			rs.Requests = sum5(rs.Responses)
			seen[r.Name] = true
			out = append(out, rs)
		}
	}
	var gone []string
	for name := range s.totals.routes {
		if !seen[name] {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		resp := s.totals.routes[name]
		out = append(out, RouteStatus{Name: name, Removed: true, Responses: resp, Requests: sum5(resp)})
	}
	return out
}

// upstreams lists the config's upstreams and servers in config order, then
// servers only live workers still report (an older generation's, during a
// drain). Servers only retired workers knew are left to /metrics.
func (s *snapshot) upstreams(gauges map[serverKey]serverGauges) []UpstreamStatus {
	out := []UpstreamStatus{}
	index := make(map[string]int)
	listed := make(map[serverKey]bool)
	server := func(k serverKey) ServerStatus {
		g := gauges[k]
		c := s.totals.servers[k]
		ss := ServerStatus{
			Address: k.addr, State: healthState(g),
			HealthyWorkers: g.healthy, Workers: g.workers, InFlight: g.inFlight,
			Picks: c.picks, Failures: c.failures,
		}
		if v := g.shared; v != nil {
			ss.ActiveDown, ss.DownUntil, ss.Checks, ss.Disabled = !v.ActiveUp, v.DownUntil, v.Checks, v.Disabled
		}
		return ss
	}
	if cfg := s.master.Config; cfg != nil {
		for _, u := range cfg.Upstreams {
			us := UpstreamStatus{Name: u.Name, Balance: u.Balance, Servers: []ServerStatus{}}
			for _, sv := range u.Servers {
				k := serverKey{u.Name, sv.Address}
				ss := server(k)
				ss.Weight, ss.Backup = sv.Weight, sv.Backup
				us.Servers = append(us.Servers, ss)
				listed[k] = true
			}
			index[u.Name] = len(out)
			out = append(out, us)
		}
	}
	var extra []serverKey
	for k := range gauges {
		if !listed[k] {
			extra = append(extra, k)
		}
	}
	sort.Slice(extra, func(i, j int) bool {
		if extra[i].upstream != extra[j].upstream {
			return extra[i].upstream < extra[j].upstream
		}
		return extra[i].addr < extra[j].addr
	})
	for _, k := range extra {
		i, ok := index[k.upstream]
		if !ok {
			i = len(out)
			index[k.upstream] = i
			out = append(out, UpstreamStatus{Name: k.upstream, Servers: []ServerStatus{}})
		}
		out[i].Servers = append(out[i].Servers, server(k))
	}
	return out
}

func healthState(g serverGauges) string {
	switch {
	case g.shared != nil && g.shared.Healthy:
		return "up"
	case g.shared != nil:
		return "down"
	case g.workers == 0:
		return "unknown"
	case g.healthy == g.workers:
		return "up"
	case g.healthy == 0:
		return "down"
	default:
		return "partial"
	}
}

func (h *hist) summary() LatencySummary {
	n := h.count()
	ls := LatencySummary{Count: n}
	if n == 0 {
		return ls
	}
	ls.MeanSeconds = h.sum / float64(n)
	// The smallest bucket whose cumulative count reaches 99%.
	target := (n*99 + 99) / 100
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= target {
			if i < len(LatencyBuckets) {
				ls.P99Seconds = LatencyBuckets[i]
			}
			break
		}
	}
	return ls
}

func sum5(a [5]uint64) uint64 { return a[0] + a[1] + a[2] + a[3] + a[4] }

func seconds(now, since time.Time) int64 {
	if since.IsZero() || now.Before(since) {
		return 0
	}
	return int64(now.Sub(since) / time.Second)
}
