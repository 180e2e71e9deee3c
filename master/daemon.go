package master

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The daemon protocol: the starting process re-execs itself with envDaemon
// set, the readiness pipe's write end as fd 3 and the already-taken
// instance lock as fd 4 (flock follows the open file description, so the
// daemon holds the very lock its parent took: no window in which a second
// start could slip in).
const (
	envDaemon     = "PINGORA_DAEMON"
	daemonReadyFD = 3
	daemonLockFD  = 4
	daemonOK      = "OK"
)

// daemonChild is what a re-exec'd daemon inherited.
type daemonChild struct {
	ready *os.File
	lock  *os.File
}

// takeDaemonChild claims the daemon descriptors if this process is a
// daemon started by daemonize, marking them close-on-exec so they never
// reach a worker or a new master, and clearing the marker so an upgraded
// master does not take tableflip's descriptors for them.
func takeDaemonChild() *daemonChild {
	if os.Getenv(envDaemon) != "1" {
		return nil
	}
	os.Unsetenv(envDaemon)
	syscall.Umask(0o022)
	unix.CloseOnExec(daemonReadyFD)
	unix.CloseOnExec(daemonLockFD)
	return &daemonChild{
		ready: os.NewFile(daemonReadyFD, "daemon-ready"),
		lock:  os.NewFile(daemonLockFD, "lock"),
	}
}

// daemonize starts the daemon and waits for it: exit code 0 once it serves,
// 1 with its error on stderr otherwise. Go cannot fork, so instead of the
// classic double fork the binary is re-exec'd in a new session (Setsid: no
// controlling terminal), with stdio on /dev/null, working directory /, and
// umask 022 (set by the child). exe and args must be absolute already.
func daemonize(exe string, args []string, lock *Lock, stderr io.Writer) int {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(stderr, "pingora-master: daemonize: %v\n", err)
		return 1
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "pingora-master: daemonize: %v\n", err)
		return 1
	}
	defer r.Close()
	cmd := &exec.Cmd{
		Path:        exe,
		Args:        append([]string{exe}, args...),
		Env:         append(os.Environ(), envDaemon+"=1"),
		Dir:         "/",
		Stdin:       devnull,
		Stdout:      devnull,
		Stderr:      devnull,
		ExtraFiles:  []*os.File{w, lock.File()}, // fds 3 and 4
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		fmt.Fprintf(stderr, "pingora-master: daemonize: %v\n", err)
		return 1
	}
	b, _ := io.ReadAll(io.LimitReader(r, 1<<20))
	msg := strings.TrimSpace(string(b))
	if msg == daemonOK {
		cmd.Process.Release()
		return 0
	}
	state, _ := cmd.Process.Wait()
	if msg == "" {
		msg = "the daemon exited before it was ready"
		if state != nil {
			msg += " (" + state.String() + ")"
		}
	}
	fmt.Fprintf(stderr, "pingora-master: %s\n", msg)
	return 1
}

// reporter tells whoever waits for this master's start how it went: the
// terminal (foreground), the daemon's starting process (its pipe), or the
// old master of a binary upgrade (the report pipe handed over by tableflip).
type reporter struct {
	stderr  io.Writer
	pipe    *os.File // daemon readiness pipe
	upgrade *os.File // upgrade report pipe
}

func (r *reporter) fail(err error) int {
	msg := err.Error()
	if r.pipe != nil {
		io.WriteString(r.pipe, msg+"\n")
		r.pipe.Close()
		r.pipe = nil
	} else {
		fmt.Fprintf(r.stderr, "pingora-master: %s\n", msg)
	}
	if r.upgrade != nil {
		io.WriteString(r.upgrade, msg+"\n")
		r.upgrade.Close()
		r.upgrade = nil
	}
	return 1
}

func (r *reporter) ready() {
	if r.pipe != nil {
		io.WriteString(r.pipe, daemonOK+"\n")
		r.pipe.Close()
		r.pipe = nil
	}
	if r.upgrade != nil {
		r.upgrade.Close()
		r.upgrade = nil
	}
}
