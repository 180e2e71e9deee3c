package worker

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/proxy"
	"github.com/pingora-go/pingora/proxy/upstream"
	"github.com/pingora-go/pingora/worker/wire"
)

// TestSampleCountsWhatTheProxyServed runs a real proxy on loopback, sends
// it requests, and checks that the sample the worker would send says what
// a client saw: requests by route and status class, unrouted answers,
// bytes, and the worker's identity.
func TestSampleCountsWhatTheProxyServed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
listener "public" {
  address = %q
}
route "ok" {
  path_prefix = "/ok"
  respond {
    status = 200
    body   = "fine"
  }
}
route "gone" {
  path_prefix = "/gone"
  respond {
    status = 410
  }
}
`, ln.Addr().String())
	cfg, err := config.Parse([]byte(src), "sample_test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(cfg, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(map[string]net.Listener{"public": ln}) }()
	t.Cleanup(func() {
		p.Close()
		<-done
	})
	select {
	case <-p.Ready():
	case err := <-done:
		t.Fatalf("proxy stopped: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("proxy not ready within 5s")
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	hit := func(path string, want int) {
		resp, err := client.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	for range 3 {
		hit("/ok", 200)
	}
	hit("/gone", 410)
	hit("/nowhere", 404)

	started := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	s := newSampler(&wire.Handshake{Generation: 4}, started)
	var smp *wire.WorkerSample
	// A response reaches the client as the proxy finishes counting it:
	// wait (bounded) for the last one to be in.
	deadline := time.Now().Add(5 * time.Second)
	for {
		smp = s.sample(p.Stats())
		if smp.Requests >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if smp.PID <= 0 || smp.Generation != 4 || !smp.Started.Equal(started) {
		t.Errorf("identity: pid %d generation %d started %v", smp.PID, smp.Generation, smp.Started)
	}
	if smp.Requests != 5 {
		t.Errorf("requests %d, want 5", smp.Requests)
	}
	routes := map[string][5]uint64{}
	for _, r := range smp.Routes {
		routes[r.Name] = r.Responses
	}
	if want := map[string][5]uint64{"ok": {0, 3, 0, 0, 0}, "gone": {0, 0, 0, 1, 0}}; !reflect.DeepEqual(routes, want) {
		t.Errorf("routes %v, want %v", routes, want)
	}
	if smp.Unrouted != [5]uint64{0, 0, 0, 1, 0} {
		t.Errorf("unrouted %v, want one 4xx", smp.Unrouted)
	}
	if smp.BytesIn == 0 || smp.BytesOut == 0 {
		t.Errorf("bytes in %d out %d, want both counted", smp.BytesIn, smp.BytesOut)
	}
	if smp.Routes == nil {
		t.Errorf("routes must be a list")
	}
	if n := smp.RequestLatency.Count(); n != smp.Requests {
		t.Errorf("request latency counted %d observations, want one per request (%d): %+v", n, smp.Requests, smp.RequestLatency)
	}
}

// TestUpstreamSamples: the balancer's per-pool view maps field by field.
func TestUpstreamSamples(t *testing.T) {
	got := upstreamSamples([]upstream.PoolStats{{
		Name: "app", Balance: "round_robin",
		Servers: []upstream.ServerStats{
			{Addr: "10.0.0.1:80", Weight: 2, Healthy: true, InFlight: 3, Picks: 40, Failures: 1},
			{Addr: "10.0.0.2:80", Backup: true, Healthy: false, Picks: 2, Failures: 2, Disabled: 1,
				Shared: true, ActiveUp: true, DownUntil: time.Unix(2e9, 0), Checks: 7},
		},
	}})
	want := []wire.UpstreamSample{{Name: "app", Servers: []wire.ServerSample{
		{Addr: "10.0.0.1:80", Healthy: true, InFlight: 3, Picks: 40, Failures: 1},
		{Addr: "10.0.0.2:80", Healthy: false, Picks: 2, Failures: 2, Disabled: 1,
			Shared: true, ActiveUp: true, DownUntil: time.Unix(2e9, 0), Checks: 7},
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if got := upstreamSamples(nil); got == nil || len(got) != 0 {
		t.Errorf("no pools: %#v, want an empty list", got)
	}
}
