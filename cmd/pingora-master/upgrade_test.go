package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestFailedUpgradeKeepsServing: the binary on disk is replaced by one that
// cannot start (as a botched package install would leave it). `-s upgrade`
// exits 1 with the reason, the old master keeps the PID file, its workers
// and its config, and the failure is logged. Once a good binary is back, the
// next upgrade goes through: the failed one left nothing stuck.
func TestFailedUpgradeKeepsServing(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	broken := in.Bin + ".broken"
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'this binary is broken' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustRename(t, broken, in.Bin)
	in.SetGen(1) // what a successful upgrade would serve

	// The operator's -s client is a good build (the broken file is what
	// the master would exec).
	r := runBin(t, builtBinary, 60*time.Second, "-c", in.Conf, "-s", "upgrade")
	t.Logf("-s upgrade to a broken binary: %s", r)
	if r.Code != 1 {
		t.Errorf("-s upgrade to a broken binary: want exit 1\n%s", r)
	}
	if !strings.Contains(r.Output(), "upgrade") {
		t.Errorf("-s upgrade to a broken binary: want the reason\n%s", r)
	}
	in.assertUnchanged(master, workers, 0)
	if !strings.Contains(readText(in.ErrLog), "upgrade failed") {
		t.Errorf("no \"upgrade failed\" line in the error log:\n%s", tail(in.ErrLog, 20))
	}

	if err := copyFile(builtBinary, broken, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRename(t, broken, in.Bin)
	r = in.Ctl("upgrade")
	if r.Code != 0 {
		t.Fatalf("-s upgrade with the good binary back: want exit 0\n%s", r)
	}
	newMaster := in.WaitServing(nil, 1)
	if newMaster == master {
		t.Fatalf("-s upgrade returned 0, the PID file still names %d", master)
	}
	in.WaitDead("the old master", []int{master}, drainTimeout)
	in.WaitVanished("the old workers", workers, 5*time.Second)
	in.WaitWorkers(newMaster, 2, workers, 5*time.Second)
}
