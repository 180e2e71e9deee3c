package master

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/pingora-go/pingora/worker/wire"
)

// killGrace is how long past its drain deadline a worker may take to exit
// before the master kills it.
const killGrace = 2 * time.Second

func (m *Master) onWorkerMessage(w *worker, msg wire.Message, files []*os.File) {
	for _, f := range files {
		f.Close() // workers send no descriptors
	}
	log := m.log.With("worker", w.pid, "generation", w.gen.id)
	switch msg.Type {
	case wire.TypeReady:
		if w.state == stateStarting {
			w.state = stateReady
			log.Debug("worker ready", "after", time.Since(w.started).Round(time.Millisecond))
		}
	case wire.TypeError:
		w.errMsg = msg.Error
		log.Error("worker failed", "error", msg.Error)
	case wire.TypeReopened:
		w.reopened = true
	case wire.TypeDraining:
		w.notAccepting = true
	case wire.TypeSample:
		m.onSample(w, msg.Sample)
	case wire.TypeHeartbeat:
		m.onHeartbeat(w, msg.Seq)
	default:
		log.Warn("unexpected message from worker", "type", msg.Type)
	}
}

func (m *Master) onWorkerExit(w *worker, waitErr error) {
	w.state = stateExited
	// Its final sample, if it sent one, was handled before this event.
	m.retireWorker(w)
	if w.killer != nil {
		w.killer.Stop()
	}
	g, s := w.gen, w.slot
	status := exitStatus(w.cmd.ProcessState, waitErr)
	log := m.log.With("worker", w.pid, "generation", g.id)
	switch {
	case w.expected || g.retiring:
		log.Debug("worker exited", "status", status)
		if g.gone() {
			m.generationGone(g)
		}
		return
	case !g.promoted:
		// A generation still starting: one worker that cannot start means
		// the generation cannot serve. The reload or start waiting for it
		// sees g.failed.
		reason := w.errMsg
		if reason == "" {
			reason = "worker exited before it was ready: " + status
		}
		if g.failed == "" {
			g.failed = reason
		}
		log.Error("worker exited before it was ready", "status", status)
		return
	}
	s.failures = nextFailures(s.failures, time.Since(w.started))
	delay := restartDelay(s.failures)
	args := []any{"status", status, "uptime", time.Since(w.started).Round(time.Millisecond), "restart_in", delay}
	if w.errMsg != "" {
		args = append(args, "error", w.errMsg)
	}
	log.Error("worker died unexpectedly", args...)
	m.countRestart()
	m.scheduleRestart(g, s, delay)
}

// scheduleRestart replaces the worker of slot s after delay.
func (m *Master) scheduleRestart(g *generation, s *slot, delay time.Duration) {
	if delay <= 0 {
		m.restart(g, s)
		return
	}
	s.timer = time.AfterFunc(delay, func() {
		m.events <- func() {
			s.timer = nil
			m.restart(g, s)
		}
	})
}

func (m *Master) restart(g *generation, s *slot) {
	if g.retiring || (s.w != nil && s.w.alive()) {
		return
	}
	s.restarts++
	w, err := m.startWorker(g, s)
	if err != nil {
		s.failures++
		delay := restartDelay(s.failures)
		m.log.Error("cannot replace worker", "generation", g.id, "error", err, "retry_in", delay)
		if delay == 0 {
			delay = firstDelay
		}
		m.scheduleRestart(g, s, delay)
		return
	}
	m.log.Info("worker replaced", "worker", w.pid, "generation", g.id, "restarts", s.restarts)
}

// exitStatus describes how a process ended: "exit status 1" or
// "signal: killed".
func exitStatus(ps *os.ProcessState, err error) string {
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("signal: %s", ws.Signal())
		}
		return ps.String()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.String()
	}
	if err != nil {
		return err.Error()
	}
	return "exited"
}

// drainGeneration asks every worker of g to stop accepting and finish by
// deadline, and kills those still there killGrace later.
func (m *Master) drainGeneration(g *generation, deadline time.Time) {
	g.retiring = true
	g.deadline = deadline
	g.stopTimers()
	for _, w := range g.workers() {
		m.drainWorker(w, deadline)
	}
	if g.gone() {
		m.generationGone(g)
	}
	m.publishAdmin()
}

func (m *Master) drainWorker(w *worker, deadline time.Time) {
	w.expected = true
	if w.state != stateStarting {
		w.state = stateDraining
	}
	if err := w.ctl.Send(wire.Message{Type: wire.TypeDrain, Deadline: deadline.UnixNano()}); err != nil {
		m.log.Warn("cannot ask worker to drain, terminating it", "worker", w.pid, "error", err)
		w.cmd.Process.Signal(syscall.SIGTERM)
	}
	m.killLater(w, time.Until(deadline)+killGrace)
}

// drainAckTimeout bounds the wait for retiring workers to confirm that
// they stopped accepting.
const drainAckTimeout = time.Second

// awaitNotAccepting waits until no worker of gs accepts any more (it
// confirmed its drain, or exited), so that once a reload or an upgrade is
// reported done, every new connection reaches the new workers.
func (m *Master) awaitNotAccepting(gs ...*generation) {
	m.wait(drainAckTimeout, func() bool {
		for _, g := range gs {
			for _, w := range g.workers() {
				if !w.notAccepting {
					return false
				}
			}
		}
		return true
	})
}

// stopGeneration is a fast stop: workers close everything at once.
func (m *Master) stopGeneration(g *generation) {
	g.retiring = true
	g.stopTimers()
	for _, w := range g.workers() {
		w.expected = true
		w.state = stateStopping
		if err := w.ctl.Send(wire.Message{Type: wire.TypeStop}); err != nil {
			w.cmd.Process.Signal(syscall.SIGKILL)
		}
		m.killLater(w, killGrace)
	}
	if g.gone() {
		m.generationGone(g)
	}
	m.publishAdmin()
}

// killGeneration kills a generation that failed to start.
func (m *Master) killGeneration(g *generation) {
	g.retiring = true
	g.stopTimers()
	g.signalAll(syscall.SIGKILL)
	if g.gone() {
		m.generationGone(g)
	}
}

func (m *Master) killLater(w *worker, after time.Duration) {
	if w.killer != nil {
		w.killer.Stop()
	}
	w.killer = time.AfterFunc(after, func() {
		m.events <- func() {
			if w.alive() {
				m.log.Warn("worker did not exit in time, killing it", "worker", w.pid, "generation", w.gen.id)
				w.cmd.Process.Signal(syscall.SIGKILL)
			}
		}
	})
}

// generationGone forgets a generation whose workers have all exited and
// closes the listeners no remaining generation uses.
func (m *Master) generationGone(g *generation) {
	for i, x := range m.gens {
		if x == g {
			m.gens = append(m.gens[:i], m.gens[i+1:]...)
			break
		}
	}
	if g.promoted {
		m.log.Info("generation gone", "generation", g.id)
	}
	if g.logs != m.logs {
		g.logs.close()
	}
	if m.stopping {
		return // everything is closed at exit
	}
	m.collectListeners()
}

// liveWorkers counts workers alive in every generation.
func (m *Master) liveWorkers() int {
	n := 0
	for _, g := range m.gens {
		n += len(g.workers())
	}
	return n
}
