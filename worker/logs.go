package worker

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/proxy"
	"github.com/pingora-go/pingora/worker/wire"
	"golang.org/x/sys/unix"
)

// newLogger logs to fd 2, which the master made the error log. Lines carry
// the worker's pid and generation. A reopen replaces fd 2 itself (dup3), so
// this logger, and a panic's stack trace, follow the new file.
func newLogger(hs *wire.Handshake) hclog.Logger {
	lv := hclog.LevelFromString(hs.Config.Log.Level)
	if lv == hclog.NoLevel {
		lv = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "worker",
		Level:      lv,
		Output:     os.Stderr,
		JSONFormat: hs.Config.Log.Format == "json",
	}).With("pid", os.Getpid(), "generation", hs.Generation)
}

// reopen switches to the log descriptors the master opened after
// logrotate moved the files, then confirms. The access log is flushed to
// the old file before the switch; the old descriptor is closed after.
func (w *worker) reopen(p *proxy.Proxy, m wire.Message, files []*os.File) {
	for i, f := range files {
		name := ""
		if i < len(m.Files) {
			name = m.Files[i]
		}
		switch name {
		case wire.FileErrorLog:
			if err := unix.Dup3(int(f.Fd()), 2, 0); err != nil {
				w.log.Error("reopen error log", "error", err)
			}
			f.Close()
		case wire.FileAccessLog:
			p.SetAccessLog(f)
			w.closeAccessLog()
			w.acc = f
		default:
			f.Close()
		}
	}
	w.log.Info("log files reopened")
	w.conn.Send(wire.Message{Type: wire.TypeReopened})
}
