package master

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pingora-go/pingora/master/admin"
)

// Request is one control-socket request: a single JSON line.
type Request struct {
	Command string `json:"command"`
}

// Response is the master's answer, one JSON line, sent once the outcome is
// known (a reload: once the new generation serves or failed).
type Response struct {
	OK      bool          `json:"ok"`
	Message string        `json:"message,omitempty"`
	Error   string        `json:"error,omitempty"`
	Status  *admin.Master `json:"status,omitempty"`
}

var knownCommands = map[string]bool{
	cmdReload: true, cmdUpgrade: true, cmdReopen: true,
	cmdStop: true, cmdQuit: true, cmdStatus: true,
}

// controlServer is the master's Unix control socket (mode 0600: only root,
// or the user running the master, may control it).
type controlServer struct {
	path    string
	ln      *net.UnixListener
	ino     uint64
	log     hclog.Logger
	cmds    chan<- *command
	clients sync.WaitGroup
	once    sync.Once
}

// listenControl binds the socket inside a fresh private (0700) directory
// beside the path, sets its mode and renames it into place: nobody but
// root can reach the socket before it is 0600, whatever the umask (which
// is process-wide and so not ours to change around one bind), the path
// always names a working socket, and a new master (binary upgrade) takes
// the path over atomically from the old one.
func listenControl(path string, cmds chan<- *command, log hclog.Logger) (*controlServer, error) {
	if _, err := makeSafeDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	private, err := os.MkdirTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return nil, fmt.Errorf("control socket %s: private directory: %w", path, err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*controlServer, error) {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(tmp, &st); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	s := &controlServer{path: path, ln: ln, ino: st.Ino, log: log, cmds: cmds}
	go s.serve()
	return s, nil
}

// owned reports whether the path still names this server's socket (a
// new master that failed during an upgrade may have taken it and removed
// it).
func (s *controlServer) owned() bool {
	var st syscall.Stat_t
	return syscall.Stat(s.path, &st) == nil && st.Ino == s.ino
}

// peerAllowed checks the connecting process's credentials: root or the
// master's own user only. The file mode already says so; this holds even
// if the mode was loosened or the socket reached another way.
func (s *controlServer) peerAllowed(conn *net.UnixConn) (bool, *unix.Ucred) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return false, nil
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return false, nil
	}
	return cred.Uid == 0 || int(cred.Uid) == os.Geteuid(), cred
}

func (s *controlServer) serve() {
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.clients.Add(1)
		go func() {
			defer s.clients.Done()
			s.handle(conn)
		}()
	}
}

func (s *controlServer) handle(conn *net.UnixConn) {
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(conn, 4096).ReadSlice('\n')
	if err != nil {
		return
	}
	conn.SetReadDeadline(time.Time{})
	// Checked once the request is read, so that the refused client gets
	// the answer rather than a broken pipe while it sends.
	if ok, cred := s.peerAllowed(conn); !ok {
		if cred != nil {
			s.log.Warn("control socket: connection refused: not root nor the master's user",
				"peer_pid", cred.Pid, "peer_uid", cred.Uid, "peer_gid", cred.Gid)
		} else {
			s.log.Warn("control socket: connection refused: peer credentials unknown")
		}
		b, _ := json.Marshal(Response{Error: "permission denied: only root or the master's user may control it"})
		conn.Write(append(b, '\n'))
		return
	}
	var req Request
	var resp Response
	if err := json.Unmarshal(line, &req); err != nil {
		resp = Response{Error: "bad request: " + err.Error()}
	} else if !knownCommands[req.Command] {
		resp = Response{Error: fmt.Sprintf("unknown command %q", req.Command)}
	} else {
		reply := make(chan Response, 1)
		s.cmds <- &command{kind: req.Command, source: "control socket", reply: reply}
		resp = <-reply
	}
	b, _ := json.Marshal(resp)
	conn.Write(append(b, '\n'))
}

// close stops accepting and removes the socket file if it is still ours
// (after an upgrade the new master's socket is at that path).
func (s *controlServer) close() {
	s.once.Do(func() {
		s.ln.Close()
		if s.owned() {
			os.Remove(s.path)
		}
	})
}

// waitClients gives connections being answered a moment to finish writing.
func (s *controlServer) waitClients(limit time.Duration) {
	done := make(chan struct{})
	go func() {
		s.clients.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(limit):
	}
}
