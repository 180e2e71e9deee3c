package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// workerStates runs `-s status` and returns each worker's state by pid.
func (in *instance) workerStates() map[int]string {
	in.tb.Helper()
	r := in.Ctl("status")
	if r.Code != 0 {
		in.tb.Fatalf("-s status: %s", r)
	}
	states := make(map[int]string)
	for _, l := range strings.Split(r.Stdout, "\n") {
		if !strings.HasPrefix(l, "worker ") {
			continue
		}
		var pid int
		var state string
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "pid="); ok {
				pid, _ = strconv.Atoi(v)
			}
			if v, ok := strings.CutPrefix(f, "state="); ok {
				state = v
			}
		}
		states[pid] = state
	}
	return states
}

// stopped SIGSTOPs pids and makes sure they are continued (and so can die)
// when the test ends, whatever happened.
func stopped(t *testing.T, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if err := unix.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP %d: %v", pid, err)
		}
	}
	// kill(2) returns before a running process stops: until it has, it
	// may still accept a connection meant to show that it takes none.
	for _, pid := range pids {
		waitFor(t, 5*time.Second, fmt.Sprintf("worker %d stopped", pid), func() (bool, string) {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				return false, err.Error()
			}
			// pid (comm) state ...: the state follows the last ')'.
			rest := b[bytes.LastIndexByte(b, ')')+1:]
			f := strings.Fields(string(rest))
			return len(f) > 0 && f[0] == "T", fmt.Sprintf("state %q", f)
		})
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			unix.Kill(pid, syscall.SIGCONT)
		}
	})
}

// TestHungWorkerIsReplaced: a worker that stops answering (SIGSTOP: alive,
// holding its sockets, doing nothing) shows as not-responding in
// `-s status`, is killed after worker_heartbeat_timeout (2 s here: on a
// loaded machine 1 s left `-s status`, polled, too little time to see the
// miss) and replaced by a new worker that serves; the log says why. Meanwhile the
// other worker takes every new connection (the listening socket is
// shared, so nothing waits for the hung one).
func TestHungWorkerIsReplaced(t *testing.T) {
	in := newInstance(t, 2)
	p := in.Params
	p.Extra = `worker_heartbeat_timeout = "2s"`
	in.WriteConfig(p)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)
	hung := workers[0]
	stopped(t, hung)
	t0 := time.Now()

	in.assertServesNow("while a worker is stopped", 0)
	sawNotResponding := false
	waitFor(t, 20*time.Second, "the stopped worker replaced by a ready one", func() (bool, string) {
		states := in.workerStates()
		if states[hung] == "not-responding" {
			sawNotResponding = true
		}
		if _, there := states[hung]; there || len(states) != 2 {
			return false, fmt.Sprintf("states %v (stopped %d)", states, hung)
		}
		for pid, st := range states {
			if st != "ready" {
				return false, fmt.Sprintf("worker %d is %s (stopped %d)", pid, st, hung)
			}
		}
		return true, ""
	})
	t.Logf("stopped worker %d replaced after %v", hung, time.Since(t0).Round(time.Millisecond))
	if !sawNotResponding {
		// The miss shows for most of the second before the kill; -s status
		// polled all along must have seen it.
		t.Errorf("-s status never showed worker %d as not-responding while it was stopped", hung)
	}
	now := in.WaitWorkers(master, 2, []int{hung}, 5*time.Second)
	if !slices.Contains(now, workers[1]) {
		t.Errorf("workers now %v: the healthy worker %d was replaced too", now, workers[1])
	}
	in.WaitDead(fmt.Sprintf("stopped worker %d", hung), []int{hung}, 5*time.Second)
	in.assertServesNow("after the replacement", 0)
	waitFor(t, 5*time.Second, "the kill in the log", func() (bool, string) {
		for _, l := range strings.Split(readText(in.ErrLog), "\n") {
			if strings.Contains(l, "worker not responding, killing it") && containsField(l, strconv.Itoa(hung)) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no \"worker not responding, killing it\" line for worker %d", hung)
	})
}

// notifyListener is systemd's end of NOTIFY_SOCKET for a test.
type notifyListener struct {
	path string
	conn *net.UnixConn
}

func listenNotify(t *testing.T, dir string) *notifyListener {
	t.Helper()
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifyListener{path: path, conn: conn}
}

// drain returns every datagram queued now, without waiting. The master
// writes each datagram before it goes on to anything else, so whatever it
// sent before answering a request the test made is in the queue. (Not
// with a read deadline of now: Go fails such a read without looking.)
func (n *notifyListener) drain(t *testing.T) []string {
	t.Helper()
	raw, err := n.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	n.conn.SetReadDeadline(time.Time{}) // one a previous wait left behind
	var got []string
	buf := make([]byte, 4096)
	for {
		var k int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			k, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return true
		}); err != nil {
			t.Fatalf("notify socket: %v", err)
		}
		if errors.Is(rerr, unix.EAGAIN) {
			return got
		}
		if rerr != nil {
			t.Fatalf("notify socket: %v", rerr)
		}
		got = append(got, string(buf[:k]))
	}
}

// until returns the datagrams that arrive until deadline.
func (n *notifyListener) until(t *testing.T, deadline time.Time) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 4096)
	for {
		n.conn.SetReadDeadline(deadline)
		k, _, err := n.conn.ReadFromUnix(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return got
			}
			t.Fatalf("notify socket: %v", err)
		}
		got = append(got, string(buf[:k]))
	}
}

// await waits up to timeout for a datagram holding every field of want.
func (n *notifyListener) await(t *testing.T, timeout time.Duration, what string, want ...string) {
	t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(timeout)
	var seen []string
	for {
		n.conn.SetReadDeadline(deadline)
		k, _, err := n.conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("no %v (%s) on NOTIFY_SOCKET within %v (%v); got %q", want, what, timeout, err, seen)
		}
		if hasAll(string(buf[:k]), want) {
			return
		}
		seen = append(seen, string(buf[:k]))
	}
}

func countField(msgs []string, f string) int {
	n := 0
	for _, m := range msgs {
		if hasAll(m, []string{f}) {
			n++
		}
	}
	return n
}

// TestSystemdWatchdog plays systemd with WatchdogSec: the master gets
// WATCHDOG_USEC (400 ms) and must send WATCHDOG=1 every half of it while
// its workers answer their heartbeats. With every worker stopped, the pets
// stop as soon as the master sees a heartbeat missed, and stay away until
// the master has killed the hung workers and a replacement serves; then
// they come back.
func TestSystemdWatchdog(t *testing.T) {
	in := newInstance(t, 2)
	p := in.Params
	p.Extra = `worker_heartbeat_timeout = "5s"`
	in.WriteConfig(p)
	nl := listenNotify(t, in.Dir)
	in.Env = []string{"NOTIFY_SOCKET=" + nl.path, "WATCHDOG_USEC=400000"}
	proc := in.StartNoWait()
	nl.await(t, startTimeout, "start", "READY=1")
	in.WaitServing(proc, 0)
	for i := 0; i < 3; i++ {
		nl.await(t, 5*time.Second, fmt.Sprintf("pet %d", i+1), "WATCHDOG=1")
	}

	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)
	stopped(t, workers...)

	// The master notices at its next heartbeats (a second here), and kills
	// the workers 5 s after they went quiet.
	waitFor(t, 10*time.Second, "a stopped worker shown as not-responding", func() (bool, string) {
		states := in.workerStates()
		for _, w := range workers {
			if states[w] == "not-responding" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("states %v", states)
	})
	nl.drain(t) // pets sent before the master saw the miss
	// Pets come every 200 ms when they come: a second holds five.
	pets := countField(nl.until(t, time.Now().Add(time.Second)), "WATCHDOG=1")
	states := in.workerStates()
	stillHung := false
	for _, w := range workers {
		if states[w] == "not-responding" {
			stillHung = true
		}
	}
	pets += countField(nl.drain(t), "WATCHDOG=1")
	if !stillHung {
		t.Fatalf("the hung workers were handled within the 1 s observed (states %v): the test saw no full window without a responding worker", states)
	}
	if pets > 0 {
		t.Errorf("%d WATCHDOG=1 in 1 s while the master's workers were not responding (states %v), want none", pets, states)
	}

	fresh := in.WaitWorkers(master, 2, workers, 20*time.Second)
	waitFor(t, 10*time.Second, "the replacements ready", func() (bool, string) {
		states := in.workerStates()
		for _, w := range fresh {
			if states[w] != "ready" {
				return false, fmt.Sprintf("states %v", states)
			}
		}
		return true, ""
	})
	nl.await(t, 5*time.Second, "pets again once replacements serve", "WATCHDOG=1")
	in.assertServesNow("after the hung workers were replaced", 0)
}
