package deploy_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// runningMaster is pingora-master started in the foreground by a test, as
// systemd's ExecStart= or a container's entrypoint starts it.
type runningMaster struct {
	cmd *exec.Cmd
	// outPath holds the process's stdout and stderr: the process writes
	// the file itself, so the test reads it with no copying goroutine.
	outPath string
	exited  chan struct{}
	err     error // Wait's result, once exited is closed
}

// startMaster starts the binary on conf and returns once GET probeURL
// answers 200. The test's cleanup stops it with SIGTERM (graceful) and fails
// the test if it is not gone within 15s.
func startMaster(t *testing.T, conf, probeURL string) *runningMaster {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), "master.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the process has its own copy
	m := &runningMaster{outPath: out.Name(), exited: make(chan struct{})}
	m.cmd = exec.Command(binary(t), "-c", conf)
	m.cmd.Env = testEnv()
	m.cmd.Stdout, m.cmd.Stderr = out, out
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.err = m.cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() {
		if !m.stop() {
			t.Errorf("master did not stop within 15s of SIGTERM; output:\n%s", m.output())
		}
	})
	waitFor(t, 10*time.Second, "the master to serve "+probeURL, func() bool {
		select {
		case <-m.exited:
			t.Fatalf("master exited: %v; output:\n%s", m.err, m.output())
		default:
		}
		status, _, _, err := get(probeURL, "")
		return err == nil && status == http.StatusOK
	})
	// Workers serve before the master binds its control socket and writes
	// its PID file (its own readiness): wait for `-s status` to answer too,
	// so a test's first `-s` finds it.
	waitFor(t, 10*time.Second, "the master to answer -s status", func() bool {
		cmd := exec.Command(binary(t), "-s", "status", "-c", conf)
		cmd.Env = testEnv()
		return cmd.Run() == nil
	})
	return m
}

// stop sends SIGTERM and waits up to 15s; it reports whether the master
// exited, and kills it if not.
func (m *runningMaster) stop() bool {
	select {
	case <-m.exited:
		return true
	default:
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		return true
	case <-time.After(15 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
		return false
	}
}

// get sends one GET without keep-alive (an idle connection would hold a
// graceful stop until its idle timeout) and returns status, header and body.
func get(url, host string) (int, http.Header, string, error) {
	c := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
		// Redirects are answers to check, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, "", err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body), err
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitFor polls cond every 20ms until it holds or the limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// output is what the master has written to stdout and stderr so far.
func (m *runningMaster) output() string {
	b, _ := os.ReadFile(m.outPath)
	return string(b)
}
