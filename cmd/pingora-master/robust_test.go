package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"strings"
	"testing"
)

// TestFailedUpgradeKeepsControlSocket: a new master that fails at any step
// of its start (its control socket, its PID file, its workers) leaves the
// old master reachable: `-s status` (systemd's ExecReload, a health check)
// still answers and the PID file still names it.
func TestFailedUpgradeKeepsControlSocket(t *testing.T) {
	steps := []struct{ name, edit string }{
		// The new master reads the config anew: each breaks one step.
		{"control socket", "control_socket = \"/proc/pingora-test.sock\"\n"},
		{"pid file", "__PIDFILE__"},
		{"workers not ready", "reload_timeout = \"1ms\"\n"},
	}
	in := newInstance(t, 1)
	in.Start()
	master := in.MustMasterPID()
	good := in.ConfigText(in.Params)
	for _, step := range steps {
		bad := good + step.edit
		if step.edit == "__PIDFILE__" {
			bad = strings.Replace(good, `pid_file         = "`+in.PIDFile+`"`,
				`pid_file = "/proc/pingora-test/pingora.pid"
lock_file = "`+in.PIDFile+`.lock"
control_socket = "`+in.Socket+`"`, 1)
			if bad == good {
				t.Fatal("pid_file line not found in the config")
			}
		}
		in.WriteConfigText(bad)
		r := in.Ctl("upgrade")
		if r.Code != 1 {
			t.Fatalf("upgrade failing at the %s: want exit 1\n%s", step.name, r)
		}
		in.WriteConfigText(good)
		r = in.Ctl("status")
		if r.Code != 0 {
			t.Errorf("-s status after an upgrade failing at the %s: want exit 0\n%s", step.name, r)
		}
		if pid, err := in.MasterPID(); err != nil || pid != master {
			t.Errorf("after an upgrade failing at the %s: PID file names %d (%v), want %d", step.name, pid, err, master)
		}
		if !alive(master) {
			t.Fatalf("the old master died after an upgrade failing at the %s", step.name)
		}
	}
}

// TestControlSocketRefusesOtherUsers: the master starts under umask 000;
// nothing it creates beside the control socket is ever reachable by
// another user (the socket appears at its path as 0600, its temporary
// directory as 0700), and even with the socket's mode loosened by hand a
// client running as nobody is refused with an answer, and the refusal is
// logged with the client's pid and uid.
func TestControlSocketRefusesOtherUsers(t *testing.T) {
	in := newInstance(t, 1)
	runDir := filepath.Dir(in.Socket)
	ino, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.InotifyAddWatch(ino, runDir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	bad := make(chan string, 16)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(ino, buf)
			if err != nil || n <= 0 {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				off += unix.SizeofInotifyEvent + int(ev.Len)
				fi, err := os.Lstat(filepath.Join(runDir, name))
				if err != nil {
					continue
				}
				switch {
				case fi.Mode()&os.ModeSocket != 0 && fi.Mode().Perm() != 0o600:
					bad <- fmt.Sprintf("socket %s appeared with mode %v", name, fi.Mode())
				case fi.IsDir() && fi.Mode().Perm() != 0o700:
					bad <- fmt.Sprintf("directory %s appeared with mode %v", name, fi.Mode())
				}
			}
		}
	}()
	old := syscall.Umask(0)
	p := in.StartNoWait()
	syscall.Umask(old)
	in.WaitServing(p, 0)
	unix.Close(ino)
	select {
	case why := <-bad:
		t.Errorf("under umask 000: %s", why)
	default:
	}
	if fi, err := os.Stat(in.Socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket under umask 000: %v %v, want mode 0600", fi.Mode(), err)
	}

	// Loosen what the file modes guard, as a careless operator might: the
	// peer check must hold on its own.
	for path, mode := range map[string]os.FileMode{filepath.Dir(in.Dir): 0o711, in.Dir: 0o711, in.Socket: 0o666} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, in.Bin, "-c", in.Conf, "-s", "status")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "permission denied") {
		t.Errorf("-s status as nobody: want a refusal (exit 1, \"permission denied\"), got %v:\n%s", err, out)
	}
	waitFor(t, 10*time.Second, "the refusal in the error log", func() (bool, string) {
		log := readText(in.ErrLog)
		return strings.Contains(log, "connection refused") && containsField(log, "65534"), tail(in.ErrLog, 10)
	})
	if r := in.Ctl("status"); r.Code != 0 {
		t.Errorf("-s status as root: want exit 0\n%s", r)
	}
}
