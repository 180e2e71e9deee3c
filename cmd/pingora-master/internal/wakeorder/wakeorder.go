// Package wakeorder observes the order in which the Go runtime's poller
// runs goroutines that one poll found ready. It is the one probe shared by
// deploy/build/runtime-overlay.sh (which builds ./probe with the stock
// runtime and patches the poller only if that shows the reversed order),
// the binary's hidden -check-wake-order flag (the release artifact checks
// itself) and TestRuntimeNetpollOrder.
package wakeorder

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Order names what an observation shows.
type Order string

const (
	// FIFO: goroutines ran in the order their descriptors became ready
	// (epoll's order), as event loops serve them.
	FIFO Order = "fifo"
	// LIFO: they ran in the reverse order, the stock runtime.netpoll's.
	LIFO Order = "lifo"
	// Mixed: neither; e.g. a poll between two writes split the batch.
	Mixed Order = "mixed"
)

// Descriptors is how many goroutines an observation parks: enough that an
// accidental match is impossible, well under netpoll's 128 events per poll.
const Descriptors = 16

// attempts bounds the retries of an observation that came out Mixed: on a
// loaded machine sysmon may poll between two of the writes and split the
// batch, which says nothing about the order within one poll.
const attempts = 5

// Observation is one measured wake order.
type Observation struct {
	Order Order
	Ran   []int // the goroutines in the order they ran; made ready as 0..n-1
}

func (o Observation) String() string {
	ran := make([]string, len(o.Ran))
	for i, g := range o.Ran {
		ran[i] = strconv.Itoa(g)
	}
	return string(o.Order) + " " + strings.Join(ran, " ")
}

// Observe measures the wake order, retrying a Mixed result a few times.
// It sets GOMAXPROCS to 1 while it runs: call it while nothing else runs.
func Observe() (Observation, error) {
	var obs Observation
	for range attempts {
		ran, err := wakeOrder(Descriptors)
		if err != nil {
			return Observation{}, err
		}
		obs = Observation{Order: classify(ran), Ran: ran}
		if obs.Order != Mixed {
			break
		}
	}
	return obs, nil
}

func classify(ran []int) Order {
	fifo, lifo := true, true
	for i, g := range ran {
		fifo = fifo && g == i
		lifo = lifo && g == len(ran)-1-i
	}
	switch {
	case fifo:
		return FIFO
	case lifo:
		return LIFO
	}
	return Mixed
}

// wakeOrder parks n goroutines on n pipes, one each, makes the pipes
// readable in the order 0..n-1 while holding the only P, and returns the
// order in which the goroutines then ran. With one P every step is
// deterministic: a goroutine that signals it is about to read keeps the P
// until the read parks it, and the writes all land before the P is given
// up, so that one poll reports all n descriptors.
func wakeOrder(n int) (ran []int, err error) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ready := make(chan int, n)
	woke := make(chan int, n)
	writers := make([]*os.File, 0, n)
	defer func() {
		for _, w := range writers {
			w.Close() // wakes a reader still parked after an error
		}
	}()
	for i := range n {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("pipe: %w", err)
		}
		writers = append(writers, w)
		go func() {
			defer r.Close()
			ready <- i
			var b [1]byte
			r.Read(b[:])
			woke <- i
		}()
	}
	for range n {
		<-ready
	}
	for i, w := range writers {
		if _, err := w.Write([]byte{1}); err != nil {
			return nil, fmt.Errorf("write to pipe %d: %w", i, err)
		}
	}
	ran = make([]int, 0, n)
	for range n {
		ran = append(ran, <-woke)
	}
	return ran, nil
}

// SelfCheck is the binary's hidden -check-wake-order: it observes the wake
// order in-process and exits 0 only if it is epoll's order, so that a
// release build (deploy/docker/Dockerfile, make bench-runtime) verifies the
// artifact it ships, not a test binary. goRuntime names the runtime for the
// message.
func SelfCheck(stdout, stderr io.Writer, goRuntime string) int {
	obs, err := Observe()
	if err != nil {
		fmt.Fprintf(stderr, "pingora-master: wake order of %s: %v\n", goRuntime, err)
		return 1
	}
	if obs.Order != FIFO {
		fmt.Fprintf(stderr, "pingora-master: %s runs goroutines made ready as 0..%d in the order %s, not epoll's\n", goRuntime, len(obs.Ran)-1, obs)
		return 1
	}
	fmt.Fprintf(stdout, "pingora-master: %s runs ready goroutines in epoll's order (%s)\n", goRuntime, obs)
	return 0
}
