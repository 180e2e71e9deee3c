package master

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The master runs as root and opens files at paths from its config: the
// instance lock, the PID file, the logs, the control socket. A path whose
// directory another user can write to lets that user decide what root
// opens there (a symlink to /etc/shadow where the lock file should be) or
// replace it afterwards. These helpers are the one place that decides what
// is safe; every file the master creates goes through them.

// checkSafeDir checks that no user other than root and this process's own
// can add, remove or rename entries in dir or any directory above it: each
// is owned by root or by us, and none is world-writable unless its sticky
// bit keeps others from removing or renaming what they do not own (as
// /tmp). shared reports whether dir itself is such a sticky world-writable
// directory: other users may then create entries beside ours, so a file
// found there must still be checked to be ours.
//
// Symlinks in dir are resolved first and the resolved directories are
// checked. Group-writable directories are accepted: distributions make
// /var/log writable by a log group.
//
// It is the check for any path the master opens as root (the control
// socket's directory included).
func checkSafeDir(dir string) (shared bool, err error) {
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false, fmt.Errorf("directory %s: %w", dir, err)
	}
	resolved, err = filepath.Abs(resolved)
	if err != nil {
		return false, fmt.Errorf("directory %s: %w", dir, err)
	}
	euid := os.Geteuid()
	for p := resolved; ; p = filepath.Dir(p) {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return false, fmt.Errorf("directory %s: %w", p, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return false, fmt.Errorf("directory %s: not a directory", p)
		}
		if st.Uid != 0 && int(st.Uid) != euid {
			return false, fmt.Errorf("directory %s is owned by uid %d, not by root or uid %d: that user could replace what pingora-master creates in %s",
				p, st.Uid, euid, dir)
		}
		if st.Mode&unix.S_IWOTH != 0 {
			if st.Mode&unix.S_ISVTX == 0 {
				return false, fmt.Errorf("directory %s is writable by every user and has no sticky bit: any user could replace what pingora-master creates in %s",
					p, dir)
			}
			if p == resolved {
				shared = true
			}
		}
		if p == "/" || p == "." {
			return shared, nil
		}
	}
}

// makeSafeDir creates dir (0755, as root: /run/pingora) when missing, then
// checks it with checkSafeDir.
func makeSafeDir(dir string) (shared bool, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("create directory %s: %w", dir, err)
	}
	return checkSafeDir(dir)
}

// ownedFile says what openChecked demands of the file it opens.
type ownedFile int

const (
	// ownedAlways: the file must be a regular file of ours with a single
	// link, wherever it is (lock file, PID file).
	ownedAlways ownedFile = iota
	// ownedInShared: the file must be regular; in a shared (sticky,
	// world-writable) directory it must also be ours with a single link.
	// Log files: logrotate may recreate them under another owner in a
	// directory only root controls.
	ownedInShared
)

// openChecked opens path with flag (plus O_NOFOLLOW and O_CLOEXEC),
// creating it with perm if flag has O_CREATE, after checking its directory
// with makeSafeDir. The final component is never followed if it is a
// symlink, and what was opened is checked through the descriptor (so it is
// the file actually opened): a regular file and, as rule says, owned by
// this process's uid with exactly one link (a hard link planted by another
// user would make us write into their file, or another file through it).
// Every error names path.
func openChecked(path string, flag int, perm fs.FileMode, rule ownedFile) (*os.File, error) {
	shared, err := makeSafeDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	// O_NONBLOCK: opening a FIFO planted at path must fail the checks
	// below, not block the master forever waiting for a reader.
	fd, err := unix.Open(path, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, uint32(perm.Perm()))
	if err != nil {
		return nil, openError(path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := checkOpened(f, path, rule == ownedAlways || shared); err != nil {
		f.Close()
		return nil, err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// checkOpened checks the opened file through its descriptor: a regular
// file and, when mustOwn, ours with a single link.
func checkOpened(f *os.File, path string, mustOwn bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s is not a regular file (mode %#o); refusing to use it", path, st.Mode&unix.S_IFMT)
	}
	if !mustOwn {
		return nil
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("%s is owned by uid %d, not by this process's uid %d; refusing to use a file another user made (remove it)",
			path, st.Uid, euid)
	}
	if st.Nlink != 1 {
		return fmt.Errorf("%s has %d hard links; refusing to use a file that is also elsewhere (remove it)", path, st.Nlink)
	}
	return nil
}

// openError explains a failed open by what is at path: the kernel reports
// a symlink refused by O_NOFOLLOW as ELOOP, or as EACCES where the sticky
// directory protections (fs.protected_symlinks) step in first, and a FIFO
// without a reader opened O_NONBLOCK for writing as ENXIO.
func openError(path string, err error) error {
	var st unix.Stat_t
	if lerr := unix.Lstat(path, &st); lerr == nil {
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			return fmt.Errorf("%s is a symbolic link; refusing to follow it (remove it, or name the real file)", path)
		case unix.S_IFREG, unix.S_IFDIR:
		default:
			return fmt.Errorf("%s is not a regular file (mode %#o); refusing to use it", path, st.Mode&unix.S_IFMT)
		}
	}
	if errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("%s is a symbolic link; refusing to follow it (remove it, or name the real file)", path)
	}
	return &os.PathError{Op: "open", Path: path, Err: err}
}
