package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestConfigCheck runs `-t` as an operator would before a reload: a good
// config prints `configuration FILE is ok` and exits 0 without binding its
// port (it is taken here) or writing a PID file; a config with two errors
// exits 1 naming both positions as file:line:col. It needs no root.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "pingora.hcl")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	p := confParams{
		Dir: dir, Port: port, Backend: "127.0.0.1:9", DeadAddr: "127.0.0.1:9",
		Workers: 2, Shutdown: "10s", LogLevel: "info",
	}
	good := renderConf(t, p)
	if err := os.WriteFile(conf, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, flag := range []string{"-t", "--test"} {
		r := runBin(t, builtBinary, 20*time.Second, flag, "-c", conf)
		want := fmt.Sprintf("configuration %s is ok", conf)
		if r.Code != 0 || !strings.Contains(r.Stdout, want) {
			t.Errorf("%s on a good config: want exit 0 and %q on stdout\n%s", flag, want, r)
		}
	}
	if fileExists(filepath.Join(dir, "run", "pingora.pid")) {
		t.Errorf("-t wrote a PID file")
	}

	// Two mistakes at once: both reported, each at its file:line:col.
	p.Extra = "bogus_setting = 42\n"
	bad := strings.Replace(renderConf(t, p), `shutdown_timeout = "10s"`, `shutdown_timeout = "soon"`, 1)
	if err := os.WriteFile(conf, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, builtBinary, 20*time.Second, "-t", "-c", conf)
	if r.Code != 1 {
		t.Errorf("-t on a bad config: want exit 1\n%s", r)
	}
	if strings.Contains(r.Output(), "is ok") {
		t.Errorf("-t on a bad config says it is ok\n%s", r)
	}
	if want := fmt.Sprintf("configuration %s test failed", conf); !strings.Contains(r.Stderr, want) {
		t.Errorf("-t on a bad config: want %q on stderr\n%s", want, r)
	}
	for _, what := range []string{"shutdown_timeout", "bogus_setting"} {
		pos := positionRE(conf, lineOf(bad, what))
		if !pos.MatchString(r.Output()) || !strings.Contains(r.Output(), what) {
			t.Errorf("-t on a bad config: want the diagnostic of %s at %s\n%s", what, pos, r)
		}
	}

	r = runBin(t, builtBinary, 20*time.Second, "-t", "-c", filepath.Join(dir, "missing.hcl"))
	if r.Code != 1 || !strings.Contains(r.Output(), "missing.hcl") {
		t.Errorf("-t on a missing file: want exit 1 naming the file\n%s", r)
	}
}

// TestStatusListsWorkers: `-s status` exits 0 and shows the master pid, the
// config file, the generation and every worker pid.
func TestStatusListsWorkers(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	r := in.Ctl("status")
	if r.Code != 0 {
		t.Fatalf("-s status: want exit 0\n%s", r)
	}
	out := r.Stdout
	t.Logf("-s status:\n%s", out)
	for _, pid := range append([]int{master}, workers...) {
		if !containsField(out, strconv.Itoa(pid)) {
			t.Errorf("-s status does not show pid %d", pid)
		}
	}
	if !strings.Contains(out, in.Conf) {
		t.Errorf("-s status does not show the config file %s", in.Conf)
	}
	if !strings.Contains(out, in.Bin) {
		t.Errorf("-s status does not show the binary %s", in.Bin)
	}
}

// TestNoDescriptorLeaks: a worker holds only what it should: stdio, the
// listening socket, its control channel to the master, the two log files
// (each at most once), and the Go runtime's own poller descriptors. Nothing of the master's (PID
// file, lock, config, binary, tableflip's pipes) - in particular not after a
// binary upgrade, where tableflip's descriptors are a known leak.
func TestNoDescriptorLeaks(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)
	before := in.assertWorkerFDs(workers)

	in.SetGen(1)
	r := in.Ctl("upgrade")
	if r.Code != 0 {
		t.Fatalf("-s upgrade: want exit 0\n%s", r)
	}
	in.WaitServing(nil, 1)
	newMaster := in.MustMasterPID()
	if newMaster == master {
		t.Fatalf("-s upgrade returned 0 but the PID file still names %d", master)
	}
	in.WaitDead("the old master", []int{master}, drainTimeout)
	in.WaitVanished("the old workers", workers, 5*time.Second)
	after := in.assertWorkerFDs(in.WaitWorkers(newMaster, 2, workers, 5*time.Second))
	if after != before {
		t.Errorf("a worker's descriptors changed across the upgrade:\nbefore: %s\nafter:  %s", before, after)
	}
}

// assertWorkerFDs checks each worker's descriptors and returns their shape
// (kinds and counts), the same for every worker of a generation.
func (in *instance) assertWorkerFDs(workers []int) string {
	in.tb.Helper()
	shape := ""
	for _, w := range workers {
		fds, err := fdTargets(w)
		if err != nil {
			in.tb.Fatal(err)
		}
		kinds := map[string]int{}
		sockets := socketKinds()
		eventfds := map[string]bool{}
		for fd, target := range fds {
			if kind, known := sockets[target]; kind == "tcp" || strings.HasPrefix(target, "socket:") && !known {
				// A client connection being served (a readiness probe's,
				// say), or one its client has just closed and the worker
				// not yet (a TCP socket that has gone to CLOSE is in no
				// /proc/net table): legitimately the worker's, and come
				// and gone.
				continue
			}
			if target == "anon_inode:[eventfd]" {
				// Closed client sockets' descriptor numbers are parked on
				// one placeholder eventfd until a batch closes them
				// (proxy/fdclose.go): count each eventfd once.
				if id := eventfdID(w, fd); id != "" {
					if eventfds[id] {
						continue
					}
					eventfds[id] = true
				}
			}
			kind := fdKind(target)
			kinds[kind]++
			switch {
			case kind == "socket", kind == "anon_inode:[eventpoll]", kind == "anon_inode:[eventfd]",
				kind == "anon_inode:[pidfd]", kind == "/dev/null", kind == "pipe":
			case target == in.ErrLog, target == in.AccessLog:
			case strings.HasPrefix(target, "/sys/fs/cgroup/"):
				// The Go runtime's own (since Go 1.25): it keeps the cgroup
				// CPU limit files open to track GOMAXPROCS.
			case fd <= 2 && (target == in.Stdout || target == in.Stderr):
				// The foreground master's stdio: where a worker's panic lands.
			default:
				in.tb.Errorf("worker %d: fd %d is %s, which a worker should not hold", w, fd, target)
			}
		}
		// Sockets: the listener and the control channel; no pooled upstream
		// connection exists, /gen answers without one.
		if kinds["socket"] > 3 {
			in.tb.Errorf("worker %d: %d sockets, want the listener and the control channel only: %v", w, kinds["socket"], fds)
		}
		if kinds["pipe"] > 2 {
			in.tb.Errorf("worker %d: %d pipes, want at most a control pair: %v", w, kinds["pipe"], fds)
		}
		if kinds[in.ErrLog] > 1 || kinds[in.AccessLog] > 1 {
			in.tb.Errorf("worker %d: the error log or the access log open more than once: %v", w, fds)
		}
		s := fmt.Sprint(kinds)
		if shape != "" && s != shape {
			in.tb.Errorf("workers of one generation hold different descriptors: %s and %s", shape, s)
		}
		shape = s
		in.tb.Logf("worker %d descriptors: %v", w, fds)
	}
	return shape
}

// fdKind names what a descriptor points at without inode numbers.
func fdKind(target string) string {
	switch {
	case strings.HasPrefix(target, "socket:"):
		return "socket"
	case strings.HasPrefix(target, "pipe:"):
		return "pipe"
	}
	return target
}

// TestListenerStaysNonBlocking: the listening socket is one open file shared
// by the master and every worker, so its O_NONBLOCK flag is shared too. Go
// accepts with a non-blocking accept4 and then waits in epoll; if the flag
// is cleared even for a moment (os.File.Fd() clears it, and exec's
// ExtraFiles call Fd() each time the master spawns a worker), a worker that
// wakes for a connection another worker takes calls accept4 again, and it
// blocks inside the system call. Its drain (closing the listener) then waits
// until some client happens to connect to that very worker: old workers
// linger until shutdown_timeout after a reload, and the worker stalls every
// connection while its drain holds the proxy's lock.
//
// The test samples the flag (/proc/<master>/fdinfo) all through 3 reloads
// under a stream of new connections, then a worker replacement: it must
// never be seen cleared, and afterwards no worker thread may sit in accept4.
func TestListenerStaysNonBlocking(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)
	inode := listenInode(in.Port)
	if inode == 0 {
		t.Fatalf("no listener on %s in /proc/net/tcp", in.Addr)
	}
	listenerFDs := func(pid int) []int {
		fds, err := fdTargets(pid)
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for fd, target := range fds {
			if target == fmt.Sprintf("socket:[%d]", inode) {
				out = append(out, fd)
			}
		}
		return out
	}
	mfds := listenerFDs(master)
	if len(mfds) == 0 {
		t.Fatalf("the master holds no descriptor of the listener socket:[%d]", inode)
	}

	// The sampler reads the master's descriptor's flags until told to stop.
	type samples struct{ total, blocking int }
	stop := make(chan struct{})
	result := make(chan samples)
	go func() {
		var s samples
		for {
			select {
			case <-stop:
				result <- s
				return
			default:
			}
			if flags, err := fdFlags(master, mfds[0]); err == nil {
				s.total++
				if flags&unix.O_NONBLOCK == 0 {
					s.blocking++
				}
			}
			runtime.Gosched()
		}
	}()
	started := time.Now()
	ld := startLoad(loadSpec{Addr: in.Addr, Backend: in.Backend, Fresh: 4, Pause: 2 * time.Millisecond,
		MaxPerClient: 5000, MaxDuration: 30 * time.Second})
	for i := 1; i <= 3; i++ {
		in.SetGen(i)
		if r := in.Ctl("reload"); r.Code != 0 {
			t.Fatalf("-s reload: want exit 0\n%s", r)
		}
		in.WaitVanished("old workers", workers, drainTimeout)
		workers = in.WaitWorkers(master, 2, workers, 5*time.Second)
	}
	// The load stops before the kill: a worker killed with SIGKILL takes its
	// in-flight requests with it, which is not what this test is about.
	rep := ld.stop(started)
	if err := unix.Kill(workers[0], unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	workers = in.WaitWorkers(master, 2, workers[:1], 5*time.Second)
	close(stop)
	s := <-result
	t.Logf("listener flags sampled %d times, O_NONBLOCK cleared in %d; load: %s", s.total, s.blocking, rep)
	if s.blocking > 0 {
		t.Errorf("the listening socket was blocking (O_NONBLOCK cleared) in %d of %d samples during reloads and a respawn", s.blocking, s.total)
	}
	for _, pid := range append([]int{master}, workers...) {
		for _, fd := range listenerFDs(pid) {
			if flags, err := fdFlags(pid, fd); err == nil && flags&unix.O_NONBLOCK == 0 {
				t.Errorf("pid %d fd %d (the listener): flags %o, O_NONBLOCK cleared", pid, fd, flags)
			}
		}
		if tids := threadsInSyscall(pid, unix.SYS_ACCEPT4); len(tids) > 0 {
			t.Errorf("pid %d has threads %v blocked in accept4", pid, tids)
		}
	}
	if rep.FailedTotal() > 0 {
		t.Errorf("requests failed: %s", rep)
	}
}

// socketKinds maps the "socket:[INODE]" target of every socket in this
// network namespace's TCP, UDP and Unix tables to "tcp" (a connection),
// "tcp-listen", "udp" or "unix".
func socketKinds() map[string]string {
	out := map[string]string{}
	for _, t := range []struct{ file, kind string }{
		{"/proc/net/tcp", "tcp"}, {"/proc/net/tcp6", "tcp"},
		{"/proc/net/udp", "udp"}, {"/proc/net/udp6", "udp"},
	} {
		data, err := os.ReadFile(t.file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			kind := t.kind
			if kind == "tcp" && f[3] == "0A" { // 0A: LISTEN
				kind = "tcp-listen"
			}
			out["socket:["+f[9]+"]"] = kind
		}
	}
	if data, err := os.ReadFile("/proc/net/unix"); err == nil {
		// Num RefCount Protocol Flags Type St Inode [Path]
		for _, line := range strings.Split(string(data), "\n")[1:] {
			if f := strings.Fields(line); len(f) >= 7 {
				out["socket:["+f[6]+"]"] = "unix"
			}
		}
	}
	return out
}

// eventfdID is the kernel's id of the eventfd behind pid's descriptor fd
// (descriptors of the same eventfd share it), or "" when not shown.
func eventfdID(pid, fd int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "eventfd-id:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
