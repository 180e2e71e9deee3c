package admin

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/config"
)

// t0 is when the fixture's first generation started.
var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

// traffic builds a sample whose every counter derives from n, so a test can
// compute the expected sums: n requests, of which route "api" answered
// n-2 with 2xx and 1 with 5xx, route "static" nothing, and 1 got a 404
// without a route; each request took 20 ms (upstream 10 ms). n must be
// at least 2.
func traffic(pid, gen int, started time.Time, n uint64) WorkerSample {
	if n < 2 {
		panic("traffic: n < 2")
	}
	s := WorkerSample{
		PID: pid, Generation: gen, Started: started,
		Requests: n, BytesIn: 100 * n, BytesOut: 1000 * n,
		RateLimited: n / 10, UpstreamErrors: n / 20,
		Routes: []RouteSample{
			{Name: "api", Responses: [5]uint64{0, n - 2, 0, 0, 1}},
			{Name: "static"},
		},
		Unrouted: [5]uint64{0, 0, 0, 1, 0},
		Upstreams: []UpstreamSample{{Name: "backend", Servers: []ServerSample{
			{Addr: "127.0.0.1:9001", Healthy: true, Picks: n - 1, Failures: n / 20},
			{Addr: "127.0.0.1:9002", Healthy: true},
		}}},
	}
	for range n {
		s.RequestLatency.Observe(0.020)
	}
	for range n - 1 {
		s.UpstreamLatency.Observe(0.010)
	}
	return s
}

// fixtureConfig is the serving generation's config as the master would
// hand it over.
func fixtureConfig() *config.Config {
	return &config.Config{
		File: "/etc/pingora/pingora.hcl",
		Listeners: []config.Listener{
			{Name: "public", Address: "127.0.0.1:8080"},
			{Name: "internal", Address: "127.0.0.1:8081"},
		},
		Upstreams: []config.Upstream{{
			Name: "backend", Balance: "round_robin",
			Servers: []config.Server{
				{Address: "127.0.0.1:9001", Weight: 3},
				{Address: "127.0.0.1:9002", Weight: 1, Backup: true},
			},
		}},
		Routes: []config.Route{
			{Name: "api", Listeners: []string{"public"}, PathPrefix: "/api/", Upstream: "backend"},
			{Name: "static", Listeners: []string{"public", "internal"}, Host: "*.example.com", PathPrefix: "/", Respond: &config.Respond{Status: 200, Body: "ok"}},
		},
	}
}

// fixtureNames are the names fixtureConfig defines, which traffic's
// samples use.
var fixtureNames = NamesOf(fixtureConfig())

func fixtureMaster(gen int, workers ...Worker) Master {
	return Master{
		Process: Process{
			PID: 4000, Started: t0, Binary: "/usr/local/sbin/pingora-master",
			ConfigFile: "/etc/pingora/pingora.hcl", Generation: gen,
		},
		Workers: workers, Config: fixtureConfig(),
	}
}

// serve runs a Server on a loopback port and returns its base URL; the
// cleanup shuts it down and checks that Serve returned nil.
func serve(t *testing.T, agg *Aggregator) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(hclog.New(&hclog.LoggerOptions{Name: "admin", Output: hclog.DefaultOutput, Level: hclog.Warn}), agg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after Shutdown", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp, body
}
