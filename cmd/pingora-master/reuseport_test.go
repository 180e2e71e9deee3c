package main

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startReusePort starts an instance of 4 workers whose "public" listener
// has reuseport, and returns it with its master and workers.
func startReusePort(t *testing.T) (*instance, int, []int) {
	t.Helper()
	in := newInstance(t, 4)
	in.Params.ReusePort = true
	in.WriteConfig(in.Params)
	in.Start()
	master := in.MustMasterPID()
	return in, master, in.WaitWorkers(master, 4, nil, 10*time.Second)
}

// TestReusePortSocketPerWorker: with reuseport = true and 4 workers, each
// worker listens on a socket of its own (4 distinct sockets on the port),
// every one of them has SO_REUSEPORT, and new connections are spread over
// more than one worker. A worker killed is replaced by one on its socket.
func TestReusePortSocketPerWorker(t *testing.T) {
	in, master, workers := startReusePort(t)

	byWorker := in.assertSocketPerWorker("at start", workers, 4)
	for _, inode := range byWorker {
		if !reusePortOf(t, master, inode) {
			t.Errorf("socket:[%d] held by the master has no SO_REUSEPORT", inode)
		}
	}

	served := make(map[int]bool)
	for i := 0; i < 24; i++ {
		pid := servingWorker(t, in.Addr, workers)
		served[pid] = true
	}
	if len(served) < 2 {
		t.Errorf("24 new connections were all served by worker(s) %v; want them spread over more than one of %v", served, workers)
	}

	victim := workers[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	in.WaitVanished("the killed worker", []int{victim}, 10*time.Second)
	var replacement int
	waitFor(t, 10*time.Second, "a replacement worker", func() (bool, string) {
		now := in.Workers(master)
		for _, w := range now {
			if !slices.Contains(workers, w) {
				replacement = w
			}
		}
		return len(now) == 4 && replacement != 0, fmt.Sprintf("workers %v", now)
	})
	after := in.assertSocketPerWorker("after a worker was killed", in.Workers(master), 4)
	if after[replacement] != byWorker[victim] {
		t.Errorf("the replacement of worker %d listens on socket:[%d], the killed one on socket:[%d]: want the same", victim, after[replacement], byWorker[victim])
	}
}

// TestReusePortReloadUnderLoad: reloads of a reuseport listener lose no
// request, and the new workers listen on the very same sockets as the old
// ones (slot k's socket goes to the new worker k).
func TestReusePortReloadUnderLoad(t *testing.T) {
	in, master, workers := startReusePort(t)
	before := inodeSet(in.assertSocketPerWorker("at start", workers, 4))

	started := time.Now()
	ld := startLoad(loadSpec{
		Addr:         in.Addr,
		Backend:      in.Backend,
		KeepAlive:    8,
		Fresh:        8,
		Pause:        5 * time.Millisecond,
		MaxPerClient: 20000,
		MaxDuration:  60 * time.Second,
	})
	stopped := false
	defer func() {
		if !stopped {
			t.Logf("load at the failure: %s", ld.stop(started))
		}
	}()
	settle := func(what string) {
		want := ld.Total() + 500
		waitFor(t, 20*time.Second, what, func() (bool, string) {
			return ld.Total() >= want, fmt.Sprintf("%d of %d requests done", ld.Total(), want)
		})
	}
	for gen := 1; gen <= 3; gen++ {
		settle(fmt.Sprintf("load before reload %d", gen))
		in.SetGen(gen)
		if r := in.Ctl("reload"); r.Code != 0 {
			t.Fatalf("-s reload %d: want exit 0\n%s", gen, r)
		}
		in.WaitVanished(fmt.Sprintf("reload %d: old workers", gen), workers, drainTimeout)
		workers = in.WaitWorkers(master, 4, workers, 10*time.Second)
		after := inodeSet(in.assertSocketPerWorker(fmt.Sprintf("after reload %d", gen), workers, 4))
		if !slices.Equal(after, before) {
			t.Errorf("after reload %d the workers listen on sockets %v, before on %v: want the same sockets", gen, after, before)
		}
	}
	settle("load after the last reload")
	rep := ld.stop(started)
	stopped = true
	t.Logf("load: %s", rep)
	if n := rep.FailedTotal(); n > 0 {
		t.Errorf("%d of %d requests failed through 3 reloads with reuseport; want 0", n, rep.Total)
	}
}

// TestReloadTogglingReusePortIsRefused: turning reuseport on (or off) for a
// listener that stays cannot be done without closing the port, so the
// reload is refused with an error naming the listener, and the old
// generation goes on serving.
func TestReloadTogglingReusePortIsRefused(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("from_%t", on), func(t *testing.T) {
			in := newInstance(t, 2)
			in.Params.ReusePort = on
			in.WriteConfig(in.Params)
			in.Start()
			master := in.MustMasterPID()
			workers := in.WaitWorkers(master, 2, nil, 10*time.Second)

			p := in.Params
			p.Gen, p.ReusePort = 1, !on
			in.WriteConfig(p)
			r := in.Ctl("reload")
			if r.Code != 1 {
				t.Errorf("-s reload turning reuseport to %t: want exit 1\n%s", !on, r)
			}
			out := r.Output()
			if !strings.Contains(out, `listener "public"`) || !strings.Contains(out, "reuseport") || !strings.Contains(out, "restart") {
				t.Errorf("-s reload turning reuseport to %t: want an error naming listener \"public\", reuseport and a restart\n%s", !on, r)
			}
			in.assertUnchanged(master, workers, 0)
		})
	}
}

// TestReusePortBinaryUpgrade: after a binary upgrade the new master's
// workers listen on the same reuseport sockets as the old master's.
func TestReusePortBinaryUpgrade(t *testing.T) {
	in, master, workers := startReusePort(t)
	before := inodeSet(in.assertSocketPerWorker("before the upgrade", workers, 4))

	in.SetGen(1)
	in.Signal(syscall.SIGUSR2)
	newMaster := in.WaitNewMaster("upgrade", master)
	waitFor(t, 15*time.Second, "generation 1 served", func() (bool, string) { return in.servesGen(1) })
	in.WaitDead("old master", []int{master}, drainTimeout)
	in.WaitVanished("old workers", workers, 5*time.Second)
	workers = in.WaitWorkers(newMaster, 4, workers, 10*time.Second)
	after := inodeSet(in.assertSocketPerWorker("after the upgrade", workers, 4))
	if !slices.Equal(after, before) {
		t.Errorf("after the upgrade the workers listen on sockets %v, before on %v: want the same sockets", after, before)
	}
	for _, inode := range after {
		if !reusePortOf(t, newMaster, inode) {
			t.Errorf("socket:[%d] held by the new master has no SO_REUSEPORT", inode)
		}
	}
}

// TestReusePortWorkersChangeByReload: a reload from 4 workers to 2 leaves
// 2 of the sockets (the surplus ones are closed once the old generation
// stopped accepting), and one back to 4 binds 2 more; every step serves.
// Every socket of a reuseport listener with defer_accept has
// TCP_DEFER_ACCEPT, the ones a reload added too.
func TestReusePortWorkersChangeByReload(t *testing.T) {
	in := newInstance(t, 4)
	in.Params.ReusePort = true
	deferredPort := freePort(t)
	in.Params.Extra = fmt.Sprintf(`
listener "deferred" {
  address      = "127.0.0.1:%d"
  reuseport    = true
  defer_accept = true
}
`, deferredPort)
	in.WriteConfig(in.Params)
	checkDeferred := func(when string, n int) {
		t.Helper()
		socks := listenInodes(deferredPort)
		if len(socks) != n {
			t.Errorf("%s: %d sockets listen on the deferred listener's port, want %d", when, len(socks), n)
		}
		for _, inode := range socks {
			if v := sockoptOf(t, in.MustMasterPID(), inode, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT); v == 0 {
				t.Errorf("%s: socket:[%d] of the deferred listener has no TCP_DEFER_ACCEPT", when, inode)
			}
		}
	}
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 4, nil, 10*time.Second)
	first := inodeSet(in.assertSocketPerWorker("with 4 workers", workers, 4))
	checkDeferred("with 4 workers", 4)

	steps := []struct{ gen, workers int }{{1, 2}, {2, 4}}
	for _, step := range steps {
		p := in.Params
		p.Gen, p.Workers = step.gen, step.workers
		in.WriteConfig(p)
		if r := in.Ctl("reload"); r.Code != 0 {
			t.Fatalf("-s reload to %d workers: want exit 0\n%s", step.workers, r)
		}
		in.assertServesNow(fmt.Sprintf("right after the reload to %d workers", step.workers), step.gen)
		in.WaitVanished("old workers", workers, drainTimeout)
		workers = in.WaitWorkers(master, step.workers, workers, 10*time.Second)
		now := inodeSet(in.assertSocketPerWorker(fmt.Sprintf("with %d workers", step.workers), workers, step.workers))
		if step.workers == 2 {
			for _, inode := range now {
				if !slices.Contains(first, inode) {
					t.Errorf("with 2 workers: socket:[%d] is new; want 2 of the first sockets %v", inode, first)
				}
			}
		}
		waitFor(t, 10*time.Second, fmt.Sprintf("%d listening sockets on the port", step.workers), func() (bool, string) {
			all := listenInodes(in.Port)
			return len(all) == step.workers, fmt.Sprintf("listening sockets %v", all)
		})
		for i := 0; i < 8; i++ {
			if ok, why := in.servesGen(step.gen); !ok {
				t.Fatalf("with %d workers, request %d on a new connection: %s", step.workers, i+1, why)
			}
		}
		checkDeferred(fmt.Sprintf("with %d workers", step.workers), step.workers)
	}
}

// assertSocketPerWorker checks that each worker holds exactly one
// listening socket of the instance's port, that they are distinct, and
// that the port has exactly want listening sockets; it returns the socket
// inode of each worker.
func (in *instance) assertSocketPerWorker(when string, workers []int, want int) map[int]uint64 {
	in.tb.Helper()
	var byWorker map[int]uint64
	// A worker of the previous generation may still be closing its copy.
	waitFor(in.tb, 10*time.Second, when+": one listening socket per worker", func() (bool, string) {
		listening := listenInodes(in.Port)
		byWorker = make(map[int]uint64)
		seen := make(map[uint64]int)
		for _, w := range workers {
			held := socketsHeld(w, listening)
			if len(held) != 1 {
				return false, fmt.Sprintf("worker %d holds listening sockets %v of %v", w, held, listening)
			}
			if other, dup := seen[held[0]]; dup {
				return false, fmt.Sprintf("workers %d and %d share socket:[%d]", other, w, held[0])
			}
			seen[held[0]] = w
			byWorker[w] = held[0]
		}
		if len(listening) != want {
			return false, fmt.Sprintf("%d listening sockets on the port (%v), want %d", len(listening), listening, want)
		}
		return true, ""
	})
	return byWorker
}

// inodeSet is the sorted socket inodes of assertSocketPerWorker's result.
func inodeSet(byWorker map[int]uint64) []uint64 {
	var out []uint64
	for _, inode := range byWorker {
		out = append(out, inode)
	}
	slices.Sort(out)
	return out
}

// socketsHeld is which of inodes pid has a descriptor of.
func socketsHeld(pid int, inodes []uint64) []uint64 {
	fds, err := fdTargets(pid)
	if err != nil {
		return nil
	}
	var out []uint64
	for _, inode := range inodes {
		target := fmt.Sprintf("socket:[%d]", inode)
		for _, t := range fds {
			if t == target {
				out = append(out, inode)
				break
			}
		}
	}
	return out
}

// servingWorker opens a connection to addr, completes a request on it
// (keep-alive, so the connection stays open) and returns the worker of
// workers holding the server side of it.
func servingWorker(t *testing.T, addr string, workers []int) int {
	t.Helper()
	c, err := dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.do("GET", "/gen", nil, false); err != nil || r.Status != 200 {
		t.Fatalf("GET /gen: %v %v", r, err)
	}
	inode := serverSideInode(t, c.c.LocalAddr().(*net.TCPAddr).Port, addr)
	target := fmt.Sprintf("socket:[%d]", inode)
	for _, w := range workers {
		fds, _ := fdTargets(w)
		for _, tg := range fds {
			if tg == target {
				return w
			}
		}
	}
	t.Fatalf("no worker of %v holds the connection's socket:[%d]", workers, inode)
	return 0
}

// serverSideInode is the inode of the established server-side socket of
// the connection from 127.0.0.1:clientPort to addr.
func serverSideInode(t *testing.T, clientPort int, addr string) uint64 {
	t.Helper()
	_, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	local := fmt.Sprintf("0100007F:%04X", port)
	remote := fmt.Sprintf("0100007F:%04X", clientPort)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 9 && f[1] == local && f[2] == remote && f[3] == "01" {
			n, _ := strconv.ParseUint(f[9], 10, 64)
			return n
		}
	}
	t.Fatalf("no established connection %s -> %s in /proc/net/tcp", remote, local)
	return 0
}

// reusePortOf reads SO_REUSEPORT of socket inode through pid's descriptor.
func reusePortOf(t *testing.T, pid int, inode uint64) bool {
	t.Helper()
	return sockoptOf(t, pid, inode, unix.SOL_SOCKET, unix.SO_REUSEPORT) != 0
}

// sockoptOf reads an integer option of socket inode through a copy of
// pid's descriptor (pidfd_getfd, as root).
func sockoptOf(t *testing.T, pid int, inode uint64, level, opt int) int {
	t.Helper()
	fds, err := fdTargets(pid)
	if err != nil {
		t.Fatal(err)
	}
	for fd, target := range fds {
		if target != fmt.Sprintf("socket:[%d]", inode) {
			continue
		}
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Skipf("pidfd_open: %v (needs Linux 5.3)", err)
		}
		defer unix.Close(pidfd)
		sock, err := unix.PidfdGetfd(pidfd, fd, 0)
		if err != nil {
			t.Skipf("pidfd_getfd: %v (needs Linux 5.6)", err)
		}
		defer unix.Close(sock)
		v, err := unix.GetsockoptInt(sock, level, opt)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	t.Fatalf("process %d holds no descriptor of socket:[%d]", pid, inode)
	return 0
}

// TestReusePortRefusesSocketActivation: systemd passes one socket per
// address, a reuseport listener needs one per worker, so the master refuses
// to start with an error naming the listener rather than serving on a mix.
func TestReusePortRefusesSocketActivation(t *testing.T) {
	in := newInstance(t, 2)
	in.Params.ReusePort = true
	in.WriteConfig(in.Params)
	public := listenFile(t, in.Addr)
	p := in.startActivated("web", public)
	public.Close()
	waitFor(t, startTimeout, "the master to exit", func() (bool, string) { return p.Exited(), "still running" })
	if p.ExitCode() == 0 {
		t.Errorf("master started with a socket from systemd for a reuseport listener: want a non-zero exit")
	}
	out := readText(in.Stderr) + readText(in.ErrLog)
	t.Logf("the refusal: %s", strings.TrimSpace(tail(in.Stderr, 1)))
	if !strings.Contains(out, `listener "public"`) || !strings.Contains(out, "reuseport") || !strings.Contains(out, "systemd") {
		t.Errorf("want an error naming listener \"public\", reuseport and systemd; stderr and error log:\n%s", out)
	}
}
