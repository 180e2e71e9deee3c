package master

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

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

// pet tells systemd's watchdog (WatchdogSec=) that the service is alive.
func (n *notifier) pet() { n.send("WATCHDOG=1") }

// watchdogInterval is how often to pet systemd's watchdog: half of
// $WATCHDOG_USEC, or 0 when the service has no watchdog. $WATCHDOG_PID
// names the process systemd expects the pets from; a master started by a
// binary upgrade inherits its predecessor's, and takes over its role (it
// sent MAINPID), so only a master started otherwise defers to it.
func watchdogInterval(upgraded bool) time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) && !upgraded {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// startWatchdog pets systemd's watchdog from the master's loop every half
// of WatchdogSec, and only while the workers answer their heartbeats
// (workersResponding): a master whose loop hangs, or whose workers hang
// beyond what it can repair (a worker that SIGKILL does not remove, or
// replacements that never serve), stops petting and systemd restarts the
// service. A hung worker the master kills and replaces costs a pet or two,
// well within WatchdogSec when worker_heartbeat_timeout is shorter than it.
func (m *Master) startWatchdog() {
	every := watchdogInterval(m.upg.HasParent())
	if every <= 0 || m.notify.addr == "" {
		return
	}
	m.log.Debug("petting the systemd watchdog", "every", every)
	withheld := false
	var pet func()
	pet = func() {
		if m.stopping {
			return // the successor or systemd's stop takes over
		}
		switch ok := m.workersResponding(); {
		case ok:
			if withheld {
				withheld = false
				m.log.Info("workers respond again: petting the systemd watchdog again")
			}
			m.notify.pet()
		case !withheld:
			withheld = true
			m.log.Warn("not petting the systemd watchdog while a worker is not responding or none serves")
		}
		time.AfterFunc(every, func() { m.events <- pet })
	}
	pet()
}
