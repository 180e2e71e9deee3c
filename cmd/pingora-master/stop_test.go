package main

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGracefulStopFinishesInFlight: SIGTERM while a 3 s request is in
// flight; the request still gets its 200, then the master exits 0 and
// leaves no process of the binary and no PID file.
func TestGracefulStopFinishesInFlight(t *testing.T) {
	in := newInstance(t, 2)
	p := in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	type answer struct {
		r   *response
		err error
		at  time.Time
	}
	done := make(chan answer, 1)
	sent := time.Now()
	go func() {
		r, err := fetch(in.Addr, http.MethodGet, "/app/slow", nil)
		done <- answer{r, err, time.Now()}
	}()
	select {
	case <-in.Backend.SlowArrived:
	case a := <-done:
		t.Fatalf("the slow request ended before reaching the backend: %v %v", a.r, a.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach the backend within 10 s")
	}
	in.Signal(syscall.SIGTERM)
	termAt := time.Now()

	var a answer
	select {
	case a = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the in-flight request 10 s after SIGTERM")
	}
	if a.err != nil {
		t.Fatalf("in-flight request cut by SIGTERM after %v: %v", a.at.Sub(sent).Round(time.Millisecond), a.err)
	}
	if a.r.Status != 200 || string(a.r.Body) != "slow done" {
		t.Fatalf("in-flight request: %s, want 200 \"slow done\"", a.r.describe())
	}
	t.Logf("in-flight request answered 200 %v after SIGTERM (%v after it was sent)",
		a.at.Sub(termAt).Round(time.Millisecond), a.at.Sub(sent).Round(time.Millisecond))

	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("master still running 10 s after SIGTERM")
	}
	if code := p.ExitCode(); code != 0 {
		t.Errorf("master exit code %d after SIGTERM, want 0 (%v)", code, p.err)
	}
	in.WaitVanished("workers", workers, 5*time.Second)
	if left := processesOf(in.Bin); len(left) > 0 {
		t.Errorf("processes of the binary still running after the graceful stop: %v", left)
	}
	if fileExists(in.PIDFile) {
		t.Errorf("PID file %s still there after the graceful stop", in.PIDFile)
	}
}

// TestStopWays: every way to stop (SIGQUIT and `-s quit` graceful, SIGINT
// and `-s stop` fast, as nginx's) ends the master with exit 0, takes the
// workers with it, removes the PID file and releases the instance lock (the
// next start, of the next case, works).
func TestStopWays(t *testing.T) {
	in := newInstance(t, 2)
	for _, way := range []string{"SIGQUIT", "-s quit", "SIGINT", "-s stop"} {
		p := in.Start()
		master := in.MustMasterPID()
		workers := in.WaitWorkers(master, 2, nil, 5*time.Second)
		switch way {
		case "SIGQUIT":
			in.Signal(syscall.SIGQUIT)
		case "SIGINT":
			in.Signal(syscall.SIGINT)
		default:
			// -s waits for the outcome: when it says "stopped", the PID
			// file is already gone.
			r := in.Ctl(strings.TrimPrefix(way, "-s "))
			if r.Code != 0 || !strings.Contains(r.Stdout, "stopped") {
				t.Errorf("%s: want exit 0 and \"stopped\"\n%s", way, r)
			}
			if fileExists(in.PIDFile) {
				t.Errorf("%s returned, the PID file is still there", way)
			}
		}
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: master %d still running after 15 s", way, master)
		}
		if code := p.ExitCode(); code != 0 {
			t.Errorf("%s: master exit code %d, want 0 (%v)", way, code, p.err)
		}
		in.WaitVanished(way+": workers", workers, 5*time.Second)
		if fileExists(in.PIDFile) {
			t.Errorf("%s: PID file still there", way)
		}
	}
}
