package master

import (
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// notifier speaks systemd's sd_notify protocol (Type=notify units): one
// datagram per state change to $NOTIFY_SOCKET. It is a no-op outside
// systemd. A new master after a binary upgrade also sends MAINPID, and for
// systemd to accept that from a process other than the main one the unit
// needs NotifyAccess=all.
type notifier struct {
	addr string
}

func newNotifier() *notifier {
	return &notifier{addr: os.Getenv("NOTIFY_SOCKET")}
}

func (n *notifier) send(state string) error {
	if n == nil || n.addr == "" {
		return nil
	}
	addr := n.addr
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:] // abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

func (n *notifier) ready() { n.send("READY=1") }

// readyAsMain is sent by a new master after an upgrade: it is the service's
// main process now.
func (n *notifier) readyAsMain() {
	n.send(fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid()))
}

// reloading marks a reload in progress (Type=notify-reload expects
// MONOTONIC_USEC alongside, on CLOCK_MONOTONIC).
func (n *notifier) reloading() {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	usec := ts.Sec*1e6 + ts.Nsec/1e3
	n.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", usec))
}

func (n *notifier) stopping() { n.send("STOPPING=1") }
