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
// test: a process that can become root again has dropped nothing), and no
// effective capabilities.
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
	capEff, err := effectiveCaps()
	if err != nil {
		return err
	}
	if capEff != 0 && os.Getuid() != 0 {
		return fmt.Errorf("worker has effective capabilities %#x", capEff)
	}
	return nil
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("parse CapEff %q: %w", v, err)
			}
			return n, nil
		}
	}
	return 0, errors.New("CapEff not found in /proc/self/status")
}
