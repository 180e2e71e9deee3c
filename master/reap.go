package master

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// reapOrphans is for a master running as PID 1 (in a container): orphaned
// processes are re-parented to it, and nobody else would reap their zombies.
// Only zombies that are not our own workers are reaped (os/exec reaps those,
// and stealing their status would break supervision), and nothing during a
// binary upgrade (tableflip waits for the new master itself).
func (m *Master) reapOrphans() {
	if os.Getpid() != 1 || m.upgrading {
		return
	}
	ours := make(map[int]bool)
	for _, g := range m.gens {
		for _, s := range g.slots {
			if s.w != nil {
				ours[s.w.pid] = true
			}
		}
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] != "Z" || f[1] != "1" {
			continue
		}
		pid, err := strconv.Atoi(strings.Fields(s)[0])
		if err != nil || ours[pid] {
			continue
		}
		var ws syscall.WaitStatus
		if got, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); got == pid {
			m.log.Debug("reaped orphan", "pid", pid)
		}
	}
}
