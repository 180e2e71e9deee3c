package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWorkersAreHardened looks at each worker from outside, as an
// operator (or an attacker holding the worker's uid) would:
//   - /proc/<pid>/environ holds only TZ, what the config's env lists and
//     the worker marker: none of root's environment (HOME, secrets);
//   - /proc/<pid>/status: an empty capability bounding set and
//     NoNewPrivs 1, while the master keeps its own bounding set;
//   - the worker is not dumpable: its /proc files belong to root, and
//     another process of the worker's uid can read neither its environment
//     nor its memory (where the config lives).
func TestWorkersAreHardened(t *testing.T) {
	in := newInstance(t, 1)
	in.Env = []string{"TZ=UTC", "KEEP_ME=kept", "SECRET_TOKEN=hunter2", "HOME=/root"}
	p := in.Params
	p.Extra = `env = ["KEEP_ME", "SET_ME=set", "UNSET_IN_MASTER"]`
	in.WriteConfig(p)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 1, nil, 5*time.Second)

	for _, w := range workers {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", w))
		if err != nil {
			t.Fatalf("worker %d: %v", w, err)
		}
		var env []string
		for _, kv := range bytes.Split(bytes.TrimSuffix(raw, []byte{0}), []byte{0}) {
			env = append(env, string(kv))
		}
		slices.Sort(env)
		want := []string{"KEEP_ME=kept", "PINGORA_WORKER=1", "SET_ME=set", "TZ=UTC"}
		if !slices.Equal(env, want) {
			t.Errorf("worker %d: environment %q, want exactly %q", w, env, want)
		}

		st, ok := readProc(w)
		if !ok {
			t.Fatalf("worker %d vanished", w)
		}
		if st.CapBnd != 0 || st.NoNewPrivs != "1" {
			t.Errorf("worker %d: CapBnd %016x NoNewPrivs %s, want 0000000000000000 and 1", w, st.CapBnd, st.NoNewPrivs)
		}

		for _, f := range []string{"environ", "mem", "status"} {
			var fi syscall.Stat_t
			if err := syscall.Stat(fmt.Sprintf("/proc/%d/%s", w, f), &fi); err != nil {
				t.Fatal(err)
			}
			if fi.Uid != 0 {
				t.Errorf("worker %d: /proc/%d/%s belongs to uid %d, want root (the worker not dumpable)", w, w, f, fi.Uid)
			}
		}
		pid := strconv.Itoa(w)
		probe, out := asWorkerUser(t, in, `for f in environ mem; do
  if (: <"/proc/$1/$f") 2>/dev/null; then echo "$f readable"; else echo "$f refused"; fi
done`, pid)
		var lines []string
		for {
			line, err := out.ReadString('\n')
			if line != "" {
				lines = append(lines, strings.TrimSpace(line))
			}
			if err != nil {
				break
			}
		}
		probe.ExitCode()
		if !slices.Equal(lines, []string{"environ refused", "mem refused"}) {
			t.Errorf("worker %d: a process of uid %d opening /proc/%s/environ and mem: %q, want both refused", w, in.WorkerUID, pid, lines)
		}
	}
	// Only the thread that forks workers gave up the bounding set: the
	// master keeps it (it must still bind, reopen logs and upgrade).
	if st, _ := readProc(master); st.CapBnd == 0 || st.NoNewPrivs != "0" {
		t.Errorf("master %d: CapBnd %016x NoNewPrivs %s; want the master itself unchanged", master, st.CapBnd, st.NoNewPrivs)
	}
}
