package master

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// closeOnExecAll marks every descriptor above stderr close-on-exec. The
// master may have been started with stray inherited descriptors (a shell's,
// a supervisor's, tableflip's pipes); Go only closes close-on-exec ones at
// exec, so without this they would leak into every worker. Descriptors the
// master does pass on go through ExtraFiles or tableflip, which clear the
// flag on the child's copy only.
func closeOnExecAll() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		unix.CloseOnExec(fd)
	}
}
