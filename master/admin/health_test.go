package admin

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestSharedHealthIsOneView: workers that read one shared health zone
// report the same facts, sampled at different moments. /status and
// /metrics show the newest generation's latest reading: no "partial"
// state from samples taken either side of a change, and the machine-wide
// check and marking counts are never summed over workers.
func TestSharedHealthIsOneView(t *testing.T) {
	now := t0.Add(time.Hour)
	agg := Aggregator{clock: func() time.Time { return now }}
	agg.SetMaster(fixtureMaster(2,
		Worker{PID: 101, Generation: 1, State: "draining"},
		Worker{PID: 201, Generation: 2, State: "serving"},
		Worker{PID: 202, Generation: 2, State: "serving"}))
	sample := func(pid, gen int, healthy bool, checks uint64) WorkerSample {
		s := traffic(pid, gen, t0, 10)
		sv := &s.Upstreams[0].Servers[0]
		sv.Healthy, sv.Shared, sv.ActiveUp, sv.Checks, sv.Disabled = healthy, true, healthy, checks, 2
		s.Upstreams[0].Servers[1].Shared, s.Upstreams[0].Servers[1].ActiveUp = true, true
		return s
	}
	// Worker 201 read the zone before the server went down, 202 after;
	// the draining generation's 101 (sampled last) still reads it up
	// under its old config's checks.
	for i, s := range []WorkerSample{sample(201, 2, true, 40), sample(202, 2, false, 42), sample(101, 1, true, 43)} {
		s.HealthZone = &HealthZoneSample{Slots: 8192, Used: int64(10 + i), Overflows: uint64(i)}
		if err := agg.Observe(s, fixtureNames); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second)
	}
	base := serve(t, &agg)
	got := series(scrape(t, base))
	const labels = "{server=127.0.0.1:9001,upstream=backend}"
	for name, want := range map[string]float64{
		"pingora_upstream_server_healthy" + labels:        0,
		"pingora_upstream_health_checks_total" + labels:   42,
		"pingora_upstream_server_disabled_total" + labels: 2,
		"pingora_health_zone_slots{}":                     8192,
		"pingora_health_zone_used_slots{}":                12,
		"pingora_health_zone_overflows_total{}":           2,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	_, body := get(t, base+"/status")
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if z := st.HealthZone; z == nil || *z != (HealthZoneSample{Slots: 8192, Used: 12, Overflows: 2}) {
		t.Fatalf("status health_zone = %+v, want the latest sample's", z)
	}
	sv := st.Upstreams[0].Servers[0]
	if sv.State != "down" || !sv.ActiveDown || sv.Checks != 42 || sv.Disabled != 2 || sv.Workers != 3 {
		t.Fatalf("status of the server: %+v; want down (active), 42 checks, 2 disablings, 3 workers reporting", sv)
	}
	if other := st.Upstreams[0].Servers[1]; other.State != "up" {
		t.Fatalf("the other server: %+v, want up", other)
	}
	_, page := get(t, base+"/")
	for _, want := range []string{"<td>DOWN (checks fail)</td>", `<td class="n">42</td>`, `<th class="n">checks</th>`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}
