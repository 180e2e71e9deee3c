package deploy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const logrotateFile = "logrotate/pingora"

// logrotate accepts the file (debug mode: it reads and plans, rotates
// nothing; any "error:" line is a problem even when the exit code is 0).
func TestLogrotateConfigParses(t *testing.T) {
	logrotate := lookTool(t, "logrotate", "logrotate")
	state := filepath.Join(t.TempDir(), "state")
	out, err := exec.Command(logrotate, "-d", "-s", state, logrotateFile).CombinedOutput()
	if err != nil || strings.Contains(string(out), "error:") {
		t.Fatalf("logrotate -d %s: %v\n%s", logrotateFile, err, out)
	}
}

// The rotation covers the example's log files, reopens them through the
// master (no copytruncate, which loses lines), and only when it runs.
func TestLogrotateMatchesConfig(t *testing.T) {
	src := readFile(t, logrotateFile)
	cfg := loadConfig(t, example(t))

	if regexp.MustCompile(`(?m)^\s*copytruncate\b`).MatchString(src) {
		t.Error("copytruncate: lines written between the copy and the truncation are lost; use -s reopen")
	}
	post := regexp.MustCompile(`(?s)postrotate\n(.*?)\n\s*endscript`).FindStringSubmatch(src)
	if post == nil {
		t.Fatal("no postrotate script")
	}
	if !strings.Contains(post[1], installedBin+" -s reopen -c "+installedCfg) {
		t.Errorf("postrotate does not run %s -s reopen -c %s:\n%s", installedBin, installedCfg, post[1])
	}
	if !strings.Contains(post[1], cfg.PIDFile) {
		t.Errorf("postrotate does not check the example's PID file %s", cfg.PIDFile)
	}

	pattern := regexp.MustCompile(`(?m)^(/\S+)\s*\{`).FindStringSubmatch(src)
	if pattern == nil {
		t.Fatal("no log file pattern")
	}
	files := []string{cfg.Log.File}
	if cfg.AccessLog != nil {
		files = append(files, cfg.AccessLog.File)
	}
	for _, f := range files {
		if ok, _ := filepath.Match(pattern[1], f); !ok {
			t.Errorf("%s does not match the rotated pattern %s", f, pattern[1])
		}
	}
}

// The file does its job for real: logrotate (forced) renames the logs of a
// running master and its postrotate `-s reopen` makes the worker write the
// next request's access line to the new file, the old one keeping only what
// came before. Paths are moved into a temporary directory; nothing else of
// the file changes.
func TestLogrotateRotatesRunningMaster(t *testing.T) {
	logrotate := lookTool(t, "logrotate", "logrotate")
	if os.Geteuid() != 0 {
		t.Skip("not root: the file creates root-owned logs (`create 0640 root root`), as it does in production")
	}
	bin := binary(t)
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	if err := os.Mkdir(logDir, 0o750); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	conf := filepath.Join(dir, "pingora.hcl")
	pid := filepath.Join(dir, "pingora.pid")
	cfgText := fmt.Sprintf(`pid_file         = %q
workers          = 1
shutdown_timeout = "5s"
log {
  file = "%s/error.log"
}
access_log {
  file           = "%s/access.log"
  flush_interval = "100ms"
}
listener "l" { address = %q }
route "r" {
  respond { body = "ok" }
}
`, pid, logDir, logDir, addr)
	if err := os.WriteFile(conf, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMaster(t, conf, "http://"+addr+"/up")

	request := func(path string) {
		t.Helper()
		if status, _, _, err := get("http://"+addr+path, ""); err != nil || status != 200 {
			t.Fatalf("GET %s: %d %v", path, status, err)
		}
	}
	access := filepath.Join(logDir, "access.log")
	contains := func(file, s string) func() bool {
		return func() bool {
			b, _ := os.ReadFile(file)
			return strings.Contains(string(b), s)
		}
	}
	request("/before-rotation")
	waitFor(t, 5*time.Second, "the access line of /before-rotation", contains(access, "/before-rotation"))

	rot := strings.NewReplacer(
		"/var/log/pingora", logDir,
		"/run/pingora/pingora.pid", pid,
		installedBin, bin,
		installedCfg, conf,
	).Replace(readFile(t, logrotateFile))
	rotConf := filepath.Join(dir, "logrotate.conf")
	if err := os.WriteFile(rotConf, []byte(rot), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lr, err := exec.CommandContext(ctx, logrotate, "-f", "-s", filepath.Join(dir, "state"), rotConf).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate -f: %v\n%s\nmaster output:\n%s", err, lr, m.output())
	}

	rotated, _ := filepath.Glob(access + "-*")
	if len(rotated) != 1 {
		t.Fatalf("want one rotated access log, found %v", rotated)
	}
	request("/after-rotation")
	waitFor(t, 5*time.Second, "the access line of /after-rotation in the new file", contains(access, "/after-rotation"))
	old := readFile(t, rotated[0])
	if !strings.Contains(old, "/before-rotation") || strings.Contains(old, "/after-rotation") {
		t.Errorf("rotated access log should hold only what came before the rotation:\n%s", old)
	}
	if st, err := os.Stat(filepath.Join(logDir, "error.log")); err != nil || st.Size() == 0 {
		t.Errorf("the master wrote nothing to the new error.log after the reopen (%v)", err)
	}
}
