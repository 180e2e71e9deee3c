package master

import (
	"os"
	"syscall"
	"time"
)

// shutdown stops the master. graceful: workers drain until
// shutdown_timeout (a fast stop arriving meanwhile cuts it short); fast:
// workers close at once. handover: a new master took over after a binary
// upgrade, so the PID file, control socket and lock are its now and are
// left alone. c, when set, is answered last, just before exit, so that
// `-s quit` returns once the master is gone.
func (m *Master) shutdown(graceful, handover bool, c *command) int {
	m.stopping = true
	if !handover {
		m.notify.stopping()
	}
	if m.ctl != nil {
		m.ctl.close()
	}
	deadline := time.Now().Add(m.cfg.ShutdownTimeout)
	for _, g := range append([]*generation(nil), m.gens...) {
		switch {
		case !graceful:
			m.stopGeneration(g)
		case !g.retiring || g.deadline.After(deadline):
			m.drainGeneration(g, deadline)
		}
	}
	for m.liveWorkers() > 0 {
		limit := time.Until(deadline) + killGrace + time.Second
		if !graceful {
			limit = killGrace + time.Second
		}
		ok := m.wait(limit, func() bool { return m.liveWorkers() == 0 })
		if ok {
			break
		}
		if m.interrupted && graceful {
			m.log.Info("fast stop requested during graceful stop")
			graceful = false
			m.interrupted = false
			for _, g := range append([]*generation(nil), m.gens...) {
				m.stopGeneration(g)
			}
			continue
		}
		m.log.Warn("workers still running, killing them", "count", m.liveWorkers())
		for _, g := range m.gens {
			g.signalAll(syscall.SIGKILL)
		}
		m.interrupted = false
		m.wait(time.Second, func() bool { return m.liveWorkers() == 0 })
		break
	}
	m.refusePending()
	m.stopAdmin()
	m.lns.closeAll()
	if !handover {
		if err := RemovePIDFile(m.cfg.PIDFile, os.Getpid()); err != nil {
			m.log.Warn("cannot remove pid file", "error", err)
		}
		m.upg.Stop()
	}
	m.log.Info("stopped")
	m.lock.Release()
	if c != nil {
		c.respond(Response{OK: true, Message: "stopped"})
	}
	if m.ctl != nil {
		m.ctl.waitClients(time.Second)
	}
	return 0
}

// refusePending answers commands that will never run.
func (m *Master) refusePending() {
	for _, c := range m.pending {
		m.log.Warn("command refused: the master is stopping", "command", c.kind, "requested_by", c.source)
		c.respond(Response{Error: "master is stopping"})
	}
	m.pending = nil
	for {
		select {
		case c := <-m.cmds:
			m.log.Warn("command refused: the master is stopping", "command", c.kind, "requested_by", c.source)
			c.respond(Response{Error: "master is stopping"})
		default:
			return
		}
	}
}
