package main

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startActivated starts the master as systemd would for a .socket unit:
// the sockets already bound and listening as descriptors 3, 4, ..., with
// LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set to the master's own pid
// (the shell's exec keeps its pid, which is how the variable can name it
// before the master runs).
func (in *instance) startActivated(names string, sockets ...*os.File) *proc {
	in.tb.Helper()
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, in.Bin, "-c", in.Conf)
	cmd.Env = append(os.Environ(), in.Env...)
	cmd.Env = append(cmd.Env, "LISTEN_FDS="+strconv.Itoa(len(sockets)), "LISTEN_FDNAMES="+names)
	cmd.ExtraFiles = sockets
	cmd.Stdout = openAppend(in.tb, in.Stdout)
	cmd.Stderr = openAppend(in.tb, in.Stderr)
	p, err := startProc(cmd)
	if err != nil {
		in.tb.Fatalf("start %s: %v", in.Bin, err)
	}
	if in.first == nil {
		in.first = p
	}
	return p
}

// listenFile binds a listening TCP socket on addr and returns it as a file
// (the only descriptor of it the test keeps).
func listenFile(t *testing.T, addr string) *os.File {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestSocketActivation: started with a listening socket from "systemd" for
// the config's listener address, the master serves on that very socket
// (it could not bind the port itself: the socket holds it); a second
// socket, for an address no listener has, is logged and closed. Reload and
// binary upgrade keep the activated socket like a bound one.
func TestSocketActivation(t *testing.T) {
	in := newInstance(t, 2)
	public := listenFile(t, in.Addr)
	inode := listenInode(in.Port)
	strayPort := freePort(t)
	stray := listenFile(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(strayPort)))

	p := in.startActivated("web:stray", public, stray)
	public.Close()
	stray.Close()
	in.WaitServing(p, 0)
	if got := listenInode(in.Port); got != inode {
		t.Fatalf("the master listens on socket inode %d, want systemd's %d", got, inode)
	}
	waitFor(t, 5*time.Second, "the stray socket closed", func() (bool, string) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(strayPort)), time.Second)
		if err != nil {
			return true, ""
		}
		c.Close()
		return false, "the port of the socket no listener claims still accepts connections"
	})
	log := readText(in.ErrLog)
	for _, want := range []string{"listening on the socket from systemd", "web", "matches no listener address, closing it", "stray"} {
		if !strings.Contains(log, want) {
			t.Errorf("error log lacks %q:\n%s", want, tail(in.ErrLog, 20))
		}
	}
	master := in.MustMasterPID()

	in.SetGen(1)
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload: %s", r)
	}
	in.assertServesNow("after a reload", 1)
	if got := listenInode(in.Port); got != inode {
		t.Errorf("after a reload the port is socket inode %d, want systemd's %d", got, inode)
	}

	in.SetGen(2)
	if r := in.Ctl("upgrade"); r.Code != 0 {
		t.Fatalf("-s upgrade: %s", r)
	}
	newMaster := in.WaitServing(nil, 2)
	in.WaitDead("the old master", []int{master}, drainTimeout)
	in.assertServesNow("after an upgrade", 2)
	if got := listenInode(in.Port); got != inode {
		t.Errorf("after an upgrade the port is socket inode %d, want systemd's %d", got, inode)
	}
	if newMaster == master {
		t.Errorf("the upgrade left master %d", master)
	}
	in.Signal(syscall.SIGTERM)
	in.WaitDead("the master", []int{newMaster}, 15*time.Second)
}
