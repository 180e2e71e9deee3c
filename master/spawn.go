package master

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pingora-go/pingora/worker/wire"
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

func (s *spawner) run() {
	runtime.LockOSThread() // never unlocked: see the type's doc
	for r := range s.reqs {
		r.done <- r.cmd.Start()
	}
}

func (s *spawner) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, done: done}
	return <-done
}

// startWorker starts a worker in slot s of generation g. The worker gets,
// and only gets: stdin/stdout on /dev/null, stderr on the error log, the
// control socket (fd 3), the handshake pipe (fd 4), the access log and the
// listeners (fd 5 on, named in the handshake). Everything else the master
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
		Config:         g.cfg,
	}
	next := wire.FirstExtraFD
	if g.logs.accFile != nil {
		files = append(files, g.logs.accFile)
		hs.AccessLogFD = next
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
		f := m.lns.file(addrOf[name])
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
		Env:        workerEnv(),
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

// workerEnv is the master's environment minus what must not reach a worker:
// systemd's notify socket and socket-activation variables, tableflip's and
// the daemon's markers.
func workerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "NOTIFY_SOCKET", strings.HasPrefix(name, "LISTEN_"),
			strings.HasPrefix(name, "TABLEFLIP_"), strings.HasPrefix(name, "PINGORA_"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, wire.EnvWorker+"="+wire.WorkerValue)
}
