package master

import (
	"os"
	"os/signal"
	"syscall"
)

// watchSignals turns signals into commands for the loop (or, for SIGCHLD,
// an orphan sweep when PID 1). SIGPIPE is caught and dropped rather than
// ignored: an ignored disposition would be inherited by workers across
// exec, a caught one is reset to the default.
func (m *Master) watchSignals() {
	ch := make(chan os.Signal, 32)
	sigs := []os.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2,
		syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGINT, syscall.SIGPIPE}
	if os.Getpid() == 1 {
		sigs = append(sigs, syscall.SIGCHLD)
	}
	signal.Notify(ch, sigs...)
	go func() {
		for sig := range ch {
			var kind string
			switch sig {
			case syscall.SIGHUP:
				kind = cmdReload
			case syscall.SIGUSR1:
				kind = cmdReopen
			case syscall.SIGUSR2:
				kind = cmdUpgrade
			case syscall.SIGTERM, syscall.SIGQUIT:
				kind = cmdQuit
			case syscall.SIGINT:
				kind = cmdStop
			case syscall.SIGCHLD:
				m.events <- m.reapOrphans
				continue
			default:
				continue
			}
			m.cmds <- &command{kind: kind, source: signalName(sig)}
		}
	}()
}

func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGUSR2:
		return "SIGUSR2"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return sig.String()
}
