package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWorkersAreUnprivileged reads each worker's /proc/<pid>/status, as an
// operator would: uid and gid of nobody/nogroup (real, effective, saved and
// filesystem), no supplementary group but nogroup, no capability in any set
// that grants one (permitted, effective, inheritable, ambient). With no
// uid 0 and no CAP_SETUID, setuid(0) cannot succeed; each worker also says
// in the log that it checked exactly that at start.
func TestWorkersAreUnprivileged(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	for _, w := range workers {
		p, ok := readProc(w)
		if !ok {
			t.Fatalf("worker %d vanished", w)
		}
		for i, id := range p.Uid {
			if id != in.WorkerUID {
				t.Errorf("worker %d: Uid field %d is %d, want %d (%s); Uid %v", w, i, id, in.WorkerUID, workerUser, p.Uid)
			}
		}
		for i, id := range p.Gid {
			if id != in.WorkerGID {
				t.Errorf("worker %d: Gid field %d is %d, want %d (%s); Gid %v", w, i, id, in.WorkerGID, workerGroup, p.Gid)
			}
		}
		if len(p.Groups) != 1 || p.Groups[0] != in.WorkerGID {
			t.Errorf("worker %d: Groups %v, want only %d (%s)", w, p.Groups, in.WorkerGID, workerGroup)
		}
		caps := map[string]uint64{"CapPrm": p.CapPrm, "CapEff": p.CapEff, "CapInh": p.CapInh, "CapAmb": p.CapAmb}
		for name, v := range caps {
			if v != 0 {
				t.Errorf("worker %d: %s %016x, want 0", w, name, v)
			}
		}
		t.Logf("worker %d: Uid %v Gid %v Groups %v CapPrm %x CapEff %x CapBnd %x NoNewPrivs %s",
			w, p.Uid, p.Gid, p.Groups, p.CapPrm, p.CapEff, p.CapBnd, p.NoNewPrivs)
		in.assertSetuidChecked(w)
	}
	// The master itself stays root: it must bind, spawn and reopen logs.
	if p, _ := readProc(master); p.Uid[1] != 0 {
		t.Errorf("master %d: effective uid %d, want 0", master, p.Uid[1])
	}
}

// assertSetuidChecked looks for the worker's own log line saying that it
// tried setuid(0) and was refused.
func (in *instance) assertSetuidChecked(w int) {
	in.tb.Helper()
	pid := strconv.Itoa(w)
	var found string
	for _, l := range strings.Split(readText(in.ErrLog), "\n") {
		if strings.Contains(l, "setuid") && containsField(l, pid) {
			found = l
			break
		}
	}
	if found == "" {
		in.tb.Errorf("worker %d: no log line of its setuid(0) check (a line with \"setuid\" and pid %d)", w, w)
		return
	}
	in.tb.Logf("worker %d: %s", w, found)
}
