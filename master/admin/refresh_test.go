package admin

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serveWith is serve for a Server the test configures first.
func serveWith(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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

// TestRefreshBeforeEachView: the refresh function runs before /metrics,
// /status and the page are rendered, so what it observes is in that very
// view; it does not run for a path that is not served.
func TestRefreshBeforeEachView(t *testing.T) {
	agg := new(Aggregator)
	agg.SetMaster(fixtureMaster(1, Worker{PID: 101, Generation: 1, State: "ready", Started: t0}))
	s := New(nil, agg)
	var calls atomic.Uint64
	s.SetRefresh(func(ctx context.Context) {
		n := calls.Add(1)
		// Each refresh brings a fresh sample: 10 more requests per call.
		if err := agg.Observe(traffic(101, 1, t0, 10*n), fixtureNames); err != nil {
			t.Errorf("Observe: %v", err)
		}
	})
	base := serveWith(t, s)

	_, body := get(t, base+"/metrics")
	if !strings.Contains(string(body), `pingora_requests_total{class="2xx",route="api"} 8`+"\n") {
		t.Errorf("/metrics after the first refresh: want api 2xx = 8 (sample of 10):\n%s", grepLines(string(body), "pingora_requests_total"))
	}
	_, body = get(t, base+"/status")
	if !strings.Contains(string(body), `"requests": 20`) {
		t.Errorf("/status after the second refresh: want requests 20:\n%s", body)
	}
	get(t, base+"/")
	get(t, base+"/nope")
	if got := calls.Load(); got != 3 {
		t.Errorf("refresh ran %d times for /metrics, /status, / and a 404; want 3", got)
	}
}

// TestRefreshIsBounded: a refresh that never returns by itself (a worker
// that does not answer) gets a context that ends, and the view is served
// with what the aggregator has.
func TestRefreshIsBounded(t *testing.T) {
	s := New(nil, nil)
	s.SetRefresh(func(ctx context.Context) { <-ctx.Done() })
	base := serveWith(t, s)
	start := time.Now()
	resp, _ := get(t, base+"/metrics")
	if resp.StatusCode != 200 {
		t.Errorf("/metrics with a stuck refresh: %s", resp.Status)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("/metrics with a stuck refresh took %v", d)
	}
	s.SetRefresh(nil)
	start = time.Now()
	get(t, base+"/metrics")
	if d := time.Since(start); d > refreshTimeout {
		t.Errorf("/metrics without refresh took %v", d)
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
