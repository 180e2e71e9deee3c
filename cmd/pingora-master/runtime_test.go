package main

import (
	"os"
	"runtime"
	"slices"
	"testing"
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
	order := netpollWakeOrder(t, 16)
	if runtimePatch == "" {
		t.Skipf("built with the stock Go runtime (RUNTIME_PATCH=0, or the patch did not apply); wake order %v", order)
	}
	want := make([]int, len(order))
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(order, want) {
		t.Fatalf("runtime %s: goroutines made ready in the order 0..%d ran in the order %v", goRuntime(), len(order)-1, order)
	}
}

// netpollWakeOrder parks n goroutines on n pipes, one each, makes the pipes
// readable in the order 0..n-1 while holding the only P, and returns the
// order in which the goroutines then ran. With one P every step is
// deterministic: a goroutine that signals it is about to read keeps the P
// until the read parks it, and the writes all land before the P is given
// up, so that one poll reports all n descriptors.
func netpollWakeOrder(t *testing.T, n int) []int {
	t.Helper()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ready := make(chan int, n)
	woke := make(chan int, n)
	writers := make([]*os.File, n)
	for i := range n {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		writers[i] = w
		go func() {
			ready <- i
			var b [1]byte
			r.Read(b[:])
			woke <- i
		}()
	}
	for range n {
		<-ready
	}
	for _, w := range writers {
		if _, err := w.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	order := make([]int, 0, n)
	for range n {
		order = append(order, <-woke)
	}
	return order
}
