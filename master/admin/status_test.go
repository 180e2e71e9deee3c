package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

// TestStatusJSON checks /status: the `-s status` fields under their names
// (pid, started, binary, config, generation, workers with pid, generation,
// state, started, restarts), then listeners, routes and upstream servers
// with health and traffic.
func TestStatusJSON(t *testing.T) {
	var a Aggregator
	base := serve(t, &a)
	g2 := t0.Add(time.Hour)
	w201 := traffic(201, 2, g2, 20)
	w201.ActiveConns = 5
	w202 := traffic(202, 2, g2, 4)
	w202.Upstreams[0].Servers[1].Healthy = false
	w101 := traffic(101, 1, t0, 10)
	// A route the new config no longer has, counted by generation 1.
	w101.Routes = append(w101.Routes, RouteSample{Name: "legacy", Responses: [5]uint64{0, 3, 0, 0, 0}})
	gen1 := fixtureConfig()
	gen1.Routes = append(gen1.Routes, config.Route{Name: "legacy"})
	if err := a.Observe(w101, NamesOf(gen1)); err != nil {
		t.Fatal(err)
	}
	mustObserve(t, &a, w201, w202)
	a.Retire(101)
	a.SetMaster(fixtureMaster(2,
		Worker{PID: 201, Generation: 2, State: "ready", Started: g2},
		Worker{PID: 202, Generation: 2, State: "ready", Started: g2, Restarts: 3},
		Worker{PID: 102, Generation: 1, State: "draining", Started: t0},
	))

	resp, body := get(t, base+"/status")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/status: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}

	// Shape: the keys an operator's script reads.
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("decode: %v\n%s", err, body)
	}
	for _, k := range []string{"pid", "started", "binary", "config", "generation", "workers",
		"uptime_seconds", "generations", "listeners", "routes", "upstreams", "totals",
		"reloads", "upgrades", "worker_restarts"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("/status lacks %q", k)
		}
	}
	worker := doc["workers"].([]any)[0].(map[string]any)
	for _, k := range []string{"pid", "generation", "state", "started", "restarts", "uptime_seconds", "requests", "active_connections", "in_flight"} {
		if _, ok := worker[k]; !ok {
			t.Errorf("/status workers[0] lacks %q: %v", k, worker)
		}
	}
	server := doc["upstreams"].([]any)[0].(map[string]any)["servers"].([]any)[0].(map[string]any)
	for _, k := range []string{"address", "state", "healthy_workers", "workers", "in_flight", "picks", "failures"} {
		if _, ok := server[k]; !ok {
			t.Errorf("/status server lacks %q: %v", k, server)
		}
	}

	// Values.
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.PID != 4000 || st.Generation != 2 || st.Binary != "/usr/local/sbin/pingora-master" ||
		st.ConfigFile != "/etc/pingora/pingora.hcl" || !st.Started.Equal(t0) {
		t.Errorf("master facts: %+v", st)
	}
	var pids []int
	for _, w := range st.Workers {
		pids = append(pids, w.PID)
	}
	if len(pids) != 3 || pids[0] != 201 || pids[1] != 202 || pids[2] != 102 {
		t.Fatalf("workers %v, want newest generation first: 201 202 102", pids)
	}
	if w := st.Workers[1]; !w.Sampled || w.Requests != 4 || w.Restarts != 3 || w.State != "ready" {
		t.Errorf("worker 202: %+v", w)
	}
	if w := st.Workers[2]; w.Sampled || w.State != "draining" {
		t.Errorf("worker 102 has no sample: %+v", w)
	}
	if len(st.Generations) != 2 || !st.Generations[0].Current || st.Generations[0].Requests != 24 ||
		st.Generations[0].States["ready"] != 2 || st.Generations[1].States["draining"] != 1 {
		t.Errorf("generations: %+v", st.Generations)
	}
	if len(st.Listeners) != 2 || st.Listeners[0] != (ListenerStatus{"public", "127.0.0.1:8080"}) {
		t.Errorf("listeners: %+v", st.Listeners)
	}
	if len(st.Routes) != 3 {
		t.Fatalf("routes: %+v", st.Routes)
	}
	if r := st.Routes[0]; r.Name != "api" || r.Upstream != "backend" || r.Responses != [5]uint64{0, 8 + 18 + 2, 0, 0, 3} || r.Requests != 31 {
		t.Errorf("route api: %+v", r)
	}
	if r := st.Routes[1]; r.Name != "static" || r.RespondStatus != 200 || r.Host != "*.example.com" || r.Requests != 0 {
		t.Errorf("route static: %+v", r)
	}
	if r := st.Routes[2]; r.Name != "legacy" || !r.Removed || r.Requests != 3 {
		t.Errorf("removed route: %+v", r)
	}
	if st.Totals.Requests != 34 || st.Totals.ActiveConns != 5 || st.Totals.Unrouted[3] != 3 {
		t.Errorf("totals: %+v", st.Totals)
	}
	if l := st.Totals.RequestLatency; l.Count != 34 || l.P99Seconds != 0.025 || l.MeanSeconds < 0.0199 || l.MeanSeconds > 0.0201 {
		t.Errorf("request latency: %+v", l)
	}
	if len(st.Upstreams) != 1 || len(st.Upstreams[0].Servers) != 2 {
		t.Fatalf("upstreams: %+v", st.Upstreams)
	}
	s1, s2 := st.Upstreams[0].Servers[0], st.Upstreams[0].Servers[1]
	if s1.State != "up" || s1.Weight != 3 || s1.Picks != 9+19+3 || s1.HealthyWorkers != 2 || s1.Workers != 2 {
		t.Errorf("server 9001: %+v", s1)
	}
	if s2.State != "partial" || !s2.Backup || s2.HealthyWorkers != 1 {
		t.Errorf("server 9002: %+v", s2)
	}
}

// TestStatusWithoutMaster: samples arrive before the master's first
// SetMaster; the zero value still answers, listing the reporting workers.
func TestStatusWithoutMaster(t *testing.T) {
	var a Aggregator
	mustObserve(t, &a, traffic(77, 1, t0, 3))
	st := a.Status(time.Now())
	if len(st.Workers) != 1 || st.Workers[0].PID != 77 || st.Workers[0].State != "unknown" || st.Workers[0].Requests != 3 {
		t.Fatalf("workers: %+v", st.Workers)
	}
	body, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"listeners":[]`) {
		t.Errorf("empty lists must be [] not null: %s", body)
	}
}

// TestServerRouting: only GET/HEAD on /, /status and /metrics; the page
// carries a CSP that allows nothing external.
func TestServerRouting(t *testing.T) {
	base := serve(t, nil)
	resp, body := get(t, base+"/nope")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/nope: %s", resp.Status)
	}
	post, err := http.Post(base+"/status", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status: %s", post.Status)
	}
	resp, body = get(t, base+"/")
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'sha256-") {
		t.Errorf("/: %s, CSP %q", resp.Status, csp)
	}
	if !strings.Contains(string(body), "no workers") || strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
		t.Errorf("empty page: want 'no workers' and no external reference:\n%s", body)
	}
	resp, body = get(t, base+"/?fragment=1")
	if resp.StatusCode != 200 || strings.Contains(string(body), "<html") || !strings.Contains(string(body), `id="workers"`) {
		t.Errorf("fragment: %s\n%s", resp.Status, body)
	}
}
