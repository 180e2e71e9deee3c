package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	unitFile     = "systemd/pingora-master.service"
	socketFile   = "systemd/pingora-master.socket"
	installedBin = "/usr/local/sbin/pingora-master"
	installedCfg = "/etc/pingora/pingora.hcl"
)

// unit is a parsed systemd unit file: section -> key -> values, in order
// (keys such as ExecStartPre may repeat).
type unit map[string]map[string][]string

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func parseUnit(t *testing.T, src string) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(src))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("unit: bad line %q", line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// systemdSeconds parses the time spans this unit uses ("45s", "90", "2min").
func systemdSeconds(t *testing.T, s string) time.Duration {
	t.Helper()
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(strings.ReplaceAll(s, "min", "m"))
	if err != nil {
		t.Fatalf("time span %q: %v", s, err)
	}
	return d
}

// systemd itself accepts the units: systemd-analyze verify reports nothing
// about the service, nor about the socket unit that activates it (unknown
// keys and bad values are only warnings there, so any line naming either
// unit fails the test, not just the exit code).
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := lookTool(t, "systemd-analyze", "systemd")
	bin := binary(t)
	src := readFile(t, unitFile)
	if !strings.Contains(src, installedBin) {
		t.Fatalf("%s does not run %s", unitFile, installedBin)
	}
	// verify checks that every Exec*= binary exists: point them at the
	// freshly built one. The socket unit is verified beside its service,
	// which verify loads to check what the socket activates.
	dir := t.TempDir()
	service := filepath.Join(dir, "pingora-master.service")
	if err := os.WriteFile(service, []byte(strings.ReplaceAll(src, installedBin, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "pingora-master.socket")
	if err := os.WriteFile(socket, []byte(readFile(t, socketFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, units := range [][]string{{service}, {socket, service}} {
		out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
		var about []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "pingora-master.service") || strings.Contains(line, "pingora-master.socket") {
				about = append(about, line)
			}
		}
		if err != nil || len(about) > 0 {
			t.Fatalf("systemd-analyze verify %v: %v\n%s", units, err, out)
		}
	}
}

// The socket unit hands the master sockets it takes: each ListenStream= is
// the address of a listener (or the admin address) of the production
// example, written with the same IP (the master matches a socket to a
// listener by address), and the master, not systemd, accepts.
func TestSystemdSocketMatchesConfig(t *testing.T) {
	u := parseUnit(t, readFile(t, socketFile))
	cfg := loadConfig(t, example(t))
	addrs := map[string]bool{}
	for _, l := range cfg.Listeners {
		addrs[l.Address] = true
	}
	if cfg.Admin != nil {
		addrs[cfg.Admin.Address] = true
	}
	streams := u["Socket"]["ListenStream"]
	if len(streams) == 0 {
		t.Fatal("no ListenStream= in the socket unit")
	}
	for _, ls := range streams {
		want := ls
		if _, err := strconv.Atoi(ls); err == nil {
			want = ":" + ls // a bare port: every interface, as ":port" in the config
		}
		if !addrs[want] {
			t.Errorf("ListenStream=%s is no listener address of deploy/pingora.hcl (%v): the master would close it", ls, addrs)
		}
	}
	if a := u.get("Socket", "Accept"); a != "" && a != "no" && a != "false" {
		t.Errorf("Accept=%s: systemd would accept connections itself and start one service per connection", a)
	}
	if u.get("Install", "WantedBy") != "sockets.target" {
		t.Errorf("WantedBy=%q, want sockets.target", u.get("Install", "WantedBy"))
	}
}

// The unit agrees with the production example it runs: stop timeout above
// the drain, the same PID file, room for limits.nofile, and every file the
// master writes inside a writable path despite ProtectSystem=strict.
func TestSystemdUnitMatchesConfig(t *testing.T) {
	u := parseUnit(t, readFile(t, unitFile))
	cfg := loadConfig(t, example(t))
	svc := "Service"

	want := map[string]string{
		"Type":          "notify",
		"NotifyAccess":  "all", // the new master after an upgrade sends MAINPID=
		"KillSignal":    "SIGTERM",
		"KillMode":      "mixed", // SIGTERM to the master only: it drains its workers
		"PIDFile":       cfg.PIDFile,
		"ProtectSystem": "strict",
		"ExecStartPre":  installedBin + " -t -c " + installedCfg,
		"ExecStart":     installedBin + " -c " + installedCfg,
		"ExecReload":    installedBin + " -s reload -c " + installedCfg,
	}
	for k, v := range want {
		if got := u.get(svc, k); got != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	if stop := systemdSeconds(t, u.get(svc, "TimeoutStopSec")); stop <= cfg.ShutdownTimeout {
		t.Errorf("TimeoutStopSec %v is not above shutdown_timeout %v: systemd would SIGKILL a drain", stop, cfg.ShutdownTimeout)
	}
	// Pets pause while a worker misses its heartbeats, up to
	// worker_heartbeat_timeout and a replacement's start.
	if wd := systemdSeconds(t, u.get(svc, "WatchdogSec")); wd <= 2*cfg.WorkerHeartbeatTimeout {
		t.Errorf("WatchdogSec %v is not above twice worker_heartbeat_timeout %v: systemd would restart the service for a worker the master is replacing", wd, cfg.WorkerHeartbeatTimeout)
	}
	if n, err := strconv.ParseUint(u.get(svc, "LimitNOFILE"), 10, 64); err != nil || n < cfg.Limits.NoFile {
		t.Errorf("LimitNOFILE=%q is below limits.nofile %d", u.get(svc, "LimitNOFILE"), cfg.Limits.NoFile)
	}

	caps := strings.Fields(u.get(svc, "CapabilityBoundingSet"))
	for _, c := range []string{"CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_SETPCAP"} {
		if !contains(caps, c) {
			t.Errorf("CapabilityBoundingSet lacks %s", c)
		}
	}
	if u.get(svc, "AmbientCapabilities") != "" {
		t.Error("AmbientCapabilities set: workers must end up with no capability")
	}

	writable := strings.Fields(u.get(svc, "ReadWritePaths"))
	written := []string{cfg.PIDFile, cfg.LockFile, cfg.ControlSocket, cfg.Log.File}
	if cfg.AccessLog != nil {
		written = append(written, cfg.AccessLog.File)
	}
	for _, p := range written {
		if !under(p, writable) {
			t.Errorf("%s is not under ReadWritePaths %v: read-only for the service", p, writable)
		}
	}
}

// The sysusers.d file creates the user and group the example's workers run
// as, with no login shell: run for real against an empty root.
func TestSysusersCreatesWorkerUser(t *testing.T) {
	sysusers := lookTool(t, "systemd-sysusers", "systemd")
	cfg := loadConfig(t, example(t))
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sysusers, "--root="+root, "-")
	cmd.Stdin = strings.NewReader(readFile(t, "systemd/pingora.sysusers"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}

	var uid, gid, shell string
	for _, line := range strings.Split(readFile(t, filepath.Join(root, "etc/passwd")), "\n") {
		if f := strings.Split(line, ":"); len(f) == 7 && f[0] == cfg.User {
			uid, gid, shell = f[2], f[3], f[6]
		}
	}
	if uid == "" {
		t.Fatalf("no user %q in the passwd systemd-sysusers wrote", cfg.User)
	}
	if uid == "0" {
		t.Fatalf("user %q has uid 0", cfg.User)
	}
	if !strings.HasSuffix(shell, "nologin") {
		t.Errorf("user %q has shell %q, want nologin", cfg.User, shell)
	}
	var groupGID string
	for _, line := range strings.Split(readFile(t, filepath.Join(root, "etc/group")), "\n") {
		if f := strings.Split(line, ":"); len(f) == 4 && f[0] == cfg.Group {
			groupGID = f[2]
		}
	}
	if groupGID == "" || groupGID != gid {
		t.Errorf("group %q (gid %q) is not user %q's primary group (gid %q)", cfg.Group, groupGID, cfg.User, gid)
	}
}

// The tmpfiles.d file creates every directory the example's master writes
// into, root-owned: run for real against an empty root.
func TestTmpfilesCreatesDirectories(t *testing.T) {
	tmpfiles := lookTool(t, "systemd-tmpfiles", "systemd")
	cfg := loadConfig(t, example(t))
	root := t.TempDir()
	cmd := exec.Command(tmpfiles, "--create", "--root="+root, "-")
	cmd.Stdin = strings.NewReader(readFile(t, "systemd/pingora.tmpfiles"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles --create: %v\n%s", err, out)
	}
	written := []string{cfg.PIDFile, cfg.LockFile, cfg.ControlSocket, cfg.Log.File}
	if cfg.AccessLog != nil {
		written = append(written, cfg.AccessLog.File)
	}
	for _, p := range written {
		dir := filepath.Dir(p)
		st, err := os.Stat(filepath.Join(root, dir))
		if err != nil || !st.IsDir() {
			t.Errorf("tmpfiles.d does not create %s (for %s): %v", dir, p, err)
			continue
		}
		if st.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s is group- or world-writable (%v)", dir, st.Mode().Perm())
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// under reports whether path is one of dirs or inside one of them.
func under(path string, dirs []string) bool {
	for _, d := range dirs {
		d = strings.TrimPrefix(d, "-")
		if path == d || strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}
