package admin

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestZoneIsMachineWide: the rate-limit zone is one memory every worker
// reads, so /metrics and /status show the latest reading, never a sum
// over workers.
func TestZoneIsMachineWide(t *testing.T) {
	var agg Aggregator
	agg.SetMaster(fixtureMaster(1, Worker{PID: 101, Generation: 1, State: "serving"}, Worker{PID: 102, Generation: 1, State: "serving"}))
	a := traffic(101, 1, t0, 10)
	a.RateLimitZone = &ZoneSample{Bytes: 1 << 20, Slots: 65280, Used: 100, Evictions: 3}
	b := traffic(102, 1, t0, 10)
	b.RateLimitZone = &ZoneSample{Bytes: 1 << 20, Slots: 65280, Used: 120, Evictions: 5}
	for _, s := range []WorkerSample{a, b} {
		if err := agg.Observe(s, fixtureNames); err != nil {
			t.Fatal(err)
		}
	}
	base := serve(t, &agg)
	got := series(scrape(t, base))
	for name, want := range map[string]float64{
		"pingora_rate_limit_zone_slots{}":      65280,
		"pingora_rate_limit_zone_used_slots{}": 120,
		"pingora_rate_limit_evictions_total{}": 5,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	_, body := get(t, base+"/status")
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	z := st.RateLimitZone
	if z == nil || z.Slots != 65280 || z.Used != 120 || z.Evictions != 5 || z.Bytes != 1<<20 {
		t.Fatalf("status rate_limit_zone = %+v", z)
	}
	// The page shows the zone too (it failed to render whenever there was
	// one: a master always has one).
	resp, page := get(t, base+"/")
	if resp.StatusCode != 200 || !strings.Contains(string(page), `1.0 MiB / 65280`) || !strings.Contains(string(page), `id="zone-used">120 (`) {
		t.Fatalf("status page with a zone: %s\n%s", resp.Status, page)
	}
}
