package master

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Socket activation: systemd (a .socket unit) binds the listening sockets
// and passes them to the service as descriptors 3, 4, ... with
// LISTEN_PID=<our pid>, LISTEN_FDS=<count> and, optionally,
// LISTEN_FDNAMES=<name:name:...>. The master takes each one as the socket
// of the config listener with the same address (getsockname), so the names
// need not match anything; a config listener with no socket from systemd
// is bound as usual. From there on an activated socket is like any other:
// it goes into tableflip's set (a binary upgrade hands it on), a reload
// keeps it while its address is in the config.

// sdListenFDsStart is the first descriptor systemd passes.
const sdListenFDsStart = 3

// activatedSocket is one listening socket from systemd.
type activatedSocket struct {
	name string // from LISTEN_FDNAMES, or "fd N"
	addr netip.AddrPort
	ln   net.Listener
}

func (a *activatedSocket) String() string {
	return fmt.Sprintf("%s (%s)", a.addr, a.name)
}

// serves reports whether the socket is the one for a config listener
// address: the same port, and the same IP, or for an address without a
// host (every interface) a socket bound to every interface.
func (a *activatedSocket) serves(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port != strconv.Itoa(int(a.addr.Port())) {
		return false
	}
	ip := a.addr.Addr().Unmap()
	if host == "" {
		return ip.IsUnspecified()
	}
	want, err := netip.ParseAddr(host)
	return err == nil && want.Unmap() == ip
}

// takeActivated returns the sockets systemd passed to this process, and
// removes the LISTEN_* variables so that nothing started later (a new
// master of a binary upgrade, which gets the sockets through tableflip)
// takes them for its own. A descriptor that is not a listening TCP socket
// is logged and closed.
func takeActivated(log hclog.Logger) []*activatedSocket {
	pid, fds, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if pid == "" || fds == "" {
		return nil
	}
	if pid != strconv.Itoa(os.Getpid()) {
		// Meant for another process (the one that started us, say).
		log.Debug("ignoring LISTEN_FDS: LISTEN_PID is another process", "listen_pid", pid)
		return nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 || n > 1024 {
		log.Warn("ignoring LISTEN_FDS: not a count of descriptors", "listen_fds", fds)
		return nil
	}
	nameOf := strings.Split(names, ":")
	var out []*activatedSocket
	for i := 0; i < n; i++ {
		fd := sdListenFDsStart + i
		name := fmt.Sprintf("fd %d", fd)
		if i < len(nameOf) && nameOf[i] != "" {
			name = nameOf[i]
		}
		a, err := activated(fd, name)
		if err != nil {
			log.Warn("socket from systemd is not usable, closing it", "socket", name, "error", err)
			continue
		}
		out = append(out, a)
	}
	return out
}

// activated turns descriptor fd into an activatedSocket; fd itself is
// closed either way (the listener holds its own duplicate).
func activated(fd int, name string) (*activatedSocket, error) {
	unix.CloseOnExec(fd) // workers get duplicates, never this one
	f := os.NewFile(uintptr(fd), "systemd socket "+name)
	defer f.Close()
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("not a socket: %w", err)
	}
	if typ != unix.SOCK_STREAM {
		return nil, fmt.Errorf("socket type %d, want a stream (TCP) socket", typ)
	}
	if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || acc == 0 {
		return nil, fmt.Errorf("not listening")
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	var addr netip.AddrPort
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		addr = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		addr = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	default:
		return nil, fmt.Errorf("not a TCP/IP socket (%T)", sa)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	return &activatedSocket{name: name, addr: addr, ln: ln}, nil
}
