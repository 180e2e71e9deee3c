package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBadConfigReloadChangesNothing: a reload with a broken config keeps the
// same workers serving the old config, logs the diagnostic with its file and
// line, and `-s reload` exits 1 showing it. A good config afterwards reloads
// as usual (the bad attempt left nothing stuck).
func TestBadConfigReloadChangesNothing(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	// Generation 1's text with an unknown attribute: a line the operator
	// must be pointed at.
	p := in.Params
	p.Gen = 1
	p.Extra = "bogus_setting = 42\n"
	bad := in.ConfigText(p)
	badLine := lineOf(bad, "bogus_setting")
	in.WriteConfigText(bad)
	pos := positionRE(in.Conf, badLine)

	logBefore := len(readText(in.ErrLog))
	in.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the diagnostic in the master's log", func() (bool, string) {
		fresh := after(readText(in.ErrLog), logBefore)
		return pos.MatchString(fresh) && strings.Contains(fresh, "bogus_setting"),
			fmt.Sprintf("no %s (naming bogus_setting) in the log since the SIGHUP:\n%s", pos, fresh)
	})
	in.assertUnchanged(master, workers, 0)

	r := in.Ctl("reload")
	if r.Code != 1 {
		t.Errorf("-s reload with a bad config: want exit 1\n%s", r)
	}
	if !pos.MatchString(r.Output()) || !strings.Contains(r.Output(), "bogus_setting") {
		t.Errorf("-s reload with a bad config: want the diagnostic %s naming bogus_setting in its output\n%s", pos, r)
	}
	in.assertUnchanged(master, workers, 0)

	// Fixed: the reload goes through.
	in.SetGen(2)
	r = in.Ctl("reload")
	if r.Code != 0 || !strings.Contains(r.Stdout, "reloaded: generation") {
		t.Fatalf("-s reload with a good config after a bad one: want exit 0 and \"reloaded: generation N serving\"\n%s", r)
	}
	// -s reload returns once the new generation serves.
	in.assertServesNow("right after -s reload returned 0", 2)
	in.WaitVanished("old workers", workers, drainTimeout)
	in.WaitWorkers(master, 2, workers, 5*time.Second)
}

// assertUnchanged checks the master, its workers and the served config are
// exactly as before.
func (in *instance) assertUnchanged(master int, workers []int, gen int) {
	in.tb.Helper()
	if pid := in.MustMasterPID(); pid != master {
		in.tb.Fatalf("PID file changed from %d to %d", master, pid)
	}
	if now := in.Workers(master); !sameInts(now, workers) {
		in.tb.Fatalf("workers changed from %v to %v", workers, now)
	}
	for i := 0; i < 3; i++ {
		if ok, why := in.servesGen(gen); !ok {
			in.tb.Fatalf("the old config is no longer served: %s", why)
		}
	}
}

// TestFixedSettingNotReloaded: a setting that belongs to the master process
// (here pid_file) cannot change by reload: the reload goes through for the
// rest, the change is logged as such, and the PID file stays where it was.
func TestFixedSettingNotReloaded(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	p := in.Params
	p.Gen = 1
	moved := filepath.Join(in.Dir, "run", "moved.pid")
	in.WriteConfigText(strings.Replace(in.ConfigText(p), in.PIDFile, moved, 1))
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload: want exit 0\n%s", r)
	}
	waitFor(t, drainTimeout, "generation 1 served", func() (bool, string) { return in.servesGen(1) })
	if pid := in.MustMasterPID(); pid != master {
		t.Errorf("PID file %s names %d, want %d", in.PIDFile, pid, master)
	}
	if fileExists(moved) {
		t.Errorf("a reload wrote the PID file at the new path %s", moved)
	}
	if !masterSaid(readText(in.ErrLog), master, "pid_file") {
		t.Errorf("no master line about pid_file not changing by reload in the log:\n%s", tail(in.ErrLog, 15))
	}
}

// TestReloadTimeoutKeepsOldGeneration: a new generation that is not ready
// within reload_timeout is killed and the old one keeps serving, same pids;
// `-s reload` exits 1 saying why. (A 1ms reload_timeout is too short for any
// worker to start, which makes the timeout path certain without a broken
// binary.)
func TestReloadTimeoutKeepsOldGeneration(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	p := in.Params
	p.Gen = 1
	p.Extra = "reload_timeout = \"1ms\"\n"
	in.WriteConfigText(in.ConfigText(p))
	r := in.Ctl("reload")
	if r.Code != 1 || !strings.Contains(r.Output(), "not ready within 1ms") {
		t.Fatalf("-s reload whose workers cannot be ready in time: want exit 1 naming the timeout\n%s", r)
	}
	// The half-started generation was killed; its processes may take a
	// moment to be reaped after -s reload returns.
	waitFor(t, 5*time.Second, "only the old workers left", func() (bool, string) {
		now := in.Workers(master)
		return sameInts(now, workers), fmt.Sprintf("workers %v, want %v", now, workers)
	})
	in.assertUnchanged(master, workers, 0)
}
