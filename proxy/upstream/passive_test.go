package upstream

import (
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

func passiveServer(maxFails int, failTimeout time.Duration) *Server {
	return &Server{Addr: "x", maxFails: maxFails, failTimeout: failTimeout}
}

func TestPassiveMaxFailsWithinFailTimeout(t *testing.T) {
	s := passiveServer(3, 10*time.Second)
	t0 := time.Unix(1_000_000, 0)
	s.Fail(t0)
	s.Fail(t0.Add(time.Second))
	if !s.HealthyAt(t0.Add(time.Second)) {
		t.Fatal("down after 2 of 3 max_fails")
	}
	s.Fail(t0.Add(2 * time.Second))
	for _, d := range []time.Duration{2 * time.Second, 7 * time.Second, 12*time.Second - 1} {
		if s.HealthyAt(t0.Add(d)) {
			t.Fatalf("healthy at +%v, want down until +12s", d)
		}
	}
	if !s.HealthyAt(t0.Add(12 * time.Second)) {
		t.Fatal("still down after fail_timeout")
	}
	if got := s.Stats().Disabled; got != 1 {
		t.Fatalf("disabled count %d, want 1", got)
	}
}

func TestPassiveFailsOutsideWindowDoNotMark(t *testing.T) {
	s := passiveServer(3, 10*time.Second)
	t0 := time.Unix(1_000_000, 0)
	s.Fail(t0)
	s.Fail(t0.Add(6 * time.Second))
	s.Fail(t0.Add(12 * time.Second)) // the window of the first failure is over
	if !s.HealthyAt(t0.Add(12 * time.Second)) {
		t.Fatal("3 failures spread over 12s marked a server with fail_timeout 10s")
	}
	s.Fail(t0.Add(13 * time.Second))
	s.Fail(t0.Add(14 * time.Second)) // 3 within the window from +12s
	if s.HealthyAt(t0.Add(14 * time.Second)) {
		t.Fatal("3 failures within 2s did not mark the server")
	}
}

func TestPassiveSucceedResets(t *testing.T) {
	s := passiveServer(2, 10*time.Second)
	t0 := time.Unix(1_000_000, 0)
	s.Fail(t0)
	s.Succeed()
	s.Fail(t0.Add(time.Second))
	if !s.HealthyAt(t0.Add(time.Second)) {
		t.Fatal("a success between failures did not reset the count")
	}
}

func TestPassiveProbationAfterDownPeriod(t *testing.T) {
	s := passiveServer(3, 10*time.Second)
	t0 := time.Unix(1_000_000, 0)
	for i := range 3 {
		s.Fail(t0.Add(time.Duration(i) * time.Millisecond))
	}
	back := t0.Add(11 * time.Second)
	if !s.HealthyAt(back) {
		t.Fatal("not back after fail_timeout")
	}
	// Back on probation: one failure takes it out again, for fail_timeout.
	s.Fail(back)
	if s.HealthyAt(back.Add(9 * time.Second)) {
		t.Fatal("a failure on probation did not re-mark the server")
	}
	if !s.HealthyAt(back.Add(10 * time.Second)) {
		t.Fatal("re-marked for longer than fail_timeout")
	}
	// A success ends probation: it takes max_fails failures again.
	s.Succeed()
	later := back.Add(20 * time.Second)
	s.Fail(later)
	s.Fail(later)
	if !s.HealthyAt(later) {
		t.Fatal("after a success, 2 failures (< max_fails 3) marked the server")
	}
}

func TestPassiveDisabled(t *testing.T) {
	s := passiveServer(0, 10*time.Second)
	t0 := time.Unix(1_000_000, 0)
	for range 100 {
		s.Fail(t0)
	}
	if !s.HealthyAt(t0) {
		t.Fatal("max_fails 0 marked the server")
	}
	if s.Stats().Failures != 100 {
		t.Fatalf("failures counted %d, want 100", s.Stats().Failures)
	}
	var zero Server
	zero.Fail(t0)
	zero.Succeed()
	if !zero.Healthy() {
		t.Fatal("zero Server not healthy after Fail")
	}
}

// TestPassivePoolRecovers runs on the real clock: a marked server leaves
// the rotation and comes back by itself after fail_timeout; the marking is
// logged with the upstream and server.
func TestPassivePoolRecovers(t *testing.T) {
	log, logs := testLogger(t)
	cfg := config.Upstream{Name: "app", Servers: []config.Server{
		{Address: "10.0.0.1:80", MaxFails: 1, FailTimeout: 150 * time.Millisecond},
		{Address: "10.0.0.2:80", MaxFails: 1, FailTimeout: time.Hour},
	}}
	p, err := newPool(t, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.Servers()[0], p.Servers()[1]
	a.Fail(time.Now())
	for range 10 {
		if s := p.Pick(nil, nil); s != b {
			t.Fatalf("picked %s while a is marked", s.Addr)
		}
	}
	if out := logs(); !strings.Contains(out, "temporarily disabled") ||
		!strings.Contains(out, "upstream=app") || !strings.Contains(out, "server=10.0.0.1:80") {
		t.Fatalf("marking not logged with upstream and server:\n%s", out)
	}
	eventually(t, 5*time.Second, "a back in rotation", func() bool {
		return p.Pick(nil, nil) == a
	})
	if st := a.Stats(); !st.Healthy || !st.DownUntil.IsZero() {
		t.Fatalf("stats after recovery: %+v", st)
	}
}

// TestPassiveSingleServerNeverMarked: as nginx, an upstream with a single
// server and no backup ignores max_fails: its failures are counted, but it
// stays in rotation. With a backup, the lone primary is marked as usual
// (the backup takes over).
func TestPassiveSingleServerNeverMarked(t *testing.T) {
	t0 := time.Now()
	lone, err := newPool(t, config.Upstream{Name: "app", Servers: []config.Server{
		{Address: "10.0.0.1:80", MaxFails: 1, FailTimeout: time.Hour},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := lone.Servers()[0]
	for range 5 {
		s.Fail(t0)
	}
	if st := s.Stats(); !st.Healthy || st.Disabled != 0 || st.Failures != 5 {
		t.Fatalf("lone server after 5 failures with max_fails 1: %+v; want healthy, never disabled, 5 failures counted", st)
	}
	if lone.Pick(nil, nil) != s {
		t.Fatal("lone server not picked after failures")
	}

	withBackup, err := newPool(t, config.Upstream{Name: "app", Servers: []config.Server{
		{Address: "10.0.0.1:80", MaxFails: 1, FailTimeout: time.Hour},
		{Address: "10.0.0.2:80", Backup: true},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	primary := withBackup.Servers()[0]
	primary.Fail(t0)
	if primary.Healthy() {
		t.Fatal("a lone primary with a backup was not marked down after max_fails failures")
	}
}
