package master

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/config"
	"golang.org/x/sys/unix"
)

// logFileMode is for files the master creates. The master opens them as
// root and hands descriptors to workers, so workers never need to be able
// to open them themselves.
const logFileMode = 0o640

// logTargets are the error log and access log files, opened by the master.
// A nil file means stderr (error log) or no access log.
type logTargets struct {
	errPath string
	errFile *os.File
	accPath string
	accFile *os.File
}

// openLogTargets opens the files cfg names, creating directories as
// needed.
func openLogTargets(cfg *config.Config) (*logTargets, error) {
	t := &logTargets{errPath: cfg.Log.File}
	if cfg.AccessLog != nil {
		t.accPath = cfg.AccessLog.File
	}
	var err error
	if t.errPath != "" {
		if t.errFile, err = openLogFile(t.errPath); err != nil {
			return nil, fmt.Errorf("error log: %w", err)
		}
	}
	if t.accPath != "" {
		if t.accFile, err = openLogFile(t.accPath); err != nil {
			t.close()
			return nil, fmt.Errorf("access log: %w", err)
		}
	}
	return t, nil
}

// openLogFile opens a log for appending, creating it and its directory as
// needed. As openChecked does: never through a symlink, only a regular
// file, in a directory only root (or we) control; in a shared sticky
// directory only a file of ours.
//
// /dev/stdout and /dev/stderr (a container's logs) are the master's own
// standard output and error, duplicated: not paths to open, since they are
// symlinks to whatever those descriptors are (a pipe, a terminal).
func openLogFile(path string) (*os.File, error) {
	switch path {
	case "/dev/stdout":
		return dupStd(os.Stdout, path)
	case "/dev/stderr":
		return dupStd(os.Stderr, path)
	}
	return openChecked(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, logFileMode, ownedInShared)
}

// dupStd duplicates a standard descriptor (close-on-exec) as a log file.
func dupStd(f *os.File, path string) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// sameAs reports whether the targets already write where cfg asks.
func (t *logTargets) sameAs(cfg *config.Config) bool {
	acc := ""
	if cfg.AccessLog != nil {
		acc = cfg.AccessLog.File
	}
	return t.errPath == cfg.Log.File && t.accPath == acc
}

// errorLog is where the master and its workers write their log: the file,
// or the master's stderr.
func (t *logTargets) errorLog() *os.File {
	if t.errFile != nil {
		return t.errFile
	}
	return os.Stderr
}

// reopen opens the same paths again (after logrotate moved the files) and
// returns the replaced files for the caller to close once nobody writes to
// them any more.
func (t *logTargets) reopen() (old []*os.File, err error) {
	var errF, accF *os.File
	if t.errPath != "" {
		if errF, err = openLogFile(t.errPath); err != nil {
			return nil, fmt.Errorf("reopen error log: %w", err)
		}
	}
	if t.accPath != "" {
		if accF, err = openLogFile(t.accPath); err != nil {
			if errF != nil {
				errF.Close()
			}
			return nil, fmt.Errorf("reopen access log: %w", err)
		}
	}
	if errF != nil {
		old = append(old, t.errFile)
		t.errFile = errF
	}
	if accF != nil {
		old = append(old, t.accFile)
		t.accFile = accF
	}
	return old, nil
}

func (t *logTargets) close() {
	if t == nil {
		return
	}
	if t.errFile != nil {
		t.errFile.Close()
	}
	if t.accFile != nil {
		t.accFile.Close()
	}
}

// swapWriter lets the master's logger move to a new file: after Set
// returns, no write reaches the old one, which can then be closed.
type swapWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *swapWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *swapWriter) Set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

// newLogger builds the master's logger. Lines carry the master's pid: during
// a binary upgrade two masters write to the same log.
func newLogger(l config.Log, out io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "master",
		Level:      logLevel(l.Level),
		Output:     out,
		JSONFormat: l.Format == "json",
	}).With("pid", os.Getpid())
}

func logLevel(s string) hclog.Level {
	if lv := hclog.LevelFromString(s); lv != hclog.NoLevel {
		return lv
	}
	return hclog.Info
}
