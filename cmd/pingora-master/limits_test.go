package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// openFilesLimits reads the "Max open files" soft and hard limits of pid
// from /proc/<pid>/limits.
func openFilesLimits(t *testing.T, pid int) (soft, hard string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatalf("limits of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return f[0], f[1]
			}
		}
	}
	t.Fatalf("no \"Max open files\" line in /proc/%d/limits:\n%s", pid, b)
	return "", ""
}

// TestNoFileReachesWorkers: `limits { nofile }` is the open files soft
// limit of the workers, which hold the connections, not only of the
// master (a Go program raises its own soft limit to the hard one at
// start, so inheriting it across exec is not enough).
func TestNoFileReachesWorkers(t *testing.T) {
	var hard syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &hard); err != nil {
		t.Fatal(err)
	}
	// Below the hard limit, so that the Go runtime's raise would show.
	want := min(hard.Max-1, 4321)
	if want < 1024 {
		t.Skipf("hard open files limit %d is too low to tell a configured soft limit from it", hard.Max)
	}
	in := newInstance(t, 2)
	p := in.Params
	p.Extra = fmt.Sprintf("limits { nofile = %d }\n", want)
	in.WriteConfig(p)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, startTimeout)
	wantText := strconv.FormatUint(want, 10)
	if soft, _ := openFilesLimits(t, master); soft != wantText {
		t.Errorf("master %d: open files soft limit %s, want %s", master, soft, wantText)
	}
	for _, w := range workers {
		if soft, hardText := openFilesLimits(t, w); soft != wantText {
			t.Errorf("worker %d: open files soft limit %s (hard %s), want the configured %s", w, soft, hardText, wantText)
		}
	}
}
