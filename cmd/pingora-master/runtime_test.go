package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/pingora-go/pingora/cmd/pingora-master/internal/wakeorder"
)

// TestRuntimeNetpollOrder checks the Go runtime this package was built
// with: a build carrying deploy/build/runtime-overlay.sh's patch (as `make
// build` and `make test` do) must run goroutines woken by one poll in the
// order their descriptors became ready, as a worker (one P) relies on for
// its tail latency. It fails if the overlay marks the binary as patched but
// the runtime change did not take, or stopped working in a new Go release.
func TestRuntimeNetpollOrder(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector shuffles the run queue on purpose")
	}
	obs, err := wakeorder.Observe()
	if err != nil {
		t.Fatal(err)
	}
	if runtimePatch == "" {
		t.Skipf("built with the stock Go runtime (RUNTIME_PATCH=0, or the patch did not apply); wake order %s", obs)
	}
	if obs.Order != wakeorder.FIFO {
		t.Fatalf("runtime %s: goroutines made ready in the order 0..%d ran in the order %s", goRuntime(), len(obs.Ran)-1, obs)
	}
}

// The release artifact checks itself: `pingora-master -check-wake-order`
// (hidden; the Dockerfile and make bench-runtime run it) succeeds exactly
// when the binary's runtime runs ready goroutines in epoll's order, and
// says which order it saw. The binary is built as this test package is, so
// the in-process observation is the reference.
func TestCheckWakeOrderFlag(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector shuffles the run queue on purpose")
	}
	want, err := wakeorder.Observe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(builtBinary, "-check-wake-order")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	code := cmd.ProcessState.ExitCode()
	switch want.Order {
	case wakeorder.FIFO:
		if code != 0 || !strings.Contains(stdout.String(), "in epoll's order ("+want.String()+")") {
			t.Errorf("runtime in epoll's order: -check-wake-order exit %d, stdout %q, stderr %q", code, &stdout, &stderr)
		}
	default:
		if code != 1 || !strings.Contains(stderr.String(), "not epoll's") {
			t.Errorf("runtime in order %s: -check-wake-order exit %d, stdout %q, stderr %q; want exit 1 and the order", want, code, &stdout, &stderr)
		}
	}
	if !strings.Contains(stdout.String()+stderr.String(), goRuntime()) {
		t.Errorf("-check-wake-order does not name the runtime %s: %q %q", goRuntime(), &stdout, &stderr)
	}
}
