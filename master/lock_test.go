package master

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLockExcludesSecondHolderAndNamesFirst(t *testing.T) {
	dir := t.TempDir()
	lockPath, pidPath := filepath.Join(dir, "p.lock"), filepath.Join(dir, "p.pid")
	l, err := AcquireLock(lockPath, pidPath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if err := WritePIDFile(pidPath, 4242); err != nil {
		t.Fatal(err)
	}
	_, err = AcquireLock(lockPath, pidPath)
	var running *ErrRunning
	if !errors.As(err, &running) || running.PID != 4242 {
		t.Fatalf("second acquire: got %v, want already running (pid 4242)", err)
	}
	if got := err.Error(); got != "already running (pid 4242)" {
		t.Fatalf("message %q", got)
	}
}

func TestLockNamesHolderFromLockFileBeforePIDFile(t *testing.T) {
	dir := t.TempDir()
	lockPath := filepath.Join(dir, "p.lock")
	l, err := AcquireLock(lockPath, filepath.Join(dir, "absent.pid"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	l.writePID(777)
	_, err = AcquireLock(lockPath, filepath.Join(dir, "absent.pid"))
	if err == nil || err.Error() != "already running (pid 777)" {
		t.Fatalf("got %v", err)
	}
}

func TestLockSurvivesHandOverAndIsReleasedByLastHolder(t *testing.T) {
	dir := t.TempDir()
	lockPath, pidPath := filepath.Join(dir, "p.lock"), filepath.Join(dir, "p.pid")
	l, err := AcquireLock(lockPath, pidPath)
	if err != nil {
		t.Fatal(err)
	}
	// A successor gets a duplicate of the same open file description, as
	// through exec (ExtraFiles) or tableflip.
	fd, err := dupCloexec(l.File())
	if err != nil {
		t.Fatal(err)
	}
	heir, err := InheritLock(lockPath, fd)
	if err != nil {
		t.Fatalf("inherit: %v", err)
	}
	l.Release()
	if _, err := AcquireLock(lockPath, pidPath); err == nil {
		t.Fatal("lock was lost when the first holder released it")
	}
	heir.Release()
	l2, err := AcquireLock(lockPath, pidPath)
	if err != nil {
		t.Fatalf("lock not free after the last holder released it: %v", err)
	}
	l2.Release()
}

func TestStalePIDFileIsTakenOver(t *testing.T) {
	dir := t.TempDir()
	lockPath, pidPath := filepath.Join(dir, "p.lock"), filepath.Join(dir, "p.pid")
	if err := WritePIDFile(pidPath, 99999); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lockPath, []byte("99999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := AcquireLock(lockPath, pidPath)
	if err != nil {
		t.Fatalf("stale files (no lock held) must be taken over: %v", err)
	}
	l.Release()
}

func dupCloexec(f *os.File) (*os.File, error) { return dupFile(f) }
