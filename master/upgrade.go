package master

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fileUpgradeReport names the pipe, handed to the new master through
// tableflip, on which a new master that fails to start writes why. Without
// it the old master would only learn "exit status 1".
const fileUpgradeReport = "pingora-upgrade-report"

// envNextGeneration carries the generation counter to the new master, so
// generation numbers keep growing across upgrades.
const envNextGeneration = "PINGORA_NEXT_GENERATION"

// upgrade starts the binary at the same path as a new master through
// tableflip. The new master inherits the listeners and the instance lock,
// starts its own workers, writes the PID file and reports ready; only then
// does this return with its pid. tableflip allows one upgrade at a time and
// kills a new master not ready within upgrade_timeout; either failure
// leaves this master serving as before.
func (m *Master) upgrade() (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("report pipe: %w", err)
	}
	defer r.Close()
	err = m.upg.AddFile(fileUpgradeReport, w)
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("report pipe: %w", err)
	}
	os.Setenv(envNextGeneration, strconv.Itoa(m.nextGen+1))

	m.upgrading = true
	defer func() { m.upgrading = false }()
	var upgErr error
	finished := false
	go func() {
		err := m.upg.Upgrade()
		m.events <- func() { upgErr, finished = err, true }
	}()
	aborted := false
	for !finished {
		m.wait(0, func() bool { return finished || (!aborted && m.stopPending()) })
		if finished || !(m.interrupted || m.stopPending()) {
			continue
		}
		if !aborted {
			// A stop outranks the upgrade: tableflip kills the new master
			// (its workers follow), and the stop runs next. Letting the
			// upgrade finish first would leave the new master serving.
			m.log.Warn("stop requested during a binary upgrade: aborting the upgrade")
			m.upg.Stop()
			aborted = true
		}
		// The stop waits in pending; the flag would only make wait
		// return at once while tableflip finishes the abort.
		m.interrupted = false
	}
	if upgErr != nil {
		m.reclaim()
		if reason := readReport(r); reason != "" {
			return 0, fmt.Errorf("%w: %s", upgErr, reason)
		}
		return 0, upgErr
	}
	pid, err := ReadPIDFile(m.cfg.PIDFile)
	if err != nil {
		pid = 0
	}
	m.log.Info("new master serving, draining this one", "new_master", pid)
	return pid, nil
}

// forwardToSuccessor hands a command that reached this master after a
// new master took over (or while the upgrade completed) to the new master
// as its signal: the operator means the service, and this master is
// leaving. handled is false for commands it does not forward.
func (m *Master) forwardToSuccessor(c *command) (handled bool) {
	sig, ok := map[string]syscall.Signal{cmdReload: syscall.SIGHUP, cmdQuit: syscall.SIGTERM, cmdStop: syscall.SIGINT}[c.kind]
	if !ok {
		return false
	}
	if m.successor <= 0 {
		m.log.Error("command refused: a new master took over and its pid is unknown", "command", c.kind, "requested_by", c.source)
		c.respond(Response{Error: c.kind + " refused: this master is handing over to a new one whose pid is unknown; send it to the new master"})
		return true
	}
	if err := syscall.Kill(m.successor, sig); err != nil {
		m.log.Error("command refused: cannot forward it to the new master", "command", c.kind, "new_master", m.successor, "error", err)
		c.respond(Response{Error: fmt.Sprintf("%s refused: forwarding to the new master %d: %v", c.kind, m.successor, err)})
		return true
	}
	m.log.Info("command forwarded to the new master", "command", c.kind, "requested_by", c.source, "new_master", m.successor, "signal", signalName(sig))
	c.respond(Response{OK: true, Message: fmt.Sprintf("%s forwarded to the new master (pid %d) as %s", c.kind, m.successor, signalName(sig))})
	return true
}

// reclaim takes back what a new master that failed may have taken over
// before it failed and removed on its way out: the control socket (so
// `-s status` and `-s reload` reach this master again) and the PID file.
func (m *Master) reclaim() {
	if m.ctl != nil && !m.ctl.owned() {
		ctl, err := listenControl(m.cfg.ControlSocket, m.cmds, m.log)
		if err != nil {
			m.log.Error("control socket lost to the failed upgrade and cannot be bound again", "error", err)
		} else {
			m.ctl.ln.Close()
			m.ctl = ctl
			m.log.Warn("control socket taken back from the failed new master", "path", ctl.path)
		}
	}
	if pid, err := ReadPIDFile(m.cfg.PIDFile); err != nil || pid != os.Getpid() {
		if err := WritePIDFile(m.cfg.PIDFile, os.Getpid()); err != nil {
			m.log.Error("cannot write the pid file again after the failed upgrade", "error", err)
		} else {
			m.log.Warn("pid file written again after the failed upgrade", "path", m.cfg.PIDFile)
		}
	}
}

// readReport reads what a failed new master wrote, without blocking on a
// pipe some process may still hold open.
func readReport(r *os.File) string {
	r.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && len(b) == 0 {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func upgradeMessage(pid int) string {
	if pid > 0 {
		return fmt.Sprintf("upgraded: new master pid %d serving", pid)
	}
	return "upgraded: new master serving"
}
