package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// procInfo is what the tests read from /proc/<pid>/status: the black-box
// view of a process an operator has (ps, /proc), never the product's own
// account of itself.
type procInfo struct {
	PID    int
	PPID   int
	Name   string
	State  string // R, S, D, Z...
	Uid    [4]int // real, effective, saved, filesystem
	Gid    [4]int
	Groups []int
	CapInh uint64
	CapPrm uint64
	CapEff uint64
	CapBnd uint64
	CapAmb uint64
	// NoNewPrivs is the raw NoNewPrivs field ("0" or "1").
	NoNewPrivs string
}

// Zombie reports whether the process has exited and waits to be reaped.
func (p procInfo) Zombie() bool { return strings.HasPrefix(p.State, "Z") }

// readProc parses /proc/<pid>/status; ok is false when the pid is gone.
func readProc(pid int) (procInfo, bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procInfo{}, false
	}
	defer f.Close()
	p := procInfo{PID: pid}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, found := strings.Cut(sc.Text(), ":")
		if !found {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			p.Name = v
		case "State":
			p.State = v
		case "PPid":
			p.PPID, _ = strconv.Atoi(v)
		case "Uid":
			p.Uid = parse4(v)
		case "Gid":
			p.Gid = parse4(v)
		case "Groups":
			for _, g := range strings.Fields(v) {
				n, _ := strconv.Atoi(g)
				p.Groups = append(p.Groups, n)
			}
		case "CapInh":
			p.CapInh, _ = strconv.ParseUint(v, 16, 64)
		case "CapPrm":
			p.CapPrm, _ = strconv.ParseUint(v, 16, 64)
		case "CapEff":
			p.CapEff, _ = strconv.ParseUint(v, 16, 64)
		case "CapBnd":
			p.CapBnd, _ = strconv.ParseUint(v, 16, 64)
		case "CapAmb":
			p.CapAmb, _ = strconv.ParseUint(v, 16, 64)
		case "NoNewPrivs":
			p.NoNewPrivs = v
		}
	}
	return p, sc.Err() == nil && p.State != ""
}

func parse4(v string) [4]int {
	var out [4]int
	for i, f := range strings.Fields(v) {
		if i < 4 {
			out[i], _ = strconv.Atoi(f)
		}
	}
	return out
}

// allPIDs lists the numeric entries of /proc.
func allPIDs() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, n)
		}
	}
	sort.Ints(pids)
	return pids
}

// exeOf is the binary a process runs (readlink /proc/<pid>/exe), without the
// " (deleted)" mark the kernel adds once the file is unlinked.
func exeOf(pid int) string {
	s, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(s, " (deleted)")
}

// processesOf lists the live (non-zombie) processes running binary bin.
// Each test instance runs its own copy of the binary, so this is exactly
// that instance's masters and workers (and -s clients while they run).
func processesOf(bin string) []int {
	var out []int
	for _, pid := range allPIDs() {
		if exeOf(pid) != bin {
			continue
		}
		if p, ok := readProc(pid); ok && !p.Zombie() {
			out = append(out, pid)
		}
	}
	return out
}

// childrenOf lists live children of ppid whose real uid is uid (uid < 0:
// any). Workers are the master's children running as the worker user;
// this filter leaves out a new master tableflip starts during an upgrade,
// which runs as root.
func childrenOf(ppid, uid int) []int {
	var out []int
	for _, pid := range allPIDs() {
		p, ok := readProc(pid)
		if !ok || p.PPID != ppid || p.Zombie() {
			continue
		}
		if uid >= 0 && p.Uid[0] != uid {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// fdTargets maps each open descriptor of pid to what it points at
// (readlink /proc/<pid>/fd/N).
func fdTargets(pid int) (map[int]string, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	out := make(map[int]string, len(ents))
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed between the listing and the readlink
		}
		out[n] = target
	}
	return out, nil
}

// reaper is the test process's side of being a child subreaper.
//
// The upgraded masters (children of the previous master) and the workers of
// a master killed with SIGKILL are re-parented to the nearest subreaper; on
// this machine pid 1 does not reap orphans, so TestMain makes the test
// process a subreaper and the harness reaps those processes itself, else
// they would stay zombies forever. It must never reap a child an exec.Cmd
// still waits for (that would break cmd.Wait), hence the register of direct
// children under one lock. It is process-wide because the subreaper
// attribute is.
var reaper = struct {
	mu     sync.Mutex
	direct map[int]bool // pids started through exec.Cmd and not yet waited for
}{direct: map[int]bool{}}

// reapIfZombie reaps pid when it is a zombie child of the test process that
// no exec.Cmd waits for.
func reapIfZombie(pid int) {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	if reaper.direct[pid] {
		return
	}
	p, ok := readProc(pid)
	if !ok || !p.Zombie() || p.PPID != os.Getpid() {
		return
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
}

// reapAdopted reaps every zombie child of the test process that no exec.Cmd
// waits for (cleanup: orphans the harness never saw by pid). Workers show as
// "exe" in /proc (they are exec'd as /proc/self/exe), so it goes by
// parentage, not by name.
func reapAdopted() {
	self := os.Getpid()
	for _, pid := range allPIDs() {
		if p, ok := readProc(pid); ok && p.Zombie() && p.PPID == self {
			reapIfZombie(pid)
		}
	}
}

// alive reports whether pid runs (exists and is not a zombie), reaping it
// first when it is an adopted zombie.
func alive(pid int) bool {
	reapIfZombie(pid)
	p, ok := readProc(pid)
	return ok && !p.Zombie()
}

// vanished reports whether pid is gone from /proc altogether (reaped by its
// parent, or by the test when it was adopted).
func vanished(pid int) bool {
	reapIfZombie(pid)
	_, ok := readProc(pid)
	return !ok
}

// listenInode is the socket inode of the TCP listener on 127.0.0.1:port,
// from /proc/net/tcp (state 0A is LISTEN), or 0. With SO_REUSEPORT there
// may be several: see listenInodes.
func listenInode(port int) uint64 {
	if all := listenInodes(port); len(all) > 0 {
		return all[0]
	}
	return 0
}

// listenInodes is the inodes of every TCP socket listening on
// 127.0.0.1:port (several with SO_REUSEPORT), from /proc/net/tcp.
func listenInodes(port int) []uint64 {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	var out []uint64
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 9 && f[1] == want && f[3] == "0A" {
			if n, err := strconv.ParseUint(f[9], 10, 64); err == nil && n != 0 {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// fdFlags is the open-file flags of pid's descriptor fd, from
// /proc/<pid>/fdinfo/<fd> (octal, as the kernel prints them).
func fdFlags(pid, fd int) (uint64, error) {
	path := fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "flags:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 8, 64)
		}
	}
	return 0, fmt.Errorf("no flags in %s", path)
}

// threadsInSyscall lists the threads of pid sleeping in system call nr
// (/proc/<pid>/task/<tid>/syscall starts with the number while blocked).
func threadsInSyscall(pid int, nr int) []int {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "syscall"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 && f[0] == strconv.Itoa(nr) {
			tid, _ := strconv.Atoi(e.Name())
			out = append(out, tid)
		}
	}
	return out
}

// allThreadsStopped reports whether every thread of pid is in the stopped
// state (T in /proc/<pid>/task/<tid>/stat). SIGSTOP is delivered
// asynchronously: until each thread has taken it, one may still accept.
func allThreadsStopped(pid int) (bool, string) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err.Error()
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			return false, err.Error()
		}
		// The state follows the command name, which is in parentheses
		// and may itself contain spaces or parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			return false, fmt.Sprintf("unexpected %s/%s/stat: %q", dir, e.Name(), s)
		}
		if state := s[i+2]; state != 'T' {
			return false, fmt.Sprintf("thread %s of %d is in state %c", e.Name(), pid, state)
		}
	}
	return true, ""
}
