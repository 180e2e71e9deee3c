package master

import (
	"time"
)

// Command kinds, shared by signals and the control socket.
const (
	cmdReload  = "reload"
	cmdUpgrade = "upgrade"
	cmdReopen  = "reopen"
	cmdStop    = "stop" // fast
	cmdQuit    = "quit" // graceful
	cmdStatus  = "status"
)

// command is one request for the loop. reply is nil for signals.
type command struct {
	kind   string
	source string // "SIGHUP", "control socket"
	reply  chan<- Response
	// merged are requests of the same kind that arrived while this one
	// waited: they share its outcome (a burst of reloads is one reload).
	merged []*command
}

func (c *command) respond(r Response) {
	if c.reply != nil {
		c.reply <- r
	}
	for _, o := range c.merged {
		o.respond(r)
	}
}

// loop runs commands one at a time until the master stops, and returns the
// exit code.
func (m *Master) loop() int {
	for {
		var c *command
		if len(m.pending) > 0 {
			c, m.pending = m.pending[0], m.pending[1:]
		} else {
			select {
			case fn := <-m.events:
				fn()
				m.publishAdmin()
				continue
			case c = <-m.cmds:
			}
		}
		if code, done := m.run(c); done {
			return code
		}
		m.publishAdmin()
	}
}

// run executes one command. done is set when the master is to exit.
func (m *Master) run(c *command) (code int, done bool) {
	m.interrupted = false
	switch c.kind {
	case cmdStatus:
		c.respond(Response{OK: true, Status: m.status()})
	case cmdReload:
		m.log.Info("reloading", "requested_by", c.source)
		err := m.reload()
		m.countReload(err == nil)
		if err != nil {
			m.log.Error("reload failed, still serving the previous configuration", "generation", m.gen.id, "error", err)
			c.respond(Response{Error: "reload failed: " + err.Error()})
		} else {
			c.respond(Response{OK: true, Message: reloadMessage(m.gen)})
		}
	case cmdReopen:
		m.log.Info("reopening log files", "requested_by", c.source)
		if err := m.reopen(); err != nil {
			m.log.Error("reopen failed", "error", err)
			c.respond(Response{Error: err.Error()})
		} else {
			c.respond(Response{OK: true, Message: "log files reopened"})
		}
	case cmdUpgrade:
		m.log.Info("binary upgrade", "requested_by", c.source)
		pid, err := m.upgrade()
		if err != nil {
			m.log.Error("binary upgrade failed, still serving", "error", err)
			m.countUpgrade(false)
			c.respond(Response{Error: "upgrade failed: " + err.Error()})
			return 0, false
		}
		// Reloads and stops that arrived during the upgrade are for the
		// service, which the new master now is.
		m.successor = pid
		var keep []*command
		for _, p := range m.pending {
			if !m.forwardToSuccessor(p) {
				keep = append(keep, p)
			}
		}
		m.pending = keep
		// The new master serves the admin address on the same socket (and
		// counts the upgrade): scrapes from now on must reach it only.
		m.stopAdmin()
		// Drain now, and answer once the old workers stopped accepting.
		deadline := time.Now().Add(m.cfg.ShutdownTimeout)
		gens := append([]*generation(nil), m.gens...)
		for _, g := range gens {
			if !g.retiring {
				m.drainGeneration(g, deadline)
			}
		}
		m.awaitNotAccepting(gens...)
		c.respond(Response{OK: true, Message: upgradeMessage(pid)})
		return m.shutdown(true, true, nil), true
	case cmdQuit:
		m.log.Info("graceful stop", "requested_by", c.source)
		return m.shutdown(true, false, c), true
	case cmdStop:
		m.log.Info("fast stop", "requested_by", c.source)
		return m.shutdown(false, false, c), true
	default:
		c.respond(Response{Error: "unknown command " + c.kind})
	}
	return 0, false
}

// wait keeps supervising (worker messages, exits, restarts) until done()
// holds, timeout passes (0: no timeout) or a fast stop arrives. Commands
// other than status are queued and run afterwards, in order: a reload
// asked for during a reload runs after it.
func (m *Master) wait(timeout time.Duration, done func() bool) bool {
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	for !done() {
		if m.interrupted {
			return false
		}
		select {
		case fn := <-m.events:
			fn()
			m.publishAdmin()
		case c := <-m.cmds:
			m.deferCommand(c)
		case <-timer:
			return done()
		}
	}
	return true
}

// stopPending reports whether a stop (graceful or fast) waits to run.
func (m *Master) stopPending() bool {
	for _, p := range m.pending {
		if p.kind == cmdQuit || p.kind == cmdStop {
			return true
		}
	}
	return false
}

func (m *Master) deferCommand(c *command) {
	if m.successor != 0 && m.forwardToSuccessor(c) {
		if c.kind == cmdStop {
			// This master's own drain is cut short as well.
			m.interrupted = true
		}
		return
	}
	switch c.kind {
	case cmdStatus:
		c.respond(Response{OK: true, Status: m.status()})
	case cmdStop:
		// A fast stop does not wait for the operation in progress.
		m.interrupted = true
		m.pending = append([]*command{c}, m.pending...)
	case cmdReload:
		// One pending reload reads the config as it is when it runs, so
		// it serves every reload asked for before then.
		for _, p := range m.pending {
			if p.kind == cmdReload {
				p.merged = append(p.merged, c)
				m.log.Info("reload already pending, merged with it", "requested_by", c.source)
				return
			}
		}
		m.pending = append(m.pending, c)
	default:
		m.pending = append(m.pending, c)
	}
}
