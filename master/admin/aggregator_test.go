package admin

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// totalsOf is what a test compares: the summed counters and live gauges.
type totalsOf struct {
	requests, bytesIn, api2xx, api5xx, unrouted4xx, picks uint64
	latencyCount                                          uint64
	active                                                int64
}

func observeTotals(a *Aggregator) totalsOf {
	st := a.Status(time.Now())
	var api [5]uint64
	for _, r := range st.Routes {
		if r.Name == "api" {
			api = r.Responses
		}
	}
	var picks uint64
	for _, u := range st.Upstreams {
		for _, s := range u.Servers {
			picks += s.Picks
		}
	}
	return totalsOf{
		requests: st.Totals.Requests, bytesIn: st.Totals.BytesReceived,
		api2xx: api[1], api5xx: api[4], unrouted4xx: st.Totals.Unrouted[3], picks: picks,
		latencyCount: st.Totals.RequestLatency.Count, active: st.Totals.ActiveConns,
	}
}

// TestCountersStayMonotonicAcrossGenerations walks a reload (generation 1
// drained and retired while generation 2 serves) and a crash, checking the
// sums at every step: what a retired worker counted is kept, gauges come
// only from live workers, and nothing is counted twice.
func TestCountersStayMonotonicAcrossGenerations(t *testing.T) {
	var a Aggregator
	g1 := t0
	g2 := t0.Add(time.Hour)
	step := func(name string, want totalsOf, prev *totalsOf) {
		t.Helper()
		got := observeTotals(&a)
		if got != want {
			t.Fatalf("%s: totals %+v, want %+v", name, got, want)
		}
		if prev != nil && (got.requests < prev.requests || got.bytesIn < prev.bytesIn ||
			got.api2xx < prev.api2xx || got.picks < prev.picks || got.latencyCount < prev.latencyCount) {
			t.Fatalf("%s: a counter went backwards: %+v after %+v", name, got, *prev)
		}
		*prev = got
	}
	var last totalsOf

	// Generation 1 serves.
	w101 := traffic(101, 1, g1, 10)
	w101.ActiveConns = 4
	w102 := traffic(102, 1, g1, 6)
	w102.ActiveConns = 2
	mustObserve(t, &a, w101, w102)
	step("generation 1", totalsOf{16, 1600, 8 + 4, 2, 2, 9 + 5, 16, 6}, &last)

	// Reload: generation 2 starts and serves; generation 1 sends its final
	// samples while draining, then exits.
	mustObserve(t, &a, traffic(201, 2, g2, 3), traffic(202, 2, g2, 2))
	w101 = traffic(101, 1, g1, 12)
	w101.ActiveConns = 1
	mustObserve(t, &a, w101)
	step("both generations", totalsOf{12 + 6 + 3 + 2, 2300, 10 + 4 + 1 + 0, 4, 4, 11 + 5 + 2 + 1, 23, 1 + 2}, &last)
	a.Retire(101)
	a.Retire(102)
	step("generation 1 retired", totalsOf{23, 2300, 15, 4, 4, 19, 23, 0}, &last)

	// A late sample from a retired worker changes nothing.
	mustObserve(t, &a, traffic(101, 1, g1, 50))
	step("late sample ignored", totalsOf{23, 2300, 15, 4, 4, 19, 23, 0}, &last)

	// Generation 2 serves more; then 201 crashes after its last sample.
	w201 := traffic(201, 2, g2, 20)
	w201.ActiveConns = 7
	mustObserve(t, &a, w201, traffic(202, 2, g2, 5))
	step("generation 2 serving", totalsOf{12 + 6 + 20 + 5, 4300, 10 + 4 + 18 + 3, 4, 4, 11 + 5 + 19 + 4, 43, 7}, &last)
	a.Retire(201)
	step("201 crashed", totalsOf{43, 4300, 35, 4, 4, 39, 43, 0}, &last)

	// Its replacement reuses pid 101 (a new process: other start time)
	// and counts from zero.
	mustObserve(t, &a, traffic(101, 2, g2.Add(time.Minute), 2))
	step("replacement with a recycled pid", totalsOf{45, 4500, 35, 5, 5, 40, 45, 0}, &last)
}

// TestObserveRetiresAReplacedProcess: without a Retire in between, a sample
// for a live pid from another process (other start time) must not erase
// what the first one counted.
func TestObserveRetiresAReplacedProcess(t *testing.T) {
	var a Aggregator
	mustObserve(t, &a, traffic(300, 1, t0, 10))
	mustObserve(t, &a, traffic(300, 1, t0.Add(time.Second), 4))
	if got := a.Status(time.Now()).Totals.Requests; got != 14 {
		t.Fatalf("requests %d, want 14", got)
	}
	// Counters going backwards for the same process is a reset too.
	mustObserve(t, &a, traffic(300, 1, t0.Add(time.Second), 3))
	if got := a.Status(time.Now()).Totals.Requests; got != 17 {
		t.Fatalf("requests after a reset %d, want 17", got)
	}
}

func TestObserveRejectsBadPID(t *testing.T) {
	var a Aggregator
	for _, pid := range []int{0, -1} {
		if err := a.Observe(traffic(pid, 1, t0, 5), fixtureNames); !errors.Is(err, ErrBadSample) {
			t.Errorf("pid %d: err %v, want ErrBadSample", pid, err)
		}
	}
	a.Retire(12345) // unknown: ignored
	if st := a.Status(time.Now()); st.Totals.Requests != 0 || len(st.Workers) != 0 {
		t.Fatalf("bad samples were counted: %+v", st.Totals)
	}
}

// TestHistogramBuckets checks the bucket convention workers count by.
func TestHistogramBuckets(t *testing.T) {
	var h Histogram
	for _, v := range []float64{0.0005, 0.001, 0.0011, 10, 11} {
		h.Observe(v)
	}
	want := map[int]uint64{0: 2, 1: 1, 12: 1, 13: 1}
	for i, c := range h.Counts {
		if c != want[i] {
			t.Errorf("slot %d (le %v): %d, want %d", i, bound(i), c, want[i])
		}
	}
	if h.Count() != 5 {
		t.Errorf("count %d", h.Count())
	}
	// A histogram with a short Counts is tolerated; a longer one than the
	// buckets is refused.
	var a Aggregator
	s := traffic(1, 1, t0, 3)
	s.RequestLatency = Histogram{Counts: []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, Sum: 1}
	s.UpstreamLatency = Histogram{Counts: []uint64{4}}
	mustObserve(t, &a, s)
	st := a.Status(time.Now())
	if st.Totals.RequestLatency.Count != 105 || st.Totals.UpstreamLatency.Count != 4 {
		t.Fatalf("counts %d %d", st.Totals.RequestLatency.Count, st.Totals.UpstreamLatency.Count)
	}
	long := traffic(2, 1, t0, 3)
	long.RequestLatency = Histogram{Counts: make([]uint64, 1<<20)}
	if err := a.Observe(long, fixtureNames); !errors.Is(err, ErrBadSample) {
		t.Fatalf("a histogram of 1<<20 buckets: err %v, want ErrBadSample", err)
	}
}

// TestObserveRefusesNamesNotInConfig: a worker is untrusted input, and the
// totals live as long as the master. A sample naming a route, upstream or
// server its generation's config does not define, or naming one twice, or
// naming 100,000 things, is refused whole: the totals, /metrics and the
// status stay exactly as they were.
func TestObserveRefusesNamesNotInConfig(t *testing.T) {
	var a Aggregator
	a.SetMaster(fixtureMaster(1))
	mustObserve(t, &a, traffic(1, 1, t0, 10))
	a.Retire(1)
	mustObserve(t, &a, traffic(2, 1, t0, 4))
	before := observeTotals(&a)
	base := serve(t, &a)
	// Only the proxy's series: the Go runtime's change by themselves.
	metricsText := func() string {
		_, body := get(t, base+"/metrics")
		var own []string
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "pingora_") {
				own = append(own, line)
			}
		}
		return strings.Join(own, "\n")
	}
	metricsBefore := metricsText()

	many := traffic(2, 1, t0, 50)
	for i := range 100_000 {
		many.Routes = append(many.Routes, RouteSample{Name: fmt.Sprintf("r%d", i), Responses: [5]uint64{0, 1}})
	}
	manyServers := traffic(2, 1, t0, 50)
	for i := range 100_000 {
		manyServers.Upstreams[0].Servers = append(manyServers.Upstreams[0].Servers, ServerSample{Addr: fmt.Sprintf("10.0.%d.%d:80", i/256, i%256), Picks: 1})
	}
	unknownRoute := traffic(2, 1, t0, 50)
	unknownRoute.Routes = append(unknownRoute.Routes, RouteSample{Name: "no-such-route", Responses: [5]uint64{0, 7}})
	unknownUpstream := traffic(2, 1, t0, 50)
	unknownUpstream.Upstreams = []UpstreamSample{{Name: "elsewhere", Servers: []ServerSample{{Addr: "10.9.9.9:80", Picks: 3}}}}
	unknownServer := traffic(2, 1, t0, 50)
	unknownServer.Upstreams[0].Servers[1].Addr = "10.9.9.9:80"
	twice := traffic(2, 1, t0, 50)
	twice.Routes = append(twice.Routes, twice.Routes[0])
	unrouted := traffic(2, 1, t0, 50)
	unrouted.Routes = append(unrouted.Routes[:1], RouteSample{Name: unroutedRoute, Responses: [5]uint64{0, 0, 0, 9}})

	for name, s := range map[string]WorkerSample{
		"100,000 routes": many, "100,000 servers": manyServers, "unknown route": unknownRoute,
		"unknown upstream": unknownUpstream, "unknown server": unknownServer,
		"a route twice": twice, "the unrouted label as a route": unrouted,
	} {
		if err := a.Observe(s, fixtureNames); !errors.Is(err, ErrBadSample) {
			t.Errorf("%s: err %v, want ErrBadSample", name, err)
		}
		if err := a.Observe(s, nil); !errors.Is(err, ErrBadSample) {
			t.Errorf("%s, no names to check against: err %v, want ErrBadSample", name, err)
		}
	}
	if got := observeTotals(&a); got != before {
		t.Fatalf("totals changed by refused samples: %+v, were %+v", got, before)
	}
	after := metricsText()
	if after != metricsBefore {
		t.Fatalf("/metrics changed by refused samples:\n%s\nwas:\n%s", after, metricsBefore)
	}
	for _, bad := range []string{"no-such-route", "r99999", "elsewhere", "10.9.9.9"} {
		if strings.Contains(after, bad) {
			t.Errorf("/metrics shows %q, which the config does not define", bad)
		}
	}
	a.Retire(2)
	if got := a.Status(time.Now()).Totals.Requests; got != 14 {
		t.Fatalf("requests after retiring %d, want 14: a refused sample replaced the worker's last good one", got)
	}
}

func bound(i int) float64 {
	if i < len(LatencyBuckets) {
		return LatencyBuckets[i]
	}
	return -1
}

func mustObserve(t *testing.T, a *Aggregator, samples ...WorkerSample) {
	t.Helper()
	for _, s := range samples {
		if err := a.Observe(s, fixtureNames); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRequestRate: a worker's rate is its request delta over the time
// between its last two samples; the total sums the live workers'.
func TestRequestRate(t *testing.T) {
	now := t0
	a := Aggregator{clock: func() time.Time { return now }}
	mustObserve(t, &a, traffic(1, 1, t0, 100), traffic(2, 1, t0, 10))
	now = now.Add(2 * time.Second)
	mustObserve(t, &a, traffic(1, 1, t0, 300), traffic(2, 1, t0, 30))
	st := a.Status(now)
	if st.Workers[0].RequestsPerSecond != 100 || st.Workers[1].RequestsPerSecond != 10 || st.Totals.RequestsPerSecond != 110 {
		t.Fatalf("rates %v %v, total %v; want 100, 10, 110",
			st.Workers[0].RequestsPerSecond, st.Workers[1].RequestsPerSecond, st.Totals.RequestsPerSecond)
	}
	a.Retire(1)
	if got := a.Status(now).Totals.RequestsPerSecond; got != 10 {
		t.Fatalf("rate after a retire %v, want 10 (live workers only)", got)
	}
}
