package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runOverlay runs deploy/build/runtime-overlay.sh into a fresh directory.
func runOverlay(t *testing.T, env ...string) (out, dir, stderr string) {
	t.Helper()
	dir = t.TempDir()
	cmd := exec.Command("sh", filepath.Join("build", "runtime-overlay.sh"), dir)
	cmd.Env = append(os.Environ(), env...)
	var errb strings.Builder
	cmd.Stderr = &errb
	o, err := cmd.Output()
	if err != nil {
		t.Fatalf("runtime-overlay.sh: %v\n%s", err, errb.String())
	}
	return strings.TrimSpace(string(o)), dir, errb.String()
}

// The overlay replaces netpoll_epoll.go by a copy that differs in the one
// return statement, and adds the marker file to cmd/pingora-master.
func TestRuntimeOverlayApplies(t *testing.T) {
	src := filepath.Join(goEnv(t, "GOROOT"), "src", "runtime", "netpoll_epoll.go")
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Skipf("no epoll poller in this toolchain: %v", err)
	}
	out, dir, stderr := runOverlay(t)
	if out == "" {
		t.Fatalf("the patch did not apply to %s; the script said: %s", goEnv(t, "GOVERSION"), stderr)
	}
	if want := "-overlay=" + filepath.Join(dir, "overlay.json") + " -tags=pingora_netpoll_fifo"; out != want {
		t.Fatalf("printed %q, want %q", out, want)
	}
	var ov struct{ Replace map[string]string }
	if b, err := os.ReadFile(filepath.Join(dir, "overlay.json")); err != nil || json.Unmarshal(b, &ov) != nil {
		t.Fatalf("overlay.json: %v %s", err, b)
	}
	root, _ := filepath.Abs("..")
	marker := filepath.Join(root, "cmd", "pingora-master", "runtime_patch.go")
	if len(ov.Replace) != 2 || ov.Replace[src] == "" || ov.Replace[marker] == "" {
		t.Fatalf("overlay.json replaces %v; want %s and %s", ov.Replace, src, marker)
	}
	patched, err := os.ReadFile(ov.Replace[src])
	if err != nil {
		t.Fatal(err)
	}
	before, after, ok := strings.Cut(string(orig), "\n\treturn toRun, delta\n")
	if !ok || !strings.HasPrefix(string(patched), before+"\n") || !strings.HasSuffix(string(patched), "\n\treturn inOrder, delta\n"+after) {
		t.Errorf("the patched netpoll_epoll.go differs from the original elsewhere than at `return toRun, delta`")
	}
	if m, _ := os.ReadFile(ov.Replace[marker]); !strings.Contains(string(m), `runtimePatch = "netpoll-fifo"`) {
		t.Errorf("marker file: %q", m)
	}
}

// A Go release whose netpoll does not end as expected gets the stock
// runtime, with a warning, and no overlay flag.
func TestRuntimeOverlayFallsBack(t *testing.T) {
	other := filepath.Join(t.TempDir(), "netpoll_epoll.go")
	body := "package runtime\n\nfunc netpoll(delay int64) (gList, int32) {\n\treturn gList{}, 0\n}\n"
	if err := os.WriteFile(other, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, dir, stderr := runOverlay(t, "RUNTIME_SRC="+other)
	if out != "" {
		t.Errorf("printed %q for a netpoll without the line; want nothing", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "overlay.json")); err == nil {
		t.Errorf("left an overlay.json in the overlay directory")
	}
	if !strings.Contains(stderr, "building with the stock Go runtime") {
		t.Errorf("no warning; stderr: %q", stderr)
	}
}

// With RUNTIME_PATCH=required (release builds, the Dockerfile) the same
// case stops the build: the script fails and prints no flag, and so does
// `make build`, before compiling anything.
func TestRuntimeOverlayRequired(t *testing.T) {
	other := filepath.Join(t.TempDir(), "netpoll_epoll.go")
	if err := os.WriteFile(other, []byte("package runtime\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", filepath.Join("build", "runtime-overlay.sh"), t.TempDir())
	cmd.Env = append(os.Environ(), "RUNTIME_SRC="+other, "RUNTIME_PATCH=required")
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err == nil || len(out) != 0 {
		t.Errorf("required, patch does not apply: err %v, printed %q; want a failure and nothing printed", err, out)
	}
	if !strings.Contains(errb.String(), "RUNTIME_PATCH=required") {
		t.Errorf("stderr does not say why the build stops: %q", errb.String())
	}

	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed: the Makefile half is not checked")
	}
	mk := exec.Command("make", "-n", "-C", "..", "build", "RUNTIME_PATCH=required")
	mk.Env = append(os.Environ(), "RUNTIME_SRC="+other)
	b, err := mk.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "RUNTIME_PATCH=required and the runtime patch does not apply") {
		t.Errorf("make build RUNTIME_PATCH=required with a netpoll the patch does not fit: err %v\n%s", err, b)
	}
	if strings.Contains(string(b), "go build") {
		t.Errorf("make went on to build:\n%s", b)
	}
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// A Go release that already runs ready goroutines in epoll's order, with
// netpoll's last line unchanged, must not be patched: the text alone would
// match, and the patch would turn the order back. The script builds its
// probe with the stock runtime and sees the order; here the probe's build
// gets a first run's overlay, which stands for such a release.
func TestRuntimeOverlaySkipsARuntimeAlreadyInOrder(t *testing.T) {
	if _, err := os.Stat(filepath.Join(goEnv(t, "GOROOT"), "src", "runtime", "netpoll_epoll.go")); err != nil {
		t.Skipf("no epoll poller in this toolchain: %v", err)
	}
	first, _, stderr := runOverlay(t)
	if first == "" {
		t.Fatalf("the patch did not apply to the stock runtime; the script said: %s", stderr)
	}
	inOrder, _, _ := strings.Cut(first, " ")
	for _, mode := range []string{"1", "required"} {
		out, dir, stderr := runOverlay(t, "RUNTIME_PROBE_GOFLAGS="+inOrder, "RUNTIME_PATCH="+mode)
		if out != "" {
			t.Errorf("RUNTIME_PATCH=%s, runtime already in order: printed %q; want nothing", mode, out)
		}
		if !strings.Contains(stderr, "already runs ready goroutines in epoll's order; the patch is not applied") {
			t.Errorf("RUNTIME_PATCH=%s: the script does not say why it leaves the runtime alone: %q", mode, stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "overlay.json")); err == nil {
			t.Errorf("RUNTIME_PATCH=%s: wrote an overlay.json", mode)
		}
	}
}

// A probe that cannot tell the order (here: it does not build) leaves the
// runtime alone, and stops a release build.
func TestRuntimeOverlayProbeFails(t *testing.T) {
	bad := "-overlay=" + filepath.Join(t.TempDir(), "missing.json")
	out, _, stderr := runOverlay(t, "RUNTIME_PROBE_GOFLAGS="+bad)
	if out != "" || !strings.Contains(stderr, "the wake-order probe did not run") {
		t.Errorf("probe fails: printed %q, stderr %q; want nothing printed and the reason", out, stderr)
	}
	cmd := exec.Command("sh", filepath.Join("build", "runtime-overlay.sh"), t.TempDir())
	cmd.Env = append(os.Environ(), "RUNTIME_PROBE_GOFLAGS="+bad, "RUNTIME_PATCH=required")
	if o, err := cmd.Output(); err == nil || len(o) != 0 {
		t.Errorf("probe fails, RUNTIME_PATCH=required: err %v, printed %q; want a failure", err, o)
	}
}

// What `go version -m` (SBOM and vulnerability scanners) and `-v` say
// about a binary from `make build`, patched and stock: the patch shows as
// the build tag pingora_netpoll_fifo exactly when the binary carries it,
// and the patched binary passes its own wake-order check.
func TestBuildInfoRecordsRuntimePatch(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	if _, err := os.Stat(filepath.Join(goEnv(t, "GOROOT"), "src", "runtime", "netpoll_epoll.go")); err != nil {
		t.Skipf("no epoll poller in this toolchain: %v", err)
	}
	dir := t.TempDir()
	for _, c := range []struct {
		patch   string
		patched bool
	}{{"0", false}, {"1", true}} {
		bin := filepath.Join(dir, "pingora-master."+c.patch)
		mk := exec.Command("make", "-s", "-C", "..", "build", "RUNTIME_PATCH="+c.patch, "BIN="+bin)
		// The Makefile, not the caller (make test), chooses the runtime.
		mk.Env = append(os.Environ(), "GOFLAGS=")
		if b, err := mk.CombinedOutput(); err != nil {
			t.Fatalf("make build RUNTIME_PATCH=%s: %v\n%s", c.patch, err, b)
		}
		info, err := exec.Command("go", "version", "-m", bin).Output()
		if err != nil {
			t.Fatalf("go version -m: %v", err)
		}
		tagged := strings.Contains(string(info), "\tbuild\t-tags=pingora_netpoll_fifo\n")
		if tagged != c.patched {
			t.Errorf("RUNTIME_PATCH=%s: go version -m shows the tag: %v, want %v\n%s", c.patch, tagged, c.patched, info)
		}
		v, err := exec.Command(bin, "-v").Output()
		if err != nil {
			t.Fatalf("%s -v: %v", bin, err)
		}
		if says := strings.Contains(string(v), "+netpoll-fifo"); says != c.patched {
			t.Errorf("RUNTIME_PATCH=%s: -v says %q; want the patch named: %v", c.patch, v, c.patched)
		}
		if c.patched {
			if b, err := exec.Command(bin, "-check-wake-order").CombinedOutput(); err != nil {
				t.Errorf("patched binary: -check-wake-order: %v\n%s", err, b)
			}
		}
	}
}

// The image's build stage runs the wake-order check on the binary it ships,
// right after building it, whenever the patch is applied or required.
func TestDockerfileChecksWakeOrder(t *testing.T) {
	const bin = "/out/usr/local/sbin/pingora-master"
	for _, in := range dockerInstructions(t) {
		if !strings.HasPrefix(in, "RUN ") || !strings.Contains(in, "go build") {
			continue
		}
		built := strings.Index(in, "-o "+bin+" ")
		check := strings.Index(in, bin+" -check-wake-order")
		if built < 0 || check < built {
			t.Fatalf("the build step does not run `%s -check-wake-order` after building it:\n%s", bin, in)
		}
		if !strings.Contains(in, `if [ -n "$overlay" ] || [ "${RUNTIME_PATCH}" = required ]; then`) {
			t.Errorf("the wake-order check is not bound to an applied or required patch:\n%s", in)
		}
		return
	}
	t.Fatal("no RUN instruction builds the binary")
}
