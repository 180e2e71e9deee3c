package main

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSystemdNotify plays systemd for a Type=notify unit: the master gets
// NOTIFY_SOCKET and must send READY=1 once it serves; RELOADING=1 with
// MONOTONIC_USEC, then READY=1, around a reload; MAINPID=<new master> after
// a binary upgrade; STOPPING=1 on stop.
func TestSystemdNotify(t *testing.T) {
	in := newInstance(t, 2)
	sock := filepath.Join(in.Dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	// next returns the next datagram holding all of want's fields.
	next := func(what string, want ...string) string {
		t.Helper()
		timeout := time.After(20 * time.Second)
		var seen []string
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed waiting for %s", what)
				}
				seen = append(seen, m)
				if hasAll(m, want) {
					return m
				}
			case <-timeout:
				t.Fatalf("no %v (%s) on NOTIFY_SOCKET within 20 s; got %q", want, what, seen)
			}
		}
	}

	in.Env = []string{"NOTIFY_SOCKET=" + sock}
	p := in.StartNoWait()
	next("start", "READY=1")
	// READY=1 means serving: the PID file is written and requests work.
	if pid, err := in.MasterPID(); err != nil || pid != p.cmd.Process.Pid {
		t.Errorf("at READY=1 the PID file says %d (%v), want %d", pid, err, p.cmd.Process.Pid)
	}
	in.assertServesNow("right after READY=1", 0)

	in.SetGen(1)
	before := monotonicUsec()
	in.Signal(syscall.SIGHUP)
	m := next("reload start", "RELOADING=1")
	usec := field(m, "MONOTONIC_USEC")
	if n, err := strconv.ParseInt(usec, 10, 64); err != nil || n < before || n > monotonicUsec() {
		t.Errorf("RELOADING=1 with MONOTONIC_USEC=%q, want CLOCK_MONOTONIC in µs at the reload (%d..now)", usec, before)
	}
	next("reload end", "READY=1")
	in.assertServesNow("right after READY=1 ended the reload", 1)

	in.SetGen(2)
	old := in.Signal(syscall.SIGUSR2)
	m = next("upgrade", "MAINPID=")
	newPID, _ := strconv.Atoi(field(m, "MAINPID"))
	in.WaitServing(nil, 2)
	if master := in.MustMasterPID(); newPID != master || newPID == old {
		t.Errorf("after the upgrade MAINPID=%d, PID file %d, old master %d: want MAINPID to be the new master", newPID, master, old)
	}

	in.Signal(syscall.SIGTERM)
	next("stop", "STOPPING=1")
}

// hasAll reports whether a notify datagram holds every field (a field
// given as "KEY=" matches any value).
func hasAll(msg string, want []string) bool {
	lines := strings.Split(msg, "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			if l == w || (strings.HasSuffix(w, "=") && strings.HasPrefix(l, w)) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// field is KEY's value in a notify datagram.
func field(msg, key string) string {
	for _, l := range strings.Split(msg, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return ""
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail on Linux
	return ts.Sec*1e6 + ts.Nsec/1e3
}
