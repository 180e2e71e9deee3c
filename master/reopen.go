package master

import (
	"fmt"
	"os"
	"time"

	"github.com/pingora-go/pingora/worker/wire"
)

// reopenTimeout bounds the wait for workers to confirm a reopen.
const reopenTimeout = 5 * time.Second

// reopen opens the error and access logs again (after logrotate moved
// them), switches the master's own logger, and hands the new descriptors to
// every worker over its control socket (SCM_RIGHTS): workers are
// unprivileged and could not open the files themselves. The old files are
// closed once every worker confirmed, so after a reopen completes no line
// goes to the old files.
func (m *Master) reopen() error {
	old, err := m.logs.reopen()
	if err != nil {
		return err
	}
	m.logOut.Set(m.logs.errorLog())

	var files []*os.File
	var names []string
	if m.logs.errFile != nil {
		files, names = append(files, m.logs.errFile), append(names, wire.FileErrorLog)
	}
	if m.logs.accFile != nil {
		files, names = append(files, m.logs.accFile), append(names, wire.FileAccessLog)
	}
	var sent []*worker
	if len(files) > 0 {
		for _, g := range m.gens {
			if g.logs != m.logs {
				continue
			}
			for _, w := range g.workers() {
				w.reopened = false
				if err := w.ctl.Send(wire.Message{Type: wire.TypeReopen, Files: names}, files...); err != nil {
					m.log.Warn("cannot send reopened logs to worker", "worker", w.pid, "error", err)
					continue
				}
				sent = append(sent, w)
			}
		}
	}
	ok := m.wait(reopenTimeout, func() bool {
		for _, w := range sent {
			if w.alive() && !w.reopened {
				return false
			}
		}
		return true
	})
	for _, f := range old {
		f.Close()
	}
	if !ok {
		return fmt.Errorf("reopen: some workers did not confirm within %s", reopenTimeout)
	}
	m.log.Info("log files reopened", "workers", len(sent))
	return nil
}
