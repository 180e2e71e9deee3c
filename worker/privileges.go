package worker

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/pingora-go/pingora/worker/wire"
	"golang.org/x/sys/unix"
)

// checkPrivileges refuses to serve unless the privilege drop really
// happened: not root, the configured uid/gid and only that group when the
// master dropped privileges, setuid(0) failing with EPERM (the sketch's
// test: a process that can become root again has dropped nothing), no
// effective capabilities, no_new_privs set (no setuid or file-capability
// binary can raise it again) and, when the master dropped privileges, an
// empty capability bounding set (no capability can ever be regained).
// The master sets no_new_privs and the bounding set on the thread that
// forks workers.
func checkPrivileges(hs *wire.Handshake) error {
	if hs.Unprivileged {
		if os.Getuid() == 0 || os.Geteuid() == 0 {
			return errors.New("refusing to serve as root: a user is configured")
		}
		if os.Getuid() != hs.UID || os.Getgid() != hs.GID {
			return fmt.Errorf("running as uid %d gid %d, expected uid %d gid %d", os.Getuid(), os.Getgid(), hs.UID, hs.GID)
		}
		groups, err := os.Getgroups()
		if err != nil {
			return fmt.Errorf("getgroups: %w", err)
		}
		for _, g := range groups {
			if g != hs.GID {
				return fmt.Errorf("unexpected supplementary group %d", g)
			}
		}
	}
	if err := unix.Setuid(0); err == nil {
		return errors.New("setuid(0) succeeded: privileges were not dropped")
	} else if os.Getuid() != 0 && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("setuid(0) failed with %v, expected EPERM", err)
	}
	st, err := readStatus()
	if err != nil {
		return err
	}
	if st.capEff != 0 && os.Getuid() != 0 {
		return fmt.Errorf("worker has effective capabilities %#x", st.capEff)
	}
	if !st.noNewPrivs {
		return errors.New("no_new_privs is not set: a setuid binary could give this worker privileges")
	}
	if hs.Unprivileged && st.capBnd != 0 {
		return fmt.Errorf("capability bounding set is %#x, not empty: the master did not drop it", st.capBnd)
	}
	return nil
}

// procStatus is what checkPrivileges reads from /proc/self/status.
type procStatus struct {
	capEff, capBnd uint64
	noNewPrivs     bool
}

// readStatus reads CapEff, CapBnd and NoNewPrivs from /proc/self/status.
// All three must be there: a kernel without them cannot be checked.
func readStatus() (procStatus, error) {
	var st procStatus
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return st, fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch key {
		case "CapEff", "CapBnd":
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return st, fmt.Errorf("parse %s %q: %w", key, v, err)
			}
			if key == "CapEff" {
				st.capEff = n
			} else {
				st.capBnd = n
			}
			found++
		case "NoNewPrivs":
			st.noNewPrivs = v == "1"
			found++
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("read /proc/self/status: %w", err)
	}
	if found != 3 {
		return st, errors.New("CapEff, CapBnd or NoNewPrivs missing from /proc/self/status")
	}
	return st, nil
}
