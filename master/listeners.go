package master

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/config"
	"golang.org/x/sys/unix"
)

// boundSocket is one listening socket the master holds for its whole
// use: workers get copies, and the master's copy keeps the socket (and its
// accept queue) alive while one generation hands over to the next.
type boundSocket struct {
	ln   net.Listener
	file *os.File // a dup, passed to workers as an ExtraFile
}

// boundListener is the socket of one listener address or, for a reuseport
// listener, its sockets: one per worker slot, all bound with SO_REUSEPORT.
// Worker slot k of every generation gets socket k, so the draining worker
// and its successor share one queue and a replaced worker takes over the
// queue of the one it replaces.
type boundListener struct {
	addr      string
	reusePort bool
	socks     []*boundSocket
}

// listenerSet binds every listener through tableflip's Fds, so a binary
// upgrade hands the very same sockets to the new master. Sockets are keyed
// by address: a listener renamed in the config keeps its socket, and a
// socket is never rebound while it is in the config (no window where the
// port is closed). A reuseport listener's slot sockets are keyed by address
// and slot.
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

// socketsFor is how many sockets listener l needs for a generation of
// the given number of workers.
func socketsFor(l config.Listener, workers int) int {
	if l.ReusePort {
		return max(1, workers)
	}
	return 1
}

// bindAll makes sure every listener of ls is bound, a reuseport one with
// at least one socket per worker slot. On error, sockets this call bound
// are closed again and the set is as before. A listener whose address is
// bound with the other reuseport setting is refused: the port cannot be
// rebound without a gap, so that takes a restart.
func (s *listenerSet) bindAll(ls []config.Listener, workers int) error {
	for _, l := range ls {
		if b := s.byAddr[l.Address]; b != nil && b.reusePort != l.ReusePort {
			return fmt.Errorf("listener %q (%s): reuseport cannot change by reload (the socket is bound with reuseport = %t, the config says %t); restart to apply it",
				l.Name, l.Address, b.reusePort, l.ReusePort)
		}
	}
	var added []string
	had := make(map[string]int)
	undo := func() {
		for _, a := range added {
			s.closeAddr(a)
		}
		for a, n := range had {
			s.trim(a, n)
		}
	}
	for _, l := range ls {
		want := socketsFor(l, workers)
		b := s.byAddr[l.Address]
		if b == nil {
			b = &boundListener{addr: l.Address, reusePort: l.ReusePort}
			s.byAddr[l.Address] = b
			added = append(added, l.Address)
		} else if _, ok := had[l.Address]; !ok {
			had[l.Address] = len(b.socks)
		}
		for len(b.socks) < want {
			sock, err := s.bind(l, len(b.socks))
			if err != nil {
				undo()
				return err
			}
			b.socks = append(b.socks, sock)
			// A new socket gets its options before any worker takes
			// connections from it (a reload that raises workers adds slot
			// sockets to a listener that serves); setOptions sets the
			// same values again once the generation serves.
			secs, backlog := socketOptions(l)
			if err := setSocketOptions(sock.file, secs, backlog); err != nil {
				undo()
				return fmt.Errorf("listener %q (%s): %w", l.Name, l.Address, err)
			}
		}
	}
	return nil
}

func (s *listenerSet) bind(l config.Listener, slot int) (*boundSocket, error) {
	addr := l.Address
	ln, err := s.listen(l, slot)
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
	return &boundSocket{ln: ln, file: f}, nil
}

// fdsKey is the name under which tableflip keeps a socket and hands it to
// the next master: the address, or for a reuseport listener the address
// and slot, so that the new master finds slot k's socket (and a socket of
// the other kind is never taken for this one).
func fdsKey(l config.Listener, slot int) string {
	if l.ReusePort {
		return fmt.Sprintf("%s#reuseport-%d", l.Address, slot)
	}
	return l.Address
}

// listen binds l's socket (slot slot of a reuseport listener) through
// tableflip's Fds: the socket a previous master handed over if there is
// one, else the socket systemd passed for the address if there is one,
// else a new one; in every case it is handed over to the next master of a
// binary upgrade.
func (s *listenerSet) listen(l config.Listener, slot int) (net.Listener, error) {
	addr := l.Address
	lc := &net.ListenConfig{}
	if l.ReusePort {
		lc.Control = setReusePort
	}
	fds := s.fds
	ln, err := fds.ListenWithCallback("tcp", fdsKey(l, slot), func(network, _ string) (net.Listener, error) {
		if l.ReusePort {
			if a := s.claimActivated(addr); a != nil {
				a.Close()
				return nil, fmt.Errorf("listener %q has reuseport = true, but systemd passed a socket for its address: socket activation gives one socket per address, reuseport needs one per worker; remove reuseport or the address from the socket unit", l.Name)
			}
		} else if ln := s.claimActivated(addr); ln != nil {
			return ln, nil
		}
		return lc.Listen(context.Background(), network, addr)
	})
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", addr, err)
	}
	if !listening(ln) {
		// Inherited from a master that had closed (shut down) this
		// listener after a reload removed it: bind a fresh one in its place.
		ln.Close()
		ln, err = lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("bind %s: %w", addr, err)
		}
		if err := fds.AddListener("tcp", fdsKey(l, slot), ln.(tableflip.Listener)); err != nil {
			ln.Close()
			return nil, fmt.Errorf("bind %s: %w", addr, err)
		}
	}
	return ln, nil
}

// setReusePort sets SO_REUSEPORT before bind, so that every slot socket
// of a reuseport listener can bind the same address.
func setReusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set SO_REUSEPORT: %w", serr)
	}
	return nil
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
		secs, backlog := socketOptions(l)
		for _, sock := range b.socks {
			if err := setSocketOptions(sock.file, secs, backlog); err != nil {
				return fmt.Errorf("listener %q (%s): %w", l.Name, l.Address, err)
			}
		}
	}
	return nil
}

// socketOptions are the TCP_DEFER_ACCEPT seconds and the backlog of l's
// sockets.
func socketOptions(l config.Listener) (deferSecs, backlog int) {
	// TCP_DEFER_ACCEPT takes seconds; the kernel holds a silent
	// connection about that long (as nginx, which uses its
	// client_header_timeout) before queueing it anyway, and the
	// worker's header timeout takes over from there.
	if l.DeferAccept {
		deferSecs = max(1, int((l.ClientHeaderTimeout+time.Second-1)/time.Second))
	}
	// listen(2) again on a listening socket only sets its backlog:
	// the queue and the connections in it stay.
	backlog = l.Backlog
	if backlog <= 0 {
		backlog = systemBacklog()
	}
	return deferSecs, backlog
}

func setSocketOptions(f *os.File, deferSecs, backlog int) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferSecs); serr != nil {
			serr = fmt.Errorf("set TCP_DEFER_ACCEPT: %w", serr)
		} else if serr = unix.Listen(int(fd), backlog); serr != nil {
			serr = fmt.Errorf("set backlog %d: %w", backlog, serr)
		}
	}); err != nil {
		return err
	}
	return serr
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

// file returns the descriptor to pass to the worker in slot slot for addr.
func (s *listenerSet) file(addr string, slot int) *os.File {
	b := s.byAddr[addr]
	if b == nil || len(b.socks) == 0 {
		return nil
	}
	if !b.reusePort {
		return b.socks[0].file
	}
	if slot < 0 || slot >= len(b.socks) {
		return nil
	}
	return b.socks[slot].file
}

// retain closes every socket whose address is not in need, and the slot
// sockets of a reuseport listener from need[addr] on. It is called once
// the generations that used a socket no longer accept on it, so nothing
// is waiting in its accept queue that a worker would have taken.
func (s *listenerSet) retain(need map[string]int) []string {
	var closed []string
	for addr, b := range s.byAddr {
		n := need[addr]
		if n <= 0 {
			s.closeAddr(addr)
			closed = append(closed, addr)
		} else if b.reusePort && len(b.socks) > n {
			for k := n; k < len(b.socks); k++ {
				closed = append(closed, fmt.Sprintf("%s (reuseport socket of worker slot %d)", addr, k))
			}
			s.trim(addr, n)
		}
	}
	sort.Strings(closed)
	return closed
}

// trim closes the sockets of addr from slot n on.
func (s *listenerSet) trim(addr string, n int) {
	b := s.byAddr[addr]
	if b == nil {
		return
	}
	for k := n; k < len(b.socks); k++ {
		b.socks[k].close()
	}
	b.socks = b.socks[:min(n, len(b.socks))]
}

// closeAddr closes an address's sockets for good.
func (s *listenerSet) closeAddr(addr string) {
	b := s.byAddr[addr]
	if b == nil {
		return
	}
	delete(s.byAddr, addr)
	for _, sock := range b.socks {
		sock.close()
	}
}

// close closes a socket for good. tableflip's Fds keeps its own duplicate
// (it has no way to forget one), so closing our descriptors would leave
// the port listening with nobody accepting. shutdown(2) acts on the socket
// itself, whatever descriptors point at it: the port stops listening now,
// and a later bind of the same address (SO_REUSEADDR) succeeds. Connections
// still in its accept queue are reset (for a reuseport socket, moved to
// another socket of the group instead where net.ipv4.tcp_migrate_req=1).
func (b *boundSocket) close() {
	if raw, err := b.file.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RDWR) })
	}
	b.file.Close()
	b.ln.Close()
}

// closeAll closes the master's copies (at exit).
func (s *listenerSet) closeAll() {
	for addr, b := range s.byAddr {
		for _, sock := range b.socks {
			sock.file.Close()
			sock.ln.Close()
		}
		delete(s.byAddr, addr)
	}
}
