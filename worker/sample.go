package worker

import (
	"os"
	"time"

	"github.com/pingora-go/pingora/proxy"
	"github.com/pingora-go/pingora/proxy/upstream"
	"github.com/pingora-go/pingora/worker/wire"
)

// sampleTimeout bounds sending one sample: a master that stopped reading
// must not hold up the worker's loop (its drain and exit timers).
const sampleTimeout = time.Second

// sampler turns the proxy's counters into the samples the master's admin
// listener sums. The master asks for one (wire.TypeStats) about once a
// second and before each scrape, and the worker sends a last one, unasked,
// just before it exits, so what a drained worker counted is exactly in the
// master's retired totals.
type sampler struct {
	pid        int
	generation int
	started    time.Time
}

func newSampler(hs *wire.Handshake, started time.Time) *sampler {
	return &sampler{pid: os.Getpid(), generation: hs.Generation, started: started}
}

// send sends a sample of p's counters. Errors are returned for the caller
// to log or ignore (a master that is gone cannot be told anything).
func (s *sampler) send(conn *wire.Conn, p *proxy.Proxy) error {
	smp := s.sample(p.Stats())
	return conn.SendTimeout(wire.Message{Type: wire.TypeSample, Sample: smp}, sampleTimeout)
}

// sample is the one place where proxy.Stats becomes a wire.WorkerSample.
func (s *sampler) sample(st proxy.Stats) *wire.WorkerSample {
	ws := &wire.WorkerSample{
		PID:        s.pid,
		Generation: s.generation,
		Started:    s.started,

		Requests:       st.Requests,
		BytesIn:        st.BytesIn,
		BytesOut:       st.BytesOut,
		RateLimited:    st.RateLimited,
		UpstreamErrors: st.UpstreamErr,
		TLS:            st.TLS,
		H2:             st.H2,
		ActiveConns:    st.ActiveConns,
		ParkedConns:    st.ParkedConns,
		InFlight:       st.InFlight,
		Unrouted:       st.Unrouted,
		Routes:         make([]wire.RouteSample, len(st.Routes)),
	}
	for i, r := range st.Routes {
		ws.Routes[i] = wire.RouteSample{Name: r.Name, Responses: r.Responses}
	}
	// Both count into config.LatencyBuckets.
	ws.RequestLatency = wire.Histogram{Counts: st.RequestLatency.Counts[:], Sum: st.RequestLatency.Sum.Seconds()}
	ws.UpstreamLatency = wire.Histogram{Counts: st.UpstreamLatency.Counts[:], Sum: st.UpstreamLatency.Sum.Seconds()}
	ws.Upstreams = upstreamSamples(st.Upstreams)
	if z := st.RateLimitZone; z != nil {
		ws.RateLimitZone = &wire.ZoneSample{Bytes: z.Bytes, Slots: z.Slots, Used: z.Used, Evictions: z.Evictions}
	}
	if z := st.HealthZone; z.Slots > 0 {
		ws.HealthZone = &wire.HealthZoneSample{Slots: z.Slots, Used: z.Used, Overflows: z.Overflows}
	}
	for _, sto := range st.Stores {
		ws.Stores = append(ws.Stores, wire.StoreSample{Name: sto.Name, Up: sto.Up, Errors: sto.Errors})
	}
	return ws
}

// upstreamSamples converts the balancer's view of every pool (what
// upstream.Pool.Snapshot returns) for the master.
func upstreamSamples(pools []upstream.PoolStats) []wire.UpstreamSample {
	out := make([]wire.UpstreamSample, len(pools))
	for i, p := range pools {
		us := wire.UpstreamSample{Name: p.Name, Servers: make([]wire.ServerSample, len(p.Servers))}
		for j, sv := range p.Servers {
			us.Servers[j] = wire.ServerSample{
				Addr:      sv.Addr,
				Healthy:   sv.Healthy,
				InFlight:  sv.InFlight,
				Picks:     sv.Picks,
				Failures:  sv.Failures,
				Shared:    sv.Shared,
				ActiveUp:  sv.ActiveUp,
				DownUntil: sv.DownUntil,
				Checks:    sv.Checks,
				Disabled:  sv.Disabled,
			}
		}
		out[i] = us
	}
	return out
}
