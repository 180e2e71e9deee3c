// The tests of this package run the real pingora-master binary as a black
// box, as an operator would: real processes and signals, real sockets on
// loopback, real uid changes. TestMain builds the binary once; each test
// gets an instance (its own directory, binary copy, config, ports and
// backend) from the harness below, and synchronises on what a user can
// observe (the PID file, answers through the proxy, /proc, the log), never
// on fixed sleeps.

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// builtBinary is the binary TestMain built, shared read-only by all tests.
var builtBinary string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pingora-master-build-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "temp dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	builtBinary = filepath.Join(dir, "pingora-master")
	build := exec.Command(goTool(), "build", "-o", builtBinary, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/pingora-master: %v\n%s", err, out)
		return 1
	}
	// Orphans (upgraded masters, workers of a killed master, the daemon of
	// -d) are re-parented to us, so the harness can reap them: see reaper.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "prctl(PR_SET_CHILD_SUBREAPER): %v\n", err)
		return 1
	}
	return m.Run()
}

// goTool finds the go command: the one of the toolchain that runs the tests
// ($GOROOT, which go test sets), else the one on PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

const (
	workerUser  = "nobody"
	workerGroup = "nogroup"
	binName     = "pingora-master"
)

// needRoot skips tests that need the master to run as root and its workers
// to drop to nobody/nogroup (CI runs as root), and returns their ids.
func needRoot(tb testing.TB) (uid, gid int) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: workers drop to nobody/nogroup")
	}
	u, err := user.Lookup(workerUser)
	if err != nil {
		tb.Skipf("needs user %q (Debian has it): %v", workerUser, err)
	}
	g, err := user.LookupGroup(workerGroup)
	if err != nil {
		tb.Skipf("needs group %q (Debian has it): %v", workerGroup, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid
}

// instance is one pingora-master installation under test: its directory
// (0700, root-only, as a test's temp dir is: the binary must still start its
// workers from there), a private copy of the binary (so /proc/<pid>/exe
// identifies exactly this instance's processes), config, PID file, logs,
// control socket, a listening port and a backend.
type instance struct {
	tb        testing.TB
	Dir       string
	Bin       string
	Conf      string
	PIDFile   string
	Socket    string
	ErrLog    string
	AccessLog string
	Stderr    string // the foreground master's stderr
	Stdout    string
	Port      int
	Addr      string
	Backend   *backend
	Params    confParams
	WorkerUID int
	WorkerGID int

	// Env is added to the environment of the masters the test starts.
	Env []string

	// first is the master the test started in the foreground (nil with -d).
	first *proc
}

// newInstance prepares (does not start) an instance with a config of
// generation 0 and the given number of workers.
func newInstance(tb testing.TB, workers int) *instance {
	tb.Helper()
	uid, gid := needRoot(tb)
	dir := tb.TempDir()
	for _, sub := range []string{"sbin", "run", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	in := &instance{
		tb:        tb,
		Dir:       dir,
		Bin:       filepath.Join(dir, "sbin", binName),
		Conf:      filepath.Join(dir, "pingora.hcl"),
		PIDFile:   filepath.Join(dir, "run", "pingora.pid"),
		Socket:    filepath.Join(dir, "run", "pingora.sock"),
		ErrLog:    filepath.Join(dir, "log", "error.log"),
		AccessLog: filepath.Join(dir, "log", "access.log"),
		Stderr:    filepath.Join(dir, "stderr.log"),
		Stdout:    filepath.Join(dir, "stdout.log"),
		Backend:   startBackend(tb, "b1"),
		WorkerUID: uid,
		WorkerGID: gid,
	}
	if err := copyFile(builtBinary, in.Bin, 0o755); err != nil {
		tb.Fatal(err)
	}
	in.Port = freePort(tb)
	in.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(in.Port))
	in.Params = confParams{
		Dir:      dir,
		Port:     in.Port,
		Backend:  in.Backend.Addr,
		DeadAddr: refusedAddr(tb),
		Workers:  workers,
		Shutdown: "10s",
		LogLevel: "info",
	}
	in.WriteConfig(in.Params)
	tb.Cleanup(in.cleanup)
	return in
}

// Start runs the master in the foreground with extra arguments (stdout and
// stderr to files) and waits until it serves the current generation.
func (in *instance) Start(args ...string) *proc {
	in.tb.Helper()
	p := in.StartNoWait(args...)
	in.WaitServing(p, in.Params.Gen)
	return p
}

// StartNoWait starts the master in the foreground without waiting.
func (in *instance) StartNoWait(args ...string) *proc {
	in.tb.Helper()
	cmd := exec.Command(in.Bin, append([]string{"-c", in.Conf}, args...)...)
	cmd.Env = append(os.Environ(), in.Env...)
	cmd.Stdout = openAppend(in.tb, in.Stdout)
	cmd.Stderr = openAppend(in.tb, in.Stderr)
	p, err := startProc(cmd)
	if err != nil {
		in.tb.Fatalf("start %s: %v", in.Bin, err)
	}
	if in.first == nil {
		in.first = p
	}
	return p
}

// startTimeout bounds a master's start (two workers, on two busy cores).
const startTimeout = 20 * time.Second

// WaitServing waits until the PID file names a live master (p's, when p is
// not nil) and the proxy answers /gen with generation gen.
func (in *instance) WaitServing(p *proc, gen int) int {
	in.tb.Helper()
	var pid int
	waitFor(in.tb, startTimeout, fmt.Sprintf("master serving generation %d", gen), func() (bool, string) {
		if p != nil && p.Exited() {
			in.tb.Fatalf("master exited while starting: %v\nstderr:\n%s\nerror log:\n%s", p.err, tail(in.Stderr, 40), tail(in.ErrLog, 40))
		}
		var err error
		if pid, err = in.MasterPID(); err != nil {
			return false, err.Error()
		}
		if p != nil && pid != p.cmd.Process.Pid {
			return false, fmt.Sprintf("PID file says %d, the master is %d", pid, p.cmd.Process.Pid)
		}
		if !alive(pid) {
			return false, fmt.Sprintf("PID file names %d, which is not running", pid)
		}
		return in.servesGen(gen)
	})
	return pid
}

// servesGen asks /gen on a new connection.
func (in *instance) servesGen(gen int) (bool, string) {
	status, body, err := get(in.Addr, "/gen")
	if err != nil {
		return false, err.Error()
	}
	want := fmt.Sprintf("gen %d", gen)
	if status != 200 || body != want {
		return false, fmt.Sprintf("/gen answered %d %q, want 200 %q", status, body, want)
	}
	return true, ""
}

// assertServesNow checks that right now (no polling) several new
// connections in a row all get generation gen: what an operator expects
// once `-s reload` has returned 0 or systemd got READY=1. One old worker
// still accepting would answer some of them with the old config.
func (in *instance) assertServesNow(when string, gen int) {
	in.tb.Helper()
	for i := 0; i < 8; i++ {
		if ok, why := in.servesGen(gen); !ok {
			in.tb.Errorf("%s, request %d of 8 on a new connection: %s", when, i+1, why)
			return
		}
	}
}

// MasterPID reads the PID file.
func (in *instance) MasterPID() (int, error) {
	b, err := os.ReadFile(in.PIDFile)
	if err != nil {
		return 0, fmt.Errorf("read PID file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("PID file %q: %w", b, err)
	}
	return pid, nil
}

// MustMasterPID is MasterPID or the end of the test.
func (in *instance) MustMasterPID() int {
	in.tb.Helper()
	pid, err := in.MasterPID()
	if err != nil {
		in.tb.Fatal(err)
	}
	return pid
}

// WaitNewMaster waits, after a SIGUSR2, until the PID file names a running
// master other than old, and returns it.
func (in *instance) WaitNewMaster(what string, old int) int {
	in.tb.Helper()
	master := 0
	waitFor(in.tb, 30*time.Second, what+": a new master in the PID file", func() (bool, string) {
		pid, err := in.MasterPID()
		if err != nil {
			return false, err.Error()
		}
		if pid == old {
			return false, "PID file still names the old master " + strconv.Itoa(pid)
		}
		master = pid
		return alive(pid), fmt.Sprintf("PID file names %d, not running", pid)
	})
	return master
}

// Workers lists the live workers of master: its children running as the
// worker user.
func (in *instance) Workers(master int) []int {
	return childrenOf(master, in.WorkerUID)
}

// WaitWorkers waits until master has exactly n workers, none of them in
// old, and returns them.
func (in *instance) WaitWorkers(master, n int, old []int, timeout time.Duration) []int {
	in.tb.Helper()
	var ws []int
	waitFor(in.tb, timeout, fmt.Sprintf("%d new workers of master %d", n, master), func() (bool, string) {
		ws = in.Workers(master)
		if len(ws) != n {
			return false, fmt.Sprintf("workers %v", ws)
		}
		for _, w := range ws {
			if slices.Contains(old, w) {
				return false, fmt.Sprintf("workers %v, old %v", ws, old)
			}
		}
		return true, ""
	})
	return ws
}

// drainTimeout bounds how long old workers (and, after an upgrade, the old
// master) may take to leave once the new generation serves. In these tests
// every client gets Connection: close within milliseconds and none idles,
// so a working drain takes milliseconds; the configured shutdown_timeout is
// 10 s, and a worker that leaves only when it is cut or killed at that
// deadline is a drain that did not work.
const drainTimeout = 5 * time.Second

// WaitVanished waits until every pid has left /proc.
func (in *instance) WaitVanished(what string, pids []int, timeout time.Duration) {
	in.tb.Helper()
	waitFor(in.tb, timeout, what+" gone from /proc", func() (bool, string) {
		var left []string
		for _, pid := range pids {
			if !vanished(pid) {
				p, _ := readProc(pid)
				left = append(left, fmt.Sprintf("%d (state %s, ppid %d)", pid, p.State, p.PPID))
			}
		}
		return len(left) == 0, "still there: " + strings.Join(left, ", ")
	})
}

// WaitDead waits until no pid runs (gone, or a zombie nobody reaped).
func (in *instance) WaitDead(what string, pids []int, timeout time.Duration) {
	in.tb.Helper()
	waitFor(in.tb, timeout, what+" dead", func() (bool, string) {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		return len(left) == 0, fmt.Sprintf("still running: %v", left)
	})
}

// Signal sends sig to the master named by the PID file.
func (in *instance) Signal(sig syscall.Signal) int {
	in.tb.Helper()
	pid := in.MustMasterPID()
	if err := unix.Kill(pid, sig); err != nil {
		in.tb.Fatalf("kill -%d %d: %v", sig, pid, err)
	}
	return pid
}

// cleanup stops whatever the instance left running: a fast stop (SIGINT)
// for masters, then SIGKILL for anything left, then reaps what was adopted.
// On failure it shows the logs, which say what the product saw.
func (in *instance) cleanup() {
	if in.tb.Failed() {
		in.tb.Logf("--- master stderr (tail):\n%s", tail(in.Stderr, 60))
		in.tb.Logf("--- error log (tail):\n%s", tail(in.ErrLog, 80))
	}
	left := processesOf(in.Bin)
	for _, pid := range left {
		if p, ok := readProc(pid); ok && p.Uid[0] == 0 {
			_ = unix.Kill(pid, unix.SIGINT)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(processesOf(in.Bin)) > 0 && time.Now().Before(deadline) {
		reapAdopted()
		time.Sleep(10 * time.Millisecond)
	}
	for _, pid := range processesOf(in.Bin) {
		in.tb.Logf("cleanup: SIGKILL %d, still running 5 s after SIGINT", pid)
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	deadline = time.Now().Add(5 * time.Second)
	for len(processesOf(in.Bin)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if in.first != nil {
		select {
		case <-in.first.done:
		case <-time.After(5 * time.Second):
		}
	}
	reapAdopted()
}
