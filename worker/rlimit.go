package worker

import (
	"fmt"
	"syscall"
)

// setNoFile sets the open files soft limit the master passed in the
// handshake (0: leave it). The Go runtime raised it to the hard limit when
// this process started; `limits { nofile }` is meant for the workers, which
// hold the connections. A soft limit may be lowered, or raised up to the
// hard limit, without privileges.
func setNoFile(want uint64) error {
	if want == 0 {
		return nil
	}
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err != nil {
		return fmt.Errorf("getrlimit nofile: %w", err)
	}
	next := syscall.Rlimit{Cur: min(want, cur.Max), Max: cur.Max}
	if next.Cur == cur.Cur {
		return nil
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		return fmt.Errorf("setrlimit nofile %d: %w", next.Cur, err)
	}
	return nil
}
