package master

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/config"
	"golang.org/x/sys/unix"
)

// boundListener is one listening socket the master holds for its whole
// use: workers get copies, and the master's copy keeps the socket (and its
// accept queue) alive while one generation hands over to the next.
type boundListener struct {
	addr string
	ln   net.Listener
	file *os.File // a dup, passed to workers as an ExtraFile
}

// listenerSet binds every listener through tableflip's Fds, so a binary
// upgrade hands the very same sockets to the new master. Sockets are keyed
// by address: a listener renamed in the config keeps its socket, and a
// socket is never rebound while it is in the config (no SO_REUSEPORT, no
// window where the port is closed).
type listenerSet struct {
	fds    *tableflip.Fds
	byAddr map[string]*boundListener
	// activated are the sockets from systemd no listener has claimed yet
	// (see activation.go).
	activated []*activatedSocket
	log       hclog.Logger
}

func newListenerSet(fds *tableflip.Fds, activated []*activatedSocket, log hclog.Logger) *listenerSet {
	return &listenerSet{fds: fds, byAddr: make(map[string]*boundListener), activated: activated, log: log}
}

// bindAll makes sure every address in addrs is bound. On error, sockets
// this call bound are closed again and the set is as before.
func (s *listenerSet) bindAll(addrs []string) error {
	var added []string
	for _, addr := range addrs {
		if s.byAddr[addr] != nil {
			continue
		}
		b, err := s.bind(addr)
		if err != nil {
			for _, a := range added {
				s.closeAddr(a)
			}
			return err
		}
		s.byAddr[addr] = b
		added = append(added, addr)
	}
	return nil
}

func (s *listenerSet) bind(addr string) (*boundListener, error) {
	ln, err := s.listen(addr)
	if err != nil {
		return nil, err
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("bind %s: unexpected listener type %T", addr, ln)
	}
	f, err := dupListener(tl, addr)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("bind %s: %w", addr, err)
	}
	unpoll(f) // every descriptor of the socket, tableflip's and ln's included
	return &boundListener{addr: addr, ln: ln, file: f}, nil
}

// listen binds addr through tableflip's Fds: the socket a previous master
// handed over if there is one, else the socket systemd passed for the
// address if there is one, else a new one; in every case it is handed
// over to the next master of a binary upgrade.
func (s *listenerSet) listen(addr string) (net.Listener, error) {
	fds := s.fds
	ln, err := fds.ListenWithCallback("tcp", addr, func(network, addr string) (net.Listener, error) {
		if ln := s.claimActivated(addr); ln != nil {
			return ln, nil
		}
		return (&net.ListenConfig{}).Listen(context.Background(), network, addr)
	})
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", addr, err)
	}
	if !listening(ln) {
		// Inherited from a master that had closed (shut down) this
		// listener after a reload removed it: bind a fresh one in its place.
		ln.Close()
		ln, err = (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("bind %s: %w", addr, err)
		}
		if err := fds.AddListener("tcp", addr, ln.(tableflip.Listener)); err != nil {
			ln.Close()
			return nil, fmt.Errorf("bind %s: %w", addr, err)
		}
	}
	return ln, nil
}

// claimActivated takes the socket from systemd for addr, if there is one.
func (s *listenerSet) claimActivated(addr string) net.Listener {
	for i, a := range s.activated {
		if a.serves(addr) {
			s.activated = append(s.activated[:i], s.activated[i+1:]...)
			s.log.Info("listening on the socket from systemd", "address", addr, "socket", a)
			return a.ln
		}
	}
	return nil
}

// dropActivated closes the sockets from systemd that no listener claimed
// (the config has no listener with their address) and returns them.
func (s *listenerSet) dropActivated() []*activatedSocket {
	left := s.activated
	s.activated = nil
	for _, a := range left {
		a.ln.Close()
	}
	return left
}

// dupListener duplicates the listener's descriptor for workers. Not with
// TCPListener.File: that *os.File is marked as one Go made non-blocking,
// so the Fd() call os/exec makes on every ExtraFile would clear O_NONBLOCK,
// a flag of the socket's open file description shared by the master and
// every worker, and a worker's accept would then block in the kernel
// (a drain could no longer interrupt it). os.NewFile on a raw dup of a
// descriptor that is already non-blocking leaves the flag alone.
func dupListener(tl *net.TCPListener, addr string) (*os.File, error) {
	raw, err := tl.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup: %w", dupErr)
	}
	return os.NewFile(uintptr(fd), "listener "+addr), nil
}

// listening reports whether ln's socket is in the LISTEN state.
func listening(ln net.Listener) bool {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return true
	}
	raw, err := tl.SyscallConn()
	if err != nil {
		return true
	}
	v := 1
	raw.Control(func(fd uintptr) {
		v, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	})
	return err != nil || v != 0
}

// setOptions applies the socket options of each listener's config to its
// bound socket: at start, and after a reload once the new generation
// serves (so that a reload that fails changes nothing). Options belong to
// the socket, shared by every generation's workers.
func (s *listenerSet) setOptions(ls []config.Listener) error {
	for _, l := range ls {
		b := s.byAddr[l.Address]
		if b == nil {
			continue
		}
		// TCP_DEFER_ACCEPT takes seconds; the kernel holds a silent
		// connection about that long (as nginx, which uses its
		// client_header_timeout) before queueing it anyway, and the
		// worker's header timeout takes over from there.
		secs := 0
		if l.DeferAccept {
			secs = max(1, int((l.ClientHeaderTimeout+time.Second-1)/time.Second))
		}
		// listen(2) again on a listening socket only sets its backlog:
		// the queue and the connections in it stay.
		backlog := l.Backlog
		if backlog <= 0 {
			backlog = systemBacklog()
		}
		raw, err := b.file.SyscallConn()
		if err != nil {
			return fmt.Errorf("listener %q (%s): %w", l.Name, l.Address, err)
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, secs); serr != nil {
				serr = fmt.Errorf("set TCP_DEFER_ACCEPT: %w", serr)
			} else if serr = unix.Listen(int(fd), backlog); serr != nil {
				serr = fmt.Errorf("set backlog %d: %w", backlog, serr)
			}
		}); err != nil {
			serr = err
		}
		if serr != nil {
			return fmt.Errorf("listener %q (%s): %w", l.Name, l.Address, serr)
		}
	}
	return nil
}

// systemBacklog is the largest accept queue the system allows (what Go's
// listeners ask for): net.core.somaxconn, 4096 when it cannot be read.
func systemBacklog() int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return 4096
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 4096
	}
	return min(n, 65535)
}

// file returns the descriptor to pass to workers for addr.
func (s *listenerSet) file(addr string) *os.File {
	if b := s.byAddr[addr]; b != nil {
		return b.file
	}
	return nil
}

// retain closes every socket whose address is not in keep. It is called
// once the generations that used a socket are gone, so nothing is waiting
// in its accept queue that a worker would have taken.
func (s *listenerSet) retain(keep map[string]bool) []string {
	var closed []string
	for addr := range s.byAddr {
		if !keep[addr] {
			s.closeAddr(addr)
			closed = append(closed, addr)
		}
	}
	sort.Strings(closed)
	return closed
}

// closeAddr closes a socket for good. tableflip's Fds keeps its own
// duplicate (it has no way to forget one), so closing our descriptors would
// leave the port listening with nobody accepting. shutdown(2) acts on the
// socket itself, whatever descriptors point at it: the port stops listening
// now, and a later bind of the same address (SO_REUSEADDR) succeeds.
func (s *listenerSet) closeAddr(addr string) {
	b := s.byAddr[addr]
	if b == nil {
		return
	}
	delete(s.byAddr, addr)
	if raw, err := b.file.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RDWR) })
	}
	b.file.Close()
	b.ln.Close()
}

// closeAll closes the master's copies (at exit).
func (s *listenerSet) closeAll() {
	for addr, b := range s.byAddr {
		b.file.Close()
		b.ln.Close()
		delete(s.byAddr, addr)
	}
}
