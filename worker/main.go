package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/proxy"
	"github.com/pingora-go/pingora/proxy/ratelimit"
	"github.com/pingora-go/pingora/proxy/upstream"
	"github.com/pingora-go/pingora/worker/wire"
	"golang.org/x/sys/unix"
)

// orphanDrain is how long a worker whose master vanished keeps finishing
// in-flight requests; orphanExit is when it exits regardless. Both stay
// under the 2 s promise.
const (
	orphanDrain = 1500 * time.Millisecond
	orphanExit  = 1900 * time.Millisecond
)

// heartbeatSendTimeout bounds the wait to answer a heartbeat when the
// master does not read its control socket: this loop must not hang on it.
const heartbeatSendTimeout = time.Second

// IsWorker reports whether this process was started as a worker: argv[1]
// is "worker" and the marker variable is set (both, so that a user typing
// "pingora-master worker" gets the normal command line).
func IsWorker(args []string) bool {
	return len(args) > 1 && args[1] == wire.ArgWorker && os.Getenv(wire.EnvWorker) == wire.WorkerValue
}

// Main runs a worker and returns its exit code.
func Main() int {
	// First, before the config (and what it holds) is read: a process
	// that is not dumpable has its /proc files owned by root, so another
	// process of the worker's user can neither read its memory and
	// environment nor ptrace it. (The kernel makes a process dumpable
	// again at execve, so the master cannot do this for us.)
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "pingora-master worker: prctl(PR_SET_DUMPABLE, 0): %v\n", err)
		return 2
	}
	started := time.Now()
	os.Unsetenv(wire.EnvWorker)
	hsFile := os.NewFile(wire.HandshakeFD, "handshake")
	var hs wire.Handshake
	err := json.NewDecoder(io.LimitReader(hsFile, 64<<20)).Decode(&hs)
	hsFile.Close()
	if err != nil || hs.Config == nil {
		fmt.Fprintf(os.Stderr, "pingora-master worker: bad handshake from the master: %v\n", err)
		return 2
	}
	ctlFile := os.NewFile(wire.ControlFD, "control")
	conn, err := wire.FileConn(ctlFile)
	ctlFile.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pingora-master worker: %v\n", err)
		return 2
	}
	w := &worker{hs: &hs, conn: conn, log: newLogger(&hs), stats: newSampler(&hs, started)}
	return w.run()
}

type worker struct {
	hs    *wire.Handshake
	conn  *wire.Conn
	log   hclog.Logger
	acc   *os.File
	stats *sampler
}

type incoming struct {
	msg   wire.Message
	files []*os.File
}

func (w *worker) run() int {
	// The master alone controls workers; these would otherwise kill us.
	// SIGQUIT keeps Go's default (a goroutine dump on the error log, then
	// exit; the master replaces the worker) for debugging a stuck worker.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM) // Pdeathsig, or an operator

	msgs := make(chan incoming, 8)
	masterGone := make(chan struct{})
	go func() {
		defer close(masterGone)
		for {
			m, files, err := w.conn.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					w.log.Error("control socket", "error", err)
				}
				return
			}
			msgs <- incoming{m, files}
		}
	}()
	if os.Getppid() != w.hs.MasterPID {
		w.log.Error("master is gone, not starting")
		return 1
	}
	if err := checkPrivileges(w.hs); err != nil {
		return w.fail(err)
	}
	w.log.Info("privileges checked: setuid(0) refused with EPERM, no capabilities, no_new_privs set",
		"uid", os.Getuid(), "gid", os.Getgid())
	procs := threads(w.hs)
	runtime.GOMAXPROCS(procs)
	if err := setNoFile(w.hs.NoFile); err != nil {
		return w.fail(err)
	}

	lns, err := inheritListeners(w.hs.Listeners)
	if err != nil {
		return w.fail(err)
	}
	opts := proxy.Options{Logger: w.log.Named("proxy"), SessionTicketKeys: w.hs.TicketKeys}
	if w.hs.AccessLogFD > 0 {
		w.acc = os.NewFile(uintptr(w.hs.AccessLogFD), "access-log")
		unix.CloseOnExec(w.hs.AccessLogFD)
		opts.AccessLog = w.acc
	}
	if fd := w.hs.RateLimitZoneFD; fd > 0 {
		f := os.NewFile(uintptr(fd), "rate-limit-zone")
		zone, err := ratelimit.MapZone(f)
		f.Close() // the mapping stays
		if err != nil {
			return w.fail(err)
		}
		opts.RateLimitZone = zone
	}
	if fd := w.hs.HealthZoneFD; fd > 0 {
		f := os.NewFile(uintptr(fd), "health-zone")
		table, err := upstream.MapHealthTable(f)
		f.Close() // the mapping stays
		if err != nil {
			return w.fail(err)
		}
		opts.HealthZone = table
	}
	p, err := proxy.New(w.hs.Config, opts)
	if err != nil {
		return w.fail(err) // already "proxy: ..."
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- p.Serve(lns) }()
	select {
	case <-p.Ready():
	case err := <-serveErr:
		if err == nil {
			err = errors.New("proxy stopped before it was ready")
		}
		return w.fail(fmt.Errorf("serve: %w", err))
	case <-masterGone:
		p.Close()
		w.log.Error("master is gone, not starting")
		return 1
	case <-term:
		p.Close()
		return 1
	}
	if err := w.conn.Send(wire.Message{Type: wire.TypeReady}); err != nil {
		p.Close()
		w.log.Error("cannot report ready", "error", err)
		return 1
	}
	names := make([]string, 0, len(lns))
	for n := range lns {
		names = append(names, n)
	}
	sort.Strings(names)
	w.log.Info("worker serving", "listeners", names, "gomaxprocs", procs, "uid", os.Getuid(), "gid", os.Getgid())

	var exitTimer <-chan time.Time
	stopping := false
	exitBy := func(d time.Duration) {
		exitTimer = time.After(d)
	}
	for {
		select {
		case in := <-msgs:
			switch in.msg.Type {
			case wire.TypeDrain:
				deadline := time.Unix(0, in.msg.Deadline)
				w.log.Info("draining", "deadline", time.Until(deadline).Round(time.Millisecond))
				// Drain returns at once by contract; calling it on its own
				// goroutine keeps this loop, and so the exit timer, alive
				// even if it did not.
				// The confirmation lets the master promise that every
				// connection made after a reload reaches the new workers.
				go func() {
					p.Drain(deadline)
					w.conn.Send(wire.Message{Type: wire.TypeDraining})
				}()
				stopping = true
				exitBy(time.Until(deadline) + time.Second)
			case wire.TypeStop:
				w.log.Info("stopping")
				go p.Close()
				stopping = true
				exitBy(time.Second)
			case wire.TypeReopen:
				w.reopen(p, in.msg, in.files)
			case wire.TypeTicketKeys:
				p.SetSessionTicketKeys(in.msg.TicketKeys)
			case wire.TypeHeartbeat:
				// Answered here, from the loop that handles every order of
				// the master, so an answer means the worker still obeys.
				if err := w.conn.SendTimeout(wire.Message{Type: wire.TypeHeartbeat, Seq: in.msg.Seq}, heartbeatSendTimeout); err != nil {
					w.log.Warn("cannot answer the master's heartbeat", "error", err)
				}
			case wire.TypeStats:
				// Answered from this loop, so samples go out in order and
				// none can follow the final one.
				if err := w.stats.send(w.conn, p); err != nil {
					w.log.Warn("cannot send counters to the master", "error", err)
				}
			default:
				w.log.Warn("unexpected message from master", "type", in.msg.Type)
			}
		case <-masterGone:
			masterGone = nil
			w.orphaned(p, stopping)
			stopping = true
			exitBy(orphanExit)
		case <-term:
			term = nil
			w.log.Info("SIGTERM: draining")
			if !stopping {
				go p.Drain(time.Now().Add(orphanDrain))
			}
			stopping = true
			exitBy(orphanExit)
		case err := <-serveErr:
			w.closeAccessLog()
			w.finalSample(p)
			if err != nil && !stopping {
				w.log.Error("proxy stopped", "error", err)
				return 1
			}
			w.log.Info("worker exiting")
			return 0
		case <-exitTimer:
			w.log.Warn("exiting with requests still in flight")
			go p.Close()
			w.closeAccessLog()
			w.finalSample(p)
			return 0
		}
	}
}

// orphaned: the master died (control socket EOF). Stop accepting at once,
// give in-flight requests a moment, exit within 2 s.
func (w *worker) orphaned(p *proxy.Proxy, stopping bool) {
	w.log.Warn("master is gone: stop accepting, exiting")
	if !stopping {
		go p.Drain(time.Now().Add(orphanDrain))
	}
}

// finalSample sends the counters one last time before the worker exits,
// so the master's totals include everything it counted. It fails only
// when the master is gone (an orphaned worker): not worth more than a
// debug line.
func (w *worker) finalSample(p *proxy.Proxy) {
	if err := w.stats.send(w.conn, p); err != nil {
		w.log.Debug("cannot send final counters to the master", "error", err)
	}
}

// fail reports a start-up error to the master (which logs it and, on a
// reload, returns it to `-s reload`) and returns the exit code.
func (w *worker) fail(err error) int {
	w.log.Error("worker cannot serve", "error", err)
	w.conn.Send(wire.Message{Type: wire.TypeError, Error: err.Error()})
	return 1
}

func (w *worker) closeAccessLog() {
	if w.acc != nil {
		w.acc.Close()
		w.acc = nil
	}
}

// threads is GOMAXPROCS: worker_threads, or the CPUs shared among the
// workers (at least 1), so workers x GOMAXPROCS fits the machine.
func threads(hs *wire.Handshake) int {
	if hs.Config.WorkerThreads > 0 {
		return hs.Config.WorkerThreads
	}
	n := hs.Workers
	if n < 1 {
		n = 1
	}
	if p := runtime.NumCPU() / n; p > 1 {
		return p
	}
	return 1
}

// inheritListeners turns the inherited descriptors into listeners, keyed
// by config listener name.
func inheritListeners(fds map[string]int) (map[string]net.Listener, error) {
	lns := make(map[string]net.Listener, len(fds))
	for name, fd := range fds {
		f := os.NewFile(uintptr(fd), "listener-"+name)
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listener %s (fd %d): %w", name, fd, err)
		}
		lns[name] = ln
	}
	return lns, nil
}
