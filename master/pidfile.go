package master

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// WritePIDFile writes pid to path atomically (temporary file in the same
// directory, then rename), so a reader never sees a partial file and a
// stale one is simply replaced. Mode 0644, as nginx.
//
// The directory must be safe (checkSafeDir). The temporary file is created
// exclusively (never an existing file or a symlink), and rename replaces
// whatever is at path, a planted symlink included, without following it;
// in a sticky shared directory it fails rather than replace another
// user's file.
func WritePIDFile(path string, pid int) error {
	dir := filepath.Dir(path)
	if _, err := makeSafeDir(dir); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.WriteString(strconv.Itoa(pid) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("pid file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// maxPIDFileLen is more than any pid and its newline; ReadPIDFile reads
// no further.
const maxPIDFileLen = 32

// ReadPIDFile returns the pid stored at path. It does not follow a symlink
// at path and reads only the first bytes, so a PID file replaced by a link
// to a secret file cannot bring that file's content into an error message.
func ReadPIDFile(path string) (int, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, maxPIDFileLen)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	b := buf[:n]
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// RemovePIDFile removes path only if it still names pid: after a binary
// upgrade the file belongs to the new master, and the old one must leave it.
func RemovePIDFile(path string, pid int) error {
	got, err := ReadPIDFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	if got != pid {
		return nil
	}
	return os.Remove(path)
}
