package wire

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// TestLargeSampleRoundTrip: a sample of a config with thousands of routes
// and servers, close to MaxMessage, crosses the control socket whole (Pair
// sizes the socket buffers for it) and decodes to the same value.
func TestLargeSampleRoundTrip(t *testing.T) {
	master, theirs, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	worker, err := FileConn(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()

	s := &WorkerSample{
		PID: 4242, Generation: 7, Started: time.Date(2025, 3, 1, 10, 0, 0, 123456789, time.UTC),
		Requests: 1 << 40, BytesIn: 1 << 41, BytesOut: 1 << 42, RateLimited: 3, UpstreamErrors: 4,
		ActiveConns: 5, InFlight: 6, Unrouted: [5]uint64{0, 0, 0, 7, 8},
	}
	s.RequestLatency.Observe(0.003)
	s.UpstreamLatency.Observe(20)
	for i := 0; i < 2000; i++ {
		s.Routes = append(s.Routes, RouteSample{Name: fmt.Sprintf("route-%04d", i), Responses: [5]uint64{1, 1 << 33, 3, 4, 5}})
	}
	for i := 0; i < 10; i++ {
		u := UpstreamSample{Name: fmt.Sprintf("pool-%d", i)}
		for j := 0; j < 50; j++ {
			u.Servers = append(u.Servers, ServerSample{Addr: fmt.Sprintf("10.0.%d.%d:8080", i, j), Healthy: j%2 == 0, InFlight: 2, Picks: 1 << 35, Failures: 9})
		}
		s.Upstreams = append(s.Upstreams, u)
	}
	if err := worker.SendTimeout(Message{Type: TypeSample, Sample: s}, time.Second); err != nil {
		t.Fatalf("send a large sample: %v", err)
	}
	m, files, err := master.Recv()
	if err != nil || m.Type != TypeSample || len(files) != 0 || m.Sample == nil {
		t.Fatalf("got %+v %v %v", m.Type, files, err)
	}
	if !reflect.DeepEqual(m.Sample, s) {
		t.Errorf("sample changed on the way")
	}
}

// TestSendTimeoutWhenPeerDoesNotRead: a peer that stopped reading cannot
// hold the sender beyond its timeout.
func TestSendTimeoutWhenPeerDoesNotRead(t *testing.T) {
	c, theirs, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer theirs.Close()
	msg := Message{Type: TypeError, Error: string(make([]byte, 32<<10))}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		start := time.Now()
		err := c.SendTimeout(msg, 100*time.Millisecond)
		if err != nil {
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("SendTimeout returned after %v", d)
			}
			return
		}
	}
	t.Fatal("the socket never filled up")
}

// TestBuckets: an observation goes to the first bucket whose bound it does
// not exceed; above the last bound it goes to +Inf.
func TestBuckets(t *testing.T) {
	var h Histogram
	for _, v := range []float64{0.0005, 0.001, 0.0011, 10, 11} {
		h.Observe(v)
	}
	want := make([]uint64, len(LatencyBuckets)+1)
	want[0], want[1], want[len(LatencyBuckets)-1], want[len(LatencyBuckets)] = 2, 1, 1, 1
	if !reflect.DeepEqual(h.Counts, want) || h.Count() != 5 {
		t.Errorf("counts %v (count %d), want %v", h.Counts, h.Count(), want)
	}
}
