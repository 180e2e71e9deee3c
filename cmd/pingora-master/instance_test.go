package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSecondStartSaysAlreadyRunning: starting the same config again, in the
// foreground or with -d, prints `already running (pid N)`, exits 1, and
// leaves the first master, its workers and its PID file alone.
func TestSecondStartSaysAlreadyRunning(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)
	want := fmt.Sprintf("already running (pid %d)", master)

	for _, args := range [][]string{{"-c", in.Conf}, {"-c", in.Conf, "-d"}} {
		r := in.Run(20*time.Second, args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, want) {
			t.Errorf("second start %v: want exit 1 and %q on stderr\n%s", args, want, r)
		}
		in.assertUnchanged(master, workers, 0)
	}
}

// TestDaemonReturnsWhenServing: `-d` returns 0 only once the daemon serves:
// a request sent right after it returns succeeds, at once, without polling.
// The daemon is detached as a daemon should be: its own session, cwd /,
// stdio on /dev/null, the PID file naming it.
func TestDaemonReturnsWhenServing(t *testing.T) {
	in := newInstance(t, 2)
	r := in.Run(30*time.Second, "-c", in.Conf, "-d")
	if r.Code != 0 {
		t.Fatalf("-d: want exit 0\n%s", r)
	}
	if ok, why := in.servesGen(0); !ok {
		t.Fatalf("the first request right after -d returned failed: %s", why)
	}
	pid, err := in.MasterPID()
	if err != nil {
		t.Fatalf("after -d returned: %v", err)
	}
	if !alive(pid) {
		t.Fatalf("PID file names %d, which is not running", pid)
	}
	if exeOf(pid) != in.Bin {
		t.Errorf("PID file names %d running %q, want %q", pid, exeOf(pid), in.Bin)
	}
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("daemon %d: session id %d (%v), want its own session", pid, sid, err)
	}
	if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); cwd != "/" {
		t.Errorf("daemon %d: working directory %q, want /", pid, cwd)
	}
	fds, err := fdTargets(pid)
	if err != nil {
		t.Fatal(err)
	}
	for fd := 0; fd <= 2; fd++ {
		if fds[fd] != "/dev/null" {
			t.Errorf("daemon %d: fd %d is %q, want /dev/null", pid, fd, fds[fd])
		}
	}
	in.WaitWorkers(pid, 2, nil, 5*time.Second)
	in.Signal(syscall.SIGTERM)
	in.WaitDead("the daemon", []int{pid}, 15*time.Second)
}

// TestDaemonFailsWithReason: `-d` that cannot serve exits 1 with the reason
// on stderr (a unit or script sees the failure) and leaves no process and
// no PID file behind: a port someone else holds, a broken config, a worker
// user that does not exist.
func TestDaemonFailsWithReason(t *testing.T) {
	cases := []struct {
		name  string
		setup func(in *instance) (cleanup func())
		want  []string // all on stderr
	}{
		{"port in use", func(in *instance) func() {
			ln, err := net.Listen("tcp", in.Addr)
			if err != nil {
				t.Fatalf("occupy %s: %v", in.Addr, err)
			}
			return func() { ln.Close() }
		}, []string{"address already in use", "PORT"}},
		{"bad config", func(in *instance) func() {
			p := in.Params
			p.Extra = "bogus_setting = 42\n"
			in.WriteConfig(p)
			return func() {}
		}, []string{"bogus_setting", "CONF:"}},
		{"unknown user", func(in *instance) func() {
			in.WriteConfigText(strings.Replace(in.ConfigText(in.Params), `user             = "nobody"`, `user             = "no-such-user-here"`, 1))
			return func() {}
		}, []string{"no-such-user-here", "not found"}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			in := newInstance(t, 2)
			defer c.setup(in)()
			r := in.Run(30*time.Second, "-c", in.Conf, "-d")
			if r.Code != 1 {
				t.Errorf("-d with %s: want exit 1\n%s", c.name, r)
			}
			for _, w := range c.want {
				w = strings.ReplaceAll(w, "PORT", strconv.Itoa(in.Port))
				w = strings.ReplaceAll(w, "CONF", in.Conf)
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("-d with %s: want %q in the reason on stderr\n%s", c.name, w, r)
				}
			}
			in.WaitDead("processes of the failed start", processesOf(in.Bin), 5*time.Second)
			if fileExists(in.PIDFile) {
				t.Errorf("failed start left the PID file %s: %q", in.PIDFile, readText(in.PIDFile))
			}
		})
	}
}
