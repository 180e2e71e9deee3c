package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"strings"
	"testing"
)

// TestFailedUpgradeKeepsControlSocket: a new master that fails at any step
// of its start (its control socket, its PID file, its workers) leaves the
// old master reachable: `-s status` (systemd's ExecReload, a health check)
// still answers and the PID file still names it.
func TestFailedUpgradeKeepsControlSocket(t *testing.T) {
	steps := []struct{ name, edit string }{
		// The new master reads the config anew: each breaks one step.
		{"control socket", "control_socket = \"/proc/pingora-test.sock\"\n"},
		{"pid file", "__PIDFILE__"},
		{"workers not ready", "reload_timeout = \"1ms\"\n"},
	}
	in := newInstance(t, 1)
	in.Start()
	master := in.MustMasterPID()
	good := in.ConfigText(in.Params)
	for _, step := range steps {
		bad := good + step.edit
		if step.edit == "__PIDFILE__" {
			bad = strings.Replace(good, `pid_file         = "`+in.PIDFile+`"`,
				`pid_file = "/proc/pingora-test/pingora.pid"
lock_file = "`+in.PIDFile+`.lock"
control_socket = "`+in.Socket+`"`, 1)
			if bad == good {
				t.Fatal("pid_file line not found in the config")
			}
		}
		in.WriteConfigText(bad)
		r := in.Ctl("upgrade")
		if r.Code != 1 {
			t.Fatalf("upgrade failing at the %s: want exit 1\n%s", step.name, r)
		}
		in.WriteConfigText(good)
		r = in.Ctl("status")
		if r.Code != 0 {
			t.Errorf("-s status after an upgrade failing at the %s: want exit 0\n%s", step.name, r)
		}
		if pid, err := in.MasterPID(); err != nil || pid != master {
			t.Errorf("after an upgrade failing at the %s: PID file names %d (%v), want %d", step.name, pid, err, master)
		}
		if !alive(master) {
			t.Fatalf("the old master died after an upgrade failing at the %s", step.name)
		}
	}
}

// TestControlSocketRefusesOtherUsers: the master starts under umask 000;
// nothing it creates beside the control socket is ever reachable by
// another user (the socket appears at its path as 0600, its temporary
// directory as 0700), and even with the socket's mode loosened by hand a
// client running as nobody is refused with an answer, and the refusal is
// logged with the client's pid and uid.
func TestControlSocketRefusesOtherUsers(t *testing.T) {
	in := newInstance(t, 1)
	runDir := filepath.Dir(in.Socket)
	ino, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	wd, err := unix.InotifyAddWatch(ino, runDir, unix.IN_CREATE|unix.IN_MOVED_TO)
	if err != nil {
		unix.Close(ino)
		t.Fatal(err)
	}
	bad := make(chan string, 64)
	watched := make(chan struct{})
	// The reader owns the descriptor: removing the watch queues
	// IN_IGNORED, which ends it.
	go func() {
		defer close(watched)
		defer unix.Close(ino)
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(ino, buf)
			if err != nil || n <= 0 {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				if ev.Mask&unix.IN_IGNORED != 0 {
					return
				}
				end := off + unix.SizeofInotifyEvent + int(ev.Len)
				if end > n {
					return
				}
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:end]), "\x00")
				off = end
				fi, err := os.Lstat(filepath.Join(runDir, name))
				if err != nil {
					continue
				}
				switch {
				case fi.Mode()&os.ModeSocket != 0 && fi.Mode().Perm() != 0o600:
					select {
					case bad <- fmt.Sprintf("socket %s appeared with mode %v", name, fi.Mode()):
					default:
					}
				case fi.IsDir() && fi.Mode().Perm() != 0o700:
					select {
					case bad <- fmt.Sprintf("directory %s appeared with mode %v", name, fi.Mode()):
					default:
					}
				}
			}
		}
	}()
	old := syscall.Umask(0)
	p := in.StartNoWait()
	syscall.Umask(old)
	in.WaitServing(p, 0)
	unix.InotifyRmWatch(ino, uint32(wd))
	<-watched
	select {
	case why := <-bad:
		t.Errorf("under umask 000: %s", why)
	default:
	}
	if fi, err := os.Stat(in.Socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket under umask 000: %v %v, want mode 0600", fi.Mode(), err)
	}

	// Loosen what the file modes guard, as a careless operator might: the
	// peer check must hold on its own.
	for path, mode := range map[string]os.FileMode{filepath.Dir(in.Dir): 0o711, in.Dir: 0o711, in.Socket: 0o666} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, in.Bin, "-c", in.Conf, "-s", "status")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "permission denied") {
		t.Errorf("-s status as nobody: want a refusal (exit 1, \"permission denied\"), got %v:\n%s", err, out)
	}
	waitFor(t, 10*time.Second, "the refusal in the error log", func() (bool, string) {
		log := readText(in.ErrLog)
		return strings.Contains(log, "connection refused") && containsField(log, "65534"), tail(in.ErrLog, 10)
	})
	if r := in.Ctl("status"); r.Code != 0 {
		t.Errorf("-s status as root: want exit 0\n%s", r)
	}
}

// TestReloadBurstMerges: 30 SIGHUPs in a burst run at most two reloads
// (the one in progress and one pending that all the others merged into),
// and every one of several concurrent `-s reload` callers gets an answer.
// The config is a FIFO during the burst, so the first reload provably
// lasts until the burst is over: the test writes the config into it once
// per reload the master runs.
func TestReloadBurstMerges(t *testing.T) {
	in := newInstance(t, 1)
	p := in.Start()
	master := in.MustMasterPID()
	clientConf := filepath.Join(in.Dir, "client.hcl")
	if err := copyFile(in.Conf, clientConf, 0o644); err != nil {
		t.Fatal(err)
	}
	p1 := in.Params
	p1.Gen = 1
	gen1 := in.ConfigText(p1)
	if err := os.Remove(in.Conf); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(in.Conf, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		if err := unix.Kill(master, unix.SIGHUP); err != nil {
			t.Fatal(err)
		}
		// Apart enough that the kernel does not fold them into one
		// pending signal.
		time.Sleep(2 * time.Millisecond)
	}
	// A round trip through the loop: the signals, sent earlier, are in.
	if r := in.Run(20*time.Second, "-c", clientConf, "-s", "status"); r.Code != 0 {
		t.Fatalf("-s status during the burst: %s", r)
	}
	feed := func(n int) {
		t.Helper()
		fed := make(chan error, 1)
		go func() {
			f, err := os.OpenFile(in.Conf, os.O_WRONLY, 0)
			if err == nil {
				_, err = f.WriteString(gen1)
				f.Close()
			}
			fed <- err
		}()
		select {
		case err := <-fed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("reload %d never read the config", n)
		}
		waitFor(t, 20*time.Second, fmt.Sprintf("reload %d done", n), func() (bool, string) {
			return strings.Count(readText(in.ErrLog), "new generation serving") == n, tail(in.ErrLog, 5)
		})
	}
	feed(1)
	if n := strings.Count(readText(in.ErrLog), "master: reloading:"); n == 2 {
		feed(2)
	}
	// A graceful stop queues behind any pending reload, which would
	// then read the FIFO (and block): it stops at once only if no third
	// reload was left.
	if r := in.Run(20*time.Second, "-c", clientConf, "-s", "quit"); r.Code != 0 {
		t.Fatalf("-s quit after the burst: %s", r)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the master did not exit within 20 s of -s quit returning")
	}
	log := readText(in.ErrLog)
	if n := strings.Count(log, "master: reloading:"); n < 1 || n > 2 {
		t.Errorf("30 SIGHUPs in a burst ran %d reloads, want 1 or 2", n)
	}
	t.Logf("30 SIGHUPs: %d reloads, %d merged", strings.Count(log, "master: reloading:"), strings.Count(log, "merged with it"))

	in.WriteConfig(in.Params)
	p = in.Start()
	in.SetGen(2)
	results := make(chan result, 6)
	for i := 0; i < cap(results); i++ {
		go func() { results <- in.Run(40*time.Second, "-c", in.Conf, "-s", "reload") }()
	}
	for i := 0; i < cap(results); i++ {
		if r := <-results; r.Code != 0 || !strings.Contains(r.Stdout, "reloaded: generation") {
			t.Errorf("concurrent -s reload %d: want exit 0 and \"reloaded: generation\"\n%s", i, r)
		}
	}
	in.assertServesNow("after the concurrent reloads", 2)
}

// TestMaxDrainingGenerations: with max_draining_generations = 1 and a
// request holding each old generation open, the reload that leaves two
// generations draining cuts the oldest at once (its workers exit long
// before shutdown_timeout) and says so in the log; the newer draining one
// keeps its request.
func TestMaxDrainingGenerations(t *testing.T) {
	in := newInstance(t, 1)
	in.Backend.SlowFor = 25 * time.Second
	in.Params.Shutdown = "40s"
	in.Params.Extra = "max_draining_generations = 1\n"
	in.WriteConfig(in.Params)
	in.Start()
	master := in.MustMasterPID()

	hold := func(gen int) []int {
		t.Helper()
		workers := in.WaitWorkers(master, 1, nil, 10*time.Second)
		go fetch(in.Addr, "GET", "/app/slow", nil)
		select {
		case <-in.Backend.SlowArrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("the slow request of generation %d did not reach the backend", gen)
		}
		return workers
	}
	gen0 := hold(0)
	in.SetGen(1)
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload to generation 1: %s", r)
	}
	// Generation 0 drains, held by its request; generation 1 serves.
	var gen1 []int
	waitFor(t, 10*time.Second, "generation 1's worker", func() (bool, string) {
		gen1 = nil
		for _, w := range in.Workers(master) {
			if !slices.Contains(gen0, w) {
				gen1 = append(gen1, w)
			}
		}
		return len(gen1) == 1, fmt.Sprintf("workers %v, generation 0 %v", in.Workers(master), gen0)
	})
	go fetch(in.Addr, "GET", "/app/slow", nil)
	select {
	case <-in.Backend.SlowArrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request of generation 1 did not reach the backend")
	}
	in.SetGen(2)
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload to generation 2: %s", r)
	}
	in.WaitVanished("generation 0's worker, cut", gen0, drainTimeout)
	if !alive(gen1[0]) {
		t.Errorf("generation 1's worker %d is gone: only the oldest draining generation is cut", gen1[0])
	}
	if !strings.Contains(readText(in.ErrLog), "too many generations draining, cutting the oldest") {
		t.Errorf("no cut logged:\n%s", tail(in.ErrLog, 20))
	}
}

// TestConfigFIFODoesNotBlockTheMaster: the config path is a FIFO nobody
// writes to (a hung network file system behaves the same). A reload waits
// on it without blocking the master: `-s status` answers meanwhile, and a
// SIGTERM stops the master, answering the waiting `-s reload` with why.
func TestConfigFIFODoesNotBlockTheMaster(t *testing.T) {
	in := newInstance(t, 1)
	p := in.Start()
	// The -s clients read the config to find the socket: they get a copy
	// (same absolute paths, so the same socket).
	clientConf := filepath.Join(in.Dir, "client.hcl")
	if err := copyFile(in.Conf, clientConf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(in.Conf); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(in.Conf, 0o600); err != nil {
		t.Fatal(err)
	}
	reload := make(chan result, 1)
	go func() { reload <- in.Run(60*time.Second, "-c", clientConf, "-s", "reload") }()
	waitFor(t, 10*time.Second, "the reload to start", func() (bool, string) {
		return strings.Contains(readText(in.ErrLog), "master: reloading:"), tail(in.ErrLog, 5)
	})
	if r := in.Run(20*time.Second, "-c", clientConf, "-s", "status"); r.Code != 0 {
		t.Errorf("-s status while the reload waits on the FIFO: want exit 0\n%s", r)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the master did not stop within 20 s of SIGTERM while a reload waited on a FIFO config")
	}
	r := <-reload
	if r.Code != 1 || !strings.Contains(r.Output(), "interrupted") {
		t.Errorf("-s reload cut short by the stop: want exit 1 saying it was interrupted\n%s", r)
	}
}

// TestStopDuringUpgrade: SIGTERM 10 ms after SIGUSR2 (systemd stopping the
// service while an upgrade starts) is not lost: no master keeps serving,
// both masters and all workers are gone, and the port is closed.
func TestStopDuringUpgrade(t *testing.T) {
	in := newInstance(t, 1)
	p := in.Start()
	master := in.Signal(syscall.SIGUSR2)
	time.Sleep(10 * time.Millisecond) // the timing: the upgrade under way
	if err := unix.Kill(master, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the old master did not stop within 30 s of SIGTERM")
	}
	waitFor(t, 30*time.Second, "every process of the instance gone", func() (bool, string) {
		reapAdopted()
		left := processesOf(in.Bin)
		return len(left) == 0, fmt.Sprintf("still running: %v", left)
	})
	if c, err := net.DialTimeout("tcp", in.Addr, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after SIGTERM during an upgrade", in.Addr)
	}
}

// TestReloadDuringUpgrade: a SIGHUP that reaches the old master while the
// new one starts (after it read the config) is not lost: once the upgrade
// completes, the serving master runs the config written before the SIGHUP.
func TestReloadDuringUpgrade(t *testing.T) {
	in := newInstance(t, 1)
	in.Start()
	master := in.Signal(syscall.SIGUSR2)
	waitFor(t, 20*time.Second, "the new master to have read its config", func() (bool, string) {
		return strings.Contains(readText(in.ErrLog), "upgraded_from="), tail(in.ErrLog, 5)
	})
	in.SetGen(1)
	if err := unix.Kill(master, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	newMaster := in.WaitServing(nil, 1)
	if newMaster == master {
		t.Errorf("generation 1 served by the old master %d: the upgrade did not complete", master)
	}
	in.WaitDead("the old master", []int{master}, 20*time.Second)
	waitFor(t, 20*time.Second, "the new master's previous generation gone", func() (bool, string) {
		return strings.Contains(readText(in.ErrLog), fmt.Sprintf("master: generation gone: pid=%d", newMaster)), tail(in.ErrLog, 5)
	})
	in.assertServesNow("after the upgrade and the forwarded reload", 1)
}
