package main

import (
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
