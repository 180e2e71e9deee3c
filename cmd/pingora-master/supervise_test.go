package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWorkerKilledIsReplaced: with one worker, SIGKILL it; within 1 s a new
// worker pid exists and answers (it is the only worker, so the answer is
// its). The master stays the same and logs the death with its signal.
func TestWorkerKilledIsReplaced(t *testing.T) {
	in := newInstance(t, 1)
	in.Start()
	master := in.MustMasterPID()
	old := in.WaitWorkers(master, 1, nil, 5*time.Second)

	t0 := time.Now()
	if err := unix.Kill(old[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The listening socket stays open in the master, so a request sent now
	// waits in the accept queue for the replacement.
	var replacement []int
	waitFor(t, 3*time.Second, "a replacement worker", func() (bool, string) {
		replacement = in.Workers(master)
		if len(replacement) != 1 || replacement[0] == old[0] {
			return false, fmt.Sprintf("workers %v (killed %d)", replacement, old[0])
		}
		return true, ""
	})
	if ok, why := in.servesGen(0); !ok {
		t.Fatalf("after the replacement of worker %d by %d: %s", old[0], replacement[0], why)
	}
	took := time.Since(t0)
	t.Logf("worker %d killed; worker %d serving after %v", old[0], replacement[0], took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("worker replaced and serving after %v, want within 1 s", took.Round(time.Millisecond))
	}
	if !vanished(old[0]) {
		t.Errorf("killed worker %d not reaped by the master", old[0])
	}
	if pid := in.MustMasterPID(); pid != master {
		t.Errorf("PID file changed from %d to %d", master, pid)
	}
	// The operator learns what happened: the death, with the signal.
	waitFor(t, 5*time.Second, "the worker's death in the log, with its signal", func() (bool, string) {
		for _, l := range strings.Split(readText(in.ErrLog), "\n") {
			if containsField(l, strconv.Itoa(old[0])) && strings.Contains(l, "killed") {
				t.Logf("logged: %s", l)
				return true, ""
			}
		}
		return false, fmt.Sprintf("no line with pid %d and \"killed\" in the error log", old[0])
	})
}

// TestMasterKilledTakesWorkersDown: SIGKILL the master (no chance to clean
// up); 2 s later no worker runs and the port no longer answers: no orphan
// keeps serving an old config. Starting again takes over the stale PID file.
func TestMasterKilledTakesWorkersDown(t *testing.T) {
	in := newInstance(t, 2)
	p := in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	if err := unix.Kill(master, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	<-p.done
	in.WaitDead(fmt.Sprintf("workers %v of the killed master", workers), workers, 2*time.Second-time.Since(t0))
	t.Logf("workers %v gone %v after the master's SIGKILL", workers, time.Since(t0).Round(time.Millisecond))
	if left := processesOf(in.Bin); len(left) > 0 {
		t.Errorf("processes of the binary still running: %v", left)
	}
	c, err := net.DialTimeout("tcp", in.Addr, time.Second)
	if err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after the master and its workers died", in.Addr)
	}

	// The killed master left its PID file; no lock is held on it any more,
	// so a new start takes it over.
	if !fileExists(in.PIDFile) {
		t.Fatalf("no stale PID file after SIGKILL: nothing to take over")
	}
	p2 := in.Start()
	if pid := in.MustMasterPID(); pid != p2.cmd.Process.Pid {
		t.Errorf("PID file names %d after the restart, want the new master %d", pid, p2.cmd.Process.Pid)
	}
}

// TestCrashLoopBacksOff: a worker that keeps dying young is not respawned in
// a tight loop: killed four times right after it appears, the delay before
// its replacement grows (doc: 250 ms, 500 ms, 1 s, ... up to 30 s), and once
// left alone it serves again.
func TestCrashLoopBacksOff(t *testing.T) {
	in := newInstance(t, 1)
	in.Start()
	master := in.MustMasterPID()
	cur := in.WaitWorkers(master, 1, nil, 5*time.Second)
	var delays []time.Duration
	for i := 0; i < 4; i++ {
		if err := unix.Kill(cur[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		next := in.WaitWorkers(master, 1, cur, 10*time.Second)
		delays = append(delays, time.Since(t0))
		cur = next
	}
	t.Logf("replacement delays: %v", delays)
	if delays[3] < 400*time.Millisecond || delays[3] <= delays[1] {
		t.Errorf("replacement delays %v: want them to grow (the 4th at least 400 ms and longer than the 2nd)", delays)
	}
	waitFor(t, 5*time.Second, "the last replacement serving", func() (bool, string) { return in.servesGen(0) })
}
