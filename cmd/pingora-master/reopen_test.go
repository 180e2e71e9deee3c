package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReopenLogs does what logrotate does without copytruncate: move the
// error log and the access log away, then ask for a reopen (SIGUSR1, then
// `-s reopen`). Once the reopen has completed, new lines from the master
// and from each worker land in new files at the old paths, and none in the
// moved files.
func TestReopenLogs(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)
	// Each worker must have written both logs before the move.
	in.waitWorkerLines(workers, 0, 0)

	for round, how := range []string{"SIGUSR1", "-s reopen"} {
		movedErr := fmt.Sprintf("%s.%d", in.ErrLog, round+1)
		movedAcc := fmt.Sprintf("%s.%d", in.AccessLog, round+1)
		mustRename(t, in.ErrLog, movedErr)
		mustRename(t, in.AccessLog, movedAcc)

		var errSize, accSize int
		if how == "SIGUSR1" {
			in.Signal(syscall.SIGUSR1)
			// Completion, as seen from outside: every worker has written to
			// the new files.
			in.waitWorkerLines(workers, 0, 0)
			errSize, accSize = fileSize(t, movedErr), fileSize(t, movedAcc)
		} else {
			// -s reopen returns once master and workers write to the new
			// files: from then on the moved ones must not grow.
			r := in.Ctl("reopen")
			if r.Code != 0 || !strings.Contains(r.Stdout, "log files reopened") {
				t.Fatalf("-s reopen: want exit 0 and \"log files reopened\"\n%s", r)
			}
			errSize, accSize = fileSize(t, movedErr), fileSize(t, movedAcc)
			in.waitWorkerLines(workers, 0, 0)
		}

		// More traffic and a master action after completion: all of it in
		// the new files.
		in.SetGen(round + 1)
		fromErr, fromAcc := len(readText(in.ErrLog)), len(readText(in.AccessLog))
		if r := in.Ctl("reload"); r.Code != 0 {
			t.Fatalf("-s reload: want exit 0\n%s", r)
		}
		in.WaitVanished("old workers", workers, drainTimeout)
		workers = in.WaitWorkers(master, 2, workers, 5*time.Second)
		in.waitWorkerLines(workers, fromErr, fromAcc)
		if !masterSaid(after(readText(in.ErrLog), fromErr), master, "reloading") {
			t.Errorf("%s: the master's \"reloading\" line (pid=%d) is not in the new error log:\n%s", how, master, tail(in.ErrLog, 20))
		}
		if n := fileSize(t, movedErr); n != errSize {
			t.Errorf("%s: the moved error log grew from %d to %d bytes after the reopen completed:\n%s",
				how, errSize, n, after(readText(movedErr), errSize))
		}
		if n := fileSize(t, movedAcc); n != accSize {
			t.Errorf("%s: the moved access log grew from %d to %d bytes after the reopen completed:\n%s",
				how, accSize, n, after(readText(movedAcc), accSize))
		}
	}
}

// waitWorkerLines sends traffic until each worker has written an error line
// (a 502 from the dead upstream, logged with the worker's pid) to the error
// log past byte fromErr, and the access log has a line for those requests
// past byte fromAcc.
func (in *instance) waitWorkerLines(workers []int, fromErr, fromAcc int) {
	in.tb.Helper()
	waitFor(in.tb, 10*time.Second, fmt.Sprintf("lines of workers %v in %s and %s", workers, in.ErrLog, in.AccessLog), func() (bool, string) {
		for i := 0; i < 4; i++ {
			r, err := fetch(in.Addr, http.MethodGet, "/dead/x", nil)
			if err != nil {
				return false, err.Error()
			}
			if r.Status != http.StatusBadGateway {
				return false, "/dead/x answered " + r.describe() + ", want 502"
			}
		}
		fresh := after(readText(in.ErrLog), fromErr)
		var missing []int
		for _, w := range workers {
			if !linesWith(fresh, strconv.Itoa(w)) {
				missing = append(missing, w)
			}
		}
		if len(missing) > 0 {
			return false, fmt.Sprintf("no new line with pid of workers %v in %s", missing, in.ErrLog)
		}
		if !strings.Contains(after(readText(in.AccessLog), fromAcc), "/dead/x") {
			return false, "no new /dead/x line in " + in.AccessLog
		}
		return true, ""
	})
}

// linesWith reports whether some line of text carries pid as a value.
func linesWith(text, pid string) bool {
	for _, l := range strings.Split(text, "\n") {
		if containsField(l, pid) {
			return true
		}
	}
	return false
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(st.Size())
}

// masterSaid reports whether some line of text carries the master's pid and
// says what.
func masterSaid(text string, master int, what string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, what) && containsField(l, strconv.Itoa(master)) {
			return true
		}
	}
	return false
}
