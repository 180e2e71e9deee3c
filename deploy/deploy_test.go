package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

// The binary under test, built once for the whole package (every test that
// runs `-t` needs it; building it per test would cost seconds each).
var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary returns the path of a freshly built pingora-master. It is built as
// deploy/docker/Dockerfile builds it (CGO_ENABLED=0, -trimpath), so the
// image's build step is exercised too.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "pingora-deploy-test-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "pingora-master")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", binPath,
			"github.com/pingora-go/pingora/cmd/pingora-master")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building pingora-master: %v", buildErr)
	}
	return binPath
}

// run runs the binary with args and a bounded time, and returns its combined
// output and exit code.
func run(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	bin := binary(t) // built first: a cold build must not eat the run's 30 s
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(testEnv(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("pingora-master %s: did not finish in 30s; output:\n%s", strings.Join(args, " "), out.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("pingora-master %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return out.String(), code
}

// testEnv is the environment the binary runs with: the test's, without what
// would change the outcome (a systemd notify socket, the example's
// PINGORA_WORKERS).
func testEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "PINGORA_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// checkConfig runs `pingora-master -t -c path` and fails the test unless the
// binary accepts the file as an operator would see it: exit 0 and
// "configuration PATH is ok".
func checkConfig(t *testing.T, path string, env ...string) {
	t.Helper()
	out, code := run(t, env, "-t", "-c", path)
	if code != 0 || !strings.Contains(out, "is ok") {
		t.Fatalf("pingora-master -t -c %s: exit %d, want 0 and \"is ok\"; output:\n%s", path, code, out)
	}
}

// loadConfig loads a deploy file with the config package, for the figures
// other files must agree with (shutdown_timeout against stop timeouts, paths
// against writable directories).
func loadConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	t.Setenv("PINGORA_WORKERS", "") // the example's env() must not see a stray value
	os.Unsetenv("PINGORA_WORKERS")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return cfg
}

// readFile reads a file of the deploy directory (the test's working
// directory).
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lookTool returns the path of a system tool, or skips the test with the
// reason when the machine does not have it (the tests never install tools).
func lookTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package %s): this check runs where it is", name, pkg)
	}
	return p
}

// hasRespondRoute reports whether a route for any host answers path by
// itself with 200: the health endpoint probes and load balancers use.
func hasRespondRoute(routes []config.Route, path string) bool {
	for _, r := range routes {
		if r.Host == "" && r.PathPrefix == path && r.Respond != nil && r.Respond.Status == 200 {
			return true
		}
	}
	return false
}
