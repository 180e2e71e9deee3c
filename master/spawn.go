package master

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pingora-go/pingora/worker/wire"
	"golang.org/x/sys/unix"
)

// selfExe is what workers are exec'd from. Exec'ing the running binary
// through /proc/self/exe (instead of its path) works after the switch to
// the unprivileged user even when the binary sits in a directory only root
// can search, and keeps each master's workers on that master's own binary
// while a binary upgrade replaces the file on disk.
const selfExe = "/proc/self/exe"

// spawner starts every worker from one goroutine locked to its OS thread
// for the master's whole life. Pdeathsig fires when the *thread* that
// forked the child exits, not the process: a worker forked from an
// ordinary goroutine would get its death signal whenever the Go runtime
// retires that thread. A locked goroutine that never returns keeps its
// thread until the master exits.
type spawner struct {
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq)}
	go s.run()
	return s
}

// run also hardens its thread before the first worker: a forked child
// inherits the forking thread's no_new_privs flag and capability bounding
// set, and Go forks on the calling thread (syscall.forkExec clones the
// current M, to which this goroutine is locked). So every worker starts
// with no_new_privs set (no setuid or file-capability binary can give it
// privileges back) and, under a root master, an empty bounding set (no
// capability can ever be regained), without an extra exec. The rest of
// the master keeps its privileges: only this thread changes.
func (s *spawner) run() {
	runtime.LockOSThread() // never unlocked: see the type's doc
	err := hardenThread(os.Geteuid() == 0)
	for r := range s.reqs {
		if err != nil {
			r.done <- err
			continue
		}
		r.done <- r.cmd.Start()
	}
}

// hardenThread sets no_new_privs on the calling thread and, when
// dropBounding (the master is root and starts workers as another user),
// drops every capability from its bounding set. A master that is not root
// cannot drop them (that takes CAP_SETPCAP), and its workers run as its
// own user with no_new_privs, so they cannot gain any either.
func hardenThread(dropBounding bool) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("worker hardening: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	if !dropBounding {
		return nil
	}
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return fmt.Errorf("worker hardening: %w", err)
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || last < 0 || last > 63 {
		return fmt.Errorf("worker hardening: /proc/sys/kernel/cap_last_cap: bad content %q", strings.TrimSpace(string(b)))
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("worker hardening: drop capability %d from the workers' bounding set: %w (the master needs CAP_SETPCAP)", c, err)
		}
	}
	return nil
}

func (s *spawner) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, done: done}
	return <-done
}

// startWorker starts a worker in slot s of generation g. The worker gets,
// and only gets: stdin/stdout on /dev/null, stderr on the error log, the
// control socket (fd 3), the handshake pipe (fd 4), the access log, the
// rate-limit and health zones and the listeners (fd 5 on, named in the handshake). Everything else the master
// holds is close-on-exec.
func (m *Master) startWorker(g *generation, s *slot) (*worker, error) {
	ctl, ctlFile, err := wire.Pair()
	if err != nil {
		return nil, err
	}
	hsR, hsW, err := os.Pipe()
	if err != nil {
		ctl.Close()
		ctlFile.Close()
		return nil, fmt.Errorf("handshake pipe: %w", err)
	}
	files := []*os.File{ctlFile, hsR}
	hs := wire.Handshake{
		Generation:     g.id,
		MasterPID:      os.Getpid(),
		Workers:        len(g.slots),
		Unprivileged:   m.ident.privileged,
		UID:            m.ident.uid,
		GID:            m.ident.gid,
		Listeners:      make(map[string]int),
		ErrorLogIsFile: g.logs.errFile != nil,
		NoFile:         workerNoFile(g.cfg.Limits),
		TicketKeys:     m.ticketKeys,
		Config:         g.cfg,
	}
	next := wire.FirstExtraFD
	if g.logs.accFile != nil {
		files = append(files, g.logs.accFile)
		hs.AccessLogFD = next
		next++
	}
	if m.zone != nil {
		files = append(files, m.zone)
		hs.RateLimitZoneFD = next
		next++
	}
	if m.health != nil {
		files = append(files, m.health)
		hs.HealthZoneFD = next
		next++
	}
	names := make([]string, 0, len(g.cfg.Listeners))
	addrOf := make(map[string]string)
	for _, l := range g.cfg.Listeners {
		names = append(names, l.Name)
		addrOf[l.Name] = l.Address
	}
	sort.Strings(names)
	for _, name := range names {
		f := m.lns.file(addrOf[name], s.index)
		if f == nil {
			ctl.Close()
			ctlFile.Close()
			hsR.Close()
			hsW.Close()
			return nil, fmt.Errorf("listener %s (%s) is not bound", name, addrOf[name])
		}
		files = append(files, f)
		hs.Listeners[name] = next
		next++
	}

	cmd := &exec.Cmd{
		Path:       selfExe,
		Args:       []string{"pingora-master", wire.ArgWorker},
		Env:        workerEnv(g.cfg.Env),
		Dir:        "/",
		Stderr:     g.logs.errorLog(),
		ExtraFiles: files,
		SysProcAttr: &syscall.SysProcAttr{
			Credential: m.ident.cred,
			// Own process group: a Ctrl-C on the master's terminal is for
			// the master, which then stops its workers in order.
			Setpgid:   true,
			Pdeathsig: syscall.SIGTERM,
		},
	}
	err = m.spawn.start(cmd)
	ctlFile.Close()
	hsR.Close()
	if err != nil {
		ctl.Close()
		hsW.Close()
		return nil, fmt.Errorf("start worker: %w", err)
	}
	go func() {
		// The worker reads the handshake at once; a goroutine keeps a
		// large config from blocking the master on a full pipe.
		json.NewEncoder(hsW).Encode(&hs)
		hsW.Close()
	}()

	w := &worker{
		gen:     g,
		slot:    s,
		pid:     cmd.Process.Pid,
		cmd:     cmd,
		ctl:     ctl,
		state:   stateStarting,
		started: time.Now(),
	}
	s.w = w
	m.watchWorker(w)
	m.publishAdmin()
	return w, nil
}

// readerGrace bounds how long a worker's exit waits for the reader of its
// control socket to reach the end. The end normally comes with the exit
// itself; the bound is for a socket held open elsewhere. It is generous
// because what the reader has not yet passed on when the exit is handled
// is lost: the worker's final counters (a late sample of a retired worker
// is ignored), and on a loaded machine the reader may wait its turn for a
// CPU well past a second.
const readerGrace = 5 * time.Second

// watchWorker forwards the worker's messages and then its exit to the
// master's loop, in that order (the exit waits for the message reader to
// finish, so an error the worker reported and its final counters are known
// when its exit is seen).
func (m *Master) watchWorker(w *worker) {
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			msg, files, err := w.ctl.Recv()
			if err != nil {
				return
			}
			m.events <- func() { m.onWorkerMessage(w, msg, files) }
		}
	}()
	go func() {
		err := w.cmd.Wait()
		select {
		case <-readerDone:
		case <-time.After(readerGrace):
			m.log.Warn("worker exited but its control socket's reader has not reached the end; handling the exit anyway, later messages are lost",
				"worker", w.pid, "waited", readerGrace)
		}
		w.ctl.Close()
		m.events <- func() { m.onWorkerExit(w, err) }
	}()
}

// workerEnv is a worker's whole environment: the config's env list
// (config.Config.Env, TZ and what the operator named; "NAME" takes the
// master's value when it has one, "NAME=value" is used as written) and the
// marker that makes the process a worker. Nothing else of the master's
// environment (root's HOME, credentials in variables, systemd's notify
// socket) reaches a worker.
func workerEnv(list []string) []string {
	env := make([]string, 0, len(list)+1)
	for _, kv := range list {
		if strings.Contains(kv, "=") {
			env = append(env, kv)
		} else if v, ok := os.LookupEnv(kv); ok {
			env = append(env, kv+"="+v)
		}
	}
	return append(env, wire.EnvWorker+"="+wire.WorkerValue)
}
