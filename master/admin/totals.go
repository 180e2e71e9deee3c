package admin

import "github.com/pingora-go/pingora/config"

// counters are the summed counters of some set of workers: the retired
// ones, or retired plus live for a snapshot. Only counters live here;
// gauges are never summed over retired workers.
type counters struct {
	requests        uint64
	bytesIn         uint64
	bytesOut        uint64
	rateLimited     uint64
	upstreamErrors  uint64
	tls             [config.TLSCounterCount]uint64
	h2              [config.H2CounterCount]uint64
	unrouted        [5]uint64
	routes          map[string][5]uint64
	requestLatency  hist
	upstreamLatency hist
	servers         map[serverKey]serverCounts
	storeErrors     map[string]uint64 // by store name
}

// serverKey names an upstream server across workers and generations: the
// same address in the same-named upstream is the same series.
type serverKey struct {
	upstream string
	addr     string
}

type serverCounts struct {
	picks    uint64
	failures uint64
}

// hist is a summed Histogram with exactly len(LatencyBuckets)+1 slots.
type hist struct {
	counts [bucketSlots]uint64
	sum    float64
}

const bucketSlots = config.LatencyBucketCount + 1 // the +Inf slot too

func (h *hist) add(s Histogram) {
	for i, c := range s.Counts {
		h.counts[min(i, bucketSlots-1)] += c
	}
	h.sum += s.Sum
}

func (h *hist) count() uint64 {
	var n uint64
	for _, c := range h.counts {
		n += c
	}
	return n
}

// add folds one worker's sample into c.
func (c *counters) add(s *WorkerSample) {
	c.requests += s.Requests
	c.bytesIn += s.BytesIn
	c.bytesOut += s.BytesOut
	c.rateLimited += s.RateLimited
	c.upstreamErrors += s.UpstreamErrors
	for i, n := range s.TLS {
		c.tls[i] += n
	}
	for i, n := range s.H2 {
		c.h2[i] += n
	}
	for i, n := range s.Unrouted {
		c.unrouted[i] += n
	}
	if len(s.Routes) > 0 && c.routes == nil {
		c.routes = make(map[string][5]uint64)
	}
	for _, r := range s.Routes {
		if r.Name == "" || r.Name == unroutedRoute {
			// Counted as unrouted: one series per route label.
			for i, n := range r.Responses {
				c.unrouted[i] += n
			}
			continue
		}
		acc := c.routes[r.Name]
		for i, n := range r.Responses {
			acc[i] += n
		}
		c.routes[r.Name] = acc
	}
	for _, st := range s.Stores {
		if c.storeErrors == nil {
			c.storeErrors = make(map[string]uint64)
		}
		c.storeErrors[st.Name] += st.Errors
	}
	c.requestLatency.add(s.RequestLatency)
	c.upstreamLatency.add(s.UpstreamLatency)
	for _, u := range s.Upstreams {
		for _, sv := range u.Servers {
			if c.servers == nil {
				c.servers = make(map[serverKey]serverCounts)
			}
			k := serverKey{u.Name, sv.Addr}
			acc := c.servers[k]
			acc.picks += sv.Picks
			acc.failures += sv.Failures
			c.servers[k] = acc
		}
	}
}

// clone returns a deep copy, so a snapshot can add live samples to the
// retired totals without touching them.
func (c *counters) clone() counters {
	out := *c
	out.routes = make(map[string][5]uint64, len(c.routes))
	for k, v := range c.routes {
		out.routes[k] = v
	}
	out.servers = make(map[serverKey]serverCounts, len(c.servers))
	for k, v := range c.servers {
		out.servers[k] = v
	}
	out.storeErrors = make(map[string]uint64, len(c.storeErrors))
	for k, v := range c.storeErrors {
		out.storeErrors[k] = v
	}
	return out
}
