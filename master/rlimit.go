package master

import (
	"fmt"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/config"
)

// setLimits applies the `limits` block to the master; workers inherit the
// limits across exec, and the NOFILE soft limit through the handshake as
// well (see workerNoFile). syscall.Setrlimit (not x/sys) is used on
// purpose: it tells the Go runtime not to restore the original NOFILE soft
// limit in children. A non-root master cannot raise a hard limit: it raises the soft
// limit as far as the hard one allows and warns, rather than refusing to
// start a development instance.
func setLimits(l config.Limits, log hclog.Logger) error {
	if l.NoFile > 0 {
		if err := setLimit(syscall.RLIMIT_NOFILE, "nofile", l.NoFile, log); err != nil {
			return err
		}
	}
	if l.Core >= 0 {
		if err := setLimit(syscall.RLIMIT_CORE, "core", uint64(l.Core), log); err != nil {
			return err
		}
	}
	return nil
}

func setLimit(resource int, name string, want uint64, log hclog.Logger) error {
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(resource, &cur); err != nil {
		return fmt.Errorf("getrlimit %s: %w", name, err)
	}
	// Never lower the hard limit below what we want, and raise it only when
	// we want more than it allows (root only).
	next := syscall.Rlimit{Cur: want, Max: cur.Max}
	if want > cur.Max {
		next.Max = want
	}
	err := syscall.Setrlimit(resource, &next)
	if err == nil {
		log.Debug("resource limit set", "limit", name, "value", want)
		return nil
	}
	if want <= cur.Max {
		return fmt.Errorf("setrlimit %s %d: %w", name, want, err)
	}
	// Not allowed to raise the hard limit: go as far as it allows.
	next = syscall.Rlimit{Cur: cur.Max, Max: cur.Max}
	if err2 := syscall.Setrlimit(resource, &next); err2 != nil {
		return fmt.Errorf("setrlimit %s %d: %w", name, cur.Max, err2)
	}
	log.Warn("cannot raise resource limit, using the hard limit", "limit", name, "wanted", want, "set", cur.Max, "error", err)
	return nil
}

// workerNoFile is the NOFILE soft limit a worker is to set on itself: the
// master's own, as setLimits left it (the configured value, or the hard
// limit when that is lower). A worker is a Go program, and the Go runtime
// raises a program's soft limit to its hard limit at start, so what the
// worker inherits across exec is not what it runs with. 0 (nofile = 0,
// leave as inherited, or the limit unreadable): the worker leaves its own
// alone.
func workerNoFile(l config.Limits) uint64 {
	if l.NoFile == 0 {
		return 0
	}
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err != nil {
		return 0
	}
	return cur.Cur
}
