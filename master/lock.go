package master

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrRunning is returned when another master holds the instance lock.
// PID is read from the PID file; 0 when it could not be read (a master
// still starting, say).
type ErrRunning struct{ PID int }

func (e *ErrRunning) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("already running (pid %d)", e.PID)
	}
	return "already running"
}

// Lock is the instance lock: an flock on a file of its own, not on the PID
// file. The PID file is replaced by rename when written, and a lock on the
// replaced inode would silently stop excluding anyone. flock belongs to the
// open file description, so the lock survives being handed to a re-exec'd
// daemon or an upgraded master as an inherited descriptor, and is released
// only when the last process holding that descriptor exits.
type Lock struct {
	path string
	f    *os.File
}

// AcquireLock takes the lock at path without waiting. pidFile is read to
// name the holder when the lock is taken.
func AcquireLock(path, pidFile string) (*Lock, error) {
	// Checked before locking: a lock file another user made (and holds
	// locked) would otherwise pass for a running master, and one planted
	// as a symlink or hard link would have root write the pid into its
	// target.
	f, err := openChecked(path, os.O_RDWR|os.O_CREATE, 0o644, ownedAlways)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := flock(f); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid, _ := ReadPIDFile(pidFile)
			if pid == 0 {
				pid = lockHolder(path)
			}
			return nil, &ErrRunning{PID: pid}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{path: path, f: f}, nil
}

// InheritLock adopts a lock descriptor handed over by the previous process
// (daemon parent or upgraded master). Locking it again succeeds at once
// since it is the same open file description; it fails only if the
// descriptor is not what it claims to be.
func InheritLock(path string, f *os.File) (*Lock, error) {
	if err := flock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("inherited lock %s: %w", path, err)
	}
	return &Lock{path: path, f: f}, nil
}

func flock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			return err
		}
	}
}

// File is the locked descriptor, to hand to a successor.
func (l *Lock) File() *os.File { return l.f }

// Release drops this process's hold on the lock. Another process holding
// the same descriptor (an upgraded master) keeps it. The file itself stays:
// removing it would let two masters lock two different inodes.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close()
	l.f = nil
}

// writePID records the holder in the lock file itself, so that a second
// start can name it even before the PID file exists (a master still
// starting). The PID file stays the authority once written.
func (l *Lock) writePID(pid int) {
	if l == nil || l.f == nil {
		return
	}
	if err := l.f.Truncate(0); err == nil {
		l.f.WriteAt([]byte(fmt.Sprintf("%d\n", pid)), 0)
	}
}

// lockHolder reads the pid a lock file records.
func lockHolder(path string) int {
	pid, err := ReadPIDFile(path)
	if err != nil {
		return 0
	}
	return pid
}
