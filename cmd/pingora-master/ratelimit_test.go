package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestRateLimitIsMachineWide: with 4 workers, each on its own reuseport
// socket so a flood's connections spread over all of them, a limit of
// 100/s with no burst admits 100/s in all, not 100/s per worker.
//
// It counts: a flood from 16 keep-alive connections for 3 s, then
// admitted (200) against 1 + 100/s x elapsed. GCRA with
// burst 0 admits exactly one request per 10 ms while requests keep
// coming, so the tolerance is the 2% (one request per 50 ms of
// flood), plus the first request the full bucket admits. Per-worker
// buckets would admit about 4 times as many.
func TestRateLimitIsMachineWide(t *testing.T) {
	in := newInstance(t, 4)
	in.Params.ReusePort = true
	in.Params.Extra = `
route "limited" {
  path_prefix = "/app/get"
  upstream    = "app"
  rate_limit {
    requests = 100
    per      = "1s"
    burst    = 0
  }
}
`
	in.WriteConfig(in.Params)
	in.Start()

	// Per-worker buckets would admit about 4 times as many. Under the
	// count means the flood left 10 ms slots without a request waiting
	// (GCRA with burst 0 keeps no unused slot): see floodCounted.
	floodCounted(t, []*instance{in}, 16, 3*time.Second, "4 workers at 100/s", 0.02, func(f floodResult) float64 {
		// The bucket is full at the first flood and no emptier than a
		// slot at later ones: one request either way, plus the rate.
		want := 1 + 100*f.elapsed.Seconds()
		if f.refused < 4*int64(want) {
			t.Fatalf("only %d requests refused: the flood did not outrun the limit, the count says nothing", f.refused)
		}
		return want
	})
}

// floodCounted floods ins (conns connections each, for d) and checks that
// they admitted what want says of the flood, within tol. Over it is the
// failure these tests are for, and fails at once. Under it, the CPUs were
// taken from every worker or client at once, which a busy shared machine
// does: that flood is counted again, three floods in all.
func floodCounted(t *testing.T, ins []*instance, conns int, d time.Duration, what string, tol float64, want func(floodResult) float64) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		f := floodLimited(t, ins, conns, d)
		w, got := want(f), float64(f.admitted)
		t.Logf("%s, flood %d, %.3fs: %d admitted, %d refused; want %.1f +- %g%%", what, attempt, f.elapsed.Seconds(), f.admitted, f.refused, w, tol*100)
		switch {
		case got > w*(1+tol):
			t.Fatalf("%s: admitted %.0f in %.3fs, want %.1f +- %g%%", what, got, f.elapsed.Seconds(), w, tol*100)
		case got >= w*(1-tol):
			return
		case attempt == 3:
			t.Fatalf("%s: admitted %.0f in %.3fs, want %.1f +- %g%% (under, 3 floods in a row)", what, got, f.elapsed.Seconds(), w, tol*100)
		}
	}
}

// floodResult counts a flood's answers.
type floodResult struct {
	admitted, refused int64 // 200s, 429s
	elapsed           time.Duration
}

// floodLimited sends GETs for /app/get through every instance at once, on
// perInstance keep-alive connections each, as fast as they are answered,
// for d; elapsed is from the first request sent to the last answer read.
// Any answer but 200 or 429, or a failed request, fails the test. A 429
// costs the proxy so little that a connection reaches keepalive_requests
// within a flood: the server then says close, and the client dials again.
func floodLimited(t *testing.T, ins []*instance, perInstance int, d time.Duration) floodResult {
	t.Helper()
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(ins)*perInstance)
	start := time.Now()
	end := start.Add(d)
	for _, in := range ins {
		for range perInstance {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := dial(in.Addr)
				for err == nil && time.Now().Before(end) {
					var r *response
					if r, err = c.do("GET", "/app/get?id=flood", nil, false); err != nil {
						break
					}
					switch r.Status {
					case 200:
						admitted.Add(1)
					case 429:
						refused.Add(1)
					default:
						err = fmt.Errorf("answer %s", r.describe())
					}
					if r.Close {
						c.Close()
						c, err = dial(in.Addr)
					}
				}
				if c != nil {
					c.Close()
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatalf("flood: %v", err)
	}
	return floodResult{admitted: admitted.Load(), refused: refused.Load(), elapsed: elapsed}
}

// TestRateLimitSurvivesReloadAndUpgrade: a key that used its one request
// of the hour stays refused through a reload (SIGHUP) and a binary upgrade
// (SIGUSR2), whichever worker of whichever generation or master answers:
// the new workers continue the old buckets.
func TestRateLimitSurvivesReloadAndUpgrade(t *testing.T) {
	in := newInstance(t, 2)
	in.Params.ReusePort = true
	in.Params.Extra = `
route "once" {
  path_prefix = "/app/get"
  upstream    = "app"
  rate_limit {
    requests = 1
    per      = "1h"
  }
}
`
	in.WriteConfig(in.Params)
	in.Start()

	// On new connections each, so both workers' sockets get some.
	expect := func(when string, n, status int) {
		t.Helper()
		for i := range n {
			st, body, err := get(in.Addr, "/app/get")
			if err != nil {
				t.Fatalf("%s, request %d: %v", when, i+1, err)
			}
			if st != status {
				t.Fatalf("%s, request %d: %d %q, want %d", when, i+1, st, body, status)
			}
		}
	}
	expect("first request", 1, 200)
	expect("before the reload", 8, 429)

	in.SetGen(1)
	in.Signal(syscall.SIGHUP)
	waitFor(t, 30*time.Second, "generation 1 served after SIGHUP", func() (bool, string) { return in.servesGen(1) })
	expect("after the reload", 8, 429)

	in.SetGen(2)
	old := in.Signal(syscall.SIGUSR2)
	in.WaitNewMaster("upgrade", old)
	waitFor(t, 30*time.Second, "generation 2 served after SIGUSR2", func() (bool, string) { return in.servesGen(2) })
	in.WaitDead("old master", []int{old}, 30*time.Second)
	expect("after the upgrade", 8, 429)
}
