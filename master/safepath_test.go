package master

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// otherUID is another user's uid: nobody on Debian.
const otherUID = 65534

// sharedDir makes a sticky world-writable directory (as /tmp) in a private
// test directory, and a root-owned file outside it whose content the tests
// check is never changed. It skips unless root: files are given to another
// user with chown.
func sharedDir(t *testing.T) (dir, victim string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: plants files owned by uid 65534 (nobody)")
	}
	base := t.TempDir()
	dir = filepath.Join(base, "shared")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	victim = filepath.Join(base, "victim")
	if err := os.WriteFile(victim, []byte("root's data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, victim
}

func assertUnchanged(t *testing.T, victim string) {
	t.Helper()
	b, err := os.ReadFile(victim)
	if err != nil || string(b) != "root's data\n" {
		t.Fatalf("%s was written through the planted file: %q (%v)", victim, b, err)
	}
}

// plantSymlink makes path a symlink to target owned by another user, as
// that user would with ln -s in a shared directory.
func plantSymlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(path, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
}

func assertRefused(t *testing.T, what string, err error, path string, why ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted, want it refused", what)
	}
	var running *ErrRunning
	if errors.As(err, &running) {
		t.Fatalf("%s: %q; want the file refused, not taken for a running master", what, err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("%s: error %q does not name %s", what, err, path)
	}
	for _, w := range why {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not say %q", what, err, w)
		}
	}
}

func TestLockRefusesSymlinkPlantedInSharedDir(t *testing.T) {
	dir, victim := sharedDir(t)
	lockPath := filepath.Join(dir, "p.pid.lock")
	plantSymlink(t, victim, lockPath)
	l, err := AcquireLock(lockPath, filepath.Join(dir, "p.pid"))
	if err == nil {
		l.writePID(os.Getpid())
		l.Release()
	}
	assertRefused(t, "lock file planted as a symlink", err, lockPath, "symbolic link")
	assertUnchanged(t, victim)
}

func TestLockRefusesAnotherUsersLockFile(t *testing.T) {
	dir, _ := sharedDir(t)
	lockPath := filepath.Join(dir, "p.pid.lock")
	if err := os.WriteFile(lockPath, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(lockPath, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	// The other user holds it locked, as its squatting process would.
	squat, err := os.Open(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	if err := unix.Flock(int(squat.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	_, err = AcquireLock(lockPath, filepath.Join(dir, "p.pid"))
	assertRefused(t, "lock file of another user", err, lockPath, "owned by uid 65534")
}

func TestLockRefusesHardLinkedLockFile(t *testing.T) {
	dir, victim := sharedDir(t)
	// Root's own directory, so that only the link count gives it away.
	safe := filepath.Join(filepath.Dir(dir), "run")
	if err := os.Mkdir(safe, 0o755); err != nil {
		t.Fatal(err)
	}
	lockPath := filepath.Join(safe, "p.pid.lock")
	if err := os.Link(victim, lockPath); err != nil {
		t.Fatal(err)
	}
	l, err := AcquireLock(lockPath, filepath.Join(safe, "p.pid"))
	if err == nil {
		l.writePID(os.Getpid())
		l.Release()
	}
	assertRefused(t, "hard-linked lock file", err, lockPath, "hard links")
	assertUnchanged(t, victim)
}

func TestLockRefusesUnsafeDirectories(t *testing.T) {
	dir, _ := sharedDir(t)
	// World-writable without the sticky bit: anyone could swap the file.
	open := filepath.Join(filepath.Dir(dir), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := AcquireLock(filepath.Join(open, "p.lock"), filepath.Join(open, "p.pid"))
	assertRefused(t, "lock in a world-writable directory without sticky bit", err, open, "no sticky bit")
	if err := WritePIDFile(filepath.Join(open, "p.pid"), 1234); err == nil {
		t.Errorf("PID file written in a world-writable directory without sticky bit")
	}
	// Owned by another user, below a safe one.
	theirs := filepath.Join(filepath.Dir(dir), "theirs")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	_, err = AcquireLock(filepath.Join(theirs, "p.lock"), filepath.Join(theirs, "p.pid"))
	assertRefused(t, "lock in a directory of another user", err, theirs, "owned by uid 65534")
	// Our own file in the sticky shared directory is fine.
	l, err := AcquireLock(filepath.Join(dir, "ours.lock"), filepath.Join(dir, "ours.pid"))
	if err != nil {
		t.Fatalf("a lock file of our own in a sticky shared directory: %v", err)
	}
	l.Release()
}

func TestPIDFileReplacesPlantedSymlinkWithoutFollowing(t *testing.T) {
	dir, victim := sharedDir(t)
	pidPath := filepath.Join(dir, "p.pid")
	plantSymlink(t, victim, pidPath)
	if _, err := ReadPIDFile(pidPath); err == nil || strings.Contains(err.Error(), "root's data") {
		t.Fatalf("ReadPIDFile through a planted symlink: %v; want an error that does not show the target's content", err)
	}
	if err := WritePIDFile(pidPath, 4321); err != nil {
		t.Fatal(err)
	}
	assertUnchanged(t, victim)
	fi, err := os.Lstat(pidPath)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("PID file after writing: %v %v, want a regular file", fi, err)
	}
	if pid, err := ReadPIDFile(pidPath); err != nil || pid != 4321 {
		t.Fatalf("PID file reads %d (%v), want 4321", pid, err)
	}
}

func TestLogFileRefusesSymlinkAndFIFO(t *testing.T) {
	dir, victim := sharedDir(t)
	logs := filepath.Join(filepath.Dir(dir), "log")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	// Even in root's own directory, a log path that is a symlink is not
	// followed: logs are opened again on every reopen.
	link := filepath.Join(logs, "error.log")
	plantSymlink(t, victim, link)
	f, err := openLogFile(link)
	if err == nil {
		f.WriteString("log line\n")
		f.Close()
	}
	assertRefused(t, "log file that is a symlink", err, link, "symbolic link")
	assertUnchanged(t, victim)

	// A FIFO fails the check at once instead of blocking the master.
	fifo := filepath.Join(logs, "access.log")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		f, err := openLogFile(fifo)
		if err == nil {
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		assertRefused(t, "log file that is a FIFO", err, fifo, "not a regular file")
	case <-time.After(10 * time.Second):
		t.Fatal("opening a FIFO as a log file blocked")
	}

	// Another user's file in a shared directory is refused; root's own
	// directory may hold a log another owner made (logrotate's create).
	theirs := filepath.Join(dir, "error.log")
	if err := os.WriteFile(theirs, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	_, err = openLogFile(theirs)
	assertRefused(t, "another user's log file in a shared directory", err, theirs, "owned by uid 65534")
	rotated := filepath.Join(logs, "rotated.log")
	if err := os.WriteFile(rotated, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(rotated, otherUID, 0); err != nil {
		t.Fatal(err)
	}
	if f, err := openLogFile(rotated); err != nil {
		t.Errorf("a log file of another owner in root's directory: %v, want it opened", err)
	} else {
		f.Close()
	}
}

// TestLogFileDevStdoutIsTheMastersOwn: /dev/stdout and /dev/stderr (the
// container examples' access log) are symlinks that O_NOFOLLOW would
// refuse; they name the master's own descriptors instead.
func TestLogFileDevStdoutIsTheMastersOwn(t *testing.T) {
	for path, std := range map[string]*os.File{"/dev/stdout": os.Stdout, "/dev/stderr": os.Stderr} {
		f, err := openLogFile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var got, want unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &got); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fstat(int(std.Fd()), &want); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if got.Dev != want.Dev || got.Ino != want.Ino {
			t.Errorf("%s opened %d:%d, want the master's own %d:%d", path, got.Dev, got.Ino, want.Dev, want.Ino)
		}
	}
}
