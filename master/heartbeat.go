package master

import (
	"fmt"
	"syscall"
	"time"

	"github.com/pingora-go/pingora/worker/wire"
)

// Heartbeats. Every beat (a quarter of worker_heartbeat_timeout) the
// master sends each serving worker a heartbeat over its control socket,
// which the worker answers from its control loop. A heartbeat still
// unanswered at the next beat is missed: the worker shows as
// "not-responding" in `-s status` and the systemd watchdog is no longer
// petted (watchdog.go). One unanswered for worker_heartbeat_timeout gets
// the worker killed (SIGKILL: a stopped or wedged process would not act on
// anything else) and replaced like a crashed one. A replacement, in turn,
// must be ready within reload_timeout or it is killed and retried with the
// crash backoff. A worker that is starting as part of a reload or start is
// not the heartbeat's business: the reload's own timeout covers it, and a
// draining worker is killed at its deadline anyway.

// beatsPerTimeout is how many heartbeats fit in worker_heartbeat_timeout.
const beatsPerTimeout = 4

// heartbeatSendTimeout bounds the master's wait to send a heartbeat to a
// worker that does not read: its loop must not hang on one worker.
const heartbeatSendTimeout = 100 * time.Millisecond

// superviseWorkers starts the heartbeats and, under a systemd watchdog,
// the petting. It runs once, when the master serves.
func (m *Master) superviseWorkers() {
	m.scheduleHeartbeat()
	m.startWatchdog()
}

func (m *Master) scheduleHeartbeat() {
	time.AfterFunc(m.cfg.WorkerHeartbeatTimeout/beatsPerTimeout, func() {
		m.events <- m.heartbeatTick
	})
}

// heartbeatTick checks and pings every live worker, then schedules the
// next tick (none once the master is stopping).
func (m *Master) heartbeatTick() {
	if m.stopping {
		return
	}
	now := time.Now()
	for _, g := range m.gens {
		for _, w := range g.workers() {
			if w.killedHung {
				continue
			}
			switch w.state {
			case stateStarting:
				if g.promoted && now.Sub(w.started) >= g.cfg.ReloadTimeout {
					m.killUnresponsive(w, fmt.Sprintf("replacement not ready within reload_timeout (%s)", g.cfg.ReloadTimeout))
				}
			case stateReady:
				m.beat(w, now)
			}
		}
	}
	m.scheduleHeartbeat()
}

// beat sends w a heartbeat, or judges the one it has not answered.
func (m *Master) beat(w *worker, now time.Time) {
	if !w.beatSent.IsZero() {
		waited := now.Sub(w.beatSent)
		if timeout := w.gen.cfg.WorkerHeartbeatTimeout; waited >= timeout {
			m.killUnresponsive(w, fmt.Sprintf("no answer to heartbeats for %s (worker_heartbeat_timeout %s)",
				waited.Round(time.Millisecond), timeout))
			return
		}
		if !w.missed {
			w.missed = true
			m.log.Warn("worker missed a heartbeat", "worker", w.pid, "generation", w.gen.id,
				"waited", waited.Round(time.Millisecond))
		}
		return
	}
	w.beatSeq++
	w.beatSent = now
	// A worker whose socket is full does not read: the heartbeat stays
	// outstanding and the worker is judged by the timeout like any other.
	if err := w.ctl.SendTimeout(wire.Message{Type: wire.TypeHeartbeat, Seq: w.beatSeq}, heartbeatSendTimeout); err != nil {
		m.log.Debug("cannot send a heartbeat", "worker", w.pid, "error", err)
	}
}

// onHeartbeat takes a worker's answer.
func (m *Master) onHeartbeat(w *worker, seq uint64) {
	if w.beatSent.IsZero() || seq != w.beatSeq {
		return // an answer to a heartbeat already judged
	}
	w.beatSent = time.Time{}
	if w.missed {
		w.missed = false
		m.log.Info("worker answers heartbeats again", "worker", w.pid, "generation", w.gen.id)
	}
}

// killUnresponsive kills a worker that stopped answering or never became
// ready. Its exit is then handled as a crash: replaced in its slot with
// the crash backoff, or, in a generation still starting, the reason the
// generation failed.
func (m *Master) killUnresponsive(w *worker, reason string) {
	m.log.Error("worker not responding, killing it", "worker", w.pid, "generation", w.gen.id, "reason", reason)
	w.errMsg = reason
	w.killedHung = true
	w.cmd.Process.Signal(syscall.SIGKILL)
}

// workersResponding reports whether the master's workers are well, as the
// systemd watchdog sees it: none has missed a heartbeat, and the serving
// generation has at least one ready worker.
func (m *Master) workersResponding() bool {
	if m.gen == nil {
		return false
	}
	serving := false
	for _, g := range m.gens {
		for _, w := range g.workers() {
			if w.missed {
				return false
			}
			if g == m.gen && w.state == stateReady {
				serving = true
			}
		}
	}
	return serving
}
