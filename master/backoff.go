package master

import "time"

// Crash-loop backoff. A worker that had run for stableAfter is replaced at
// once; one that keeps dying young waits longer each time, doubling from
// firstDelay up to maxDelay, so a broken worker does not spin the CPU while
// a single crash costs nothing.
const (
	stableAfter = 10 * time.Second
	firstDelay  = 250 * time.Millisecond
	maxDelay    = 30 * time.Second
)

// restartDelay is the wait before replacing a worker after its n-th
// consecutive short-lived crash (n >= 1).
func restartDelay(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := firstDelay
	for i := 2; i < n; i++ {
		d *= 2
		if d >= maxDelay {
			return maxDelay
		}
	}
	return d
}

// nextFailures is the crash count after a worker that lived for uptime
// died: a worker that ran long enough starts the count afresh.
func nextFailures(prev int, uptime time.Duration) int {
	if uptime >= stableAfter {
		return 1
	}
	return prev + 1
}
