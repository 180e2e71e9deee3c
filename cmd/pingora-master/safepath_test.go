package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The master runs as root and opens its lock file, PID file and logs at
// configured paths. Another user who can write where one of them goes must
// not be able to make root write elsewhere, or keep the master from
// starting with a lock of their own.

// sharedTmp is a sticky world-writable directory, as /tmp, that the worker
// user can reach; and a root-only file beside it (in the instance's own
// directory) that nothing may change.
func sharedTmp(t *testing.T, in *instance) (dir, victim string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "pingora-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	victim = filepath.Join(in.Dir, "victim")
	if err := os.WriteFile(victim, []byte("root's data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, victim
}

// asWorkerUser starts a shell script as the instance's worker user
// (nobody), as that user would run it. Its output is piped to the caller.
func asWorkerUser(t *testing.T, in *instance, script string, args ...string) (*proc, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid: uint32(in.WorkerUID), Gid: uint32(in.WorkerGID), Groups: []uint32{},
	}}
	// A pipe of our own, not StdoutPipe: startProc's Wait would close
	// that as soon as the script exits, losing what it wrote and the
	// caller had not read yet.
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	p, err := startProc(cmd)
	w.Close() // the script holds its own copy; EOF once it exits
	if err != nil {
		out.Close()
		t.Fatalf("start %q as uid %d: %v", script, in.WorkerUID, err)
	}
	t.Cleanup(func() {
		if !p.Exited() {
			cmd.Process.Kill()
		}
		<-p.done
		out.Close()
	})
	return p, bufio.NewReader(out)
}

// runAsWorkerUser runs a script as the worker user to completion.
func runAsWorkerUser(t *testing.T, in *instance, script string, args ...string) {
	t.Helper()
	p, out := asWorkerUser(t, in, script, args...)
	var text strings.Builder
	for {
		line, err := out.ReadString('\n')
		text.WriteString(line)
		if err != nil {
			break
		}
	}
	if code := p.ExitCode(); code != 0 {
		t.Fatalf("%q as uid %d: exit %d\n%s", script, in.WorkerUID, code, text.String())
	}
}

// refusedStart runs the master, expecting it to refuse to start: exit 1,
// stderr naming path with why, and victim (if any) unchanged.
func refusedStart(t *testing.T, in *instance, path, why, victim string) {
	t.Helper()
	r := in.Run(startTimeout, "-c", in.Conf)
	if r.Code != 1 || !strings.Contains(r.Stderr, path) || !strings.Contains(r.Stderr, why) {
		t.Errorf("start: want exit 1 with an error naming %s and saying %q\n%s", path, why, r)
	}
	if strings.Contains(r.Stderr, "already running") {
		t.Errorf("start: refused as \"already running\", not for what is wrong with %s\n%s", path, r)
	}
	if victim != "" {
		if b, err := os.ReadFile(victim); err != nil || string(b) != "root's data\n" {
			t.Errorf("%s was written through %s: %q (%v)", victim, path, b, err)
		}
	}
}

// TestStartDoesNotFollowPlantedLockSymlink: the worker user plants a
// symlink where the lock file goes, in a sticky world-writable directory;
// the root master refuses it, naming the path, and the target is unchanged.
func TestStartDoesNotFollowPlantedLockSymlink(t *testing.T) {
	in := newInstance(t, 1)
	shared, victim := sharedTmp(t, in)
	lock := filepath.Join(shared, "p.pid.lock")
	runAsWorkerUser(t, in, `ln -s "$1" "$2"`, victim, lock)
	p := in.Params
	p.Extra = `lock_file = "` + lock + `"`
	in.WriteConfig(p)
	refusedStart(t, in, lock, "symbolic link", victim)
}

// TestStartRefusesAnotherUsersLockFile: the worker user creates the lock
// file first and holds it locked. The master says what is wrong with the
// file instead of "already running (pid 1)".
func TestStartRefusesAnotherUsersLockFile(t *testing.T) {
	in := newInstance(t, 1)
	shared, _ := sharedTmp(t, in)
	lock := filepath.Join(shared, "p.pid.lock")
	_, out := asWorkerUser(t, in, `exec 9>>"$1" && flock -n 9 && echo 1 >&9 && echo locked && exec sleep 600`, lock)
	line, err := out.ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("the worker user could not lock %s: %q %v", lock, line, err)
	}
	p := in.Params
	p.Extra = `lock_file = "` + lock + `"`
	in.WriteConfig(p)
	refusedStart(t, in, lock, "owned by uid 65534", "")
}

// TestStartRefusesHardLinkedLockFile: a lock file with a second name would
// have root write the pid into whatever that name is.
func TestStartRefusesHardLinkedLockFile(t *testing.T) {
	in := newInstance(t, 1)
	_, victim := sharedTmp(t, in)
	lock := in.PIDFile + ".lock"
	if err := os.Link(victim, lock); err != nil {
		t.Fatal(err)
	}
	refusedStart(t, in, lock, "hard links", victim)
}

// TestStartRefusesSymlinkedLogFile: a log path that is a symlink is not
// followed (a log is opened again on every reopen, as root).
func TestStartRefusesSymlinkedLogFile(t *testing.T) {
	in := newInstance(t, 1)
	_, victim := sharedTmp(t, in)
	if err := os.Symlink(victim, in.ErrLog); err != nil {
		t.Fatal(err)
	}
	refusedStart(t, in, in.ErrLog, "symbolic link", victim)
}

// TestRootDefaultPathsAreUnderRunPingora: with no config file, a root
// master's control socket (and PID file and lock beside it) is in
// /run/pingora, never in /tmp where another user could plant them. The
// client shows where it looks.
func TestRootDefaultPathsAreUnderRunPingora(t *testing.T) {
	in := newInstance(t, 1)
	if fileExists("/etc/pingora/pingora.hcl") {
		t.Skip("/etc/pingora/pingora.hcl exists: the embedded default is not used")
	}
	r := in.Run(20*time.Second, "-s", "status")
	if !strings.Contains(r.Stderr, "/run/pingora/pingora.sock") || strings.Contains(r.Stderr, "/tmp/") {
		t.Fatalf("-s status without a config, as root: want it to look for /run/pingora/pingora.sock\n%s", r)
	}
}
